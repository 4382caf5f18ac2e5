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

/// Operations a second that completed inside `span`, outside the stretches
/// of `held` (the server held every request then: no client completes
/// anything, and a pace measured across it says nothing of the client).
fn pace(report: &Report, span: (Instant, Instant), held: &[(Instant, Instant)]) -> f64 {
    let inside = |at: &Instant, s: &(Instant, Instant)| s.0 <= *at && *at <= s.1;
    let n = report
        .successes
        .iter()
        .filter(|at| inside(at, &span) && !held.iter().any(|h| inside(at, h)))
        .count();
    n as f64 / (open_time(span, held)).as_secs_f64().max(f64::EPSILON)
}

/// How much of `span` lies outside every stretch of `held` (which may
/// overlap each other).
fn open_time(span: (Instant, Instant), held: &[(Instant, Instant)]) -> Duration {
    let mut cut: Vec<(Instant, Instant)> = held
        .iter()
        .map(|h| (h.0.max(span.0), h.1.min(span.1)))
        .filter(|h| h.0 < h.1)
        .collect();
    cut.sort();
    let (mut covered, mut reach) = (Duration::ZERO, span.0);
    for (from, to) in cut {
        let from = from.max(reach);
        if to > from {
            covered += to - from;
            reach = to;
        }
    }
    (span.1 - span.0).saturating_sub(covered)
}

/// The traffic kept at least `share` of its pace of `before` (operations
/// completed a second) during `during`, outside the stretches in which the
/// server held every request (`held`); gives both paces. A `during`
/// shorter than `at_least` is widened to it from its start: a handful of
/// operations is no measure.
pub fn pace_kept(
    report: &Report,
    before: (Instant, Instant),
    during: (Instant, Instant),
    held: &[(Instant, Instant)],
    share: f64,
    at_least: Duration,
) -> Claim<(f64, f64)> {
    if before.1 <= before.0 {
        return Err(Unmet("no traffic ran before the maintenance".into()));
    }
    let during = (during.0, during.1.max(during.0 + at_least));
    let (b, d) = (pace(report, before, &[]), pace(report, during, held));
    if d >= b * share {
        Ok((b, d))
    } else {
        let held_for = (during.1 - during.0).saturating_sub(open_time(during, held));
        let outside = match held_for.is_zero() {
            true => String::new(),
            false => format!(" (outside the {held_for:?} the server held every request)"),
        };
        Err(Unmet(format!(
            "the traffic completed {d:.0} operations a second in the {:?} judged{outside}, less than {share} of its {b:.0} a second before the maintenance ({:?})",
            during.1 - during.0,
            before.1 - before.0
        )))
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    #[test]
    fn the_pace_while_connections_move_is_held_against_the_pace_before() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 100 a second for a second, then 40 a second for half a second.
        let mut successes: Vec<Instant> = (0..100).map(|i| at(i * 10)).collect();
        successes.extend((0..20).map(|i| at(1_000 + i * 25)));
        let report = Report {
            successes,
            ..Report::default()
        };
        let before = (at(0), at(1_000));
        let during = (at(1_000), at(1_500));
        let min = Duration::from_millis(200);
        let (b, d) = pace_kept(&report, before, during, &[], 0.3, min).unwrap();
        assert!((b - 101.0).abs() < 1.0 && (d - 40.0).abs() < 1.0, "{b} {d}");
        let e = pace_kept(&report, before, during, &[], 0.5, min).unwrap_err();
        assert!(e.0.contains("less than 0.5 of its 101 a second"), "{e}");
        // A span of a few milliseconds is widened to the minimum.
        let (_, d) = pace_kept(&report, before, (at(1_000), at(1_001)), &[], 0.3, min).unwrap();
        assert!((d - 40.0).abs() < 6.0, "{d}");
        assert!(pace_kept(&report, (at(0), at(0)), during, &[], 0.5, min).is_err());
    }

    #[test]
    fn stretches_the_server_held_every_request_do_not_count() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 100 a second for a second; then nothing for 600 ms (the server
        // held every request), then 100 a second for 400 ms.
        let mut successes: Vec<Instant> = (0..100).map(|i| at(i * 10)).collect();
        successes.extend((0..40).map(|i| at(1_600 + i * 10)));
        let report = Report {
            successes,
            ..Report::default()
        };
        let (before, during) = ((at(0), at(1_000)), (at(1_000), at(2_000)));
        let min = Duration::from_millis(200);
        let e = pace_kept(&report, before, during, &[], 0.5, min).unwrap_err();
        assert!(e.0.contains("completed 40 operations a second"), "{e}");
        // Two holds that overlap, one reaching outside the span.
        let held = [(at(900), at(1_400)), (at(1_200), at(1_600))];
        let (_, d) = pace_kept(&report, before, during, &held, 0.5, min).unwrap();
        assert!((d - 100.0).abs() < 3.0, "{d}");
        // What the client does outside the holds still counts.
        let sparse = Report {
            successes: report.successes[..110].to_vec(),
            ..Report::default()
        };
        let e = pace_kept(&sparse, before, during, &held, 0.5, min).unwrap_err();
        assert!(
            e.0.contains("outside the 600ms the server held every request"),
            "{e}"
        );
    }
}
