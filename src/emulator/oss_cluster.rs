//! A Redis Cluster out of cluster-mode shards, as an OSS Cluster API database
//! runs on: the 16,384 slots split evenly among the primaries, every node
//! introduced to the others, each replica attached to its primary, and a wait
//! until every node agrees (state ok, every node known, every slot served).

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::keys;
use super::shard::{info_field, Shard};
use crate::timing::SERVER_POLL;
use crate::wait::{poll, Look};

/// The node id a cluster-mode shard goes by.
pub async fn node_id(shard: &Shard) -> Result<String> {
    shard.admin(&["CLUSTER", "MYID"]).await
}

/// Makes one cluster of `primaries` (primary i given the slots the proxies
/// route to shard i, [`keys::slot_range`]) and `replicas` (each the index of its primary and the
/// shard), all started in cluster mode, and waits at most `within` until every
/// node agrees.
pub async fn form(
    primaries: &[&Shard],
    replicas: &[(usize, &Shard)],
    within: Duration,
) -> Result<()> {
    if primaries.is_empty() {
        bail!("a cluster needs at least one primary");
    }
    for (i, p) in primaries.iter().enumerate() {
        let (first, last) = keys::slot_range(i, primaries.len());
        p.admin(&[
            "CLUSTER",
            "ADDSLOTSRANGE",
            &first.to_string(),
            &last.to_string(),
        ])
        .await?;
    }
    let first = primaries[0];
    let everyone: Vec<&Shard> = primaries
        .iter()
        .copied()
        .chain(replicas.iter().map(|(_, r)| *r))
        .collect();
    for s in &everyone[1..] {
        meet(s, first).await?;
    }
    for (i, r) in replicas {
        let primary = primaries.get(*i).with_context(|| {
            format!("a replica names primary {i}; there are {}", primaries.len())
        })?;
        follow(r, primary, within).await?;
    }
    for s in &everyone {
        wait_whole(s, Some(everyone.len()), within).await?;
    }
    Ok(())
}

/// Makes `replica` (a member of `primary`'s cluster) follow `primary`, once
/// it knows of it (waiting at most `within`).
pub async fn follow(replica: &Shard, primary: &Shard, within: Duration) -> Result<()> {
    let id = node_id(primary).await?;
    wait_knows(replica, &id, within).await?;
    replica.admin(&["CLUSTER", "REPLICATE", &id]).await?;
    Ok(())
}

/// `shard` introduced to the cluster `to` belongs to.
async fn meet(shard: &Shard, to: &Shard) -> Result<()> {
    shard
        .admin(&[
            "CLUSTER",
            "MEET",
            &to.addr.ip().to_string(),
            &to.addr.port().to_string(),
        ])
        .await?;
    Ok(())
}

/// Waits at most `within` until `shard` knows the node `id`.
async fn wait_knows(shard: &Shard, id: &str, within: Duration) -> Result<()> {
    let known = poll(SERVER_POLL, within, || async {
        let nodes = shard.admin(&["CLUSTER", "NODES"]).await?;
        anyhow::Ok(match nodes.contains(id) {
            true => Look::Ready(()),
            false => Look::NotYet(nodes),
        })
    })
    .await?;
    if let Err(nodes) = known {
        bail!(
            "shard {} never learned of node {id} within {within:?}: {nodes}",
            shard.id
        );
    }
    Ok(())
}

/// Waits at most `within` until `shard` sees a healthy cluster with every
/// slot served (and, when given, that many nodes).
async fn wait_whole(shard: &Shard, nodes: Option<usize>, within: Duration) -> Result<()> {
    let total = nodes.map(|n| n.to_string());
    let all_slots = keys::SLOTS.to_string();
    let agreed = poll(SERVER_POLL, within, || async {
        let info = shard.admin(&["CLUSTER", "INFO"]).await?;
        let ok = info_field(&info, "cluster_state").as_deref() == Some("ok")
            && (total.is_none() || info_field(&info, "cluster_known_nodes") == total)
            && info_field(&info, "cluster_slots_ok").as_deref() == Some(all_slots.as_str());
        anyhow::Ok(match ok {
            true => Look::Ready(()),
            false => Look::NotYet(info),
        })
    })
    .await?;
    if let Err(info) = agreed {
        bail!(
            "shard {} at {} did not see a whole cluster ({} nodes) within {within:?}: {}",
            shard.id,
            shard.addr,
            total.as_deref().unwrap_or("any number of"),
            info.replace("\r\n", " ")
        );
    }
    Ok(())
}

/// Brings `new` (started in cluster mode, no slots) into the cluster of
/// `members`, and waits at most `within` until every member knows it and it
/// sees the whole cluster.
pub async fn join(members: &[&Shard], new: &Shard, within: Duration) -> Result<()> {
    let first = members
        .first()
        .context("a cluster to join needs a member")?;
    meet(new, first).await?;
    let id = node_id(new).await?;
    for m in members {
        wait_knows(m, &id, within).await?;
    }
    wait_whole(new, None, within).await
}

/// Promotes `replica` over `primary` (called while the proxies hold the
/// database's traffic, so no write is on its way): once the replica caught
/// up, `CLUSTER FAILOVER TAKEOVER` makes it the slots' owner without an
/// election (which a cluster of two primaries cannot always win in time);
/// waits at most `within` until it says it is a primary.
pub async fn promote(replica: &Shard, primary: &Shard, within: Duration) -> Result<()> {
    super::shard::wait_caught_up(primary, replica, within).await?;
    replica.admin(&["CLUSTER", "FAILOVER", "TAKEOVER"]).await?;
    wait_role(replica, "master", within).await?;
    // It answers for the slots only once it holds them itself (else it
    // redirects to the old primary for a moment).
    let owns = poll(SERVER_POLL, within, || async {
        let me = myself(replica).await?;
        anyhow::Ok(match holds_slots(&me) {
            true => Look::Ready(()),
            false => Look::NotYet(me),
        })
    })
    .await?;
    if let Err(me) = owns {
        bail!(
            "shard {} became primary but holds no slot within {within:?}: {me}",
            replica.id
        );
    }
    Ok(())
}

/// After a promotion, until the old primary follows: the promoted shard
/// keeps its slots. A takeover's unilateral epoch can lose to the old
/// primary's for a moment (it claims the slots back by gossip before it
/// learns it follows); the promoted shard then takes them over again. Waits
/// at most `within` for both to agree, for a few polls in a row.
pub async fn keep_promotion(promoted: &Shard, old: &Shard, within: Duration) -> Result<()> {
    let agreed = std::sync::atomic::AtomicU32::new(0);
    let done = poll(SERVER_POLL, within, || {
        let agreed = &agreed;
        async move {
            use std::sync::atomic::Ordering::Relaxed;
            let me = myself(promoted).await?;
            if !holds_slots(&me) {
                agreed.store(0, Relaxed);
                promoted
                    .admin(&["CLUSTER", "FAILOVER", "TAKEOVER"])
                    .await
                    .ok();
                return anyhow::Ok(Look::NotYet(format!("it lost its slots: {me}")));
            }
            let role = old.replication_field("role").await?;
            if role.as_deref() != Some("slave") {
                agreed.store(0, Relaxed);
                return Ok(Look::NotYet(format!("the old primary is {role:?}")));
            }
            Ok(match agreed.fetch_add(1, Relaxed) + 1 >= AGREED_POLLS {
                true => Look::Ready(()),
                false => Look::NotYet("agreeing".into()),
            })
        }
    })
    .await?;
    if let Err(why) = done {
        bail!(
            "shard {} and its old primary {} did not agree on its slots within {within:?}: {why}",
            promoted.id,
            old.id
        );
    }
    Ok(())
}

/// Polls in a row on which a promoted shard and its old primary must agree.
const AGREED_POLLS: u32 = 5;

/// A shard's own line of `CLUSTER NODES`.
async fn myself(shard: &Shard) -> Result<String> {
    let nodes = shard.admin(&["CLUSTER", "NODES"]).await?;
    Ok(nodes
        .lines()
        .find(|l| l.contains("myself"))
        .unwrap_or("")
        .to_string())
}

/// A `CLUSTER NODES` line of a primary that holds slots (id addr flags
/// master ping pong epoch link slot...).
fn holds_slots(line: &str) -> bool {
    line.contains("master") && line.split_whitespace().count() > 8
}

/// Waits at most `within` until `shard` has `role` (`master`, `slave`).
pub async fn wait_role(shard: &Shard, role: &str, within: Duration) -> Result<()> {
    let done = poll(SERVER_POLL, within, || async {
        let r = shard.replication_field("role").await?;
        anyhow::Ok(match r.as_deref() == Some(role) {
            true => Look::Ready(()),
            false => Look::NotYet(r),
        })
    })
    .await?;
    if let Err(r) = done {
        bail!(
            "shard {} did not become {role} within {within:?} (role {r:?})",
            shard.id
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::shard::{redis_server_bin, ShardSpec};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_primaries_and_a_replica_form_one_cluster_that_redirects() {
        let dir = tempfile::tempdir().unwrap();
        let bin = redis_server_bin().unwrap();
        let start = |id| {
            let (bin, dir) = (bin.clone(), dir.path().to_path_buf());
            async move {
                Shard::start(
                    &bin,
                    &dir,
                    ShardSpec {
                        id,
                        node: 1,
                        replica_of: None,
                        password: None,
                        args: Vec::new(),
                        cluster: true,
                    },
                )
                .await
                .unwrap()
            }
        };
        let (a, b, c, r) = (
            start(1).await,
            start(2).await,
            start(3).await,
            start(4).await,
        );
        form(&[&a, &b, &c], &[(1, &r)], Duration::from_secs(20))
            .await
            .unwrap();

        // Every node sees the same three ranges, each served by its primary.
        let slots = r.admin(&["CLUSTER", "SHARDS"]).await.unwrap();
        for p in [&a, &b, &c] {
            assert!(slots.contains(&p.addr.port().to_string()), "{slots}");
        }
        let role = r.admin(&["ROLE"]).await.unwrap();
        assert!(
            role.contains("slave") && role.contains(&b.addr.port().to_string()),
            "{role}"
        );
        // A key of another primary's slot is redirected there: "foo" is slot
        // 12182, in the third range.
        let mut conn = a.connect().await.unwrap();
        let err = redis::cmd("SET")
            .arg("foo")
            .arg("1")
            .query_async::<()>(&mut conn)
            .await
            .unwrap_err();
        assert_eq!(
            err.redirect_node(),
            Some((c.addr.to_string().as_str(), 12182))
        );
        for s in [a, b, c, r] {
            s.stop().await;
        }
    }
}
