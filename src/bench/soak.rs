//! Soak: a `maint-e2e emulator` process through many failover, migrate and
//! bind actions in turn (short windows), under steady traffic from a client
//! of several connections. Every so many actions: the emulator's resident
//! memory, open file descriptors, threads and `redis-server` processes, and
//! the traffic's operations and errors. Flat figures mean nothing leaks.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::fanout::EmulatorProcess;
use super::{Size, Table};
use crate::client::ClientOptions;
use crate::fault_injector::{Action, TimingOverrides};
use crate::workload::Workload;
use crate::{ClientFactory, Tracker};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Actions in all (failover, migrate, bind in turn).
    pub actions: usize,
    /// Actions between two samples.
    pub every: usize,
    /// Connections of the client.
    pub connections: usize,
}

impl Options {
    /// The defaults of a size.
    pub fn of(size: Size) -> Options {
        match size {
            Size::Smoke => Options {
                actions: 6,
                every: 3,
                connections: 4,
            },
            Size::Full => Options {
                actions: 1_500,
                every: 150,
                connections: 8,
            },
        }
    }
}

/// One reading of the emulator process and the traffic.
struct Sample {
    actions: usize,
    secs: f64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    shards: usize,
    ok: u64,
}

/// Short windows: each action takes well under a second or two.
fn quick() -> TimingOverrides {
    TimingOverrides {
        grace_s: Some(0.4),
        lead_s: Some(0.05),
        window_s: Some(0.3),
        settle_s: Some(0.1),
        hold_s: Some(0.05),
    }
}

/// `redis-server` processes under `pid`, from `/proc`.
fn shard_processes(pid: u32) -> Result<usize> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc (Linux only)")? {
        let Ok(name) = entry.map(|e| e.file_name()) else {
            continue;
        };
        let Ok(p) = name.to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the name may hold spaces.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        parent_of.push((p, ppid, comm));
    }
    let under = |mut p: u32| {
        for _ in 0..16 {
            match parent_of.iter().find(|(q, _, _)| *q == p) {
                Some((_, ppid, _)) if *ppid == pid => return true,
                Some((_, ppid, _)) => p = *ppid,
                None => return false,
            }
        }
        false
    };
    Ok(parent_of
        .iter()
        .filter(|(p, _, comm)| comm == "redis-server" && under(*p))
        .count())
}

fn read(emu: &EmulatorProcess, wl: &Workload, actions: usize, began: Instant) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", emu.pid))
        .context("reading the emulator's /proc status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        actions,
        secs: began.elapsed().as_secs_f64(),
        rss_kib: field("VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{}/fd", emu.pid))?.count(),
        threads: field("Threads:"),
        shards: shard_processes(emu.pid)?,
        ok: wl.ok_count(),
    })
}

/// Runs the soak; prints its table and returns its figures.
pub async fn run(size: Size, o: &Options, exe: &Path) -> Result<Value> {
    let emu = EmulatorProcess::start(exe).await?;
    let result = soak(size, o, &emu).await;
    emu.stop().await;
    result
}

async fn soak(size: Size, o: &Options, emu: &EmulatorProcess) -> Result<Value> {
    let file = crate::EndpointsFile::load(&emu.endpoints_path())?;
    let db = file.database("standalone")?.clone();
    let factory = ClientFactory::new(db, Arc::new(Tracker::new()));
    let client = factory
        .create(
            "soak",
            ClientOptions {
                pool_size: o.connections,
                relaxed_timeout: Duration::from_secs(3),
                ..ClientOptions::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("connecting the soak's client: {}", e.chain()))?;
    let mut wl = Workload::start(client.clone(), "soak", 2, Duration::from_millis(5));
    wl.wait_ok(20, Duration::from_secs(10)).await?;
    let began = Instant::now();
    let mut samples = vec![read(emu, &wl, 0, began)?];
    let mut failed_actions = Vec::new();
    for i in 0..o.actions {
        let action = match i % 3 {
            0 => Action::failover(emu.bdb_id),
            1 => Action::migrate(emu.bdb_id),
            _ => Action::bind(emu.bdb_id),
        }
        .with_timing(quick());
        if let Err(e) = emu.api.run(&action, Duration::from_secs(30)).await {
            failed_actions.push(format!("{} #{i}: {e}", action.type_name()));
            if failed_actions.len() > 10 {
                bail!("more than 10 actions failed: {failed_actions:?}");
            }
        }
        if (i + 1) % o.every == 0 || i + 1 == o.actions {
            samples.push(read(emu, &wl, i + 1, began)?);
        }
    }
    let report = wl.stop().await;
    let lost = wl.verify(&client).await;
    client.close().await;
    let mut t = Table::new(&[
        "actions",
        "seconds",
        "RSS MiB",
        "fds",
        "threads",
        "redis-server",
        "ops ok",
    ]);
    for s in &samples {
        t.row(vec![
            s.actions.to_string(),
            format!("{:.0}", s.secs),
            format!("{:.1}", s.rss_kib as f64 / 1024.0),
            s.fds.to_string(),
            s.threads.to_string(),
            s.shards.to_string(),
            s.ok.to_string(),
        ]);
    }
    println!("## Soak ({size:?}): failover, migrate, bind in turn under traffic\n");
    println!("{}", t.render());
    println!(
        "{} operations, {} failed ({:?}), {} acknowledged writes lost or wrong, {} actions failed",
        report.ok,
        report.errors.len(),
        report.by_class(),
        lost.len(),
        failed_actions.len()
    );
    let (first, last) = (&samples[0], samples.last().expect("one sample at least"));
    Ok(json!({
        "actions": o.actions,
        "connections": o.connections,
        "seconds": last.secs,
        "operations": report.ok,
        "errors": report.errors.len(),
        "errors_by_class": report.by_class(),
        "writes_lost": lost.len(),
        "failed_actions": failed_actions,
        "rss_kib": {"start": first.rss_kib, "end": last.rss_kib, "max": samples.iter().map(|s| s.rss_kib).max()},
        "fds": {"start": first.fds, "end": last.fds, "max": samples.iter().map(|s| s.fds).max()},
        "threads": {"start": first.threads, "end": last.threads},
        "redis_servers": {"start": first.shards, "end": last.shards, "max": samples.iter().map(|s| s.shards).max()},
        "samples": samples.iter().map(|s| json!({
            "actions": s.actions, "seconds": s.secs, "rss_kib": s.rss_kib, "fds": s.fds,
            "threads": s.threads, "redis_servers": s.shards, "ok": s.ok,
        })).collect::<Vec<_>>(),
    }))
}
