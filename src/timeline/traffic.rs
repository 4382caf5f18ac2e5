//! The traffic's requests and how they ended, phase by phase: before the
//! first notification, inside each window, after the last.

use std::time::Duration;

use tokio::time::Instant;

use super::{notifications, Claim, Received, Unmet};
use crate::client::ClientEvent;
use crate::workload::Report;

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
