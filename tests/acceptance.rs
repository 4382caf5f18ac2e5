//! The acceptance suite: `cargo test --test acceptance [-- <cucumber options>]`.
//!
//! Runs `features/` against the embedded emulator, or against the cluster that
//! `REDIS_ENDPOINTS_CONFIG_PATH` and `FAULT_INJECTION_API_URL` name (then
//! scenarios tagged `@emulator` are skipped). Writes a JUnit report to
//! `target/acceptance-junit.xml` (`-external.xml` against an external target).
#![forbid(unsafe_code)]

use std::fs::File;

use cucumber::{writer, World as _, WriterExt as _};
use futures::FutureExt as _;
use maint_e2e::config::Target;
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
    let external = !matches!(Target::from_env(), Ok(Target::Emulator));
    let junit_path = format!(
        "{}/target/acceptance-junit{}.xml",
        env!("CARGO_MANIFEST_DIR"),
        if external { "-external" } else { "" }
    );
    let junit = File::create(&junit_path).unwrap_or_else(|e| panic!("creating {junit_path}: {e}"));
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
                .normalized(),
        )
        .fail_on_skipped()
        .after(|_feature, _rule, _scenario, _finished, world| {
            async move {
                if let Some(w) = world {
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
