//! The conformance matrix: the same features, one column per client under
//! test, one row per scenario; each cell passed, failed (with the failing
//! claim), not applicable (with the reason) or not run, linked to that
//! run's timeline in its living document. Built from the runs' `report.json`
//! (a pure function), rendered by askama from `templates/matrix.html`, and
//! held to a list of the cells that passed before ([`Expected`]): a cell
//! that passed and no longer does is a regression.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use askama::Template;

use super::{Outcome, Run};

/// How a client did in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Every claim held.
    Passed,
    /// A claim did not hold (or a step never ran).
    Failed,
    /// The client cannot express a step or a setting of it.
    NotApplicable,
    /// The run of that client does not have it.
    NotRun,
}

impl State {
    /// The word the page and the expectations file use.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Passed => "passed",
            State::Failed => "failed",
            State::NotApplicable => "not-applicable",
            State::NotRun => "not-run",
        }
    }

    /// The words a reader sees.
    pub fn label(self) -> &'static str {
        match self {
            State::NotApplicable => "not applicable",
            State::NotRun => "not run",
            s => s.as_str(),
        }
    }
}

/// One cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// How it ended.
    pub state: State,
    /// The failing claim and why, or why not applicable; empty otherwise.
    pub detail: String,
    /// The scenario in that run's living document, when it ran.
    pub link: Option<String>,
}

/// One scenario, across the clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Stable across runs and edits of other scenarios: the feature file,
    /// the scenario's name and, for an outline's examples, `#k`.
    pub key: String,
    /// Its feature file.
    pub feature: String,
    /// Its name.
    pub name: String,
    /// One per column.
    pub cells: Vec<Cell>,
}

impl Row {
    /// A client after the first (the clients a driver puts under test)
    /// ran it: passed or failed.
    pub fn ran_by_others(&self) -> bool {
        self.cells
            .iter()
            .skip(1)
            .any(|c| matches!(c.state, State::Passed | State::Failed))
    }
}

/// One client under test: a run of the suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The client (`redis-py 8.2.0`).
    pub client: String,
    /// Its living document, relative to the matrix page.
    pub page: String,
    /// What the run targeted.
    pub target: String,
    /// When it started.
    pub started: String,
    /// Cells passed, failed, not applicable, not run.
    pub counts: [usize; 4],
}

impl Column {
    /// Some scenario of the matrix is not in this run.
    pub fn any_not_run(&self) -> bool {
        self.counts[3] > 0
    }
}

/// Scenario by client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// The clients, left to right.
    pub columns: Vec<Column>,
    /// The scenarios, feature by feature in file order.
    pub rows: Vec<Row>,
}

/// A run to put in the matrix: its report and where its page is, relative
/// to the matrix page.
pub struct Input {
    /// The run.
    pub run: Run,
    /// Its `index.html`, relative to the matrix page.
    pub page: String,
}

/// The matrix of `inputs`, one column each, in order.
pub fn build(inputs: &[Input]) -> Matrix {
    // Every scenario any run knows (ran or not applicable), by file and line.
    let mut known: BTreeMap<(String, usize), String> = BTreeMap::new();
    for i in inputs {
        for (f, s) in i.run.scenarios() {
            known.insert((f.path.clone(), s.line), s.name.clone());
        }
        for n in &i.run.not_applicable {
            known.insert((n.feature.clone(), n.line), n.scenario.clone());
        }
    }
    let keys = keys(&known);
    let mut rows: Vec<Row> = known
        .iter()
        .map(|((feature, line), name)| Row {
            key: keys[&(feature.clone(), *line)].clone(),
            feature: feature.clone(),
            name: name.clone(),
            cells: inputs
                .iter()
                .map(|i| cell(&i.run, &i.page, feature, *line))
                .collect(),
        })
        .collect();
    // Features in the order the runs met them, scenarios in file order.
    let order: Vec<String> = inputs
        .iter()
        .flat_map(|i| i.run.features.iter().map(|f| f.path.clone()))
        .fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        });
    rows.sort_by_key(|r| {
        order
            .iter()
            .position(|p| *p == r.feature)
            .unwrap_or(usize::MAX)
    });
    let columns = inputs
        .iter()
        .enumerate()
        .map(|(c, i)| {
            let mut counts = [0; 4];
            for r in &rows {
                counts[r.cells[c].state as usize] += 1;
            }
            Column {
                client: if i.run.client.is_empty() {
                    i.page.clone()
                } else {
                    i.run.client.clone()
                },
                page: i.page.clone(),
                target: i.run.target.clone(),
                started: i.run.started.clone(),
                counts,
            }
        })
        .collect();
    Matrix { columns, rows }
}

/// Each scenario's key: `file: name`, with `#k` after the name when an
/// outline gives several scenarios that name (k from 1, in file order).
fn keys(known: &BTreeMap<(String, usize), String>) -> BTreeMap<(String, usize), String> {
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut total: BTreeMap<(String, String), usize> = BTreeMap::new();
    for ((f, _), n) in known {
        *total.entry((f.clone(), n.clone())).or_default() += 1;
    }
    known
        .iter()
        .map(|((f, line), n)| {
            let file = f.rsplit('/').next().unwrap_or(f);
            let k = seen.entry((f.clone(), n.clone())).or_default();
            *k += 1;
            let key = if total[&(f.clone(), n.clone())] > 1 {
                format!("{file}: {n} #{k}")
            } else {
                format!("{file}: {n}")
            };
            ((f.clone(), *line), key)
        })
        .collect()
}

fn cell(run: &Run, page: &str, feature: &str, line: usize) -> Cell {
    if let Some(n) = run
        .not_applicable
        .iter()
        .find(|n| n.feature == feature && n.line == line)
    {
        return Cell {
            state: State::NotApplicable,
            detail: n.reason.clone(),
            link: Some(format!("{page}#not-applicable")),
        };
    }
    let Some((_, s)) = run
        .scenarios()
        .find(|(f, s)| f.path == feature && s.line == line)
    else {
        return Cell {
            state: State::NotRun,
            detail: String::new(),
            link: None,
        };
    };
    let link = Some(format!("{page}#{}", s.anchor));
    if s.outcome == Outcome::Passed {
        return Cell {
            state: State::Passed,
            detail: String::new(),
            link,
        };
    }
    let detail = match s.steps.iter().find(|st| st.outcome == Outcome::Failed) {
        Some(st) => format!(
            "{} {}: {}",
            st.keyword.trim(),
            st.text,
            st.error
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        ),
        None => match s.steps.iter().find(|st| st.outcome == Outcome::Skipped) {
            Some(st) => format!("{} {}: never ran", st.keyword.trim(), st.text),
            None => "did not pass".to_string(),
        },
    };
    Cell {
        state: State::Failed,
        detail,
        link,
    }
}

/// The cells that passed before, one per line: `<client>\t<key>`, where
/// the client is its name without its version (`redis-py`). Lines starting
/// with `#` are comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    cells: BTreeSet<(String, String)>,
}

/// A client's name without its version: `redis-py 8.2.0` → `redis-py`.
pub fn client_name(client: &str) -> &str {
    client.split_whitespace().next().unwrap_or(client)
}

impl Expected {
    /// Reads the file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut cells = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((client, key)) = line.split_once('\t') else {
                bail!(
                    "line {}: {line:?} is not `<client><TAB><feature file>: <scenario>`",
                    i + 1
                );
            };
            cells.insert((client.to_string(), key.to_string()));
        }
        Ok(Expected { cells })
    }

    /// Every cell of `m` that passed.
    pub fn of(m: &Matrix) -> Self {
        let mut cells = BTreeSet::new();
        for r in &m.rows {
            for (c, cell) in m.columns.iter().zip(&r.cells) {
                if cell.state == State::Passed {
                    cells.insert((client_name(&c.client).to_string(), r.key.clone()));
                }
            }
        }
        Expected { cells }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# The conformance matrix's cells that passed: `maint-e2e matrix --expect` fails\n\
             # when one of them no longer passes. Written by `maint-e2e matrix --write-expect`.\n",
        );
        for (client, key) in &self.cells {
            out.push_str(&format!("{client}\t{key}\n"));
        }
        out
    }

    /// The cells expected to pass that did not in `m`, each saying how it
    /// ended instead; a client `m` has no column for is one regression.
    pub fn regressions(&self, m: &Matrix) -> Vec<String> {
        let mut out = Vec::new();
        let mut missing: BTreeMap<&str, usize> = BTreeMap::new();
        for (client, key) in &self.cells {
            let Some(c) = m
                .columns
                .iter()
                .position(|col| client_name(&col.client) == client)
            else {
                *missing.entry(client).or_default() += 1;
                continue;
            };
            match m.rows.iter().find(|r| &r.key == key) {
                None => out.push(format!(
                    "{client}: \"{key}\" passed before and is no longer in the run \
                     (renamed? rewrite the expectations with --write-expect)"
                )),
                Some(r) if r.cells[c].state != State::Passed => out.push(format!(
                    "{client}: \"{key}\" passed before and is now {}{}",
                    r.cells[c].state.as_str(),
                    if r.cells[c].detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.cells[c].detail)
                    }
                )),
                Some(_) => {}
            }
        }
        for (client, n) in missing {
            out.push(format!(
                "{client}: no run of it in the matrix, and {n} cell(s) of it passed before \
                 (did its driver start? run `MAINT_E2E_CLIENT={client} cargo test --test acceptance`)"
            ));
        }
        out
    }

    /// Cells of `m` that pass and are not expected to: candidates to add.
    pub fn newly_passing(&self, m: &Matrix) -> Vec<String> {
        Expected::of(m)
            .cells
            .difference(&self.cells)
            .map(|(c, k)| format!("{c}: \"{k}\""))
            .collect()
    }
}

#[derive(Template)]
#[template(path = "matrix.html")]
struct Page<'a> {
    m: &'a Matrix,
    features: Vec<(&'a str, Vec<&'a Row>)>,
    cells: usize,
}

/// The page.
pub fn render(m: &Matrix) -> Result<String> {
    let mut features: Vec<(&str, Vec<&Row>)> = Vec::new();
    for r in &m.rows {
        match features.last_mut() {
            Some((f, rows)) if *f == r.feature => rows.push(r),
            _ => features.push((&r.feature, vec![r])),
        }
    }
    Page {
        m,
        features,
        cells: m.rows.len() * m.columns.len(),
    }
    .render()
    .context("rendering the conformance matrix")
}

/// How tall a screenshot of the page is, in CSS pixels: of every row, or
/// (`others_ran`, the page's `#ran` view) of the rows a client after the
/// first ran.
pub fn page_height(m: &Matrix, others_ran: bool) -> u32 {
    let rows: Vec<&Row> = m
        .rows
        .iter()
        .filter(|r| !others_ran || r.ran_by_others())
        .collect();
    let features = rows
        .iter()
        .map(|r| &r.feature)
        .collect::<BTreeSet<_>>()
        .len();
    // A failed cell names its claim on up to three more lines.
    let failed = rows
        .iter()
        .filter(|r| r.cells.iter().any(|c| c.state == State::Failed))
        .count();
    (330 + 36 * rows.len() + 34 * failed + 34 * features) as u32
}

/// What `maint-e2e matrix` was asked.
pub struct Options {
    /// The runs' living-document folders, left to right; empty, those of
    /// [`DEFAULT_RUNS`] that exist.
    pub runs: Vec<PathBuf>,
    /// Where the page goes.
    pub out: PathBuf,
    /// Fail when a cell this file lists as passed did not pass.
    pub expect: Option<PathBuf>,
    /// Write the cells that passed here.
    pub write_expect: Option<PathBuf>,
    /// Save a picture of the whole page here.
    pub screenshot: Option<PathBuf>,
}

/// The runs the matrix takes when none are named: our own client's, then
/// each shipped driver's.
pub const DEFAULT_RUNS: [&str; 3] = [
    "target/living-doc",
    "target/living-doc-redis-py",
    "target/living-doc-node-redis",
];

/// Builds the page from the runs, checks it in headless Chromium, prints
/// each client's counts, and judges it against the cells that passed
/// before.
pub async fn publish(o: &Options) -> Result<Matrix> {
    let runs: Vec<PathBuf> = if o.runs.is_empty() {
        DEFAULT_RUNS
            .into_iter()
            .map(PathBuf::from)
            .filter(|d| d.join("report.json").is_file())
            .collect()
    } else {
        o.runs.clone()
    };
    if runs.is_empty() {
        bail!(
            "no run to put in the matrix: run the acceptance suite first \
             (`cargo test --test acceptance`, then with MAINT_E2E_CLIENT=redis-py or node-redis), \
             or name runs with --run"
        );
    }
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let out = std::path::absolute(&o.out)?;
    let mut inputs = Vec::new();
    for dir in &runs {
        let json = dir.join("report.json");
        let bytes = std::fs::read(&json).with_context(|| {
            format!(
                "reading {} ({} should be a run's living-document folder)",
                json.display(),
                dir.display()
            )
        })?;
        let run: Run = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", json.display()))?;
        let page = relative(&out, &std::path::absolute(dir.join("index.html"))?);
        inputs.push(Input { run, page });
    }
    let m = build(&inputs);
    let page = o.out.join("index.html");
    std::fs::write(&page, render(&m)?).with_context(|| format!("writing {}", page.display()))?;
    // The picture shows the rows another client ran (every row of our own
    // client's passes would make it five pages long).
    let shot = o
        .screenshot
        .as_deref()
        .map(|p| (p, page_height(&m, m.columns.len() > 1)));
    super::browser::verify_matrix(&page, m.rows.len() * m.columns.len(), shot).await?;
    for c in &m.columns {
        println!(
            "{}: {} passed, {} failed, {} not applicable, {} not run",
            c.client, c.counts[0], c.counts[1], c.counts[2], c.counts[3]
        );
    }
    println!(
        "conformance matrix: {} (checked in headless Chromium)",
        page.display()
    );
    if let Some(png) = &o.screenshot {
        println!("its picture: {}", png.display());
    }
    if let Some(file) = &o.write_expect {
        std::fs::write(file, Expected::of(&m).render())
            .with_context(|| format!("writing {}", file.display()))?;
        println!("the cells that passed, written to {}", file.display());
    }
    if let Some(file) = &o.expect {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let expected =
            Expected::parse(&text).with_context(|| format!("reading {}", file.display()))?;
        for n in expected.newly_passing(&m) {
            println!("passes now, not yet in {}: {n}", file.display());
        }
        let regressions = expected.regressions(&m);
        if !regressions.is_empty() {
            bail!(
                "{} cell(s) of the conformance matrix passed before and no longer do:\n  {}",
                regressions.len(),
                regressions.join("\n  ")
            );
        }
        println!("every cell {} lists passed", file.display());
    }
    Ok(m)
}

/// `to` as a path relative to the folder `from` (both absolute).
fn relative(from: &Path, to: &Path) -> String {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts = vec!["..".to_string(); f.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[cfg(test)]
#[path = "matrix_tests.rs"]
mod tests;
