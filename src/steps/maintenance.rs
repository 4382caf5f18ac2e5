//! Maintenance, through the fault injector: `When the database fails over`.

use anyhow::{anyhow, Result};
use cucumber::when;
use serde_json::Value;
use tokio::time::Instant;

use super::params::{DurationParam, KindParam};
use super::{ActionRun, MaintWorld, StepResult};
use crate::fault_injector::{Action, BdbId, TimingOverrides};
use crate::notification::{Kind, Notification};
use crate::timeline;

impl MaintWorld {
    /// Posts the action `make` builds for the database under test; returns
    /// its index in `actions`.
    pub async fn start_action(&mut self, make: impl FnOnce(u64) -> Action) -> Result<usize> {
        let env = self.env()?;
        let action = make(env.bdb_id);
        let started = Instant::now();
        let id = env.fault_injector.submit(&action).await?.action_id;
        self.actions.push(ActionRun {
            action_type: action.type_name(),
            id,
            started,
            ended: None,
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
        self.actions[index].ended = Some(Instant::now());
        if !status.status.is_success() {
            fail!(
                "{} action {} ended {}: {}",
                run.action_type,
                run.id,
                status.status,
                status.error_text()
            );
        }
        Ok(())
    }

    /// Runs the action `make` builds for the database under test to its end.
    pub async fn run_action(&mut self, make: impl FnOnce(u64) -> Action) -> Result<()> {
        let i = self.start_action(make).await?;
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
    w.run_action(Action::failover).await?;
    Ok(())
}

/// `migrate`: the primary shard moves to a new process on another node.
#[when("the database's shard migrates to another node")]
async fn when_migrate(w: &mut MaintWorld) -> StepResult {
    w.run_action(Action::migrate).await?;
    Ok(())
}

/// `migrate` whose switch-over holds requests for `hold` (on the emulator;
/// a real cluster holds them for as long as its switch-over takes).
#[when(expr = "the database's shard migrates to another node, holding requests for {duration}")]
async fn when_migrate_holding(w: &mut MaintWorld, hold: DurationParam) -> StepResult {
    let timing = TimingOverrides {
        hold_s: Some(hold.bounded("the hold")?.as_secs_f64()),
        ..TimingOverrides::default()
    };
    if !w.on_emulator() {
        tracing::info!("a real cluster holds requests for as long as its switch-over takes");
    }
    w.run_action(|bdb| Action::migrate(bdb).with_timing(timing))
        .await?;
    Ok(())
}

/// `bind`: the endpoint moves to another node; waits until the old one closed.
#[when("the database endpoint is rebound to another node")]
async fn when_bind(w: &mut MaintWorld) -> StepResult {
    w.run_action(Action::bind).await?;
    Ok(())
}

/// `rladmin tune cluster endpoint_rebind_propagation_grace_time`: the grace
/// of every later rebind (emulator: its settings are reset at teardown).
#[when(expr = "rladmin tunes the cluster's endpoint rebind grace to {duration}")]
async fn when_tune_grace(w: &mut MaintWorld, grace: DurationParam) -> StepResult {
    if !w.emulator_target().await? {
        fail!("tuning the rebind grace is for the emulator here: a real cluster's setting outlives the scenario, and nothing here restores it");
    }
    let secs = grace.bounded("the grace")?.as_secs_f64();
    w.injector.grace_tuned = true;
    w.run_action(|_| Action::ExecuteRladminCommand {
        rladmin_command: format!("tune cluster endpoint_rebind_propagation_grace_time {secs}"),
        bdb_id: None,
    })
    .await?;
    Ok(())
}

/// `bind` whose MOVING announces `grace` (on the emulator; a real cluster
/// announces its own): a rebind of many connections on a small machine.
#[when(expr = "the database endpoint is rebound to another node with a grace of {duration}")]
async fn when_bind_grace(w: &mut MaintWorld, grace: DurationParam) -> StepResult {
    let timing = TimingOverrides {
        grace_s: Some(grace.bounded("the grace")?.as_secs_f64()),
        ..TimingOverrides::default()
    };
    if !w.on_emulator() {
        tracing::info!("a real cluster announces its own grace");
    }
    w.run_action(|bdb| Action::bind(bdb).with_timing(timing))
        .await?;
    Ok(())
}

/// `bind` with every MOVING sent twice, as several proxies may do (emulator only).
#[when("the database endpoint is rebound to another node with MOVING sent twice")]
async fn when_bind_repeated(w: &mut MaintWorld) -> StepResult {
    w.emulator()?;
    w.run_action(|bdb| Action::bind(bdb).repeating_moving(2))
        .await?;
    Ok(())
}

/// Starts a `bind` without waiting for it.
#[when("a rebind of the database endpoint starts")]
async fn when_bind_starts(w: &mut MaintWorld) -> StepResult {
    w.start_action(Action::bind).await?;
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
    w.run_action(|bdb| Action::migrate(bdb).dropping_completion())
        .await?;
    Ok(())
}

/// Starts a `migrate` whose MIGRATING comes `lead` before the switch.
#[when(expr = "a migration of the database's shard starts with a lead of {duration}")]
async fn when_migrate_starts(w: &mut MaintWorld, lead: DurationParam) -> StepResult {
    let lead = lead.bounded("the lead")?.as_secs_f64();
    let timing = TimingOverrides {
        lead_s: Some(lead),
        ..TimingOverrides::default()
    };
    w.start_action(|bdb| Action::migrate(bdb).with_timing(timing))
        .await?;
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
#[when(expr = "replies of the database are delayed by {duration} for {duration}")]
async fn when_latency(
    w: &mut MaintWorld,
    delay: DurationParam,
    lasting: DurationParam,
) -> StepResult {
    w.emulator()?;
    let delay_ms = delay.bounded("the delay")?.as_millis() as u64;
    let secs = lasting.bounded("how long it lasts")?.as_secs_f64();
    w.start_action(|bdb| Action::NetworkLatency {
        bdb_id: BdbId(bdb),
        delay_ms,
        duration_s: secs,
        node: None,
    })
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
    w.send_push(&n).await?;
    Ok(())
}

/// MOVING to a listener that completes TCP handshakes but never answers a byte
/// (emulator only).
#[when("the emulator sends MOVING to an address that accepts connections but never answers")]
async fn when_moving_black_hole(w: &mut MaintWorld) -> StepResult {
    w.emulator()?;
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = hole.local_addr()?;
    w.resources.black_holes.push(hole);
    let n = Notification::Moving {
        seq: 901,
        time_s: 10,
        endpoint: Some(crate::notification::Endpoint::new(
            addr.ip().to_string(),
            addr.port(),
        )),
    };
    w.send_push(&n).await?;
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
    let material = crate::emulator::TlsMaterial::generate(dir.path(), "another CA", &names)?;
    w.resources.temp_dirs.push(dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = material.acceptor(crate::emulator::TlsPolicy::default())?;
    w.resources.tasks.push(tokio::spawn(async move {
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
    w.send_push(&n).await?;
    Ok(())
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

    /// Sends `n` through the emulator and waits until every client of the
    /// scenario received it.
    pub async fn send_push(&mut self, n: &Notification) -> Result<()> {
        self.send_push_to(n, None).await
    }

    /// Sends `n` through the emulator to the connections on `node` (every
    /// node's, when `None`) and waits until every client of the scenario
    /// received it.
    pub async fn send_push_to(&mut self, n: &Notification, node: Option<usize>) -> Result<()> {
        let Value::Array(push) = n.to_json() else {
            fail!("{n} does not make a push");
        };
        self.run_action(|bdb| Action::SendPush {
            bdb_id: BdbId(bdb),
            push,
            node_id: node.map(crate::fault_injector::NodeRef),
        })
        .await?;
        let names: Vec<String> = self.clients.keys().cloned().collect();
        for name in names {
            self.tracker
                .wait_on(&name, self.patience(), &format!("{n}"), |events| {
                    timeline::notifications(events)
                        .iter()
                        .any(|r| &r.notification == n)
                        .then_some(())
                })
                .await?;
        }
        Ok(())
    }
}
