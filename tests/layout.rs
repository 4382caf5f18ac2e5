//! The house's floor plan, kept: no source file over 600 lines (the wire
//! contract's tests excepted), the client under test imports nothing from
//! the suite, and no two modules import each other, directly or around a
//! circle (a module's own children and parent aside).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 600;
/// Files allowed to be longer, and why.
const LONG_ALLOWED: &[&str] = &["tests/contract.rs"]; // the wire contract, field by field

/// The suite's modules, which the client under test must not import.
const SUITE: &[&str] = &[
    "timeline", "steps", "workload", "tracker", "suite", "report",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` is ``.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Paths a `use` tree names: `a::{b, c::{d, e}}` gives `a::b`, `a::c::d`,
/// `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let head = &tree[..open];
    let body = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p))
        .map(|p| format!("{head}{p}"))
        .collect()
}

/// The modules (of `known`) file `module` imports, outside `#[cfg(test)]`.
fn imports(module: &[String], text: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut out = BTreeSet::new();
    for stmt in code.split("use ").skip(1) {
        let Some(end) = stmt.find(';') else { continue };
        let stmt = &stmt[..end];
        let (mut base, mut rest): (Vec<String>, &str) =
            if let Some(r) = stmt.strip_prefix("crate::") {
                (Vec::new(), r)
            } else if let Some(r) = stmt.strip_prefix("super::") {
                (module[..module.len().saturating_sub(1)].to_vec(), r)
            } else {
                continue;
            };
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        for path in expand(rest) {
            let mut full = base.clone();
            full.extend(
                path.split("::")
                    .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                    .map(str::to_string),
            );
            while !full.is_empty() && !known.contains(&full) {
                full.pop();
            }
            let related = full.is_empty() || module.starts_with(&full) || full.starts_with(module);
            if !related {
                out.insert(full);
            }
        }
    }
    out
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    files
}

#[test]
fn no_source_file_is_longer_than_a_room() {
    let mut files = sources();
    rust_files(&root().join("tests"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES && !LONG_ALLOWED.contains(&rel.as_str())).then(|| format!("{rel}: {n}"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concept): {long:?}"
    );
}

#[test]
fn no_module_imports_another_that_imports_it_back_and_the_client_imports_no_suite() {
    let files = sources();
    let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = files
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with("_tests.rs"))
        .map(|f| {
            let m = module_of(f);
            let text = std::fs::read_to_string(f).unwrap();
            let deps = imports(&m, &text, &known);
            (m, deps)
        })
        .collect();
    let name = |m: &Vec<String>| m.join("::");
    // The client under test stands alone.
    for (m, deps) in &graph {
        if m.first().map(String::as_str) == Some("client") {
            let suite: Vec<String> = deps
                .iter()
                .filter(|d| SUITE.contains(&d[0].as_str()))
                .map(name)
                .collect();
            assert!(
                suite.is_empty(),
                "{} imports the suite's {suite:?}",
                name(m)
            );
        }
    }
    // No circle: a module reaches itself through nobody else.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Vec<String>, Vec<String>)> = graph[start]
            .iter()
            .map(|d| (d.clone(), vec![name(start), name(d)]))
            .collect();
        while let Some((m, path)) = stack.pop() {
            assert!(&m != start, "a circle of imports: {}", path.join(" -> "));
            if !seen.insert(m.clone()) {
                continue;
            }
            for d in graph.get(&m).into_iter().flatten() {
                let mut p = path.clone();
                p.push(name(d));
                stack.push((d.clone(), p));
            }
        }
    }
}

#[test]
fn the_import_reader_finds_what_a_use_names() {
    let known: BTreeSet<Vec<String>> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .collect();
    let m = vec!["a".to_string(), "b".to_string()];
    let got = imports(
        &m,
        "use crate::c::{X, y::Z};\nuse super::b::Q;\nuse std::fmt;\n#[cfg(test)]\nuse crate::d;",
        &known,
    );
    assert_eq!(got, [vec!["c".to_string()]].into_iter().collect());
    assert_eq!(
        expand("a::{b, c::{d, e as f}}"),
        vec!["a::b", "a::c::d", "a::c::e"]
    );
}
