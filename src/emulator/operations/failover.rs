//! `failover`: FAILING_OVER, each selected replica is promoted once it has
//! caught up and its old primary becomes its replica, FAILED_OVER.

use serde_json::{json, Value};

use super::{finish, selected, shard_ids, switch_over, window_deadline, window_secs};
use crate::emulator::database::Announcement;
use crate::emulator::error::failed;
use crate::emulator::shard::wait_caught_up;
use crate::emulator::{ActionError, Database, Timings};
use crate::notification::Notification;

/// Fails over the primary shard `shard_id` (every one when `None`).
pub async fn failover(
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
                time_s: Some(window_secs(t, sets.len())),
                shards: ids.clone(),
            },
            deadline: window_deadline(t, sets.len()),
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
