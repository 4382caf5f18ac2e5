//! Claims on an OSS Cluster's slot moves as the server saw them: the
//! redirects it answered after announcing a move, and where the shards
//! themselves hold the moved slots' keys.

use super::super::{Claim, Unmet};
use crate::fault_injector::Timestamp;
use crate::server_record::DatabaseRecord;

/// Once the server announced the last slot migration (SMIGRATED) and
/// `applied_within` passed, it answered no request of `name` with `-MOVED`:
/// a client that applied SMIGRATED sends each key to its new node itself.
pub fn no_moved_after_smigrated(
    record: &DatabaseRecord,
    name: &str,
    applied_within: std::time::Duration,
) -> Claim {
    let Some(last) = record.slot_moves.last() else {
        unmet!(
            "the server recorded no slot migration of database {}",
            record.bdb_id
        );
    };
    let after = Timestamp(last.at.0 + applied_within);
    let late: Vec<String> = record
        .named(name)
        .flat_map(|c| {
            c.redirects
                .iter()
                .filter(|r| r.kind == "MOVED" && r.at > after)
                .map(move |r| format!("MOVED {} at {} on connection {}", r.slot, r.at, c.id))
        })
        .collect();
    if !late.is_empty() {
        unmet!(
            "the server answered {} request(s) of {name:?} with MOVED after it announced the slots' new owners (SMIGRATED at {}, {applied_within:?} to apply it); first: {}",
            late.len(),
            last.at,
            late[..late.len().min(5)].join("; ")
        );
    }
    Ok(())
}

/// Keys the shards themselves hold in the slots of one move: on the
/// primaries of the node the slots left, and of the node they moved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysOfMove {
    /// The move.
    pub from: usize,
    /// Where to.
    pub to: usize,
    /// Its slots.
    pub slots: String,
    /// Keys in those slots on the node they left.
    pub on_source: u64,
    /// Keys in those slots on the node they moved to.
    pub on_target: u64,
}

/// Every moved slot's keys are on the node it moved to, none on the node it
/// left, and the target holds some (the traffic wrote into those slots).
pub fn keys_where_slots_went(moves: &[KeysOfMove]) -> Claim {
    if moves.is_empty() {
        unmet!("the server recorded no slot move");
    }
    for m in moves {
        if m.on_source > 0 {
            unmet!(
                "node {} still holds {} key(s) in slots {} it gave to node {}",
                m.from,
                m.on_source,
                m.slots,
                m.to
            );
        }
        if m.on_target == 0 {
            unmet!(
                "node {} holds no key in slots {} that moved to it from node {}: the keys did not go with them",
                m.to,
                m.slots,
                m.from
            );
        }
    }
    Ok(())
}
