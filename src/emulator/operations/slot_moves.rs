//! Slots that move from one shard to another as Redis Cluster moves them:
//! importing on the new shard (known to the proxies first, so that an `ASK`
//! always finds it), migrating on the old one, the keys over with `MIGRATE`,
//! then the slot given to the new shard on every shard and in the proxies'
//! map at once, traffic held meanwhile.

use std::collections::BTreeMap;

use redis::aio::MultiplexedConnection;

use crate::emulator::error::{failed, failed_because};
use crate::emulator::oss_cluster;
use crate::emulator::shard::ShardSet;
use crate::emulator::slot_plan::{runs, Move};
use crate::emulator::{ActionError, Database, Timings};
use crate::slots::slot;

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
pub(crate) async fn move_slots(
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
