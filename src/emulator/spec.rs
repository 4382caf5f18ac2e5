//! What the emulator makes of `create_database`'s `database_config`: checked
//! against what it can run, and turned into `redis-server` options.

use super::tls::{TlsPolicy, TlsVersion};
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
        args.extend(self.acl_args()?);
        Ok(args)
    }

    /// `--user` options for the ACL users: each shard, the new ones a
    /// migration starts included, knows them before it takes traffic.
    fn acl_args(&self) -> Result<Vec<String>, ActionError> {
        let word = |what: &str, v: &str| {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err(ActionError::Invalid(format!(
                    "acl_users: {what} {v:?} must be one word without spaces"
                )))
            } else {
                Ok(())
            }
        };
        let mut args = Vec::new();
        for u in &self.acl_users {
            word("name", &u.name)?;
            word("password", &u.password)?;
            if u.name == "default" {
                return Err(ActionError::Invalid(
                    "acl_users: the default user's password is `password`; name the ACL users otherwise".into(),
                ));
            }
            args.push("--user".into());
            args.push(u.name.clone());
            args.push("on".into());
            args.push(format!(">{}", u.password));
            let rules = u.rules.as_deref().unwrap_or("~* &* +@all");
            for r in rules.split_whitespace() {
                if r.starts_with('>') || r.starts_with('<') || r == "nopass" || r == "off" {
                    return Err(ActionError::Invalid(format!(
                        "acl_users: the rules of {:?} may not set passwords or turn the user off ({r:?}); the password is its own field",
                        u.name
                    )));
                }
                args.push(r.to_string());
            }
        }
        Ok(args)
    }

    /// What a TLS endpoint of this database asks of clients.
    pub(crate) fn tls_policy(&self) -> Result<Option<TlsPolicy>, ActionError> {
        let min_version = match &self.tls_min_version {
            Some(v) => TlsVersion::parse(v).map_err(ActionError::Invalid)?,
            None => TlsVersion::default(),
        };
        let client_auth = self.enforce_client_authentication.unwrap_or(false);
        if !self.tls.unwrap_or(false) {
            if self.tls_min_version.is_some() || client_auth {
                return Err(ActionError::Invalid(
                    "tls_min_version and enforce_client_authentication need tls: true".into(),
                ));
            }
            return Ok(None);
        }
        Ok(Some(TlsPolicy {
            min_version,
            client_auth,
        }))
    }

    /// The user the endpoints file names, and its password.
    pub(crate) fn credentials(&self) -> Option<(String, String)> {
        match (self.acl_users.first(), &self.password) {
            (Some(u), _) => Some((u.name.clone(), u.password.clone())),
            (None, Some(pw)) => Some(("default".into(), pw.clone())),
            (None, None) => None,
        }
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

    /// Whether every primary goes on one node (`shards_placement: dense`).
    pub(crate) fn dense(&self) -> Result<bool, ActionError> {
        match self.shards_placement.as_deref() {
            None | Some("sparse") => Ok(false),
            Some("dense") => Ok(true),
            Some(other) => Err(ActionError::Invalid(format!(
                "shards_placement {other:?} is not one of dense, sparse"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_injector::AclUser;

    fn user(name: &str, password: &str, rules: Option<&str>) -> DatabaseSpec {
        DatabaseSpec {
            acl_users: vec![AclUser {
                name: name.into(),
                password: password.into(),
                rules: rules.map(Into::into),
            }],
            ..DatabaseSpec::default()
        }
    }

    #[test]
    fn acl_users_become_user_options_and_bad_ones_say_what_to_fix() {
        let args = user("app", "pw", Some("~app:* +get"))
            .shard_args(1)
            .unwrap();
        assert_eq!(args, ["--user", "app", "on", ">pw", "~app:*", "+get"]);
        let args = user("app", "pw", None).shard_args(1).unwrap();
        assert_eq!(args[4..], ["~*", "&*", "+@all"]);
        let err = |s: DatabaseSpec| s.shard_args(1).unwrap_err().to_string();
        assert!(err(user("a b", "pw", None)).contains("one word"));
        assert!(err(user("app", "", None)).contains("one word"));
        assert!(err(user("default", "pw", None)).contains("`password`"));
        assert!(err(user("app", "pw", Some("~* >other"))).contains("may not set passwords"));
    }

    #[test]
    fn tls_settings_need_tls_and_a_known_version() {
        let tls = |v: Option<&str>, mtls: Option<bool>, on: bool| DatabaseSpec {
            tls: Some(on),
            tls_min_version: v.map(Into::into),
            enforce_client_authentication: mtls,
            ..DatabaseSpec::default()
        };
        let p = tls(Some("1.3"), Some(true), true)
            .tls_policy()
            .unwrap()
            .unwrap();
        assert_eq!((p.min_version, p.client_auth), (TlsVersion::V13, true));
        assert_eq!(tls(None, None, false).tls_policy().unwrap(), None);
        let e = tls(Some("1.0"), None, true)
            .tls_policy()
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"1.2\" or \"1.3\""), "{e}");
        let e = tls(None, Some(true), false)
            .tls_policy()
            .unwrap_err()
            .to_string();
        assert!(e.contains("need tls: true"), "{e}");
        // The REST API's words for mutual TLS, and a clear refusal of others.
        let read = |v: serde_json::Value| serde_json::from_value::<DatabaseSpec>(v);
        let on = read(serde_json::json!({"tls": true, "enforce_client_authentication": "enabled"}));
        assert_eq!(on.unwrap().enforce_client_authentication, Some(true));
        let bad = read(serde_json::json!({"enforce_client_authentication": "sometimes"}));
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("\"enabled\", \"disabled\""));
    }

    #[test]
    fn the_described_user_is_the_first_acl_user_else_default_with_a_password() {
        assert_eq!(
            user("app", "pw", None).credentials(),
            Some(("app".into(), "pw".into()))
        );
        let plain = DatabaseSpec {
            password: Some("s".into()),
            ..DatabaseSpec::default()
        };
        assert_eq!(plain.credentials(), Some(("default".into(), "s".into())));
        assert_eq!(DatabaseSpec::default().credentials(), None);
    }
}
