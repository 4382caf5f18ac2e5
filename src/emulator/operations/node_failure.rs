//! `node_failure`: a node goes down (`stop`), comes back (`start`), or both
//! (`reboot`). Nobody is told before.
//!
//! Down: every shard process on the node is killed and every proxy on it
//! stops (its connections dropped, its addresses refusing). Each primary it
//! held fails over to its replica on another node; an endpoint it held moves
//! to the next node that is up, unannounced (connections arriving on the
//! public address in between are refused), as the cluster's watchdog does.
//! While it is down no shard or endpoint is placed on it.
//!
//! An OSS Cluster API database's primary on the node is taken over by its
//! replica (`CLUSTER FAILOVER TAKEOVER`) and its slots are served from the
//! replica's node; clients learn it from the topology the other nodes
//! answer, as nothing is announced. The takeover runs the instant before the
//! node's shards die, so it never waits for a cluster timeout; what clients
//! see is the same: the node's connections drop and its slots move.
//!
//! Back: it holds a new replica for each shard set that lost a shard there
//! (joined to the cluster, for a cluster database), and its proxies serve the
//! standalone databases whose endpoint did not leave it. The primaries and
//! endpoints that moved stay where they went.

use std::sync::Arc;

use serde_json::{json, Value};

use super::takeover::{new_replica, take_over};
use super::{check_node, next_up_node, timings};
use crate::emulator::database::Node;
use crate::emulator::error::failed;
use crate::emulator::outages::NodeDown;
use crate::emulator::shard::wait_caught_up;
use crate::emulator::{ActionError, Database, Emulator};
use crate::fault_injector::{NodeMethod, Timestamp, TimingOverrides};
use crate::server_record::{CloseCause, EndpointMove};

/// Runs `method` on node `n`.
pub async fn node_failure(
    emu: &Emulator,
    n: usize,
    method: NodeMethod,
) -> Result<Value, ActionError> {
    match method {
        NodeMethod::Stop => stop(emu, n).await,
        NodeMethod::Start => start(emu, n).await,
        NodeMethod::Reboot => {
            let down = stop(emu, n).await?;
            tokio::time::sleep(crate::timing::NODE_REBOOT_DOWNTIME).await;
            let up = start(emu, n).await?;
            Ok(json!({ "node_id": n, "method": "reboot", "stopped": down, "started": up }))
        }
    }
}

/// Takes node `n` down.
async fn stop(emu: &Emulator, n: usize) -> Result<Value, ActionError> {
    if emu.outages.node_down(n) {
        return Err(ActionError::Invalid(format!(
            "node {n} is already down; start it with method start"
        )));
    }
    let node = check_node(emu, n, "node_id")?;
    if emu.up_nodes().len() < 2 {
        return Err(ActionError::Invalid(format!(
            "node {n} is the last node up; a cluster keeps at least one"
        )));
    }
    let dbs = emu.databases();
    // Every database's shards are held from the check to the end: nothing
    // else moves a shard meanwhile.
    let mut locked = Vec::new();
    for d in &dbs {
        locked.push(d.shards.lock().await);
    }
    for (d, shards) in dbs.iter().zip(&locked) {
        if let Some(set) = shards
            .sets
            .iter()
            .find(|s| s.primary.node == n && s.replica.as_ref().is_none_or(|r| r.node == n))
        {
            return Err(ActionError::Invalid(format!(
                "primary shard {} of database {} lives on node {n} with no replica on another node: its data would be lost; create the database with replication: true",
                set.primary.id,
                d.id()
            )));
        }
    }
    // A failure strikes a cluster in its steady state: replicas are in sync
    // (a database just created may still be copying its first data).
    for (d, shards) in dbs.iter().zip(&locked) {
        for set in shards.sets.iter().filter(|s| s.primary.node == n) {
            let replica = set.replica.as_ref().expect("checked above");
            wait_caught_up(&set.primary, replica, d.timings.sync_timeout)
                .await
                .map_err(failed)?;
        }
    }
    emu.outages.node_stopped(n, NodeDown::default());
    let mut held = NodeDown::default();
    let mut report = Vec::new();
    for (d, mut shards) in dbs.iter().zip(locked) {
        let t = timings(d, &TimingOverrides::default())?;
        let dropped = d.shared.connections_on(node);
        let serving = d.shared.is_serving(node);
        let had_endpoint = d.shared.active_node() == node;
        if serving {
            d.stop_on(node, CloseCause::NodeFailure);
            // A cluster database's proxy serves where its primaries are:
            // none will be on this node when it is back.
            if !had_endpoint && !d.shared.oss_cluster {
                held.proxies.push(d.id());
            }
        }
        // Every process on the node dies at once: its replicas here, its
        // primaries as their replicas take over (a cluster's the instant
        // after the takeover).
        for set in &shards.sets {
            if let Some(r) = set.replica.as_ref().filter(|r| r.node == n) {
                r.kill();
            }
        }
        let mut promoted = Vec::new();
        for i in 0..shards.sets.len() {
            let set = &mut shards.sets[i];
            if set.primary.node == n {
                let dead = take_over(d, &t, set, i).await?;
                promoted.push(set.primary.id);
                dead.stop().await;
                held.lost_shards.push((d.id(), i));
            } else if let Some(r) = set.replica.take_if(|r| r.node == n) {
                r.stop().await;
                held.lost_shards.push((d.id(), i));
            }
        }
        let endpoint_to = match had_endpoint {
            true => Some(move_endpoint(emu, d, node).await?),
            false => None,
        };
        report.push(json!({
            "bdb_id": d.id(),
            "connections_dropped": dropped,
            "promoted_shards": promoted,
            "endpoint_moved_to": endpoint_to,
        }));
    }
    emu.outages.node_stopped(n, held);
    tracing::info!(node = n, "node down");
    Ok(json!({ "node_id": n, "method": "stop", "databases": report }))
}

/// Moves the endpoint of `d` off the failed `node` to the next node that
/// is up, unannounced; returns that node.
async fn move_endpoint(
    emu: &Emulator,
    d: &Arc<Database>,
    node: Node,
) -> Result<usize, ActionError> {
    let to = next_up_node(emu, node).expect("checked: another node is up");
    d.listen_on(to).await.map_err(failed)?;
    let now = Timestamp::now();
    d.shared.ledger.endpoint_moved(EndpointMove {
        seq: d.shared.take_seq(),
        from: node.index,
        to: to.index,
        at: now,
        grace_end: now,
        announced: false,
    });
    d.shared.set_active_node(to);
    Ok(to.index)
}

/// Brings node `n` back.
async fn start(emu: &Emulator, n: usize) -> Result<Value, ActionError> {
    let Some(held) = emu.outages.node_started(n) else {
        check_node(emu, n, "node_id")?;
        return Err(ActionError::Invalid(format!(
            "node {n} is up; stop it first (method stop)"
        )));
    };
    let node = Node { index: n };
    let mut replicas = Vec::new();
    for (id, i) in held.lost_shards {
        // A database deleted meanwhile has nothing to rebuild.
        let Some(d) = emu.database(id) else { continue };
        let mut shards = d.shards.lock().await;
        let Some(set) = shards.sets.get_mut(i).filter(|s| s.replica.is_none()) else {
            continue;
        };
        match new_replica(emu, &d, node, &set.primary).await {
            Ok(r) => {
                replicas.push(json!({ "bdb_id": id, "shard_id": r.id }));
                set.replica = Some(r);
            }
            Err(e) => tracing::warn!(bdb_id = id, "no new replica on node {n}: {e:#}"),
        }
    }
    let mut proxies = Vec::new();
    for id in held.proxies {
        if let Some(d) = emu.database(id) {
            d.listen_on(node).await.map_err(failed)?;
            proxies.push(id);
        }
    }
    tracing::info!(node = n, "node up");
    Ok(json!({ "node_id": n, "method": "start", "replicas": replicas, "proxies": proxies }))
}
