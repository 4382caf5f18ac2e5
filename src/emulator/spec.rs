//! What the emulator makes of `create_database`'s `database_config`: checked
//! against what it can run, and turned into `redis-server` options.

use super::ActionError;
use crate::fault_injector::DatabaseSpec;

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
