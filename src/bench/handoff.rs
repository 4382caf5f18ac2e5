//! Handoff at scale: one client of many connections under steady traffic
//! through rebinds of its endpoint: how long from the first MOVING until every
//! connection moved, how many operations failed, and the p99 latency during
//! the move against the p99 outside it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{Size, Table};
use crate::client::ClientOptions;
use crate::emulator::{Emulator, EmulatorConfig, Timings};
use crate::fault_injector::{Action, TimingOverrides};
use crate::timeline::{handoff_window, latency_quantile, one_handoff_each};
use crate::workload::Workload;
use crate::{ClientFactory, DatabaseSpec, Tracker};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Connections of the client.
    pub connections: usize,
    /// Concurrent traffic loops.
    pub tasks: usize,
    /// Rebinds, one after the other.
    pub rebinds: usize,
}

impl Options {
    /// The defaults of a size.
    pub fn of(size: Size) -> Options {
        match size {
            Size::Smoke => Options {
                connections: 20,
                tasks: 4,
                rebinds: 1,
            },
            Size::Full => Options {
                connections: 1_000,
                tasks: 64,
                rebinds: 3,
            },
        }
    }
}

/// The MOVING grace of the benchmark's database: long enough for 1,000
/// connections to move, short enough for several rebinds a minute.
const GRACE_S: f64 = 5.0;

/// Traffic before and after each rebind, outside the window.
const QUIET: Duration = Duration::from_secs(1);

/// Runs the benchmark; prints its table and returns its figures.
pub async fn run(size: Size, o: &Options) -> Result<Value> {
    let emu = Emulator::new(EmulatorConfig {
        nodes: 2,
        timings: Timings::default().with(&TimingOverrides {
            grace_s: Some(GRACE_S),
            ..TimingOverrides::default()
        }),
        ..EmulatorConfig::default()
    })?;
    let fds_before = open_fds();
    let outcome = measure(size, o, &emu).await;
    emu.shutdown().await;
    // Sockets close on tasks of their own: give them a moment.
    tokio::time::sleep(QUIET).await;
    let mut figures = outcome?;
    figures["fds"] = json!({"start": fds_before, "end": open_fds()});
    Ok(figures)
}

/// File descriptors this process holds now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

async fn measure(size: Size, o: &Options, emu: &Arc<Emulator>) -> Result<Value> {
    let db = emu
        .create_database(DatabaseSpec {
            name: Some("handoff".into()),
            replication: Some(false),
            ..DatabaseSpec::default()
        })
        .await?;
    let tracker = Arc::new(Tracker::new());
    let factory = ClientFactory::new(db.config(), tracker.clone());
    let mut table = Table::new(&[
        "connections",
        "rebind",
        "MOVING -> last moved ms",
        "moved",
        "operations",
        "failed",
        "p99 in window ms",
        "p99 outside ms",
        "ratio",
    ]);
    let mut rows = Vec::new();
    let client = factory
        .create(
            "bench",
            ClientOptions {
                pool_size: o.connections,
                ..ClientOptions::default()
            },
        )
        .await
        .context("opening the client's connections")?;
    for round in 1..=o.rebinds {
        let started = Instant::now();
        let since = |events: &[crate::client::ClientEvent]| -> Vec<crate::client::ClientEvent> {
            events.iter().filter(|e| e.at >= started).cloned().collect()
        };
        let mut traffic = Workload::start(
            client.clone(),
            &format!("bench{round}"),
            o.tasks,
            Duration::ZERO,
        );
        tokio::time::sleep(QUIET).await;
        let conns: Vec<u64> = client.connections().iter().map(|c| c.id).collect();
        // The action runs to the end of its grace, when the old node closes.
        let out = emu.run(&Action::bind(db.id())).await?;
        tracing::debug!("bind: {out}");
        tracker
            .wait_for(
                Duration::from_secs(30),
                "every connection to move",
                |events| {
                    let moved = crate::timeline::handoffs(&since(events)).len();
                    (moved >= conns.len()).then_some(())
                },
            )
            .await?;
        tokio::time::sleep(QUIET).await;
        let report = traffic.stop().await;
        let events = since(&tracker.events());
        let events = &events[..];
        let Some((from, to)) = handoff_window(events) else {
            bail!("rebind {round}: no MOVING or no handoff in the timeline");
        };
        let moved_ok = one_handoff_each(events, &conns);
        let moved = crate::timeline::handoffs(events).len();
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3).unwrap_or(f64::NAN);
        let (p_in, p_out) = (
            ms(latency_quantile(&report, from, to, true, 0.99)),
            ms(latency_quantile(&report, from, to, false, 0.99)),
        );
        let span = ms(Some(to - from));
        table.row(vec![
            o.connections.to_string(),
            round.to_string(),
            format!("{span:.0}"),
            moved.to_string(),
            report.ok.to_string(),
            report.errors.len().to_string(),
            format!("{p_in:.2}"),
            format!("{p_out:.2}"),
            format!("{:.2}", p_in / p_out),
        ]);
        rows.push(json!({
            "connections": o.connections, "rebind": round, "tasks": o.tasks,
            "moving_to_last_moved_ms": span, "moved": moved,
            "one_handoff_each": moved_ok.is_ok(),
            "operations": report.ok, "failed": report.errors.len(),
            "errors_by_class": report.by_class(),
            "p99_in_window_ms": p_in, "p99_outside_ms": p_out,
            "grace_s": GRACE_S,
        }));
    }
    println!("## Handoff at scale ({size:?})\n");
    println!("{}", table.render());
    factory.destroy_all().await;
    Ok(json!({ "rows": rows }))
}
