//! Maintenance, through the fault injector: `When the database fails over`.

use anyhow::{anyhow, Result};
use cucumber::when;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::params::KindParam;
use super::{ActionRun, MaintWorld, StepResult};
use crate::notification::{Kind, Notification};

impl MaintWorld {
    /// Posts an action for the database under test; returns its index in `actions`.
    pub async fn start_action(&mut self, action_type: &str, mut params: Value) -> Result<usize> {
        let env = self.env()?;
        params["bdb_id"] = json!(env.bdb_id);
        let started = Instant::now();
        let id = env.fault_injector.trigger(action_type, params).await?;
        self.actions.push(ActionRun {
            action_type: action_type.to_string(),
            id,
            started,
            status: None,
        });
        Ok(self.actions.len() - 1)
    }

    /// Waits for the action at `index` to end; anything but success fails.
    pub async fn finish_action(&mut self, index: usize) -> Result<()> {
        let patience = self.patience();
        let run = self
            .actions
            .get(index)
            .ok_or_else(|| anyhow!("no action {index}"))?
            .clone();
        let status = self.env()?.fault_injector.wait(&run.id, patience).await?;
        self.actions[index].status = Some(status.clone());
        if status.status != "success" && status.status != "finished" {
            fail!(
                "{} action {} ended {}: {}",
                run.action_type,
                run.id,
                status.status,
                status.error.map(|e| e.to_string()).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Runs an action to its end.
    pub async fn run_action(&mut self, action_type: &str, params: Value) -> Result<()> {
        let i = self.start_action(action_type, params).await?;
        self.finish_action(i).await
    }

    /// The last action of `action_type`.
    pub fn last_action(&self, action_type: &str) -> Result<&ActionRun> {
        self.actions
            .iter()
            .rev()
            .find(|a| a.action_type == action_type)
            .ok_or_else(|| anyhow!("no {action_type} action ran in this scenario"))
    }
}

/// `failover`: the replica is promoted.
#[when("the database fails over")]
async fn when_failover(w: &mut MaintWorld) -> StepResult {
    w.run_action("failover", json!({})).await?;
    Ok(())
}

/// `migrate`: the primary shard moves to a new process on another node.
#[when("the database's shard migrates to another node")]
async fn when_migrate(w: &mut MaintWorld) -> StepResult {
    w.run_action("migrate", json!({})).await?;
    Ok(())
}

/// `bind`: the endpoint moves to another node; waits until the old one closed.
#[when("the database endpoint is rebound to another node")]
async fn when_bind(w: &mut MaintWorld) -> StepResult {
    w.run_action("bind", json!({})).await?;
    Ok(())
}

/// `bind` with every MOVING sent twice, as several proxies may do (emulator only).
#[when("the database endpoint is rebound to another node with MOVING sent twice")]
async fn when_bind_repeated(w: &mut MaintWorld) -> StepResult {
    w.emulator()?;
    w.run_action("bind", json!({"repeat": 2})).await?;
    Ok(())
}

/// Starts a `bind` without waiting for it.
#[when("a rebind of the database endpoint starts")]
async fn when_bind_starts(w: &mut MaintWorld) -> StepResult {
    w.start_action("bind", json!({})).await?;
    Ok(())
}

/// Waits for the last `bind` to end.
#[when("the rebind completes")]
async fn when_bind_completes(w: &mut MaintWorld) -> StepResult {
    w.finish_last("bind", "When a rebind of the database endpoint starts")
        .await?;
    Ok(())
}

/// `migrate` without its MIGRATED (emulator only): a lost completion.
#[when("the database's shard migrates to another node and MIGRATED is lost")]
async fn when_migrate_lost(w: &mut MaintWorld) -> StepResult {
    w.emulator()?;
    w.run_action("migrate", json!({"drop_completion": true}))
        .await?;
    Ok(())
}

/// Starts a `migrate` whose MIGRATING comes `lead` seconds before the switch.
#[when(expr = "a migration of the database's shard starts with a lead of {int} seconds")]
async fn when_migrate_starts(w: &mut MaintWorld, lead: u64) -> StepResult {
    w.start_action("migrate", json!({"lead_s": lead})).await?;
    Ok(())
}

/// Waits for the last `migrate` to end.
#[when("the migration completes")]
async fn when_migrate_completes(w: &mut MaintWorld) -> StepResult {
    w.finish_last(
        "migrate",
        "When a migration of the database's shard starts ...",
    )
    .await?;
    Ok(())
}

/// `network_latency` on every endpoint of the database (emulator only); in
/// force when the step returns.
#[when(expr = "replies of the database are delayed by {int} ms for {int} seconds")]
async fn when_latency(w: &mut MaintWorld, delay_ms: u64, secs: u64) -> StepResult {
    w.emulator()?;
    w.start_action(
        "network_latency",
        json!({"delay_ms": delay_ms, "duration_s": secs}),
    )
    .await?;
    Ok(())
}

/// One push built by the emulator (emulator only); returns when every client
/// of the scenario received it.
#[when(expr = "the emulator sends {kind} with sequence number {int}")]
async fn when_send_push(w: &mut MaintWorld, kind: KindParam, seq: i64) -> StepResult {
    w.emulator()?;
    let n = match kind.0 {
        Kind::Migrating => Notification::Migrating {
            seq,
            time_s: Some(5),
            shards: vec!["1".into()],
        },
        Kind::Migrated => Notification::Migrated {
            seq,
            shards: vec!["1".into()],
        },
        Kind::FailingOver => Notification::FailingOver {
            seq,
            time_s: Some(5),
            shards: vec!["1".into()],
        },
        Kind::FailedOver => Notification::FailedOver {
            seq,
            shards: vec!["1".into()],
        },
        other => fail!("the emulator sends MIGRATING, MIGRATED, FAILING_OVER or FAILED_OVER this way, not {other}"),
    };
    w.send_push(&n, push_elements(&n)).await?;
    Ok(())
}

/// MOVING to a listener that completes TCP handshakes but never answers a byte
/// (emulator only).
#[when("the emulator sends MOVING to an address that accepts connections but never answers")]
async fn when_moving_black_hole(w: &mut MaintWorld) -> StepResult {
    w.emulator()?;
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = hole.local_addr()?;
    w.black_holes.push(hole);
    let n = Notification::Moving {
        seq: 901,
        time_s: 10,
        endpoint: Some(crate::notification::Endpoint::new(
            addr.ip().to_string(),
            addr.port(),
        )),
    };
    w.send_push(&n, push_elements(&n)).await?;
    Ok(())
}

/// MOVING to a TLS listener whose certificate comes from a CA nobody trusts
/// (emulator only).
#[when("the emulator sends MOVING to a TLS address whose certificate comes from another CA")]
async fn when_moving_impostor(w: &mut MaintWorld) -> StepResult {
    w.emulator()?;
    let dir = tempfile::Builder::new()
        .prefix("maint-e2e-impostor-")
        .tempdir()?;
    let names = ["127.0.0.1".to_string(), "localhost".to_string()];
    let material = crate::emulator::tls::TlsMaterial::generate(dir.path(), "another CA", &names)?;
    w.temp_dirs.push(dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = material.acceptor();
    w.tasks.push(tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The client refuses the certificate; nothing more happens.
                let _ = acceptor.accept(s).await;
            });
        }
    }));
    let n = Notification::Moving {
        seq: 903,
        time_s: 10,
        endpoint: Some(crate::notification::Endpoint::new("127.0.0.1", addr.port())),
    };
    w.send_push(&n, push_elements(&n)).await?;
    Ok(())
}

/// The JSON elements of a `send_push` for `n`.
fn push_elements(n: &Notification) -> Value {
    match n {
        Notification::Migrating {
            seq,
            time_s,
            shards,
        }
        | Notification::FailingOver {
            seq,
            time_s,
            shards,
        } => {
            let mut v = vec![json!(n.kind().as_str()), json!(seq), json!(time_s)];
            v.extend(shards.iter().map(|s| json!(s)));
            Value::Array(v)
        }
        Notification::Migrated { seq, shards } | Notification::FailedOver { seq, shards } => {
            let mut v = vec![json!(n.kind().as_str()), json!(seq)];
            v.extend(shards.iter().map(|s| json!(s)));
            Value::Array(v)
        }
        Notification::Moving {
            seq,
            time_s,
            endpoint,
        } => json!([
            "MOVING",
            seq,
            time_s,
            endpoint.as_ref().map(|e| e.to_string())
        ]),
        other => json!([other.kind().as_str(), other.seq()]),
    }
}

impl MaintWorld {
    /// Waits for the last action of `action_type` to end; `hint` says which
    /// step starts one.
    pub async fn finish_last(&mut self, action_type: &str, hint: &str) -> Result<()> {
        let i = self
            .actions
            .iter()
            .rposition(|a| a.action_type == action_type)
            .ok_or_else(|| anyhow!("no {action_type} started; use `{hint}`"))?;
        self.finish_action(i).await
    }

    /// Sends `push` through the emulator and waits until every client of the
    /// scenario received `n`.
    pub async fn send_push(&mut self, n: &Notification, push: Value) -> Result<()> {
        self.run_action("send_push", json!({ "push": push }))
            .await?;
        let names: Vec<String> = self.clients.keys().cloned().collect();
        let tracker = self.tracker.clone();
        for name in names {
            tracker
                .wait_for(self.patience(), &format!("{n} on {name:?}"), |_| {
                    tracker
                        .notifications(&name)
                        .iter()
                        .any(|r| &r.notification == n)
                        .then_some(())
                })
                .await?;
        }
        Ok(())
    }
}
