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

use super::check_node;
use crate::emulator::database::{Announcement, Node};
use crate::emulator::error::{failed, failed_because};
use crate::emulator::oss_cluster;
use crate::emulator::shard::ShardSet;
use crate::emulator::slot_map::{slot_list, SlotMap};
use crate::emulator::{ActionError, Database, Emulator, Timings};
use crate::notification::Notification;

/// The effects `slot_migrate` emulates.
pub const EFFECTS: &[&str] = &["slot-shuffle", "add", "remove", "remove-add"];

/// The triggers it emulates.
pub const TRIGGERS: &[&str] = &["migrate"];

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

/// Runs `slot_migrate` with `effect` and `trigger` on `db`.
pub async fn slot_migrate(
    emu: &Emulator,
    db: &Database,
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
    let plan = plan(&map, effect, source, target, spare).map_err(invalid)?;
    if let Some(node) = plan.joins {
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
    // SMIGRATING from each node slots leave, before anything moves.
    let started = Instant::now();
    let mut leaving: BTreeMap<usize, Vec<(u16, u16)>> = BTreeMap::new();
    for m in &plan.moves {
        leaving
            .entry(nodes[m.from].index)
            .or_default()
            .extend(&m.slots);
    }
    let mut windows = Vec::new();
    for (&n, slots) in &leaving {
        let mut slots = slots.clone();
        slots.sort_unstable();
        let seq = db.shared.take_seq();
        db.shared.announce(
            Announcement::Start {
                notification: Notification::SMigrating {
                    seq,
                    slots: slot_list(&slots),
                },
                deadline: started + t.notice_lead + t.window_estimate,
            },
            Some(Node { index: n }),
        );
        windows.push(seq);
    }
    tokio::time::sleep_until(started + t.notice_lead).await;
    let moved = async {
        for m in &plan.moves {
            move_slots(db, &shards.sets, m, t).await?;
        }
        tokio::time::sleep(t.settle).await;
        Ok::<_, ActionError>(())
    }
    .await;
    for seq in &windows {
        db.shared.close_window(*seq);
    }
    moved?;
    // SMIGRATED from every node on either side of a move, each its own.
    let mut announcers: BTreeMap<usize, Vec<(Node, Node, String)>> = BTreeMap::new();
    let triplets: Vec<(Node, Node, String)> = plan
        .moves
        .iter()
        .map(|m| (nodes[m.from], nodes[m.to], slot_list(&m.slots)))
        .collect();
    for tr in &triplets {
        for n in [tr.0, tr.1] {
            let list = announcers.entry(n.index).or_default();
            if !list.contains(tr) {
                list.push(tr.clone());
            }
        }
    }
    let mut seqs = Vec::new();
    for (n, moves) in announcers {
        let seq = db.shared.take_seq();
        seqs.push(seq);
        let a = std::sync::Arc::new(Announcement::SlotsMoved { seq, moves });
        db.shared.deliver(&a, Some(Node { index: n }));
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
        db.stop_on(node);
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

/// Slots per `SETSLOT` pipeline.
const SETSLOT_BATCH: usize = 1024;

/// Keys per `MIGRATE`.
const MIGRATE_BATCH: usize = 100;

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
    for &slot in &slots {
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(MIGRATE_BATCH)
                .query_async(&mut src)
                .await
                .map_err(|e| failed_because(format!("listing the keys of slot {slot}: {e}")))?;
            if keys.is_empty() {
                break;
            }
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
            migrate.query_async::<()>(&mut src).await.map_err(|e| {
                failed_because(format!(
                    "migrating the keys of slot {slot} to shard {}: {e}",
                    to.id
                ))
            })?;
        }
    }
    // The slots change hands on every shard and in the proxies' map while
    // the traffic is held: no request sees the two disagree.
    let drain = t.drain_timeout;
    let mut route = tokio::time::timeout(drain, db.shared.route.write())
        .await
        .map_err(|_| failed_because(format!("requests on database {} did not finish within {drain:?}; the slots stay where they are", db.shared.id)))?;
    let others: Vec<&ShardSet> = sets
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != m.from && *i != m.to)
        .map(|(_, s)| s)
        .collect();
    for chunk in slots.chunks(SETSLOT_BATCH) {
        setslot(&mut dst, chunk, "NODE", &to_id).await?;
        setslot(&mut src, chunk, "NODE", &to_id).await?;
    }
    for s in others {
        let mut c = s.primary.connect().await.map_err(failed)?;
        for chunk in slots.chunks(SETSLOT_BATCH) {
            setslot(&mut c, chunk, "NODE", &to_id).await?;
        }
    }
    let map = route.cluster.as_mut().expect("cluster");
    map.assign(&m.slots, m.to);
    for s in &slots {
        map.importing.remove(s);
    }
    Ok(())
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
}
