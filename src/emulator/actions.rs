//! Fault injector actions: validated, run against the emulated cluster, and
//! tracked through pending -> running -> success | failed. What an action is
//! lives in [`super::request`]; how each maintenance happens, in
//! [`super::operations`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::time::Instant;

use super::catalogue;
use super::database::Announcement;
use super::operations::{bind, check_node, failover, migrate, timings, topology_change};
use super::request::sequence_steps;
pub use super::request::{
    normalize_parameters, Action, BdbId, NodeRef, SequenceStep, ShardId, ACTION_TYPES,
};
use super::{Database, Emulator};
use crate::fault_injector::{ActionList, ActionStatus, ActionSummary, Timestamp};
use crate::notification::EndpointType;

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

pub(crate) fn failed(e: impl std::fmt::Display) -> ActionError {
    ActionError::Failed(e.to_string())
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
            let shards = database_config.shard_count()?;
            database_config.shard_args(shards)?;
            database_config
                .timing
                .validate()
                .map_err(ActionError::Invalid)?;
            if let Some(p) = database_config.wanted_port() {
                emu.check_port(p)?;
            }
        }
        Action::UpdateClusterConfig { config } => {
            if let Some(v) = config
                .get("client_maint_notifications")
                .filter(|v| !v.is_boolean())
            {
                return Err(ActionError::Invalid(format!(
                    "client_maint_notifications is true or false, got {v}"
                )));
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
