//! The parameters actions share: ids as callers send them, a database's
//! configuration (`database_config`) and timing overrides.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BadRequest;

/// A database id as callers send it: a number or a numeric string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BdbId(pub u64);

impl<'de> Deserialize<'de> for BdbId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        id_from(&v, "").map(BdbId).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "bdb_id must be a positive integer or a numeric string, got {v}"
            ))
        })
    }
}

/// A number, or a string holding one after an optional `prefix`
/// (`"node:2"`, `"redis:3"`): ids as every caller sends them.
pub fn id_from(v: &Value, prefix: &str) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().trim_start_matches(prefix).parse().ok(),
        _ => None,
    }
}

/// A shard id as callers send it: `3`, `"3"` or `"redis:3"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ShardId(pub u32);

impl<'de> Deserialize<'de> for ShardId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        id_from(&v, "redis:")
            .and_then(|n| u32::try_from(n).ok())
            .map(ShardId)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "a shard id is a number, \"3\" or \"redis:3\"; got {v}"
                ))
            })
    }
}

/// A node as callers name it: `2`, `"2"` or `"node:2"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRef(pub usize);

impl<'de> Deserialize<'de> for NodeRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        id_from(&v, "node:")
            .map(|n| NodeRef(n as usize))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "a node is a number, \"2\" or \"node:2\"; got {v}"
                ))
            })
    }
}

/// `database_config` of `create_database`, as the callers of a real fault
/// injector send it. Settings that map onto `redis-server` are applied; the
/// others are accepted and listed in the action's output as `ignored`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    /// Name (defaults to `db<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port (defaults to a free one in 10000-19999; 0, as typed clients send when they have
    /// none, means the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A replica of each primary shard on another node (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<bool>,
    /// Primary shards (default 1). Several shards sit behind one endpoint: the
    /// proxy routes each key to its shard by hash slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards_count: Option<u32>,
    /// Sharding on: what a real cluster needs for `shards_count` above 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<bool>,
    /// `single` (one endpoint) is what the emulator serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_policy: Option<String>,
    /// OSS Cluster API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss_cluster: Option<bool>,
    /// An OSS Cluster API database's address class: `internal` (the nodes'
    /// internal IPs, the default) or `external`; its endpoints name the
    /// nodes in that class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss_cluster_api_preferred_ip_type: Option<String>,
    /// TLS on the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// Password of the default user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Lowest TLS version the endpoint accepts: `"1.2"` (default) or `"1.3"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_min_version: Option<String>,
    /// Mutual TLS: `"enabled"` (or `true`) makes the endpoint require a client
    /// certificate signed by the cluster's CA.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "enabled_or_bool"
    )]
    pub enforce_client_authentication: Option<bool>,
    /// ACL users the shards know besides `default`; the database's
    /// description names the first.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "acl_users"
    )]
    pub acl_users: Vec<AclUser>,
    /// Memory limit of the database in bytes, split evenly over its primary
    /// shards (`maxmemory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_size: Option<u64>,
    /// What happens at the memory limit (`maxmemory-policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_policy: Option<String>,
    /// Timing of this database's maintenance (`grace_s`, `lead_s`, `window_s`,
    /// `settle_s`, `hold_s`).
    #[serde(flatten)]
    pub timing: TimingOverrides,
    /// Replay the last completion to connections that opt in later (default:
    /// the emulator's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_completion: Option<bool>,
    /// The most client connections the database serves at once, 0 for no
    /// limit (default: the emulator's setting), as a real cluster's
    /// `max_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Where the primaries go: `sparse` (the default: one node after
    /// another) or `dense` (all on one node, replicas on the next), as a
    /// real cluster's `shards_placement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards_placement: Option<String>,
    /// Every other setting a caller sent: accepted, not emulated.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// An ACL user of a database: what `redis-server` is told with `user`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AclUser {
    /// User name (not `default`).
    pub name: String,
    /// Password.
    pub password: String,
    /// ACL rules after the password, as `ACL SETUSER` takes them
    /// (default `~* &* +@all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
}

/// The ACL users, an error naming the field (a flattened struct's errors
/// would not).
fn acl_users<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<AclUser>, D::Error> {
    use serde::de::Error;
    serde_json::from_value(Value::deserialize(d)?).map_err(|e| {
        D::Error::custom(format!(
            "acl_users must be a list of {{\"name\", \"password\", \"rules\"?}}: {e}"
        ))
    })
}

/// `"enabled"` / `"disabled"` (the REST API's words) or a bool.
fn enabled_or_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
        Some(serde_json::Value::String(s)) if s == "enabled" => Ok(Some(true)),
        Some(serde_json::Value::String(s)) if s == "disabled" => Ok(Some(false)),
        Some(other) => Err(D::Error::custom(format!(
            "enforce_client_authentication is \"enabled\", \"disabled\" or a bool, got {other}"
        ))),
    }
}

impl DatabaseSpec {
    /// A configuration with only a name.
    pub fn named(name: &str) -> Self {
        DatabaseSpec {
            name: Some(name.to_string()),
            ..DatabaseSpec::default()
        }
    }

    /// Settings that were sent but change nothing in the emulator, sorted.
    pub fn ignored(&self) -> Vec<String> {
        let mut out: Vec<String> = self.other.keys().cloned().collect();
        if self.proxy_policy.as_deref().is_some_and(|p| p != "single")
            && self.oss_cluster != Some(true)
        {
            out.push("proxy_policy".into());
        }
        out.sort();
        out
    }

    /// The port asked for: none, or 0, means any free one.
    pub fn wanted_port(&self) -> Option<u16> {
        self.port.filter(|p| *p != 0)
    }
}

/// Timing a database or a single action may set, in seconds, over the
/// emulator's [`Timings`]: an action's value wins over its database's, which wins
/// over the emulator's.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TimingOverrides {
    /// MOVING grace (time_s of MOVING; the old endpoint closes after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<f64>,
    /// How long a start notification precedes the disruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_s: Option<f64>,
    /// How long a MIGRATING / FAILING_OVER window announces beyond the lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<f64>,
    /// How long after the switch-over the completion is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_s: Option<f64>,
    /// How long each switch-over holds the database's traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_s: Option<f64>,
}

impl TimingOverrides {
    /// Checks that every value is a number of seconds between 0 and 3600.
    pub fn validate(&self) -> Result<(), BadRequest> {
        for (name, v) in [
            ("grace_s", self.grace_s),
            ("lead_s", self.lead_s),
            ("window_s", self.window_s),
            ("settle_s", self.settle_s),
            ("hold_s", self.hold_s),
        ] {
            if let Some(v) = v {
                if !(0.0..=3600.0).contains(&v) {
                    return Err(BadRequest(format!(
                        "{name} must be a number of seconds between 0 and 3600, got {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What `node_failure` does to its node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeMethod {
    /// Down, then back.
    #[default]
    Reboot,
    /// Down, until a `start`.
    Stop,
    /// Back after a `stop`.
    Start,
}

/// What `proxy_failure` does to its proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyCommand {
    /// Stops serving: its connections dropped, its address refusing.
    Stop,
    /// Serves again after a `stop`.
    Start,
    /// Stops, then serves again.
    Restart,
}
