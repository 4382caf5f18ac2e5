//! The maintenance operations as they really happen on the emulated cluster:
//! failover, migrate, bind and the catalogue's topology changes. Each holds
//! traffic only for the switch itself and sends its notifications from the
//! one encoder.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::actions::{failed, ActionError};
use super::catalogue;
use super::database::{Announcement, Node};
use super::shard::wait_caught_up;
use super::{Database, Emulator, Shards, TimingOverrides, Timings};
use crate::notification::{EndpointType, Notification};

/// Holds traffic of `db`, waits for in-flight replies, runs `switch`, then points
/// the proxies' route for shard set `index` at what it returns.
async fn switch_over<F, Fut>(
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
    let mut gate = tokio::time::timeout(timeout, db.shared.route.clone().write_owned())
        .await
        .map_err(|_| {
            failed(format!(
                "requests on database {} did not finish within {timeout:?} (a blocking command?); nothing was switched",
                db.shared.id
            ))
        })?;
    let held = Instant::now();
    let upstream = switch().await?;
    gate.upstreams[index] = upstream;
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
fn finish(db: &Database, seq: i64, completion: Notification, drop_completion: bool) {
    if drop_completion {
        db.shared.close_window(seq);
        tracing::info!(bdb_id = db.shared.id, "dropped {completion} on purpose");
    } else {
        db.shared.complete(seq, completion);
    }
}

/// The database's timings with an action's overrides applied.
pub(crate) fn timings(db: &Database, o: &TimingOverrides) -> Result<Timings, ActionError> {
    o.validate().map_err(ActionError::Invalid)?;
    Ok(db.timings.with(o))
}

pub(crate) fn check_node(emu: &Emulator, n: usize) -> Result<Node, ActionError> {
    let count = emu.config.nodes;
    if n == 0 || n > count {
        return Err(ActionError::Invalid(format!(
            "node {n} does not exist; nodes are 1..={count}"
        )));
    }
    Ok(Node { index: n })
}

/// When a MIGRATING / FAILING_OVER window is expected to end.
fn window_deadline(t: &Timings) -> Instant {
    Instant::now() + t.notice_lead + t.settle + t.window_estimate
}

/// `time_s` of a MIGRATING / FAILING_OVER.
fn window_secs(t: &Timings) -> u64 {
    (t.notice_lead + t.settle + t.window_estimate)
        .as_secs_f64()
        .ceil() as u64
}

/// The shard sets an action works on: the one whose primary is `shard_id`, or
/// every set.
fn selected(
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
fn shard_ids(shards: &Shards, sets: &[usize]) -> String {
    sets.iter()
        .map(|&i| shards.sets[i].primary.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) async fn failover(
    db: &Database,
    t: &Timings,
    drop_completion: bool,
    shard_id: Option<u32>,
) -> Result<Value, ActionError> {
    let mut shards = db.shards.lock().await;
    let sets = selected(&shards, shard_id, db)?;
    if sets.iter().any(|&i| shards.sets[i].replica.is_none()) {
        return Err(ActionError::Invalid(format!(
            "database {} has no replica to fail over to; create it with replication: true",
            db.shared.id
        )));
    }
    let ids = vec![shard_ids(&shards, &sets)];
    let seq = db.shared.take_seq();
    db.shared.announce(
        Announcement::Start {
            notification: Notification::FailingOver {
                seq,
                time_s: Some(window_secs(t)),
                shards: ids.clone(),
            },
            deadline: window_deadline(t),
        },
        None,
    );
    tokio::time::sleep(t.notice_lead).await;
    let mut result = Ok(());
    for &i in &sets {
        let set = &mut shards.sets[i];
        let replica = set.replica.as_ref().expect("checked above");
        let switched = switch_over(t, db, i, || async {
            wait_caught_up(&set.primary, replica, t.sync_timeout)
                .await
                .map_err(failed)?;
            replica.replicate(None).await.map_err(failed)?;
            Ok(replica.addr)
        })
        .await;
        if let Err(e) = switched {
            result = Err(e);
            break;
        }
        let promoted = set.replica.take().expect("checked above");
        let demoted = std::mem::replace(&mut set.primary, promoted);
        if let Err(e) = demoted.replicate(Some(set.primary.addr)).await {
            tracing::warn!("old primary could not become a replica: {e:#}");
        }
        set.replica = Some(demoted);
    }
    if result.is_ok() {
        tokio::time::sleep(t.settle).await;
    }
    finish(
        db,
        seq,
        Notification::FailedOver {
            seq: seq + 1,
            shards: ids,
        },
        drop_completion,
    );
    result?;
    let p = &shards.sets[sets[0]].primary;
    Ok(json!({
        "seq": seq,
        "primary_shard": p.id,
        "primary": p.addr.to_string(),
        "shards": sets.iter().map(|&i| shards.sets[i].primary.id).collect::<Vec<_>>(),
    }))
}

/// Moves primary shards to new processes on other nodes; returns the output
/// and the node the first of them moved to.
pub(crate) async fn migrate(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    target: Option<usize>,
    drop_completion: bool,
    shard_id: Option<u32>,
) -> Result<(Value, Node), ActionError> {
    let mut shards = db.shards.lock().await;
    let sets = selected(&shards, shard_id, db)?;
    let nodes = emu.nodes();
    // Where each set moves: the target, or a node that holds neither its
    // primary nor its replica (any other node when there is none).
    let mut targets = Vec::new();
    for &i in &sets {
        let set = &shards.sets[i];
        let old_node = set.primary.node;
        let replica_node = set.replica.as_ref().map(|r| r.node);
        targets.push(match target {
            Some(n) if n == 0 || n > nodes.len() => {
                return Err(ActionError::Invalid(format!(
                    "target_node {n} does not exist; nodes are 1..={}",
                    nodes.len()
                )))
            }
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
                time_s: Some(window_secs(t)),
                shards: ids.clone(),
            },
            deadline: window_deadline(t),
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

/// Runs one trigger of the catalogue.
pub(crate) async fn topology_change(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    trigger: &catalogue::Trigger,
    target: Option<usize>,
    skip_end: bool,
) -> Result<Value, ActionError> {
    use catalogue::Steps;
    if let Some(n) = target {
        check_node(emu, n)?;
    }
    let out = match trigger.steps {
        Steps::Migrate => migrate(emu, db, t, target, skip_end, None).await?.0,
        Steps::Failover => failover(db, t, skip_end, None).await?,
        Steps::Bind => bind(emu, db, t, None, target, 1).await?,
        Steps::MigrateThenBind => {
            // Data and endpoint move together: prefer a node that holds
            // neither the endpoint nor a shard of this database.
            let target = match target {
                Some(t) => Some(t),
                None => {
                    let s = db.shards.lock().await;
                    let primary = s.sets.first().map(|p| p.primary.node);
                    let replica = s
                        .sets
                        .first()
                        .and_then(|p| p.replica.as_ref().map(|r| r.node));
                    let endpoint = db.shared.active_node().index;
                    let nodes: Vec<usize> = emu.nodes().iter().map(|n| n.index).collect();
                    let elsewhere = |n: &&usize| **n != endpoint && Some(**n) != primary;
                    nodes
                        .iter()
                        .filter(elsewhere)
                        .find(|n| Some(**n) != replica)
                        .or_else(|| nodes.iter().find(elsewhere))
                        .copied()
                }
            };
            let (migrated, node) = migrate(emu, db, t, target, skip_end, None).await?;
            // The rebind is a maintenance of its own: it starts a lead after
            // the migration ended, as on a real cluster, not in the same breath.
            tokio::time::sleep(t.notice_lead).await;
            // The endpoint follows the data to its node (or, when it is there
            // already, to the next one).
            let to = (node != db.shared.active_node()).then_some(node.index);
            let bound = bind(emu, db, t, None, to, 1).await?;
            json!({ "migrate": migrated, "bind": bound })
        }
    };
    Ok(json!({ "effect": trigger.effect, "trigger": trigger.name, "result": out }))
}

pub(crate) async fn bind(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    forced: Option<EndpointType>,
    target: Option<usize>,
    repeat: u32,
) -> Result<Value, ActionError> {
    let nodes = emu.nodes();
    let from = db.shared.active_node();
    let to = match target {
        Some(t) if t == 0 || t > nodes.len() => {
            return Err(ActionError::Invalid(format!(
                "target_node {t} does not exist; nodes are 1..={}",
                nodes.len()
            )))
        }
        Some(t) if t == from.index => {
            return Err(ActionError::Invalid(format!(
                "the endpoint already lives on node {t}; pick another target_node"
            )))
        }
        Some(t) => Node { index: t },
        None if nodes.len() == 1 => {
            return Err(ActionError::Invalid(
                "bind needs a second node to move the endpoint to; start the emulator with --nodes 2 or more".into(),
            ))
        }
        None => nodes[from.index % nodes.len()],
    };
    db.listen_on(to).await.map_err(failed)?;
    let grace = t.moving_grace;
    let seq = db.shared.take_seq();
    let deadline = Instant::now() + grace;
    db.shared.set_active_node(to);
    let announcement = Announcement::Moving {
        seq,
        deadline,
        target: to,
    };
    let mut sent = Vec::new();
    for _ in 0..repeat {
        sent.push(match forced {
            // A forced form is rendered once and sent as is.
            Some(ty) => db.shared.announce(
                Announcement::Start {
                    notification: announcement
                        .render(ty, &db.shared.naming, db.shared.port, Instant::now())
                        .expect("a MOVING renders"),
                    deadline,
                },
                Some(from),
            ),
            None => db.shared.announce(announcement.clone(), Some(from)),
        });
    }
    // As real servers do, MOVING is sent again half-way through the grace to
    // the connections that are still on the old node.
    tokio::time::sleep_until(deadline - grace / 2).await;
    if let Some(a) = sent.first() {
        db.shared.deliver(a, Some(from));
    }
    tokio::time::sleep_until(deadline).await;
    db.stop_on(from);
    db.shared.close_window(seq);
    Ok(json!({
        "seq": seq,
        "from_node": from.index,
        "to_node": to.index,
        "endpoint": format!("{}:{}", to.internal_ip(), db.shared.port),
    }))
}
