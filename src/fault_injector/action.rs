//! What callers post to `POST /action`: the typed actions. They serialize
//! as every caller sends them and are read liberally (ids as numbers or
//! numeric strings, `bdbId`, `cluster_index` anywhere, sequence steps in
//! either key, delays as seconds or durations), with messages that say what
//! to fix.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::params::{
    BdbId, DatabaseSpec, NodeMethod, NodeRef, ProxyCommand, ShardId, TimingOverrides,
};
pub use super::sequence::SequenceStep;
use super::BadRequest;

/// The steps of a sequence as typed actions with their delays; each step's
/// `bdb_id` defaults to the sequence's.
pub fn sequence_steps(
    bdb_id: Option<BdbId>,
    steps: &[SequenceStep],
) -> Result<Vec<(Duration, Action)>, BadRequest> {
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = |e: BadRequest| BadRequest(format!("step {i}: {e}"));
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
            return Err(BadRequest(format!("step {i}: sequences do not nest")));
        }
        out.push((delay, inner));
    }
    if out.is_empty() {
        return Err(BadRequest(
            "a sequence needs at least one action in \"actions\"".into(),
        ));
    }
    Ok(out)
}

/// Brings parameters into the one shape the actions read: `bdbId` is
/// `bdb_id`, and `cluster_index` (a number or a numeric string; the emulator
/// runs one cluster, index 0) is checked and dropped.
pub fn normalize_parameters(params: &mut Value) -> Result<(), BadRequest> {
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
                return Err(BadRequest(format!(
                    "cluster_index {n} does not exist; the emulator runs one cluster, index 0"
                )))
            }
            None => {
                return Err(BadRequest(format!(
                    "cluster_index is a number or a numeric string, got {index}"
                )))
            }
        }
    }
    Ok(())
}

/// A typed action.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", content = "parameters", rename_all = "snake_case")]
pub enum Action {
    /// Promote the replicas (of every primary shard, or of one).
    Failover {
        /// Database.
        bdb_id: BdbId,
        /// Only this primary shard (default: every one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard_id: Option<ShardId>,
        /// Emulator fault: never send FAILED_OVER (a lost completion).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard_id: Option<ShardId>,
        /// Node to move to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_node: Option<NodeRef>,
        /// Emulator fault: never send MIGRATED (a lost completion).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint_type: Option<String>,
        /// Node to move to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_node: Option<NodeRef>,
        /// Send each MOVING this many times, as several proxies may (default
        /// 1); 0 sends none: the endpoint moves unannounced and the old node
        /// closes its connections when the grace ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        repeat: Option<u32>,
        /// Timing of this action (`grace_s` is the MOVING grace).
        #[serde(flatten)]
        timing: TimingOverrides,
    },
    /// Hash slots of an OSS Cluster API database move between nodes, as the
    /// trigger catalogue (`GET /slot-migrate`) lists them: SMIGRATING, the
    /// slots move for real, SMIGRATED.
    SlotMigrate {
        /// Database (an OSS Cluster API one).
        bdb_id: BdbId,
        /// `slot-shuffle`, `add`, `remove` or `remove-add`.
        effect: String,
        /// `migrate` or `failover` (older callers send `variant`).
        #[serde(default, alias = "variant", skip_serializing_if = "Option::is_none")]
        trigger: Option<String>,
        /// Node slots leave (default: the emulator picks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_node: Option<NodeRef>,
        /// Node slots go to (default: the emulator picks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_node: Option<NodeRef>,
        /// Timing of this action.
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<String>,
        /// Node the data or the endpoint moves from (informational: it moves
        /// from wherever it is).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_node: Option<NodeRef>,
        /// Node it moves to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_node: Option<NodeRef>,
        /// Emulator fault: lose the completion of the data movement.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeRef>,
    },
    /// The endpoint's proxy restarts: every connection it serves (on the
    /// endpoint's node, or on `node`) is dropped at once, without notice.
    DmcRestart {
        /// Database.
        bdb_id: BdbId,
        /// Only on this node (default: the node that holds the endpoint).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeRef>,
    },
    /// A primary shard's process dies (SIGKILL); the cluster promotes its
    /// replica and builds a new one, as Enterprise's watchdog does. Nobody is
    /// told before.
    ShardFailure {
        /// Database.
        bdb_id: BdbId,
        /// The primary shard that dies (default: the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard_id: Option<ShardId>,
    },
    /// The endpoint is cut off the network for a while: nothing reaches its
    /// clients until the failure ends (then everything held does); the
    /// action ends once the network is back.
    NetworkFailure {
        /// Database.
        bdb_id: BdbId,
        /// How long the failure lasts, in seconds (the newest suites send it
        /// as `delay`).
        #[serde(alias = "delay")]
        duration_s: f64,
        /// Only on this node (default: every node and the public address).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<NodeRef>,
    },
    /// A node fails: every shard and proxy on it goes down (`stop`), comes
    /// back (`start`), or both (`reboot`, the default).
    NodeFailure {
        /// The node.
        node_id: NodeRef,
        /// `reboot`, `stop` or `start`.
        #[serde(default)]
        method: NodeMethod,
        /// Accepted as callers send it; the emulator's node stops at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shutdown_timeout: Option<f64>,
        /// Accepted as callers send it; the emulator's node starts at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        startup_timeout: Option<f64>,
    },
    /// A proxy fails: on `node_id`, or on the node that holds `bdb_id`'s
    /// endpoint; for that database alone, or (with `node_id` alone) for
    /// every database it serves.
    ProxyFailure {
        /// Database (default: every database the node's proxy serves).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bdb_id: Option<BdbId>,
        /// The node (default: the one that holds the database's endpoint).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<NodeRef>,
        /// `stop`, `start` or `restart`.
        action: ProxyCommand,
    },
    /// Emulator fault: send one push frame, built from JSON, to every opted-in
    /// connection (strings, integers, null and arrays; the first is its name).
    SendPush {
        /// Database.
        bdb_id: BdbId,
        /// The elements, such as `["MOVING", 7, 15, null]`.
        push: Vec<Value>,
        /// Only to the connections on this node (default: every node's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<NodeRef>,
    },
    /// Several actions in order.
    SequenceOfActions {
        /// Database (default: each step's own `bdb_id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bdb_id: Option<BdbId>,
        /// The steps.
        actions: Vec<SequenceStep>,
    },
    /// Create a database.
    CreateDatabase {
        /// Its configuration.
        database_config: DatabaseSpec,
    },
    /// Delete a database, or (`delete_all`) every database of the cluster, as
    /// the newest suites clean up before they start.
    DeleteDatabase {
        /// Database (absent with `delete_all`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bdb_id: Option<BdbId>,
        /// Every database of the cluster.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delete_all: Option<bool>,
        /// The cluster (the emulator has one: 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster_index: Option<u64>,
    },
    /// Cluster settings, as a real cluster's `PUT /v1/cluster` takes them:
    /// `client_maint_notifications` turns maintenance notifications on or off.
    UpdateClusterConfig {
        /// The settings.
        config: serde_json::Map<String, Value>,
    },
    /// Brings the cluster back to where suites start from: every database
    /// deleted (`clean_all_dbs`), no node left in maintenance mode
    /// (`clean_maintenance_mode`), cluster settings back to their defaults.
    ResetCluster {
        /// Delete every database.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clean_all_dbs: Option<bool>,
        /// Take every node out of maintenance mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clean_maintenance_mode: Option<bool>,
        /// The cluster (the emulator has one: 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster_index: Option<u64>,
    },
    /// An `rladmin` command (see the emulator's `rladmin` module for those it runs).
    ExecuteRladminCommand {
        /// The command line, without `rladmin`.
        rladmin_command: String,
        /// Database (optional).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bdb_id: Option<BdbId>,
    },
}

/// Action types of the contract.
pub const ACTION_TYPES: &[&str] = &[
    "failover",
    "migrate",
    "bind",
    "topology_change_standalone",
    "slot_migrate",
    "network_latency",
    "network_failure",
    "dmc_restart",
    "shard_failure",
    "node_failure",
    "proxy_failure",
    "sequence_of_actions",
    "send_push",
    "create_database",
    "delete_database",
    "update_cluster_config",
    "execute_rladmin_command",
    "reset_cluster",
];

impl Action {
    /// A failover of every primary shard of database `bdb`.
    pub fn failover(bdb: u64) -> Action {
        Action::Failover {
            bdb_id: BdbId(bdb),
            shard_id: None,
            drop_completion: false,
            timing: TimingOverrides::default(),
        }
    }

    /// A migration of every primary shard of database `bdb` to another node.
    pub fn migrate(bdb: u64) -> Action {
        Action::Migrate {
            bdb_id: BdbId(bdb),
            shard_id: None,
            target_node: None,
            drop_completion: false,
            timing: TimingOverrides::default(),
        }
    }

    /// A rebind of the endpoint of database `bdb` to the next node.
    pub fn bind(bdb: u64) -> Action {
        Action::Bind {
            bdb_id: BdbId(bdb),
            endpoint_type: None,
            target_node: None,
            repeat: None,
            timing: TimingOverrides::default(),
        }
    }

    /// This action with `timing` over its database's (for the maintenance
    /// actions; others have none).
    pub fn with_timing(mut self, t: TimingOverrides) -> Action {
        match &mut self {
            Action::Failover { timing, .. }
            | Action::Migrate { timing, .. }
            | Action::Bind { timing, .. }
            | Action::TopologyChangeStandalone { timing, .. }
            | Action::SlotMigrate { timing, .. } => *timing = t,
            _ => {}
        }
        self
    }

    /// This action with its completion lost on purpose (an emulator fault;
    /// for failover and migrate).
    pub fn dropping_completion(mut self) -> Action {
        if let Action::Failover {
            drop_completion, ..
        }
        | Action::Migrate {
            drop_completion, ..
        } = &mut self
        {
            *drop_completion = true;
        }
        self
    }

    /// This bind with every MOVING sent `n` times, as several proxies may.
    pub fn repeating_moving(mut self, n: u32) -> Action {
        if let Action::Bind { repeat, .. } = &mut self {
            *repeat = Some(n);
        }
        self
    }

    /// `delete_database` of database `id`.
    pub fn delete_database(id: u64) -> Action {
        Action::DeleteDatabase {
            bdb_id: Some(BdbId(id)),
            delete_all: None,
            cluster_index: None,
        }
    }

    /// Parses `{"type", "parameters"}`, with messages that say what to fix.
    pub fn parse(body: &Value) -> Result<Action, BadRequest> {
        let Some(obj) = body.as_object() else {
            return Err(BadRequest(
                "the body must be a JSON object {\"type\": ..., \"parameters\": {...}}".into(),
            ));
        };
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(BadRequest("\"type\" must be a string".into())),
            None => {
                return Err(BadRequest(format!(
                    "missing \"type\"; expected one of {}",
                    ACTION_TYPES.join(", ")
                )))
            }
        };
        if !ACTION_TYPES.contains(&ty) {
            return Err(BadRequest(format!(
                "unknown action type {ty:?}; the emulator runs {}",
                ACTION_TYPES.join(", ")
            )));
        }
        let mut body = body.clone();
        if body.get("parameters").is_none_or(Value::is_null) {
            body["parameters"] = json!({});
        }
        normalize_parameters(&mut body["parameters"])?;
        let action: Action = serde_json::from_value(body)
            .map_err(|e| BadRequest(format!("bad parameters for {ty}: {e}")))?;
        if let Action::DeleteDatabase {
            bdb_id, delete_all, ..
        } = &action
        {
            match (bdb_id, delete_all.unwrap_or(false)) {
                (None, false) => {
                    return Err(BadRequest(
                        "delete_database needs bdb_id, or \"delete_all\": true for every database"
                            .into(),
                    ))
                }
                (Some(_), true) => {
                    return Err(BadRequest(
                        "delete_database takes bdb_id or \"delete_all\": true, not both".into(),
                    ))
                }
                _ => {}
            }
        }
        if let Action::ProxyFailure {
            bdb_id: None,
            node_id: None,
            ..
        } = &action
        {
            return Err(BadRequest(
                "proxy_failure needs bdb_id (the proxy that holds its endpoint) or node_id (every database that node's proxy serves)".into(),
            ));
        }
        Ok(action)
    }

    /// The wire type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::Failover { .. } => "failover",
            Action::Migrate { .. } => "migrate",
            Action::Bind { .. } => "bind",
            Action::TopologyChangeStandalone { .. } => "topology_change_standalone",
            Action::SlotMigrate { .. } => "slot_migrate",
            Action::NetworkLatency { .. } => "network_latency",
            Action::NetworkFailure { .. } => "network_failure",
            Action::DmcRestart { .. } => "dmc_restart",
            Action::ShardFailure { .. } => "shard_failure",
            Action::NodeFailure { .. } => "node_failure",
            Action::ProxyFailure { .. } => "proxy_failure",
            Action::SequenceOfActions { .. } => "sequence_of_actions",
            Action::SendPush { .. } => "send_push",
            Action::CreateDatabase { .. } => "create_database",
            Action::DeleteDatabase { .. } => "delete_database",
            Action::UpdateClusterConfig { .. } => "update_cluster_config",
            Action::ExecuteRladminCommand { .. } => "execute_rladmin_command",
            Action::ResetCluster { .. } => "reset_cluster",
        }
    }

    /// The database the action works on, when it names one (a sequence: its
    /// own, or its first step's).
    pub fn bdb_id(&self) -> Option<u64> {
        match self {
            Action::Failover { bdb_id, .. }
            | Action::Migrate { bdb_id, .. }
            | Action::Bind { bdb_id, .. }
            | Action::TopologyChangeStandalone { bdb_id, .. }
            | Action::SlotMigrate { bdb_id, .. }
            | Action::NetworkLatency { bdb_id, .. }
            | Action::NetworkFailure { bdb_id, .. }
            | Action::DmcRestart { bdb_id, .. }
            | Action::ShardFailure { bdb_id, .. }
            | Action::SendPush { bdb_id, .. } => Some(bdb_id.0),
            Action::DeleteDatabase { bdb_id, .. } | Action::ProxyFailure { bdb_id, .. } => {
                bdb_id.map(|b| b.0)
            }
            Action::SequenceOfActions { bdb_id, actions } => bdb_id.map(|b| b.0).or_else(|| {
                sequence_steps(None, actions)
                    .ok()?
                    .first()
                    .and_then(|(_, a)| a.bdb_id())
            }),
            // An rladmin command that changes a database runs in its turn;
            // `status` and `tune` are cluster-wide: any bdb_id, or none, will do.
            Action::ExecuteRladminCommand {
                rladmin_command,
                bdb_id,
            } if rladmin_changes_a_database(rladmin_command) => bdb_id
                .map(|b| b.0)
                .or_else(|| rladmin_endpoint_db(rladmin_command)),
            // A node's failure strikes every database on it, whatever each
            // is doing: it waits for no turn.
            Action::ExecuteRladminCommand { .. }
            | Action::NodeFailure { .. }
            | Action::ResetCluster { .. }
            | Action::CreateDatabase { .. }
            | Action::UpdateClusterConfig { .. } => None,
        }
    }

    /// True for actions that change where a database lives: two of them never
    /// run on one database at once.
    pub fn exclusive(&self) -> bool {
        !matches!(
            self,
            Action::NetworkLatency { .. }
                | Action::NetworkFailure { .. }
                | Action::DmcRestart { .. }
                | Action::ProxyFailure { .. }
                | Action::SendPush { .. }
        )
    }
}

/// Whether rladmin `command` changes a database (not `status`, not `tune`).
fn rladmin_changes_a_database(command: &str) -> bool {
    !matches!(
        command.split_whitespace().next(),
        Some("status" | "tune") | None
    )
}

/// The database of `bind endpoint <db>:<n> ...`.
fn rladmin_endpoint_db(command: &str) -> Option<u64> {
    match command.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["bind", "endpoint", uid, ..] => uid
            .trim_start_matches("endpoint:")
            .split(':')
            .next()?
            .parse()
            .ok(),
        _ => None,
    }
}
