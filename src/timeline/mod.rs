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
//! record rather than the client's events; [`requests`] judges relaxation by
//! the requests held inside the server's windows. The rest, by family:
//! notifications (here), `relaxation`, `handoff`, `traffic` (phases and
//! errors), `latency` (and pace), `faults`, `pubsub`, `cluster`.

mod latency;

pub use crate::duration_text::show;
pub use cluster::{each_move_applied_once, relaxed_until_smigrated, slot_maps_equal, MovesApplied};
pub use faults::{
    errors_bounded, errors_only_during, push_handled_on_each, reconnected_each, PushFate,
};
pub use handoff::*;
pub use latency::{handoff_window, latency_quantile, p99_under, p99_within_factor, pace_kept};
pub use pubsub::{
    delivered_through_moves, delivery_settled, every_message_received, Delivery, Published,
};
pub use relaxation::*;
pub use traffic::*;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientEvent, EventKind};
use crate::notification::{Kind, Notification};

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
mod handoff;
mod pubsub;
mod relaxation;
pub mod requests;
pub mod server;
mod traffic;

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

#[cfg(test)]
mod tests;
