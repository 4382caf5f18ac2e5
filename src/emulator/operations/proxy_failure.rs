//! `proxy_failure`: the proxy of a node stops serving (`stop`), serves again
//! (`start`), or both (`restart`). Stopped, its connections are dropped
//! without notice and its addresses refuse new ones (the database's public
//! address too, while it routes to that node); nothing moves. Unlike
//! `dmc_restart`, which drops connections and goes on serving, a stopped proxy
//! stays down until it is started.

use std::sync::Arc;

use serde_json::{json, Value};

use super::check_node;
use crate::emulator::database::Node;
use crate::emulator::error::failed;
use crate::emulator::{ActionError, Database, Emulator};
use crate::fault_injector::ProxyCommand;
use crate::server_record::CloseCause;

/// Runs `command` on the proxy of node `node` (else the node that holds the
/// endpoint of `bdb`), for database `bdb` or every database it serves.
pub async fn proxy_failure(
    emu: &Emulator,
    bdb: Option<u64>,
    node: Option<usize>,
    command: ProxyCommand,
) -> Result<Value, ActionError> {
    let db = bdb.map(|id| emu.existing_database(id)).transpose()?;
    let node = match (node, &db) {
        (Some(n), _) => check_node(emu, n, "node_id")?,
        (None, Some(db)) => db.shared.active_node(),
        (None, None) => {
            return Err(ActionError::Invalid(
                "proxy_failure needs bdb_id or node_id".into(),
            ))
        }
    };
    let (stopped, dropped, started) = match command {
        ProxyCommand::Stop => {
            let (stopped, dropped) = stop(emu, db.as_ref(), node)?;
            (stopped, dropped, Vec::new())
        }
        ProxyCommand::Start => (Vec::new(), 0, start(emu, bdb, node).await?),
        ProxyCommand::Restart => {
            let (stopped, dropped) = stop(emu, db.as_ref(), node)?;
            tokio::time::sleep(crate::timing::PROXY_RESTART_DOWNTIME).await;
            (stopped, dropped, start(emu, bdb, node).await?)
        }
    };
    tracing::info!(
        node = node.index,
        ?stopped,
        ?started,
        dropped,
        "proxy_failure"
    );
    Ok(json!({
        "node_id": node.index,
        "stopped": stopped,
        "started": started,
        "connections_dropped": dropped,
    }))
}

/// Stops the proxy on `node` for `db` (every database it serves when
/// `None`); returns the databases stopped and the connections dropped.
fn stop(
    emu: &Emulator,
    db: Option<&Arc<Database>>,
    node: Node,
) -> Result<(Vec<u64>, usize), ActionError> {
    let dbs: Vec<Arc<Database>> = match db {
        Some(d) => vec![d.clone()],
        None => emu.databases(),
    };
    let serving: Vec<_> = dbs
        .into_iter()
        .filter(|d| d.shared.is_serving(node))
        .collect();
    if serving.is_empty() {
        return Err(ActionError::Invalid(format!(
            "no proxy to stop: node {} serves {} now",
            node.index,
            match db {
                Some(d) => format!("no endpoint of database {}", d.id()),
                None => "no database".into(),
            }
        )));
    }
    let mut dropped = 0;
    for d in &serving {
        dropped += d.shared.connections_on(node);
        d.stop_on(node, CloseCause::ProxyFailure);
        emu.outages.proxy_stopped(node.index, d.id());
    }
    Ok((serving.iter().map(|d| d.id()).collect(), dropped))
}

/// Starts again the proxies on `node` that `stop` stopped (for `bdb`
/// alone, when given); returns their databases.
async fn start(emu: &Emulator, bdb: Option<u64>, node: Node) -> Result<Vec<u64>, ActionError> {
    let ids = emu.outages.proxies_started(node.index, bdb);
    if ids.is_empty() {
        return Err(ActionError::Invalid(format!(
            "no stopped proxy on node {}{} to start; stop one first (action stop)",
            node.index,
            bdb.map(|b| format!(" for database {b}"))
                .unwrap_or_default()
        )));
    }
    let mut started = Vec::new();
    for id in ids {
        // A database deleted meanwhile has nothing to start.
        if let Some(d) = emu.database(id) {
            d.listen_on(node).await.map_err(failed)?;
            started.push(id);
        }
    }
    Ok(started)
}
