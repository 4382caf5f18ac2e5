//! Latency of the traffic in and out of a maintenance window: what a client's
//! users feel while its connections move.

use std::time::Duration;

use tokio::time::Instant;

use super::{Claim, Unmet};
use crate::client::{ClientEvent, EventKind};
use crate::notification::Kind;
use crate::workload::Report;

/// From the first MOVING any connection received to the last successful
/// handoff after it: the stretch in which connections move.
pub fn handoff_window(events: &[ClientEvent]) -> Option<(Instant, Instant)> {
    let start = events.iter().find_map(|e| match &e.kind {
        EventKind::Notification { notification, .. } if notification.kind() == Kind::Moving => {
            Some(e.at)
        }
        _ => None,
    })?;
    let end = events
        .iter()
        .filter(|e| e.at >= start && matches!(e.kind, EventKind::HandoffSucceeded { .. }))
        .map(|e| e.at)
        .max()?;
    Some((start, end))
}

/// The `q` quantile (nearest rank) of the latencies of operations that
/// completed inside `[from, to]` (`inside`) or outside it.
pub fn latency_quantile(
    report: &Report,
    from: Instant,
    to: Instant,
    inside: bool,
    q: f64,
) -> Option<Duration> {
    let mut l: Vec<Duration> = report
        .latencies
        .iter()
        .filter(|(at, _)| (from <= *at && *at <= to) == inside)
        .map(|(_, d)| *d)
        .collect();
    if l.is_empty() {
        return None;
    }
    l.sort();
    let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
    Some(l[i])
}

/// The p99 latency inside `[from, to]` is at most `factor` times the p99
/// outside it; gives both.
pub fn p99_within_factor(
    report: &Report,
    from: Instant,
    to: Instant,
    factor: f64,
) -> Claim<(Duration, Duration)> {
    let inside = latency_quantile(report, from, to, true, 0.99);
    let outside = latency_quantile(report, from, to, false, 0.99);
    match (inside, outside) {
        (Some(i), Some(o)) if i.as_secs_f64() <= o.as_secs_f64() * factor => Ok((i, o)),
        (Some(i), Some(o)) => Err(Unmet(format!(
            "p99 latency was {i:?} during the window and {o:?} outside it: more than {factor} x"
        ))),
        (None, _) => Err(Unmet("no operation completed during the window".into())),
        (_, None) => Err(Unmet("no operation completed outside the window".into())),
    }
}

/// The p99 latency inside `[from, to]` is under `bound`; gives it.
pub fn p99_under(report: &Report, from: Instant, to: Instant, bound: Duration) -> Claim<Duration> {
    match latency_quantile(report, from, to, true, 0.99) {
        Some(p) if p < bound => Ok(p),
        Some(p) => Err(Unmet(format!(
            "p99 latency was {p:?} during the window ({:?} long), not under {bound:?}",
            to - from
        ))),
        None => Err(Unmet("no operation completed during the window".into())),
    }
}
