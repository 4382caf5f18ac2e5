//! Background traffic through a client: writes and reads in a loop, every error
//! classified, every acknowledged write kept in a ledger to read back at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;
use futures::FutureExt as _;

use crate::client::{Client, ClientError};

/// What the traffic sends its requests through: the suite's own client, or
/// a client under test in another process, through its driver.
pub trait Requests: Send + Sync + 'static {
    /// Sends `cmd`; its reply, or how it failed.
    fn request<'a>(
        &'a self,
        cmd: &'a redis::Cmd,
    ) -> BoxFuture<'a, Result<redis::Value, ClientError>>;
}

impl Requests for Client {
    fn request<'a>(
        &'a self,
        cmd: &'a redis::Cmd,
    ) -> BoxFuture<'a, Result<redis::Value, ClientError>> {
        self.query::<redis::Value>(cmd).boxed()
    }
}

impl Requests for crate::driver::DriverClient {
    fn request<'a>(
        &'a self,
        cmd: &'a redis::Cmd,
    ) -> BoxFuture<'a, Result<redis::Value, ClientError>> {
        self.query(cmd).boxed()
    }
}

/// How many loops of writes and reads a client's traffic runs, and how many
/// requests the server holds beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Loops of writes and reads.
    pub loops: usize,
    /// Loops that keep one request held by the server, one per connection
    /// (up to a bound): whatever moment a node closes what is left on it,
    /// some are in flight there.
    pub held: usize,
}

impl Shape {
    /// The traffic of `loops` loops for a client whose pool holds `pool`
    /// connections, at most `held_max` held requests. A client through a
    /// driver hands each request a connection of its own, and one waits for
    /// a free connection: that wait would be timed as if the server held the
    /// request, so it is given at most as many requests at once as its pool
    /// holds (held ones only where the loops leave room). A cluster client's
    /// node connections carry only the loops.
    pub fn of(loops: usize, pool: usize, driven: bool, cluster: bool, held_max: usize) -> Shape {
        let pool = pool.max(1);
        let loops = if driven { loops.min(pool) } else { loops };
        let free = if driven { pool - loops } else { pool };
        let held = if cluster { 0 } else { free.min(held_max) };
        Shape { loops, held }
    }
}

/// `cmd` through `client`, its reply read as a `T`.
async fn typed<T: redis::FromRedisValue>(
    client: &dyn Requests,
    cmd: &redis::Cmd,
) -> Result<T, ClientError> {
    let v = client.request(cmd).await?;
    T::from_redis_value(v).map_err(|e| ClientError::Server(e.to_string()))
}

/// One failed operation.
#[derive(Clone, Debug)]
pub struct OpError {
    /// When it was sent.
    pub sent: Instant,
    /// When it failed.
    pub at: Instant,
    /// `SET key` or `GET key`.
    pub op: String,
    /// Why.
    pub error: ClientError,
}

/// What a workload did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: Vec<OpError>,
    /// Reads that returned something other than the acknowledged value.
    pub mismatches: Vec<String>,
    /// When each operation succeeded, in order.
    pub successes: Vec<Instant>,
    /// Each successful operation's latency, by when it completed (in order).
    pub latencies: Vec<(Instant, Duration)>,
    /// Held requests the server answered (their errors are in `errors`;
    /// they are not counted in `ok`, `successes` or `latencies`).
    pub held: u64,
    /// Its instants on the wall clock (the server's record keeps wall
    /// time).
    pub clock: WallClock,
}

/// An instant of this process and the wall-clock time it was: instants of
/// the traffic compared with times in the server's record.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    at: Instant,
    wall: SystemTime,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

impl WallClock {
    /// The instant of wall-clock time `t`.
    pub fn instant(&self, t: SystemTime) -> Instant {
        match t.duration_since(self.wall) {
            Ok(d) => self.at + d,
            Err(e) => self.at.checked_sub(e.duration()).unwrap_or(self.at),
        }
    }

    /// The wall-clock time of `i`.
    pub fn wall(&self, i: Instant) -> SystemTime {
        if i >= self.at {
            self.wall + (i - self.at)
        } else {
            self.wall - (self.at - i)
        }
    }
}

impl Report {
    /// Errors by class (timeout, connection, server, handshake).
    pub fn by_class(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for e in &self.errors {
            *m.entry(e.error.class()).or_insert(0) += 1;
        }
        m
    }
}

#[derive(Default)]
struct Shared {
    ok: AtomicU64,
    progress: tokio::sync::Notify,
    errors: Mutex<Vec<OpError>>,
    mismatches: Mutex<Vec<String>>,
    successes: Mutex<Vec<Instant>>,
    latencies: Mutex<Vec<(Instant, Duration)>>,
    /// Acknowledged writes: key -> value.
    ledger: Mutex<BTreeMap<String, String>>,
    /// Held requests answered.
    held: AtomicU64,
    clock: WallClock,
}

impl Shared {
    /// Notes an operation sent at `sent` that just succeeded (the count is
    /// bumped by the caller, after its own bookkeeping).
    fn succeeded(&self, sent: Instant) {
        let now = Instant::now();
        self.successes.lock().unwrap().push(now);
        self.latencies.lock().unwrap().push((now, now - sent));
    }
}

/// Background traffic of one client.
pub struct Workload {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Loops and held requests started (they outlive `tasks`, which a stop
    /// drains).
    concurrency: usize,
}

impl Workload {
    /// Starts `tasks` loops writing `prefix:*` keys through `client`, pausing
    /// `pace` between operations.
    pub fn start(
        client: Arc<dyn Requests>,
        prefix: &str,
        tasks: usize,
        pace: Duration,
    ) -> Workload {
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let handles = (0..tasks)
            .map(|t| {
                let (client, shared, stop) = (client.clone(), shared.clone(), stop.clone());
                let prefix = format!("{prefix}:{t}");
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.is_cancelled() {
                        i += 1;
                        let key = format!("{prefix}:{i}");
                        let value = format!("v{i}");
                        let set = redis::cmd("SET").arg(&key).arg(&value).clone();
                        let sent = Instant::now();
                        match client.request(&set).await {
                            Ok(_) => {
                                shared.ledger.lock().unwrap().insert(key.clone(), value.clone());
                                shared.succeeded(sent);
                                shared.ok.fetch_add(1, Ordering::Relaxed);
                                shared.progress.notify_waiters();
                            }
                            Err(error) => shared.errors.lock().unwrap().push(OpError {
                                sent,
                                at: Instant::now(),
                                op: format!("SET {key}"),
                                error,
                            }),
                        }
                        let get = redis::cmd("GET").arg(&key).clone();
                        let sent = Instant::now();
                        match typed::<Option<String>>(&*client, &get).await {
                            Ok(v) => {
                                shared.succeeded(sent);
                                shared.ok.fetch_add(1, Ordering::Relaxed);
                                let acked = shared.ledger.lock().unwrap().get(&key).cloned();
                                if acked.is_some() && v != acked {
                                    shared.mismatches.lock().unwrap().push(format!(
                                        "GET {key} returned {v:?} right after SET acknowledged {acked:?}"
                                    ));
                                }
                            }
                            Err(error) => shared.errors.lock().unwrap().push(OpError {
                                sent,
                                at: Instant::now(),
                                op: format!("GET {key}"),
                                error,
                            }),
                        }
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(pace) => {}
                        }
                    }
                })
            })
            .collect();
        Workload {
            shared,
            stop,
            tasks: handles,
            concurrency: tasks,
        }
    }

    /// Adds `n` loops that each keep one request held by the server for
    /// `hold` (`BLPOP` on a list that stays empty), one after another: a
    /// client that leaves its connections on a node until the node closes
    /// them loses those in flight. As a real shard does when it changes role
    /// (failover, migration), the server may end one early with `UNBLOCKED`:
    /// the server's answer, counted as answered; any other failure is an
    /// error of the traffic.
    pub fn hold_requests(
        &mut self,
        client: Arc<dyn Requests>,
        prefix: &str,
        n: usize,
        hold: Duration,
    ) {
        self.concurrency += n;
        for t in 0..n {
            let (client, shared, stop) = (client.clone(), self.shared.clone(), self.stop.clone());
            let key = format!("{prefix}:held:{t}");
            self.tasks.push(tokio::spawn(async move {
                let blpop = redis::cmd("BLPOP")
                    .arg(&key)
                    .arg(hold.as_secs_f64())
                    .clone();
                while !stop.is_cancelled() {
                    let sent = Instant::now();
                    match typed::<Option<Vec<String>>>(&*client, &blpop).await {
                        Ok(_) => {}
                        Err(ClientError::Server(e)) if e.starts_with("UNBLOCKED") => {}
                        Err(error) => {
                            shared.errors.lock().unwrap().push(OpError {
                                sent,
                                at: Instant::now(),
                                op: format!("BLPOP {key} (held {hold:?})"),
                                error,
                            });
                            // A request that fails at once (a client that
                            // stays down) is tried again at the traffic's
                            // pace, not in a spin.
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = tokio::time::sleep(crate::timing::TRAFFIC_PACE) => {}
                            }
                            continue;
                        }
                    }
                    shared.held.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }

    /// Requests it keeps in flight at most: one per loop, one per held
    /// request.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Successful operations so far.
    pub fn ok_count(&self) -> u64 {
        self.shared.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` operations succeeded in all.
    pub async fn wait_ok(&self, n: u64, within: Duration) -> anyhow::Result<()> {
        let shared = &self.shared;
        crate::wait::until(
            &shared.progress,
            within,
            &format!("{n} successful operations"),
            || (shared.ok.load(Ordering::Relaxed) >= n).then_some(()),
        )
        .await?;
        Ok(())
    }

    /// Stops the loops and reports.
    pub async fn stop(&mut self) -> Report {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.so_far()
    }

    /// What the traffic did so far (it keeps running).
    pub fn so_far(&self) -> Report {
        Report {
            ok: self.shared.ok.load(Ordering::Relaxed),
            errors: self.shared.errors.lock().unwrap().clone(),
            mismatches: self.shared.mismatches.lock().unwrap().clone(),
            successes: {
                let mut s = self.shared.successes.lock().unwrap().clone();
                s.sort();
                s
            },
            latencies: {
                let mut l = self.shared.latencies.lock().unwrap().clone();
                l.sort();
                l
            },
            held: self.shared.held.load(Ordering::Relaxed),
            clock: self.shared.clock,
        }
    }

    /// Number of acknowledged writes.
    pub fn acknowledged(&self) -> usize {
        self.shared.ledger.lock().unwrap().len()
    }

    /// Reads every acknowledged write back through `client`; returns what is
    /// missing or different.
    pub async fn verify(&self, client: &Client) -> Vec<String> {
        let ledger = self.shared.ledger.lock().unwrap().clone();
        let mut problems = Vec::new();
        for chunk in ledger.iter().collect::<Vec<_>>().chunks(500) {
            let mut mget = redis::cmd("MGET");
            for (k, _) in chunk {
                mget.arg(k.as_str());
            }
            let values = match client.query::<Vec<Option<String>>>(&mget).await {
                Ok(values) => Ok(values),
                // Keys of a database of several shards hash to different
                // slots: read them one by one.
                Err(e) if e.to_string().to_ascii_uppercase().contains("CROSSSLOT") => {
                    let mut values = Vec::new();
                    for (k, _) in chunk {
                        match client
                            .query::<Option<String>>(redis::cmd("GET").arg(k.as_str()))
                            .await
                        {
                            Ok(v) => values.push(v),
                            Err(e) => {
                                problems.push(format!("reading back {k}: {e}"));
                                values.push(None);
                            }
                        }
                    }
                    Ok(values)
                }
                Err(e) => Err(e),
            };
            match values {
                Ok(values) => {
                    for ((k, want), got) in chunk.iter().zip(values) {
                        if got.as_ref() != Some(*want) {
                            problems.push(format!("{k}: acknowledged {want:?}, read {got:?}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("reading back {} keys: {e}", chunk.len())),
            }
        }
        problems
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::Shape;

    #[test]
    fn a_drivers_client_is_never_given_more_requests_at_once_than_its_pool_holds() {
        let shape = |loops, pool, driven, cluster| Shape::of(loops, pool, driven, cluster, 8);
        // Ours multiplexes: two loops and a held request per connection.
        assert_eq!(shape(2, 1, false, false), Shape { loops: 2, held: 1 });
        assert_eq!(shape(2, 20, false, false), Shape { loops: 2, held: 8 });
        assert_eq!(shape(2, 4, false, true), Shape { loops: 2, held: 0 });
        // A driver's: as many at once as its pool holds.
        assert_eq!(shape(2, 1, true, false), Shape { loops: 1, held: 0 });
        assert_eq!(shape(2, 2, true, false), Shape { loops: 2, held: 0 });
        assert_eq!(shape(2, 5, true, false), Shape { loops: 2, held: 3 });
    }
}
