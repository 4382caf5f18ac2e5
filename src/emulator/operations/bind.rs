//! `bind`: the endpoint moves to another node. MOVING to every connection
//! on the old node (again half-way through the grace), which closes after it.
//! With `repeat` 0 no MOVING is sent: the move is unannounced, and clients
//! learn of it only when the old node closes their connections.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{check_node, next_up_node};
use crate::emulator::database::Announcement;
use crate::emulator::error::failed;
use crate::emulator::{ActionError, Database, Emulator, Timings};
use crate::fault_injector::Timestamp;
use crate::notification::EndpointType;
use crate::server_record::{CloseCause, EndpointMove};

/// Moves the endpoint of `db` to `target` (the next node when `None`).
pub async fn bind(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    forced: Option<EndpointType>,
    target: Option<usize>,
    repeat: u32,
) -> Result<Value, ActionError> {
    let from = db.shared.active_node();
    let to = match target {
        Some(t) if t == from.index => {
            return Err(ActionError::Invalid(format!(
                "the endpoint already lives on node {t}; pick another target_node"
            )))
        }
        Some(t) => check_node(emu, t, "target_node")?,
        None => next_up_node(emu, from).ok_or_else(|| {
            ActionError::Invalid(
                "bind needs a second node that is up to move the endpoint to; start the emulator with --nodes 2 or more".into(),
            )
        })?,
    };
    db.listen_on(to).await.map_err(failed)?;
    let grace = t.moving_grace;
    let seq = db.shared.take_seq();
    let deadline = Instant::now() + grace;
    let now = Timestamp::now();
    db.shared.ledger.endpoint_moved(EndpointMove {
        seq,
        from: from.index,
        to: to.index,
        at: now,
        grace_end: Timestamp(now.0 + grace),
        announced: repeat > 0,
    });
    db.shared.set_active_node(to);
    let announcement = Announcement::Moving {
        seq,
        deadline,
        target: to,
    };
    let mut sent = Vec::new();
    for _ in 0..repeat {
        sent.push(match forced {
            // A forced form is rendered once and sent as is.
            Some(ty) => db.shared.announce(
                Announcement::Start {
                    notification: announcement
                        .render(ty, &db.shared.naming, db.shared.port, Instant::now())
                        .expect("a MOVING renders"),
                    deadline,
                },
                Some(from),
            ),
            None => db.shared.announce(announcement.clone(), Some(from)),
        });
    }
    // As real servers do, MOVING is sent again half-way through the grace to
    // the connections that are still on the old node.
    tokio::time::sleep_until(deadline - grace / 2).await;
    if let Some(a) = sent.first() {
        db.shared.deliver(a, Some(from));
    }
    tokio::time::sleep_until(deadline).await;
    match repeat {
        // Unannounced: the name leads to the new node now, and the old one
        // lets each connection go at its next pause.
        0 => db.drain_on(from, CloseCause::AddressChange),
        _ => db.stop_on(from, CloseCause::GraceEnd),
    }
    db.shared.close_window(seq);
    Ok(json!({
        "seq": seq,
        "from_node": from.index,
        "to_node": to.index,
        "endpoint": format!("{}:{}", to.internal_ip(), db.shared.port),
    }))
}
