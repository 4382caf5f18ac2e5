//! A primary shard that dies and the replica that takes over from it, as
//! `shard_failure` and `node_failure` need it, for a standalone database
//! and an OSS Cluster API one; and the new replica built afterwards.

use super::switch_over;
use crate::emulator::database::Node;
use crate::emulator::error::failed;
use crate::emulator::shard::ShardSet;
use crate::emulator::{oss_cluster, ActionError, Database, Emulator, Shard, Timings};

/// Set `index`'s primary dies and its replica takes over (traffic held for
/// the switch); returns the dead primary, for the caller to reap. A
/// standalone replica is promoted with `REPLICAOF NO ONE` once the primary
/// is dead; a cluster replica takes the slots over (`CLUSTER FAILOVER
/// TAKEOVER`) the instant before its primary dies, so that it never waits
/// for the cluster's node timeout, and its node serves them from then on.
pub(crate) async fn take_over(
    d: &Database,
    t: &Timings,
    set: &mut ShardSet,
    index: usize,
) -> Result<Shard, ActionError> {
    let Some(replica) = set.replica.as_ref() else {
        return Err(ActionError::Invalid(format!(
            "shard {} of database {} has no replica to take over; create the database with replication: true",
            set.primary.id, d.shared.id
        )));
    };
    let cluster = d.shared.oss_cluster;
    if cluster {
        d.listen_on(Node {
            index: replica.node,
        })
        .await
        .map_err(failed)?;
    } else {
        set.primary.kill();
    }
    let old = &set.primary;
    switch_over(t, d, index, || async {
        match cluster {
            true => {
                oss_cluster::promote(replica, old, t.sync_timeout)
                    .await
                    .map_err(failed)?;
                old.kill();
            }
            false => replica.replicate(None).await.map_err(failed)?,
        }
        Ok(replica.addr)
    })
    .await?;
    let promoted = set.replica.take().expect("checked above");
    Ok(std::mem::replace(&mut set.primary, promoted))
}

/// A new replica of `primary` on `node`: one that follows it, for a
/// standalone database; for a cluster database, a cluster-mode shard that
/// joins the cluster and replicates it.
pub(crate) async fn new_replica(
    emu: &Emulator,
    d: &Database,
    node: Node,
    primary: &Shard,
) -> anyhow::Result<Shard> {
    let (password, args) = (d.password.clone(), &d.shard_args);
    if !d.shared.oss_cluster {
        return emu
            .start_shard(node, Some(primary.addr), password, args)
            .await;
    }
    let new = emu.start_shard_in(node, None, password, args, true).await?;
    d.shared.set_shard_node(new.addr, node);
    let within = d.timings.sync_timeout;
    let joined = async {
        oss_cluster::join(&[primary], &new, within).await?;
        oss_cluster::follow(&new, primary, within).await
    };
    match joined.await {
        Ok(()) => Ok(new),
        Err(e) => {
            new.stop().await;
            Err(e)
        }
    }
}
