//! Timeouts: relaxation, restoration and how slow replies end, measured from the
//! client's events and from real requests.

use std::time::Duration;

use anyhow::{anyhow, Result};
use cucumber::{then, when};
use tokio::time::Instant;

use super::params::{DurationParam, KindParam};
use super::{MaintWorld, StepResult};
use crate::client::connection::{ManagedConnection, Relaxation};
use crate::client::{ClientError, EventKind};
use crate::notification::Kind;
use crate::tracker::Received;

fn show(d: Option<Duration>) -> String {
    d.map_or("unbounded".into(), |d| format!("{d:?}"))
}

impl MaintWorld {
    /// Waits until `client` received a live `kind`; returns the latest one.
    pub async fn wait_received(&self, client: &str, kind: Kind) -> Result<Received> {
        let tracker = self.tracker.clone();
        tracker
            .wait_for(self.patience(), &format!("{kind} on {client:?}"), |_| {
                tracker
                    .notifications_of(client, kind)
                    .into_iter()
                    .rfind(|r| !r.at_setup)
            })
            .await
            .map_err(|e| anyhow!("{e}; {client:?} saw:\n{}", self.tracker.describe(client)))
    }

    /// The connection a step opened last for `client`.
    pub fn new_connection(&self, client: &str) -> Result<std::sync::Arc<ManagedConnection>> {
        self.extra_connections
            .get(client)
            .and_then(|v| v.last())
            .cloned()
            .ok_or_else(|| {
                anyhow!("{client:?} opened no new connection; use `When \"{client}\" opens a new connection`")
            })
    }

    /// The relaxed timeout in force on connection `conn` of `client` over
    /// `[from, to]`: it must have been relaxed throughout.
    fn relaxed_over(
        &self,
        client: &str,
        conn: u64,
        from: Instant,
        to: Instant,
    ) -> Result<Option<Duration>> {
        let mut state: Option<Option<Duration>> = None;
        let mut seen = None;
        for e in self.tracker.of_client(client) {
            if e.conn != conn || e.at > to {
                continue;
            }
            match e.kind {
                EventKind::Relaxed { timeout } => {
                    state = Some(timeout);
                    if e.at >= from {
                        seen = Some(timeout);
                    }
                }
                EventKind::Unrelaxed { .. } if e.at > from => {
                    fail!(
                        "connection {conn} of {client:?} was un-relaxed inside the window:\n{}",
                        self.tracker.describe(client)
                    )
                }
                EventKind::Unrelaxed { .. } => state = None,
                _ => {}
            }
        }
        seen.or(state).ok_or_else(|| {
            anyhow!(
                "connection {conn} of {client:?} was not relaxed in the window:\n{}",
                self.tracker.describe(client)
            )
        })
    }
}

/// A live notification of `kind` arrived (waits for it).
#[when(expr = "{string} receives {kind}")]
async fn when_receives(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    w.wait_received(&client, kind.0).await?;
    Ok(())
}

/// A live notification of `kind` arrived (waits for it).
#[then(expr = "{string} receives {kind}")]
async fn then_receives(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    w.wait_received(&client, kind.0).await?;
    Ok(())
}

/// Nothing of `kind` arrived so far.
#[then(expr = "{string} received no {kind}")]
async fn then_received_no(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    let got = w.tracker.notifications_of(&client, kind.0);
    if !got.is_empty() {
        fail!(
            "{client:?} received {} {}:\n{}",
            got.len(),
            kind.0,
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// Relaxed to exactly `timeout` while the window was open.
#[then(expr = "{string} was relaxed to {duration} between {kind} and {kind}")]
async fn then_relaxed_to(
    w: &mut MaintWorld,
    client: String,
    timeout: DurationParam,
    first: KindParam,
    second: KindParam,
) -> StepResult {
    let (a, b) = w.wait_pair(&client, first.0, second.0).await?;
    let got = w.relaxed_over(&client, a.conn, a.at, b.at)?;
    if got != timeout.0 {
        fail!(
            "connection {} of {client:?} was relaxed to {} between {} and {}, expected {}",
            a.conn,
            show(got),
            a.notification,
            b.notification,
            show(timeout.0)
        );
    }
    Ok(())
}

/// The configured timeout came back, on the connection that received the
/// latest `kind`, within a band of seconds after it.
#[then(
    expr = "{string} returns to a timeout of {duration} between {float} and {float} seconds after {kind}"
)]
async fn then_returns_after(
    w: &mut MaintWorld,
    client: String,
    timeout: DurationParam,
    lo: f64,
    hi: f64,
    kind: KindParam,
) -> StepResult {
    let r = w.wait_received(&client, kind.0).await?;
    let tracker = w.tracker.clone();
    let name = client.clone();
    let within = Duration::from_secs_f64(hi) + Duration::from_secs(2);
    let (at, got) = tracker
        .wait_for(within, "the connection to be un-relaxed", |events| {
            events.iter().find_map(|e| match e.kind {
                EventKind::Unrelaxed { timeout }
                    if e.client == name && e.conn == r.conn && e.at >= r.at =>
                {
                    Some((e.at, timeout))
                }
                _ => None,
            })
        })
        .await
        .map_err(|e| {
            anyhow!(
                "{e} after {}:\n{}",
                r.notification,
                w.tracker.describe(&client)
            )
        })?;
    let took = (at - r.at).as_secs_f64();
    if got != timeout.0 || !(lo..=hi).contains(&took) {
        fail!(
            "connection {} of {client:?} returned to {} {took:.3} s after {}; expected {} between {lo} and {hi} s:\n{}",
            r.conn,
            show(got),
            r.notification,
            show(timeout.0),
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// Relaxation never changed the effective timeout.
#[then(expr = "the timeout of {string} was {duration} throughout")]
async fn then_timeout_throughout(
    w: &mut MaintWorld,
    client: String,
    timeout: DurationParam,
) -> StepResult {
    let mut relaxations = 0;
    for e in w.tracker.of_client(&client) {
        let t = match e.kind {
            EventKind::Relaxed { timeout } => {
                relaxations += 1;
                timeout
            }
            EventKind::Unrelaxed { timeout } => timeout,
            _ => continue,
        };
        if t != timeout.0 {
            fail!(
                "connection {} of {client:?} went to {} during maintenance; it must stay {}:\n{}",
                e.conn,
                show(t),
                show(timeout.0),
                w.tracker.describe(&client)
            );
        }
    }
    if relaxations == 0 {
        fail!(
            "{client:?} never entered a window, so nothing was shown:\n{}",
            w.tracker.describe(&client)
        );
    }
    for c in w.client(&client)?.connections() {
        if c.effective_timeout() != timeout.0 {
            fail!(
                "connection {} of {client:?} has timeout {}, expected {}",
                c.id,
                show(c.effective_timeout()),
                show(timeout.0)
            );
        }
    }
    Ok(())
}

/// No connection is un-relaxed for `ms` milliseconds.
#[then(expr = "{string} is still relaxed {int} ms later")]
async fn then_still_relaxed(w: &mut MaintWorld, client: String, ms: u64) -> StepResult {
    let since = Instant::now();
    let tracker = w.tracker.clone();
    let name = client.clone();
    let unrelaxed = tracker
        .wait_for(Duration::from_millis(ms), "an un-relax", |events| {
            events.iter().find_map(|e| {
                (e.client == name && e.at >= since && matches!(e.kind, EventKind::Unrelaxed { .. }))
                    .then_some(e.conn)
            })
        })
        .await;
    if let Ok(conn) = unrelaxed {
        fail!(
            "connection {conn} of {client:?} was un-relaxed while a window was still open:\n{}",
            w.tracker.describe(&client)
        );
    }
    for c in w.client(&client)?.connections() {
        if !c.is_relaxed() {
            fail!("connection {} of {client:?} is not relaxed", c.id);
        }
    }
    Ok(())
}

/// Long tails are not waited out: every window is closed and what is left
/// ends within the post-handoff tail, after which the configured timeout
/// applies.
#[then(
    expr = "the timeouts of {string} come back to their configured values when the post-handoff tail ends"
)]
async fn then_tail_ends(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    let tail = c.options().post_relaxed();
    let configured = c.options().response_timeout;
    let conns = c.connections();
    let tracker = w.tracker.clone();
    tracker
        .wait_for(w.patience(), "every window to close", |_| {
            conns
                .iter()
                .all(|c| !matches!(c.relaxation(), Relaxation::Windows { .. }))
                .then_some(())
        })
        .await
        .map_err(|e| anyhow!("{e}:\n{}", w.tracker.describe(&client)))?;
    let now = Instant::now();
    for conn in &conns {
        match conn.relaxation() {
            Relaxation::Off if conn.effective_timeout() == configured => {}
            Relaxation::Tail { until } if until <= now + tail => {}
            other => fail!(
                "connection {} of {client:?} is {other:?} with timeout {}; expected the configured {} within {tail:?}",
                conn.id,
                show(conn.effective_timeout()),
                show(configured)
            ),
        }
    }
    Ok(())
}

/// A replayed completion on a new connection neither relaxed it nor closed anything.
#[then(expr = "the new connection of {string} opened no window, even for a replayed {kind}")]
async fn then_replay_opens_nothing(
    w: &mut MaintWorld,
    client: String,
    kind: KindParam,
) -> StepResult {
    let conn = w.new_connection(&client)?;
    let tracker = w.tracker.clone();
    let name = client.clone();
    let replayed = |_: &[crate::client::ClientEvent]| {
        tracker
            .notifications_of(&name, kind.0)
            .into_iter()
            .find(|r| r.conn == conn.id && r.at_setup)
    };
    // The emulator replays the last completion; a real server may or may not.
    let within = if w.on_emulator() {
        w.patience()
    } else {
        Duration::from_secs(1)
    };
    let got = tracker
        .wait_for(within, &format!("{} replayed at set-up", kind.0), replayed)
        .await;
    if got.is_err() && w.on_emulator() {
        fail!(
            "the emulator did not replay {} to the new connection:\n{}",
            kind.0,
            w.tracker.describe(&client)
        );
    }
    let relaxed = w
        .tracker
        .of_client(&client)
        .into_iter()
        .any(|e| e.conn == conn.id && matches!(e.kind, EventKind::Relaxed { .. }));
    if relaxed || conn.is_relaxed() {
        fail!(
            "the replayed {} relaxed connection {}:\n{}",
            kind.0,
            conn.id,
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// The open window reached the new connection during its set-up.
#[then(expr = "the new connection of {string} received {kind} at set-up and is relaxed")]
async fn then_setup_window(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    let conn = w.new_connection(&client)?;
    let tracker = w.tracker.clone();
    let name = client.clone();
    tracker
        .wait_for(w.patience(), &format!("{} at set-up", kind.0), |_| {
            tracker
                .notifications_of(&name, kind.0)
                .into_iter()
                .find(|r| r.conn == conn.id && r.at_setup)
        })
        .await
        .map_err(|e| anyhow!("{e}:\n{}", w.tracker.describe(&client)))?;
    if !conn.is_relaxed() {
        fail!(
            "connection {} of {client:?} received {} at set-up but is not relaxed:\n{}",
            conn.id,
            kind.0,
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

impl MaintWorld {
    /// One GET through the first connection of `client`, timed.
    async fn timed_get(
        &self,
        client: &str,
    ) -> Result<(std::result::Result<redis::Value, ClientError>, f64)> {
        let c = self.client(client)?;
        let conn = c
            .connections()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("{client:?} has no connection"))?;
        let key = format!("{}:{client}:slow", self.prefix);
        let started = Instant::now();
        let r = conn.query(redis::cmd("GET").arg(key)).await;
        Ok((r, started.elapsed().as_secs_f64()))
    }
}

/// A GET succeeds, within a band of seconds.
#[then(expr = "a GET from {string} succeeds after between {float} and {float} seconds")]
async fn then_get_succeeds(w: &mut MaintWorld, client: String, lo: f64, hi: f64) -> StepResult {
    let (r, took) = w.timed_get(&client).await?;
    match r {
        Ok(_) if (lo..=hi).contains(&took) => Ok(()),
        Ok(_) => fail!("the GET succeeded after {took:.3} s, expected between {lo} and {hi} s"),
        Err(e) => fail!(
            "the GET failed after {took:.3} s: {e}:\n{}",
            w.tracker.describe(&client)
        ),
    }
}

/// A GET times out, classified as a timeout outside any window.
#[then(
    expr = "a GET from {string} fails with a timeout outside a maintenance window after between {float} and {float} seconds"
)]
async fn then_get_times_out(w: &mut MaintWorld, client: String, lo: f64, hi: f64) -> StepResult {
    let (r, took) = w.timed_get(&client).await?;
    match r {
        Err(ClientError::Timeout {
            in_window: false, ..
        }) if (lo..=hi).contains(&took) => Ok(()),
        other => fail!(
            "the GET ended {other:?} after {took:.3} s; expected a timeout outside a window between {lo} and {hi} s"
        ),
    }
}
