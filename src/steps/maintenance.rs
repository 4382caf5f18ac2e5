//! Maintenance, through the fault injector: `When the database fails over`.

use anyhow::{anyhow, Result};
use cucumber::when;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{ActionRun, MaintWorld, StepResult};

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
    let i = w
        .actions
        .iter()
        .rposition(|a| a.action_type == "bind")
        .ok_or_else(|| {
            anyhow!("no rebind started; use `When a rebind of the database endpoint starts`")
        })?;
    w.finish_action(i).await?;
    Ok(())
}
