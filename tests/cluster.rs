//! OSS Cluster API databases on the emulator, byte for byte: the topology
//! the proxies answer, their redirects, and a slot migration that really
//! moves keys, announced with SMIGRATING and SMIGRATED.

mod common;

use std::time::Duration;

use common::{spawn_action, two_shard_cluster};
use maint_e2e::notification::{EndpointType, Kind};
use maint_e2e::raw::RawConnection;
use maint_e2e::slots::slot;
use maint_e2e::Notification;
use serde_json::json;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_move_for_real_between_the_proxies_of_two_nodes() {
    let (emu, db) = two_shard_cluster(false).await;
    let port = db.port();
    let node = |i: usize| format!("127.0.{i}.1:{port}");
    let map = db.slot_map().await.unwrap();
    let first = map.node_of(0).index;
    let second = map.node_of(16383).index;
    assert_ne!(first, second);

    // The topology names the proxies, one run of slots each.
    let c1 = RawConnection::connect(&node(first), true, Some(None))
        .await
        .unwrap();
    let slots = text(&c1.command(&["CLUSTER", "SLOTS"]).await.unwrap());
    assert!(
        slots.contains(&format!("127.0.{first}.1")) && slots.contains(&format!("127.0.{second}.1")),
        "{slots}"
    );
    let nodes = text(&c1.command(&["CLUSTER", "NODES"]).await.unwrap());
    assert!(nodes.contains("myself,master"), "{nodes}");
    // The topology is the database's (internal IPs), whatever MOVING form a
    // connection asked for: one that asked for external IPs gets the same.
    let external = RawConnection::connect(&node(first), true, Some(Some(EndpointType::ExternalIp)))
        .await
        .unwrap();
    assert_eq!(
        text(&external.command(&["CLUSTER", "SLOTS"]).await.unwrap()),
        slots
    );
    // COMMAND in RESP3 (sets that hold maps) comes through whole, as
    // cluster clients read it first.
    let mut rc = redis::Client::open(format!("redis://{}/?protocol=resp3", node(first)))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let table: Vec<redis::Value> = redis::cmd("COMMAND").query_async(&mut rc).await.unwrap();
    assert!(table.len() > 100, "{} commands", table.len());

    // Keys on both nodes, each written through the proxy that serves it.
    let c2 = RawConnection::connect(&node(second), true, None)
        .await
        .unwrap();
    let keys: Vec<String> = (0..400).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        let via = match map.node_of(slot(k.as_bytes())).index == first {
            true => &c1,
            false => &c2,
        };
        assert_eq!(text(&via.command(&["SET", k, k]).await.unwrap()), "+OK\r\n");
    }
    // A key of the other node is redirected to its proxy.
    let other = keys
        .iter()
        .find(|k| map.node_of(slot(k.as_bytes())).index == second)
        .unwrap();
    let moved = text(&c1.command(&["GET", other]).await.unwrap());
    assert_eq!(
        moved,
        format!("-MOVED {} {}\r\n", slot(other.as_bytes()), node(second))
    );

    // Half of the first node's slots go to the second.
    let out = spawn_action(
        &emu,
        json!({"type": "slot_migrate", "parameters": {
            "bdb_id": db.id(), "effect": "slot-shuffle", "variant": "migrate"}}),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out["moves"][0]["slots"], "4096-8191", "{out}");

    let (smigrating_at, smigrating) = c1
        .wait_notification(Duration::from_secs(5), "SMIGRATING", |n| {
            n.kind() == Kind::SMigrating
        })
        .await
        .unwrap();
    let (smigrated_at, smigrated) = c1
        .wait_notification(Duration::from_secs(5), "SMIGRATED", |n| {
            n.kind() == Kind::SMigrated
        })
        .await
        .unwrap();
    assert!(smigrating_at < smigrated_at);
    assert!(matches!(&smigrating, Notification::SMigrating { slots, .. } if slots == "4096-8191"));
    let Notification::SMigrated { seq, moves, .. } = &smigrated else {
        unreachable!()
    };
    assert!(*seq > smigrating.seq(), "SMIGRATED has its own, later seq");
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].source.to_string(), node(first));
    assert_eq!(moves[0].target.to_string(), node(second));
    assert_eq!(moves[0].slots, "4096-8191");
    // SMIGRATED names the nodes as CLUSTER SLOTS does, on every connection.
    let (_, told) = external
        .wait_notification(Duration::from_secs(5), "SMIGRATED", |n| {
            n.kind() == Kind::SMigrated
        })
        .await
        .unwrap();
    let Notification::SMigrated { moves: seen, .. } = &told else {
        unreachable!()
    };
    assert_eq!(seen[0].source.to_string(), node(first));
    assert_eq!(seen[0].target.to_string(), node(second));

    // Every key is where the new map says, with its value.
    let after = db.slot_map().await.unwrap();
    assert_eq!(after.node_of(5000).index, second);
    for k in &keys {
        let via = match after.node_of(slot(k.as_bytes())).index == first {
            true => &c1,
            false => &c2,
        };
        let got = text(&via.command(&["GET", k]).await.unwrap());
        assert_eq!(got, format!("${}\r\n{k}\r\n", k.len()), "{k}");
    }
    // And the old node sends a moved slot's key on.
    let gone = keys
        .iter()
        .find(|k| (4096..=8191).contains(&slot(k.as_bytes())))
        .unwrap();
    let moved = text(&c1.command(&["GET", gone]).await.unwrap());
    assert!(
        moved.starts_with("-MOVED") && moved.contains(&node(second)),
        "{moved}"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_move_is_asked_to_the_importing_node() {
    let (emu, db) = two_shard_cluster(false).await;
    let port = db.port();
    let map = db.slot_map().await.unwrap();
    let (a, b) = (map.node_of(0).index, map.node_of(16383).index);
    let pa = RawConnection::connect(&format!("127.0.{a}.1:{port}"), true, None)
        .await
        .unwrap();
    let pb = RawConnection::connect(&format!("127.0.{b}.1:{port}"), true, None)
        .await
        .unwrap();
    // A slot that is importing on b and migrating on a: a new key there is
    // asked to b's proxy, which takes it after ASKING.
    let shards = db.shard_sets().await;
    let admin = |addr: std::net::SocketAddr| async move {
        redis::Client::open(format!("redis://{addr}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    };
    let mut sa = admin(shards[0].primary).await;
    let mut sb = admin(shards[1].primary).await;
    let id = |c: redis::aio::MultiplexedConnection| async move {
        let mut c = c;
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async::<String>(&mut c)
            .await
            .unwrap()
    };
    let (ida, idb) = (id(sa.clone()).await, id(sb.clone()).await);
    let key = "{bar}1";
    let s = slot(key.as_bytes());
    assert_eq!(
        map.node_of(s).index,
        a,
        "{{bar}} is slot 5061, in the first half"
    );
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(s)
        .arg("IMPORTING")
        .arg(&ida)
        .query_async::<()>(&mut sb)
        .await
        .unwrap();
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(s)
        .arg("MIGRATING")
        .arg(&idb)
        .query_async::<()>(&mut sa)
        .await
        .unwrap();
    // The emulator's map learns of the import as slot_migrate tells it.
    let ask = text(&pa.command(&["SET", key, "v"]).await.unwrap());
    assert_eq!(ask, format!("-ASK {s} 127.0.{b}.1:{port}\r\n"));
    // Without ASKING, b's proxy sends the client back.
    let back = text(&pb.command(&["SET", key, "v"]).await.unwrap());
    assert!(back.starts_with("-MOVED"), "{back}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_moves_a_shards_slots_to_its_replicas_node() {
    let (emu, db) = two_shard_cluster(true).await;
    let port = db.port();
    let before = db.slot_map().await.unwrap();
    let (a, b) = (before.node_of(0).index, before.node_of(16383).index);
    let pa = RawConnection::connect(&format!("127.0.{a}.1:{port}"), true, Some(None))
        .await
        .unwrap();
    assert_eq!(
        text(&pa.command(&["SET", "{bar}k", "v"]).await.unwrap()),
        "+OK\r\n"
    );
    let out = spawn_action(
        &emu,
        json!({"type": "slot_migrate", "parameters": {
            "bdb_id": db.id(), "effect": "add", "trigger": "failover"}}),
    )
    .await
    .unwrap()
    .unwrap();
    // The second shard's replica, on the node that served nothing, took
    // its slots over; the first shard's slots stayed.
    let after = db.slot_map().await.unwrap();
    let joined = out["joined_node"].as_u64().unwrap() as usize;
    assert!(joined != a && joined != b, "{out}");
    assert_eq!(after.node_of(16383).index, joined);
    assert_eq!(after.node_of(0).index, a);
    assert_eq!(out["moves"][0]["slots"], "8192-16383", "{out}");
    let pj = RawConnection::connect(&format!("127.0.{joined}.1:{port}"), true, None)
        .await
        .unwrap();
    assert_eq!(
        text(&pj.command(&["SET", "foo", "v"]).await.unwrap()),
        "+OK\r\n"
    );
    assert_eq!(
        text(&pa.command(&["GET", "{bar}k"]).await.unwrap()),
        "$1\r\nv\r\n"
    );
    // The topology names the new node.
    let slots = text(&pa.command(&["CLUSTER", "SLOTS"]).await.unwrap());
    assert!(slots.contains(&format!("127.0.{joined}.1")), "{slots}");
    emu.shutdown().await;
}

/// The `failover` action on an OSS Cluster API database: the shard's
/// replica takes over with `CLUSTER FAILOVER` (never `REPLICAOF`, which
/// cluster mode refuses), its slots are served from the replica's node, and
/// the change is announced as any topology change, SMIGRATING then SMIGRATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_action_on_a_cluster_database_moves_the_shard_to_its_replica() {
    let (emu, db) = two_shard_cluster(true).await;
    let port = db.port();
    let before = db.slot_map().await.unwrap();
    let a = before.node_of(0).index;
    let pa = RawConnection::connect(&format!("127.0.{a}.1:{port}"), true, Some(None))
        .await
        .unwrap();
    assert_eq!(
        text(&pa.command(&["SET", "{bar}k", "v"]).await.unwrap()),
        "+OK\r\n"
    );
    let first = db.shard_sets().await[0].clone();
    assert_eq!(first.primary_node, a);
    let shard = first.primary_id;
    let out = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": db.id(), "shard_id": shard}}),
    )
    .await
    .unwrap()
    .unwrap();
    let after = db.slot_map().await.unwrap();
    let to = after.node_of(0).index;
    assert_ne!(to, a, "{out}");
    assert_eq!(out["moves"][0]["slots"], "0-8191", "{out}");
    // The action ends once every node wrote SMIGRATED; it is read a moment
    // later.
    pa.wait_notification(Duration::from_secs(5), "SMIGRATED", |n| {
        n.kind() == Kind::SMigrated
    })
    .await
    .unwrap();
    let told: Vec<Kind> = pa
        .pushes()
        .into_iter()
        .filter_map(|(_, n)| n.ok().flatten().map(|n| n.kind()))
        .collect();
    assert_eq!(told, [Kind::SMigrating, Kind::SMigrated], "{out}");
    let pt = RawConnection::connect(&format!("127.0.{to}.1:{port}"), true, None)
        .await
        .unwrap();
    assert_eq!(
        text(&pt.command(&["GET", "{bar}k"]).await.unwrap()),
        "$1\r\nv\r\n"
    );
    emu.shutdown().await;
}

/// `shard_failure` and `migrate` on an OSS Cluster API database, as
/// node-redis's and Jedis's suites send them: a shard that dies is taken
/// over by its replica, unannounced, and a new replica joins the cluster on
/// the dead one's node; a migrated shard's slots move for real to a node
/// that held none (SMIGRATING, SMIGRATED), its keys with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_failure_and_migrate_work_on_a_cluster_database() {
    let (emu, db) = two_shard_cluster(true).await;
    let port = db.port();
    let first = db.shard_sets().await[0].clone();
    let a = first.primary_node;
    let pa = RawConnection::connect(&format!("127.0.{a}.1:{port}"), true, Some(None))
        .await
        .unwrap();
    assert_eq!(
        text(&pa.command(&["SET", "{bar}k", "v"]).await.unwrap()),
        "+OK\r\n"
    );
    let holds = |node: usize| {
        let pn = format!("127.0.{node}.1:{port}");
        async move {
            let c = RawConnection::connect(&pn, true, None).await.unwrap();
            text(&c.command(&["GET", "{bar}k"]).await.unwrap())
        }
    };

    // The first shard dies: its replica takes over, its node serves slot 0.
    let out = spawn_action(
        &emu,
        json!({"type": "shard_failure", "parameters": {"bdb_id": db.id(), "shard_id": first.primary_id}}),
    )
    .await
    .unwrap()
    .unwrap();
    let now = db.slot_map().await.unwrap().node_of(0).index;
    assert_eq!(Some(now), first.replica_node, "{out}");
    assert_eq!(holds(now).await, "$1\r\nv\r\n");
    let after = db.shard_sets().await[0].clone();
    assert_eq!(
        after.replica_node,
        Some(a),
        "a new replica on the dead one's node: {out}"
    );

    // That shard migrates: its node's slots go to a node that held none.
    let out = spawn_action(
        &emu,
        json!({"type": "migrate", "parameters": {"bdb_id": db.id(), "shard_id": after.primary_id}}),
    )
    .await
    .unwrap()
    .unwrap();
    let to = db.slot_map().await.unwrap().node_of(0).index;
    assert_ne!(to, now, "{out}");
    assert_eq!(holds(to).await, "$1\r\nv\r\n");
    assert!(
        out["smigrated_seqs"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{out}"
    );
    emu.shutdown().await;
}

/// A sharded subscriber (RESP2, so confirmations and messages are replies)
/// of two channels in different slots of one shard keeps both across that
/// shard's failover: the proxy subscribes again on the promoted shard one
/// channel at a time (a shard in cluster mode refuses one SSUBSCRIBE of
/// several slots with CROSSSLOT), and the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_subscription_of_several_slots_survives_a_failover() {
    let (emu, db) = two_shard_cluster(true).await;
    let port = db.port();
    let before = db.slot_map().await.unwrap();
    let a = before.node_of(0).index;
    let first = db.shard_sets().await[0].clone();
    assert_eq!(first.primary_node, a);
    // Two channels of the first shard's slots, in different slots.
    let mut channels: Vec<String> = Vec::new();
    for i in 0.. {
        let c = format!("news:{i}");
        let s = slot(c.as_bytes());
        if before.node_of(s).index == a && channels.iter().all(|o| slot(o.as_bytes()) != s) {
            channels.push(c);
        }
        if channels.len() == 2 {
            break;
        }
    }
    let sub = RawConnection::connect(&format!("127.0.{a}.1:{port}"), false, None)
        .await
        .unwrap();
    for c in &channels {
        let ok = text(&sub.command(&["SSUBSCRIBE", c]).await.unwrap());
        assert!(ok.contains("ssubscribe"), "{ok}");
    }
    let out = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": db.id(), "shard_id": first.primary_id}}),
    )
    .await
    .unwrap()
    .unwrap();
    let to = db.slot_map().await.unwrap().node_of(0).index;
    assert_ne!(to, a, "{out}");
    let publisher = RawConnection::connect(&format!("127.0.{to}.1:{port}"), false, None)
        .await
        .unwrap();
    for c in &channels {
        let n = text(&publisher.command(&["SPUBLISH", c, "after"]).await.unwrap());
        assert_eq!(
            n, ":1\r\n",
            "{c}: the promoted shard has no subscriber of it ({out})"
        );
    }
    // Both messages, awaited (a subscriber's connection sends nothing back).
    let messages = || -> Vec<String> {
        sub.frames()
            .into_iter()
            .filter_map(|f| match f {
                maint_e2e::raw::Frame::Reply { raw, .. } => Some(text(&raw)),
                _ => None,
            })
            .filter(|r| r.contains("smessage") && r.contains("after"))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while messages().len() < channels.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = messages();
    for c in &channels {
        assert!(
            got.iter().any(|m| m.contains(c.as_str())),
            "{c}: no message after the failover; got {got:?}"
        );
    }
    assert!(sub.closed_at().is_none());
    emu.shutdown().await;
}

/// A replicated cluster database stays one after its topology changes: the
/// shard a new node brings has a replica on another node, and a failover of
/// the database fails over every shard that serves slots, leaving one that
/// gave them all away (a failover of it alone is refused, and says why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_shard_has_a_replica_and_a_failover_leaves_an_empty_shard_be() {
    let (emu, db) = two_shard_cluster(true).await;
    // A node hands all its slots to a new node and leaves.
    let moved = spawn_action(
        &emu,
        json!({"type": "slot_migrate", "parameters": {
            "bdb_id": db.id(), "effect": "remove-add", "trigger": "migrate"}}),
    )
    .await
    .unwrap()
    .unwrap();
    let sets = db.shard_sets().await;
    assert_eq!(sets.len(), 3, "{moved}");
    let joined = &sets[2];
    let replica_node = joined.replica_node.expect("the new shard has a replica");
    assert_ne!(replica_node, joined.primary_node, "{sets:?}");
    let map = db.slot_map().await.unwrap();
    let serving = map.serving_sets();
    let empty: Vec<usize> = (0..sets.len()).filter(|i| !serving.contains(i)).collect();
    assert_eq!(empty.len(), 1, "one shard gave every slot away: {sets:?}");
    let empty_shard = sets[empty[0]].primary_id;

    let refused = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": db.id(), "shard_id": empty_shard}}),
    )
    .await
    .unwrap()
    .unwrap_err()
    .to_string();
    assert!(refused.contains("holds no hash slot"), "{refused}");

    let out = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": db.id()}}),
    )
    .await
    .unwrap()
    .unwrap();
    let failed_over = out["shards"].as_array().unwrap();
    assert_eq!(failed_over.len(), 2, "{out}");
    let after = db.shard_sets().await;
    // The joined shard's replica took over, on its own node.
    assert_eq!(after[2].primary_node, replica_node, "{after:?}");
    emu.shutdown().await;
}
