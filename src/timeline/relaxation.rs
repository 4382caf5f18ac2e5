//! Relaxation, as the client tells it: the relaxed timeout in force over a
//! window, when it came back, whether it ever changed. The client's account:
//! it explains a failure, and decides only what no request can reach (see
//! README's *The server decides*; [`super::requests`] judges relaxation by
//! requests).

use std::time::Duration;

use tokio::time::Instant;

use super::{show, Claim, Unmet};
use crate::client::{ClientEvent, EventKind};

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
