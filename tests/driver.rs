//! The driver protocol (`docs/DRIVERS.md`), held to each driver shipped in
//! `drivers/` (redis-py, node-redis), against a database of the emulator:
//! the greeting, a client made with the scenario's settings, requests and
//! how each ended, what the driver lets the suite see through a migration, a
//! setting the client does not have, bad requests, and a driver that ends.
//! A driver installs its pinned client on first use (PyPI, npm).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{database, emulator, spawn_action};
use maint_e2e::client::EventKind;
use maint_e2e::driver::{self, DriverClient, DriverError, DriverSettings};
use maint_e2e::tracker::Tracker;
use serde_json::{json, Map};

fn settings(addr: &str) -> DriverSettings {
    let (host, port) = addr.rsplit_once(':').unwrap();
    DriverSettings::default()
        .set("host", host)
        .set("port", port.parse::<u16>().unwrap())
        .set("maint", "enabled")
        .duration("response_timeout", Some(Duration::from_secs(1)))
        .duration("relaxed_timeout", Some(Duration::from_secs(3)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_py_driver_speaks_protocol_1() {
    // As redis-py gives it: its reply callbacks make SET's OK a boolean.
    speaks_protocol_1(
        "redis-py",
        "8.2.0",
        redis::Value::Boolean(true),
        "relaxed on MIGRATING",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_redis_driver_speaks_protocol_1() {
    speaks_protocol_1(
        "node-redis",
        "6.4.0",
        redis::Value::BulkString(b"OK".to_vec()),
        "handled on MIGRATING",
    )
    .await;
}

/// Driver `client` at `version` through protocol 1: SET answers `set_ok`;
/// through a migration, it reports an event that starts with `observed`.
async fn speaks_protocol_1(client: &str, version: &str, set_ok: redis::Value, observed: &str) {
    let emu = emulator(Duration::from_millis(300));
    let (bdb, addr) = database(&emu, true).await;
    let tracker = Arc::new(Tracker::new());
    let process = Arc::new(driver::start(client, tracker.clone()).await.unwrap());
    assert_eq!(
        (process.client.as_str(), process.version.as_str()),
        (client, version)
    );
    assert!(process.settings.iter().any(|s| s == "relaxed_timeout"));

    let app = DriverClient::create(process.clone(), "app", settings(&addr))
        .await
        .unwrap();
    // Requests end as the client says, classified.
    let set = app
        .query(redis::cmd("SET").arg("k").arg("v"))
        .await
        .unwrap();
    assert_eq!(set, set_ok);
    let get = app.query(redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(get, redis::Value::BulkString(b"v".to_vec()));
    let wrong = app.query(redis::cmd("INCR").arg("k")).await.unwrap_err();
    assert_eq!(wrong.class(), "server", "{wrong}");
    // In the server's words, its error code included.
    assert!(
        wrong
            .to_string()
            .contains("ERR value is not an integer or out of range"),
        "{wrong}"
    );
    // The server sees the client by the name it was given.
    let name = app
        .query(&redis::cmd("CLIENT").arg("GETNAME").clone())
        .await
        .unwrap();
    assert_eq!(name, redis::Value::BulkString(b"app".to_vec()));

    // Through a migration, what the client let the driver see is on the
    // timeline, as explanation, at the time it happened.
    let before = tokio::time::Instant::now();
    let migrate = spawn_action(
        &emu,
        json!({"type": "migrate", "parameters": {"bdb_id": bdb}}),
    );
    // A client may read pushes only when it reads a reply: keep requests going.
    while !migrate.is_finished() {
        app.query(redis::cmd("GET").arg("k")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    migrate.await.unwrap().unwrap();
    app.query(redis::cmd("GET").arg("k")).await.unwrap();
    let seen: Vec<(tokio::time::Instant, String)> = tracker
        .timeline("app")
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Observed { what } => Some((e.at, what)),
            _ => None,
        })
        .collect();
    let relaxed = seen
        .iter()
        .find(|(_, w)| w.starts_with(observed))
        .unwrap_or_else(|| panic!("no {observed:?} seen: {seen:?}"));
    let after = tokio::time::Instant::now();
    assert!(
        relaxed.0 > before && relaxed.0 < after,
        "{observed:?} at {:?} after the migration began and {:?} before the check: {seen:?}",
        relaxed.0.checked_duration_since(before),
        after.checked_duration_since(relaxed.0)
    );
    assert!(
        seen.iter().any(|(_, w)| w.contains("on MIGRATED")),
        "{seen:?}"
    );

    // A setting the client does not have: not applicable, naming it.
    let refused = DriverClient::create(
        process.clone(),
        "other",
        settings(&addr).set("handoff_workers", 4),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&refused, DriverError::NotApplicable { reason, .. } if reason.contains("handoff_workers")),
        "{refused}"
    );
    // A request of no known kind: refused, saying which there are.
    let unknown = process.request("dance", Map::new()).await.unwrap_err();
    assert!(
        matches!(&unknown, DriverError::Failed { message, .. } if message.contains("unknown op 'dance'") && message.contains("command")),
        "{unknown}"
    );
    app.close().await.unwrap();
    process.stop().await;
    // Gone: a request says so.
    let gone = process.request("clock", Map::new()).await.unwrap_err();
    assert!(matches!(gone, DriverError::Broken { .. }), "{gone}");
}
