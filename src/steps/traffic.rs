//! Background traffic and the three closing checks: no errors, every
//! acknowledged write readable, timeouts back to their configured values.

use anyhow::anyhow;
use cucumber::{given, then};

use tokio::time::Instant;

use super::{MaintWorld, StepResult, Traffic};
use crate::client::{ClientError, ClientOptions, Mode};
use crate::fault_injector::{Action, BdbId};
use crate::timeline::{self, traffic_clean, Phase};
use crate::timing::{
    BAND_SLACK, GRACE_MARGIN, HELD_REQUEST, HELD_REQUESTS_MAX, PATIENT_RESPONSE_TIMEOUT,
    PROVED_TIMEOUT_MAX, TRAFFIC_PACE, TRAFFIC_PHASE_MIN, TRAFFIC_WARM_UP,
};
use crate::workload::{Report, Workload};

/// Starts writes and reads through the client, two loops.
#[given(expr = "steady traffic from {string}")]
async fn given_traffic(w: &mut MaintWorld, client: String) -> StepResult {
    w.start_traffic(&client, DEFAULT_LOOPS).await?;
    Ok(())
}

/// Starts traffic from every client of the scenario: two loops each, or
/// `n` requests in flight at a time.
#[given(regex = r"^steady traffic (?:of (\d+) concurrent requests )?from every client$")]
async fn given_traffic_from_all(w: &mut MaintWorld, loops: String) -> StepResult {
    let loops = match loops.as_str() {
        "" => DEFAULT_LOOPS,
        n => match n.parse() {
            Ok(n @ 1..=256) => n,
            _ => fail!("{n} concurrent requests: between 1 and 256"),
        },
    };
    let names: Vec<String> = w.clients.keys().cloned().collect();
    if names.is_empty() {
        fail!("no client yet; create them with `Given a client \"app\" ...`");
    }
    for name in names {
        w.start_traffic(&name, loops).await?;
    }
    Ok(())
}

/// Loops of steady traffic a client runs unless told otherwise.
const DEFAULT_LOOPS: usize = 2;

/// The traffic of every client together completed at least `n` operations.
#[then(expr = "the traffic completed at least {int} operations")]
async fn then_at_least(w: &mut MaintWorld, n: u64) -> StepResult {
    let names = w.stop_traffic().await?;
    let mut total = 0;
    let mut each = Vec::new();
    for name in &names {
        let (report, _) = w.traffic_report(name)?;
        total += report.ok;
        each.push(format!("{name}: {}", report.ok));
    }
    if total < n {
        fail!(
            "the traffic completed {total} operations ({}), fewer than {n}",
            each.join(", ")
        );
    }
    Ok(())
}

impl MaintWorld {
    /// Starts `loops` loops of writes and reads through `client`, once they
    /// have shown their first successes.
    pub async fn start_traffic(&mut self, client: &str, loops: usize) -> anyhow::Result<()> {
        let requests = self.requests(client)?;
        let prefix = format!("{}:{client}", self.prefix);
        let pool = self.options_of(client)?.pool_size;
        let driven = self.record(client)?.driven.is_some();
        // A cluster client's node connections carry only the loops.
        let cluster = self
            .record(client)?
            .client
            .as_ref()
            .is_some_and(|c| c.is_cluster());
        let shape = crate::workload::Shape::of(loops, pool, driven, cluster, HELD_REQUESTS_MAX);
        let mut workload = Workload::start(requests.clone(), &prefix, shape.loops, TRAFFIC_PACE);
        workload.hold_requests(requests, &prefix, shape.held, HELD_REQUEST);
        // Traffic is flowing once the first writes are acknowledged.
        workload
            .wait_ok(10, TRAFFIC_WARM_UP)
            .await
            .map_err(|e| anyhow!("traffic from {client:?} did not start: {e}"))?;
        self.record_mut(client)?.traffic = Some(Traffic {
            workload,
            report: None,
        });
        Ok(())
    }

    /// Stops every client's traffic, once it has shown a few more successes
    /// (the phase after the maintenance); returns the names of the clients
    /// that had some, or an error when none had.
    pub(super) async fn stop_traffic(&mut self) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for (name, r) in &mut self.clients {
            if let Some(t) = &mut r.traffic {
                if t.report.is_none() {
                    let more = t.workload.ok_count() + 10;
                    // Shown in the report when it does not happen.
                    let _ = t.workload.wait_ok(more, TRAFFIC_WARM_UP).await;
                    t.report = Some(t.workload.stop().await);
                }
                names.push(name.clone());
            }
        }
        if names.is_empty() {
            fail!("no traffic ran; start it with `Given steady traffic from \"app\"`");
        }
        Ok(names)
    }

    /// The report of `client`'s stopped traffic and the phases its timeline shows.
    pub(super) fn traffic_report(&self, client: &str) -> anyhow::Result<(&Report, Vec<Phase>)> {
        let report = self
            .record(client)?
            .traffic
            .as_ref()
            .and_then(|t| t.report.as_ref())
            .ok_or_else(|| anyhow!("the traffic of {client:?} has not stopped"))?;
        let (Some(start), Some(end)) = (report.successes.first(), report.successes.last()) else {
            fail!("the traffic of {client:?} completed no operation");
        };
        let phases = timeline::phases(&self.tracker.timeline(client), *start, *end);
        Ok((report, phases))
    }

    /// When the scenario's maintenance ran: every action, posted to ended.
    fn maintenance_spans(&self) -> Vec<(Instant, Instant)> {
        self.actions
            .iter()
            .map(|a| (a.started, a.ended.unwrap_or_else(Instant::now)))
            .collect()
    }

    /// The traffic of every client saw errors of `class` only, and only
    /// while the scenario's maintenance ran.
    async fn errors_during_maintenance(&mut self, class: &str) -> anyhow::Result<()> {
        let spans = self.maintenance_spans();
        if spans.is_empty() {
            fail!("no maintenance ran in this scenario");
        }
        for name in self.stop_traffic().await? {
            let (report, phases) = self.traffic_report(&name)?;
            let slack = self
                .options_of(&name)?
                .relaxed_effective()
                .unwrap_or_default();
            timeline::errors_only_of_class_within(report, class, &spans, slack)
                .map_err(|e| anyhow!("{e}\n{}", timeline::describe_phases(report, &phases)))?;
        }
        Ok(())
    }
}

/// Zero failed operations in every workload of the scenario, and requests
/// succeeded in every phase: before the first notification, inside each
/// window, after the last.
#[then("the traffic saw no errors")]
async fn then_no_errors(w: &mut MaintWorld) -> StepResult {
    for name in w.stop_traffic().await? {
        let (report, phases) = w.traffic_report(&name)?;
        let shown = |e: timeline::Unmet| {
            w.unmet(
                &name,
                timeline::Unmet(format!(
                    "{e}\n{}",
                    timeline::describe_phases(report, &phases)
                )),
            )
        };
        traffic_clean(report).map_err(shown)?;
        // An unbounded timeout bounds nothing: then the scenario's patience does.
        let max_gap = w
            .options_of(&name)?
            .relaxed_effective()
            .unwrap_or(w.patience());
        timeline::traffic_in_every_phase(report, &phases, TRAFFIC_PHASE_MIN, max_gap)
            .map_err(shown)?;
    }
    Ok(())
}

/// The negative control of "saw no errors": a client without the behaviour
/// under test, whose requests the maintenance held longer than its timeout.
#[then("the traffic saw timeouts during the maintenance, and no other error")]
async fn then_timeouts_during(w: &mut MaintWorld) -> StepResult {
    w.errors_during_maintenance("timeout").await?;
    Ok(())
}

/// Every write the server acknowledged reads back with its value.
#[then("every acknowledged write is readable")]
async fn then_writes_readable(w: &mut MaintWorld) -> StepResult {
    for (name, acknowledged, problems) in w.read_back().await? {
        if !problems.is_empty() {
            fail!(
                "{} of {acknowledged} acknowledged writes from {name:?} are lost or wrong; first: {:?}",
                problems.len(),
                &problems[..problems.len().min(5)]
            );
        }
    }
    Ok(())
}

impl MaintWorld {
    /// Stops the traffic and reads every acknowledged write back through a
    /// client of its own; per client with traffic: its name, how many writes
    /// were acknowledged, and those missing or different.
    pub(super) async fn read_back(&mut self) -> anyhow::Result<Vec<(String, usize, Vec<String>)>> {
        let names = self.stop_traffic().await?;
        let reader = self
            .env()?
            .factory
            .create(
                &format!("{}-reader", self.prefix),
                ClientOptions {
                    mode: Mode::Disabled,
                    response_timeout: Some(PATIENT_RESPONSE_TIMEOUT),
                    ..ClientOptions::default()
                },
            )
            .await
            .map_err(|e| anyhow!("connecting to read back: {}", e.chain()))?;
        let mut out = Vec::new();
        for name in names {
            let Some(t) = &self.record(&name)?.traffic else {
                continue;
            };
            let wl = &t.workload;
            let problems = wl.verify(&reader).await;
            let acknowledged = wl.acknowledged();
            self.record_mut(&name)?.writes_checked = acknowledged - problems.len();
            out.push((name, acknowledged, problems));
        }
        reader.close().await;
        Ok(out)
    }
}

/// Every connection is un-relaxed within its tail, and (on the emulator) a
/// request whose reply comes later than the configured timeout times out
/// after it, on every connection: the configured timeout is in force on real
/// requests, not only in the client's own record.
#[then(expr = "the timeouts of {string} are back to their configured values")]
async fn then_timeouts_restored(w: &mut MaintWorld, client: String) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        w.prove_timeout_through_driver(&client).await?;
        return Ok(());
    }
    let c = w.client(&client)?;
    let configured = c.options().response_timeout;
    let within = c.options().post_relaxed() + GRACE_MARGIN;
    let conns = c.connections();
    let unrelaxed = w
        .tracker
        .wait_on(&client, within, "every connection to be un-relaxed", |_| {
            conns.iter().all(|c| !c.is_relaxed()).then_some(())
        })
        .await;
    let Some(timeout) = configured.filter(|t| *t <= PROVED_TIMEOUT_MAX) else {
        // No request can prove a timeout this long in a scenario's time:
        // the client's own account is all there is.
        unrelaxed?;
        return Ok(());
    };
    if !w.emulator_target().await? {
        w.not_checked(&format!(
            "the configured timeout of {client:?} on a real request (no reply can be delayed here; the client's own account decides instead)"
        ));
        unrelaxed?;
        return Ok(());
    }
    // The client's account said when to send the probe; the probe decides.
    w.prove_timeout(&client, &conns, timeout).await?;
    Ok(())
}

impl MaintWorld {
    /// Proves `timeout` on real requests: with every reply of the database
    /// delayed beyond it, a GET on each of `conns` times out after it.
    pub(super) async fn prove_timeout(
        &mut self,
        client: &str,
        conns: &[std::sync::Arc<crate::client::connection::ManagedConnection>],
        timeout: std::time::Duration,
    ) -> anyhow::Result<()> {
        let delay = timeout + BAND_SLACK;
        for (conn, r, took) in self.delayed_gets(client, conns, delay).await? {
            let timed_out = matches!(r, Err(ClientError::Timeout { .. }));
            if !timed_out || !timeline::in_band(took, timeout, timeout + BAND_SLACK) {
                anyhow::bail!(
                    "a GET on connection {conn} of {client:?} whose reply came {delay:?} late ended {r:?} after {took:?}; expected a timeout after {timeout:?}:\n{}",
                    self.tracker.describe(client)
                );
            }
        }
        Ok(())
    }

    /// Proves the configured timeout of a client under test through its
    /// driver on real requests: with every reply of the database delayed
    /// beyond it, GETs (as many at once as it has connections) time out
    /// after it. Its pool, not the suite, picks their connections; a client
    /// still relaxed is given until `GRACE_MARGIN` to come back.
    async fn prove_timeout_through_driver(&mut self, client: &str) -> anyhow::Result<()> {
        let o = self.options_of(client)?;
        let Some(timeout) = o.response_timeout.filter(|t| *t <= PROVED_TIMEOUT_MAX) else {
            self.not_checked(&format!(
                "the configured timeout of {client:?} (too long, or none, for a request to prove)"
            ));
            return Ok(());
        };
        if !self.emulator_target().await? {
            self.not_checked(&format!(
                "the configured timeout of {client:?} on a real request (no reply can be delayed here)"
            ));
            return Ok(());
        }
        let requests = self.requests(client)?;
        let delay = timeout + BAND_SLACK;
        let key = format!("{}:{client}:late", self.prefix);
        let deadline = Instant::now() + GRACE_MARGIN;
        loop {
            let action = self.delay_replies(delay).await?;
            let get = redis::cmd("GET").arg(&key).clone();
            let ended =
                futures::future::join_all((0..o.pool_size.min(HELD_REQUESTS_MAX)).map(|_| {
                    let (requests, get) = (requests.clone(), get.clone());
                    async move {
                        let started = Instant::now();
                        let r = requests.request(&get).await;
                        (r, started.elapsed())
                    }
                }))
                .await;
            self.finish_action(action).await?;
            let wrong = ended.into_iter().find(|(r, took)| {
                !matches!(r, Err(ClientError::Timeout { .. }))
                    || !timeline::in_band(*took, timeout, timeout + BAND_SLACK)
            });
            let Some((r, took)) = wrong else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "a GET of {client:?} whose reply came {delay:?} late ended {r:?} after {took:?}; expected a timeout after {timeout:?} (tried until {GRACE_MARGIN:?} after the step began):\n{}",
                    self.tracker.describe(client)
                );
            }
        }
    }

    /// Proves a timeout longer than `configured` on real requests: with
    /// every reply of the database delayed beyond it, a GET on each of
    /// `conns` is answered.
    pub(super) async fn prove_relaxed(
        &mut self,
        client: &str,
        conns: &[std::sync::Arc<crate::client::connection::ManagedConnection>],
        configured: std::time::Duration,
    ) -> anyhow::Result<()> {
        let delay = configured + BAND_SLACK;
        for (conn, r, took) in self.delayed_gets(client, conns, delay).await? {
            // A reply came, late as it was: an error reply (a cluster node's
            // MOVED for a key it does not hold) is still one.
            if let Err(e) = r.as_ref().map(|_| ()).or_else(|e| match e {
                ClientError::Server(_) => Ok(()),
                other => Err(other),
            }) {
                anyhow::bail!(
                    "a GET on connection {conn} of {client:?} whose reply came {delay:?} late, while it should have been relaxed beyond its configured {configured:?}, failed after {took:?}: {}:\n{}",
                    e.chain(),
                    self.tracker.describe(client)
                );
            }
        }
        Ok(())
    }

    /// Starts delaying every reply of the database by `delay` (the
    /// emulator's `network_latency`), for a little longer than that: the
    /// action to finish once the delayed requests ended.
    async fn delay_replies(&mut self, delay: std::time::Duration) -> anyhow::Result<usize> {
        self.start_action(|bdb| Action::NetworkLatency {
            bdb_id: BdbId(bdb),
            delay_ms: delay.as_millis() as u64,
            duration_s: (delay + BAND_SLACK).as_secs_f64(),
            node: None,
        })
        .await
    }

    /// One GET on each of `conns` while the database delays every reply by
    /// `delay` (the emulator's `network_latency`): how each ended, and when.
    async fn delayed_gets(
        &mut self,
        client: &str,
        conns: &[std::sync::Arc<crate::client::connection::ManagedConnection>],
        delay: std::time::Duration,
    ) -> anyhow::Result<Vec<(u64, Result<redis::Value, ClientError>, std::time::Duration)>> {
        let action = self.delay_replies(delay).await?;
        let key = format!("{}:{client}:late", self.prefix);
        let timed = futures::future::join_all(conns.iter().map(|conn| {
            let get = redis::cmd("GET").arg(&key).clone();
            async move {
                let started = Instant::now();
                let r = conn.query(&get).await;
                (conn.id, r, started.elapsed())
            }
        }))
        .await;
        self.finish_action(action).await?;
        Ok(timed)
    }
}

/// One write and one read through every connection of the client.
#[then(expr = "{string} can still write and read")]
async fn then_still_works(w: &mut MaintWorld, client: String) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        // Its pool picks the connection: as many rounds as it holds.
        let requests = w.requests(&client)?;
        for round in 0..w.options_of(&client)?.pool_size.max(1) {
            let key = format!("{}:{client}:check:{round}", w.prefix);
            let failed = |what: &str, e: ClientError| {
                anyhow!("{what} {round} of {client:?} failed: {}", e.chain())
            };
            requests
                .request(redis::cmd("SET").arg(&key).arg("ok"))
                .await
                .map_err(|e| failed("SET", e))?;
            let v = requests
                .request(redis::cmd("GET").arg(&key))
                .await
                .map_err(|e| failed("GET", e))?;
            if v != redis::Value::BulkString(b"ok".to_vec()) {
                fail!("GET {round} of {client:?} read {v:?} back, expected \"ok\"");
            }
        }
        return Ok(());
    }
    let c = w.client(&client)?;
    for conn in c.connections() {
        let key = format!("{}:{client}:check:{}", w.prefix, conn.id);
        conn.query(redis::cmd("SET").arg(&key).arg("ok"))
            .await
            .map_err(|e| {
                anyhow!(
                    "SET through connection {} of {client:?}: {}",
                    conn.id,
                    e.chain()
                )
            })?;
        let v = conn.query(redis::cmd("GET").arg(&key)).await.map_err(|e| {
            anyhow!(
                "GET through connection {} of {client:?}: {}",
                conn.id,
                e.chain()
            )
        })?;
        if v != redis::Value::BulkString(b"ok".to_vec()) {
            fail!(
                "connection {} of {client:?} read {v:?} back, expected \"ok\"",
                conn.id
            );
        }
    }
    Ok(())
}
