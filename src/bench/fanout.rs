//! MOVING fan-out: a `maint-e2e emulator` process with N raw connections
//! opted in on its `standalone` database; a `bind` is posted to its fault
//! injector and each connection notes when its MOVING arrived. Also the
//! emulator's resident memory: idle, with N connections, and at the same
//! point of every cycle over many rebinds.
//!
//! The connections are read by this process, on the same cores as the
//! emulator: the times include the readers' own cost.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::{quantile, Size, Table};
use crate::fault_injector::{Action, FaultInjectorClient};
use crate::EndpointsFile;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Opted-in connections for each fan-out measurement.
    pub sizes: Vec<usize>,
    /// Measurements per size.
    pub repeats: usize,
    /// Connections kept through the memory cycles.
    pub memory_connections: usize,
    /// Rebinds of the memory run.
    pub memory_cycles: usize,
}

impl Options {
    /// The defaults of a size.
    pub fn of(size: Size) -> Options {
        match size {
            Size::Smoke => Options {
                sizes: vec![10, 100],
                repeats: 1,
                memory_connections: 100,
                memory_cycles: 3,
            },
            Size::Full => Options {
                sizes: vec![100, 500, 1_000, 2_000, 5_000],
                repeats: 3,
                memory_connections: 5_000,
                memory_cycles: 100,
            },
        }
    }
}

/// The command every connection sends: RESP3, then the opt-in.
const OPT_IN: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*5\r\n$6\r\nCLIENT\r\n$19\r\nMAINT_NOTIFICATIONS\r\n$2\r\nON\r\n$20\r\nmoving-endpoint-type\r\n$11\r\ninternal-ip\r\n";

/// A `maint-e2e emulator` child process; stopped (SIGKILL by PID, its shards
/// stop with their guards) when dropped.
pub(super) struct EmulatorProcess {
    child: Child,
    /// Its process id.
    pub(super) pid: u32,
    /// Its fault injector.
    pub(super) api: FaultInjectorClient,
    port: u16,
    /// The `standalone` database.
    pub(super) bdb_id: u64,
    endpoints: tempfile::TempDir,
}

impl EmulatorProcess {
    /// Starts `exe emulator` with short timings; returns once it is ready.
    pub(super) async fn start(exe: &Path) -> Result<EmulatorProcess> {
        let dir = tempfile::tempdir()?;
        let endpoints = dir.path().join("endpoints.json");
        let mut child = Command::new(exe)
            .args([
                "emulator",
                "--nodes",
                "2",
                "--grace-s",
                "1",
                "--lead-s",
                "0.1",
            ])
            .args(["--hold-s", "0.1", "--settle-s", "0.2", "--window-s", "0.5"])
            .args(["--discovery-port", "0"])
            .arg("--endpoints-out")
            .arg(&endpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} emulator", exe.display()))?;
        let pid = child.id().context("the emulator exited at once")?;
        let stdout = child.stdout.take().context("the emulator's stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(60),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("the emulator did not print its ready line within 60 s")??;
        let ready: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the emulator's ready line {line:?} is not JSON"))?;
        let url = ready["fault_injector_url"]
            .as_str()
            .context("the ready line has no fault_injector_url")?;
        let file = EndpointsFile::load(&endpoints)?;
        let db = file.database("standalone")?;
        Ok(EmulatorProcess {
            api: FaultInjectorClient::new(url)?,
            port: db.primary_endpoint().port,
            bdb_id: db.bdb_id.context("the standalone database has no bdb_id")?,
            child,
            pid,
            endpoints: dir,
        })
    }

    /// The endpoints file it wrote.
    pub(super) fn endpoints_path(&self) -> std::path::PathBuf {
        self.endpoints.path().join("endpoints.json")
    }

    /// Resident set size in KiB, from `/proc`.
    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading the emulator's /proc status (Linux only)")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in the emulator's /proc status")
    }

    /// Stops it (SIGKILL by PID; its shards stop with their guards).
    pub(super) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// N opted-in connections, each noting when its first MOVING arrived.
struct Crowd {
    moving: mpsc::UnboundedReceiver<Instant>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Crowd {
    async fn open(port: u16, n: usize) -> Result<Crowd> {
        let (tx, moving) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel::<Result<()>>();
        // Not all at once: the listen backlog is finite.
        let gate = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, ready_tx, gate) = (tx.clone(), ready_tx.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let mut s = match opt_in(port).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                drop(permit);
                let _ = ready_tx.send(Ok(()));
                let mut buf = Vec::with_capacity(256);
                loop {
                    match s.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if contains(&buf, b"MOVING") {
                        let _ = tx.send(Instant::now());
                        buf.clear();
                        // Stay connected (idle) until the emulator closes it.
                        let mut sink = [0u8; 512];
                        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                        return;
                    }
                }
            }));
        }
        for _ in 0..n {
            match tokio::time::timeout(Duration::from_secs(60), ready.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => return Err(e.context("opening the connections")),
                Ok(None) | Err(_) => bail!("{n} connections did not all opt in within 60 s"),
            }
        }
        Ok(Crowd { moving, tasks })
    }

    /// Waits for `n` MOVING arrivals; returns their times, sorted.
    async fn arrivals(&mut self, n: usize, within: Duration) -> Result<Vec<Instant>> {
        let deadline = Instant::now() + within;
        let mut at = Vec::with_capacity(n);
        while at.len() < n {
            match tokio::time::timeout_at(deadline, self.moving.recv()).await {
                Ok(Some(t)) => at.push(t),
                _ => bail!(
                    "{} of {n} connections received MOVING within {within:?}",
                    at.len()
                ),
            }
        }
        at.sort();
        Ok(at)
    }

    fn close(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn opt_in(port: u16) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    s.write_all(OPT_IN).await?;
    let mut buf = Vec::with_capacity(512);
    while !contains(&buf, b"+OK\r\n") {
        if contains(&buf, b"-ERR") {
            bail!("the opt-in was refused: {}", String::from_utf8_lossy(&buf));
        }
        if s.read_buf(&mut buf).await? == 0 {
            bail!("the emulator closed a connection during the opt-in");
        }
    }
    Ok(s)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One rebind with `crowd` on the endpoint: (post -> first, post -> last) MOVING.
async fn rebind(emu: &EmulatorProcess, crowd: &mut Crowd, n: usize) -> Result<(f64, f64)> {
    let posted = Instant::now();
    let accepted = emu.api.submit(&Action::bind(emu.bdb_id)).await?;
    let at = crowd.arrivals(n, Duration::from_secs(30)).await?;
    let status = emu
        .api
        .wait(&accepted.action_id, Duration::from_secs(60))
        .await?;
    if !status.status.is_success() {
        bail!("the bind failed: {status:?}");
    }
    let ms = |t: Instant| (t - posted).as_secs_f64() * 1e3;
    Ok((ms(at[0]), ms(at[n - 1])))
}

/// Runs the benchmark with the emulator binary `exe`; prints its tables and
/// returns its figures.
pub async fn run(size: Size, o: &Options, exe: &Path) -> Result<Value> {
    let emu = EmulatorProcess::start(exe).await?;
    let outcome = measure(size, o, &emu).await;
    emu.stop().await;
    outcome
}

async fn measure(size: Size, o: &Options, emu: &EmulatorProcess) -> Result<Value> {
    // Before any client connection: shards up, databases created.
    let at_start = emu.rss_kib()?;
    let mut table = Table::new(&[
        "connections",
        "post -> first MOVING ms",
        "post -> last MOVING ms",
        "first -> last ms",
        "us per connection",
    ]);
    let mut rows = Vec::new();
    for &n in &o.sizes {
        let mut firsts = Vec::new();
        let mut lasts = Vec::new();
        for _ in 0..o.repeats {
            let mut crowd = Crowd::open(emu.port, n).await?;
            let (first, last) = rebind(emu, &mut crowd, n).await?;
            crowd.close();
            firsts.push(first);
            lasts.push(last);
        }
        let spread: Vec<f64> = firsts.iter().zip(&lasts).map(|(f, l)| l - f).collect();
        let (first, last, spread) = (
            super::median(&firsts),
            super::median(&lasts),
            super::median(&spread),
        );
        let per = spread * 1e3 / n as f64;
        table.row(vec![
            n.to_string(),
            format!("{first:.1}"),
            format!("{last:.1}"),
            format!("{spread:.1}"),
            format!("{per:.1}"),
        ]);
        rows.push(json!({
            "connections": n, "repeats": o.repeats,
            "post_to_first_ms": first, "post_to_last_ms": last,
            "first_to_last_ms": spread, "us_per_connection": per,
        }));
    }
    println!(
        "## MOVING fan-out ({size:?}, median of {} rebinds)\n",
        o.repeats
    );
    println!("{}", table.render());

    // Memory: the same point of every cycle (connections open, before the bind).
    let mut rss = Vec::with_capacity(o.memory_cycles);
    for _ in 0..o.memory_cycles {
        let mut crowd = Crowd::open(emu.port, o.memory_connections).await?;
        rss.push(emu.rss_kib()?);
        rebind(emu, &mut crowd, o.memory_connections).await?;
        crowd.close();
    }
    let after = emu.rss_kib()?;
    let slope = slope_kib_per_cycle(&rss);
    let mut sorted: Vec<f64> = rss.iter().map(|&k| k as f64).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut mem = Table::new(&[
        "connections",
        "rebinds",
        "RSS, no connection yet, MiB",
        "RSS with them, first cycle, MiB",
        "RSS, last cycle, MiB",
        "max MiB",
        "growth KiB per cycle",
    ]);
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    mem.row(vec![
        o.memory_connections.to_string(),
        o.memory_cycles.to_string(),
        mib(at_start),
        mib(rss.first().copied().unwrap_or(0)),
        mib(rss.last().copied().unwrap_or(0)),
        format!("{:.1}", quantile(&sorted, 1.0) / 1024.0),
        format!("{slope:.1}"),
    ]);
    println!("## Emulator resident memory ({size:?})\n");
    println!("{}", mem.render());
    Ok(json!({
        "fanout": rows,
        "memory": {
            "connections": o.memory_connections,
            "cycles": o.memory_cycles,
            "rss_at_start_kib": at_start,
            "rss_per_cycle_kib": rss,
            "rss_after_kib": after,
            "growth_kib_per_cycle": slope,
        },
    }))
}

/// The least-squares slope of `v` over its index (KiB per cycle); cycles
/// after the first half only, so that warm-up (allocator pools filling) does
/// not count as growth.
fn slope_kib_per_cycle(v: &[u64]) -> f64 {
    let tail = &v[v.len() / 2..];
    let n = tail.len() as f64;
    if tail.len() < 2 {
        return 0.0;
    }
    let mx = (n - 1.0) / 2.0;
    let my = tail.iter().map(|&y| y as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, &y) in tail.iter().enumerate() {
        let dx = i as f64 - mx;
        num += dx * (y as f64 - my);
        den += dx * dx;
    }
    num / den
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_zero_when_flat_and_follows_growth() {
        assert_eq!(slope_kib_per_cycle(&[100, 100, 100, 100]), 0.0);
        let growing: Vec<u64> = (0..10).map(|i| 1000 + 8 * i).collect();
        assert!((slope_kib_per_cycle(&growing) - 8.0).abs() < 1e-9);
        // Warm-up in the first half does not count.
        assert_eq!(slope_kib_per_cycle(&[10, 500, 900, 900, 900, 900]), 0.0);
    }
}
