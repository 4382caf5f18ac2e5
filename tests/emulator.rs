//! The emulator over real sockets: maintenance windows and what each
//! connection is sent, what each effect sends, and process clean-up (its
//! API's answers are in `emulator_api.rs`). The proxy byte for byte is in `proxy.rs`.
#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{database, emulator, post, serve_api, spawn_action};
use maint_e2e::fault_injector::ActionState;
use maint_e2e::notification::{EndpointType, Kind, Notification};
use maint_e2e::raw::{Frame, RawConnection};
use maint_e2e::server_record::CloseCause;
use maint_e2e::wait::{poll, Look};
use maint_e2e::Action;
use maint_e2e::DatabaseSpec;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opting_in_mid_window_gets_the_start_before_ok() {
    let emu = emulator(Duration::from_millis(1500));
    let (id, addr) = database(&emu, true).await;
    let before = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    let task = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": id}}),
    );
    before
        .wait_notification(Duration::from_secs(5), "FAILING_OVER", |n| {
            n.kind() == Kind::FailingOver
        })
        .await
        .unwrap();
    // The window is open for about 1.5 s: join it now.
    let late = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    let frames = late.frames();
    assert!(
        matches!(
            &frames[1],
            Frame::Push {
                notification: Ok(Some(Notification::FailingOver { .. })),
                ..
            }
        ),
        "{frames:?}"
    );
    assert!(
        matches!(&frames[2], Frame::Reply { raw, .. } if raw == b"+OK\r\n"),
        "{frames:?}"
    );
    let Frame::Push {
        notification: Ok(Some(n)),
        ..
    } = &frames[1]
    else {
        unreachable!()
    };
    assert!(n.time_s().unwrap() <= 3, "{n}");
    task.await.unwrap().unwrap();
    let (_, done) = late
        .wait_notification(Duration::from_secs(5), "FAILED_OVER", |n| {
            n.kind() == Kind::FailedOver
        })
        .await
        .unwrap();
    assert_eq!(done.seq(), n.seq() + 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_is_formatted_per_connection_and_the_old_node_closes_after_the_grace() {
    let emu = emulator(Duration::from_millis(100));
    let (id, addr) = database(&emu, false).await;
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let ip = RawConnection::connect(&addr, true, Some(Some(EndpointType::InternalIp)))
        .await
        .unwrap();
    let ext = RawConnection::connect(&addr, true, Some(Some(EndpointType::ExternalIp)))
        .await
        .unwrap();
    let none = RawConnection::connect(&addr, true, Some(Some(EndpointType::None)))
        .await
        .unwrap();
    let fqdn = RawConnection::connect(&addr, true, Some(Some(EndpointType::InternalFqdn)))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let out = emu
        .run(
            &Action::parse(&json!({"type": "bind", "parameters": {"bdb_id": id, "grace_s": 1}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let to = out["to_node"].as_u64().unwrap();
    let endpoint = |p: &RawConnection| match p.pushes().first() {
        Some((_, Ok(Some(Notification::Moving { endpoint, .. })))) => {
            endpoint.clone().map(|e| e.to_string())
        }
        other => panic!("expected MOVING, got {other:?}"),
    };
    assert_eq!(endpoint(&ip), Some(format!("127.0.{to}.1:{port}")));
    assert_eq!(endpoint(&ext), Some(format!("127.0.{to}.2:{port}")));
    assert_eq!(endpoint(&fqdn), Some(format!("localhost:{port}")));
    assert_eq!(endpoint(&none), None);
    for p in [&ip, &ext, &none, &fqdn] {
        let closed = p.wait_closed(Duration::from_secs(5)).await.unwrap();
        let took = closed - started;
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_millis(2500),
            "{took:?}"
        );
    }
    // The old node no longer listens; the new node and the public address serve.
    assert!(TcpStream::connect(("127.0.1.1", port)).await.is_err());
    RawConnection::connect(&format!("127.0.{to}.1:{port}"), false, None)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    RawConnection::connect(&addr, false, None)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_redis_server_behind() {
    let emu = emulator(Duration::from_millis(100));
    database(&emu, true).await;
    database(&emu, true).await;
    let pids = emu.shard_pids().await;
    assert_eq!(pids.len(), 4);
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    emu.shutdown().await;
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "redis-server {pid} survived"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_never_split_across_a_failover() {
    let emu = emulator(Duration::from_millis(50));
    let (id, addr) = database(&emu, true).await;
    let db = emu.database(id).unwrap();
    let p = RawConnection::connect(&addr, true, None).await.unwrap();
    assert_eq!(p.command(&["MULTI"]).await.unwrap(), b"+OK\r\n");
    assert_eq!(
        p.command(&["SET", "tx", "1"]).await.unwrap(),
        b"+QUEUED\r\n"
    );
    let failover = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": id}}),
    );
    // The switch-over now waits for the open transaction.
    let gated = poll(
        Duration::from_millis(10),
        Duration::from_secs(5),
        || async {
            Ok::<_, ()>(match db.is_switching() {
                true => Look::Ready(()),
                false => Look::NotYet(()),
            })
        },
    )
    .await;
    assert_eq!(gated, Ok(Ok(())), "the failover never reached the gate");
    assert!(!failover.is_finished());
    assert_eq!(p.command(&["EXEC"]).await.unwrap(), b"*1\r\n+OK\r\n");
    failover.await.unwrap().unwrap();
    assert_eq!(p.command(&["GET", "tx"]).await.unwrap(), b"$1\r\n1\r\n");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_refused_before_anything_starts() {
    let emu = emulator(Duration::from_millis(50));
    let taken = std::net::TcpListener::bind("127.0.2.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = emu
        .create_database(DatabaseSpec {
            port: Some(port),
            ..DatabaseSpec::default()
        })
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains(&format!("port {port} is taken")),
        "{err}"
    );
    assert!(emu.shard_pids().await.is_empty());
    emu.shutdown().await;
}

/// The pushes a probe received, as (kind, seq).
fn received(p: &RawConnection) -> Vec<(Kind, i64)> {
    p.pushes()
        .into_iter()
        .filter_map(|(_, n)| n.ok().flatten())
        .map(|n| (n.kind(), n.seq()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_standalone_effect_sends_what_the_catalogue_promises() {
    let emu = emulator(Duration::from_millis(100));
    let (id, addr) = database(&emu, true).await;
    let effect = |effect: &str| {
        json!({"type": "topology_change_standalone", "parameters": {
            "bdb_id": id, "effect": effect, "grace_s": 0.6, "cluster_index": 0}})
    };
    let kept = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    spawn_action(&emu, effect("data_movement_no_conn_drop"))
        .await
        .unwrap()
        .unwrap();
    kept.wait_notification(Duration::from_secs(3), "MIGRATED", |n| {
        n.kind() == Kind::Migrated
    })
    .await
    .unwrap();
    assert_eq!(
        received(&kept),
        vec![(Kind::Migrating, 1), (Kind::Migrated, 2)]
    );
    assert!(kept.closed_at().is_none());
    kept.ping().await.unwrap();

    let moved = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    let out = spawn_action(&emu, effect("data_movement_conn_drop"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out["trigger"], "migrate");
    // The endpoint followed the data to its node.
    assert_eq!(
        out["result"]["migrate"]["node"],
        out["result"]["bind"]["to_node"]
    );
    let (moving_at, _) = moved
        .wait_notification(Duration::from_secs(3), "MOVING", |n| {
            n.kind() == Kind::Moving
        })
        .await
        .unwrap();
    let (migrated_at, _) = moved
        .wait_notification(Duration::from_secs(3), "MIGRATED 4", |n| {
            n.kind() == Kind::Migrated && n.seq() == 4
        })
        .await
        .unwrap();
    // The rebind is its own maintenance: it starts a lead (100 ms) after MIGRATED.
    let gap = moving_at - migrated_at;
    assert!(gap >= Duration::from_millis(90), "{gap:?}");
    let got = received(&moved);
    // The last completion (MIGRATED 2) is replayed first, then this event.
    assert_eq!(
        &got[..4],
        &[
            (Kind::Migrated, 2),
            (Kind::Migrating, 3),
            (Kind::Migrated, 4),
            (Kind::Moving, 5)
        ],
        "{got:?}"
    );
    moved.wait_closed(Duration::from_secs(3)).await.unwrap();

    // conn_drop: MOVING, then the close; dns_resolution_change: the close
    // alone, the public address leading to the new node.
    for (e, pushes) in [("conn_drop", 1), ("dns_resolution_change", 0)] {
        let p = RawConnection::connect(&addr, true, Some(None))
            .await
            .unwrap();
        let before = emu.database(id).unwrap().active_node();
        let out = spawn_action(&emu, effect(e)).await.unwrap().unwrap();
        p.wait_closed(Duration::from_secs(3)).await.unwrap();
        // (A MOVING is sent again half-way through the grace: one seq.)
        let mut moving: Vec<i64> = received(&p)
            .iter()
            .filter(|(k, _)| *k == Kind::Moving)
            .map(|(_, seq)| *seq)
            .collect();
        moving.dedup();
        let moving = moving.len();
        assert_eq!(moving, pushes, "{e}: {out}");
        assert_ne!(
            emu.database(id).unwrap().active_node(),
            before,
            "{e}: {out}"
        );
    }
    // The older trigger names still run.
    let old = json!({"type": "topology_change_standalone", "parameters": {
        "bdb_id": id, "effect": "data_movement_no_conn_drop", "trigger": "shard_failover"}});
    let out = spawn_action(&emu, old).await.unwrap().unwrap();
    assert_eq!(out["trigger"], "failover", "{out}");
    let bad = Action::parse(
        &json!({"type": "topology_change_standalone", "parameters": {
        "bdb_id": id, "effect": "conn_drop", "trigger": "maintenance_mode"}}),
    )
    .unwrap();
    let e = emu.run(&bad).await.unwrap_err().to_string();
    assert!(e.contains("endpoint_rebind"), "{e}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_completion_is_replayed_to_new_connections_unless_turned_off() {
    let emu = emulator(Duration::from_millis(100));
    for replay in [true, false] {
        let db = emu
            .create_database(DatabaseSpec {
                replay_completion: Some(replay),
                ..DatabaseSpec::default()
            })
            .await
            .unwrap();
        let addr = format!("127.0.0.1:{}", db.port());
        spawn_action(
            &emu,
            json!({"type": "failover", "parameters": {"bdb_id": db.id()}}),
        )
        .await
        .unwrap()
        .unwrap();
        let late = RawConnection::connect(&addr, true, Some(None))
            .await
            .unwrap();
        let frames = late.frames();
        if replay {
            assert!(
                matches!(
                    &frames[1],
                    Frame::Push {
                        notification: Ok(Some(Notification::FailedOver { seq: 2, .. })),
                        ..
                    }
                ),
                "{frames:?}"
            );
            assert!(matches!(&frames[2], Frame::Reply { raw, .. } if raw == b"+OK\r\n"));
        } else {
            assert_eq!(frames.len(), 2, "nothing but the two replies: {frames:?}");
        }
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_delays_replies_while_it_lasts() {
    let emu = emulator(Duration::from_millis(100));
    let (id, addr) = database(&emu, false).await;
    let p = RawConnection::connect(&addr, true, None).await.unwrap();
    let cancel = CancellationToken::new();
    let api = serve_api(&emu, &cancel).await;
    let url = format!("http://{api}");
    let (status, accepted) = post(
        &url,
        &json!({"type": "network_latency", "parameters": {"bdb_id": id, "delay_ms": 400, "duration_s": 1.0}})
            .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    // In force as soon as the action is accepted.
    let t = tokio::time::Instant::now();
    p.ping().await.unwrap();
    let slow = t.elapsed();
    assert!(
        slow >= Duration::from_millis(400) && slow < Duration::from_millis(900),
        "{slow:?}"
    );
    let fi = maint_e2e::fault_injector::FaultInjectorClient::new(&url).unwrap();
    let done = fi
        .wait(
            accepted["action_id"].as_str().unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ActionState::Success, "{done:?}");
    let t = tokio::time::Instant::now();
    p.ping().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    cancel.cancel();
    let bad = Action::parse(&json!({"type": "network_latency", "parameters": {
        "bdb_id": id, "delay_ms": 10, "duration_s": 1, "node": 9}}))
    .unwrap();
    let e = emu.run(&bad).await.unwrap_err().to_string();
    assert!(e.contains("node 9 does not exist"), "{e}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_reaches_late_public_connections_that_dialled_an_address_and_is_resent_to_those_that_stay(
) {
    let emu = emulator(Duration::from_millis(100));
    let (id, addr) = database(&emu, false).await;
    let stays = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    let task = spawn_action(
        &emu,
        json!({"type": "bind", "parameters": {"bdb_id": id, "grace_s": 1.2}}),
    );
    let (first_at, first) = stays
        .wait_notification(Duration::from_secs(3), "MOVING", |n| {
            n.kind() == Kind::Moving
        })
        .await
        .unwrap();
    // A connection made through the public address during the window that
    // asks for an address is told too: it dialled the address being left.
    let late = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    let frames = late.frames();
    assert!(
        matches!(&frames[1], Frame::Push { notification: Ok(Some(n)), .. } if n.seq() == first.seq()),
        "{frames:?}"
    );
    // One that asks for a host name or none came through the name, which
    // leads where MOVING points already (as a handoff does): nothing.
    for ty in [
        EndpointType::InternalFqdn,
        EndpointType::ExternalFqdn,
        EndpointType::None,
    ] {
        let follows = RawConnection::connect(&addr, true, Some(Some(ty)))
            .await
            .unwrap();
        let frames = follows.frames();
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::Push { .. })),
            "{ty}: {frames:?}"
        );
    }
    // The one that stays on the old node gets MOVING again half-way through.
    let again = stays
        .wait_until_count(Duration::from_secs(3), Kind::Moving, 2)
        .await
        .unwrap();
    let took = again - first_at;
    assert!(
        took >= Duration::from_millis(400) && took <= Duration::from_millis(1000),
        "{took:?}"
    );
    task.await.unwrap().unwrap();
    emu.shutdown().await;
}

/// A connection that names itself in its HELLO (`SETNAME`, after `AUTH` or
/// not) is in the server's record under that name, as one named with
/// `CLIENT SETNAME` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_given_in_hello_is_in_the_record() {
    let emu = emulator(Duration::from_millis(100));
    let db = emu.create_database(DatabaseSpec::default()).await.unwrap();
    let addr = format!("127.0.0.1:{}", db.port());
    let plain = RawConnection::connect(&addr, true, None).await.unwrap();
    plain
        .command(&["HELLO", "3", "SETNAME", "hello-named"])
        .await
        .unwrap();
    let authed = RawConnection::connect(&addr, true, None).await.unwrap();
    authed
        .command(&[
            "HELLO",
            "3",
            "AUTH",
            "default",
            "any",
            "SETNAME",
            "after-auth",
        ])
        .await
        .unwrap();
    let record = db.record(None, &emu.nodes()).await;
    let names: Vec<Option<&str>> = record
        .connections
        .iter()
        .map(|c| c.name.as_deref())
        .collect();
    assert_eq!(
        names,
        [Some("hello-named"), Some("after-auth")],
        "{record:?}"
    );
    emu.shutdown().await;
}

/// Past its `max_connections`, a database tells a new connection why and
/// closes it, as Redis does past `maxclients`; the server's record keeps it;
/// once a connection closes, there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_past_its_connection_limit_says_so_and_closes() {
    let emu = emulator(Duration::from_millis(100));
    let db = emu
        .create_database(DatabaseSpec {
            max_connections: Some(2),
            ..DatabaseSpec::default()
        })
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", db.port());
    let first = RawConnection::connect(&addr, false, None).await.unwrap();
    let second = RawConnection::connect(&addr, false, None).await.unwrap();
    // Answered: both are registered (each connection registers in its own
    // task, in whatever order the tasks run) before the third arrives.
    first.ping().await.unwrap();
    second.ping().await.unwrap();
    let mut third = TcpStream::connect(&addr).await.unwrap();
    let mut said = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut said))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(said, "-ERR max number of clients reached\r\n");
    let record = db.record(None, &emu.nodes()).await;
    let refused = record.connections.last().unwrap();
    assert_eq!(refused.closed_by, Some(CloseCause::Error));
    assert!(
        refused
            .close_detail
            .as_deref()
            .is_some_and(|d| d.contains("at most 2 connections")),
        "{refused:?}"
    );
    drop(first);
    let room = poll(
        Duration::from_millis(20),
        Duration::from_secs(5),
        || async {
            anyhow::Ok(match RawConnection::connect(&addr, false, None).await {
                Ok(c) if c.ping().await.is_ok() => Look::Ready(c),
                _ => Look::NotYet(()),
            })
        },
    )
    .await
    .unwrap();
    assert!(room.is_ok(), "no room after a connection closed");
    emu.shutdown().await;
}
