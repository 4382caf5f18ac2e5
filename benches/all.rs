//! Every benchmark of the emulator at full size: `cargo bench` (needs
//! `redis-server` and `redis-benchmark`; twemproxy's `nutcracker` when
//! installed). The same as `maint-e2e bench all`; BENCHMARKS.md has the figures.
#![forbid(unsafe_code)]

use std::path::Path;

use maint_e2e::bench::{fanout, handoff, overhead, write_json, Size};

#[tokio::main]
async fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let exe = Path::new(env!("CARGO_BIN_EXE_maint-e2e"));
    let size = Size::Full;
    let figures = overhead::run(size, &overhead::Options::of(size))
        .await
        .expect("the overhead benchmark");
    write_json(&out, "overhead", size, figures).expect("writing overhead.json");
    let figures = fanout::run(size, &fanout::Options::of(size), exe)
        .await
        .expect("the fan-out benchmark");
    write_json(&out, "fanout", size, figures).expect("writing fanout.json");
    let figures = handoff::run(size, &handoff::Options::of(size))
        .await
        .expect("the handoff benchmark");
    write_json(&out, "handoff", size, figures).expect("writing handoff.json");
}
