//! A switch-over: the database's traffic held (new requests wait, those in
//! flight finish first), a shard set pointed at its new primary, and the
//! traffic let go, the stretch kept in the server's record.

use std::net::SocketAddr;

use tokio::sync::OwnedRwLockWriteGuard;
use tokio::time::Instant;

use crate::emulator::database::Route;
use crate::emulator::error::failed_because;
use crate::emulator::{ActionError, Database, Timings};
use crate::fault_injector::Timestamp;
use crate::server_record::SwitchOver;

/// The database's traffic, held: the proxies' route, written.
pub(crate) struct Held {
    pub(crate) route: OwnedRwLockWriteGuard<Route>,
    asked: Instant,
    from: Timestamp,
    held: Instant,
}

/// Holds the traffic of `db` once the requests in flight are answered
/// (within `t.drain_timeout`), then for `t.hold`: a real switch-over takes
/// a while, and requests wait for it.
pub(crate) async fn hold_traffic(t: &Timings, db: &Database) -> Result<Held, ActionError> {
    let timeout = t.drain_timeout;
    let asked = Instant::now();
    let from = Timestamp::now();
    let route = tokio::time::timeout(timeout, db.shared.route.clone().write_owned())
        .await
        .map_err(|_| {
            failed_because(format!(
                "requests on database {} did not finish within {timeout:?} (a blocking command?); nothing was switched",
                db.shared.id
            ))
        })?;
    let held = Instant::now();
    tokio::time::sleep(t.hold).await;
    Ok(Held {
        route,
        asked,
        from,
        held,
    })
}

impl Held {
    /// Points shard set `index` at `upstream`: on an OSS Cluster API
    /// database its slots are served from that shard's node from now on.
    /// Subscribers move first: a message published on the new primary
    /// finds them there.
    pub(crate) async fn point(&mut self, db: &Database, index: usize, upstream: SocketAddr) {
        self.route.upstreams[index] = upstream;
        if let (Some(map), Some(node)) =
            (self.route.cluster.as_mut(), db.shared.shard_node(upstream))
        {
            map.nodes[index] = node;
        }
        db.shared
            .move_subscriptions(index, upstream, crate::timing::SUBSCRIPTIONS_MOVE_WITHIN)
            .await;
    }

    /// Lets the traffic go; the server's record keeps the stretch for each
    /// shard set of `sets` that switched.
    pub(crate) fn release(self, db: &Database, sets: &[usize]) {
        let Held {
            route,
            asked,
            from,
            held,
        } = self;
        drop(route);
        let to = Timestamp::now();
        for &shard_set in sets {
            db.shared.ledger.switched_over(SwitchOver {
                shard_set,
                from,
                to,
            });
        }
        tracing::debug!(
            bdb_id = db.shared.id,
            shard_sets = ?sets,
            drained_in = ?(held - asked),
            switched_in = ?held.elapsed(),
            "traffic switched"
        );
    }
}

/// Holds the traffic of `db`, runs `switch`, then points shard set `index`
/// at what it returns and lets the traffic go.
pub(crate) async fn switch_over<F, Fut>(
    t: &Timings,
    db: &Database,
    index: usize,
    switch: F,
) -> Result<(), ActionError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<SocketAddr, ActionError>>,
{
    let mut held = hold_traffic(t, db).await?;
    let upstream = switch().await?;
    held.point(db, index, upstream).await;
    held.release(db, &[index]);
    Ok(())
}
