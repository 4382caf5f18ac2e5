//! Faults the client is not told about, and pushes it must not be fooled by:
//! frames sent as is, and what each connection did with them.

use anyhow::anyhow;
use cucumber::{then, when};
use serde_json::Value;
use tokio::time::Instant;

use super::params::DurationParam;
use super::{MaintWorld, StepResult};
use crate::fault_injector::{Action, BdbId, NodeMethod, NodeRef, ProxyCommand};
use crate::server_record::DatabaseRecord;
use crate::timeline::{self, server, PushFate};

/// `dmc_restart`: every connection of the endpoint's proxy dropped at once,
/// without notice; the step returns once it happened.
/// The endpoint moves with no MOVING at all; the old node closes its
/// connections when the grace ends (emulator: `bind` with `repeat` 0).
#[when("the database endpoint is rebound to another node without MOVING")]
async fn when_bind_unannounced(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| Action::bind(bdb).repeating_moving(0))
        .await?;
    Ok(())
}

#[when("the database's proxy restarts")]
async fn when_proxy_restarts(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| Action::DmcRestart {
        bdb_id: BdbId(bdb),
        node: None,
    })
    .await?;
    Ok(())
}

/// `network_failure` on every endpoint of the database: nothing reaches its
/// clients for that long; the step returns when the failure is over.
#[when(expr = "the database is cut off from its clients for {duration}")]
async fn when_network_fails(w: &mut MaintWorld, lasting: DurationParam) -> StepResult {
    let duration_s = lasting.bounded("how long it lasts")?.as_secs_f64();
    w.run_action(|bdb| Action::NetworkFailure {
        bdb_id: BdbId(bdb),
        duration_s,
        node: None,
    })
    .await?;
    Ok(())
}

/// Every connection of the client was closed by the server and connected
/// again: the server's record decides (its closes, and the connections it
/// accepted after). A target without a record says so, and only the client's
/// own account is there to wait on.
#[then(expr = "every connection of {string} was dropped and connected again")]
async fn then_reconnected(w: &mut MaintWorld, client: String) -> StepResult {
    let name = w.server_name(&client)?;
    let settled = |r: &DatabaseRecord, _| server::cut_and_reconnected(r, &name).is_ok();
    match w.settled_record(&client, settled).await? {
        Some(record) => {
            server::cut_and_reconnected(&record, &name).map_err(|e| w.unmet(&client, e))?
        }
        None => {
            w.not_checked("which connections the server cut off, and the ones it accepted after");
            let conns = w.connection_ids(&client)?;
            w.tracker
                .wait_on(
                    &client,
                    w.patience(),
                    "every connection to come back",
                    |events| timeline::reconnected_each(events, &conns).ok(),
                )
                .await?;
        }
    }
    Ok(())
}

/// The traffic of every client lost at most `max` requests, each to an
/// error of the class named (or of either of two), and succeeded again
/// after the last.
#[then(regex = r"^the traffic saw at most (\d+) (\w+)(?: or (\w+))? errors, and recovered$")]
async fn then_errors_bounded(
    w: &mut MaintWorld,
    max: usize,
    class: String,
    other: String,
) -> StepResult {
    let classes: Vec<&str> = [class.as_str(), other.as_str()]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    for name in w.stop_traffic().await? {
        let (report, phases) = w.traffic_report(&name)?;
        timeline::errors_bounded(report, &classes, max).map_err(|e| {
            w.unmet(
                &name,
                timeline::Unmet(format!(
                    "{e}\n{}",
                    timeline::describe_phases(report, &phases)
                )),
            )
        })?;
    }
    Ok(())
}

/// `node_failure` (reboot) of the node that holds the endpoint (the server's
/// record names it): its shards die, the replicas take over, the endpoint
/// moves to another node unannounced; the step returns once the node is back.
#[when("the node that holds the database endpoint reboots")]
async fn when_endpoint_node_reboots(w: &mut MaintWorld) -> StepResult {
    let Some(record) = w.server_record_all().await? else {
        fail!(
            "which node holds the endpoint is read from the emulator's record; this target keeps none"
        );
    };
    let node = record.endpoint_node;
    w.run_action(|_| Action::NodeFailure {
        node_id: NodeRef(node),
        method: NodeMethod::Reboot,
        shutdown_timeout: None,
        startup_timeout: None,
    })
    .await?;
    Ok(())
}

/// `proxy_failure` stop, then start `down` later: the proxy that holds the
/// endpoint drops its connections and refuses new ones for that long.
#[when(expr = "the database's proxy stops for {duration}")]
async fn when_proxy_stops(w: &mut MaintWorld, down: DurationParam) -> StepResult {
    let down = down.bounded("how long the proxy stays down")?;
    let proxy = |action| {
        move |bdb| Action::ProxyFailure {
            bdb_id: Some(BdbId(bdb)),
            node_id: None,
            action,
        }
    };
    w.run_action(proxy(ProxyCommand::Stop)).await?;
    // The outage's length is the scenario's to choose: nothing to await.
    tokio::time::sleep(down).await;
    w.run_action(proxy(ProxyCommand::Start)).await?;
    Ok(())
}

/// Every error of every client's traffic is of the class named (or of
/// either of two) and came while the scenario's outage lasted (from the
/// first fault action's start to the last one's end); requests succeeded
/// after it. An outage may cost every request made while it lasts.
#[then(
    regex = r"^the traffic saw only (\w+)(?: or (\w+))? errors, all while the fault lasted, and recovered$"
)]
async fn then_errors_during(w: &mut MaintWorld, class: String, other: String) -> StepResult {
    let classes: Vec<&str> = [class.as_str(), other.as_str()]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    let faults: Vec<_> = w
        .actions
        .iter()
        .filter(|a| FAULTS.contains(&a.action_type))
        .collect();
    let (Some(first), Some(last)) = (faults.first(), faults.last()) else {
        fail!(
            "no fault ran in this scenario (one of {})",
            FAULTS.join(", ")
        );
    };
    let fault = (first.started, last.ended.unwrap_or_else(Instant::now));
    for name in w.stop_traffic().await? {
        let (report, phases) = w.traffic_report(&name)?;
        timeline::errors_only_during(report, &classes, fault, crate::timing::BAND_SLACK).map_err(
            |e| {
                w.unmet(
                    &name,
                    timeline::Unmet(format!(
                        "{e}\n{}",
                        timeline::describe_phases(report, &phases)
                    )),
                )
            },
        )?;
    }
    Ok(())
}

/// The actions that are outages: what `all while the fault lasted` spans.
const FAULTS: &[&str] = &[
    "node_failure",
    "proxy_failure",
    "network_failure",
    "dmc_restart",
];

/// `shard_failure`: the first primary shard's process killed; returns once
/// the replica took over.
#[when("a primary shard of the database dies")]
async fn when_shard_dies(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| Action::ShardFailure {
        bdb_id: BdbId(bdb),
        shard_id: None,
    })
    .await?;
    Ok(())
}

/// A crash may lose the writes its replica had not received yet: at most
/// `max` of them, and every other acknowledged write reads back intact.
#[then(expr = "at most {int} acknowledged writes were lost")]
async fn then_few_lost(w: &mut MaintWorld, max: usize) -> StepResult {
    for (name, acknowledged, problems) in w.read_back().await? {
        if problems.len() > max {
            fail!(
                "{} of {acknowledged} acknowledged writes from {name:?} are lost or wrong, more than {max}; first: {:?}",
                problems.len(),
                &problems[..problems.len().min(5)]
            );
        }
    }
    Ok(())
}

/// A push frame written as JSON (`["MOVING", "soon", 15, null]`), sent as is
/// to every opted-in connection of the database (emulator only).
#[when(regex = r"^the emulator sends the push (\[.*\]) to every connection$")]
async fn when_send_raw_push(w: &mut MaintWorld, json: String) -> StepResult {
    w.emulator()?;
    let push: Vec<Value> = serde_json::from_str(&json).map_err(|e| {
        anyhow!(
            "the push must be a JSON array such as [\"MOVING\", 7, 15, null]; {json} is not: {e}"
        )
    })?;
    w.run_action(|bdb| Action::SendPush {
        bdb_id: BdbId(bdb),
        push,
        node_id: None,
    })
    .await?;
    Ok(())
}

async fn each_connection(w: &MaintWorld, client: &str, name: &str, fate: PushFate) -> StepResult {
    let conns = w.connection_ids(client)?;
    let what = format!("every connection of {client:?} to deal with a {name} push");
    w.tracker
        .wait_on(client, w.patience(), &what, |events| {
            timeline::push_handled_on_each(events, &conns, name, fate).ok()
        })
        .await?;
    Ok(())
}

/// Every connection dropped a push named like a notification that it could
/// not read.
#[then(regex = r#"^every connection of "([^"]*)" dropped a malformed (\S+)$"#)]
async fn then_dropped(w: &mut MaintWorld, client: String, name: String) -> StepResult {
    each_connection(w, &client, &name, PushFate::DroppedMalformed).await
}

/// Every connection left a push that is not a notification alone.
#[then(regex = r#"^every connection of "([^"]*)" left the (\S+) push alone$"#)]
async fn then_left_alone(w: &mut MaintWorld, client: String, name: String) -> StepResult {
    each_connection(w, &client, &name, PushFate::LeftAlone).await
}
