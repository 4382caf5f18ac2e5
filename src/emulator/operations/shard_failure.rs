//! `shard_failure`: a primary shard's process dies without warning. Requests
//! it owed are lost with it (their connections closed, as a proxy does);
//! new ones wait while the cluster notices and promotes the replica (the
//! hold), then go to it. A new replica is built on the dead one's node. No
//! notification is sent: nothing announced it. On an OSS Cluster API
//! database the replica takes the slots over and its node serves them; the
//! new replica joins the cluster.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::selected;
use super::takeover::{new_replica, take_over};
use crate::emulator::database::Node;
use crate::emulator::error::failed;
use crate::emulator::shard::wait_caught_up;
use crate::emulator::{ActionError, Database, Emulator, Timings};

/// Kills the primary of shard `shard_id` (the first when `None`) and fails
/// over to its replica.
pub async fn shard_failure(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    shard_id: Option<u32>,
) -> Result<Value, ActionError> {
    let mut shards = db.shards.lock().await;
    let i = selected(&shards, shard_id, db)?[0];
    if shards.sets[i].replica.is_none() {
        return Err(ActionError::Invalid(format!(
            "shard {} of database {} has no replica to take over; create the database with replication: true",
            shards.sets[i].primary.id, db.shared.id
        )));
    }
    // A crash strikes a cluster in its steady state: the replica is in
    // sync (a database just created may still be copying its first data).
    let set = &shards.sets[i];
    let replica = set.replica.as_ref().expect("checked above");
    wait_caught_up(&set.primary, replica, t.sync_timeout)
        .await
        .map_err(failed)?;
    let (pid, dead_node, dead_id) = (set.primary.pid(), set.primary.node, set.primary.id);
    let began = Instant::now();
    let set = &mut shards.sets[i];
    let dead = take_over(db, t, set, i).await?;
    let took = began.elapsed();
    dead.stop().await;
    match new_replica(emu, db, Node { index: dead_node }, &set.primary).await {
        Ok(r) => set.replica = Some(r),
        Err(e) => tracing::warn!("no new replica after the shard failure: {e:#}"),
    }
    tracing::info!(bdb_id = db.shared.id, ?pid, ?took, "shard failed over");
    Ok(json!({
        "killed_shard": dead_id,
        "killed_pid": pid,
        "primary_shard": set.primary.id,
        "primary": set.primary.addr.to_string(),
        "failed_over_in_ms": took.as_millis() as u64,
    }))
}
