//! Faults the client is not told about, and pushes it must not be fooled by:
//! frames sent as is, and what each connection did with them.

use anyhow::anyhow;
use cucumber::{then, when};
use serde_json::Value;

use super::params::DurationParam;
use super::{MaintWorld, StepResult};
use crate::fault_injector::{Action, BdbId};
use crate::timeline::{self, PushFate};

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
/// again.
#[then(expr = "every connection of {string} was dropped and connected again")]
async fn then_reconnected(w: &mut MaintWorld, client: String) -> StepResult {
    let conns = w.connection_ids(&client)?;
    w.tracker
        .wait_on(
            &client,
            w.patience(),
            "every connection to come back",
            |events| timeline::reconnected_each(events, &conns).ok(),
        )
        .await?;
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
