//! Claims about faults nobody announced and pushes a client must not be
//! fooled by: what each connection did with an odd push, whether dropped
//! connections came back, and what a fault cost the traffic.

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
    if let Some(e) = report
        .errors
        .iter()
        .find(|e| !classes.contains(&e.error.class()))
    {
        unmet!(
            "expected {class} errors only; {}: {} error: {}",
            e.op,
            e.error.class(),
            e.error.chain()
        );
    }
    if report.errors.len() > max {
        unmet!(
            "the traffic saw {} {class} errors; at most {max} were expected (first: {})",
            report.errors.len(),
            report.errors[0].error.chain()
        );
    }
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
