//! The acceptance suite: `cargo test --test acceptance [-- <cucumber options>]`.
//!
//! Runs `features/` against the embedded emulator, or against the cluster that
//! `REDIS_ENDPOINTS_CONFIG_PATH` and `FAULT_INJECTION_API_URL` name (then
//! scenarios tagged `@emulator` are skipped). Writes a JUnit report to
//! `target/acceptance-junit.xml` and the living documentation (the page
//! `target/living-doc/index.html`, `report.json`, `cucumber.json`), with
//! `-external` in their names against an external target.
#![forbid(unsafe_code)]

use std::fs::File;

use cucumber::{writer, World as _, WriterExt as _};
use futures::FutureExt as _;
use maint_e2e::config::Target;
use maint_e2e::report::{Captures, LivingDoc, Setting};
use maint_e2e::steps::MaintWorld;

/// Scenarios run at once against the embedded emulator (`-- --concurrency N`
/// overrides it).
const EMBEDDED_CONCURRENCY: usize = 6;

#[tokio::main]
async fn main() {
    // Logs of the emulator and the client, on demand: RUST_LOG=maint_e2e=debug.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let target = Target::from_env();
    let external = !matches!(target, Ok(Target::Emulator));
    let suffix = if external { "-external" } else { "" };
    let root = env!("CARGO_MANIFEST_DIR");
    let junit_path = format!("{root}/target/acceptance-junit{suffix}.xml");
    let junit = File::create(&junit_path).unwrap_or_else(|e| panic!("creating {junit_path}: {e}"));
    let described = match &target {
        Ok(Target::Emulator) => "embedded emulator (one per scenario)".to_string(),
        Ok(Target::External {
            endpoints,
            fault_injector,
        }) => format!(
            "external: fault injector {fault_injector}, endpoints {}",
            endpoints.display()
        ),
        Err(e) => format!("none: {e}"),
    };
    let captures = Captures::default();
    let living_doc = LivingDoc::new(
        format!("{root}/target/living-doc{suffix}"),
        captures.clone(),
        "maint-e2e acceptance suite",
        &described,
        MaintWorld::suite_defaults()
            .describe()
            .into_iter()
            .map(|(k, v)| Setting::new(k, v))
            .collect(),
    );
    MaintWorld::cucumber()
        // One shared external database: scenarios must not see each other's
        // events. Embedded, each scenario has its own emulator and mostly
        // waits on timers: six at a time take a third of the time two do
        // (BENCHMARKS.md); `@serial` ones (stress) run alone.
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
        })
        .filter_run_and_exit(
            concat!(env!("CARGO_MANIFEST_DIR"), "/features"),
            move |_, _, sc| !(external && sc.tags.iter().any(|t| t == "emulator")),
        )
        .await;
}
