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
use super::database::{Announcement, Node, Route};
use super::shard::wait_caught_up;
use super::{Database, DatabaseSpec, Emulator, TimingOverrides, Timings};
use crate::fault_injector::{ActionList, ActionStatus, ActionSummary};
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
    /// Its parameters; `bdb_id` defaults to the sequence's.
    #[serde(default)]
    pub params: Value,
    /// Seconds to wait before it.
    #[serde(default)]
    pub delay: Option<f64>,
}

/// A typed action.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", content = "parameters", rename_all = "snake_case")]
pub enum Action {
    /// Promote the replica.
    Failover {
        /// Database.
        bdb_id: BdbId,
        /// Emulator fault: never send FAILED_OVER (a lost completion).
        #[serde(default)]
        drop_completion: bool,
        /// Timing of this action.
        #[serde(flatten)]
        timing: TimingOverrides,
    },
    /// Move the primary shard to a new process on another node.
    Migrate {
        /// Database.
        bdb_id: BdbId,
        /// Node to move to.
        #[serde(default)]
        target_node: Option<usize>,
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
        target_node: Option<usize>,
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
        /// Database.
        bdb_id: BdbId,
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
    /// `rladmin status`.
    ExecuteRladminCommand {
        /// Only `status` is emulated.
        rladmin_command: String,
        /// Database (optional).
        #[serde(default)]
        bdb_id: Option<BdbId>,
    },
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
            | Action::SequenceOfActions { bdb_id, .. }
            | Action::SendPush { bdb_id, .. }
            | Action::DeleteDatabase { bdb_id } => Some(bdb_id.0),
            // `rladmin status` is cluster-wide: any bdb_id, or none, will do.
            Action::ExecuteRladminCommand { .. } | Action::CreateDatabase { .. } => None,
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
    submitted_at: f64,
    start_time: Option<f64>,
    end_time: Option<f64>,
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
            submitted_at: now_epoch(),
            start_time: None,
            end_time: None,
        },
    );
    store.order.lock().unwrap().push(id.clone());
    let (emu, store, task_id) = (emu.clone(), store.clone(), id.clone());
    tokio::spawn(async move {
        store.update(&task_id, |r| {
            r.status = "running";
            r.start_time = Some(now_epoch());
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
            r.end_time = Some(now_epoch());
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
            drop_completion,
            timing,
        } => {
            let d = db(bdb_id)?;
            let t = timings(&d, timing)?;
            failover(&d, &t, *drop_completion).await
        }
        Action::Migrate {
            bdb_id,
            target_node,
            drop_completion,
            timing,
        } => {
            let d = db(bdb_id)?;
            let t = timings(&d, timing)?;
            migrate(emu, &d, &t, *target_node, *drop_completion)
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
            bind(emu, &d, &t, forced, *target_node, repeat).await
        }
        Action::SequenceOfActions { bdb_id, actions } => {
            let mut outputs = Vec::new();
            for (i, step) in actions.iter().enumerate() {
                if let Some(d) = step.delay.filter(|d| *d > 0.0) {
                    tokio::time::sleep(Duration::from_secs_f64(d.min(3600.0))).await;
                }
                let mut params = if step.params.is_null() {
                    json!({})
                } else {
                    step.params.clone()
                };
                if params.get("bdb_id").is_none() {
                    params["bdb_id"] = json!(bdb_id.0);
                }
                let inner = Action::parse(&json!({"type": step.action_type, "parameters": params}))
                    .map_err(|e| ActionError::Invalid(format!("step {i}: {e}")))?;
                if matches!(inner, Action::SequenceOfActions { .. }) {
                    return Err(ActionError::Invalid(format!(
                        "step {i}: sequences do not nest"
                    )));
                }
                let out = Box::pin(run(emu, &inner))
                    .await
                    .map_err(|e| failed(format!("step {i} ({}): {e}", step.action_type)))?;
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
                "endpoints": c.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                "username": c.username,
                "password": c.password,
                "tls": c.tls,
                "raw_endpoints": c.raw_endpoints,
            }))
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
            "db:{} {} redis active 1 dense {} disabled {}:{}\n",
            d.shared.id,
            d.shared.name,
            if s.replica.is_some() {
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
/// the proxies at what it returns.
async fn switch_over<F, Fut>(t: &Timings, db: &Database, switch: F) -> Result<(), ActionError>
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
    *gate = Route { upstream };
    tracing::debug!(
        bdb_id = db.shared.id,
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

fn window_deadline(t: &Timings) -> Instant {
    Instant::now() + t.notice_lead + t.window_estimate
}

fn window_secs(t: &Timings) -> u64 {
    (t.notice_lead + t.window_estimate).as_secs_f64().ceil() as u64
}

async fn failover(db: &Database, t: &Timings, drop_completion: bool) -> Result<Value, ActionError> {
    let mut shards = db.shards.lock().await;
    if shards.replica.is_none() {
        return Err(ActionError::Invalid(format!(
            "database {} has no replica to fail over to; create it with replication: true",
            db.shared.id
        )));
    }
    let old_id = shards.primary.as_ref().map(|p| p.id).unwrap_or(0);
    let ids = vec![old_id.to_string()];
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
    let result = {
        let sh = &mut *shards;
        let (primary, replica) = (sh.primary.as_ref().unwrap(), sh.replica.as_ref().unwrap());
        switch_over(t, db, || async {
            wait_caught_up(primary, replica, t.sync_timeout)
                .await
                .map_err(failed)?;
            replica.replicate(None).await.map_err(failed)?;
            Ok(replica.addr)
        })
        .await
    };
    if result.is_ok() {
        let sh = &mut *shards;
        std::mem::swap(&mut sh.primary, &mut sh.replica);
        let (p, r) = (sh.primary.as_ref().unwrap(), sh.replica.as_ref().unwrap());
        if let Err(e) = r.replicate(Some(p.addr)).await {
            tracing::warn!("old primary could not become a replica: {e:#}");
        }
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
    let p = shards.primary.as_ref().unwrap();
    Ok(json!({ "seq": seq, "primary_shard": p.id, "primary": p.addr.to_string() }))
}

/// Moves the primary shard; returns the output and the node it moved to.
async fn migrate(
    emu: &Emulator,
    db: &Database,
    t: &Timings,
    target: Option<usize>,
    drop_completion: bool,
) -> Result<(Value, Node), ActionError> {
    let mut shards = db.shards.lock().await;
    let (old_id, old_node, old_addr) = {
        let p = shards
            .primary
            .as_ref()
            .ok_or_else(|| failed("database has no primary"))?;
        (p.id, p.node, p.addr)
    };
    let replica_node = shards.replica.as_ref().map(|r| r.node);
    let nodes = emu.nodes();
    let target = match target {
        Some(t) if t == 0 || t > nodes.len() => {
            return Err(ActionError::Invalid(format!(
                "target_node {t} does not exist; nodes are 1..={}",
                nodes.len()
            )))
        }
        Some(t) if t == old_node && nodes.len() > 1 => {
            return Err(ActionError::Invalid(format!(
                "the primary shard already lives on node {t}; pick another target_node"
            )))
        }
        Some(t) => Node { index: t },
        None => *nodes
            .iter()
            .find(|n| n.index != old_node && Some(n.index) != replica_node)
            .or_else(|| nodes.iter().find(|n| n.index != old_node))
            .unwrap_or(&nodes[0]),
    };
    let ids = vec![old_id.to_string()];
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
        let new = emu
            .start_shard(target, Some(old_addr), db.password.clone())
            .await
            .map_err(failed)?;
        if let Err(e) = new.wait_link_up(t.sync_timeout).await {
            new.stop().await;
            return Err(failed(e));
        }
        tokio::time::sleep_until(started + t.notice_lead).await;
        let new_addr = new.addr;
        let switched = {
            let old = shards.primary.as_ref().unwrap();
            switch_over(t, db, || async {
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
        let old = shards.primary.replace(new).unwrap();
        old.stop().await;
        if let Some(r) = &shards.replica {
            r.replicate(Some(new_addr)).await.map_err(failed)?;
        }
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
    let p = shards.primary.as_ref().unwrap();
    Ok((
        json!({ "seq": seq, "primary_shard": p.id, "node": p.node, "primary": p.addr.to_string() }),
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
        Steps::Migrate => migrate(emu, db, t, target, skip_end).await?.0,
        Steps::Failover => failover(db, t, skip_end).await?,
        Steps::Bind => bind(emu, db, t, None, target, 1).await?,
        Steps::MigrateThenBind => {
            // Data and endpoint move together: prefer a node that holds
            // neither the endpoint nor a shard of this database.
            let target = match target {
                Some(t) => Some(t),
                None => {
                    let s = db.shards.lock().await;
                    let primary = s.primary.as_ref().map(|p| p.node);
                    let replica = s.replica.as_ref().map(|r| r.node);
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
            let (migrated, node) = migrate(emu, db, t, target, skip_end).await?;
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
                        .render(ty, db.shared.port, Instant::now())
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
