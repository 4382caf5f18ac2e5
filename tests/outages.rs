//! Unannounced outages of whole parts of the cluster, as the newest clients'
//! suites inject them: a proxy stopped and started (`proxy_failure`), a node
//! down and back (`node_failure`). Real shards, real sockets; what is judged
//! is what a client and the server's record see.
#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{database, emulator};
use maint_e2e::emulator::Node;
use maint_e2e::raw::RawConnection;
use maint_e2e::server_record::CloseCause;
use maint_e2e::Action;
use serde_json::json;

fn action(body: serde_json::Value) -> Action {
    Action::parse(&body).unwrap()
}

/// Whether a connection to `addr` is served: it answers PING.
async fn served(addr: &str) -> bool {
    match RawConnection::connect(addr, false, None).await {
        Ok(c) => c.ping().await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_proxy_drops_its_connections_and_refuses_until_it_starts() {
    let emu = emulator(Duration::from_millis(100));
    let (id, public) = database(&emu, true).await;
    let db = emu.database(id).unwrap();
    let node = db.active_node();
    let node_addr = format!("{}:{}", node.internal_ip(), db.port());
    let before = RawConnection::connect(&public, false, None).await.unwrap();
    before.ping().await.unwrap();

    let out = emu
        .run(&action(
            json!({"type": "proxy_failure", "parameters": {"bdb_id": id, "action": "stop"}}),
        ))
        .await
        .unwrap();
    assert_eq!(out["node_id"], node.index, "{out}");
    assert_eq!(out["stopped"], json!([id]), "{out}");
    before.wait_closed(Duration::from_secs(2)).await.unwrap();
    // The node's address refuses; the public address routes there and ends
    // every connection at once.
    assert!(
        !served(&node_addr).await,
        "the stopped proxy's address answered"
    );
    assert!(
        !served(&public).await,
        "the public address answered with its proxy down"
    );
    let record = db.record(None, &emu.nodes()).await;
    let closed = record
        .connections
        .iter()
        .find(|c| c.closed_at.is_some())
        .unwrap();
    assert_eq!(
        closed.closed_by,
        Some(CloseCause::ProxyFailure),
        "{closed:?}"
    );

    // Started again, both answer; nothing moved.
    let out = emu
        .run(&action(json!({"type": "proxy_failure", "parameters": {"node_id": node.index, "action": "start"}})))
        .await
        .unwrap();
    assert_eq!(out["started"], json!([id]), "{out}");
    assert!(served(&node_addr).await && served(&public).await);
    assert_eq!(db.active_node(), node);

    // Nothing stopped: a start says so; a proxy_failure names a proxy.
    let e = emu
        .run(&action(
            json!({"type": "proxy_failure", "parameters": {"bdb_id": id, "action": "start"}}),
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no stopped proxy"), "{e}");
    let bad = Action::parse(&json!({"type": "proxy_failure", "parameters": {"action": "stop"}}))
        .unwrap_err();
    assert!(
        bad.0.contains("bdb_id") && bad.0.contains("node_id"),
        "{}",
        bad.0
    );
    let bad = Action::parse(
        &json!({"type": "proxy_failure", "parameters": {"bdb_id": id, "action": "pause"}}),
    )
    .unwrap_err();
    assert!(bad.0.contains("restart"), "{}", bad.0);

    // A restart is a stop and a start in one action. The connection is
    // served (a PING answered) before it: a connection the proxy has not
    // taken in yet is not one the stop can drop.
    let c = RawConnection::connect(&public, false, None).await.unwrap();
    c.ping().await.unwrap();
    let out = emu
        .run(&action(
            json!({"type": "proxy_failure", "parameters": {"bdb_id": id, "action": "restart"}}),
        ))
        .await
        .unwrap();
    assert_eq!(
        (out["stopped"].clone(), out["started"].clone()),
        (json!([id]), json!([id]))
    );
    c.wait_closed(Duration::from_secs(2)).await.unwrap();
    assert!(served(&public).await);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_hands_its_primary_and_endpoint_over_and_gets_a_replica_back() {
    let emu = emulator(Duration::from_millis(100));
    let (id, public) = database(&emu, true).await;
    let db = emu.database(id).unwrap();
    let node = db.active_node();
    let sets = db.shard_sets().await;
    assert_eq!(
        sets[0].primary_node, node.index,
        "the test wants primary and endpoint on one node"
    );
    let writer = RawConnection::connect(&public, false, None).await.unwrap();
    writer
        .command(&["SET", "outage:key", "kept"])
        .await
        .unwrap();

    // Stop: the node's connections close, the replica takes over, the
    // endpoint moves unannounced to the next node.
    let out = emu
        .run(&action(json!({"type": "node_failure", "parameters": {"cluster_index": 0, "node_id": node.index, "method": "stop"}})))
        .await
        .unwrap();
    writer.wait_closed(Duration::from_secs(2)).await.unwrap();
    let moved_to = out["databases"][0]["endpoint_moved_to"].as_u64().unwrap() as usize;
    assert_ne!(moved_to, node.index, "{out}");
    assert_eq!(db.active_node().index, moved_to);
    let sets = db.shard_sets().await;
    assert_ne!(sets[0].primary_node, node.index);
    assert_eq!(
        sets[0].replica, None,
        "the replica on the failed node is gone"
    );
    let reader = RawConnection::connect(&public, false, None).await.unwrap();
    assert_eq!(
        reader.command(&["GET", "outage:key"]).await.unwrap(),
        b"$4\r\nkept\r\n"
    );
    let record = db.record(None, &emu.nodes()).await;
    let m = record.endpoint_moves.last().unwrap();
    assert!(
        !m.announced && m.from == node.index && m.to == moved_to,
        "{m:?}"
    );
    assert!(
        record.shards.iter().all(|s| s.node != node.index),
        "{:?}",
        record.shards
    );
    // Down, it takes nothing: no endpoint, no second stop.
    let e = emu
        .run(&action(
            json!({"type": "bind", "parameters": {"bdb_id": id, "target_node": node.index}}),
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is down"), "{e}");
    let e = emu
        .run(&action(json!({"type": "node_failure", "parameters": {"node_id": node.index, "method": "stop"}})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already down"), "{e}");

    // Start: a new replica on the node, in sync with the promoted primary.
    emu.run(&action(
        json!({"type": "node_failure", "parameters": {"node_id": node.index, "method": "start"}}),
    ))
    .await
    .unwrap();
    let sets = db.shard_sets().await;
    assert_eq!(sets[0].replica_node, Some(node.index));
    let e = emu
        .run(&action(json!({"type": "node_failure", "parameters": {"node_id": node.index, "method": "start"}})))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is up"), "{e}");

    // A reboot of the node that now holds the endpoint: down and back in one
    // action, the data still there.
    let holder = db.active_node();
    let out = emu
        .run(&action(
            json!({"type": "node_failure", "parameters": {"node_id": holder.index}}),
        ))
        .await
        .unwrap();
    assert_eq!(out["method"], "reboot", "{out}");
    assert_ne!(db.active_node(), holder);
    let reader = RawConnection::connect(&public, false, None).await.unwrap();
    assert_eq!(
        reader.command(&["GET", "outage:key"]).await.unwrap(),
        b"$4\r\nkept\r\n"
    );
    assert_eq!(db.shard_sets().await[0].replica_node, Some(holder.index));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_failure_that_would_lose_data_is_refused() {
    let emu = emulator(Duration::from_millis(100));
    let (id, public) = database(&emu, false).await;
    let db = emu.database(id).unwrap();
    let node = db.shard_sets().await[0].primary_node;
    let e = emu
        .run(&action(
            json!({"type": "node_failure", "parameters": {"node_id": node, "method": "stop"}}),
        ))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no replica") && msg.contains("replication: true"),
        "{msg}"
    );
    // Refused before anything changed.
    assert!(served(&public).await);
    assert_eq!(db.active_node(), Node { index: node });
    emu.shutdown().await;
}

/// A cluster database's node fails: its shard's replica on another node
/// takes its slots over, unannounced; the topology the other nodes answer
/// names that node; the data is there; back, the node holds a replica that
/// joined the cluster again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_databases_failed_node_gives_its_slots_to_the_replicas_node() {
    let emu = emulator(Duration::from_millis(100));
    let db = emu
        .create_database(maint_e2e::DatabaseSpec {
            oss_cluster: Some(true),
            shards_count: Some(2),
            replication: Some(true),
            ..maint_e2e::DatabaseSpec::default()
        })
        .await
        .unwrap();
    let port = db.port();
    let before = db.slot_map().await.unwrap();
    let (a, b) = (before.node_of(0).index, before.node_of(16383).index);
    let pb = RawConnection::connect(&format!("127.0.{b}.1:{port}"), true, Some(None))
        .await
        .unwrap();
    let pa = RawConnection::connect(&format!("127.0.{a}.1:{port}"), true, Some(None))
        .await
        .unwrap();
    assert_eq!(
        pa.command(&["SET", "{bar}k", "v"]).await.unwrap(),
        b"+OK\r\n"
    );
    let out = emu
        .run(&action(
            json!({"type": "node_failure", "parameters": {"node_id": a, "method": "stop"}}),
        ))
        .await
        .unwrap();
    pa.wait_closed(Duration::from_secs(2)).await.unwrap();
    let after = db.slot_map().await.unwrap();
    let to = after.node_of(0).index;
    assert!(to != a, "{out}");
    let slots =
        String::from_utf8_lossy(&pb.command(&["CLUSTER", "SLOTS"]).await.unwrap()).into_owned();
    assert!(!slots.contains(&format!("127.0.{a}.1")), "{slots}");
    assert!(slots.contains(&format!("127.0.{to}.1")), "{slots}");
    let pt = RawConnection::connect(&format!("127.0.{to}.1:{port}"), true, None)
        .await
        .unwrap();
    assert_eq!(
        pt.command(&["GET", "{bar}k"]).await.unwrap(),
        b"$1\r\nv\r\n"
    );
    // Nothing was announced to the connections that stayed.
    assert!(pb.pushes().is_empty(), "{:?}", pb.pushes());

    emu.run(&action(
        json!({"type": "node_failure", "parameters": {"node_id": a, "method": "start"}}),
    ))
    .await
    .unwrap();
    let sets = db.shard_sets().await;
    let first = sets.iter().find(|s| s.slots.0 == 0).unwrap();
    assert_eq!(first.replica_node, Some(a), "{sets:?}");
    // The new replica follows the promoted primary in the cluster.
    let replica = RawConnection::connect(&first.replica.unwrap().to_string(), false, None)
        .await
        .unwrap();
    let role = replica.command(&["ROLE"]).await.unwrap();
    assert!(
        String::from_utf8_lossy(&role).contains("slave"),
        "{}",
        String::from_utf8_lossy(&role)
    );
    emu.shutdown().await;
}
