//! The server's record of a database, as the suite reads it (`GET
//! /emulator/databases/{bdb_id}/record`): its connections, the moves of its
//! endpoint and slots, its endpoint on each node and its shards.

use super::{Database, Node};
use crate::notification::EndpointType;
use crate::server_record::{DatabaseRecord, NodeEndpoints, ShardRecord};

impl Database {
    /// The server's record: its client connections (those named `name`, when
    /// given), the endpoint's moves, and its endpoint on each of `nodes`.
    pub async fn record(&self, name: Option<&str>, nodes: &[Node]) -> DatabaseRecord {
        use EndpointType::*;
        let (connections, endpoint_moves) = self.shared.ledger.snapshot(name);
        let (names, port) = (&self.shared.naming, self.shared.port);
        let at = |n: Node, ty| {
            names
                .endpoint(n, ty, port)
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        DatabaseRecord {
            bdb_id: self.shared.id,
            endpoint_node: self.shared.active_node().index,
            accepted_total: self.shared.connections_accepted(),
            nodes: nodes
                .iter()
                .map(|&n| NodeEndpoints {
                    node: n.index,
                    internal_ip: at(n, InternalIp),
                    external_ip: at(n, ExternalIp),
                    internal_fqdn: at(n, InternalFqdn),
                    external_fqdn: at(n, ExternalFqdn),
                })
                .collect(),
            connections,
            endpoint_moves,
            slot_moves: self.shared.ledger.slot_moves(),
            switch_overs: self.shared.ledger.switch_overs(),
            shards: {
                let sets = self.shard_sets().await;
                let primaries = sets.iter().map(|s| ShardRecord {
                    addr: s.primary.to_string(),
                    node: s.primary_node,
                    role: "primary".into(),
                });
                let replicas = sets.iter().filter_map(|s| {
                    Some(ShardRecord {
                        addr: s.replica?.to_string(),
                        node: s.replica_node?,
                        role: "replica".into(),
                    })
                });
                primaries.chain(replicas).collect()
            },
        }
    }
}
