//! `migrate`: MIGRATING, each selected primary shard is copied to a new
//! `redis-server` on another node and traffic switches to it, MIGRATED.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{check_node, finish, selected, shard_ids, switch_over, window_deadline, window_secs};
use crate::emulator::database::{Announcement, Node};
use crate::emulator::error::failed;
use crate::emulator::shard::wait_caught_up;
use crate::emulator::{ActionError, Database, Emulator, Timings};
use crate::notification::Notification;

/// Moves primary shards to new processes on other nodes; returns the output
/// and the node the first of them moved to.
pub async fn migrate(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    target: Option<usize>,
    drop_completion: bool,
    shard_id: Option<u32>,
) -> Result<(Value, Node), ActionError> {
    if let Some(n) = target {
        check_node(emu, n, "target_node")?;
    }
    let mut shards = db.shards.lock().await;
    let sets = selected(&shards, shard_id, db)?;
    let nodes = emu.up_nodes();
    // Where each set moves: the target, or a node that holds neither its
    // primary nor its replica (any other node when there is none).
    let mut targets = Vec::new();
    for &i in &sets {
        let set = &shards.sets[i];
        let old_node = set.primary.node;
        let replica_node = set.replica.as_ref().map(|r| r.node);
        targets.push(match target {
            Some(n) if n == old_node && nodes.len() > 1 => {
                return Err(ActionError::Invalid(format!(
                    "primary shard {} already lives on node {n}; pick another target_node",
                    set.primary.id
                )))
            }
            Some(n) => Node { index: n },
            None => *nodes
                .iter()
                .find(|n| n.index != old_node && Some(n.index) != replica_node)
                .or_else(|| nodes.iter().find(|n| n.index != old_node))
                .unwrap_or(&nodes[0]),
        });
    }
    let ids = vec![shard_ids(&shards, &sets)];
    let seq = db.shared.take_seq();
    let started = Instant::now();
    db.shared.announce(
        Announcement::Start {
            notification: Notification::Migrating {
                seq,
                time_s: Some(window_secs(t, sets.len())),
                shards: ids.clone(),
            },
            deadline: window_deadline(t, sets.len()),
        },
        None,
    );
    let result: Result<(), ActionError> = async {
        for (&i, &to) in sets.iter().zip(&targets) {
            let old_addr = shards.sets[i].primary.addr;
            let new = emu
                .start_shard(to, Some(old_addr), db.password.clone(), &db.shard_args)
                .await
                .map_err(failed)?;
            if let Err(e) = new.wait_link_up(t.sync_timeout).await {
                new.stop().await;
                return Err(failed(e));
            }
            tokio::time::sleep_until(started + t.notice_lead).await;
            let new_addr = new.addr;
            let switched = {
                let old = &shards.sets[i].primary;
                switch_over(t, db, i, || async {
                    wait_caught_up(old, &new, t.sync_timeout)
                        .await
                        .map_err(failed)?;
                    new.replicate(None).await.map_err(failed)?;
                    Ok(new_addr)
                })
                .await
            };
            if let Err(e) = switched {
                new.stop().await;
                return Err(e);
            }
            let old = std::mem::replace(&mut shards.sets[i].primary, new);
            // Demoted before it stops, as a real shard is: clients blocked on
            // it get the error a role change gives them (`-UNBLOCKED`) rather
            // than a dropped connection.
            if let Err(e) = old.replicate(Some(new_addr)).await {
                tracing::warn!("old primary could not be demoted before it stopped: {e:#}");
            }
            old.stop().await;
            if let Some(r) = &shards.sets[i].replica {
                r.replicate(Some(new_addr)).await.map_err(failed)?;
            }
        }
        tokio::time::sleep(t.settle).await;
        Ok(())
    }
    .await;
    finish(
        db,
        seq,
        Notification::Migrated {
            seq: seq + 1,
            shards: ids,
        },
        drop_completion,
    );
    result?;
    let p = &shards.sets[sets[0]].primary;
    Ok((
        json!({
            "seq": seq,
            "primary_shard": p.id,
            "node": p.node,
            "primary": p.addr.to_string(),
            "shards": sets.iter().map(|&i| shards.sets[i].primary.id).collect::<Vec<_>>(),
        }),
        Node { index: p.node },
    ))
}
