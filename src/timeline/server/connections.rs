//! Claims on a client's connections as the server held them: who cut
//! them off, how many were open at once.

use super::super::{Claim, Unmet};
use super::{moves_seen, no_move_found};
use crate::fault_injector::Timestamp;
use crate::server_record::{CloseCause, ConnectionRecord, DatabaseRecord};

/// The server cut off no connection of `name`: none ended at a grace end,
/// an address change, a proxy restart or failure, a node leaving or failing, or an error (the client closed each it
/// closed; the database's own shutdown aside).
pub fn none_cut_off(record: &DatabaseRecord, name: &str) -> Claim {
    let cut: Vec<String> = record
        .named(name)
        .filter(|c| {
            matches!(
                c.closed_by,
                Some(
                    CloseCause::GraceEnd
                        | CloseCause::AddressChange
                        | CloseCause::Restart
                        | CloseCause::NodeLeft
                        | CloseCause::NodeFailure
                        | CloseCause::ProxyFailure
                        | CloseCause::Error
                )
            ) && c.closed_at.is_some()
        })
        .map(|c| c.describe())
        .collect();
    if !cut.is_empty() {
        unmet!(
            "the server cut off {} connection(s) of {name:?}:\n  {}",
            cut.len(),
            cut.join("\n  ")
        );
    }
    Ok(())
}

/// The most connections of `name` the server held open at once, and when.
pub fn peak_open(record: &DatabaseRecord, name: &str) -> (usize, Option<Timestamp>) {
    // Opens before closes at the same instant: a close and an open at once
    // count both.
    let mut edges: Vec<(Timestamp, i8)> = Vec::new();
    for c in record.named(name) {
        edges.push((c.accepted_at, 1));
        if let Some(at) = c.closed_at {
            edges.push((at, -1));
        }
    }
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let (mut open, mut peak, mut when) = (0i64, 0i64, None);
    for (at, d) in edges {
        open += i64::from(d);
        if open > peak {
            (peak, when) = (open, Some(at));
        }
    }
    (peak.max(0) as usize, when)
}

/// The server never held more connections of `name` open at once than
/// `bound`.
pub fn open_at_most(record: &DatabaseRecord, name: &str, bound: usize) -> Claim {
    let (peak, when) = peak_open(record, name);
    if peak > bound {
        unmet!(
            "the server held {peak} connections of {name:?} open at once (at {}), more than {bound}",
            when.map(|t| t.to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

/// A server-side close: the server (not the client, not the database's
/// shutdown) ended the connection.
fn cut_by_server(cause: Option<CloseCause>) -> bool {
    !matches!(
        cause,
        None | Some(CloseCause::Client | CloseCause::Shutdown)
    )
}

/// The server cut off every connection of `name` it held when it first cut
/// one (a restart, an address change, a node or proxy failure, ...), and the
/// client connected again: it holds at least as many connections open now,
/// all accepted after that first cut.
pub fn cut_and_reconnected(record: &DatabaseRecord, name: &str) -> Claim {
    let Some(first) = record
        .named(name)
        .filter(|c| cut_by_server(c.closed_by))
        .filter_map(|c| c.closed_at)
        .min()
    else {
        unmet!(
            "the server cut off no connection of {name:?}: {} recorded, none closed by the server",
            record.named(name).count()
        );
    };
    let held: Vec<_> = record
        .named(name)
        .filter(|c| c.accepted_at <= first && c.closed_at.is_none_or(|at| at >= first))
        .collect();
    let kept: Vec<String> = held
        .iter()
        .filter(|c| !cut_by_server(c.closed_by))
        .map(|c| c.describe())
        .collect();
    if !kept.is_empty() {
        unmet!(
            "the server first cut off a connection of {name:?} at {first}, but {} of the {} it held then did not end by the server's hand:\n  {}",
            kept.len(),
            held.len(),
            kept.join("\n  ")
        );
    }
    let again = record
        .named(name)
        .filter(|c| c.accepted_at > first && c.closed_at.is_none())
        .count();
    if again < held.len() {
        unmet!(
            "the server cut off the {} connection(s) of {name:?} it held at {first}, and holds {again} opened since: the client did not connect again",
            held.len()
        );
    }
    Ok(())
}

/// No connection of `name` is open on `node` any more.
pub fn none_open_on(record: &DatabaseRecord, name: &str, node: usize) -> bool {
    !record.named(name).any(|c| c.node == node && c.is_open())
}

/// `name` let go of every connection it had on `node` (a node that left
/// the cluster) itself: each one is closed, by the client, none left for
/// the node to close when it stopped.
pub fn let_go_of_node(record: &DatabaseRecord, name: &str, node: usize) -> Claim {
    let on_node: Vec<_> = record.named(name).filter(|c| c.node == node).collect();
    let open: Vec<String> = on_node
        .iter()
        .filter(|c| c.is_open())
        .map(|c| c.describe())
        .collect();
    if !open.is_empty() {
        unmet!(
            "{} connection(s) of {name:?} still open on node {node}, which left the cluster:\n  {}",
            open.len(),
            open.join("\n  ")
        );
    }
    let cut: Vec<String> = on_node
        .iter()
        .filter(|c| c.closed_by != Some(CloseCause::Client))
        .map(|c| c.describe())
        .collect();
    if !cut.is_empty() {
        unmet!(
            "{name:?} left {} connection(s) on node {node}, which left the cluster, for the server to close:\n  {}",
            cut.len(),
            cut.join("\n  ")
        );
    }
    Ok(())
}

/// Every connection of `name` the server holds open opted in for MOVING in
/// form `ty` (`internal-ip`, ...), and there is at least one: the server's
/// record of the handshake, for a client whose connections the suite cannot
/// address one by one.
pub fn opted_in_as(record: &DatabaseRecord, name: &str, ty: &str) -> Claim<usize> {
    let open: Vec<_> = record.named(name).filter(|c| c.is_open()).collect();
    let wrong: Vec<String> = open
        .iter()
        .filter(|c| c.maint.as_deref() != Some(ty))
        .map(|c| match &c.maint {
            Some(t) => format!("{} opted in for {t}", c.describe()),
            None => format!("{} never opted in", c.describe()),
        })
        .collect();
    if open.is_empty() || !wrong.is_empty() {
        unmet!(
            "the server holds {} of the {} open connection(s) of {name:?} otherwise than opted in for {ty}:\n  {}",
            wrong.len(),
            open.len(),
            wrong.join("\n  ")
        );
    }
    Ok(open.len())
}

/// Every connection of `name` the server holds open negotiated TLS `want`
/// (`1.2`, `1.3`; `None`: unencrypted), and there is at least one.
pub fn encrypted_as(record: &DatabaseRecord, name: &str, want: Option<&str>) -> Claim<usize> {
    let say = |v: Option<&str>| v.map_or("no TLS".to_string(), |v| format!("TLS {v}"));
    let open: Vec<_> = record.named(name).filter(|c| c.is_open()).collect();
    let wrong: Vec<String> = open
        .iter()
        .filter(|c| c.tls.as_deref() != want)
        .map(|c| format!("{} uses {}", c.describe(), say(c.tls.as_deref())))
        .collect();
    if open.is_empty() || !wrong.is_empty() {
        unmet!(
            "the server holds {} of the {} open connection(s) of {name:?} with other than {}:\n  {}",
            wrong.len(),
            open.len(),
            say(want),
            wrong.join("\n  ")
        );
    }
    Ok(open.len())
}

/// MOVING without an address, by the server's record: each connection of
/// `name` it was written to was followed by a connection of `name` on the
/// public address (the one every client is configured with), accepted half
/// of what was left of the grace after that MOVING, within `slack`.
pub fn reconnected_at_half_grace(
    record: &DatabaseRecord,
    name: &str,
    slack: std::time::Duration,
) -> Claim<usize> {
    let seen = moves_seen(record, name);
    let Some(last) = seen.last() else {
        return Err(no_move_found(record, name));
    };
    let m = last.at;
    let mut checked = 0;
    for c in &last.left_behind {
        let Some(p) = c.pushes_of("MOVING").find(|p| p.seq == Some(m.seq)) else {
            continue;
        };
        if p.endpoint.is_some() {
            unmet!(
                "the server's MOVING (seq {}) to {} named {:?}: not a MOVING without an address",
                m.seq,
                c.describe(),
                p.endpoint
            );
        }
        let left = m.grace_end.0.duration_since(p.at.0).unwrap_or_default();
        let due = p.at.0 + left / 2;
        let near = |t: Timestamp| {
            let d =
                t.0.duration_since(due)
                    .or_else(|e| Ok::<_, ()>(e.duration()))
                    .unwrap_or_default();
            d <= slack
        };
        let public: Vec<&ConnectionRecord> = record
            .named(name)
            .filter(|n| n.public && n.accepted_at > p.at)
            .collect();
        if !public.iter().any(|n| near(n.accepted_at)) {
            unmet!(
                "{} was sent MOVING without an address {left:?} before the grace ended; no connection of {name:?} reached the configured address {:?} after it (within {slack:?}); after it the server accepted on that address: {}",
                c.describe(),
                left / 2,
                if public.is_empty() {
                    "nothing".to_string()
                } else {
                    public.iter().map(|n| format!("{} ({})", n.id, offset_of(p.at, n.accepted_at))).collect::<Vec<_>>().join(", ")
                }
            );
        }
        checked += 1;
    }
    if checked == 0 {
        unmet!(
            "the server sent no MOVING (seq {}) to the connections of {name:?} on node {}",
            m.seq,
            m.from
        );
    }
    Ok(checked)
}

fn offset_of(from: Timestamp, t: Timestamp) -> String {
    match t.0.duration_since(from.0) {
        Ok(d) => format!("{d:?} after"),
        Err(e) => format!("{:?} before", e.duration()),
    }
}
