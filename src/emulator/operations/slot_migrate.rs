//! `slot_migrate`: hash slots of an OSS Cluster API database move between
//! nodes, as Redis Cluster moves them. The nodes the slots leave announce
//! SMIGRATING to their connections; each slot is marked importing on its
//! new shard and migrating on its old one, its keys go over with `MIGRATE`
//! (a write meanwhile is answered `ASK`, which the proxies point at the new
//! node), the slot is given to its new shard on every shard and in the
//! proxies' slot map, and then the nodes on both sides announce SMIGRATED.
//!
//! Effects: `slot-shuffle` (half of one shard's slots to a shard on another
//! node), `add` (a node that held none takes a share from every shard),
//! `remove` (a node gives its slots to the others and leaves), `remove-add`
//! (a node's slots go to a node that held none, and it leaves).

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{check_node, switch_over};
use crate::emulator::database::{Announcement, Node};
use crate::emulator::error::{failed, failed_because};
use crate::emulator::oss_cluster;
use crate::emulator::shard::ShardSet;
use crate::emulator::slot_map::{slot_list, SlotMap};
use crate::emulator::{ActionError, Database, Emulator, Timings};
use crate::notification::Notification;
use crate::slots::slot;

/// The effects `slot_migrate` emulates.
pub const EFFECTS: &[&str] = &["slot-shuffle", "add", "remove", "remove-add"];

/// The triggers it emulates: `migrate` moves keys slot by slot; `failover`
/// promotes a shard's replica on another node, whose node then serves the
/// shard's slots.
pub const TRIGGERS: &[&str] = &["migrate", "failover"];

/// Slots going from one shard set to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// Set the slots leave.
    pub from: usize,
    /// Set they go to.
    pub to: usize,
    /// The slots, as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
}

/// What an effect does: the moves, a node that joins first (its new set's
/// index is the next one), a node that leaves after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The moves, in order.
    pub moves: Vec<Move>,
    /// Shard sets whose replica takes over (trigger `failover`), in order.
    pub failovers: Vec<usize>,
    /// A node that holds no slot and gets a new primary shard first.
    pub joins: Option<Node>,
    /// A node whose proxy stops once its slots are gone.
    pub leaves: Option<Node>,
}

/// Consecutive slots as inclusive ranges.
fn runs(slots: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &s in slots {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// The slots of `ranges` split into `parts` runs of (nearly) equal size, in
/// order.
fn split(ranges: &[(u16, u16)], parts: usize) -> Vec<Vec<(u16, u16)>> {
    let slots: Vec<u16> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
    let per = slots.len().div_ceil(parts.max(1)).max(1);
    slots.chunks(per).map(runs).collect()
}

/// The last `1/parts` of `ranges`' slots.
fn tail(ranges: &[(u16, u16)], parts: usize) -> Vec<(u16, u16)> {
    let slots: Vec<u16> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
    let take = (slots.len() / parts.max(1)).max(1).min(slots.len());
    runs(&slots[slots.len() - take..])
}

/// What `effect` does to `map`; `spare` is a node that holds no slot (for
/// the effects that add one); `source` / `target` are the caller's picks.
pub fn plan(
    map: &SlotMap,
    effect: &str,
    source: Option<Node>,
    target: Option<Node>,
    spare: Node,
) -> Result<Plan, String> {
    let serving = map.serving_nodes();
    let busiest = |on: Node| {
        map.sets_on(on)
            .into_iter()
            .filter(|&s| !map.slots_of(s).is_empty())
            .max_by_key(|&s| {
                map.slots_of(s)
                    .iter()
                    .map(|(a, b)| (b - a) as usize + 1)
                    .sum::<usize>()
            })
    };
    let serving_sets = map.serving_sets();
    let new_set = map.nodes.len();
    let not_enough = |what: &str| format!("not enough nodes: {what}");
    match effect {
        "slot-shuffle" => {
            let from_node = source
                .or_else(|| serving.first().copied())
                .ok_or("no node serves slots")?;
            let from = busiest(from_node)
                .ok_or_else(|| format!("node {} serves no slot", from_node.index))?;
            let to_node = match target {
                Some(t) if t == from_node => return Err("source_node and target_node are the same node".into()),
                Some(t) => t,
                None => *serving
                    .iter()
                    .find(|n| **n != from_node)
                    .ok_or_else(|| not_enough("slot-shuffle needs slots on two nodes; create the database with more shards than one"))?,
            };
            let to =
                busiest(to_node).ok_or_else(|| format!("node {} serves no slot", to_node.index))?;
            Ok(Plan {
                moves: vec![Move {
                    from,
                    to,
                    slots: tail(&map.slots_of(from), 2),
                }],
                failovers: Vec::new(),
                joins: None,
                leaves: None,
            })
        }
        "add" => {
            let joins = target.unwrap_or(spare);
            if serving.contains(&joins) {
                return Err(format!(
                    "node {} serves slots already; add gives slots to a node that has none",
                    joins.index
                ));
            }
            let parts = serving_sets.len() + 1;
            Ok(Plan {
                moves: serving_sets
                    .iter()
                    .map(|&from| Move {
                        from,
                        to: new_set,
                        slots: tail(&map.slots_of(from), parts),
                    })
                    .collect(),
                failovers: Vec::new(),
                joins: Some(joins),
                leaves: None,
            })
        }
        "remove" | "remove-add" => {
            let leaves = source
                .or_else(|| serving.last().copied())
                .ok_or("no node serves slots")?;
            if !serving.contains(&leaves) {
                return Err(format!("node {} serves no slot", leaves.index));
            }
            let gone = map.sets_on(leaves);
            let mut moves = Vec::new();
            if effect == "remove-add" {
                let joins = target.unwrap_or(spare);
                if serving.contains(&joins) {
                    return Err(format!("node {} serves slots already; remove-add gives slots to a node that has none", joins.index));
                }
                for &from in &gone {
                    let slots = map.slots_of(from);
                    if !slots.is_empty() {
                        moves.push(Move {
                            from,
                            to: new_set,
                            slots,
                        });
                    }
                }
                return Ok(Plan {
                    moves,
                    failovers: Vec::new(),
                    joins: Some(joins),
                    leaves: Some(leaves),
                });
            }
            let stay: Vec<usize> = serving_sets
                .iter()
                .copied()
                .filter(|s| !gone.contains(s))
                .collect();
            if stay.is_empty() {
                return Err(not_enough(
                    "remove needs slots on another node to give them to",
                ));
            }
            for &from in &gone {
                for (part, to) in split(&map.slots_of(from), stay.len())
                    .into_iter()
                    .zip(&stay)
                {
                    moves.push(Move {
                        from,
                        to: *to,
                        slots: part,
                    });
                }
            }
            Ok(Plan {
                moves,
                failovers: Vec::new(),
                joins: None,
                leaves: Some(leaves),
            })
        }
        other => Err(format!(
            "unknown effect {other:?}; one of {}",
            EFFECTS.join(", ")
        )),
    }
}

/// What `effect` does to `map` by failover: which shard sets' replicas
/// (`replicas[set]`: the node of each set's replica) take over, a node that
/// starts serving slots, one that stops.
pub fn plan_failover(
    map: &SlotMap,
    replicas: &[Option<Node>],
    effect: &str,
    source: Option<Node>,
    target: Option<Node>,
) -> Result<Plan, String> {
    let serving = map.serving_nodes();
    let replica_of = |set: usize| replicas.get(set).copied().flatten();
    // Serving sets whose replica lives on another node, and where.
    let candidates: Vec<(usize, Node, Node)> = map
        .serving_sets()
        .into_iter()
        .filter_map(|set| {
            let r = replica_of(set)?;
            (r != map.nodes[set]).then_some((set, map.nodes[set], r))
        })
        .filter(|(_, from, to)| {
            source.is_none_or(|n| n == *from) && target.is_none_or(|n| n == *to)
        })
        .collect();
    let none = |what: &str| {
        format!(
            "not enough nodes: {what}; create the database with replication: true and fewer shards than nodes, or use trigger migrate"
        )
    };
    let one = |pick: &dyn Fn(&(usize, Node, Node)) -> bool, what: &str| {
        candidates
            .iter()
            .find(|c| pick(c))
            .map(|&(set, _, to)| (set, to))
            .ok_or_else(|| none(what))
    };
    match effect {
        "slot-shuffle" => {
            let (set, _) = one(
                &|c| serving.contains(&c.2),
                "no shard has its replica on another node that serves slots",
            )?;
            Ok(Plan {
                moves: Vec::new(),
                failovers: vec![set],
                joins: None,
                leaves: None,
            })
        }
        "add" => {
            let (set, to) = one(
                &|c| !serving.contains(&c.2),
                "no shard has its replica on a node that serves no slot",
            )?;
            Ok(Plan {
                moves: Vec::new(),
                failovers: vec![set],
                joins: Some(to),
                leaves: None,
            })
        }
        "remove" | "remove-add" => {
            let fresh = effect == "remove-add";
            // A node all of whose serving sets can hand over to replicas
            // elsewhere (on nodes that serve nothing, for remove-add).
            let fits = |n: Node| {
                let sets: Vec<usize> = map
                    .sets_on(n)
                    .into_iter()
                    .filter(|s| !map.slots_of(*s).is_empty())
                    .collect();
                let ok = !sets.is_empty()
                    && sets.iter().all(|s| {
                        candidates
                            .iter()
                            .any(|c| c.0 == *s && (!fresh || !serving.contains(&c.2)))
                    });
                ok.then_some(sets)
            };
            let (leaves, sets) = serving
                .iter()
                .rev()
                .filter(|n| source.is_none_or(|s| s == **n))
                .find_map(|n| fits(*n).map(|sets| (*n, sets)))
                .ok_or_else(|| none("no node has a replica elsewhere for each of its shards"))?;
            let joins = fresh.then(|| replica_of(sets[0])).flatten();
            Ok(Plan {
                moves: Vec::new(),
                failovers: sets,
                joins,
                leaves: Some(leaves),
            })
        }
        other => Err(format!(
            "unknown effect {other:?}; one of {}",
            EFFECTS.join(", ")
        )),
    }
}

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
    let map = db
        .shared
        .route
        .read()
        .await
        .cluster
        .clone()
        .expect("an OSS Cluster API route");
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
        {
            let mut route = db.shared.route.write().await;
            route.upstreams.push(new.addr);
            route.cluster.as_mut().expect("cluster").nodes.push(node);
        }
        shards.sets.push(ShardSet {
            primary: new,
            replica: None,
            slots: (0, 0),
        });
        db.listen_on(node).await.map_err(failed)?;
    }
    let nodes = map_nodes(db).await;
    // SMIGRATING from every node of the database (each its own frame and
    // seq, every slot about to move), before anything moves: clients'
    // suites wait for it on a connection to each node.
    let started = Instant::now();
    let mut moving: Vec<(u16, u16)> = plan.moves.iter().flat_map(|m| m.slots.clone()).collect();
    for &set in &plan.failovers {
        moving.extend(map.slots_of(set));
    }
    moving.sort_unstable();
    let mut windows = Vec::new();
    for n in db.shared.serving_nodes() {
        let seq = db.shared.take_seq();
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
        windows.push(seq);
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
    // SMIGRATED from every node of the database, each its own frame and
    // seq: every move, once per node.
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
    let mut seqs = Vec::new();
    for n in db.shared.serving_nodes() {
        let seq = db.shared.take_seq();
        seqs.push(seq);
        let a = std::sync::Arc::new(Announcement::SlotsMoved {
            seq,
            moves: triplets.clone(),
        });
        db.shared.deliver(&a, Some(n));
    }
    if let Some(node) = plan.leaves {
        if db.shared.active_node() == node {
            let stays = db
                .shared
                .route
                .read()
                .await
                .cluster
                .as_ref()
                .and_then(|m| m.serving_nodes().first().copied());
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
            let serves = db
                .shared
                .route
                .read()
                .await
                .cluster
                .as_ref()
                .is_some_and(|m| m.serving_nodes().contains(&node));
            if !serves {
                db.stop_on(node);
            }
        });
    }
    Ok(json!({
        "effect": effect,
        "trigger": trigger,
        "smigrating_seqs": windows,
        "smigrated_seqs": seqs,
        "moves": triplets.iter().map(|(a, b, slots)| json!({
            "source_node": a.index,
            "target_node": b.index,
            "slots": slots,
        })).collect::<Vec<_>>(),
        "joined_node": plan.joins.map(|n| n.index),
        "left_node": plan.leaves.map(|n| n.index),
    }))
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
            // The old primary learns by gossip that it follows now; no
            // request goes to it meanwhile.
            if let Err(e) = oss_cluster::wait_role(&set.primary, "slave", t.sync_timeout).await {
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

/// Slots per `SETSLOT` pipeline.
const SETSLOT_BATCH: usize = 1024;

/// Keys per `MIGRATE`.
const MIGRATE_BATCH: usize = 100;

/// Keys per `SCAN` step.
const SCAN_COUNT: usize = 1000;

/// Slots given to their new shard per hold of the traffic.
const FINALIZE_BATCH: usize = 256;

/// Moves the slots of `m` as Redis Cluster does: importing and migrating
/// states, the keys with `MIGRATE`, then the slots given to the new shard on
/// every shard and in the proxies' map at once (traffic held meanwhile).
async fn move_slots(
    db: &Database,
    sets: &[ShardSet],
    m: &Move,
    t: &Timings,
) -> Result<(), ActionError> {
    let (from, to) = (&sets[m.from].primary, &sets[m.to].primary);
    let from_id = oss_cluster::node_id(from).await.map_err(failed)?;
    let to_id = oss_cluster::node_id(to).await.map_err(failed)?;
    let mut src = from.connect().await.map_err(failed)?;
    let mut dst = to.connect().await.map_err(failed)?;
    let slots: Vec<u16> = m.slots.iter().flat_map(|&(a, b)| a..=b).collect();
    // Importing first, and known to the proxies, before the old shard
    // starts answering ASK: a redirected request always finds it.
    for chunk in slots.chunks(SETSLOT_BATCH) {
        setslot(&mut dst, chunk, "IMPORTING", &from_id).await?;
    }
    {
        let mut route = db.shared.route.write().await;
        let map = route.cluster.as_mut().expect("cluster");
        for &s in &slots {
            map.importing.insert(s, m.to);
        }
    }
    for chunk in slots.chunks(SETSLOT_BATCH) {
        setslot(&mut src, chunk, "MIGRATING", &to_id).await?;
    }
    // Once a slot is migrating, a key it lacks is asked to the new shard:
    // the old shard's keys of the slot only go. One scan finds them; a
    // count per slot then catches any the scan could not have seen.
    let moving: std::collections::HashSet<u16> = slots.iter().copied().collect();
    let mut by_slot: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut src)
            .await
            .map_err(|e| failed_because(format!("scanning the keys of shard {}: {e}", from.id)))?;
        for k in keys {
            let s = slot(&k);
            if moving.contains(&s) {
                by_slot.entry(s).or_default().push(k);
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for (s, keys) in &by_slot {
        for batch in keys.chunks(MIGRATE_BATCH) {
            migrate_keys(db, &mut src, to, *s, batch, t).await?;
        }
    }
    let mut count = redis::pipe();
    for &s in &slots {
        count.cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(s);
    }
    let left: Vec<u64> = count
        .query_async(&mut src)
        .await
        .map_err(|e| failed_because(format!("counting the keys left on shard {}: {e}", from.id)))?;
    for (&s, _) in slots.iter().zip(&left).filter(|(_, n)| **n > 0) {
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(s)
                .arg(MIGRATE_BATCH)
                .query_async(&mut src)
                .await
                .map_err(|e| failed_because(format!("listing the keys of slot {s}: {e}")))?;
            if keys.is_empty() {
                break;
            }
            migrate_keys(db, &mut src, to, s, &keys, t).await?;
        }
    }
    // The slots change hands on both shards and in the proxies' map while
    // the traffic is held, a batch at a time (each SETSLOT NODE saves the
    // shard's cluster config): no request sees the two disagree, and none
    // waits long.
    let drain = t.drain_timeout;
    for chunk in slots.chunks(FINALIZE_BATCH) {
        let mut route = tokio::time::timeout(drain, db.shared.route.write())
            .await
            .map_err(|_| failed_because(format!("requests on database {} did not finish within {drain:?}; the slots stay where they are", db.shared.id)))?;
        setslot(&mut dst, chunk, "NODE", &to_id).await?;
        setslot(&mut src, chunk, "NODE", &to_id).await?;
        let map = route.cluster.as_mut().expect("cluster");
        map.assign(&runs(chunk), m.to);
        for s in chunk {
            map.importing.remove(s);
        }
    }
    // The other primaries learn of it by gossip; told, they redirect
    // right away.
    for (i, other) in sets.iter().enumerate() {
        if i == m.from || i == m.to {
            continue;
        }
        let mut c = other.primary.connect().await.map_err(failed)?;
        for chunk in slots.chunks(SETSLOT_BATCH) {
            setslot(&mut c, chunk, "NODE", &to_id).await?;
        }
    }
    Ok(())
}

/// `MIGRATE`s `keys` of `slot` from the connection `src` to `to`.
async fn migrate_keys(
    db: &Database,
    src: &mut MultiplexedConnection,
    to: &crate::emulator::Shard,
    slot: u16,
    keys: &[Vec<u8>],
    t: &Timings,
) -> Result<(), ActionError> {
    let mut migrate = redis::cmd("MIGRATE");
    migrate
        .arg(to.addr.ip().to_string())
        .arg(to.addr.port())
        .arg("")
        .arg(0)
        .arg(t.sync_timeout.as_millis() as u64);
    if let Some(pw) = &db.password {
        migrate.arg("AUTH").arg(pw);
    }
    migrate.arg("KEYS").arg(keys);
    migrate.query_async::<()>(src).await.map_err(|e| {
        failed_because(format!(
            "migrating {} key(s) of slot {slot} to shard {}: {e}",
            keys.len(),
            to.id
        ))
    })
}

/// `CLUSTER SETSLOT <slot> <state> <node>` for each of `slots`, pipelined.
async fn setslot(
    c: &mut MultiplexedConnection,
    slots: &[u16],
    state: &str,
    node: &str,
) -> Result<(), ActionError> {
    let mut p = redis::pipe();
    for &s in slots {
        p.cmd("CLUSTER").arg("SETSLOT").arg(s).arg(state).arg(node);
    }
    let replies: Vec<redis::Value> = p.query_async(c).await.map_err(|e| {
        failed_because(format!(
            "CLUSTER SETSLOT {state} {node} on {} slots: {e}",
            slots.len()
        ))
    })?;
    let refused: Vec<(u16, String)> = slots
        .iter()
        .zip(&replies)
        .filter_map(|(s, r)| match r {
            redis::Value::ServerError(e) => {
                Some((*s, format!("{} {}", e.code(), e.details().unwrap_or(""))))
            }
            _ => None,
        })
        .collect();
    match refused.first() {
        None => Ok(()),
        Some((s, e)) => Err(failed_because(format!(
            "CLUSTER SETSLOT {state} {node} was refused for {} of {} slots; slot {s}: {e}",
            refused.len(),
            slots.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: usize) -> Node {
        Node { index: i }
    }

    fn count(r: &[(u16, u16)]) -> usize {
        r.iter().map(|(a, b)| (b - a) as usize + 1).sum()
    }

    #[test]
    fn each_effect_moves_what_it_says() {
        let map = SlotMap::even(vec![n(1), n(2)]);
        let shuffle = plan(&map, "slot-shuffle", None, None, n(3)).unwrap();
        assert_eq!(
            shuffle.moves,
            vec![Move {
                from: 0,
                to: 1,
                slots: vec![(4096, 8191)]
            }]
        );

        let add = plan(&map, "add", None, None, n(3)).unwrap();
        assert_eq!(add.joins, Some(n(3)));
        assert_eq!(add.moves.len(), 2);
        assert!(
            add.moves
                .iter()
                .all(|m| m.to == 2 && count(&m.slots) == 2730),
            "{add:?}"
        );

        let remove = plan(&map, "remove", None, None, n(3)).unwrap();
        assert_eq!(remove.leaves, Some(n(2)));
        assert_eq!(
            remove.moves,
            vec![Move {
                from: 1,
                to: 0,
                slots: vec![(8192, 16383)]
            }]
        );

        let swap = plan(&map, "remove-add", Some(n(1)), None, n(3)).unwrap();
        assert_eq!((swap.leaves, swap.joins), (Some(n(1)), Some(n(3))));
        assert_eq!(
            swap.moves,
            vec![Move {
                from: 0,
                to: 2,
                slots: vec![(0, 8191)]
            }]
        );
    }

    #[test]
    fn effects_that_cannot_run_say_why() {
        let one = SlotMap::even(vec![n(1)]);
        assert!(plan(&one, "slot-shuffle", None, None, n(2))
            .unwrap_err()
            .starts_with("not enough nodes"));
        assert!(plan(&one, "remove", None, None, n(2))
            .unwrap_err()
            .starts_with("not enough nodes"));
        assert!(plan(&one, "add", None, Some(n(1)), n(2))
            .unwrap_err()
            .contains("serves slots already"));
        assert!(plan(&one, "shuffle", None, None, n(2))
            .unwrap_err()
            .contains("slot-shuffle, add, remove, remove-add"));
    }

    #[test]
    fn failover_picks_a_replica_where_the_effect_needs_it() {
        // Sets on nodes 1 and 2, replicas on the next node: 2 and 3.
        let map = SlotMap::even(vec![n(1), n(2)]);
        let replicas = [Some(n(2)), Some(n(3))];
        let f = |effect| plan_failover(&map, &replicas, effect, None, None);
        let shuffle = f("slot-shuffle").unwrap();
        assert_eq!((shuffle.failovers, shuffle.joins), (vec![0], None));
        let add = f("add").unwrap();
        assert_eq!((add.failovers, add.joins), (vec![1], Some(n(3))));
        let remove = f("remove").unwrap();
        assert_eq!((remove.failovers, remove.leaves), (vec![1], Some(n(2))));
        let swap = f("remove-add").unwrap();
        assert_eq!(
            (swap.failovers, swap.joins, swap.leaves),
            (vec![1], Some(n(3)), Some(n(2)))
        );
        // No replica: nothing can fail over, and the error says what to do.
        let e = plan_failover(&map, &[None, None], "slot-shuffle", None, None).unwrap_err();
        assert!(
            e.starts_with("not enough nodes") && e.contains("replication: true"),
            "{e}"
        );
    }
}
