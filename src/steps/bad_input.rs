//! Bad input, and what it gets: requests the fault injector must refuse with
//! a status and a message that says what is wrong, while it keeps serving.

use anyhow::anyhow;
use cucumber::{then, when};
use serde_json::Value;

use super::{MaintWorld, StepResult};
use crate::fault_injector::Action;

/// The request a feature names: path and body (`None`: a GET).
fn bad_request(name: &str, bdb: u64) -> anyhow::Result<(String, Option<Vec<u8>>)> {
    let post = |body: String| Ok(("/action".to_string(), Some(body.into_bytes())));
    match name {
        "a body that is not JSON" => post("{not json".into()),
        "a JSON array" => post("[1, 2]".into()),
        "an action without a type" => post(format!(r#"{{"parameters": {{"bdb_id": {bdb}}}}}"#)),
        "an unknown action type" => post(format!(
            r#"{{"type": "reboot_the_moon", "parameters": {{"bdb_id": {bdb}}}}}"#
        )),
        "a failover without a bdb_id" => post(r#"{"type": "failover", "parameters": {}}"#.into()),
        "a bdb_id that is neither a number nor a numeric string" => {
            post(r#"{"type": "failover", "parameters": {"bdb_id": "one"}}"#.into())
        }
        "a failover of a database that does not exist" => {
            post(r#"{"type": "failover", "parameters": {"bdb_id": 987654}}"#.into())
        }
        "a body of 1 MiB" => post(format!(
            r#"{{"type": "failover", "parameters": {{"bdb_id": {bdb}}}, "pad": "{}"}}"#,
            "x".repeat(1 << 20)
        )),
        "a status query for an action id that does not exist" => {
            Ok(("/action/no-such-action".into(), None))
        }
        "a request to a route that does not exist" => Ok(("/no/such/route".into(), None)),
        other => Err(anyhow!(
            "unknown bad request {other:?}; the feature can send: a body that is not JSON, a JSON \
             array, an action without a type, an unknown action type, a failover without a \
             bdb_id, a bdb_id that is neither a number nor a numeric string, a failover of a \
             database that does not exist, a body of 1 MiB, a status query for an action id \
             that does not exist, a request to a route that does not exist"
        )),
    }
}

/// Sends one of the bad requests [`bad_request`] knows, as is.
#[when(regex = r"^the fault injector is sent (.+)$")]
async fn when_sent(w: &mut MaintWorld, name: String) -> StepResult {
    let env = w.env()?;
    let (path, body) = bad_request(&name, env.bdb_id)?;
    let answer = env.fault_injector.raw(&path, body).await?;
    w.injector.answer = Some(answer);
    Ok(())
}

/// The last request sent as is was answered `status`, with a JSON error
/// whose text holds `words`.
#[then(expr = "it answers {int} with an error that says {string}")]
async fn then_answers(w: &mut MaintWorld, status: u16, words: String) -> StepResult {
    let Some((got, body)) = &w.injector.answer else {
        fail!("nothing was sent as is; start with `When the fault injector is sent ...`");
    };
    let error = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| anyhow!("the answer ({got}) is not a JSON error: {body}"))?;
    if *got != status || !error.contains(&words) {
        fail!("expected {status} with an error saying {words:?}; got {got}: {error}");
    }
    Ok(())
}

/// A failover of the database under test still runs to success.
#[then("the fault injector still runs a failover of the database under test")]
async fn then_still_serves(w: &mut MaintWorld) -> StepResult {
    w.run_action(Action::failover).await?;
    Ok(())
}
