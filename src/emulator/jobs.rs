//! The job store: every action submitted, checked at once, run in the
//! background and tracked through pending -> running -> success | failed.
//! What an action is lives in [`crate::fault_injector::action`]; how each one
//! runs, in [`super::operations`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::operations::{self, latency};
use super::{ActionError, Emulator};
use crate::fault_injector::{
    sequence_steps, Action, ActionList, ActionState, ActionStatus, ActionSummary, Timestamp,
};

#[derive(Clone)]
struct Job {
    id: String,
    action_type: &'static str,
    state: ActionState,
    error: Option<String>,
    traceback: Option<String>,
    output: Option<Value>,
    submitted_at: Timestamp,
    start_time: Option<Timestamp>,
    end_time: Option<Timestamp>,
}

/// Every action submitted, by id.
#[derive(Default)]
pub struct ActionStore {
    jobs: Mutex<HashMap<String, Job>>,
    order: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl ActionStore {
    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.jobs.lock().unwrap().get_mut(id) {
            f(j);
        }
    }

    /// The status of one action.
    pub fn status(&self, id: &str) -> Option<ActionStatus> {
        self.jobs.lock().unwrap().get(id).map(|j| ActionStatus {
            action_id: j.id.clone(),
            status: j.state,
            error: j.error.clone().map(Value::from),
            output: j.output.clone(),
            traceback: j.traceback.clone(),
            start_time: j.start_time.or(Some(j.submitted_at)),
            end_time: j.end_time,
        })
    }

    /// Every action, oldest first.
    pub fn list(&self) -> ActionList {
        let jobs = self.jobs.lock().unwrap();
        ActionList {
            actions: self
                .order
                .lock()
                .unwrap()
                .iter()
                .filter_map(|id| jobs.get(id))
                .map(|j| ActionSummary {
                    job_id: j.id.clone(),
                    action_type: j.action_type.to_string(),
                    status: j.state,
                    submitted_at: j.submitted_at,
                })
                .collect(),
        }
    }

    fn add(&self, action_type: &'static str) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let millis = Timestamp::now().epoch_seconds() * 1000.0;
        let id = format!("{:08x}-{n:04}", millis as u64 & 0xffff_ffff);
        self.jobs.lock().unwrap().insert(
            id.clone(),
            Job {
                id: id.clone(),
                action_type,
                state: ActionState::Pending,
                error: None,
                traceback: None,
                output: None,
                submitted_at: Timestamp::now(),
                start_time: None,
                end_time: None,
            },
        );
        self.order.lock().unwrap().push(id.clone());
        id
    }

    /// Checks `action` at once, then runs it in the background; returns its id.
    pub fn submit(
        self: &Arc<Self>,
        emu: &Arc<Emulator>,
        action: Action,
    ) -> Result<String, ActionError> {
        let db = action
            .bdb_id()
            .map(|id| emu.existing_database(id))
            .transpose()?;
        check(emu, &action)?;
        if let (Action::DeleteDatabase { .. }, Some(db)) = (&action, &db) {
            let n = db.actions_queued();
            if n > 0 {
                return Err(ActionError::Conflict(db_busy(db.shared.id, n)));
            }
        }
        // Maintenance on one database runs one action at a time, in the order
        // submitted; the place in line is taken now.
        let turn = db.filter(|_| action.exclusive()).map(|db| db.queue());
        // Latency is in force once the action is accepted: what the caller
        // does next already sees it.
        let latency = match &action {
            Action::NetworkLatency { .. } => Some(latency::start(emu, &action)?),
            Action::NetworkFailure { .. } => Some(latency::start_failure(emu, &action)?),
            _ => None,
        };
        let id = self.add(action.type_name());
        let (emu, store, job) = (emu.clone(), self.clone(), id.clone());
        tokio::spawn(async move {
            // Pending until the actions before it on its database finished.
            let turn = match turn {
                Some(t) => Some(t.await),
                None => None,
            };
            store.update(&job, |j| {
                j.state = ActionState::Running;
                j.start_time = Some(Timestamp::now());
            });
            tracing::info!(action = %job, kind = action.type_name(), "action running");
            let result = match latency {
                Some((until, out)) => {
                    tokio::time::sleep_until(until).await;
                    Ok(out)
                }
                None => operations::run(&emu, &action).await,
            };
            drop(turn);
            store.update(&job, |j| {
                j.end_time = Some(Timestamp::now());
                match result {
                    Ok(output) => {
                        tracing::info!(action = j.id, kind = j.action_type, "action succeeded");
                        j.state = ActionState::Success;
                        j.output = Some(output);
                    }
                    Err(e) => {
                        tracing::warn!(action = j.action_type, "action failed: {e}");
                        j.state = ActionState::Failed;
                        j.error = Some(e.to_string());
                        j.traceback =
                            Some(e.traceback(&format!("action {} ({})", j.id, j.action_type)));
                    }
                }
            });
        });
        Ok(id)
    }
}

/// What can be checked before an action runs, so that a caller learns at once
/// (and, for a taken port, in the words a real cluster uses).
fn check(emu: &Emulator, action: &Action) -> Result<(), ActionError> {
    match action {
        Action::CreateDatabase { database_config } => {
            let shards = database_config.shard_count()?;
            database_config.shard_args(shards)?;
            database_config.tls_policy()?;
            database_config.dense()?;
            database_config.timing.validate()?;
            if let Some(p) = database_config.wanted_port() {
                emu.check_port(p)?;
            }
        }
        Action::UpdateClusterConfig { config } => operations::cluster::check(config)?,
        Action::SequenceOfActions { bdb_id, actions } => {
            sequence_steps(*bdb_id, actions)?;
        }
        _ => {}
    }
    Ok(())
}

/// What a real cluster answers a request on a database that is busy with an
/// action (clients' suites retry when the text holds `"error_code":"db_busy"`).
pub(super) fn db_busy(bdb_id: u64, queued: usize) -> String {
    serde_json::json!({
        "error_code": "db_busy",
        "description": format!(
            "database {bdb_id} has {queued} action(s) queued or running; delete it once they finish"
        ),
    })
    .to_string()
}
