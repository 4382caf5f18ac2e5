//! Faults the client is not told about, and pushes it must not be fooled by:
//! frames sent as is, and what each connection did with them.

use anyhow::anyhow;
use cucumber::{then, when};
use serde_json::Value;

use super::{MaintWorld, StepResult};
use crate::fault_injector::{Action, BdbId};
use crate::timeline::{self, PushFate};

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
