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
use crate::report::{Captures, LivingDoc, Setting};
use crate::steps::MaintWorld;

/// Scenarios run at once against the embedded emulator (`-- --concurrency N`
/// overrides it).
pub const EMBEDDED_CONCURRENCY: usize = 6;

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
    /// in their names against an external target).
    pub fn of_crate(external: bool) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let suffix = if external { "-external" } else { "" };
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
        );
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
        let cucumber = if self.command_line {
            cucumber
        } else {
            cucumber.with_cli(cli::Opts::default())
        };
        let writer = cucumber
            .filter_run(&self.features, move |_, _, sc| {
                !(external && sc.tags.iter().any(|t| t == "emulator"))
            })
            .await;
        let passed = !writer.execution_has_failed();
        drop(writer);
        self.complete_junit()?;
        Ok(passed)
    }

    /// Adds to the JUnit file what cucumber's writer cannot know: the claims
    /// each scenario could not check against its target (read back from the
    /// living document's `report.json`).
    fn complete_junit(&self) -> Result<()> {
        let json = self.report_dir.join("report.json");
        let Ok(text) = std::fs::read_to_string(&json) else {
            return Ok(());
        };
        let run: crate::report::Run = serde_json::from_str(&text)
            .with_context(|| format!("reading back {}", json.display()))?;
        let xml = std::fs::read_to_string(&self.junit)
            .with_context(|| format!("reading back {}", self.junit.display()))?;
        std::fs::write(
            &self.junit,
            crate::report::junit::mark_not_checked(&xml, &run),
        )
        .with_context(|| format!("completing {}", self.junit.display()))
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
