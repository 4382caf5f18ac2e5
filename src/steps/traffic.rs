//! Background traffic and the three closing checks: no errors, every
//! acknowledged write readable, timeouts back to their configured values.

use std::time::Duration;

use anyhow::anyhow;
use cucumber::{given, then};

use super::{MaintWorld, StepResult};
use crate::client::{ClientOptions, Mode};
use crate::workload::Workload;

/// Starts writes and reads through the client, two loops.
#[given(expr = "steady traffic from {string}")]
async fn given_traffic(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    let prefix = format!("{}:{client}", w.prefix);
    let workload = Workload::start(c, &prefix, 2, Duration::from_millis(5));
    // Traffic is flowing once the first writes are acknowledged.
    workload
        .wait_ok(10, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow!("traffic from {client:?} did not start: {e}"))?;
    w.workloads.insert(client, workload);
    Ok(())
}

impl MaintWorld {
    async fn stop_traffic(&mut self) {
        for (name, mut wl) in std::mem::take(&mut self.workloads) {
            let report = wl.stop().await;
            self.workloads_done.insert(name.clone(), wl);
            self.reports.insert(name, report);
        }
    }
}

/// Zero failed operations in every workload of the scenario.
#[then("the traffic saw no errors")]
async fn then_no_errors(w: &mut MaintWorld) -> StepResult {
    w.stop_traffic().await;
    if w.reports.is_empty() {
        fail!("no traffic ran; start it with `Given steady traffic from \"app\"`");
    }
    for (name, r) in &w.reports {
        if r.ok == 0 {
            fail!("traffic from {name:?} completed no operation");
        }
        if !r.errors.is_empty() || !r.mismatches.is_empty() {
            let first: Vec<String> = r
                .errors
                .iter()
                .take(5)
                .map(|e| format!("{}: {}", e.op, e.error))
                .collect();
            fail!(
                "traffic from {name:?}: {} ok, {} errors {:?}, {} wrong reads; first: {first:?} {:?}:\n{}",
                r.ok,
                r.errors.len(),
                r.by_class(),
                r.mismatches.len(),
                r.mismatches.iter().take(3).collect::<Vec<_>>(),
                w.tracker.describe(name)
            );
        }
    }
    Ok(())
}

/// Every write the server acknowledged reads back with its value.
#[then("every acknowledged write is readable")]
async fn then_writes_readable(w: &mut MaintWorld) -> StepResult {
    w.stop_traffic().await;
    if w.workloads_done.is_empty() {
        fail!("no traffic ran; start it with `Given steady traffic from \"app\"`");
    }
    let reader = w
        .env()?
        .factory
        .create(
            &format!("{}-reader", w.prefix),
            ClientOptions {
                mode: Mode::Disabled,
                response_timeout: Some(Duration::from_secs(5)),
                ..ClientOptions::default()
            },
        )
        .await
        .map_err(|e| anyhow!("connecting to read back: {e}"))?;
    for (name, wl) in &w.workloads_done {
        let problems = wl.verify(&reader).await;
        if !problems.is_empty() {
            fail!(
                "{} of {} acknowledged writes from {name:?} are lost or wrong; first: {:?}",
                problems.len(),
                wl.acknowledged(),
                &problems[..problems.len().min(5)]
            );
        }
    }
    reader.close().await;
    Ok(())
}

/// Every connection is un-relaxed with exactly its configured timeout.
#[then(expr = "the timeouts of {string} are back to their configured values")]
async fn then_timeouts_restored(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    let configured = c.options().response_timeout;
    let tail = c.options().post_relaxed();
    let within = tail + Duration::from_secs(5);
    let conns = c.connections();
    let tracker = w.tracker.clone();
    let waited = tracker
        .wait_for(within, "every connection to be un-relaxed", |_| {
            conns.iter().all(|c| !c.is_relaxed()).then_some(())
        })
        .await;
    if let Err(e) = waited {
        fail!("{e}:\n{}", w.tracker.describe(&client));
    }
    for conn in conns {
        if conn.effective_timeout() != configured {
            fail!(
                "connection {} of {client:?} has timeout {:?}, configured {configured:?}",
                conn.id,
                conn.effective_timeout()
            );
        }
    }
    Ok(())
}

/// One write and one read through every connection of the client.
#[then(expr = "{string} can still write and read")]
async fn then_still_works(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    for conn in c.connections() {
        let key = format!("{}:{client}:probe:{}", w.prefix, conn.id);
        conn.query(redis::cmd("SET").arg(&key).arg("ok"))
            .await
            .map_err(|e| anyhow!("SET through connection {} of {client:?}: {e}", conn.id))?;
        let v = conn
            .query(redis::cmd("GET").arg(&key))
            .await
            .map_err(|e| anyhow!("GET through connection {} of {client:?}: {e}", conn.id))?;
        if v != redis::Value::BulkString(b"ok".to_vec()) {
            fail!(
                "connection {} of {client:?} read {v:?} back, expected \"ok\"",
                conn.id
            );
        }
    }
    Ok(())
}
