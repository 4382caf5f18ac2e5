//! The fault injector's HTTP API as one contract, used by both sides: the
//! emulator's handlers decode requests into these types and answer with them;
//! [`FaultInjectorClient`] posts them and decodes the answers, against the
//! emulator or a real fault injector.
//!
//! * [`action`]: what callers post to `POST /action` ([`Action`]);
//! * [`params`]: the parameters actions share (ids, a database's
//!   configuration, timing overrides);
//! * [`status`]: what the API answers ([`ActionState`], [`ActionStatus`],
//!   [`CreatedDatabase`], ...);
//! * [`time`]: times as RFC 3339 strings;
//! * [`client`]: the HTTP client.

pub mod action;
pub mod client;
pub mod params;
mod sequence;
pub mod status;
pub mod time;

pub use action::{normalize_parameters, sequence_steps, Action, SequenceStep, ACTION_TYPES};
pub use client::{FaultInjectorClient, FaultInjectorError};
pub use params::{
    id_from, AclUser, BdbId, DatabaseSpec, NodeMethod, NodeRef, ProxyCommand, ShardId,
    TimingOverrides,
};
pub use status::{
    ActionAccepted, ActionList, ActionState, ActionStatus, ActionSummary, ApiError, CreatedDatabase,
};
pub use time::Timestamp;

/// A request that does not follow the contract, saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every action a caller builds is read back as the same action.
    #[test]
    fn typed_actions_serialize_as_callers_send_them_and_read_back() {
        let actions = [
            Action::Failover {
                bdb_id: BdbId(1),
                shard_id: Some(ShardId(3)),
                drop_completion: false,
                timing: TimingOverrides {
                    lead_s: Some(0.5),
                    ..TimingOverrides::default()
                },
            },
            Action::Migrate {
                bdb_id: BdbId(2),
                shard_id: None,
                target_node: Some(NodeRef(3)),
                drop_completion: true,
                timing: TimingOverrides::default(),
            },
            Action::CreateDatabase {
                database_config: DatabaseSpec {
                    port: Some(12000),
                    replication: Some(true),
                    ..DatabaseSpec::named("x")
                },
            },
            Action::SequenceOfActions {
                bdb_id: Some(BdbId(1)),
                actions: vec![SequenceStep {
                    action_type: "bind".into(),
                    params: json!({}),
                    delay: Some(json!(1.5)),
                }],
            },
        ];
        for a in actions {
            let wire = serde_json::to_value(&a).unwrap();
            assert_eq!(wire["type"], a.type_name(), "{wire}");
            assert_eq!(Action::parse(&wire).unwrap(), a, "{wire}");
        }
        let wire = serde_json::to_value(Action::Migrate {
            bdb_id: BdbId(2),
            shard_id: None,
            target_node: Some(NodeRef(3)),
            drop_completion: true,
            timing: TimingOverrides::default(),
        })
        .unwrap();
        assert_eq!(
            wire,
            json!({"type": "migrate", "parameters": {"bdb_id": 2, "target_node": 3, "drop_completion": true}})
        );
    }

    #[test]
    fn ids_are_read_as_numbers_numeric_strings_or_prefixed_strings() {
        let a = Action::parse(&json!({"type": "migrate", "parameters": {
            "bdbId": "4", "shard_id": "redis:7", "target_node": "node:2", "cluster_index": "0"}}))
        .unwrap();
        let Action::Migrate {
            bdb_id,
            shard_id,
            target_node,
            ..
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(
            (bdb_id, shard_id, target_node),
            (BdbId(4), Some(ShardId(7)), Some(NodeRef(2)))
        );
        let e = Action::parse(&json!({"type": "failover", "parameters": {"bdb_id": "one"}}))
            .unwrap_err();
        assert!(e.0.contains("bdb_id must be"), "{e}");
        let e = Action::parse(
            &json!({"type": "failover", "parameters": {"bdb_id": 1, "cluster_index": 2}}),
        )
        .unwrap_err();
        assert!(e.0.contains("cluster_index 2 does not exist"), "{e}");
    }
}
