//! A cucumber writer that records the run (features, scenarios, steps, with
//! the time each event happened) and, when the run ends, joins each scenario
//! with the [`Capture`] its World left and writes the report.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cucumber::event::{self, Cucumber, HookType, Rule, StepError};
use cucumber::gherkin;
use cucumber::{parser, writer, Event, Writer};

use super::capture::{self, ms_between, Captures};
use super::{ClientDoc, Feature, Outcome, Run, Scenario, Setting, Step};

/// The living-documentation writer: put it in a `tee` beside the others.
pub struct LivingDoc {
    dir: PathBuf,
    captures: Captures,
    run: Run,
    started: Option<SystemTime>,
    /// Per scenario in progress: feature index, scenario index, its start,
    /// and each step's start.
    open: Vec<Open>,
    written: Option<PathBuf>,
}

struct Open {
    feature: usize,
    scenario: usize,
    started: SystemTime,
    step_started: Vec<(bool, usize, SystemTime)>,
    hook_failure: Option<String>,
}

impl LivingDoc {
    /// A writer for a run titled `title` against `target`, with the suite's
    /// client `settings`, writing into `dir` the scenarios whose World put
    /// their capture into `captures`.
    pub fn new(
        dir: impl Into<PathBuf>,
        captures: Captures,
        title: &str,
        target: &str,
        settings: Vec<Setting>,
    ) -> Self {
        LivingDoc {
            dir: dir.into(),
            captures,
            run: Run {
                title: title.into(),
                target: target.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                settings,
                ..Run::default()
            },
            started: None,
            open: Vec::new(),
            written: None,
        }
    }

    /// Names the client under test.
    pub fn with_client(mut self, client: &str) -> Self {
        self.run.client = client.to_string();
        self
    }

    /// For `tee`: statistics and arbitrary output go to the other writers.
    pub fn for_tee(self) -> writer::discard::Arbitrary<writer::discard::Stats<Self>> {
        use cucumber::WriterExt as _;
        self.discard_stats_writes().discard_arbitrary_writes()
    }

    /// The page, once written.
    pub fn written(&self) -> Option<&Path> {
        self.written.as_deref()
    }

    fn feature_index(&mut self, f: &gherkin::Feature) -> usize {
        let path = feature_path(f);
        if let Some(i) = self.run.features.iter().position(|x| x.path == path) {
            return i;
        }
        self.run.features.push(Feature {
            name: f.name.clone(),
            description: f.description.as_deref().map(unindent).unwrap_or_default(),
            path,
            tags: f.tags.clone(),
            scenarios: Vec::new(),
        });
        self.run.features.len() - 1
    }

    fn on_scenario<W>(
        &mut self,
        f: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        sc: &gherkin::Scenario,
        ev: event::Scenario<W>,
        at: SystemTime,
    ) {
        let fi = self.feature_index(f);
        let line = sc.position.line;
        let found = self.open.iter().position(|o| {
            o.feature == fi && self.run.features[fi].scenarios[o.scenario].line == line
        });
        let Some(oi) = found else {
            if matches!(ev, event::Scenario::Started) {
                self.start_scenario(fi, f, rule, sc, at);
            }
            return;
        };
        match ev {
            event::Scenario::Started | event::Scenario::Log(_) => {}
            event::Scenario::Hook(HookType::Before | HookType::After, hook) => {
                if let event::Hook::Failed(_, info) = hook {
                    self.open[oi].hook_failure = Some(panic_text(&info));
                }
            }
            event::Scenario::Background(step, ev) => self.on_step(oi, true, &step, ev, at),
            event::Scenario::Step(step, ev) => self.on_step(oi, false, &step, ev, at),
            event::Scenario::Finished => {
                let open = self.open.remove(oi);
                self.finish_scenario(open, f, at);
            }
        }
    }

    fn start_scenario(
        &mut self,
        fi: usize,
        f: &gherkin::Feature,
        rule: Option<&gherkin::Rule>,
        sc: &gherkin::Scenario,
        at: SystemTime,
    ) {
        let background = f
            .background
            .iter()
            .chain(rule.and_then(|r| r.background.as_ref()))
            .flat_map(|b| b.steps.iter().map(|s| step_doc(s, true)));
        let steps = background
            .chain(sc.steps.iter().map(|s| step_doc(s, false)))
            .collect();
        let mut tags = f.tags.clone();
        tags.extend(rule.iter().flat_map(|r| r.tags.iter().cloned()));
        tags.extend(sc.tags.iter().cloned());
        let feature = &mut self.run.features[fi];
        let anchor = format!(
            "{}-{}",
            feature
                .path
                .rsplit('/')
                .next()
                .unwrap_or("feature")
                .trim_end_matches(".feature"),
            sc.position.line
        );
        feature.scenarios.push(Scenario {
            anchor,
            id: scenario_id(&sc.name),
            name: sc.name.clone(),
            line: sc.position.line,
            tags,
            started_ms: self.started.map_or(0.0, |s| ms_between(s, at)),
            steps,
            ..Scenario::default()
        });
        self.open.push(Open {
            feature: fi,
            scenario: feature.scenarios.len() - 1,
            started: at,
            step_started: Vec::new(),
            hook_failure: None,
        });
    }

    fn on_step<W>(
        &mut self,
        oi: usize,
        background: bool,
        step: &gherkin::Step,
        ev: event::Step<W>,
        at: SystemTime,
    ) {
        let open = &mut self.open[oi];
        let line = step.position.line;
        let scenario = &mut self.run.features[open.feature].scenarios[open.scenario];
        let Some(doc) = scenario
            .steps
            .iter_mut()
            .find(|s| s.line == line && s.background == background)
        else {
            return;
        };
        let outcome = match ev {
            event::Step::Started => {
                open.step_started.push((background, line, at));
                doc.at_ms = Some(ms_between(open.started, at).max(0.0));
                return;
            }
            event::Step::Passed(..) => Outcome::Passed,
            event::Step::Skipped => {
                doc.error = Some("no step definition matches this line".into());
                Outcome::Skipped
            }
            event::Step::Failed(_, _, _, err) => {
                doc.error = Some(step_error_text(&err));
                Outcome::Failed
            }
        };
        doc.outcome = outcome;
        if let Some(&(_, _, began)) = open
            .step_started
            .iter()
            .rfind(|(b, l, _)| *b == background && *l == line)
        {
            doc.duration_ms = Some(ms_between(began, at).max(0.0));
        }
    }

    fn finish_scenario(&mut self, open: Open, f: &gherkin::Feature, at: SystemTime) {
        let path = f.path.clone().unwrap_or_default();
        let scenario = &mut self.run.features[open.feature].scenarios[open.scenario];
        scenario.duration_ms = ms_between(open.started, at).max(0.0);
        let failed = scenario.steps.iter().any(|s| s.outcome == Outcome::Failed);
        let ran_all = scenario.steps.iter().all(|s| s.outcome == Outcome::Passed);
        scenario.outcome = if failed || open.hook_failure.is_some() {
            Outcome::Failed
        } else if ran_all {
            Outcome::Passed
        } else {
            Outcome::Skipped
        };
        if let Some(why) = open.hook_failure {
            if !failed {
                if let Some(s) = scenario.steps.first_mut() {
                    s.outcome = Outcome::Failed;
                    s.error = Some(format!("the scenario's hook failed: {why}"));
                }
            }
        }
        if let Some(c) = self.captures.take(&path, scenario.line) {
            scenario.counts = capture::counts(&c);
            scenario.not_checked = c.not_checked.clone();
            scenario.clients = c
                .clients
                .iter()
                .map(|(name, settings)| ClientDoc {
                    name: name.clone(),
                    settings: settings.clone(),
                })
                .collect();
            scenario.timeline = Some(capture::timeline(
                &c,
                open.started,
                scenario.duration_ms,
                &scenario.steps,
            ));
        }
    }

    fn finish(&mut self, at: SystemTime) {
        if let Some(s) = self.started {
            self.run.started = humantime::format_rfc3339_seconds(s).to_string();
            self.run.duration_ms = ms_between(s, at);
        }
        self.run.features.sort_by(|a, b| a.path.cmp(&b.path));
        for f in &mut self.run.features {
            f.scenarios.sort_by_key(|s| s.line);
        }
        print!("{}", self.run.failure_recap());
        match self.run.write(&self.dir) {
            Ok(w) => {
                println!("Living documentation: {}", w.html.display());
                self.written = Some(w.html);
            }
            Err(e) => eprintln!("the living documentation could not be written: {e:#}"),
        }
    }
}

impl<W: cucumber::World> Writer<W> for LivingDoc {
    type Cli = cucumber::cli::Empty;

    async fn handle_event(&mut self, event: parser::Result<Event<Cucumber<W>>>, _cli: &Self::Cli) {
        let Ok(event) = event else { return };
        let (value, meta) = event.split();
        let at = meta.at;
        match value {
            Cucumber::Started => self.started = Some(at),
            Cucumber::ParsingFinished { .. } => {}
            Cucumber::Feature(f, event::Feature::Scenario(sc, ev)) => {
                self.on_scenario(&f, None, &sc, ev.event, at)
            }
            Cucumber::Feature(f, event::Feature::Rule(r, Rule::Scenario(sc, ev))) => {
                self.on_scenario(&f, Some(&r), &sc, ev.event, at)
            }
            Cucumber::Feature(f, event::Feature::Started) => {
                self.feature_index(&f);
            }
            Cucumber::Feature(..) => {}
            Cucumber::Finished => self.finish(at),
        }
    }
}

impl writer::NonTransforming for LivingDoc {}

/// The feature file, relative to the crate when it lies in it.
fn feature_path(f: &gherkin::Feature) -> String {
    let Some(p) = &f.path else {
        return f.name.clone();
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn step_doc(s: &gherkin::Step, background: bool) -> Step {
    Step {
        keyword: s.keyword.trim().to_string(),
        text: s.value.clone(),
        line: s.position.line,
        background,
        table: s.table.as_ref().map(|t| t.rows.clone()).unwrap_or_default(),
        ..Step::default()
    }
}

/// The id a scenario's name starts with: `CH1`, `ET1-ET5`, `FI1a`.
pub fn scenario_id(name: &str) -> String {
    let first = name.split_whitespace().next().unwrap_or("");
    let looks_like_id = first.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && first.chars().any(|c| c.is_ascii_digit())
        && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if looks_like_id {
        first.to_string()
    } else {
        String::new()
    }
}

/// A description as written, without the feature file's indentation.
fn unindent(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn panic_text(info: &event::Info) -> String {
    info.downcast_ref::<String>()
        .cloned()
        .or_else(|| info.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".into())
}

fn step_error_text(err: &StepError) -> String {
    match err {
        StepError::Panic(info) => panic_text(info),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_id_is_the_first_word_when_it_looks_like_one() {
        assert_eq!(scenario_id("CH1 traffic continues"), "CH1");
        assert_eq!(scenario_id("ET1-ET5 a client that asks"), "ET1-ET5");
        assert_eq!(scenario_id("FI1a a failover goes"), "FI1a");
        assert_eq!(scenario_id("traffic continues"), "");
        assert_eq!(scenario_id("A thing"), "");
    }
}
