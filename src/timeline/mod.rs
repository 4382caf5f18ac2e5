//! Every claim a scenario makes about a client, as a pure function over its
//! event timeline (the [`ClientEvent`]s of one client, in order). Steps wait
//! for the timeline to hold what they need, call these, and report; these
//! never wait, loop on time or read a socket, so each is unit tested on a
//! hand-made timeline.
//!
//! A claim that does not hold is an [`Unmet`] that says what was seen.
//!
//! Claims the server decides (which node a connection was on, who closed it
//! and when, what was pushed to it) are in [`server`], over the server's own
//! record rather than the client's events.

mod latency;

pub use crate::duration_text::show;
pub use cluster::{each_move_applied_once, relaxed_until_smigrated, slot_maps_equal, MovesApplied};
pub use faults::{errors_bounded, push_handled_on_each, reconnected_each, PushFate};
pub use latency::{handoff_window, latency_quantile, p99_under, p99_within_factor, pace_kept};
pub use pubsub::{delivered_through_moves, every_message_received, Delivery, Published};

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientEvent, EventKind};
use crate::notification::{Kind, Notification};
use crate::workload::Report;

/// A claim that does not hold, saying what was expected and what was seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unmet(pub String);

/// What a claim returns.
pub type Claim<T = ()> = Result<T, Unmet>;

macro_rules! unmet {
    ($($arg:tt)*) => {
        return Err(Unmet(format!($($arg)*)))
    };
}

// After the macro, which it uses.
mod cluster;
mod faults;
mod pubsub;
pub mod requests;
pub mod server;

/// A notification as one connection received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// Connection id.
    pub conn: u64,
    /// When.
    pub at: Instant,
    /// What.
    pub notification: Notification,
    /// Replayed during the connection's set-up rather than sent live.
    pub at_setup: bool,
}

/// Every notification of the timeline, in order.
pub fn notifications(events: &[ClientEvent]) -> Vec<Received> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notification {
                notification,
                at_setup,
            } => Some(Received {
                conn: e.conn,
                at: e.at,
                notification: notification.clone(),
                at_setup: *at_setup,
            }),
            _ => None,
        })
        .collect()
}

/// Notifications of `kind`, in order.
pub fn notifications_of(events: &[ClientEvent], kind: Kind) -> Vec<Received> {
    notifications(events)
        .into_iter()
        .filter(|r| r.notification.kind() == kind)
        .collect()
}

/// Every push the client's transport read that is (or is named like) a
/// maintenance notification of `kind` (of any kind, when `None`), decoded
/// or not, one line each: a notification, a malformed one it dropped, and
/// (for any kind) a push it left alone that is not pub/sub's or client
/// tracking's own.
pub fn pushes_read(events: &[ClientEvent], kind: Option<Kind>) -> Vec<String> {
    const NOT_MAINTENANCE: &[&str] = &[
        "message",
        "pmessage",
        "smessage",
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "unsubscribe",
        "punsubscribe",
        "sunsubscribe",
        "invalidate",
        "pong",
    ];
    let named = |name: &str| match kind {
        Some(k) => name.eq_ignore_ascii_case(k.as_str()),
        None => true,
    };
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notification { notification, .. }
                if kind.is_none_or(|k| notification.kind() == k) =>
            {
                Some(format!("{notification} on connection {}", e.conn))
            }
            EventKind::MalformedPush { name, error } if named(name) => Some(format!(
                "a {name} it could not decode ({error}) on connection {}",
                e.conn
            )),
            EventKind::PushIgnored { name }
                if kind.is_none()
                    && !NOT_MAINTENANCE.iter().any(|n| n.eq_ignore_ascii_case(name)) =>
            {
                Some(format!(
                    "a {name} push it left alone on connection {}",
                    e.conn
                ))
            }
            _ => None,
        })
        .collect()
}

/// The latest `kind` sent live (not replayed at set-up).
pub fn latest_live(events: &[ClientEvent], kind: Kind) -> Option<Received> {
    notifications_of(events, kind)
        .into_iter()
        .rfind(|r| !r.at_setup)
}

/// The first `kind` received.
pub fn first(events: &[ClientEvent], kind: Kind) -> Option<Received> {
    notifications_of(events, kind).into_iter().next()
}

/// `kind` replayed to connection `conn` during its set-up.
pub fn replayed_at_setup(events: &[ClientEvent], conn: u64, kind: Kind) -> Option<Received> {
    notifications_of(events, kind)
        .into_iter()
        .find(|r| r.conn == conn && r.at_setup)
}

/// A start (seq N) and its completion (seq N+1) on one connection, the
/// completion after the start.
pub fn pair(events: &[ClientEvent], start: Kind, end: Kind) -> Option<(Received, Received)> {
    let got = notifications(events);
    got.iter()
        .filter(|a| a.notification.kind() == start)
        .find_map(|a| {
            got.iter()
                .find(|b| {
                    b.conn == a.conn
                        && b.notification.kind() == end
                        && b.notification.seq() == a.notification.seq() + 1
                        && b.at >= a.at
                })
                .map(|b| (a.clone(), b.clone()))
        })
}

/// The relaxed timeout in force on `conn` throughout `[from, to]`: relaxed
/// when `from` came (or at it), and never un-relaxed until `to`.
pub fn relaxed_over(
    events: &[ClientEvent],
    conn: u64,
    from: Instant,
    to: Instant,
) -> Claim<Option<Duration>> {
    let mut state: Option<Option<Duration>> = None;
    let mut seen = None;
    for e in events.iter().filter(|e| e.conn == conn && e.at <= to) {
        match e.kind {
            EventKind::Relaxed { timeout } => {
                state = Some(timeout);
                if e.at >= from {
                    seen = Some(timeout);
                }
            }
            EventKind::Unrelaxed { .. } if e.at > from => {
                unmet!("connection {conn} was un-relaxed inside the window")
            }
            EventKind::Unrelaxed { .. } => state = None,
            _ => {}
        }
    }
    seen.or(state)
        .ok_or_else(|| Unmet(format!("connection {conn} was not relaxed in the window")))
}

/// When `conn` was first un-relaxed at or after `since`, and to what.
pub fn unrelaxed_after(
    events: &[ClientEvent],
    conn: u64,
    since: Instant,
) -> Option<(Instant, Option<Duration>)> {
    events.iter().find_map(|e| match e.kind {
        EventKind::Unrelaxed { timeout } if e.conn == conn && e.at >= since => {
            Some((e.at, timeout))
        }
        _ => None,
    })
}

/// When the last window of `conn` closed: its last live completion or
/// successful handoff.
pub fn last_window_close(events: &[ClientEvent], conn: u64) -> Option<Instant> {
    events
        .iter()
        .filter(|e| e.conn == conn)
        .filter(|e| match &e.kind {
            EventKind::Notification {
                notification,
                at_setup: false,
            } => notification.kind().completion().is_none() && !notification.kind().is_start(),
            EventKind::HandoffSucceeded { .. } => true,
            _ => false,
        })
        .map(|e| e.at)
        .max()
}

/// The first connection un-relaxed at or after `since`.
pub fn any_unrelaxed_after(events: &[ClientEvent], since: Instant) -> Option<u64> {
    events
        .iter()
        .find(|e| e.at >= since && matches!(e.kind, EventKind::Unrelaxed { .. }))
        .map(|e| e.conn)
}

/// True when `conn` was ever relaxed.
pub fn ever_relaxed(events: &[ClientEvent], conn: u64) -> bool {
    events
        .iter()
        .any(|e| e.conn == conn && matches!(e.kind, EventKind::Relaxed { .. }))
}

/// Every relax and un-relax set the timeout to `expected`, and there was at
/// least one relax (otherwise nothing was shown).
pub fn timeout_throughout(events: &[ClientEvent], expected: Option<Duration>) -> Claim {
    let mut relaxations = 0;
    for e in events {
        let t = match e.kind {
            EventKind::Relaxed { timeout } => {
                relaxations += 1;
                timeout
            }
            EventKind::Unrelaxed { timeout } => timeout,
            _ => continue,
        };
        if t != expected {
            unmet!(
                "connection {} went to {} during maintenance; it must stay {}",
                e.conn,
                show(t),
                show(expected)
            );
        }
    }
    if relaxations == 0 {
        unmet!("the client never entered a window, so nothing was shown");
    }
    Ok(())
}

/// `took` lies in `[lo, hi]`.
pub fn in_band(took: Duration, lo: Duration, hi: Duration) -> bool {
    (lo..=hi).contains(&took)
}

/// `took` is about `expected`: from 80 % of it to 150 % plus `slack`.
pub fn about(took: Duration, expected: Duration, slack: Duration) -> bool {
    took >= expected.mul_f64(0.8) && took <= expected.mul_f64(1.5) + slack
}

/// `took` is close to `expected`: from 80 % of it to 120 % plus `slack`
/// (for half a grace, a reconnect at the end of the grace falls outside).
pub fn close_to(took: Duration, expected: Duration, slack: Duration) -> bool {
    took >= expected.mul_f64(0.8) && took <= expected.mul_f64(1.2) + slack
}

/// The first MOVING connection `conn` received.
fn first_moving_on(events: &[ClientEvent], conn: u64) -> Claim<Received> {
    notifications_of(events, Kind::Moving)
        .into_iter()
        .find(|r| r.conn == conn)
        .ok_or_else(|| Unmet(format!("connection {conn} received no MOVING")))
}

/// Each connection of `conns` handed off within `bound` of the first MOVING
/// it received, whether or not it had a request to send.
pub fn handed_off_within(events: &[ClientEvent], conns: &[u64], bound: Duration) -> Claim {
    for &conn in conns {
        let moving = first_moving_on(events, conn)?;
        match handoff_of(events, conn) {
            Some((at, _)) if at.saturating_duration_since(moving.at) <= bound => {}
            Some((at, _)) => unmet!(
                "connection {conn} handed off {:?} after MOVING, more than {bound:?}",
                at.saturating_duration_since(moving.at)
            ),
            None => unmet!("connection {conn} never handed off"),
        }
    }
    Ok(())
}

/// Each connection of `conns` was relaxed from the first MOVING it received
/// until its handoff: requests still on the old node may be slow.
pub fn relaxed_through_handoff(events: &[ClientEvent], conns: &[u64]) -> Claim {
    for &conn in conns {
        let moving = first_moving_on(events, conn)?;
        let Some((handed_off, _)) = handoff_of(events, conn) else {
            unmet!("connection {conn} never handed off");
        };
        relaxed_over(events, conn, moving.at, handed_off)?;
    }
    Ok(())
}

/// The server closed each connection of `conns` while the client was still
/// on it (what happens to a client that does not hand off).
pub fn dropped_by_server(events: &[ClientEvent], conns: &[u64]) -> Claim {
    for &conn in conns {
        if !events
            .iter()
            .any(|e| e.conn == conn && matches!(e.kind, EventKind::Disconnected { .. }))
        {
            unmet!("connection {conn} was never closed under the client");
        }
    }
    Ok(())
}

/// True when every connection of `conns` ended a handoff (well or not).
pub fn handoff_ended_on_all(events: &[ClientEvent], conns: &[u64]) -> bool {
    conns.iter().all(|id| {
        events.iter().any(|e| {
            e.conn == *id
                && matches!(
                    e.kind,
                    EventKind::HandoffSucceeded { .. } | EventKind::HandoffFailed { .. }
                )
        })
    })
}

/// Successful handoffs per connection, as (seq, endpoint, when).
pub fn handoffs(events: &[ClientEvent]) -> BTreeMap<u64, Vec<(i64, String, Instant)>> {
    let mut m: BTreeMap<u64, Vec<_>> = BTreeMap::new();
    for e in events {
        if let EventKind::HandoffSucceeded { seq, endpoint } = &e.kind {
            m.entry(e.conn)
                .or_default()
                .push((*seq, endpoint.clone(), e.at));
        }
    }
    m
}

/// Each connection of `conns` handed off exactly once and failed none.
pub fn one_handoff_each(events: &[ClientEvent], conns: &[u64]) -> Claim {
    let done = handoffs(events);
    for id in conns {
        if events
            .iter()
            .any(|e| e.conn == *id && matches!(e.kind, EventKind::HandoffFailed { .. }))
        {
            unmet!("connection {id} failed a handoff");
        }
        let seqs: Vec<i64> = done
            .get(id)
            .map(|v| v.iter().map(|h| h.0).collect())
            .unwrap_or_default();
        if seqs.len() != 1 {
            unmet!(
                "connection {id} handed off {} times (seqs {seqs:?}), expected once",
                seqs.len()
            );
        }
    }
    Ok(())
}

/// A client of `pool` connections never had more than `peak` sockets open
/// beyond its pool and one new connection per connection handing off.
pub fn sockets_within(peak: usize, pool: usize) -> Claim {
    if peak > 2 * pool {
        unmet!(
            "{peak} sockets were open at once, more than its pool of {pool} and one new connection each ({})",
            2 * pool
        );
    }
    Ok(())
}

/// The first successful handoff of `conn`: when, and to where.
pub fn handoff_of(events: &[ClientEvent], conn: u64) -> Option<(Instant, String)> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::HandoffSucceeded { endpoint, .. } if e.conn == conn => {
            Some((e.at, endpoint.clone()))
        }
        _ => None,
    })
}

/// When the first handoff of any connection succeeded.
pub fn first_handoff_at(events: &[ClientEvent]) -> Option<Instant> {
    handoffs(events).values().flatten().map(|h| h.2).min()
}

/// The endpoint `conn` dialled first.
pub fn first_dial(events: &[ClientEvent], conn: u64) -> Option<String> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::Connected { endpoint, .. } if e.conn == conn => Some(endpoint.clone()),
        _ => None,
    })
}

/// Every MOVING beyond the first per connection was ignored, and there were
/// repeats to ignore.
pub fn repeats_ignored(events: &[ClientEvent], conns: usize) -> Claim {
    let received = notifications_of(events, Kind::Moving).len();
    let ignored = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MovingIgnored { .. }))
        .count();
    if received <= conns || ignored != received - conns {
        unmet!(
            "received {received} MOVING on {conns} connections and ignored {ignored}; expected repeats, all ignored"
        );
    }
    Ok(())
}

/// The first connection whose handoff was given up.
pub fn gave_up(events: &[ClientEvent]) -> Option<u64> {
    events
        .iter()
        .find(|e| matches!(e.kind, EventKind::HandoffFailed { .. }))
        .map(|e| e.conn)
}

/// Failed handoff attempts of `conn`.
pub fn failed_attempts(events: &[ClientEvent], conn: u64) -> usize {
    events
        .iter()
        .filter(|e| e.conn == conn && matches!(e.kind, EventKind::HandoffAttemptFailed { .. }))
        .count()
}

/// The failed attempts of `conn` backed off more after each failure, and
/// the client gave up right after the last one (within `prompt`).
pub fn attempts_back_off(events: &[ClientEvent], conn: u64, prompt: Duration) -> Claim {
    let attempts: Vec<Instant> = events
        .iter()
        .filter(|e| e.conn == conn && matches!(e.kind, EventKind::HandoffAttemptFailed { .. }))
        .map(|e| e.at)
        .collect();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.windows(2).any(|g| g[1] <= g[0]) {
        unmet!("connection {conn} retried its handoff after {gaps:?}; each wait must be longer than the one before");
    }
    let gave_up = events
        .iter()
        .find(|e| e.conn == conn && matches!(e.kind, EventKind::HandoffFailed { .. }))
        .map(|e| e.at);
    match (attempts.last(), gave_up) {
        (Some(last), Some(at)) if at.saturating_duration_since(*last) <= prompt => Ok(()),
        (Some(last), Some(at)) => unmet!(
            "connection {conn} gave up {:?} after its last attempt; expected at once",
            at.saturating_duration_since(*last)
        ),
        _ => unmet!("connection {conn} made no attempt or never gave up"),
    }
}

/// Every failed handoff attempt names `word` in its reason, and there was one.
pub fn attempts_name(events: &[ClientEvent], word: &str) -> Claim {
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::HandoffAttemptFailed { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    if reasons.is_empty() || !reasons.iter().all(|r| r.to_lowercase().contains(word)) {
        unmet!("expected every failed attempt to name the {word}; reasons: {reasons:?}");
    }
    Ok(())
}

/// Live notifications per kind on `conn` are exactly `want` (kinds with a
/// count of 0 must not appear).
pub fn exact_counts(
    events: &[ClientEvent],
    conn: u64,
    want: &BTreeMap<&'static str, usize>,
) -> Claim {
    let mut got: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Replays at set-up repeat an event the connection may have seen.
    for r in notifications(events)
        .iter()
        .filter(|r| r.conn == conn && !r.at_setup)
    {
        *got.entry(r.notification.kind().as_str()).or_insert(0) += 1;
    }
    let want: BTreeMap<_, _> = want
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (*k, *n))
        .collect();
    if got != want {
        unmet!("connection {conn} received {got:?}, expected exactly {want:?}");
    }
    Ok(())
}

/// The traffic of one client completed operations and saw no error and no
/// wrong read.
pub fn traffic_clean(report: &Report) -> Claim {
    if report.ok == 0 {
        unmet!("the traffic completed no operation");
    }
    if !report.errors.is_empty() || !report.mismatches.is_empty() {
        let first: Vec<String> = report
            .errors
            .iter()
            .take(5)
            .map(|e| format!("{}: {}", e.op, e.error.chain()))
            .collect();
        unmet!(
            "{} ok, {} errors {:?}, {} wrong reads; first: {first:?} {:?}",
            report.ok,
            report.errors.len(),
            report.by_class(),
            report.mismatches.len(),
            report.mismatches.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// One stretch of a scenario, as the client's timeline marks it.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// What it is: `before the first notification`, `FAILING_OVER 3 ..
    /// FAILED_OVER 4`, `MOVING 7 .. the end of its grace`, `after the last
    /// completion`.
    pub name: String,
    /// Its start.
    pub from: Instant,
    /// Its end.
    pub to: Instant,
}

/// The phases of maintenance a client's timeline shows: before the first
/// start notification, each window (a start to its completion, or to the end
/// of its announced time when none came; MOVING to the end of its grace),
/// and after the last of them. `start` and `end` bound the traffic.
pub fn phases(events: &[ClientEvent], start: Instant, end: Instant) -> Vec<Phase> {
    let live: Vec<Received> = notifications(events)
        .into_iter()
        .filter(|r| !r.at_setup)
        .collect();
    let mut windows: Vec<Phase> = Vec::new();
    for r in live.iter().filter(|r| r.notification.kind().is_start()) {
        let n = &r.notification;
        let completion = n.kind().completion().and_then(|done| {
            live.iter()
                .find(|c| c.conn == r.conn && c.notification.kind() == done && c.at >= r.at)
        });
        let (to, what) = match completion {
            Some(c) => (c.at, c.notification.to_string()),
            None => (
                r.at + Duration::from_secs(n.time_s().unwrap_or(0)),
                "the end of its announced time".to_string(),
            ),
        };
        let name = format!("{n} .. {what}");
        // One window per event, whichever connection saw it first.
        if !windows.iter().any(|w| w.name == name) {
            windows.push(Phase {
                name,
                from: r.at,
                to: to.min(end),
            });
        }
    }
    windows.sort_by_key(|w| w.from);
    let mut out = Vec::new();
    match (windows.first(), windows.iter().map(|w| w.to).max()) {
        (Some(first), Some(last)) => {
            out.push(Phase {
                name: "before the first notification".into(),
                from: start,
                to: first.from,
            });
            out.extend(windows.iter().cloned());
            out.push(Phase {
                name: "after the last window".into(),
                from: last,
                to: end,
            });
        }
        _ => out.push(Phase {
            name: "the whole traffic (no notification)".into(),
            from: start,
            to: end,
        }),
    }
    out
}

/// Successes of `report` in `phase`.
pub fn successes_in(report: &Report, phase: &Phase) -> usize {
    report
        .successes
        .iter()
        .filter(|t| **t >= phase.from && **t <= phase.to)
        .count()
}

/// The longest stretch without a success, and where it ended.
pub fn longest_gap(report: &Report) -> Option<(Duration, Instant)> {
    report
        .successes
        .windows(2)
        .map(|w| (w[1] - w[0], w[1]))
        .max_by_key(|(gap, _)| *gap)
}

/// A line per phase with its successes, and the longest gap: what a report
/// shows of the traffic.
pub fn describe_phases(report: &Report, phases: &[Phase]) -> String {
    let mut lines: Vec<String> = phases
        .iter()
        .map(|p| {
            format!(
                "  {:>5} ok  {} ({:?})",
                successes_in(report, p),
                p.name,
                p.to.saturating_duration_since(p.from)
            )
        })
        .collect();
    if let Some((gap, _)) = longest_gap(report) {
        lines.push(format!("  longest stretch without a success: {gap:?}"));
    }
    lines.join("\n")
}

/// Traffic went on in every phase: at least one success in each phase that
/// lasted `min_phase` or longer, and never longer than `max_gap` without one.
pub fn traffic_in_every_phase(
    report: &Report,
    phases: &[Phase],
    min_phase: Duration,
    max_gap: Duration,
) -> Claim {
    let quiet: Vec<&str> = phases
        .iter()
        .filter(|p| p.to.saturating_duration_since(p.from) >= min_phase)
        .filter(|p| successes_in(report, p) == 0)
        .map(|p| p.name.as_str())
        .collect();
    if !quiet.is_empty() {
        unmet!(
            "no request succeeded {}:\n{}",
            quiet.join(", "),
            describe_phases(report, phases)
        );
    }
    if let Some((gap, _)) = longest_gap(report).filter(|(gap, _)| *gap > max_gap) {
        unmet!(
            "the traffic went {gap:?} without a success, more than {max_gap:?}:\n{}",
            describe_phases(report, phases)
        );
    }
    Ok(())
}

/// The traffic saw errors, every one of class `class`, each inside one of
/// `spans` (with `slack` after its end for a request sent just before it).
pub fn errors_only_of_class_within(
    report: &Report,
    class: &str,
    spans: &[(Instant, Instant)],
    slack: Duration,
) -> Claim {
    if report.errors.is_empty() {
        unmet!("the traffic saw no error; expected {class} errors");
    }
    let inside = |t: Instant| spans.iter().any(|(a, b)| t >= *a && t <= *b + slack);
    if let Some(e) = report
        .errors
        .iter()
        .find(|e| e.error.class() != class || !inside(e.at))
    {
        unmet!(
            "expected only {class} errors during the maintenance; {} of {} errors, first unexpected: {}: {}",
            report.errors.len(),
            report.errors.len() + report.ok as usize,
            e.op,
            e.error.chain()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
