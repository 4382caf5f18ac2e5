//! What `create_database` asks for (`database_config`), as the callers of a
//! real fault injector send it, checked, and turned into `redis-server`
//! options.

use serde::Deserialize;

use super::actions::ActionError;
use super::TimingOverrides;

/// `database_config` of `create_database`, as the callers of a real fault
/// injector send it. Settings that map onto `redis-server` are applied; the
/// others are accepted and listed in the action's output as `ignored`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DatabaseSpec {
    /// Name (defaults to `db<id>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Port (defaults to a free one; 0, as typed clients send when they have
    /// none, means the same).
    #[serde(default)]
    pub port: Option<u16>,
    /// A replica of each primary shard on another node (default true).
    #[serde(default)]
    pub replication: Option<bool>,
    /// Primary shards (default 1). Several shards sit behind one endpoint: the
    /// proxy routes each key to its shard by hash slot.
    #[serde(default)]
    pub shards_count: Option<u32>,
    /// Sharding on: what a real cluster needs for `shards_count` above 1.
    #[serde(default)]
    pub sharding: Option<bool>,
    /// `single` (one endpoint) is what the emulator serves.
    #[serde(default)]
    pub proxy_policy: Option<String>,
    /// OSS Cluster API.
    #[serde(default)]
    pub oss_cluster: Option<bool>,
    /// TLS on the endpoint.
    #[serde(default)]
    pub tls: Option<bool>,
    /// Password of the default user.
    #[serde(default)]
    pub password: Option<String>,
    /// Memory limit of the database in bytes, split evenly over its primary
    /// shards (`maxmemory`).
    #[serde(default)]
    pub memory_size: Option<u64>,
    /// What happens at the memory limit (`maxmemory-policy`).
    #[serde(default)]
    pub eviction_policy: Option<String>,
    /// Timing of this database's maintenance (`grace_s`, `lead_s`, `window_s`,
    /// `settle_s`).
    #[serde(flatten)]
    pub timing: TimingOverrides,
    /// Replay the last completion to connections that opt in later (default:
    /// the emulator's setting).
    #[serde(default)]
    pub replay_completion: Option<bool>,
    /// Every other setting a caller sent: accepted, not emulated.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Eviction policies `redis-server` knows.
pub const EVICTION_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// Most primary shards a database may have here.
pub const MAX_SHARDS: u32 = 16;

impl DatabaseSpec {
    /// Settings that were sent but change nothing here, sorted.
    pub fn ignored(&self) -> Vec<String> {
        let mut out: Vec<String> = self.other.keys().cloned().collect();
        if self.proxy_policy.as_deref().is_some_and(|p| p != "single") {
            out.push("proxy_policy".into());
        }
        out.sort();
        out
    }

    /// The `redis-server` options these settings map onto, per shard.
    pub(crate) fn shard_args(&self, shards: u32) -> Result<Vec<String>, ActionError> {
        let mut args = Vec::new();
        if let Some(bytes) = self.memory_size.filter(|b| *b > 0) {
            if bytes < 1024 * 1024 {
                return Err(ActionError::Invalid(format!(
                    "memory_size is in bytes and must be at least 1048576 (1 MiB), got {bytes}"
                )));
            }
            args.push("--maxmemory".into());
            args.push((bytes / shards as u64).to_string());
        }
        if let Some(p) = &self.eviction_policy {
            if !EVICTION_POLICIES.contains(&p.as_str()) {
                return Err(ActionError::Invalid(format!(
                    "eviction_policy {p:?} is not one of {}",
                    EVICTION_POLICIES.join(", ")
                )));
            }
            args.push("--maxmemory-policy".into());
            args.push(p.clone());
        }
        Ok(args)
    }

    /// The port asked for: none, or 0, means any free one.
    pub fn wanted_port(&self) -> Option<u16> {
        self.port.filter(|p| *p != 0)
    }

    /// Primary shards asked for, checked.
    pub(crate) fn shard_count(&self) -> Result<u32, ActionError> {
        let n = self.shards_count.unwrap_or(1);
        if n == 0 || n > MAX_SHARDS {
            return Err(ActionError::Invalid(format!(
                "shards_count must be between 1 and {MAX_SHARDS}, got {n}"
            )));
        }
        if n > 1 && self.sharding == Some(false) {
            return Err(ActionError::Invalid(format!(
                "shards_count {n} needs sharding: true (or leave sharding out)"
            )));
        }
        Ok(n)
    }
}
