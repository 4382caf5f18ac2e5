//! What each action does to the emulated cluster, one file per operation:
//! [`failover`], [`migrate`], [`bind`], [`topology`] (the catalogue's
//! triggers), [`latency`] (latency and network failure), [`restart`] (a
//! proxy restart), [`proxy_failure`] (a proxy stopped and started),
//! [`node_failure`] (a node down and back), [`shard_failure`] (a shard
//! process killed), [`push`], [`cluster`] (cluster settings) and
//! [`databases`] (create and delete). [`run`] dispatches; the maintenance
//! operations share the helpers below: each holds traffic only for the
//! switch itself and sends its notifications from the one encoder.
//!
//! Adding an operation is a file here and one arm in [`run`].

pub mod bind;
pub mod cluster;
pub mod databases;
pub mod failover;
pub mod latency;
pub mod migrate;
pub mod node_failure;
pub mod proxy_failure;
pub mod push;
pub mod restart;
pub mod rladmin;
pub mod shard_failure;
pub mod slot_migrate;
mod slot_moves;
mod takeover;
pub mod topology;

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::catalogue;
use super::database::Node;
use super::error::failed_because;
use super::{ActionError, Database, Emulator, Shards, Timings};
use crate::fault_injector::{sequence_steps, Action, TimingOverrides};
use crate::notification::{EndpointType, Notification};

/// Runs an action to its end; returns its output.
pub async fn run(emu: &Arc<Emulator>, action: &Action) -> Result<Value, ActionError> {
    match action {
        Action::Failover {
            bdb_id,
            shard_id,
            drop_completion,
            timing,
        } => {
            let d = emu.existing_database(bdb_id.0)?;
            let t = timings(&d, timing)?;
            let shard_id = shard_id.map(|s| s.0);
            match d.shared.oss_cluster {
                // A cluster's replica takes over with CLUSTER FAILOVER, and
                // its slots move to its node: a topology change.
                true => slot_migrate::fail_over_shards(emu, &d, &t, shard_id).await,
                false => failover::failover(&d, &t, *drop_completion, shard_id).await,
            }
        }
        Action::Migrate {
            bdb_id,
            shard_id,
            target_node,
            drop_completion,
            timing,
        } => {
            let d = emu.existing_database(bdb_id.0)?;
            let t = timings(&d, timing)?;
            let target = target_node.map(|n| n.0);
            let shard_id = shard_id.map(|s| s.0);
            match d.shared.oss_cluster {
                // A cluster's shard moves to a node that held no slot of it
                // (its slots migrate for real, announced with SMIGRATING and
                // SMIGRATED); the node it left leaves.
                true => {
                    let source = slot_migrate::node_of_shard(&d, shard_id).await?;
                    let effect = "remove-add";
                    slot_migrate::slot_migrate(emu, &d, &t, effect, None, Some(source), target)
                        .await
                }
                false => migrate::migrate(emu, &d, &t, target, *drop_completion, shard_id)
                    .await
                    .map(|(out, _)| out),
            }
        }
        Action::TopologyChangeStandalone {
            bdb_id,
            effect,
            trigger,
            target_node,
            skip_end_notification,
            timing,
            ..
        } => {
            let d = emu.existing_database(bdb_id.0)?;
            let t = timings(&d, timing)?;
            let trigger = catalogue::resolve(effect, trigger.as_deref())?;
            let target = target_node.map(|n| n.0);
            topology::topology_change(emu, &d, &t, trigger, target, *skip_end_notification).await
        }
        Action::SlotMigrate {
            bdb_id,
            effect,
            trigger,
            source_node,
            target_node,
            timing,
        } => {
            let d = emu.existing_database(bdb_id.0)?;
            let t = timings(&d, timing)?;
            slot_migrate::slot_migrate(
                emu,
                &d,
                &t,
                effect,
                trigger.as_deref(),
                source_node.map(|n| n.0),
                target_node.map(|n| n.0),
            )
            .await
        }
        Action::NetworkLatency { .. } => {
            let (until, out) = latency::start(emu, action)?;
            tokio::time::sleep_until(until).await;
            Ok(out)
        }
        Action::NetworkFailure { .. } => {
            let (until, out) = latency::start_failure(emu, action)?;
            tokio::time::sleep_until(until).await;
            Ok(out)
        }
        Action::DmcRestart { .. } => restart::dmc_restart(emu, action),
        Action::NodeFailure {
            node_id, method, ..
        } => node_failure::node_failure(emu, node_id.0, *method).await,
        Action::ProxyFailure {
            bdb_id,
            node_id,
            action,
        } => {
            proxy_failure::proxy_failure(emu, bdb_id.map(|b| b.0), node_id.map(|n| n.0), *action)
                .await
        }
        Action::ShardFailure { bdb_id, shard_id } => {
            let d = emu.existing_database(bdb_id.0)?;
            let t = timings(&d, &TimingOverrides::default())?;
            shard_failure::shard_failure(emu, &d, &t, shard_id.map(|s| s.0)).await
        }
        Action::Bind {
            bdb_id,
            endpoint_type,
            target_node,
            repeat,
            timing,
        } => {
            let repeat = match repeat.unwrap_or(1) {
                r @ 0..=10 => r,
                r => {
                    return Err(ActionError::Invalid(format!(
                        "repeat must be between 0 (no MOVING: an unannounced move) and 10, got {r}"
                    )))
                }
            };
            let forced = endpoint_type
                .as_deref()
                .map(EndpointType::parse)
                .transpose()
                .map_err(|e| ActionError::Invalid(e.to_string()))?;
            let d = emu.existing_database(bdb_id.0)?;
            let t = timings(&d, timing)?;
            bind::bind(emu, &d, &t, forced, target_node.map(|n| n.0), repeat).await
        }
        Action::SequenceOfActions { bdb_id, actions } => {
            let steps = sequence_steps(*bdb_id, actions)?;
            let mut outputs = Vec::new();
            for (i, (delay, inner)) in steps.iter().enumerate() {
                tokio::time::sleep(*delay).await;
                let out = Box::pin(run(emu, inner)).await.map_err(|e| {
                    failed_because(format!("step {i} ({}): {e}", inner.type_name()))
                })?;
                outputs.push(out);
            }
            Ok(json!({ "steps": outputs }))
        }
        Action::SendPush {
            bdb_id,
            push: elements,
            node_id,
        } => {
            let db = emu.existing_database(bdb_id.0)?;
            let node = node_id
                .map(|n| check_node(emu, n.0, "node_id"))
                .transpose()?;
            push::send(&db, elements, node)
        }
        Action::CreateDatabase { database_config } => databases::create(emu, database_config).await,
        Action::DeleteDatabase {
            bdb_id: Some(id), ..
        } => databases::delete(emu, id.0).await,
        Action::DeleteDatabase { bdb_id: None, .. } => databases::delete_all(emu).await,
        Action::ResetCluster { clean_all_dbs, .. } => {
            let deleted = match clean_all_dbs {
                Some(true) => databases::delete_all(emu).await?["deleted"].take(),
                _ => serde_json::json!([]),
            };
            let settings = cluster::reset(emu);
            Ok(serde_json::json!({ "deleted": deleted, "cluster_config": settings }))
        }
        Action::UpdateClusterConfig { config } => cluster::update(emu, config),
        Action::ExecuteRladminCommand {
            rladmin_command,
            bdb_id,
        } => rladmin::run(emu, bdb_id.map(|b| b.0), rladmin_command).await,
    }
}

/// Holds traffic of `db`, waits for in-flight replies, runs `switch`, then points
/// the proxies' route for shard set `index` at what it returns.
pub(crate) async fn switch_over<F, Fut>(
    t: &Timings,
    db: &Database,
    index: usize,
    switch: F,
) -> Result<(), ActionError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<std::net::SocketAddr, ActionError>>,
{
    let timeout = t.drain_timeout;
    let asked = Instant::now();
    let from = crate::fault_injector::Timestamp::now();
    let mut gate = tokio::time::timeout(timeout, db.shared.route.clone().write_owned())
        .await
        .map_err(|_| {
            failed_because(format!(
                "requests on database {} did not finish within {timeout:?} (a blocking command?); nothing was switched",
                db.shared.id
            ))
        })?;
    let held = Instant::now();
    // A real switch-over takes a while: requests wait for it.
    tokio::time::sleep(t.hold).await;
    let upstream = switch().await?;
    gate.upstreams[index] = upstream;

    // An OSS Cluster API database: the set's slots are served from the
    // new primary's node now.
    if let (Some(map), Some(node)) = (gate.cluster.as_mut(), db.shared.shard_node(upstream)) {
        map.nodes[index] = node;
    }
    // Subscribers move before the traffic does: a message published on the
    // new primary finds them there.
    db.shared
        .move_subscriptions(index, upstream, crate::timing::SUBSCRIPTIONS_MOVE_WITHIN)
        .await;
    drop(gate);
    db.shared
        .ledger
        .switched_over(crate::server_record::SwitchOver {
            shard_set: index,
            from,
            to: crate::fault_injector::Timestamp::now(),
        });
    tracing::debug!(
        bdb_id = db.shared.id,
        shard_set = index,
        drained_in = ?(held - asked),
        switched_in = ?held.elapsed(),
        "traffic switched to {upstream}"
    );
    Ok(())
}

/// Closes the window of `seq` and sends its completion, unless the caller asked
/// for the completion to be lost.
pub(crate) fn finish(db: &Database, seq: i64, completion: Notification, drop_completion: bool) {
    if drop_completion {
        db.shared.close_window(seq);
        tracing::info!(bdb_id = db.shared.id, "dropped {completion} on purpose");
    } else {
        db.shared.complete(seq, completion);
    }
}

/// The database's timings, with the cluster's tuned rebind grace and then an
/// action's overrides applied.
pub(crate) fn timings(db: &Database, o: &TimingOverrides) -> Result<Timings, ActionError> {
    o.validate()?;
    let mut base = db.timings.clone();
    if let Some(grace) = db.shared.cluster.rebind_grace() {
        base.moving_grace = grace;
    }
    Ok(base.with(o))
}

/// The node `n` names, or a refusal that names `field` and the nodes there
/// are (or says that node is down).
pub(crate) fn check_node(emu: &Emulator, n: usize, field: &str) -> Result<Node, ActionError> {
    let count = emu.config.nodes;
    if n == 0 || n > count {
        return Err(ActionError::Invalid(format!(
            "{field} {n} does not exist; nodes are 1..={count}"
        )));
    }
    if emu.outages.node_down(n) {
        return Err(ActionError::Invalid(format!(
            "{field} {n} is down (node_failure stopped it); start it first with node_failure method start"
        )));
    }
    Ok(Node { index: n })
}

/// The node after `from` in ring order that is up (not `from`), if any.
pub(crate) fn next_up_node(emu: &Emulator, from: Node) -> Option<Node> {
    let count = emu.config.nodes;
    (1..count)
        .map(|k| Node {
            index: (from.index - 1 + k) % count + 1,
        })
        .find(|n| !emu.outages.node_down(n.index))
}

/// How long a MIGRATING / FAILING_OVER window over `sets` shard sets is
/// expected to last: the lead, a hold per switch-over, the settle time and
/// the estimate beyond.
fn window(t: &Timings, sets: usize) -> std::time::Duration {
    t.notice_lead + t.hold * sets as u32 + t.settle + t.window_estimate
}

/// When a MIGRATING / FAILING_OVER window over `sets` shard sets is expected
/// to end.
pub(crate) fn window_deadline(t: &Timings, sets: usize) -> Instant {
    Instant::now() + window(t, sets)
}

/// `time_s` of a MIGRATING / FAILING_OVER over `sets` shard sets.
pub(crate) fn window_secs(t: &Timings, sets: usize) -> u64 {
    window(t, sets).as_secs_f64().ceil() as u64
}

/// The shard sets an action works on: the one whose primary is `shard_id`, or
/// every set.
pub(crate) fn selected(
    shards: &Shards,
    shard_id: Option<u32>,
    db: &Database,
) -> Result<Vec<usize>, ActionError> {
    match shard_id {
        None => Ok((0..shards.sets.len()).collect()),
        Some(id) => shards
            .sets
            .iter()
            .position(|s| s.primary.id == id)
            .map(|i| vec![i])
            .ok_or_else(|| {
                ActionError::Invalid(format!(
                    "database {} has no primary shard {id}; its primary shards are {}",
                    db.shared.id,
                    shard_ids(shards, &(0..shards.sets.len()).collect::<Vec<_>>())
                ))
            }),
    }
}

/// The primary shard ids of `sets`, as one element of a notification: `"3"`, or
/// `"3,5"` for several (strict parsers read exactly one element).
pub(crate) fn shard_ids(shards: &Shards, sets: &[usize]) -> String {
    sets.iter()
        .map(|&i| shards.sets[i].primary.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
