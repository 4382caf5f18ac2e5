//! The conformance matrix: the same features, one column per client under
//! test, one row per scenario; each cell passed, failed (with the failing
//! claim), not applicable (with the reason) or not run, linked to that
//! run's timeline in its living document. Built from the runs' `report.json`
//! (a pure function), rendered by askama from `templates/matrix.html`, and
//! held to a list of the cells that passed before ([`Expected`]): a cell
//! that passed and no longer does is a regression.
//!
//! * this module: the model, and the matrix of several runs (pure);
//! * [`expected`]: the cells that passed before, and the judgement;
//! * [`publish`]: `maint-e2e matrix`: the runs read, the page written and
//!   checked in headless Chromium, the cells judged.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
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

mod expected;
mod publish;

pub use expected::{client_name, Expected};
pub use publish::{publish, Options, DEFAULT_RUNS};

#[cfg(test)]
mod tests;
