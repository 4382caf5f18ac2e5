//! Handoffs, as the client tells it: which connection received MOVING,
//! when and where it handed off, its failed attempts and their reasons, the
//! sockets it held. The server's own account of the same moves is in
//! [`super::server`].

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{Claim, Unmet};
use crate::client::{ClientEvent, EventKind};
use crate::notification::Kind;

use super::{notifications_of, relaxed_over, Received};

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
