//! How the nodes of an OSS Cluster API database announce: a push sent to one
//! node reaches that node's connections alone, and a slot move is named by
//! one seq on every node.

mod common;

use std::time::Duration;

use common::{spawn_action, two_shard_cluster};
use maint_e2e::notification::Kind;
use maint_e2e::raw::RawConnection;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_sent_to_one_node_reaches_only_that_nodes_connections() {
    let (emu, db) = two_shard_cluster(false).await;
    let port = db.port();
    let map = db.slot_map().await.unwrap();
    let (first, second) = (map.node_of(0).index, map.node_of(16383).index);
    let node = |i: usize| format!("127.0.{i}.1:{port}");
    let on_first = RawConnection::connect(&node(first), true, Some(None))
        .await
        .unwrap();
    let on_second = RawConnection::connect(&node(second), true, Some(None))
        .await
        .unwrap();
    let send = |push: serde_json::Value, node: Option<usize>| {
        let mut parameters = json!({"bdb_id": db.id(), "push": push});
        if let Some(n) = node {
            parameters["node_id"] = json!(n);
        }
        let action =
            maint_e2e::Action::parse(&json!({"type": "send_push", "parameters": parameters}));
        let emu = emu.clone();
        async move { emu.run(&action.unwrap()).await }
    };
    let out = send(json!(["SMIGRATING", 41, "0-99"]), Some(first))
        .await
        .unwrap();
    assert_eq!(out["node_id"], json!(first), "{out}");
    send(json!(["SMIGRATING", 42, "200-299"]), None)
        .await
        .unwrap();
    let within = Duration::from_secs(5);
    on_first
        .wait_until_count(within, Kind::SMigrating, 2)
        .await
        .unwrap();
    on_second
        .wait_until_count(within, Kind::SMigrating, 1)
        .await
        .unwrap();
    let seqs = |c: &RawConnection| -> Vec<i64> {
        c.pushes()
            .into_iter()
            .filter_map(|(_, n)| n.ok().flatten().map(|n| n.seq()))
            .collect()
    };
    // The other node's connection heard only the push sent to every node.
    assert_eq!(
        (seqs(&on_first), seqs(&on_second)),
        (vec![41, 42], vec![42])
    );
    // A node that does not exist is refused, saying which do.
    let bad = send(json!(["SMIGRATING", 43, "0"]), Some(9))
        .await
        .unwrap_err();
    assert!(
        bad.to_string().contains("node_id 9 does not exist"),
        "{bad}"
    );
}

/// One seq names a slot move's SMIGRATING on every node, and one its
/// SMIGRATED, as real clusters broadcast them and clients deduplicate them
/// by seq (node-redis, given a seq per node, handled one move twice at once
/// and lost track of the node it was adding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_names_a_slot_move_by_the_same_seq() {
    let (emu, db) = two_shard_cluster(false).await;
    let port = db.port();
    let map = db.slot_map().await.unwrap();
    let (first, second) = (map.node_of(0).index, map.node_of(16383).index);
    let mut conns = Vec::new();
    for n in [first, second] {
        let c = RawConnection::connect(&format!("127.0.{n}.1:{port}"), true, Some(None))
            .await
            .unwrap();
        conns.push(c);
    }
    let out = spawn_action(
        &emu,
        json!({"type": "slot_migrate", "parameters": {
            "bdb_id": db.id(), "effect": "slot-shuffle", "variant": "migrate"}}),
    )
    .await
    .unwrap()
    .unwrap();
    let mut seen = Vec::new();
    for (kind, what) in [
        (Kind::SMigrating, "SMIGRATING"),
        (Kind::SMigrated, "SMIGRATED"),
    ] {
        let mut seqs = Vec::new();
        for c in &conns {
            let (_, n) = c
                .wait_notification(Duration::from_secs(5), what, |n| n.kind() == kind)
                .await
                .unwrap();
            seqs.push(n.seq());
        }
        assert_eq!(seqs[0], seqs[1], "{what} from the two nodes: seqs {seqs:?}");
        seen.push(seqs[0]);
    }
    assert!(
        seen[1] > seen[0],
        "SMIGRATED has a seq of its own, later: {seen:?}"
    );
    assert_eq!(out["smigrating_seqs"], json!([seen[0]]), "{out}");
    assert_eq!(out["smigrated_seqs"], json!([seen[1]]), "{out}");
    emu.shutdown().await;
}
