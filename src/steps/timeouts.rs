//! Timeouts: relaxation, restoration and how slow replies end, measured from the
//! client's events and from real requests.

use std::time::Duration;

use anyhow::{anyhow, Result};
use cucumber::{then, when};
use tokio::time::Instant;

use super::params::{DurationParam, KindParam};
use super::{MaintWorld, StepResult};
use crate::client::connection::{ManagedConnection, Relaxation};
use crate::client::ClientError;
use crate::notification::Kind;
use crate::timeline::requests::{self, Relaxed};
use crate::timeline::{self, in_band, server, show, Received};
use crate::timing::{
    BAND_SLACK, CLUSTER_REPLAY_WITHIN, PROVED_TIMEOUT_MAX, SERVER_POLL, TIGHT_SLACK,
};
use crate::wait::{poll, Look};
use crate::workload::Report;

impl MaintWorld {
    /// Waits until `client` received a live `kind`; returns the latest one.
    pub async fn wait_received(&self, client: &str, kind: Kind) -> Result<Received> {
        self.tracker
            .wait_on(client, self.patience(), &format!("{kind}"), |events| {
                timeline::latest_live(events, kind)
            })
            .await
    }

    /// Judges the relaxation of `client` by its traffic's requests inside
    /// the windows the server opened on its connections (each `open` push
    /// to the `close` push after it), as [`Relaxed`] says. `Ok(false)`
    /// where the target keeps no server record: the caller then falls back
    /// on the client's account and marks what it could not check.
    pub async fn judge_relaxation(
        &self,
        client: &str,
        windows: &[(Kind, Kind)],
        expect: Relaxed,
    ) -> Result<bool> {
        let Some(record) = self.server_record(client).await? else {
            return Ok(false);
        };
        let name = self.server_name(client)?;
        let spans: Vec<_> = windows
            .iter()
            .flat_map(|(open, close)| {
                server::windows(&record, &name, open.as_str(), close.as_str())
            })
            .collect();
        let windows = requests::shared_windows(spans);
        // A request the window held may end a moment after the window's
        // completion was written: the claim is asked again until then.
        let longest = self.options_of(client)?.relaxed_timeout.max(expect.beyond) + BAND_SLACK;
        let judged = poll(SERVER_POLL * 5, longest, || async {
            let reqs = requests::requests(&self.traffic_so_far(client)?);
            anyhow::Ok(
                match requests::relaxed_by_requests(&windows, &reqs, expect) {
                    Ok(evidence) => Look::Ready(evidence),
                    Err(e) => Look::NotYet(e),
                },
            )
        })
        .await?;
        let longest = judged.map_err(|e| self.unmet(client, e))?;
        eprintln!(
            "{client:?}: inside each window, a request held longer than {} was answered (the longest after {})",
            show(Some(expect.beyond)),
            longest.iter().map(|d| show(Some(*d))).collect::<Vec<_>>().join(", ")
        );
        Ok(true)
    }

    /// The window from `open` to `close` judged by `client`'s requests
    /// (relaxed beyond its configured timeout, to `to` where a step names
    /// it): `Ok(true)` when judged so. `Ok(false)` where no request can
    /// judge it (no server record, or an unbounded configured timeout),
    /// marked not checked: the caller falls back on the client's account.
    pub async fn window_judged(
        &self,
        client: &str,
        open: Kind,
        close: Kind,
        to: Option<Option<Duration>>,
    ) -> Result<bool> {
        if let Some(configured) = self.options_of(client)?.response_timeout {
            let expect = Relaxed {
                beyond: configured,
                to,
            };
            if self
                .judge_relaxation(client, &[(open, close)], expect)
                .await?
            {
                return Ok(true);
            }
        }
        self.not_checked(&format!(
            "the timeout of requests {client:?} sent between {open} and {close} (the client's account decides)"
        ));
        Ok(false)
    }

    /// What `client`'s traffic did so far, running or stopped.
    pub fn traffic_so_far(&self, client: &str) -> Result<Report> {
        let t = self.record(client)?.traffic.as_ref().ok_or_else(|| {
            anyhow!(
                "this claim is judged by the requests of {client:?}'s traffic; start it with `Given steady traffic from \"{client}\"`"
            )
        })?;
        Ok(t.report.clone().unwrap_or_else(|| t.workload.so_far()))
    }

    /// The connection a step opened last for `client`.
    pub fn new_connection(&self, client: &str) -> Result<std::sync::Arc<ManagedConnection>> {
        self.record(client)?.opened.last().cloned().ok_or_else(|| {
            anyhow!("{client:?} opened no new connection; use `When \"{client}\" opens a new connection`")
        })
    }
}

/// A live notification of `kind` arrived (waits for it).
#[when(expr = "{string} receives {kind}")]
async fn when_receives(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    w.wait_received(&client, kind.0).await?;
    Ok(())
}

/// A live notification of `kind` arrived (waits for it), and the server
/// wrote it.
#[then(expr = "{string} receives {kind}")]
async fn then_receives(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        w.server_wrote_kinds(&client, kind.0, None).await?;
        return Ok(());
    }
    let got = w.wait_received(&client, kind.0).await?;
    w.server_wrote(&client, &[&got]).await?;
    Ok(())
}

/// Nothing of `kind` arrived so far.
#[then(expr = "{string} received no {kind}")]
async fn then_received_no(w: &mut MaintWorld, client: String, kind: KindParam) -> StepResult {
    w.server_sent_none(&client, Some(kind.0)).await?;
    let got = timeline::pushes_read(&w.tracker.timeline(&client), Some(kind.0));
    if !got.is_empty() {
        fail!(
            "{client:?} read {} {} push(es): {}:\n{}",
            got.len(),
            kind.0,
            got.join("; "),
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
    if w.record(&client)?.driven.is_some() {
        if !w
            .window_judged(&client, first.0, second.0, Some(timeout.0))
            .await?
        {
            fail!("a client through a driver is judged by its requests inside the server's windows, and none could be judged here");
        }
        return Ok(());
    }
    let (a, b) = w.wait_pair(&client, first.0, second.0).await?;
    if w.window_judged(&client, first.0, second.0, Some(timeout.0))
        .await?
    {
        return Ok(());
    }
    let got = timeline::relaxed_over(&w.tracker.timeline(&client), a.conn, a.at, b.at)
        .map_err(|e| w.unmet(&client, e))?;
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
/// latest `kind`, within a band after it.
#[then(
    expr = "{string} returns to a timeout of {duration} between {duration} and {duration} after {kind}"
)]
async fn then_returns_after(
    w: &mut MaintWorld,
    client: String,
    timeout: DurationParam,
    lo: DurationParam,
    hi: DurationParam,
    kind: KindParam,
) -> StepResult {
    let band = Band::of(lo, hi)?;
    let r = w.wait_received(&client, kind.0).await?;
    // Both edges of the band, proven by requests where the emulator can
    // delay replies (and the timeout is short enough to wait out).
    let proved = match timeout.0.filter(|t| *t <= PROVED_TIMEOUT_MAX) {
        Some(t) if w.emulator_target().await? => {
            let c = w.client(&client)?;
            let conn = c
                .connections()
                .into_iter()
                .chain(w.record(&client)?.opened.iter().cloned())
                .find(|c| c.id == r.conn)
                .ok_or_else(|| anyhow!("connection {} of {client:?} is gone", r.conn))?;
            Some((t, conn))
        }
        Some(_) => {
            w.not_checked(&format!(
                "the timeout of {client:?} on a real request {} after {} (no reply can be delayed here)",
                show(Some(band.1)),
                r.notification
            ));
            None
        }
        None => None,
    };
    // The near edge: a request whose configured timeout runs out before
    // the band opens is answered when its reply comes late. Only where one
    // sent now runs out in time (a band that opens sooner after the
    // notification than the timeout itself is the client's account).
    if let Some((t, conn)) = &proved {
        if Instant::now() + *t + TIGHT_SLACK < r.at + band.0 {
            w.prove_relaxed(&client, std::slice::from_ref(conn), *t)
                .await?;
            eprintln!(
                "{client:?}: a reply delayed beyond {} was answered on connection {} before the band opened",
                show(Some(*t)),
                conn.id
            );
        } else {
            eprintln!(
                "{client:?}: the band opens {} after {}: a request sent now would run out of its configured {} only after that, so the client's account decides the near edge",
                show(Some(band.0)),
                r.notification,
                show(Some(*t))
            );
        }
    }
    let within = band.1 + BAND_SLACK;
    let (at, got) = w
        .tracker
        .wait_on(
            &client,
            within,
            "the connection to be un-relaxed",
            |events| timeline::unrelaxed_after(events, r.conn, r.at),
        )
        .await?;
    let took = at - r.at;
    if got != timeout.0 || !band.holds(took) {
        fail!(
            "connection {} of {client:?} returned to {} {took:?} after {}; expected {} {band}:\n{}",
            r.conn,
            show(got),
            r.notification,
            show(timeout.0),
            w.tracker.describe(&client)
        );
    }
    // The far edge: once it has passed, a reply delayed beyond the timeout
    // times out after it on that connection.
    if let Some((t, conn)) = proved {
        tokio::time::sleep_until(r.at + band.1).await;
        w.prove_timeout(&client, &[conn], t).await?;
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
    // Judged by the requests held in the windows: one held longer than the
    // relaxed timeout was answered (it was not shortened), none timed out
    // before the configured one.
    let expect = Relaxed {
        beyond: w.options_of(&client)?.relaxed_timeout,
        to: Some(timeout.0),
    };
    let windows = [
        (Kind::Migrating, Kind::Migrated),
        (Kind::FailingOver, Kind::FailedOver),
    ];
    if w.judge_relaxation(&client, &windows, expect).await? {
        return Ok(());
    }
    if w.record(&client)?.driven.is_some() {
        fail!("a client through a driver is judged by its requests inside the server's windows, and there is no server record here");
    }
    w.not_checked(&format!(
        "the timeout of requests {client:?} sent inside a window (the client's account decides)"
    ));
    timeline::timeout_throughout(&w.tracker.timeline(&client), timeout.0)
        .map_err(|e| w.unmet(&client, e))?;
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

/// No connection is un-relaxed for `d`.
#[then(expr = "{string} is still relaxed {duration} later")]
async fn then_still_relaxed(w: &mut MaintWorld, client: String, d: DurationParam) -> StepResult {
    let d = d.bounded("the wait")?;
    let since = Instant::now();
    tokio::time::sleep(d).await;
    let conns = w.client(&client)?.connections();
    let configured = w.client(&client)?.options().response_timeout;
    // Decided by requests: a reply delayed beyond the configured timeout
    // is still answered on every connection.
    if let Some(t) = configured.filter(|t| *t <= PROVED_TIMEOUT_MAX) {
        if w.emulator_target().await? {
            return w
                .prove_relaxed(&client, &conns, t)
                .await
                .map_err(Into::into);
        }
    }
    w.not_checked(&format!(
        "whether a request of {client:?} is still given a relaxed timeout (the client's account decides)"
    ));
    if let Some(conn) = timeline::any_unrelaxed_after(&w.tracker.timeline(&client), since) {
        fail!(
            "connection {conn} of {client:?} was un-relaxed while a window was still open:\n{}",
            w.tracker.describe(&client)
        );
    }
    for c in conns {
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
    w.tracker
        .wait_on(&client, w.patience(), "every window to close", |_| {
            conns
                .iter()
                .all(|c| !matches!(c.relaxation(), Relaxation::Windows { .. }))
                .then_some(())
        })
        .await?;
    let events = w.tracker.timeline(&client);
    for conn in &conns {
        // The tail runs from the moment the connection's last window closed
        // (its last completion or handoff) for exactly the configured tail.
        let closed = timeline::last_window_close(&events, conn.id);
        match (conn.relaxation(), closed) {
            (Relaxation::Off, _) if conn.effective_timeout() == configured => {}
            (Relaxation::Tail { until }, Some(closed))
                if timeline::close_to(until.saturating_duration_since(closed), tail, TIGHT_SLACK)
                    && until.saturating_duration_since(closed) >= tail => {}
            (other, _) => fail!(
                "connection {} of {client:?} is {other:?} with timeout {}; expected the configured {} {tail:?} after its last window closed ({closed:?}):\n{}",
                conn.id,
                show(conn.effective_timeout()),
                show(configured),
                w.tracker.describe(&client)
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
    // The emulator replays the last completion; a real server may or may not.
    let emulator = w.emulator_target().await?;
    let within = if emulator {
        w.patience()
    } else {
        CLUSTER_REPLAY_WITHIN
    };
    let got = w
        .tracker
        .wait_on(
            &client,
            within,
            &format!("{} replayed at set-up", kind.0),
            |events| timeline::replayed_at_setup(events, conn.id, kind.0),
        )
        .await;
    if let (Err(e), true) = (&got, emulator) {
        fail!(
            "the emulator did not replay {} to the new connection: {e}",
            kind.0
        );
    }
    let relaxed = timeline::ever_relaxed(&w.tracker.timeline(&client), conn.id);
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
    w.tracker
        .wait_on(
            &client,
            w.patience(),
            &format!("{} at set-up", kind.0),
            |events| timeline::replayed_at_setup(events, conn.id, kind.0),
        )
        .await?;
    // The client records a notification once it acted on it: the relax it
    // caused is on the timeline already.
    if !timeline::ever_relaxed(&w.tracker.timeline(&client), conn.id) {
        fail!(
            "connection {} of {client:?} received {} at set-up but is not relaxed:\n{}",
            conn.id,
            kind.0,
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// A band as two steps' durations, both bounded.
struct Band(Duration, Duration);

impl Band {
    fn of(lo: DurationParam, hi: DurationParam) -> Result<Band> {
        Ok(Band(lo.bounded("a band")?, hi.bounded("a band")?))
    }

    fn holds(&self, took: Duration) -> bool {
        in_band(took, self.0, self.1)
    }
}

impl std::fmt::Display for Band {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "between {:?} and {:?}", self.0, self.1)
    }
}

impl MaintWorld {
    /// One GET through the first connection of `client`, timed.
    async fn timed_get(
        &self,
        client: &str,
    ) -> Result<(std::result::Result<redis::Value, ClientError>, Duration)> {
        let c = self.client(client)?;
        let conn = c
            .connections()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("{client:?} has no connection"))?;
        let key = format!("{}:{client}:slow", self.prefix);
        let started = Instant::now();
        let r = conn.query(redis::cmd("GET").arg(key)).await;
        Ok((r, started.elapsed()))
    }
}

/// A GET succeeds, within a band.
#[then(expr = "a GET from {string} succeeds after between {duration} and {duration}")]
async fn then_get_succeeds(
    w: &mut MaintWorld,
    client: String,
    lo: DurationParam,
    hi: DurationParam,
) -> StepResult {
    let band = Band::of(lo, hi)?;
    match w.timed_get(&client).await? {
        (Ok(_), took) if band.holds(took) => Ok(()),
        (Ok(_), took) => fail!("the GET succeeded after {took:?}, expected {band}"),
        (Err(e), took) => fail!(
            "the GET failed after {took:?}: {}:\n{}",
            e.chain(),
            w.tracker.describe(&client)
        ),
    }
}

/// A GET times out, classified as a timeout outside any window.
#[then(
    expr = "a GET from {string} fails with a timeout outside a maintenance window after between {duration} and {duration}"
)]
async fn then_get_times_out(
    w: &mut MaintWorld,
    client: String,
    lo: DurationParam,
    hi: DurationParam,
) -> StepResult {
    let band = Band::of(lo, hi)?;
    let (r, took) = w.timed_get(&client).await?;
    let outside_window = matches!(
        r,
        Err(ClientError::Timeout {
            in_window: false,
            ..
        })
    );
    if !outside_window || !band.holds(took) {
        fail!("the GET ended {r:?} after {took:?}; expected a timeout outside a window {band}");
    }
    Ok(())
}
