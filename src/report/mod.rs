//! The living documentation: what a run of the acceptance suite claimed (the
//! features, scenarios and steps with their results) and what happened (each
//! scenario's timeline: one lane per connection of each client, one for the
//! fault injector's actions, one for the steps).
//!
//! * [`capture`]: what a scenario's World hands over when it ends, and the
//!   timeline built from it (a pure function, tested on hand-made events);
//! * [`collect`]: a cucumber writer that records features, scenarios and steps
//!   with their times and, at the end of the run, writes every output;
//! * [`html`]: the self-contained page (askama templates, SVG drawn by the
//!   template from positions computed here);
//! * [`cucumber_json`]: the same results in the cucumber JSON format;
//! * [`browser`]: opening the page in headless Chromium to check it and take
//!   a screenshot of one scenario's timeline.
//!
//! The model below is the report's JSON (`target/living-doc/report.json`),
//! and the page carries the same JSON inline.

pub mod browser;
pub mod capture;
pub mod collect;
pub mod cucumber_json;
pub mod html;
pub mod junit;
pub mod matrix;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

pub use capture::{ActionSpan, Capture, Captures, Clock, TrafficCapture};
pub use collect::LivingDoc;

/// Where the report goes, under the crate's `target/`.
pub const REPORT_DIR: &str = "target/living-doc";

/// One run of the suite.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// What ran.
    pub title: String,
    /// Against what: the embedded emulator, an external emulator, a cluster.
    pub target: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// The version of this suite.
    pub version: String,
    /// The client under test (`redis-py 8.2.0`, or this suite's own).
    #[serde(default)]
    pub client: String,
    /// The client settings every scenario starts from.
    pub settings: Vec<Setting>,
    /// The features, in the order they ran.
    pub features: Vec<Feature>,
    /// The scenarios the client under test (through a driver) cannot run:
    /// not run, not passed.
    #[serde(default)]
    pub not_applicable: Vec<NotApplicable>,
}

/// A scenario a client under test through a driver cannot run, and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotApplicable {
    /// Its feature file.
    pub feature: String,
    /// Its line there.
    pub line: usize,
    /// Its name.
    pub scenario: String,
    /// The client (`redis-py 8.2.0`).
    pub client: String,
    /// Why, naming the first step or setting that makes it so.
    pub reason: String,
}

/// A named value, as the report shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Setting {
    /// Name.
    pub name: String,
    /// Value, as text.
    pub value: String,
}

impl Setting {
    /// A setting.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Setting {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A feature file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Feature {
    /// Its name.
    pub name: String,
    /// The narrative under its name.
    pub description: String,
    /// The file, relative to the crate.
    pub path: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its scenarios, in file order.
    pub scenarios: Vec<Scenario>,
}

/// How a step or scenario ended.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Passed.
    Passed,
    /// Failed.
    Failed,
    /// Skipped (no step matched, or an earlier step failed).
    #[default]
    Skipped,
}

impl Outcome {
    /// The word the page and the filters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One scenario (an outline's example counts as one).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Scenario {
    /// Anchor in the page: unique in the run.
    pub anchor: String,
    /// The id its name starts with (`CH1`), when it has one.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Line in the feature file.
    pub line: usize,
    /// Its tags and its feature's.
    pub tags: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// When it started, in milliseconds after the run started.
    pub started_ms: f64,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Its steps, background first; steps it never reached are skipped.
    pub steps: Vec<Step>,
    /// What it counted.
    pub counts: Counts,
    /// The clients it made, with the settings that differ from the suite's.
    pub clients: Vec<ClientDoc>,
    /// What happened, when the scenario got a World.
    pub timeline: Option<Timeline>,
    /// Claims its steps could not check against the target (a real
    /// cluster keeps no server record), each with what was left unchecked:
    /// a state of its own, never counted as checked.
    #[serde(default)]
    pub not_checked: Vec<String>,
}

/// A client under test in a scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClientDoc {
    /// Its name in the steps.
    pub name: String,
    /// Its settings.
    pub settings: Vec<Setting>,
}

/// One step.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// `Given`, `When`, `Then`, `And`.
    pub keyword: String,
    /// The rest of the line.
    pub text: String,
    /// Line in the feature file.
    pub line: usize,
    /// From the background.
    pub background: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// When it started, in milliseconds after the scenario started (absent
    /// when it never ran).
    pub at_ms: Option<f64>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Its data table, row by row.
    pub table: Vec<Vec<String>>,
}

/// What a scenario counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Notifications received (live and replayed at set-up).
    pub notifications: usize,
    /// Handoffs that succeeded.
    pub handoffs: usize,
    /// Handoffs that gave up.
    pub handoff_failures: usize,
    /// Operations of background traffic that failed.
    pub errors: usize,
    /// Operations of background traffic that succeeded.
    pub operations: u64,
    /// Acknowledged writes read back and found intact.
    pub writes_checked: usize,
}

/// A scenario's timeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// Its length, in milliseconds from the scenario's start.
    pub span_ms: f64,
    /// Lanes, top to bottom: steps, fault injector, then per client its
    /// traffic and its connections.
    pub lanes: Vec<Lane>,
    /// The failed step's moment, when one failed.
    pub failure: Option<FailureMark>,
}

/// What a lane shows.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LaneKind {
    /// The scenario's steps.
    Steps,
    /// The fault injector's actions.
    Injector,
    /// A client's background traffic: throughput and errors.
    Traffic,
    /// One connection of a client.
    #[default]
    Connection,
    /// The connections of a client past the ones drawn one per lane.
    Connections,
}

/// One row of the timeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Lane {
    /// What it shows.
    pub kind: LaneKind,
    /// Its label.
    pub label: String,
    /// The client it belongs to.
    pub client: Option<String>,
    /// The connections it shows (one, or the folded rest).
    pub conns: Vec<u64>,
    /// Spans: relaxed windows, handoffs, actions, steps.
    pub bands: Vec<Band>,
    /// Moments: notifications, handoff steps, reconnects, errors.
    pub marks: Vec<Mark>,
    /// Throughput: (milliseconds, operations per second), in order.
    pub throughput: Vec<(f64, f64)>,
}

/// A span on a lane.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Band {
    /// Class: `relaxed`, `handoff`, `action`, `step-passed`, `step-failed`...
    pub class: String,
    /// From, in milliseconds.
    pub from_ms: f64,
    /// To, in milliseconds.
    pub to_ms: f64,
    /// What it was.
    pub label: String,
}

/// A moment on a lane.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Mark {
    /// Class: `notification`, `handoff-succeeded`, `error`...
    pub class: String,
    /// When, in milliseconds.
    pub at_ms: f64,
    /// What happened, in a few words.
    pub label: String,
    /// The connection it happened on.
    pub conn: Option<u64>,
}

/// Where a step failed, and what each lane was doing then.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FailureMark {
    /// When, in milliseconds.
    pub at_ms: f64,
    /// The step.
    pub step: String,
    /// Why.
    pub error: String,
    /// Lane by lane: what it did last, and whether it was relaxed then.
    pub lanes: Vec<LaneAtFailure>,
}

/// One lane at the failure.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LaneAtFailure {
    /// The lane's label.
    pub lane: String,
    /// The last thing it did at or before the failure.
    pub last: Option<Mark>,
    /// The band in force then (relaxed window, handoff, action).
    pub within: Option<String>,
}

/// The files a run leaves.
pub struct Written {
    /// The page.
    pub html: PathBuf,
    /// The report as JSON.
    pub json: PathBuf,
    /// The cucumber JSON.
    pub cucumber: PathBuf,
}

impl Run {
    /// Every scenario, with its feature.
    pub fn scenarios(&self) -> impl Iterator<Item = (&Feature, &Scenario)> {
        self.features
            .iter()
            .flat_map(|f| f.scenarios.iter().map(move |s| (f, s)))
    }

    /// The failed scenarios, one paragraph each (where, which step, why), for
    /// the end of a terminal log: a CI log that keeps only its tail still
    /// names what failed. Empty when nothing failed.
    pub fn failure_recap(&self) -> String {
        let mut out = String::new();
        for (f, s) in self.scenarios() {
            if s.outcome != Outcome::Failed {
                continue;
            }
            out.push_str(&format!("FAILED {}:{} {}\n", f.path, s.line, s.name));
            for step in s.steps.iter().filter(|st| st.outcome == Outcome::Failed) {
                out.push_str(&format!(
                    "  at line {}: {} {}\n",
                    step.line, step.keyword, step.text
                ));
                for line in step.error.as_deref().unwrap_or("").lines().take(12) {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
        let unchecked: Vec<_> = self
            .scenarios()
            .filter(|(_, s)| !s.not_checked.is_empty())
            .collect();
        if !unchecked.is_empty() {
            out.push_str(&format!(
                "NOT CHECKED on this target: claims of {} scenario(s) (neither passed nor failed):\n",
                unchecked.len()
            ));
            for (f, s) in unchecked {
                out.push_str(&format!("  {}:{} {}\n", f.path, s.line, s.name));
                for n in &s.not_checked {
                    out.push_str(&format!("    {n}\n"));
                }
            }
        }
        out
    }

    /// Writes `index.html`, `report.json` and `cucumber.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Written> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let written = Written {
            html: dir.join("index.html"),
            json: dir.join("report.json"),
            cucumber: dir.join("cucumber.json"),
        };
        let json = serde_json::to_string(self)?;
        std::fs::write(&written.json, &json)
            .with_context(|| format!("writing {}", written.json.display()))?;
        std::fs::write(&written.html, html::render(self, &json)?)
            .with_context(|| format!("writing {}", written.html.display()))?;
        std::fs::write(
            &written.cucumber,
            serde_json::to_string_pretty(&cucumber_json::from_run(self))?,
        )
        .with_context(|| format!("writing {}", written.cucumber.display()))?;
        Ok(written)
    }
}
