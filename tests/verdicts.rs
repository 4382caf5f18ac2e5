//! docs/VERDICTS.md says, for every `Then` step, what decides it and what
//! shows it can fail. This holds the page to the code: every step is listed,
//! nothing else is, each decider is one of the page's list, and every control
//! or unit test it cites exists.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DECIDERS: [&str; 6] = [
    "requests",
    "server",
    "server record",
    "fault injector",
    "wire",
    "client's account",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// The string literal at the start of `s` (`"..."` with escapes, `r"..."`
/// or `r#"..."#`), unescaped.
fn literal(s: &str) -> Option<String> {
    if let Some(raw) = s.strip_prefix("r#\"") {
        return raw.find("\"#").map(|end| raw[..end].to_string());
    }
    if let Some(raw) = s.strip_prefix("r\"") {
        return raw.find('"').map(|end| raw[..end].to_string());
    }
    let mut out = String::new();
    let mut chars = s.strip_prefix('"')?.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Every `#[then(...)]` expression of the step definitions.
fn then_steps() -> BTreeSet<String> {
    let mut paths = Vec::new();
    files(&root().join("src/steps"), "rs", &mut paths);
    let mut steps = BTreeSet::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        for (at, _) in text.match_indices("#[then(") {
            let rest = text[at + "#[then(".len()..].trim_start();
            let rest = ["expr", "regex"]
                .iter()
                .find_map(|k| rest.strip_prefix(k))
                .map(|r| r.trim_start().trim_start_matches('=').trim_start())
                .unwrap_or(rest);
            let step = literal(rest)
                .unwrap_or_else(|| panic!("{}: a #[then] without a literal", p.display()));
            assert!(steps.insert(step.clone()), "{step:?} is defined twice");
        }
    }
    steps
}

/// The page's rows: step -> (decider, shown failing by).
fn rows() -> BTreeMap<String, (String, String)> {
    let page = std::fs::read_to_string(root().join("docs/VERDICTS.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in page.lines().filter(|l| l.starts_with("| `")) {
        // Cells split on `|` not escaped as `\|`.
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut chars = line.trim().trim_matches('|').chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => cell.push(chars.next().unwrap()),
                '|' => cells.push(std::mem::take(&mut cell)),
                c => cell.push(c),
            }
        }
        cells.push(cell);
        let cells: Vec<&str> = cells.iter().map(|c| c.trim()).collect();
        assert_eq!(cells.len(), 4, "a row of four cells: {line}");
        let step = cells[0].trim_matches('`').to_string();
        let had = rows.insert(step.clone(), (cells[1].to_string(), cells[3].to_string()));
        assert!(had.is_none(), "{step:?} is listed twice");
    }
    rows
}

#[test]
fn every_then_step_says_who_decides_it() {
    let steps = then_steps();
    let rows = rows();
    let listed: BTreeSet<String> = rows.keys().cloned().collect();
    let missing: Vec<&String> = steps.difference(&listed).collect();
    let stale: Vec<&String> = listed.difference(&steps).collect();
    assert!(
        missing.is_empty(),
        "docs/VERDICTS.md does not say who decides: {missing:#?}"
    );
    assert!(
        stale.is_empty(),
        "docs/VERDICTS.md lists steps that no longer exist: {stale:#?}"
    );
    for (step, (decider, _)) in &rows {
        assert!(
            DECIDERS.contains(&decider.as_str()),
            "{step:?}: {decider:?} is not one of {DECIDERS:?}"
        );
    }
}

#[test]
fn every_control_and_unit_test_the_page_cites_exists() {
    let mut features = String::new();
    let mut paths = Vec::new();
    files(&root().join("features"), "feature", &mut paths);
    for p in paths {
        features.push_str(&std::fs::read_to_string(p).unwrap());
    }
    // The source, and of it the tests (a file's part after `#[cfg(test)]`,
    // and files of their own named tests.rs).
    let (mut source, mut tests) = (String::new(), String::new());
    let mut paths = Vec::new();
    files(&root().join("src"), "rs", &mut paths);
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        if p.file_name().is_some_and(|n| n == "tests.rs") {
            tests.push_str(&text);
        } else if let Some(at) = text.find("#[cfg(test)]") {
            tests.push_str(&text[at..]);
        }
        source.push_str(&text);
    }
    let mut wrong = Vec::new();
    for (step, (_, shown)) in rows() {
        // Scenario ids (two capitals and a number) name scenarios.
        for word in shown.split(|c: char| !c.is_ascii_alphanumeric()) {
            let is_id = word.len() >= 3
                && word[..2].chars().all(|c| c.is_ascii_uppercase())
                && word[2..].chars().all(|c| c.is_ascii_digit());
            let defined = ["Scenario: ", "Scenario Outline: "]
                .iter()
                .any(|k| features.contains(&format!("{k}{word} ")));
            if is_id && !defined {
                wrong.push(format!("{step:?} cites {word}, which no feature defines"));
            }
        }
        // `unit test `module` `function``: the function exists and a test
        // calls it.
        if let Some(rest) = shown.strip_prefix("unit test ") {
            let named: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            let function = named
                .last()
                .unwrap_or_else(|| panic!("{step:?}: a unit test names its function"));
            if !source.contains(&format!("fn {function}")) {
                wrong.push(format!("{step:?} cites {function}, which does not exist"));
            } else if !tests.contains(&format!("{function}(")) {
                wrong.push(format!(
                    "{step:?} cites {function}, which no unit test calls"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "docs/VERDICTS.md: {wrong:#?}");
}
