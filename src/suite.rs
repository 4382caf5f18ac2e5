//! The acceptance suite as one call: the features of a folder against the
//! target the environment names, with the terminal summary, a JUnit file and
//! the living documentation. `tests/acceptance.rs` runs `features/` with it;
//! tests run their own features with it.

use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cucumber::writer::Stats as _;
use cucumber::{cli, writer, World as _, WriterExt as _};
use futures::FutureExt as _;

use crate::config::Target;
use crate::report::{Captures, LivingDoc, NotApplicable, Setting};
use crate::steps::MaintWorld;

/// Scenarios run at once against the embedded emulator (`-- --concurrency N`
/// overrides it).
pub const EMBEDDED_CONCURRENCY: usize = 6;

/// The client under test when no driver is selected: this crate's own.
pub const OWN_CLIENT: &str = concat!(
    "maint-e2e handoffs ",
    env!("CARGO_PKG_VERSION"),
    " (redis crate)"
);

/// What to run and where its reports go.
pub struct Suite {
    /// The features: a folder or one file.
    pub features: PathBuf,
    /// The JUnit file.
    pub junit: PathBuf,
    /// The living documentation's folder.
    pub report_dir: PathBuf,
    /// Read cucumber's options (`--name`, `--tags`, `--concurrency`...) from
    /// the command line; off, every scenario runs.
    pub command_line: bool,
}

impl Suite {
    /// `features/` of this crate, reports under its `target/` (`-external`
    /// in their names against an external target, the driver's name, such
    /// as `-redis-py`, for a client under test through a driver).
    pub fn of_crate(external: bool) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut suffix = if external { "-external" } else { "" }.to_string();
        if let Some(driver) = crate::driver::selected() {
            suffix += &format!("-{driver}");
        }
        Suite {
            features: root.join("features"),
            junit: root.join(format!("target/acceptance-junit{suffix}.xml")),
            report_dir: root.join(format!("target/living-doc{suffix}")),
            command_line: true,
        }
    }

    /// Runs the features; true when every scenario passed. Against an
    /// external target, scenarios tagged `@emulator` are left out.
    pub async fn run(&self) -> Result<bool> {
        let target = Target::from_env();
        let external = !matches!(target, Ok(Target::Emulator));
        let junit = File::create(&self.junit)
            .with_context(|| format!("creating {}", self.junit.display()))?;
        // A client under test through a driver runs the scenarios it can
        // express; the others are listed as not applicable, with why.
        let driven = match crate::driver::selected() {
            Some(name) => Some(driver_greeting(&name).await?),
            None => None,
        };
        let client = driven
            .as_ref()
            .map_or_else(|| OWN_CLIENT.to_string(), |(c, _)| c.clone());
        let captures = Captures::default();
        let living_doc = LivingDoc::new(
            &self.report_dir,
            captures.clone(),
            "maint-e2e acceptance suite",
            &describe(&target),
            MaintWorld::suite_defaults()
                .describe()
                .into_iter()
                .map(|(k, v)| Setting::new(k, v))
                .collect(),
        )
        .with_client(&client);
        let cucumber = MaintWorld::cucumber()
            // One shared external database: scenarios must not see each
            // other's events. Embedded, each scenario has its own emulator and
            // mostly waits on timers: six at a time take a third of the time
            // two do (BENCHMARKS.md); `@serial` ones (stress) run alone.
            .max_concurrent_scenarios(if external { 1 } else { EMBEDDED_CONCURRENCY })
            .with_writer(
                writer::Basic::raw(std::io::stdout(), writer::Coloring::Auto, 0)
                    .summarized()
                    .tee::<MaintWorld, _>(writer::JUnit::for_tee(junit, 0))
                    .tee::<MaintWorld, _>(living_doc.for_tee())
                    .normalized(),
            )
            .fail_on_skipped()
            .after(move |feature, _rule, scenario, _finished, world| {
                let captures = captures.clone();
                async move {
                    if let Some(w) = world {
                        let capture = w.capture().await;
                        captures.put(
                            feature.path.clone().unwrap_or_default(),
                            scenario.position.line,
                            capture,
                        );
                        w.teardown().await;
                    }
                }
                .boxed_local()
            });
        // cucumber's `--name` and `--tags` would replace the filter below
        // (and run scenarios a driver cannot express): they are applied in
        // it instead.
        let mut opts: cli::Opts<_, _, _, cli::Empty> = if self.command_line {
            cli::Opts::parsed()
        } else {
            cli::Opts::default()
        };
        let (by_name, by_tags) = (opts.re_filter.take(), opts.tags_filter.take());
        let cucumber = cucumber.with_cli(opts);
        let not_applicable =
            std::sync::Arc::new(std::sync::Mutex::new(Vec::<NotApplicable>::new()));
        let na = not_applicable.clone();
        let writer = cucumber
            .filter_run(&self.features, move |feature, rule, sc| {
                if external && sc.tags.iter().any(|t| t == "emulator") {
                    return false;
                }
                if !chosen(by_name.as_ref(), by_tags.as_ref(), feature, rule, sc) {
                    return false;
                }
                let Some((client, settings)) = &driven else {
                    return true;
                };
                let steps = feature
                    .background
                    .iter()
                    .chain(rule.and_then(|r| r.background.as_ref()))
                    .flat_map(|b| b.steps.iter())
                    .chain(sc.steps.iter());
                match crate::driver::applicable::not_applicable(steps, client, settings) {
                    None => true,
                    Some(reason) => {
                        let root = env!("CARGO_MANIFEST_DIR");
                        let path = feature.path.clone().unwrap_or_default();
                        let path = path
                            .strip_prefix(root)
                            .unwrap_or(&path)
                            .display()
                            .to_string();
                        na.lock().unwrap().push(NotApplicable {
                            feature: path.trim_start_matches('/').to_string(),
                            line: sc.position.line,
                            scenario: sc.name.clone(),
                            client: client.clone(),
                            reason,
                        });
                        false
                    }
                }
            })
            .await;
        let passed = !writer.execution_has_failed();
        drop(writer);
        let not_applicable = std::mem::take(&mut *not_applicable.lock().unwrap());
        report_not_applicable(&not_applicable);
        self.complete_reports(&not_applicable)?;
        Ok(passed)
    }

    /// Adds what cucumber's writers cannot know: to the JUnit file, the
    /// claims each scenario could not check against its target (read back
    /// from the living document's `report.json`); to the JUnit file, the
    /// living document and cucumber JSON, the scenarios not applicable to
    /// the client under test.
    fn complete_reports(&self, not_applicable: &[NotApplicable]) -> Result<()> {
        let mut xml = std::fs::read_to_string(&self.junit)
            .with_context(|| format!("reading back {}", self.junit.display()))?;
        let json = self.report_dir.join("report.json");
        if let Ok(text) = std::fs::read_to_string(&json) {
            let mut run: crate::report::Run = serde_json::from_str(&text)
                .with_context(|| format!("reading back {}", json.display()))?;
            xml = crate::report::junit::mark_not_checked(&xml, &run);
            if !not_applicable.is_empty() {
                // The living document and cucumber JSON list them too.
                run.not_applicable = not_applicable.to_vec();
                run.write(&self.report_dir)?;
            }
        }
        let cases: Vec<(String, String, String)> = not_applicable
            .iter()
            .map(|n| {
                (
                    format!("{}:{}", n.feature, n.line),
                    n.scenario.clone(),
                    format!("not applicable to {}: {}", n.client, n.reason),
                )
            })
            .collect();
        xml = crate::report::junit::add_not_applicable(&xml, &cases);
        std::fs::write(&self.junit, xml)
            .with_context(|| format!("completing {}", self.junit.display()))
    }
}

/// Whether cucumber's `--name` (`by_name`) and `--tags` (`by_tags`) choose
/// scenario `sc` (its tags, its rule's and its feature's), as cucumber would:
/// applied inside the suite's own filter, which they would otherwise
/// replace.
fn chosen(
    by_name: Option<&regex::Regex>,
    by_tags: Option<&cucumber::gherkin::tagexpr::TagOperation>,
    feature: &cucumber::gherkin::Feature,
    rule: Option<&cucumber::gherkin::Rule>,
    sc: &cucumber::gherkin::Scenario,
) -> bool {
    if by_name.is_some_and(|re| !re.is_match(&sc.name)) {
        return false;
    }
    let tags = feature
        .tags
        .iter()
        .chain(rule.iter().flat_map(|r| &r.tags))
        .chain(sc.tags.iter());
    by_tags.is_none_or(|t| cucumber::tag::Ext::eval(t, tags))
}

/// Starts driver `name` once to read what it is and which settings it maps.
async fn driver_greeting(name: &str) -> Result<(String, Vec<String>)> {
    let process = crate::driver::start(name, std::sync::Arc::new(crate::client::NoEvents))
        .await
        .with_context(|| format!("starting the {name} driver ({})", crate::driver::CLIENT_ENV))?;
    let greeting = (
        format!("{} {}", process.client, process.version),
        process.settings.clone(),
    );
    process.stop().await;
    println!("Client under test: {} (through its driver)", greeting.0);
    Ok(greeting)
}

/// Lists the scenarios not applicable to the client under test, counted.
fn report_not_applicable(list: &[NotApplicable]) {
    let Some(first) = list.first() else {
        return;
    };
    println!(
        "\n{} scenario(s) not applicable to {} (not run, not passed):",
        list.len(),
        first.client
    );
    for n in list {
        println!(
            "  {}:{} {}\n    {}",
            n.feature, n.line, n.scenario, n.reason
        );
    }
}

/// The target, as the report names it.
fn describe(target: &Result<Target, crate::config::ConfigError>) -> String {
    match target {
        Ok(Target::Emulator) => "embedded emulator (one per scenario)".to_string(),
        Ok(Target::External {
            endpoints,
            fault_injector,
        }) => format!(
            "external: fault injector {fault_injector}, endpoints {}",
            endpoints.display()
        ),
        Err(e) => format!("none: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::chosen;

    #[test]
    fn the_command_lines_name_and_tags_choose_scenarios_as_cucumber_would() {
        let f = cucumber::gherkin::Feature::parse(
            "@slow\nFeature: f\n  @emulator\n  Scenario: TO3 one\n    Given x\n  Scenario: PN1 two\n    Given x\n",
            cucumber::gherkin::GherkinEnv::default(),
        )
        .unwrap();
        let (to3, pn1) = (&f.scenarios[0], &f.scenarios[1]);
        let name = regex::Regex::new("^TO3").unwrap();
        let tags = |t: &str| {
            t.parse::<cucumber::gherkin::tagexpr::TagOperation>()
                .unwrap()
        };
        assert!(chosen(None, None, &f, None, to3));
        assert!(chosen(Some(&name), None, &f, None, to3));
        assert!(!chosen(Some(&name), None, &f, None, pn1));
        assert!(!chosen(None, Some(&tags("not @emulator")), &f, None, to3));
        assert!(chosen(None, Some(&tags("not @emulator")), &f, None, pn1));
        // The feature's tags count.
        assert!(chosen(None, Some(&tags("@slow")), &f, None, pn1));
    }
}
