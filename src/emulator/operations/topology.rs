//! `topology_change_standalone`: a maintenance named by its effect on a
//! standalone client, run as the catalogue says.

use serde_json::{json, Value};

use super::{bind::bind, check_node, failover::failover, migrate::migrate};
use crate::emulator::catalogue::{self, Steps};
use crate::emulator::{ActionError, Database, Emulator, Timings};

/// Runs one trigger of the catalogue.
pub async fn topology_change(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    trigger: &catalogue::Trigger,
    target: Option<usize>,
    skip_end: bool,
) -> Result<Value, ActionError> {
    if let Some(n) = target {
        check_node(emu, n, "target_node")?;
    }
    let out = match trigger.steps {
        Steps::Migrate => migrate(emu, db, t, target, skip_end, None).await?.0,
        Steps::Failover => failover(db, t, skip_end, None).await?,
        Steps::Bind => bind(emu, db, t, None, target, 1).await?,
        // An unannounced move: what a resolver's change looks like to a
        // client that connected by name.
        Steps::AddressChange => bind(emu, db, t, None, target, 0).await?,
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
