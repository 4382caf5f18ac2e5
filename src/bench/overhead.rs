//! Proxy overhead: the same `redis-benchmark` GET/SET load straight to a shard,
//! through a plain byte forwarder, through twemproxy (when `nutcracker` is
//! installed) and through an emulator endpoint, plain and TLS. The contenders
//! alternate within each round; each figure is the median over the rounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::forwarder::Forwarder;
use super::{median, Size, Table};
use crate::emulator::{free_port, Emulator, EmulatorConfig};
use crate::DatabaseSpec;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Concurrent connections of `redis-benchmark` (`-c`).
    pub clients: Vec<usize>,
    /// Pipeline depths (`-P`).
    pub pipelines: Vec<usize>,
    /// Rounds; every contender runs once per round.
    pub rounds: usize,
    /// Requests per test, scaled down for small loads (see [`requests`]).
    pub requests: usize,
}

impl Options {
    /// The defaults of a size.
    pub fn of(size: Size) -> Options {
        match size {
            // Three rounds, their median: one short round is at the mercy
            // of a moment's noise (a pipelined test of 8,000 requests
            // takes 10 ms through the forwarder).
            Size::Smoke => Options {
                clients: vec![1, 50],
                pipelines: vec![1, 16],
                rounds: 3,
                requests: 2_000,
            },
            Size::Full => Options {
                clients: vec![1, 50],
                pipelines: vec![1, 16],
                rounds: 5,
                requests: 200_000,
            },
        }
    }
}

/// Requests for one test, so that every test takes about as long: a single
/// unpipelined connection gets a tenth, a pipelined load four times as many.
fn requests(o: &Options, clients: usize, pipeline: usize) -> usize {
    match (clients, pipeline) {
        (1, 1) => (o.requests / 10).max(1_000),
        (_, 1) => o.requests,
        _ => o.requests * 4,
    }
}

/// One path the traffic can take.
struct Contender {
    name: &'static str,
    addr: SocketAddr,
    /// The CA to trust, for a TLS endpoint.
    ca: Option<PathBuf>,
}

/// One `redis-benchmark` line.
#[derive(Clone, Debug)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs the benchmark; prints its table and returns its figures.
pub async fn run(size: Size, o: &Options) -> Result<Value> {
    let bench = which("redis-benchmark").context(
        "redis-benchmark is not on PATH; install it (Debian/Ubuntu: apt-get install redis-tools)",
    )?;
    let emu = Emulator::new(EmulatorConfig::default())?;
    let plain = emu
        .create_database(DatabaseSpec {
            name: Some("bench".into()),
            replication: Some(false),
            ..DatabaseSpec::default()
        })
        .await?;
    let tls = emu
        .create_database(DatabaseSpec {
            name: Some("bench-tls".into()),
            replication: Some(false),
            tls: Some(true),
            ..DatabaseSpec::default()
        })
        .await?;
    let shard = plain.shard_sets().await[0].primary;
    let forwarder = Forwarder::start(shard).await?;
    let twemproxy = match which("nutcracker") {
        Some(bin) => Some(Twemproxy::start(&bin, shard, emu.run_dir()).await?),
        None => {
            eprintln!(
                "nutcracker (twemproxy) is not on PATH: left out (apt-get install nutcracker)"
            );
            None
        }
    };
    let mut contenders = vec![
        Contender {
            name: "direct",
            addr: shard,
            ca: None,
        },
        Contender {
            name: "forwarder",
            addr: forwarder.addr,
            ca: None,
        },
    ];
    if let Some(t) = &twemproxy {
        contenders.push(Contender {
            name: "twemproxy",
            addr: t.addr,
            ca: None,
        });
    }
    contenders.push(Contender {
        name: "emulator",
        addr: ([127, 0, 0, 1], plain.port()).into(),
        ca: None,
    });
    contenders.push(Contender {
        name: "emulator-tls",
        addr: ([127, 0, 0, 1], tls.port()).into(),
        ca: tls.config().certificates_location.map(|d| d.join("ca.crt")),
    });

    let mut rows = Vec::new();
    let mut table = Table::new(&[
        "clients",
        "pipeline",
        "test",
        "path",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "x forwarder",
    ]);
    for &clients in &o.clients {
        for &pipeline in &o.pipelines {
            let n = requests(o, clients, pipeline);
            // (contender, test) -> samples over the rounds
            let mut samples: BTreeMap<(usize, String), Vec<Sample>> = BTreeMap::new();
            for round in 0..o.rounds {
                for k in 0..contenders.len() {
                    // Each round starts with another contender.
                    let i = (k + round) % contenders.len();
                    let c = &contenders[i];
                    for (test, s) in redis_benchmark(&bench, c, clients, pipeline, n).await? {
                        samples.entry((i, test)).or_default().push(s);
                    }
                }
            }
            let med = |i: usize, test: &str, f: fn(&Sample) -> f64| {
                median(
                    &samples
                        .get(&(i, test.to_string()))
                        .map(|v| v.iter().map(f).collect::<Vec<_>>())
                        .unwrap_or_default(),
                )
            };
            for test in ["SET", "GET"] {
                let base = med(1, test, |s| s.rps);
                for (i, c) in contenders.iter().enumerate() {
                    let (rps, p50, p99) = (
                        med(i, test, |s| s.rps),
                        med(i, test, |s| s.p50_ms),
                        med(i, test, |s| s.p99_ms),
                    );
                    let ratio = if base > 0.0 { rps / base } else { 0.0 };
                    table.row(vec![
                        clients.to_string(),
                        pipeline.to_string(),
                        test.into(),
                        c.name.into(),
                        format!("{rps:.0}"),
                        format!("{p50:.3}"),
                        format!("{p99:.3}"),
                        format!("{ratio:.2}"),
                    ]);
                    rows.push(json!({
                        "clients": clients, "pipeline": pipeline, "test": test,
                        "path": c.name, "requests": n, "rounds": o.rounds,
                        "ops_per_s": rps, "p50_ms": p50, "p99_ms": p99,
                        "ratio_to_forwarder": ratio,
                    }));
                }
            }
        }
    }
    println!(
        "## Proxy overhead ({size:?}, median of {} rounds)\n",
        o.rounds
    );
    println!("{}", table.render());
    drop(forwarder);
    drop(twemproxy);
    emu.shutdown().await;
    Ok(json!({ "rows": rows }))
}

/// Runs `redis-benchmark -t set,get` against `c`; returns each test's figures.
async fn redis_benchmark(
    bin: &Path,
    c: &Contender,
    clients: usize,
    pipeline: usize,
    requests: usize,
) -> Result<Vec<(String, Sample)>> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "-h",
        &c.addr.ip().to_string(),
        "-p",
        &c.addr.port().to_string(),
    ])
    .args(["-t", "set,get", "--csv", "-q"])
    .args(["-c", &clients.to_string(), "-P", &pipeline.to_string()])
    .args(["-n", &requests.to_string()])
    .stdin(Stdio::null())
    .kill_on_drop(true);
    if let Some(ca) = &c.ca {
        cmd.arg("--tls").arg("--cacert").arg(ca);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .with_context(|| format!("redis-benchmark against {} ran over 300 s", c.name))?
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let samples = parse_csv(&text);
    if !out.status.success() || samples.len() < 2 {
        bail!(
            "redis-benchmark against {} ({}) failed ({}): {} {}",
            c.name,
            c.addr,
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(samples)
}

/// Reads `redis-benchmark --csv` output: a header, then one quoted line per test.
fn parse_csv(text: &str) -> Vec<(String, Sample)> {
    let mut lines = text.lines().filter(|l| l.starts_with('"'));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').map(|c| c.trim_matches('"')).collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(rps), Some(p50), Some(p99)) = (at("rps"), at("p50_latency_ms"), at("p99_latency_ms"))
    else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').map(|c| c.trim_matches('"')).collect();
            let num = |i: usize| cells.get(i).and_then(|c| c.parse::<f64>().ok());
            Some((
                cells.first()?.to_string(),
                Sample {
                    rps: num(rps)?,
                    p50_ms: num(p50)?,
                    p99_ms: num(p99)?,
                },
            ))
        })
        .collect()
}

/// A twemproxy (`nutcracker`) in front of one shard; stopped when dropped.
struct Twemproxy {
    addr: SocketAddr,
    _child: Child,
}

impl Twemproxy {
    async fn start(bin: &Path, to: SocketAddr, dir: &Path) -> Result<Twemproxy> {
        let (port, stats) = (free_port()?, free_port()?);
        let conf = dir.join("nutcracker.yml");
        std::fs::write(
            &conf,
            format!(
                "bench:\n  listen: 127.0.0.1:{port}\n  redis: true\n  preconnect: true\n  servers:\n    - {to}:1\n"
            ),
        )?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-s", &stats.to_string()])
            .arg("-o")
            .arg(dir.join("nutcracker.log"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting nutcracker")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        use crate::wait::{poll, Look};
        poll(
            Duration::from_millis(20),
            Duration::from_secs(5),
            || async {
                Ok::<_, anyhow::Error>(match tokio::net::TcpStream::connect(addr).await {
                    Ok(_) => Look::Ready(()),
                    Err(e) => Look::NotYet(e),
                })
            },
        )
        .await?
        .with_context(|| format!("nutcracker did not listen on {addr} within 5 s"))?;
        Ok(Twemproxy {
            addr,
            _child: child,
        })
    }
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"909090.94\",\"0.485\",\"0.024\",\"0.391\",\"1.327\",\"2.415\",\"3.679\"\n\"GET\",\"1333333.38\",\"0.331\",\"0.024\",\"0.335\",\"0.527\",\"0.599\",\"0.631\"\n";
        let s = parse_csv(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "SET");
        assert_eq!(s[0].1.rps, 909090.94);
        assert_eq!(s[1].1.p50_ms, 0.335);
        assert_eq!(s[1].1.p99_ms, 0.599);
    }

    #[test]
    fn csv_without_the_latency_columns_gives_nothing() {
        assert!(parse_csv("\"test\",\"rps\"\n\"SET\",\"1\"\n").is_empty());
    }
}
