//! The client and the emulator together, beyond what the features assert: the
//! client releases the old connection as soon as it handed off, and a sequence
//! of actions runs in order.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use maint_e2e::client::{Client, ClientFactory, ClientOptions, EventKind, Mode};
use maint_e2e::emulator::ActionError;
use maint_e2e::emulator::Node;
use maint_e2e::emulator::{Emulator, EmulatorConfig, Timings};
use maint_e2e::tracker::Tracker;
use maint_e2e::Action;
use maint_e2e::DatabaseSpec;
use serde_json::json;

/// An emulator with one database, and a client factory whose events a tracker records.
struct Setup {
    emu: Arc<Emulator>,
    db: Arc<maint_e2e::emulator::Database>,
    tracker: Arc<Tracker>,
    factory: ClientFactory,
}

/// Runs one fault injector action (`{"type", "parameters"}`) to its end.
async fn act(
    emu: &Arc<Emulator>,
    body: serde_json::Value,
) -> Result<serde_json::Value, ActionError> {
    emu.run(&Action::parse(&body).unwrap()).await
}

/// A client of `factory` with notifications enabled and `o` otherwise.
async fn enabled_client(factory: &ClientFactory, o: ClientOptions) -> Arc<Client> {
    factory
        .create(
            "app",
            ClientOptions {
                mode: Mode::Enabled,
                ..o
            },
        )
        .await
        .unwrap()
}

/// `send_push` of `elements` to every opted-in connection of database `id`.
async fn push(
    emu: &Arc<Emulator>,
    id: u64,
    elements: serde_json::Value,
) -> Result<serde_json::Value, ActionError> {
    act(
        emu,
        json!({"type": "send_push", "parameters": {"bdb_id": id, "push": elements}}),
    )
    .await
}

async fn setup(nodes: usize, grace: Duration) -> Setup {
    let emu = Emulator::new(EmulatorConfig {
        nodes,
        // The client's windows are timed here; the hold of a switch-over is
        // the acceptance suite's business.
        timings: Timings {
            hold: Duration::ZERO,
            ..Timings::fast(grace)
        },
        ..EmulatorConfig::default()
    })
    .unwrap();
    let db = emu.create_database(DatabaseSpec::default()).await.unwrap();
    let tracker = Arc::new(Tracker::new());
    let config = emu.endpoints_file().database(db.name()).unwrap().clone();
    let factory = ClientFactory::new(config, tracker.clone());
    Setup {
        emu,
        db,
        tracker,
        factory,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_connection_is_released_long_before_the_grace_ends() {
    let Setup {
        emu,
        db,
        tracker,
        factory,
    } = setup(2, Duration::from_secs(5)).await;
    let client = enabled_client(
        &factory,
        ClientOptions {
            pool_size: 3,
            ..ClientOptions::default()
        },
    )
    .await;
    let from = db.active_node();
    assert_eq!(db.connections_on(from), 3);
    let bind = {
        let emu = emu.clone();
        let id = db.id();
        tokio::spawn(async move {
            act(&emu, json!({"type": "bind", "parameters": {"bdb_id": id}})).await
        })
    };
    tracker
        .wait_for(Duration::from_secs(5), "three handoffs", |events| {
            (events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::HandoffSucceeded { .. }))
                .count()
                == 3)
                .then_some(())
        })
        .await
        .unwrap();
    let to = Node {
        index: from.index % 2 + 1,
    };
    // Well within the 5 s grace: the server has not closed anything yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while db.connections_on(from) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections still open on the old node",
            db.connections_on(from)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(db.connections_on(to), 3);
    assert!(
        !bind.is_finished(),
        "the grace period should still be running"
    );
    let pong: String = client.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    factory.destroy_all().await;
    bind.abort();
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_of_actions_runs_in_order_and_reports_each_step() {
    let emu = Emulator::new(EmulatorConfig {
        nodes: 3,
        timings: Timings::fast(Duration::from_secs(1)),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let db = emu.create_database(DatabaseSpec::default()).await.unwrap();
    let first_primary = db.shard_sets().await[0].primary_id;
    let out = act(
        &emu,
        json!({"type": "sequence_of_actions", "parameters": {
        "bdb_id": db.id(),
        "actions": [
            {"type": "failover", "params": {}},
            {"type": "migrate", "params": {}, "delay": 0.1},
            {"type": "bind", "params": {"grace_s": 0.2}}
        ]}}),
    )
    .await
    .unwrap();
    let steps = out["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let seqs: Vec<i64> = steps.iter().map(|s| s["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 3, 5], "each event takes N and reserves N+1");
    assert_ne!(
        steps[0]["primary_shard"].as_u64().unwrap() as u32,
        first_primary
    );

    let bad = act(
        &emu,
        json!({"type": "sequence_of_actions", "parameters": {
            "bdb_id": db.id(), "actions": [{"type": "teleport", "params": {}}]}}),
    )
    .await
    .unwrap_err();
    assert!(
        bad.to_string()
            .contains("step 0: unknown action type \"teleport\""),
        "{bad}"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_completion_is_closed_by_the_backstop_and_nested_windows_wait_for_it() {
    let Setup {
        emu,
        db,
        tracker,
        factory,
    } = setup(3, Duration::from_secs(1)).await;
    let backstop = Duration::from_secs(3);
    let client = enabled_client(
        &factory,
        ClientOptions {
            relaxed_timeout: Duration::from_secs(2),
            relaxed_window_max: Some(backstop),
            post_handoff_relaxed: Some(Duration::from_millis(100)),
            response_timeout: Some(Duration::from_millis(500)),
            ..ClientOptions::default()
        },
    )
    .await;
    let conn = client.connections()[0].clone();
    let id = db.id();
    let run = |body: serde_json::Value| {
        let emu = emu.clone();
        async move { act(&emu, body).await.unwrap() }
    };
    run(json!({"type": "failover", "parameters": {"bdb_id": id, "drop_completion": true}})).await;
    run(json!({"type": "migrate", "parameters": {"bdb_id": id}})).await;
    let kinds = |e: &maint_e2e::client::ClientEvent| match &e.kind {
        EventKind::Notification {
            notification: n, ..
        } => Some((n.kind(), e.at)),
        _ => None,
    };
    let (migrated_at, failing_over_at) = tracker
        .wait_for(Duration::from_secs(5), "MIGRATED", |events| {
            let got: Vec<_> = events.iter().filter_map(kinds).collect();
            let fo = got
                .iter()
                .find(|(k, _)| *k == maint_e2e::notification::Kind::FailingOver)?;
            let m = got
                .iter()
                .find(|(k, _)| *k == maint_e2e::notification::Kind::Migrated)?;
            Some((m.1, fo.1))
        })
        .await
        .unwrap();
    assert!(
        tracker.events().iter().all(|e| !matches!(
            e.kind,
            EventKind::Notification {
                notification: maint_e2e::notification::Notification::FailedOver { .. },
                ..
            }
        )),
        "the emulator was asked to lose FAILED_OVER"
    );
    // MIGRATED closed its own window only: FAILING_OVER's is still open.
    assert!(migrated_at < failing_over_at + backstop);
    assert!(conn.is_relaxed());
    assert_eq!(conn.effective_timeout(), Some(Duration::from_secs(2)));
    let unrelaxed_at = tracker
        .wait_for(Duration::from_secs(10), "the backstop", |events| {
            events
                .iter()
                .find_map(|e| matches!(e.kind, EventKind::Unrelaxed { .. }).then_some(e.at))
        })
        .await
        .unwrap();
    let took = unrelaxed_at - failing_over_at;
    assert!(
        took >= backstop.mul_f64(0.8) && took <= backstop.mul_f64(1.5),
        "un-relaxed {took:?} after FAILING_OVER"
    );
    assert_eq!(conn.effective_timeout(), Some(Duration::from_millis(500)));
    let toggles = tracker
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Relaxed { .. } | EventKind::Unrelaxed { .. }
            )
        })
        .count();
    assert_eq!(
        toggles,
        2,
        "nested windows relax once and un-relax once:\n{}",
        tracker.describe("app")
    );
    factory.destroy_all().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pushes_are_reported_and_dropped_and_liberal_ones_understood() {
    let Setup {
        emu,
        db,
        tracker,
        factory,
    } = setup(2, Duration::from_secs(1)).await;
    let client = enabled_client(
        &factory,
        ClientOptions {
            post_handoff_relaxed: Some(Duration::from_millis(50)),
            ..ClientOptions::default()
        },
    )
    .await;
    let id = db.id();
    let send = |elements: serde_json::Value| {
        let emu = emu.clone();
        async move { push(&emu, id, elements).await.unwrap() }
    };
    let out = send(json!(["MOVING", "soon", 15])).await;
    assert_eq!(out["bytes"], ">3\r\n$6\r\nMOVING\r\n$4\r\nsoon\r\n:15\r\n");
    tracker
        .wait_for(
            Duration::from_secs(5),
            "the malformed MOVING to be reported",
            |events| {
                events.iter().find_map(|e| match &e.kind {
                    EventKind::MalformedPush { name, error }
                        if name == "MOVING" && error.contains("seq") =>
                    {
                        Some(())
                    }
                    _ => None,
                })
            },
        )
        .await
        .unwrap();
    let pong: String = client.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG", "the connection stays in sync");
    assert!(
        !client.connections()[0].is_relaxed(),
        "a dropped push opens nothing"
    );

    // Lower-case names, numeric strings and extra elements are understood.
    send(json!(["migrating", "41", "2", "1", "extra"])).await;
    tracker
        .wait_for(Duration::from_secs(5), "relaxation", |events| {
            events
                .iter()
                .find_map(|e| matches!(e.kind, EventKind::Relaxed { .. }).then_some(()))
        })
        .await
        .unwrap();
    send(json!(["Migrated", 42])).await;
    tracker
        .wait_for(Duration::from_secs(5), "un-relaxation", |events| {
            events
                .iter()
                .find_map(|e| matches!(e.kind, EventKind::Unrelaxed { .. }).then_some(()))
        })
        .await
        .unwrap();

    let bad = push(&emu, id, json!([7])).await.unwrap_err();
    assert!(bad.to_string().contains("name as a string"), "{bad}");
    factory.destroy_all().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_handoff_target_is_retried_then_given_up_without_a_wedge() {
    let Setup {
        emu,
        db,
        tracker,
        factory,
    } = setup(2, Duration::from_secs(1)).await;
    let client = enabled_client(
        &factory,
        ClientOptions {
            handoff_timeout: Duration::from_millis(300),
            max_handoff_retries: 2,
            post_handoff_relaxed: Some(Duration::from_millis(50)),
            ..ClientOptions::default()
        },
    )
    .await;
    let before = client.connections()[0].endpoint();
    // Accepts TCP (the kernel's backlog) but never answers a byte.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = hole.local_addr().unwrap().to_string();
    let started = tokio::time::Instant::now();
    push(&emu, db.id(), json!(["MOVING", 77, 30, target]))
        .await
        .unwrap();
    // The client keeps serving on the old connection while it tries.
    let pong: String = client.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let failed_at = tracker
        .wait_for(
            Duration::from_secs(10),
            "the handoff to give up",
            |events| {
                events.iter().find_map(|e| {
                    matches!(e.kind, EventKind::HandoffFailed { seq: 77, .. }).then_some(e.at)
                })
            },
        )
        .await
        .unwrap();
    let attempts = tracker
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::HandoffAttemptFailed { seq: 77, .. }))
        .count();
    assert_eq!(
        attempts,
        3,
        "one attempt and two retries:\n{}",
        tracker.describe("app")
    );
    // 3 x 300 ms attempts plus 100 + 200 ms back-off.
    let took = failed_at - started;
    assert!(
        took >= Duration::from_millis(960) && took <= Duration::from_millis(1800),
        "gave up after {took:?}"
    );
    assert_eq!(
        client.connections()[0].endpoint(),
        before,
        "still on the old endpoint"
    );
    let fresh = tokio::time::timeout(Duration::from_secs(2), client.add_connection())
        .await
        .expect("a new connection must not dial the failed target")
        .unwrap();
    assert_eq!(fresh.endpoint(), before);
    let pong: String = client.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    drop(hole);
    factory.destroy_all().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closes_under_a_request_is_recorded_lost_exactly_once() {
    let s = setup(2, Duration::from_secs(1)).await;
    // A client that stays where it is: the old node closes its connection
    // when the grace ends, under a request that is still blocked there, so
    // the request's failure and redis-rs's disconnection notice both see it.
    let c = enabled_client(
        &s.factory,
        ClientOptions {
            hand_off: false,
            response_timeout: None,
            ..ClientOptions::default()
        },
    )
    .await;
    let conn = c.connections()[0].clone();
    let blocked = {
        let c = c.clone();
        tokio::spawn(async move {
            c.query::<redis::Value>(redis::cmd("BLPOP").arg("maint-e2e:never").arg(10))
                .await
        })
    };
    act(
        &s.emu,
        json!({"type": "bind", "parameters": {"bdb_id": s.db.id()}}),
    )
    .await
    .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the blocked request ends when its connection is closed")
        .unwrap();
    assert_eq!(
        outcome.map_err(|e| e.class()).err(),
        Some("connection"),
        "the blocked request fails with the connection"
    );
    // Both paths have had their say once the client can be used again.
    let _: () = c
        .query(redis::cmd("SET").arg("maint-e2e:after").arg("1"))
        .await
        .unwrap();
    let lost = s
        .tracker
        .timeline("app")
        .iter()
        .filter(|e| e.conn == conn.id && matches!(e.kind, EventKind::Disconnected { .. }))
        .count();
    assert_eq!(lost, 1, "{:#?}", s.tracker.timeline("app"));
    c.close().await;
    s.emu.shutdown().await;
}
