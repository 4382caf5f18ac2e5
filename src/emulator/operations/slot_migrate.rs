//! `slot_migrate`: hash slots of an OSS Cluster API database move between
//! nodes, as Redis Cluster moves them. The nodes the slots leave announce
//! SMIGRATING (every node of the database does); each slot is marked importing on its
//! new shard and migrating on its old one, its keys go over with `MIGRATE`
//! (a write meanwhile is answered `ASK`, which the proxies point at the new
//! node), the slot is given to its new shard on every shard and in the
//! proxies' slot map, and then every node announces SMIGRATED. Which slots
//! move where, for each effect and trigger, is [`crate::emulator::slot_plan`].

use serde_json::{json, Value};
use tokio::time::Instant;

use super::slot_moves::move_slots;
use super::{check_node, switch_over};
use crate::emulator::database::{Announcement, Node};
use crate::emulator::error::{failed, failed_because};
use crate::emulator::oss_cluster;
use crate::emulator::shard::ShardSet;
use crate::emulator::slot_map::{slot_list, SlotMap};
use crate::emulator::slot_plan::{plan, plan_failover};
pub use crate::emulator::slot_plan::{EFFECTS, TRIGGERS};
use crate::emulator::{ActionError, Database, Emulator, Timings};
use crate::notification::Notification;

/// Runs `slot_migrate` with `effect` and `trigger` on `db`.
pub async fn slot_migrate(
    emu: &Emulator,
    db: &std::sync::Arc<Database>,
    t: &Timings,
    effect: &str,
    trigger: Option<&str>,
    source: Option<usize>,
    target: Option<usize>,
) -> Result<Value, ActionError> {
    let invalid = |m: String| ActionError::Invalid(m);
    if !db.shared.oss_cluster {
        return Err(invalid(format!(
            "database {} is not an OSS Cluster API database; slot_migrate moves the hash slots of one created with oss_cluster: true",
            db.shared.id
        )));
    }
    let trigger = trigger.unwrap_or("migrate");
    if !TRIGGERS.contains(&trigger) {
        return Err(invalid(format!(
            "trigger {trigger:?} of slot_migrate is not emulated; use {}",
            TRIGGERS.join(", ")
        )));
    }
    let source = source
        .map(|n| check_node(emu, n, "source_node"))
        .transpose()?;
    let target = target.map(|n| Node { index: n });
    let mut shards = db.shards.lock().await;
    let map = db.slot_map().await.expect("an OSS Cluster API route");
    // A node that holds no slot of this database: one of the cluster's, else
    // one that joins it.
    let serving = map.serving_nodes();
    let spare = emu
        .nodes()
        .into_iter()
        .find(|n| !serving.contains(n))
        .unwrap_or(Node {
            index: serving
                .iter()
                .map(|n| n.index)
                .max()
                .unwrap_or(0)
                .max(emu.nodes().len())
                + 1,
        });
    let by_failover = trigger == "failover";
    let plan = match by_failover {
        false => plan(&map, effect, source, target, spare),
        true => {
            let replicas: Vec<Option<Node>> = shards
                .sets
                .iter()
                .map(|s| s.replica.as_ref().map(|r| Node { index: r.node }))
                .collect();
            plan_failover(&map, &replicas, effect, source, target)
        }
    }
    .map_err(invalid)?;
    let done = run_plan(emu, db, t, &mut shards, &map, &plan, by_failover).await?;
    Ok(json!({
        "effect": effect,
        "trigger": trigger,
        "smigrating_seqs": done.smigrating_seqs,
        "smigrated_seqs": done.smigrated_seqs,
        "moves": done.moves,
        "joined_node": plan.joins.map(|n| n.index),
        "left_node": plan.leaves.map(|n| n.index),
    }))
}

/// A failover of an OSS Cluster API database (the `failover` action): each
/// selected primary's replica on another node takes over with `CLUSTER
/// FAILOVER`, and its slots are served from that node from then on; as any
/// topology change of such a database, announced with SMIGRATING and
/// SMIGRATED on every node.
pub async fn fail_over_shards(
    emu: &Emulator,
    db: &std::sync::Arc<Database>,
    t: &Timings,
    shard_id: Option<u32>,
) -> Result<Value, ActionError> {
    let mut shards = db.shards.lock().await;
    let mut sets = super::selected(&shards, shard_id, db)?;
    let map = db.slot_map().await.expect("an OSS Cluster API route");
    // A shard that gave every slot away (its node left, or handed them to
    // another) serves nothing: a failover of the database leaves it be, and
    // one of it alone has nothing to move.
    let serving = map.serving_sets();
    match shard_id {
        None => sets.retain(|i| serving.contains(i)),
        Some(id) if !sets.iter().all(|i| serving.contains(i)) => {
            return Err(ActionError::Invalid(format!(
                "shard {id} of database {} holds no hash slot (it gave them away): a failover of it would move nothing",
                db.shared.id
            )))
        }
        Some(_) => {}
    }
    let no_replica: Vec<u32> = sets
        .iter()
        .filter(|&&i| shards.sets[i].replica.is_none())
        .map(|&i| shards.sets[i].primary.id)
        .collect();
    if !no_replica.is_empty() {
        return Err(ActionError::Invalid(format!(
            "shard(s) {no_replica:?} of database {} have no replica to fail over to; create it with replication: true",
            db.shared.id
        )));
    }
    let plan = crate::emulator::slot_plan::Plan {
        moves: Vec::new(),
        failovers: sets,
        joins: None,
        leaves: None,
    };
    let done = run_plan(emu, db, t, &mut shards, &map, &plan, true).await?;
    Ok(json!({
        "smigrating_seqs": done.smigrating_seqs,
        "smigrated_seqs": done.smigrated_seqs,
        "moves": done.moves,
        "shards": plan.failovers.iter().map(|&i| shards.sets[i].primary.id).collect::<Vec<_>>(),
    }))
}

/// The node of primary shard `shard_id` of `db` (its first when `None`).
pub async fn node_of_shard(db: &Database, shard_id: Option<u32>) -> Result<usize, ActionError> {
    let shards = db.shards.lock().await;
    let i = super::selected(&shards, shard_id, db)?[0];
    Ok(shards.sets[i].primary.node)
}

/// What running a plan announced and moved.
struct Ran {
    smigrating_seqs: Vec<i64>,
    smigrated_seqs: Vec<i64>,
    moves: Vec<Value>,
}

/// Runs `plan` on `db` (whose shards are `shards`, its map before `map`):
/// SMIGRATING from every node, the moves and failovers, SMIGRATED from
/// every node, and a node that leaves stops after a while.
async fn run_plan(
    emu: &Emulator,
    db: &std::sync::Arc<Database>,
    t: &Timings,
    shards: &mut crate::emulator::Shards,
    map: &SlotMap,
    plan: &crate::emulator::slot_plan::Plan,
    by_failover: bool,
) -> Result<Ran, ActionError> {
    // A failover's new primaries are served by their node's proxy.
    for &set in &plan.failovers {
        if let Some(r) = &shards.sets[set].replica {
            db.listen_on(Node { index: r.node }).await.map_err(failed)?;
        }
    }
    if let (Some(node), false) = (plan.joins, by_failover) {
        let members: Vec<&crate::emulator::Shard> =
            shards.sets.iter().map(|s| &s.primary).collect();
        let new = emu
            .start_shard_in(node, None, db.password.clone(), &db.shard_args, true)
            .await
            .map_err(failed)?;
        if let Err(e) = oss_cluster::join(&members, &new, t.sync_timeout).await {
            new.stop().await;
            return Err(failed(e));
        }
        db.shared.set_shard_node(new.addr, node);
        // A replicated database's new shard gets its replica, on another
        // node, as every other shard has one: a later failover finds it.
        let replicated = shards.sets.iter().any(|s| s.replica.is_some());
        let elsewhere = db.shared.serving_nodes().into_iter().find(|n| *n != node);
        let replica = match (replicated, elsewhere) {
            (true, Some(at)) => match super::takeover::new_replica(emu, db, at, &new).await {
                Ok(r) => Some(r),
                Err(e) => {
                    new.stop().await;
                    return Err(failed(e.context("a replica for the new node's shard")));
                }
            },
            _ => None,
        };
        {
            let mut route = db.shared.route.write().await;
            route.upstreams.push(new.addr);
            route.cluster.as_mut().expect("cluster").nodes.push(node);
        }
        shards.sets.push(ShardSet {
            primary: new,
            replica,
            slots: (0, 0),
        });
        db.listen_on(node).await.map_err(failed)?;
    }
    let nodes = map_nodes(db).await;
    // SMIGRATING from every node of the database (every slot about to
    // move), before anything moves: clients' suites wait for it on a
    // connection to each node. One seq names the event on every node, as
    // real clusters broadcast it and clients deduplicate it by seq.
    let started = Instant::now();
    let mut moving: Vec<(u16, u16)> = plan.moves.iter().flat_map(|m| m.slots.clone()).collect();
    for &set in &plan.failovers {
        moving.extend(map.slots_of(set));
    }
    moving.sort_unstable();
    let seq = db.shared.take_seq();
    let windows = vec![seq];
    for n in db.shared.serving_nodes() {
        db.shared.announce(
            Announcement::Start {
                notification: Notification::SMigrating {
                    seq,
                    slots: slot_list(&moving),
                },
                deadline: started + t.notice_lead + t.window_estimate,
            },
            Some(n),
        );
    }
    tokio::time::sleep_until(started + t.notice_lead).await;
    let moved = async {
        for m in &plan.moves {
            move_slots(db, &shards.sets, m, t).await?;
        }
        for &set in &plan.failovers {
            fail_over(db, &mut shards.sets[set], set, t).await?;
        }
        tokio::time::sleep(t.settle).await;
        Ok::<_, ActionError>(())
    }
    .await;
    for seq in &windows {
        db.shared.close_window(*seq);
    }
    moved?;
    // SMIGRATED from every node of the database, one seq for all: every
    // move, once per node.
    let after = map_nodes(db).await;
    let triplets: Vec<(Node, Node, String)> = plan
        .moves
        .iter()
        .map(|m| (nodes[m.from], nodes[m.to], slot_list(&m.slots)))
        .chain(
            plan.failovers
                .iter()
                .map(|&set| (nodes[set], after[set], slot_list(&map.slots_of(set)))),
        )
        .collect();
    db.shared.ledger.slots_moved(
        triplets
            .iter()
            .map(|(from, to, slots)| crate::server_record::SlotMoveRecord {
                from: from.index,
                to: to.index,
                slots: slots.clone(),
            })
            .collect(),
    );
    let done = db.shared.take_seq();
    let seqs = vec![done];
    let a = std::sync::Arc::new(Announcement::SlotsMoved {
        seq: done,
        moves: triplets.clone(),
        form: db.shared.cluster_form(),
    });
    for n in db.shared.serving_nodes() {
        db.shared.deliver(&a, Some(n));
    }
    if let Some(node) = plan.leaves {
        if db.shared.active_node() == node {
            let stays = serving_nodes(db).await.first().copied();
            if let Some(s) = stays {
                db.shared.set_active_node(s);
            }
        }
        // The node's proxy stays up a while, redirecting what clients still
        // send it (a pool may keep idle connections to it after SMIGRATED),
        // then stops, unless it serves slots again by then.
        let (db, grace) = (db.clone(), t.node_linger);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if !serving_nodes(&db).await.contains(&node) {
                db.stop_on(node, crate::server_record::CloseCause::NodeLeft);
            }
        });
    }
    Ok(Ran {
        smigrating_seqs: windows,
        smigrated_seqs: seqs,
        moves: triplets
            .iter()
            .map(|(a, b, slots)| {
                json!({
                    "source_node": a.index,
                    "target_node": b.index,
                    "slots": slots,
                })
            })
            .collect(),
    })
}

/// The nodes that serve slots of `db` now.
async fn serving_nodes(db: &Database) -> Vec<Node> {
    db.shared
        .route
        .read()
        .await
        .cluster
        .as_ref()
        .map(SlotMap::serving_nodes)
        .unwrap_or_default()
}

/// The node of each shard set now.
async fn map_nodes(db: &Database) -> Vec<Node> {
    db.shared
        .route
        .read()
        .await
        .cluster
        .as_ref()
        .map(|m| m.nodes.clone())
        .unwrap_or_default()
}

/// Fails shard set `index` over to its replica (a coordinated `CLUSTER
/// FAILOVER`), traffic held meanwhile; its slots are served from the
/// replica's node from then on.
async fn fail_over(
    db: &Database,
    set: &mut ShardSet,
    index: usize,
    t: &Timings,
) -> Result<(), ActionError> {
    let Some(replica) = set.replica.take() else {
        return Err(failed_because(format!(
            "shard {} has no replica to fail over to",
            set.primary.id
        )));
    };
    // Only this shard's slots would wait for a real failover; the gate holds
    // every request of the database, so it is held no longer than the
    // promotion takes.
    let t = &Timings {
        hold: std::time::Duration::ZERO,
        ..t.clone()
    };
    let promoted = switch_over(t, db, index, || async {
        oss_cluster::promote(&replica, &set.primary, t.sync_timeout)
            .await
            .map_err(failed)?;
        Ok(replica.addr)
    })
    .await;
    match promoted {
        Ok(()) => {
            // The old primary learns by gossip that it follows now, and the
            // promoted shard keeps its slots meanwhile.
            if let Err(e) =
                oss_cluster::keep_promotion(&replica, &set.primary, t.sync_timeout).await
            {
                tracing::warn!("after the failover of shard {}: {e:#}", set.primary.id);
            }
            let old = std::mem::replace(&mut set.primary, replica);
            set.replica = Some(old);
            Ok(())
        }
        Err(e) => {
            set.replica = Some(replica);
            Err(e)
        }
    }
}
