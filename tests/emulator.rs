//! The emulator over real sockets: maintenance windows and what each
//! connection is sent, the fault injector API, the trigger catalogue, and
//! process clean-up. The proxy byte for byte is in `proxy.rs`.
#![forbid(unsafe_code)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{database, emulator, spawn_action};
use maint_e2e::emulator::{api, Emulator};
use maint_e2e::fault_injector::ActionState;
use maint_e2e::notification::{EndpointType, Kind, Notification};
use maint_e2e::raw::{Frame, RawConnection};
use maint_e2e::wait::{poll, Look};
use maint_e2e::Action;
use maint_e2e::DatabaseSpec;
use serde_json::{json, Value};
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

/// The emulator's fault injector API on a free loopback port, until `cancel`.
async fn serve_api(emu: &Arc<Emulator>, cancel: &CancellationToken) -> std::net::SocketAddr {
    api::serve(
        emu.clone(),
        ([127, 0, 0, 1], 0).into(),
        &api::ApiOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap()
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/action"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_bad_input_with_status_and_a_message() {
    let emu = emulator(Duration::from_millis(100));
    let (id, _) = database(&emu, false).await;
    let cancel = CancellationToken::new();
    let addr = serve_api(&emu, &cancel).await;
    let url = format!("http://{addr}");
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "not JSON"),
        ("[1,2]".into(), 422, "JSON object"),
        (r#"{"type": "explode"}"#.into(), 422, "unknown action type"),
        (
            r#"{"type": "failover", "parameters": {}}"#.into(),
            422,
            "bdb_id",
        ),
        (
            r#"{"type": "failover", "parameters": {"bdb_id": "x"}}"#.into(),
            422,
            "bdb_id",
        ),
        (
            r#"{"type": "failover", "parameters": {"bdb_id": 99}}"#.into(),
            422,
            "no database with bdb_id 99",
        ),
        (
            format!(r#"{{"type": "migrate", "parameters": {{"bdb_id": {id}, "target_node": 7}}}}"#),
            202,
            "",
        ),
    ];
    for (body, want, msg) in cases {
        let (status, v) = post(&url, &body).await;
        if want == 202 {
            // Accepted, then failed: the error is on the action.
            assert_eq!(status, 200, "{body}: {v}");
            let s = maint_e2e::fault_injector::FaultInjectorClient::new(&url)
                .unwrap()
                .wait(v["action_id"].as_str().unwrap(), Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(s.status, ActionState::Failed);
            assert!(s.error_text().contains("target_node 7 does not exist"));
            continue;
        }
        assert_eq!(status, want, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(msg), "{body}: {v}");
    }
    let r = reqwest::get(format!("{url}/action/nope")).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = reqwest::get(format!("{url}/no/such/route")).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("POST /action"));

    // A second action on a busy database is queued, as a real cluster
    // queues it: pending until the first ends, then it runs.
    let (s1, v1) = post(
        &url,
        &format!(r#"{{"type": "bind", "parameters": {{"bdb_id": {id}, "grace_s": 1}}}}"#),
    )
    .await;
    assert_eq!(s1, 200, "{v1}");
    let (s2, v2) = post(
        &url,
        &format!(r#"{{"type": "bind", "parameters": {{"bdb_id": {id}, "grace_s": 1}}}}"#),
    )
    .await;
    assert_eq!(s2, 200, "{v2}");
    let fi = maint_e2e::fault_injector::FaultInjectorClient::new(&url).unwrap();
    let (a1, a2) = (
        v1["action_id"].as_str().unwrap(),
        v2["action_id"].as_str().unwrap(),
    );
    assert_eq!(fi.status(a2).await.unwrap().status, ActionState::Pending);
    // Deleting a database with actions queued is refused, saying why.
    let (s3, v3) = post(
        &url,
        &format!(r#"{{"type": "delete_database", "parameters": {{"bdb_id": {id}}}}}"#),
    )
    .await;
    assert_eq!(s3, 409, "{v3}");
    assert!(
        v3["error"].as_str().unwrap().contains("queued or running"),
        "{v3}"
    );
    let first = fi.wait(a1, Duration::from_secs(10)).await.unwrap();
    let second = fi.wait(a2, Duration::from_secs(10)).await.unwrap();
    assert!(first.status.is_success() && second.status.is_success());
    assert!(
        second.start_time.unwrap() >= first.end_time.unwrap(),
        "the second bind ran before the first ended: {first:?} {second:?}"
    );
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    cancel.cancel();
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_go_pending_running_success_and_failures_carry_an_error() {
    let emu = emulator(Duration::from_millis(300));
    let cancel = CancellationToken::new();
    let addr = serve_api(&emu, &cancel).await;
    let fi =
        maint_e2e::fault_injector::FaultInjectorClient::new(&format!("http://{addr}")).unwrap();
    let created = fi
        .create_database(
            DatabaseSpec {
                replication: Some(false),
                ..DatabaseSpec::named("solo")
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let id = created.bdb_id;
    assert!(created.endpoints[0].starts_with("redis://127.0.0.1:"));

    let action = fi.submit(&Action::migrate(id)).await.unwrap().action_id;
    let seen = std::sync::Mutex::new(Vec::new());
    let ended = poll(
        Duration::from_millis(20),
        Duration::from_secs(30),
        || async {
            let s = fi.status(&action).await?;
            let mut states = seen.lock().unwrap();
            if states.last() != Some(&s.status) {
                states.push(s.status);
            }
            Ok::<_, maint_e2e::fault_injector::FaultInjectorError>(match s.is_terminal() {
                true => Look::Ready(s),
                false => Look::NotYet(s.status),
            })
        },
    )
    .await;
    let s = ended.unwrap().unwrap();
    assert!(s.end_time.is_some() && s.start_time.is_some());
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&ActionState::Success), "{seen:?}");
    let lifecycle = [
        ActionState::Pending,
        ActionState::Running,
        ActionState::Success,
    ];
    assert!(seen.iter().all(|s| lifecycle.contains(s)), "{seen:?}");

    let failed = fi.submit(&Action::failover(id)).await.unwrap().action_id;
    let s = fi.wait(&failed, Duration::from_secs(10)).await.unwrap();
    assert_eq!(s.status, ActionState::Failed);
    assert!(s.error_text().contains("no replica"));

    let rladmin = Action::ExecuteRladminCommand {
        rladmin_command: "status".into(),
        bdb_id: None,
    };
    let status = fi.run(&rladmin, Duration::from_secs(10)).await.unwrap();
    let text = status.output.unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("DATABASES:") && text.contains(&format!("db:{id} solo")),
        "{text}"
    );

    let list: Value = reqwest::get(format!("http://{addr}/action"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["actions"].as_array().unwrap().len(), 4);

    let delete = Action::DeleteDatabase {
        bdb_id: maint_e2e::fault_injector::BdbId(id),
    };
    fi.run(&delete, Duration::from_secs(10)).await.unwrap();
    assert!(emu.database(id).is_none());
    cancel.cancel();
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

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_catalogue_lists_every_standalone_effect_and_refuses_bad_queries() {
    let emu = emulator(Duration::from_millis(100));
    let cancel = CancellationToken::new();
    let addr = serve_api(&emu, &cancel).await;
    let url = format!("http://{addr}");
    for effect in [
        "data_movement_no_conn_drop",
        "data_movement_conn_drop",
        "conn_drop",
        "dns_resolution_change",
    ] {
        let (status, body) = get(&format!(
            "{url}/topology-change-standalone?effect={effect}&cluster_index=0"
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["effect"], effect);
        assert_eq!(body["cluster"]["nodes"].as_array().unwrap().len(), 3);
        let triggers = body["triggers"].as_array().unwrap();
        assert!(!triggers.is_empty());
        for t in triggers {
            assert_ne!(t["name"], "maintenance_mode");
            let db = &t["requirements"][0]["dbconfig"];
            assert_eq!(db["shards_count"], 1, "{t}");
            // Callers keep the name up to its last two dashes.
            assert!(
                db["name"].as_str().unwrap().matches('-').count() >= 2,
                "{t}"
            );
        }
    }
    let (status, body) = get(&format!("{url}/topology-change-standalone?effect=teleport")).await;
    assert_eq!(status, 422);
    assert!(
        body["error"].as_str().unwrap().contains("conn_drop"),
        "{body}"
    );
    let (status, body) = get(&format!("{url}/topology-change-standalone")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("effect"), "{body}");
    let (status, body) = get(&format!("{url}/slot-migrate?effect=teleport")).await;
    assert_eq!(status, 422);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("slot-shuffle, add, remove, remove-add"),
        "{body}"
    );
    let post_slots = |q: &str| {
        let u = format!("{url}/slot-migrate?{q}");
        async move {
            let r = reqwest::Client::new().post(u).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post_slots("bdb_id=1").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("effect"), "{body}");
    // No such database: refused at once, saying which exist.
    let (status, body) = post_slots("effect=add&bdb_id=1&variant=migrate").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no database with bdb_id 1"),
        "{body}"
    );
    // rladmin status is cluster-wide: a bdb_id that does not exist is fine.
    let (status, body) = post(
        &url,
        r#"{"type": "execute_rladmin_command", "parameters": {"rladmin_command": "status", "bdb_id": 99}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    cancel.cancel();
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
    assert_eq!(out["trigger"], "shard_migrate_endpoint_follows");
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

    for e in ["conn_drop", "dns_resolution_change"] {
        let p = RawConnection::connect(&addr, true, Some(None))
            .await
            .unwrap();
        spawn_action(&emu, effect(e)).await.unwrap().unwrap();
        p.wait_notification(Duration::from_secs(3), e, |n| n.kind() == Kind::Moving)
            .await
            .unwrap();
        p.wait_closed(Duration::from_secs(3)).await.unwrap();
    }
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
async fn moving_reaches_late_public_connections_and_is_resent_to_those_that_stay() {
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
    // A connection made through the public address during the window is told too.
    let late = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    let frames = late.frames();
    assert!(
        matches!(&frames[1], Frame::Push { notification: Ok(Some(n)), .. } if n.seq() == first.seq()),
        "{frames:?}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_overrides_out_of_range_are_refused_with_their_name() {
    let emu = emulator(Duration::from_millis(100));
    let e = emu
        .create_database(serde_json::from_value(json!({"name": "x", "grace_s": -1})).unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("grace_s must be"), "{e}");
    let (id, _) = database(&emu, true).await;
    let a =
        Action::parse(&json!({"type": "failover", "parameters": {"bdb_id": id, "lead_s": 4000}}))
            .unwrap();
    let e = emu.run(&a).await.unwrap_err().to_string();
    assert!(e.contains("lead_s must be"), "{e}");
    emu.shutdown().await;
}
