//! What the endpoint proxy costs: round-trip latency and throughput of the same
//! traffic straight to a shard and through the emulator's proxy.
//!
//! `cargo bench --bench proxy` (needs redis-server).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use maint_e2e::emulator::{Emulator, EmulatorConfig};
use maint_e2e::DatabaseSpec;
use redis::aio::MultiplexedConnection;

async fn connect(addr: &str) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/?protocol=resp3"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Sequential PINGs: latency percentiles.
async fn latency(addr: &str, n: usize) -> (Duration, Duration, Duration) {
    let mut c = connect(addr).await;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99), at(0.999))
}

/// `tasks` concurrent writers on one multiplexed connection: operations per second.
async fn throughput(addr: &str, tasks: usize, per_task: usize) -> f64 {
    let c = connect(addr).await;
    let t = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for j in 0..per_task {
                    let _: () = redis::cmd("SET")
                        .arg(format!("bench:{i}:{j}"))
                        .arg("value")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    (tasks * per_task) as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let emu = Emulator::new(EmulatorConfig::default()).expect("redis-server must be installed");
    let db = emu
        .create_database(DatabaseSpec {
            replication: Some(false),
            ..DatabaseSpec::default()
        })
        .await
        .unwrap();
    let shard = db.shard_sets().await[0].primary.to_string();
    let proxy = format!("127.0.0.1:{}", db.port());
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>14}",
        "path", "p50", "p99", "p99.9", "SET ops/s"
    );
    for (name, addr) in [("direct", &shard), ("proxy", &proxy)] {
        let _ = latency(addr, 2_000).await; // warm-up
        let (p50, p99, p999) = latency(addr, 20_000).await;
        let ops = throughput(addr, 64, 2_000).await;
        println!("{name:<8} {p50:>10.1?} {p99:>10.1?} {p999:>10.1?} {ops:>14.0}");
    }
    emu.shutdown().await;
}
