//! The client and the emulator together, beyond what the features assert: the
//! client releases the old connection as soon as it handed off, and a sequence
//! of actions runs in order.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use maint_e2e::client::{ClientFactory, ClientOptions, EventKind, Mode};
use maint_e2e::emulator::actions::{self, Action};
use maint_e2e::emulator::database::Node;
use maint_e2e::emulator::{DatabaseSpec, Emulator, EmulatorConfig, Timings};
use maint_e2e::tracker::Tracker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_connection_is_released_long_before_the_grace_ends() {
    let emu = Emulator::new(EmulatorConfig {
        nodes: 2,
        timings: Timings::fast(Duration::from_secs(5)),
    })
    .unwrap();
    let db = emu.create_database(DatabaseSpec::default()).await.unwrap();
    let tracker = Arc::new(Tracker::new());
    let factory = ClientFactory::new(
        emu.endpoints_file()
            .database(&db.shared.name)
            .unwrap()
            .clone(),
        tracker.clone(),
    );
    let client = factory
        .create(
            "app",
            ClientOptions {
                mode: Mode::Enabled,
                pool_size: 3,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
    let from = db.shared.active_node();
    assert_eq!(db.shared.connections_on(from), 3);
    let bind = {
        let emu = emu.clone();
        let id = db.shared.id;
        tokio::spawn(async move {
            actions::run(
                &emu,
                &Action::parse(&json!({"type": "bind", "parameters": {"bdb_id": id}})).unwrap(),
            )
            .await
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
    while db.shared.connections_on(from) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections still open on the old node",
            db.shared.connections_on(from)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(db.shared.connections_on(to), 3);
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
    })
    .unwrap();
    let db = emu.create_database(DatabaseSpec::default()).await.unwrap();
    let first_primary = db.shards.lock().await.primary.as_ref().unwrap().id;
    let out = actions::run(
        &emu,
        &Action::parse(&json!({"type": "sequence_of_actions", "parameters": {
        "bdb_id": db.shared.id,
        "actions": [
            {"type": "failover", "params": {}},
            {"type": "migrate", "params": {}, "delay": 0.1},
            {"type": "bind", "params": {"grace_s": 0.2}}
        ]}}))
        .unwrap(),
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

    let bad = actions::run(
        &emu,
        &Action::parse(&json!({"type": "sequence_of_actions", "parameters": {
            "bdb_id": db.shared.id, "actions": [{"type": "teleport", "params": {}}]}}))
        .unwrap(),
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
