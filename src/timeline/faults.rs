//! Claims about faults nobody announced and pushes a client must not be
//! fooled by: what each connection did with an odd push, whether dropped
//! connections came back, and what a fault cost the traffic.

use std::time::Duration;

use tokio::time::Instant;

use super::{Claim, Unmet};
use crate::client::{ClientEvent, EventKind};
use crate::workload::Report;

/// What a connection did with a push that was not a notification it could
/// act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFate {
    /// Named like a notification but unreadable: dropped.
    DroppedMalformed,
    /// Not a maintenance notification at all: left alone.
    LeftAlone,
}

/// Every connection of `conns` dealt with a `name` push as `fate` says.
pub fn push_handled_on_each(
    events: &[ClientEvent],
    conns: &[u64],
    name: &str,
    fate: PushFate,
) -> Claim {
    for &conn in conns {
        let seen = events.iter().any(|e| {
            e.conn == conn
                && match (&e.kind, fate) {
                    (EventKind::MalformedPush { name: n, .. }, PushFate::DroppedMalformed)
                    | (EventKind::PushIgnored { name: n }, PushFate::LeftAlone) => n == name,
                    _ => false,
                }
        });
        if !seen {
            match fate {
                PushFate::DroppedMalformed => {
                    unmet!("connection {conn} did not drop a malformed {name} push")
                }
                PushFate::LeftAlone => {
                    unmet!("connection {conn} did not leave a {name} push alone")
                }
            }
        }
    }
    Ok(())
}

/// The traffic saw at most `max` errors, each of one of `classes`, and
/// succeeded again after the last of them: a fault it was not told about
/// cost a bounded number of requests and nothing after.
pub fn errors_bounded(report: &Report, classes: &[&str], max: usize) -> Claim {
    let class = classes.join(" or ");
    only_of(report, classes)?;
    if report.errors.len() > max {
        unmet!(
            "the traffic saw {} {class} errors; at most {max} were expected (first: {})",
            report.errors.len(),
            report.errors[0].error.chain()
        );
    }
    recovered(report)
}

/// Every error of the traffic is of one of `classes` and came while the
/// fault lasted (from `fault.0` to `fault.1`, with `slack` for a failure
/// the client noticed a moment after the fault ended), and the traffic
/// succeeded again after the last: an outage may cost every request made
/// while it lasts, however many, and nothing outside it.
pub fn errors_only_during(
    report: &Report,
    classes: &[&str],
    fault: (Instant, Instant),
    slack: Duration,
) -> Claim {
    only_of(report, classes)?;
    let (from, to) = fault;
    if let Some(e) = report
        .errors
        .iter()
        .find(|e| e.at < from || e.at > to + slack)
    {
        let when = match e.at < from {
            true => format!("{:?} before the fault began", from - e.at),
            false => format!("{:?} after the fault ended", e.at - to),
        };
        unmet!(
            "{} failed {when} ({} of {} errors outside the fault, slack {slack:?}): {}",
            e.op,
            report
                .errors
                .iter()
                .filter(|e| e.at < from || e.at > to + slack)
                .count(),
            report.errors.len(),
            e.error.chain()
        );
    }
    recovered(report)
}

/// Every error of the traffic is of one of `classes`.
fn only_of(report: &Report, classes: &[&str]) -> Claim {
    if let Some(e) = report
        .errors
        .iter()
        .find(|e| !classes.contains(&e.error.class()))
    {
        unmet!(
            "expected {} errors only; {}: {} error: {}",
            classes.join(" or "),
            e.op,
            e.error.class(),
            e.error.chain()
        );
    }
    Ok(())
}

/// A request succeeded after the last error, and no read returned a value
/// that was never written there.
fn recovered(report: &Report) -> Claim {
    if let Some(last) = report.errors.iter().map(|e| e.at).max() {
        if !report.successes.iter().any(|&s| s > last) {
            unmet!("no request succeeded after the last error: the client did not recover");
        }
    }
    if !report.mismatches.is_empty() {
        unmet!("wrong reads: {:?}", report.mismatches);
    }
    Ok(())
}

/// Every connection of `conns` was closed by the server and connected again
/// after it.
pub fn reconnected_each(events: &[ClientEvent], conns: &[u64]) -> Claim {
    for &conn in conns {
        let Some(closed) = events.iter().find_map(|e| match e.kind {
            EventKind::Disconnected { .. } if e.conn == conn => Some(e.at),
            _ => None,
        }) else {
            unmet!("connection {conn} was never closed by the server");
        };
        let back = events.iter().any(|e| {
            e.conn == conn && e.at >= closed && matches!(e.kind, EventKind::Connected { .. })
        });
        if !back {
            unmet!("connection {conn} was closed and never connected again");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientError;
    use crate::workload::OpError;

    #[test]
    fn an_outage_may_cost_any_request_made_while_it_lasts_and_none_outside() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let refused = |ms| OpError {
            op: "SET k".into(),
            error: ClientError::Connection {
                context: "connecting".into(),
                cause: None,
            },
            sent: at(ms),
            at: at(ms),
        };
        let fault = (at(1000), at(2000));
        let slack = Duration::from_millis(100);
        let mut r = Report {
            ok: 2,
            successes: vec![at(500), at(2500)],
            errors: (1000..=2050).step_by(10).map(refused).collect(),
            ..Report::default()
        };
        assert_eq!(
            errors_only_during(&r, &["connection"], fault, slack),
            Ok(())
        );
        assert!(errors_only_during(&r, &["timeout"], fault, slack)
            .unwrap_err()
            .0
            .contains("expected timeout errors only"));
        r.errors.push(refused(2200));
        let e = errors_only_during(&r, &["connection"], fault, slack)
            .unwrap_err()
            .0;
        assert!(
            e.contains("200ms after the fault ended") && e.contains("1 of 107"),
            "{e}"
        );
        r.errors.pop();
        r.errors.insert(0, refused(900));
        let e = errors_only_during(&r, &["connection"], fault, slack)
            .unwrap_err()
            .0;
        assert!(e.contains("100ms before the fault began"), "{e}");
        r.errors.remove(0);
        r.successes.pop();
        assert!(errors_only_during(&r, &["connection"], fault, slack)
            .unwrap_err()
            .0
            .contains("did not recover"));
    }
}
