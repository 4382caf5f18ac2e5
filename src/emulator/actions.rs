//! Fault injector actions: parsed from the API, run against the emulated cluster,
//! tracked through pending -> running -> success | failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::catalogue;
use super::database::{Announcement, Node};
use super::shard::wait_caught_up;
use super::{Database, DatabaseSpec, Emulator, Shards, TimingOverrides, Timings};
use crate::fault_injector::{ActionList, ActionStatus, ActionSummary, Timestamp};
use crate::notification::{EndpointType, Notification};

/// Why an action was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// Well-formed but invalid (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// Another action runs on the same database (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// It ran and failed.
    #[error("{0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> ActionError {
    ActionError::Failed(e.to_string())
}

/// A database id as callers send it: a number or a numeric string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BdbId(pub u64);

impl<'de> Deserialize<'de> for BdbId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) if n.as_u64().is_some() => Ok(BdbId(n.as_u64().unwrap())),
            Value::String(s) if s.trim().parse::<u64>().is_ok() => {
                Ok(BdbId(s.trim().parse().unwrap()))
            }
            other => Err(serde::de::Error::custom(format!(
                "bdb_id must be a positive integer or a numeric string, got {other}"
            ))),
        }
    }
}

/// One step of `sequence_of_actions` (note the inner key `params`).
#[derive(Clone, Debug, Deserialize)]
pub struct SequenceStep {
    /// Action type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its parameters (also read from `parameters`); `bdb_id` defaults to
    /// the sequence's.
    #[serde(default, alias = "parameters")]
    pub params: Value,
    /// How long to wait before it: seconds, or a duration such as `"1500ms"`.
    #[serde(default)]
    pub delay: Option<Value>,
}

impl SequenceStep {
    /// The delay before this step, checked.
    pub fn delay(&self) -> Result<Duration, ActionError> {
        let bad = |v: &Value| {
            ActionError::Invalid(format!(
                "delay is a number of seconds between 0 and 3600 or a duration such as \"1500ms\", got {v}"
            ))
        };
        let d = match &self.delay {
            None | Some(Value::Null) => return Ok(Duration::ZERO),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|s| (0.0..=3600.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad(self.delay.as_ref().unwrap()))?,
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(secs) if (0.0..=3600.0).contains(&secs) => Duration::from_secs_f64(secs),
                Ok(_) => return Err(bad(self.delay.as_ref().unwrap())),
                Err(_) => humantime::parse_duration(s.trim())
                    .map_err(|_| bad(self.delay.as_ref().unwrap()))?,
            },
            Some(other) => return Err(bad(other)),
        };
        if d > Duration::from_secs(3600) {
            return Err(bad(self.delay.as_ref().unwrap()));
        }
        Ok(d)
    }
}

/// The steps of a sequence as typed actions with their delays; each step's
/// `bdb_id` defaults to the sequence's.
fn sequence_steps(
    bdb_id: Option<BdbId>,
    steps: &[SequenceStep],
) -> Result<Vec<(Duration, Action)>, ActionError> {
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = |e: ActionError| ActionError::Invalid(format!("step {i}: {e}"));
        let delay = step.delay().map_err(at)?;
        let mut params = if step.params.is_null() {
            json!({})
        } else {
            step.params.clone()
        };
        normalize_parameters(&mut params).map_err(at)?;
        if let (None, Some(id)) = (params.get("bdb_id"), bdb_id) {
            params["bdb_id"] = json!(id.0);
        }
        let inner =
            Action::parse(&json!({"type": step.action_type, "parameters": params})).map_err(at)?;
        if matches!(inner, Action::SequenceOfActions { .. }) {
            return Err(ActionError::Invalid(format!(
                "step {i}: sequences do not nest"
            )));
        }
        out.push((delay, inner));
    }
    if out.is_empty() {
        return Err(ActionError::Invalid(
            "a sequence needs at least one action in \"actions\"".into(),
        ));
    }
    Ok(out)
}

/// Brings parameters into the one shape the actions read: `bdbId` is
/// `bdb_id`, and `cluster_index` (a number or a numeric string; the emulator
/// runs one cluster, index 0) is checked and dropped.
pub fn normalize_parameters(params: &mut Value) -> Result<(), ActionError> {
    let Some(obj) = params.as_object_mut() else {
        return Ok(());
    };
    if let Some(id) = obj.remove("bdbId") {
        obj.entry("bdb_id").or_insert(id);
    }
    if let Some(index) = obj.remove("cluster_index") {
        let n = match &index {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            Value::Null => Some(0),
            _ => None,
        };
        match n {
            Some(0) => {}
            Some(n) => {
                return Err(ActionError::Invalid(format!(
                    "cluster_index {n} does not exist; the emulator runs one cluster, index 0"
                )))
            }
            None => {
                return Err(ActionError::Invalid(format!(
                    "cluster_index is a number or a numeric string, got {index}"
                )))
            }
        }
    }
    Ok(())
}

/// A typed action.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", content = "parameters", rename_all = "snake_case")]
pub enum Action {
    /// Promote the replicas (of every primary shard, or of one).
    Failover {
        /// Database.
        bdb_id: BdbId,
        /// Only this primary shard (default: every one).
        #[serde(default)]
        shard_id: Option<ShardId>,
        /// Emulator fault: never send FAILED_OVER (a lost completion).
        #[serde(default)]
        drop_completion: bool,
        /// Timing of this action.
        #[serde(flatten)]
        timing: TimingOverrides,
    },
    /// Move the primary shards (every one, or one) to new processes on
    /// another node.
    Migrate {
        /// Database.
        bdb_id: BdbId,
        /// Only this primary shard (default: every one).
        #[serde(default)]
        shard_id: Option<ShardId>,
        /// Node to move to.
        #[serde(default)]
        target_node: Option<NodeRef>,
        /// Emulator fault: never send MIGRATED (a lost completion).
        #[serde(default)]
        drop_completion: bool,
        /// Timing of this action.
        #[serde(flatten)]
        timing: TimingOverrides,
    },
    /// Move the endpoint to another node.
    Bind {
        /// Database.
        bdb_id: BdbId,
        /// Force this MOVING address form for every connection.
        #[serde(default)]
        endpoint_type: Option<String>,
        /// Node to move to.
        #[serde(default)]
        target_node: Option<NodeRef>,
        /// Send each MOVING this many times, as several proxies may (default 1).
        #[serde(default)]
        repeat: Option<u32>,
        /// Timing of this action (`grace_s` is the MOVING grace).
        #[serde(flatten)]
        timing: TimingOverrides,
    },
    /// A maintenance described by its effect on a standalone client, as the
    /// trigger catalogue (`GET /topology-change-standalone`) lists them.
    TopologyChangeStandalone {
        /// Database.
        bdb_id: BdbId,
        /// `data_movement_no_conn_drop`, `data_movement_conn_drop`, `conn_drop`
        /// or `dns_resolution_change`.
        effect: String,
        /// A trigger of that effect (default: its first).
        #[serde(default)]
        trigger: Option<String>,
        /// Node the data or the endpoint moves from (informational: it moves
        /// from wherever it is).
        #[serde(default)]
        source_node: Option<NodeRef>,
        /// Node it moves to.
        #[serde(default)]
        target_node: Option<NodeRef>,
        /// Emulator fault: lose the completion of the data movement.
        #[serde(default)]
        skip_end_notification: bool,
        /// Timing of this action.
        #[serde(flatten)]
        timing: TimingOverrides,
    },
    /// Delays every reply of a database's endpoint (on one node, or on all).
    NetworkLatency {
        /// Database.
        bdb_id: BdbId,
        /// Added to every write towards clients, in milliseconds.
        delay_ms: u64,
        /// How long the latency lasts, in seconds.
        duration_s: f64,
        /// Only on this node (default: every node and the public address).
        #[serde(default)]
        node: Option<NodeRef>,
    },
    /// Emulator fault: send one push frame, built from JSON, to every opted-in
    /// connection (strings, integers, null and arrays; the first is its name).
    SendPush {
        /// Database.
        bdb_id: BdbId,
        /// The elements, such as `["MOVING", 7, 15, null]`.
        push: Vec<Value>,
    },
    /// Several actions in order.
    SequenceOfActions {
        /// Database (default: each step's own `bdb_id`).
        #[serde(default)]
        bdb_id: Option<BdbId>,
        /// The steps.
        actions: Vec<SequenceStep>,
    },
    /// Create a database.
    CreateDatabase {
        /// Its configuration.
        database_config: DatabaseSpec,
    },
    /// Delete a database.
    DeleteDatabase {
        /// Database.
        bdb_id: BdbId,
    },
    /// Cluster settings, as a real cluster's `PUT /v1/cluster` takes them:
    /// `client_maint_notifications` turns maintenance notifications on or off.
    UpdateClusterConfig {
        /// The settings.
        config: serde_json::Map<String, Value>,
    },
    /// `rladmin status`.
    ExecuteRladminCommand {
        /// Only `status` is emulated.
        rladmin_command: String,
        /// Database (optional).
        #[serde(default)]
        bdb_id: Option<BdbId>,
    },
}

/// A shard id as callers send it: `3`, `"3"` or `"redis:3"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardId(pub u32);

impl<'de> Deserialize<'de> for ShardId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let n = match &v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().trim_start_matches("redis:").parse::<u64>().ok(),
            _ => None,
        };
        n.and_then(|n| u32::try_from(n).ok())
            .map(ShardId)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "a shard id is a number, \"3\" or \"redis:3\"; got {v}"
                ))
            })
    }
}

/// A node as callers name it: `2`, `"2"` or `"node:2"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRef(pub usize);

impl<'de> Deserialize<'de> for NodeRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let n = match &v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().trim_start_matches("node:").parse::<u64>().ok(),
            _ => None,
        };
        n.map(|n| NodeRef(n as usize)).ok_or_else(|| {
            serde::de::Error::custom(format!("a node is a number, \"2\" or \"node:2\"; got {v}"))
        })
    }
}

/// Action types the emulator runs.
pub const ACTION_TYPES: &[&str] = &[
    "failover",
    "migrate",
    "bind",
    "topology_change_standalone",
    "network_latency",
    "sequence_of_actions",
    "send_push",
    "create_database",
    "delete_database",
    "update_cluster_config",
    "execute_rladmin_command",
];

impl Action {
    /// Parses `{"type", "parameters"}`, with messages that say what to fix.
    pub fn parse(body: &Value) -> Result<Action, ActionError> {
        let Some(obj) = body.as_object() else {
            return Err(ActionError::Invalid(
                "the body must be a JSON object {\"type\": ..., \"parameters\": {...}}".into(),
            ));
        };
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(ActionError::Invalid("\"type\" must be a string".into())),
            None => {
                return Err(ActionError::Invalid(format!(
                    "missing \"type\"; expected one of {}",
                    ACTION_TYPES.join(", ")
                )))
            }
        };
        if !ACTION_TYPES.contains(&ty) {
            return Err(ActionError::Invalid(format!(
                "unknown action type {ty:?}; the emulator runs {}",
                ACTION_TYPES.join(", ")
            )));
        }
        let mut body = body.clone();
        if body.get("parameters").is_none_or(Value::is_null) {
            body["parameters"] = json!({});
        }
        normalize_parameters(&mut body["parameters"])?;
        serde_json::from_value(body)
            .map_err(|e| ActionError::Invalid(format!("bad parameters for {ty}: {e}")))
    }

    /// The wire type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::Failover { .. } => "failover",
            Action::Migrate { .. } => "migrate",
            Action::Bind { .. } => "bind",
            Action::TopologyChangeStandalone { .. } => "topology_change_standalone",
            Action::NetworkLatency { .. } => "network_latency",
            Action::SequenceOfActions { .. } => "sequence_of_actions",
            Action::SendPush { .. } => "send_push",
            Action::CreateDatabase { .. } => "create_database",
            Action::DeleteDatabase { .. } => "delete_database",
            Action::UpdateClusterConfig { .. } => "update_cluster_config",
            Action::ExecuteRladminCommand { .. } => "execute_rladmin_command",
        }
    }

    fn bdb_id(&self) -> Option<u64> {
        match self {
            Action::Failover { bdb_id, .. }
            | Action::Migrate { bdb_id, .. }
            | Action::Bind { bdb_id, .. }
            | Action::TopologyChangeStandalone { bdb_id, .. }
            | Action::NetworkLatency { bdb_id, .. }
            | Action::SendPush { bdb_id, .. }
            | Action::DeleteDatabase { bdb_id } => Some(bdb_id.0),
            Action::SequenceOfActions { bdb_id, actions } => bdb_id.map(|b| b.0).or_else(|| {
                sequence_steps(None, actions)
                    .ok()?
                    .first()
                    .and_then(|(_, a)| a.bdb_id())
            }),
            // `rladmin status` is cluster-wide: any bdb_id, or none, will do.
            Action::ExecuteRladminCommand { .. }
            | Action::CreateDatabase { .. }
            | Action::UpdateClusterConfig { .. } => None,
        }
    }

    /// True for actions that change where a database lives: two of them never
    /// run on one database at once.
    fn exclusive(&self) -> bool {
        !matches!(
            self,
            Action::NetworkLatency { .. } | Action::SendPush { .. }
        )
    }
}

#[derive(Clone)]
struct Record {
    id: String,
    action_type: String,
    status: &'static str,
    error: Option<String>,
    output: Option<Value>,
    submitted_at: Timestamp,
    start_time: Option<Timestamp>,
    end_time: Option<Timestamp>,
}

/// Every action submitted, by id.
#[derive(Default)]
pub struct ActionStore {
    records: Mutex<HashMap<String, Record>>,
    order: Mutex<Vec<String>>,
    next: AtomicU64,
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl ActionStore {
    fn update(&self, id: &str, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.records.lock().unwrap().get_mut(id) {
            f(r);
        }
    }

    /// The status of one action.
    pub fn status(&self, id: &str) -> Option<ActionStatus> {
        self.records.lock().unwrap().get(id).map(|r| ActionStatus {
            action_id: r.id.clone(),
            status: r.status.to_string(),
            error: r.error.clone().map(Value::from),
            output: r.output.clone(),
            start_time: r.start_time.or(Some(r.submitted_at)),
            end_time: r.end_time,
        })
    }

    /// Every action, oldest first.
    pub fn list(&self) -> ActionList {
        let records = self.records.lock().unwrap();
        ActionList {
            actions: self
                .order
                .lock()
                .unwrap()
                .iter()
                .filter_map(|id| records.get(id))
                .map(|r| ActionSummary {
                    job_id: r.id.clone(),
                    action_type: r.action_type.clone(),
                    status: r.status.to_string(),
                    submitted_at: r.submitted_at,
                })
                .collect(),
        }
    }
}

/// Validates and starts `action` in the background; returns its id.
pub fn submit(
    emu: &Arc<Emulator>,
    store: &Arc<ActionStore>,
    action: Action,
) -> Result<String, ActionError> {
    let db = match action.bdb_id() {
        Some(id) => Some(emu.database(id).ok_or_else(|| {
            ActionError::Invalid(format!(
                "no database with bdb_id {id}; existing: {:?}",
                emu.databases()
                    .iter()
                    .map(|d| d.shared.id)
                    .collect::<Vec<_>>()
            ))
        })?),
        None => None,
    };
    match &action {
        // Checked now, so that a caller learns at once (and in the words a
        // real cluster uses) that the port is taken.
        Action::CreateDatabase { database_config } => {
            if let Some(p) = database_config.wanted_port() {
                emu.check_port(p)?;
            }
        }
        Action::SequenceOfActions { bdb_id, actions } => {
            sequence_steps(*bdb_id, actions)?;
        }
        _ => {}
    }
    let db = db.filter(|_| action.exclusive());
    // Latency is in force once the action is accepted: what the caller does
    // next already sees it.
    let latency = match &action {
        Action::NetworkLatency { .. } => Some(start_latency(emu, &action)?),
        _ => None,
    };
    if let Some(db) = &db {
        if !db.try_begin() {
            return Err(ActionError::Conflict(format!(
                "another action is running on database {}; wait for it to finish",
                db.shared.id
            )));
        }
    }
    let n = store.next.fetch_add(1, Ordering::SeqCst) + 1;
    let id = format!("{:08x}-{n:04}", (now_epoch() * 1000.0) as u64 & 0xffff_ffff);
    store.records.lock().unwrap().insert(
        id.clone(),
        Record {
            id: id.clone(),
            action_type: action.type_name().into(),
            status: "pending",
            error: None,
            output: None,
            submitted_at: Timestamp::now(),
            start_time: None,
            end_time: None,
        },
    );
    store.order.lock().unwrap().push(id.clone());
    let (emu, store, task_id) = (emu.clone(), store.clone(), id.clone());
    tokio::spawn(async move {
        store.update(&task_id, |r| {
            r.status = "running";
            r.start_time = Some(Timestamp::now());
        });
        tracing::info!(action = %task_id, kind = action.type_name(), "action running");
        let result = match latency {
            Some((until, out)) => {
                tokio::time::sleep_until(until).await;
                Ok(out)
            }
            None => run(&emu, &action).await,
        };
        if let Some(db) = db {
            db.end();
        }
        store.update(&task_id, |r| {
            r.end_time = Some(Timestamp::now());
            match result {
                Ok(output) => {
                    tracing::info!(action = r.id, kind = r.action_type, "action succeeded");
                    r.status = "success";
                    r.output = Some(output);
                }
                Err(e) => {
                    tracing::warn!(action = r.action_type, "action failed: {e}");
                    r.status = "failed";
                    r.error = Some(e.to_string());
                }
            }
        });
    });
    Ok(id)
}

/// Runs an action to its end.
pub async fn run(emu: &Arc<Emulator>, action: &Action) -> Result<Value, ActionError> {
    let db = |id: &BdbId| -> Result<Arc<Database>, ActionError> {
        emu.database(id.0)
            .ok_or_else(|| ActionError::Invalid(format!("no database with bdb_id {}", id.0)))
    };
    match action {
        Action::Failover {
            bdb_id,
            shard_id,
            drop_completion,
            timing,
        } => {
            let d = db(bdb_id)?;
            let t = timings(&d, timing)?;
            failover(&d, &t, *drop_completion, shard_id.map(|s| s.0)).await
        }
        Action::Migrate {
            bdb_id,
            shard_id,
            target_node,
            drop_completion,
            timing,
        } => {
            let d = db(bdb_id)?;
            let t = timings(&d, timing)?;
            let target = target_node.map(|n| n.0);
            migrate(emu, &d, &t, target, *drop_completion, shard_id.map(|s| s.0))
                .await
                .map(|(out, _)| out)
        }
        Action::TopologyChangeStandalone {
            bdb_id,
            effect,
            trigger,
            target_node,
            skip_end_notification,
            timing,
            ..
        } => {
            let d = db(bdb_id)?;
            let t = timings(&d, timing)?;
            let trigger = catalogue::resolve(effect, trigger.as_deref())?;
            let target = target_node.map(|n| n.0);
            topology_change(emu, &d, &t, trigger, target, *skip_end_notification).await
        }
        Action::NetworkLatency { .. } => {
            let (until, out) = start_latency(emu, action)?;
            tokio::time::sleep_until(until).await;
            Ok(out)
        }
        Action::Bind {
            bdb_id,
            endpoint_type,
            target_node,
            repeat,
            timing,
        } => {
            let repeat = match repeat.unwrap_or(1) {
                r @ 1..=10 => r,
                r => {
                    return Err(ActionError::Invalid(format!(
                        "repeat must be between 1 and 10, got {r}"
                    )))
                }
            };
            let forced = endpoint_type
                .as_deref()
                .map(EndpointType::parse)
                .transpose()
                .map_err(ActionError::Invalid)?;
            let d = db(bdb_id)?;
            let t = timings(&d, timing)?;
            bind(emu, &d, &t, forced, target_node.map(|n| n.0), repeat).await
        }
        Action::SequenceOfActions { bdb_id, actions } => {
            let steps = sequence_steps(*bdb_id, actions)?;
            let mut outputs = Vec::new();
            for (i, (delay, inner)) in steps.iter().enumerate() {
                tokio::time::sleep(*delay).await;
                let out = Box::pin(run(emu, inner))
                    .await
                    .map_err(|e| failed(format!("step {i} ({}): {e}", inner.type_name())))?;
                outputs.push(out);
            }
            Ok(json!({ "steps": outputs }))
        }
        Action::SendPush { bdb_id, push } => {
            let d = db(bdb_id)?;
            let frame = push_frame(push)?;
            d.shared.announce(Announcement::Raw(frame.clone()), None);
            Ok(json!({ "bytes": String::from_utf8_lossy(&frame) }))
        }
        Action::CreateDatabase { database_config } => {
            let d = emu.create_database(database_config.clone()).await?;
            let c = d.config();
            Ok(json!({
                "bdb_id": d.shared.id,
                "name": d.shared.name,
                "port": d.shared.port,
                "shards_count": d.shards.lock().await.sets.len(),
                "endpoints": c.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                "username": c.username,
                "password": c.password,
                "tls": c.tls,
                "raw_endpoints": c.raw_endpoints,
                "ignored": database_config.ignored(),
            }))
        }
        Action::UpdateClusterConfig { config } => {
            let mut applied = serde_json::Map::new();
            let mut ignored = Vec::new();
            for (key, value) in config {
                match (key.as_str(), value) {
                    ("client_maint_notifications", Value::Bool(on)) => {
                        emu.cluster.set_maint_notifications(*on);
                        tracing::info!(
                            "maintenance notifications turned {}",
                            if *on { "on" } else { "off" }
                        );
                        applied.insert(key.clone(), Value::Bool(*on));
                    }
                    ("client_maint_notifications", other) => {
                        return Err(ActionError::Invalid(format!(
                            "client_maint_notifications is true or false, got {other}"
                        )))
                    }
                    _ => ignored.push(key.clone()),
                }
            }
            Ok(json!({ "config": applied, "ignored": ignored }))
        }
        Action::DeleteDatabase { bdb_id } => {
            emu.delete_database(bdb_id.0).await?;
            Ok(json!({ "bdb_id": bdb_id.0, "deleted": true }))
        }
        Action::ExecuteRladminCommand {
            rladmin_command, ..
        } => {
            if rladmin_command.split_whitespace().next() != Some("status") {
                return Err(ActionError::Invalid(format!(
                    "rladmin command {rladmin_command:?} is not emulated; only \"status\" is"
                )));
            }
            Ok(json!({ "output": rladmin_status(emu).await }))
        }
    }
}

async fn rladmin_status(emu: &Emulator) -> String {
    let mut out = String::from("CLUSTER NODES:\nNODE:ID ROLE ADDRESS EXTERNAL_ADDRESS\n");
    for n in emu.nodes() {
        out += &format!(
            "node:{} {} {} {}\n",
            n.index,
            if n.index == 1 { "master" } else { "slave" },
            n.internal_ip(),
            n.external_ip()
        );
    }
    out +=
        "\nDATABASES:\nDB:ID NAME TYPE STATUS SHARDS PLACEMENT REPLICATION PERSISTENCE ENDPOINT\n";
    for d in emu.databases() {
        let s = d.shards.lock().await;
        out += &format!(
            "db:{} {} redis active {} dense {} disabled {}:{}\n",
            d.shared.id,
            d.shared.name,
            s.sets.len(),
            if s.sets.iter().all(|s| s.replica.is_some()) {
                "enabled"
            } else {
                "disabled"
            },
            d.shared.active_node().internal_ip(),
            d.shared.port
        );
    }
    out
}

/// Puts the latency of a `network_latency` action in force; returns when it
/// ends and the action's output.
fn start_latency(emu: &Emulator, action: &Action) -> Result<(Instant, Value), ActionError> {
    let Action::NetworkLatency {
        bdb_id,
        delay_ms,
        duration_s,
        node,
    } = action
    else {
        return Err(ActionError::Invalid("not a network_latency action".into()));
    };
    let d = emu
        .database(bdb_id.0)
        .ok_or_else(|| ActionError::Invalid(format!("no database with bdb_id {}", bdb_id.0)))?;
    if !(0.0..=3600.0).contains(duration_s) || *delay_ms > 600_000 {
        return Err(ActionError::Invalid(format!(
            "duration_s must be between 0 and 3600 and delay_ms at most 600000; got {duration_s} s and {delay_ms} ms"
        )));
    }
    let node = node.map(|n| check_node(emu, n.0)).transpose()?;
    let until = Instant::now() + Duration::from_secs_f64(*duration_s);
    d.shared
        .add_latency(node, Duration::from_millis(*delay_ms), until);
    Ok((
        until,
        json!({ "delay_ms": delay_ms, "duration_s": duration_s, "node": node.map(|n| n.index) }),
    ))
}

/// Holds traffic of `db`, waits for in-flight replies, runs `switch`, then points
/// the proxies' route for shard set `index` at what it returns.
async fn switch_over<F, Fut>(
    t: &Timings,
    db: &Database,
    index: usize,
    switch: F,
) -> Result<(), ActionError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<std::net::SocketAddr, ActionError>>,
{
    let timeout = t.drain_timeout;
    let asked = Instant::now();
    let mut gate = tokio::time::timeout(timeout, db.shared.route.clone().write_owned())
        .await
        .map_err(|_| {
            failed(format!(
                "requests on database {} did not finish within {timeout:?} (a blocking command?); nothing was switched",
                db.shared.id
            ))
        })?;
    let held = Instant::now();
    let upstream = switch().await?;
    gate.upstreams[index] = upstream;
    tracing::debug!(
        bdb_id = db.shared.id,
        shard_set = index,
        drained_in = ?(held - asked),
        switched_in = ?held.elapsed(),
        "traffic switched to {upstream}"
    );
    Ok(())
}

/// Closes the window of `seq` and sends its completion, unless the caller asked
/// for the completion to be lost.
fn finish(db: &Database, seq: i64, completion: Notification, drop_completion: bool) {
    if drop_completion {
        db.shared.close_window(seq);
        tracing::info!(bdb_id = db.shared.id, "dropped {completion} on purpose");
    } else {
        db.shared.complete(seq, completion);
    }
}

/// The database's timings with an action's overrides applied.
fn timings(db: &Database, o: &TimingOverrides) -> Result<Timings, ActionError> {
    o.validate().map_err(ActionError::Invalid)?;
    Ok(db.timings.with(o))
}

fn check_node(emu: &Emulator, n: usize) -> Result<Node, ActionError> {
    let count = emu.config.nodes;
    if n == 0 || n > count {
        return Err(ActionError::Invalid(format!(
            "node {n} does not exist; nodes are 1..={count}"
        )));
    }
    Ok(Node { index: n })
}

/// When a MIGRATING / FAILING_OVER window is expected to end.
fn window_deadline(t: &Timings) -> Instant {
    Instant::now() + t.notice_lead + t.settle + t.window_estimate
}

/// `time_s` of a MIGRATING / FAILING_OVER.
fn window_secs(t: &Timings) -> u64 {
    (t.notice_lead + t.settle + t.window_estimate)
        .as_secs_f64()
        .ceil() as u64
}

/// The shard sets an action works on: the one whose primary is `shard_id`, or
/// every set.
fn selected(
    shards: &Shards,
    shard_id: Option<u32>,
    db: &Database,
) -> Result<Vec<usize>, ActionError> {
    match shard_id {
        None => Ok((0..shards.sets.len()).collect()),
        Some(id) => shards
            .sets
            .iter()
            .position(|s| s.primary.id == id)
            .map(|i| vec![i])
            .ok_or_else(|| {
                ActionError::Invalid(format!(
                    "database {} has no primary shard {id}; its primary shards are {}",
                    db.shared.id,
                    shard_ids(shards, &(0..shards.sets.len()).collect::<Vec<_>>())
                ))
            }),
    }
}

/// The primary shard ids of `sets`, as one element of a notification: `"3"`, or
/// `"3,5"` for several (strict parsers read exactly one element).
fn shard_ids(shards: &Shards, sets: &[usize]) -> String {
    sets.iter()
        .map(|&i| shards.sets[i].primary.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn failover(
    db: &Database,
    t: &Timings,
    drop_completion: bool,
    shard_id: Option<u32>,
) -> Result<Value, ActionError> {
    let mut shards = db.shards.lock().await;
    let sets = selected(&shards, shard_id, db)?;
    if sets.iter().any(|&i| shards.sets[i].replica.is_none()) {
        return Err(ActionError::Invalid(format!(
            "database {} has no replica to fail over to; create it with replication: true",
            db.shared.id
        )));
    }
    let ids = vec![shard_ids(&shards, &sets)];
    let seq = db.shared.take_seq();
    db.shared.announce(
        Announcement::Start {
            notification: Notification::FailingOver {
                seq,
                time_s: Some(window_secs(t)),
                shards: ids.clone(),
            },
            deadline: window_deadline(t),
        },
        None,
    );
    tokio::time::sleep(t.notice_lead).await;
    let mut result = Ok(());
    for &i in &sets {
        let set = &mut shards.sets[i];
        let replica = set.replica.as_ref().expect("checked above");
        let switched = switch_over(t, db, i, || async {
            wait_caught_up(&set.primary, replica, t.sync_timeout)
                .await
                .map_err(failed)?;
            replica.replicate(None).await.map_err(failed)?;
            Ok(replica.addr)
        })
        .await;
        if let Err(e) = switched {
            result = Err(e);
            break;
        }
        let promoted = set.replica.take().expect("checked above");
        let demoted = std::mem::replace(&mut set.primary, promoted);
        if let Err(e) = demoted.replicate(Some(set.primary.addr)).await {
            tracing::warn!("old primary could not become a replica: {e:#}");
        }
        set.replica = Some(demoted);
    }
    if result.is_ok() {
        tokio::time::sleep(t.settle).await;
    }
    finish(
        db,
        seq,
        Notification::FailedOver {
            seq: seq + 1,
            shards: ids,
        },
        drop_completion,
    );
    result?;
    let p = &shards.sets[sets[0]].primary;
    Ok(json!({
        "seq": seq,
        "primary_shard": p.id,
        "primary": p.addr.to_string(),
        "shards": sets.iter().map(|&i| shards.sets[i].primary.id).collect::<Vec<_>>(),
    }))
}

/// Moves primary shards to new processes on other nodes; returns the output
/// and the node the first of them moved to.
async fn migrate(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    target: Option<usize>,
    drop_completion: bool,
    shard_id: Option<u32>,
) -> Result<(Value, Node), ActionError> {
    let mut shards = db.shards.lock().await;
    let sets = selected(&shards, shard_id, db)?;
    let nodes = emu.nodes();
    // Where each set moves: the target, or a node that holds neither its
    // primary nor its replica (any other node when there is none).
    let mut targets = Vec::new();
    for &i in &sets {
        let set = &shards.sets[i];
        let old_node = set.primary.node;
        let replica_node = set.replica.as_ref().map(|r| r.node);
        targets.push(match target {
            Some(n) if n == 0 || n > nodes.len() => {
                return Err(ActionError::Invalid(format!(
                    "target_node {n} does not exist; nodes are 1..={}",
                    nodes.len()
                )))
            }
            Some(n) if n == old_node && nodes.len() > 1 => {
                return Err(ActionError::Invalid(format!(
                    "primary shard {} already lives on node {n}; pick another target_node",
                    set.primary.id
                )))
            }
            Some(n) => Node { index: n },
            None => *nodes
                .iter()
                .find(|n| n.index != old_node && Some(n.index) != replica_node)
                .or_else(|| nodes.iter().find(|n| n.index != old_node))
                .unwrap_or(&nodes[0]),
        });
    }
    let ids = vec![shard_ids(&shards, &sets)];
    let seq = db.shared.take_seq();
    let started = Instant::now();
    db.shared.announce(
        Announcement::Start {
            notification: Notification::Migrating {
                seq,
                time_s: Some(window_secs(t)),
                shards: ids.clone(),
            },
            deadline: window_deadline(t),
        },
        None,
    );
    let result: Result<(), ActionError> = async {
        for (&i, &to) in sets.iter().zip(&targets) {
            let old_addr = shards.sets[i].primary.addr;
            let new = emu
                .start_shard(to, Some(old_addr), db.password.clone(), &db.shard_args)
                .await
                .map_err(failed)?;
            if let Err(e) = new.wait_link_up(t.sync_timeout).await {
                new.stop().await;
                return Err(failed(e));
            }
            tokio::time::sleep_until(started + t.notice_lead).await;
            let new_addr = new.addr;
            let switched = {
                let old = &shards.sets[i].primary;
                switch_over(t, db, i, || async {
                    wait_caught_up(old, &new, t.sync_timeout)
                        .await
                        .map_err(failed)?;
                    new.replicate(None).await.map_err(failed)?;
                    Ok(new_addr)
                })
                .await
            };
            if let Err(e) = switched {
                new.stop().await;
                return Err(e);
            }
            let old = std::mem::replace(&mut shards.sets[i].primary, new);
            old.stop().await;
            if let Some(r) = &shards.sets[i].replica {
                r.replicate(Some(new_addr)).await.map_err(failed)?;
            }
        }
        tokio::time::sleep(t.settle).await;
        Ok(())
    }
    .await;
    finish(
        db,
        seq,
        Notification::Migrated {
            seq: seq + 1,
            shards: ids,
        },
        drop_completion,
    );
    result?;
    let p = &shards.sets[sets[0]].primary;
    Ok((
        json!({
            "seq": seq,
            "primary_shard": p.id,
            "node": p.node,
            "primary": p.addr.to_string(),
            "shards": sets.iter().map(|&i| shards.sets[i].primary.id).collect::<Vec<_>>(),
        }),
        Node { index: p.node },
    ))
}

/// Runs one trigger of the catalogue.
async fn topology_change(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    trigger: &catalogue::Trigger,
    target: Option<usize>,
    skip_end: bool,
) -> Result<Value, ActionError> {
    use catalogue::Steps;
    if let Some(n) = target {
        check_node(emu, n)?;
    }
    let out = match trigger.steps {
        Steps::Migrate => migrate(emu, db, t, target, skip_end, None).await?.0,
        Steps::Failover => failover(db, t, skip_end, None).await?,
        Steps::Bind => bind(emu, db, t, None, target, 1).await?,
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

async fn bind(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    forced: Option<EndpointType>,
    target: Option<usize>,
    repeat: u32,
) -> Result<Value, ActionError> {
    let nodes = emu.nodes();
    let from = db.shared.active_node();
    let to = match target {
        Some(t) if t == 0 || t > nodes.len() => {
            return Err(ActionError::Invalid(format!(
                "target_node {t} does not exist; nodes are 1..={}",
                nodes.len()
            )))
        }
        Some(t) if t == from.index => {
            return Err(ActionError::Invalid(format!(
                "the endpoint already lives on node {t}; pick another target_node"
            )))
        }
        Some(t) => Node { index: t },
        None if nodes.len() == 1 => {
            return Err(ActionError::Invalid(
                "bind needs a second node to move the endpoint to; start the emulator with --nodes 2 or more".into(),
            ))
        }
        None => nodes[from.index % nodes.len()],
    };
    db.listen_on(to).await.map_err(failed)?;
    let grace = t.moving_grace;
    let seq = db.shared.take_seq();
    let deadline = Instant::now() + grace;
    db.shared.set_active_node(to);
    let announcement = Announcement::Moving {
        seq,
        deadline,
        target: to,
    };
    let mut sent = Vec::new();
    for _ in 0..repeat {
        sent.push(match forced {
            // A forced form is rendered once and sent as is.
            Some(ty) => db.shared.announce(
                Announcement::Start {
                    notification: announcement
                        .render(ty, &db.shared.naming, db.shared.port, Instant::now())
                        .expect("a MOVING renders"),
                    deadline,
                },
                Some(from),
            ),
            None => db.shared.announce(announcement.clone(), Some(from)),
        });
    }
    // As real servers do, MOVING is sent again half-way through the grace to
    // the connections that are still on the old node.
    tokio::time::sleep_until(deadline - grace / 2).await;
    if let Some(a) = sent.first() {
        db.shared.deliver(a, Some(from));
    }
    tokio::time::sleep_until(deadline).await;
    db.stop_on(from);
    db.shared.close_window(seq);
    Ok(json!({
        "seq": seq,
        "from_node": from.index,
        "to_node": to.index,
        "endpoint": format!("{}:{}", to.internal_ip(), db.shared.port),
    }))
}

/// Encodes JSON elements as one RESP3 push frame.
fn push_frame(elements: &[Value]) -> Result<bytes::Bytes, ActionError> {
    use redis_protocol::resp3::types::BytesFrame;
    fn element(v: &Value) -> Result<BytesFrame, ActionError> {
        Ok(match v {
            Value::String(s) => BytesFrame::BlobString {
                data: bytes::Bytes::copy_from_slice(s.as_bytes()),
                attributes: None,
            },
            Value::Number(n) if n.is_i64() => BytesFrame::Number {
                data: n.as_i64().unwrap(),
                attributes: None,
            },
            Value::Null => BytesFrame::Null,
            Value::Array(items) => BytesFrame::Array {
                data: items.iter().map(element).collect::<Result<_, _>>()?,
                attributes: None,
            },
            other => {
                return Err(ActionError::Invalid(format!(
                    "push elements are strings, integers, null or arrays; got {other}"
                )))
            }
        })
    }
    if !elements.first().is_some_and(Value::is_string) {
        return Err(ActionError::Invalid(
            "push must start with its name as a string, such as [\"MOVING\", 7, 15, null]".into(),
        ));
    }
    let frame = BytesFrame::Push {
        data: elements.iter().map(element).collect::<Result<_, _>>()?,
        attributes: None,
    };
    let mut buf = bytes::BytesMut::new();
    redis_protocol::resp3::encode::complete::extend_encode(&mut buf, &frame, false)
        .map_err(|e| ActionError::Invalid(format!("cannot encode the push: {e}")))?;
    Ok(buf.freeze())
}
