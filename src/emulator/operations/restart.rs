//! `dmc_restart`: the endpoint's proxy restarts. Every connection it serves
//! is dropped at once, requests in flight with it, and nobody is told
//! before; the proxy takes new connections again at once.

use serde_json::{json, Value};

use super::check_node;
use crate::emulator::{ActionError, Emulator};
use crate::fault_injector::Action;

/// Drops every connection of the proxy on the endpoint's node (or `node`).
pub fn dmc_restart(emu: &Emulator, action: &Action) -> Result<Value, ActionError> {
    let Action::DmcRestart { bdb_id, node } = action else {
        return Err(ActionError::Invalid("not a dmc_restart action".into()));
    };
    let d = emu.existing_database(bdb_id.0)?;
    let node = match node {
        Some(n) => check_node(emu, n.0, "node")?,
        None => d.shared.active_node(),
    };
    let dropped = d
        .shared
        .close_node(node, crate::server_record::CloseCause::Restart);
    tracing::info!(
        bdb_id = bdb_id.0,
        node = node.index,
        dropped,
        "proxy restarted"
    );
    Ok(json!({ "node": node.index, "connections_dropped": dropped }))
}
