//! Claims the server decides: pure functions over its record of a database
//! ([`DatabaseRecord`]: every connection from accept to close, every move of
//! the endpoint), never over what the client says of itself. A client's own
//! events may explain a failure; these decide it.

use super::requests::{shared_windows, Window};
use super::{Claim, Unmet};
use crate::fault_injector::Timestamp;
use crate::server_record::{CloseCause, ConnectionRecord, DatabaseRecord, EndpointMove};
use crate::timing::GRACE_END_SLACK;

/// One move of the endpoint as the connections of one client lived it.
#[derive(Debug)]
pub struct MoveSeen<'a> {
    /// The move.
    pub at: &'a EndpointMove,
    /// The client's connections open on the old node when it began.
    pub left_behind: Vec<&'a ConnectionRecord>,
    /// The client's connections the new node accepted between its start
    /// and the end of its grace.
    pub arrived: Vec<&'a ConnectionRecord>,
}

impl MoveSeen<'_> {
    /// Every connection left on the old node is closed, and either the grace
    /// is over or as many arrived on the new node: nothing more will change.
    pub fn settled(&self, now: Timestamp) -> bool {
        self.left_behind.iter().all(|c| !c.is_open())
            && (now > self.at.grace_end || self.arrived.len() >= self.left_behind.len())
    }
}

/// The moves of the endpoint that found connections of `name` on the node
/// they left, in order.
pub fn moves_seen<'a>(record: &'a DatabaseRecord, name: &'a str) -> Vec<MoveSeen<'a>> {
    let conns: Vec<&ConnectionRecord> = record.named(name).collect();
    record
        .endpoint_moves
        .iter()
        .map(|m| MoveSeen {
            at: m,
            left_behind: conns
                .iter()
                .filter(|c| c.node == m.from && c.open_at(m.at))
                .copied()
                .collect(),
            arrived: conns
                .iter()
                .filter(|c| c.node == m.to && c.accepted_at >= m.at && c.accepted_at <= m.grace_end)
                .copied()
                .collect(),
        })
        .filter(|s| !s.left_behind.is_empty())
        .collect()
}

/// While the connections of `name` moved, by the server: from the first
/// move that found some on the node it left to the last of their arrivals
/// on the new node and closes on the old one (before the grace ended).
pub fn moving_span(record: &DatabaseRecord, name: &str) -> Option<(Timestamp, Timestamp)> {
    let seen = moves_seen(record, name);
    let from = seen.first()?.at.at;
    let to = seen
        .iter()
        .flat_map(|s| {
            let closes = s
                .left_behind
                .iter()
                .filter_map(|c| c.closed_at)
                .filter(|t| *t <= s.at.grace_end);
            s.arrived.iter().map(|c| c.accepted_at).chain(closes)
        })
        .max()
        .unwrap_or(from);
    Some((from, to.max(from)))
}

/// Everything the server will record of `name`'s handoffs is in: every move
/// that found its connections is [`MoveSeen::settled`].
pub fn handoffs_settled(record: &DatabaseRecord, name: &str, now: Timestamp) -> bool {
    let seen = moves_seen(record, name);
    !seen.is_empty() && seen.iter().all(|s| s.settled(now))
}

/// Every connection of `name` the endpoint left behind moved, by the
/// server's record: at every move, the new node accepted as many
/// connections of `name` before the grace ended as the old node held (one
/// each: not fewer, not more), and the old node closed none of them at the
/// grace end (the client closed each itself).
pub fn handed_off_by_server(record: &DatabaseRecord, name: &str) -> Claim {
    let seen = moves_seen(record, name);
    if seen.is_empty() {
        return Err(no_move_found(record, name));
    }
    for s in &seen {
        let m = s.at;
        let cut: Vec<String> = s
            .left_behind
            .iter()
            .filter(|c| c.closed_by == Some(CloseCause::GraceEnd) || c.is_open())
            .map(|c| c.describe())
            .collect();
        if !cut.is_empty() {
            unmet!(
                "the server closed {} of the {} connection(s) of {name:?} it held on node {} when the grace of the move to node {} ended (at {}): they never moved:\n  {}",
                cut.len(),
                s.left_behind.len(),
                m.from,
                m.to,
                m.grace_end,
                cut.join("\n  ")
            );
        }
        if s.arrived.len() != s.left_behind.len() {
            unmet!(
                "node {} held {} connection(s) of {name:?} when the endpoint moved to node {} (at {}); node {} accepted {} of them before the grace ended (at {}), one per connection expected:\n  {}",
                m.from,
                s.left_behind.len(),
                m.to,
                m.at,
                m.to,
                s.arrived.len(),
                m.grace_end,
                s.arrived
                    .iter()
                    .map(|c| c.describe())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
    }
    Ok(())
}

/// No connection of `name` that arrived on the node the endpoint moved to
/// was sent that move's MOVING: a real cluster sends MOVING to the
/// connections of the node going away, never to the one a handoff opens
/// (a client that follows every MOVING would hand off from it again).
pub fn no_moving_on_arrival(record: &DatabaseRecord, name: &str) -> Claim {
    let seen = moves_seen(record, name);
    if seen.is_empty() {
        return Err(no_move_found(record, name));
    }
    for s in &seen {
        let m = s.at;
        if s.arrived.is_empty() {
            unmet!(
                "no connection of {name:?} arrived on node {} after the endpoint moved there (at {}): nothing to judge",
                m.to,
                m.at
            );
        }
        let sent: Vec<String> = s
            .arrived
            .iter()
            .filter(|c| c.pushes_of("MOVING").any(|p| p.seq == Some(m.seq)))
            .map(|c| c.describe())
            .collect();
        if !sent.is_empty() {
            unmet!(
                "the server sent the MOVING (seq {}) of the move to node {} to {} of the {} connection(s) of {name:?} that arrived there:\n  {}",
                m.seq,
                m.to,
                sent.len(),
                s.arrived.len(),
                sent.join("\n  ")
            );
        }
    }
    Ok(())
}

/// Every connection of `name` left on the old node moved promptly: the new
/// node accepted each arrival within `within` of the move's start, and the
/// client closed every connection it left (see [`handed_off_by_server`]).
pub fn arrived_within(record: &DatabaseRecord, name: &str, within: std::time::Duration) -> Claim {
    handed_off_by_server(record, name)?;
    for s in moves_seen(record, name) {
        for c in &s.arrived {
            let took = c
                .accepted_at
                .0
                .duration_since(s.at.at.0)
                .unwrap_or_default();
            if took > within {
                unmet!(
                    "{}: accepted {took:?} after the endpoint began moving to node {} (at {}), {within:?} at most expected",
                    c.describe(),
                    s.at.to,
                    s.at.at
                );
            }
        }
    }
    Ok(())
}

/// The negative control: the server closed every connection of `name` it
/// held on the old node when the grace ended.
pub fn cut_at_grace_end(record: &DatabaseRecord, name: &str) -> Claim {
    let seen = moves_seen(record, name);
    if seen.is_empty() {
        return Err(no_move_found(record, name));
    }
    for s in &seen {
        let moved: Vec<String> = s
            .left_behind
            .iter()
            .filter(|c| c.closed_by != Some(CloseCause::GraceEnd))
            .map(|c| c.describe())
            .collect();
        if !moved.is_empty() {
            unmet!(
                "expected the server to close every connection of {name:?} on node {} when the grace ended (at {}); {} of {} did not end that way:\n  {}",
                s.at.from,
                s.at.grace_end,
                moved.len(),
                s.left_behind.len(),
                moved.join("\n  ")
            );
        }
        let off: Vec<String> = s
            .left_behind
            .iter()
            .filter(|c| {
                c.closed_at.is_none_or(|at| {
                    let d =
                        at.0.duration_since(s.at.grace_end.0)
                            .or_else(|e| Ok::<_, ()>(e.duration()))
                            .unwrap_or_default();
                    d > GRACE_END_SLACK
                })
            })
            .map(|c| c.describe())
            .collect();
        if !off.is_empty() {
            unmet!(
                "the server closed the connections of {name:?} on node {} at the grace end, but not when the grace ended (at {}, give or take {GRACE_END_SLACK:?}):\n  {}",
                s.at.from,
                s.at.grace_end,
                off.join("\n  ")
            );
        }
    }
    Ok(())
}

/// The server gave the endpoint's last move a grace of `want` (its end
/// minus its start, within `slack`): the grace a rebind really had, as the
/// server kept it, whatever MOVING told clients.
pub fn move_grace(
    record: &DatabaseRecord,
    want: std::time::Duration,
    slack: std::time::Duration,
) -> Claim {
    let Some(m) = record.endpoint_moves.last() else {
        unmet!(
            "the server recorded no move of the endpoint of database {}",
            record.bdb_id
        );
    };
    let had = m.grace_end.0.duration_since(m.at.0).unwrap_or_default();
    if had.abs_diff(want) > slack {
        unmet!(
            "the endpoint's last move (seq {}, node {} to node {}) had a grace of {}, not {} (slack {})",
            m.seq,
            m.from,
            m.to,
            crate::duration_text::show(Some(had)),
            crate::duration_text::show(Some(want)),
            crate::duration_text::show(Some(slack))
        );
    }
    Ok(())
}

/// Where the server's MOVING sent the connections of `name` at the last
/// move that found them: the endpoint it named (`None`: MOVING null, the
/// configured address), or an error when it sent them no MOVING.
pub fn moving_named(record: &DatabaseRecord, name: &str) -> Claim<(i64, usize, Option<String>)> {
    let seen = moves_seen(record, name);
    let Some(last) = seen.last() else {
        return Err(no_move_found(record, name));
    };
    let m = last.at;
    let named: Vec<Option<String>> = last
        .left_behind
        .iter()
        .flat_map(|c| c.pushes_of("MOVING"))
        .filter(|p| p.seq == Some(m.seq))
        .map(|p| p.endpoint.clone())
        .collect();
    let Some(first) = named.first() else {
        unmet!(
            "the server sent no MOVING (seq {}) to the {} connection(s) of {name:?} on node {} when the endpoint moved to node {}: they never opted in",
            m.seq,
            last.left_behind.len(),
            m.from,
            m.to
        );
    };
    if let Some(other) = named.iter().find(|e| *e != first) {
        unmet!(
            "the server's MOVING (seq {}) named {first:?} on one connection of {name:?} and {other:?} on another: one form per client expected",
            m.seq
        );
    }
    Ok((m.seq, m.to, first.clone()))
}

/// `c` reached the node the endpoint moved to, at the address MOVING named:
/// that IP and port when it named one, the public address when it named
/// none, any address of the node for a host name (whose resolution decides).
pub fn at_moving_endpoint(c: &ConnectionRecord, to: usize, named: Option<&str>) -> Claim {
    if c.node != to {
        unmet!(
            "{}: not on node {to}, where the endpoint moved",
            c.describe()
        );
    }
    match named {
        None if !c.public => unmet!(
            "{}: MOVING named no address, so the configured (public) address was expected",
            c.describe()
        ),
        Some(e) if names_ip(e) && c.local != e => unmet!("{}: MOVING named {e}", c.describe()),
        _ => Ok(()),
    }
}

/// Every connection of `name` open now is one of `expected` on the node the
/// endpoint moved to, at the address MOVING named ([`at_moving_endpoint`]).
pub fn uses_moving_endpoint(record: &DatabaseRecord, name: &str, expected: Option<usize>) -> Claim {
    let (_, to, named) = moving_named(record, name)?;
    let open: Vec<&ConnectionRecord> = record.named(name).filter(|c| c.is_open()).collect();
    for c in &open {
        at_moving_endpoint(c, to, named.as_deref()).map_err(|e| {
            Unmet(format!(
                "a connection of {name:?} is not where MOVING sent it: {e}"
            ))
        })?;
    }
    let counted = match expected {
        Some(n) => open.len() == n,
        None => !open.is_empty(),
    };
    if !counted {
        unmet!(
            "the server holds {} open connection(s) of {name:?}, {} expected:\n  {}",
            open.len(),
            expected.map_or("at least one".to_string(), |n| n.to_string()),
            open.iter()
                .map(|c| c.describe())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    Ok(())
}

/// The last connection of `name` the server accepted went straight to the
/// endpoint MOVING named.
pub fn newest_at_moving_endpoint(record: &DatabaseRecord, name: &str) -> Claim {
    let (_, to, named) = moving_named(record, name)?;
    let Some(newest) = record.named(name).max_by_key(|c| c.id) else {
        unmet!("the server holds no connection of {name:?}");
    };
    at_moving_endpoint(newest, to, named.as_deref())
        .map_err(|e| Unmet(format!("the new connection of {name:?}: {e}")))
}

/// The pushes of `kind` (every push when `None`) the server wrote to the
/// connections of `name`, replays at set-up included.
pub fn pushes_sent(record: &DatabaseRecord, name: &str, kind: Option<&str>) -> u64 {
    record
        .named(name)
        .map(|c| match kind {
            None => c.pushes_total,
            Some(k) => c.pushes_of(k).count() as u64,
        })
        .sum()
}

/// The server wrote every push of `wanted` (kind, sequence number) to one
/// connection of `name`: what a client says it read, the server had sent.
pub fn wrote_to_one_connection(
    record: &DatabaseRecord,
    name: &str,
    wanted: &[(&str, i64)],
) -> Claim {
    let has = |c: &ConnectionRecord, (kind, seq): &(&str, i64)| {
        c.pushes_of(kind).any(|p| p.seq == Some(*seq))
    };
    if record.named(name).any(|c| wanted.iter().all(|w| has(c, w))) {
        return Ok(());
    }
    let what: Vec<String> = wanted.iter().map(|(k, s)| format!("{k} {s}")).collect();
    let written: Vec<String> = record
        .named(name)
        .flat_map(|c| {
            c.pushes
                .iter()
                .map(move |p| format!("{} {} (connection {})", p.kind, p.seq.unwrap_or(-1), c.id))
        })
        .collect();
    unmet!(
        "the server's record shows no connection of {name:?} written {}; it wrote: {}",
        what.join(" and "),
        match written.is_empty() {
            true => "nothing".to_string(),
            false => written.join(", "),
        }
    );
}

/// The server wrote `first` and then `second`, with the next sequence
/// number, to one connection of `name` (a pair of each, `second` absent:
/// `first` alone); returns the sequence numbers written.
pub fn wrote_pair(
    record: &DatabaseRecord,
    name: &str,
    first: &str,
    second: Option<&str>,
) -> Claim<(i64, Option<i64>)> {
    for c in record.named(name) {
        for a in c.pushes_of(first).filter_map(|p| p.seq) {
            let Some(second) = second else {
                return Ok((a, None));
            };
            if c.pushes_of(second).any(|p| p.seq == Some(a + 1)) {
                return Ok((a, Some(a + 1)));
            }
        }
    }
    let what = match second {
        Some(s) => format!("{first} then {s} with the next sequence number"),
        None => first.to_string(),
    };
    unmet!(
        "the server's record shows no connection of {name:?} written {what}; it wrote {} push(es) to its connections",
        pushes_sent(record, name, None)
    );
}

/// The windows the server held open on every connection of `name` at once:
/// on each connection, from a push of kind `open` to the next push of kind
/// `close` it wrote there, or to the connection's end when it closed first
/// (a client that drops a connection on a timeout ends its window there);
/// a window still open on an open connection is left out.
pub fn windows(record: &DatabaseRecord, name: &str, open: &str, close: &str) -> Vec<Window> {
    let mut spans = Vec::new();
    for c in record.named(name) {
        for start in c.pushes_of(open) {
            let end = c
                .pushes_of(close)
                .find(|p| p.at >= start.at)
                .map(|p| p.at)
                .or(c.closed_at);
            if let Some(end) = end {
                spans.push(Window {
                    from: start.at.0,
                    to: end.0,
                });
            }
        }
    }
    shared_windows(spans)
}

fn names_ip(endpoint: &str) -> bool {
    endpoint.rsplit_once(':').is_some_and(|(host, _)| {
        host.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    })
}

pub(super) fn no_move_found(record: &DatabaseRecord, name: &str) -> Unmet {
    let conns: Vec<String> = record.named(name).map(|c| c.describe()).collect();
    Unmet(format!(
        "the server saw no connection of {name:?} on a node the endpoint moved away from ({} move(s) recorded); its connections:\n  {}",
        record.endpoint_moves.len(),
        if conns.is_empty() {
            "none (did the client name itself with CLIENT SETNAME?)".into()
        } else {
            conns.join("\n  ")
        }
    ))
}

mod cluster;
mod connections;

pub use cluster::*;
pub use connections::*;

#[cfg(test)]
mod tests;
