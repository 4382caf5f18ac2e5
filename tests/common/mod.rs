//! What the emulator's integration tests share: an emulator with short
//! timings, a database on it, an action run in the background, a byte
//! exchange with a proxy, and the fault injector API on a loopback port.
#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;
use std::time::Duration;

use maint_e2e::emulator::{api, ActionError};
use maint_e2e::emulator::{Emulator, EmulatorConfig, Timings};
use maint_e2e::Action;
use maint_e2e::DatabaseSpec;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub fn emulator(lead: Duration) -> Arc<Emulator> {
    Emulator::new(EmulatorConfig {
        nodes: 3,
        timings: Timings {
            notice_lead: lead,
            // These tests read bytes and windows; holding traffic is the
            // acceptance suite's business.
            hold: Duration::ZERO,
            ..Timings::fast(Duration::from_secs(3))
        },
        ..EmulatorConfig::default()
    })
    .expect("redis-server must be installed for these tests")
}

pub async fn database(emu: &Emulator, replication: bool) -> (u64, String) {
    let db = emu
        .create_database(DatabaseSpec {
            replication: Some(replication),
            ..DatabaseSpec::default()
        })
        .await
        .unwrap();
    (db.id(), format!("127.0.0.1:{}", db.port()))
}

/// Runs a fault injector action in the background.
pub fn spawn_action(
    emu: &Arc<Emulator>,
    body: Value,
) -> tokio::task::JoinHandle<Result<Value, ActionError>> {
    let emu = emu.clone();
    let action = Action::parse(&body).unwrap();
    tokio::spawn(async move { emu.run(&action).await })
}

/// Writes `request`, then reads until exactly `expected` arrived.
pub async fn exchange(s: &mut TcpStream, request: &[u8], expected: &[u8]) {
    s.write_all(request).await.unwrap();
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

/// The emulator's fault injector API on a free loopback port, until `cancel`.
pub async fn serve_api(emu: &Arc<Emulator>, cancel: &CancellationToken) -> std::net::SocketAddr {
    api::serve(
        emu.clone(),
        ([127, 0, 0, 1], 0).into(),
        &api::ApiOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap()
}

/// Posts `body` to the API's `/action`: the status and the JSON answer.
pub async fn post(url: &str, body: &str) -> (u16, Value) {
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

/// GETs `url`: the status and the JSON answer.
pub async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `GET {url}/action/{id}` until the action ends (at most a minute);
/// its last status.
pub async fn wait_status(url: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = get(&format!("{url}/action/{id}")).await;
        if matches!(s["status"].as_str(), Some("success" | "failed"))
            || tokio::time::Instant::now() > deadline
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An emulator with an OSS Cluster API database of two primaries (each
/// with a replica, with `replicas`).
pub async fn two_shard_cluster(
    replicas: bool,
) -> (Arc<Emulator>, Arc<maint_e2e::emulator::Database>) {
    let emu = emulator(Duration::from_millis(100));
    let db = emu
        .create_database(DatabaseSpec {
            oss_cluster: Some(true),
            shards_count: Some(2),
            replication: Some(replicas),
            ..DatabaseSpec::default()
        })
        .await
        .unwrap();
    (emu, db)
}
