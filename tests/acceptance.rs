//! The acceptance suite: `cargo test --test acceptance [-- <cucumber options>]`.
//!
//! Runs `features/` against the embedded emulator, or against the cluster that
//! `REDIS_ENDPOINTS_CONFIG_PATH` and `FAULT_INJECTION_API_URL` name (then
//! scenarios tagged `@emulator` are skipped). Writes a JUnit report to
//! `target/acceptance-junit.xml` and the living documentation (the page
//! `target/living-doc/index.html`, `report.json`, `cucumber.json`), with
//! `-external` in their names against an external target.
#![forbid(unsafe_code)]

use maint_e2e::config::Target;
use maint_e2e::suite::Suite;

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
    match Suite::of_crate(external).run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
