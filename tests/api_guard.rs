//! The fault injector API guards itself: a bearer token when one is set,
//! a bound on a body's size, and on how long a request may take to arrive.
//! Each refusal says what is wrong, and every other client keeps being served.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use maint_e2e::emulator::api::{self, ApiOptions};
use maint_e2e::fault_injector::{Action, FaultInjectorClient};
use maint_e2e::{DatabaseSpec, Emulator, EmulatorConfig, Timings};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Api {
    emu: Arc<Emulator>,
    url: String,
    addr: std::net::SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

async fn api(options: ApiOptions) -> Api {
    let emu = Emulator::new(EmulatorConfig {
        timings: Timings::fast(Duration::from_secs(1)),
        ..EmulatorConfig::default()
    })
    .expect("redis-server must be installed for these tests");
    let cancel = CancellationToken::new();
    let addr = api::serve(
        emu.clone(),
        "127.0.0.1:0".parse().unwrap(),
        &options,
        cancel.clone(),
    )
    .await
    .unwrap();
    Api {
        emu,
        url: format!("http://{addr}"),
        addr,
        _stop: cancel.drop_guard(),
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn answer(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn a_database(a: &Api) -> u64 {
    a.emu
        .create_database(DatabaseSpec {
            name: Some("guarded".into()),
            replication: Some(true),
            ..DatabaseSpec::default()
        })
        .await
        .unwrap()
        .id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_but_health_requires_it() {
    let a = api(ApiOptions {
        token: Some("s3cret".into()),
        ..ApiOptions::default()
    })
    .await;
    let id = a_database(&a).await;
    let (status, v) = answer(http().get(format!("{}/action", a.url))).await;
    assert_eq!(status, 401, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("Authorization: Bearer") && msg.contains("--api-token"),
        "{msg}"
    );
    let r = http()
        .post(format!("{}/action", a.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (status, v) = answer(http().get(format!("{}/action", a.url)).bearer_auth("guess")).await;
    assert_eq!(status, 401);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not this fault injector's"),
        "{v}"
    );
    let (status, _) = answer(http().get(format!("{}/no/such/route", a.url))).await;
    assert_eq!(
        status, 401,
        "an unknown route says nothing without the token"
    );
    let (status, v) = answer(http().get(format!("{}/health", a.url))).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")));

    // With the token, the suite's own client runs a failover.
    let fi = FaultInjectorClient::new(&a.url)
        .unwrap()
        .with_token(Some("s3cret".into()));
    let done = fi
        .run(&Action::failover(id), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(done.status.is_success());
    a.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_and_the_next_action_accepted() {
    let a = api(ApiOptions::default()).await;
    let id = a_database(&a).await;
    let huge = format!(
        r#"{{"type": "failover", "parameters": {{"bdb_id": {id}}}, "pad": "{}"}}"#,
        "x".repeat(1 << 20)
    );
    let (status, v) = answer(
        http()
            .post(format!("{}/action", a.url))
            .header("content-type", "application/json")
            .body(huge),
    )
    .await;
    assert_eq!(status, 413, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("larger than 64 KiB"),
        "{v}"
    );
    let (status, v) = answer(
        http()
            .post(format!("{}/action", a.url))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"type": "failover", "parameters": {{"bdb_id": {id}}}}}"#
            )),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    a.emu.shutdown().await;
}

/// Sends `bytes` and waits for the server to answer or close; returns what
/// it sent and how long that took.
async fn stall(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let began = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    (String::from_utf8_lossy(&got).into_owned(), began.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_halfway_is_cut_off_and_others_are_served_meanwhile() {
    let bound = Duration::from_millis(600);
    let a = api(ApiOptions {
        request_timeout: bound,
        ..ApiOptions::default()
    })
    .await;
    // A hundred clients stalled in their headers, their body, or before a
    // single byte.
    let mut stalled = Vec::new();
    for i in 0..100 {
        let bytes: &'static [u8] = match i % 3 {
            0 => b"GET /action HTTP/1.1\r\nHost: x\r\nX-Slow",
            1 => b"POST /action HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\"",
            _ => b"",
        };
        stalled.push(tokio::spawn(stall(a.addr, bytes)));
    }
    // Meanwhile, everyone else is answered at once.
    let began = Instant::now();
    let (status, _) = answer(http().get(format!("{}/action", a.url))).await;
    assert_eq!(status, 200);
    assert!(began.elapsed() < bound, "a stalled client held others up");
    for (i, s) in stalled.into_iter().enumerate() {
        let (got, took) = s.await.unwrap();
        assert!(
            took >= bound.mul_f64(0.8) && took <= bound * 4,
            "client {i} was cut off after {took:?}, the bound is {bound:?}"
        );
        if i % 3 == 1 {
            // Its headers arrived: it is told why.
            assert!(got.starts_with("HTTP/1.1 408"), "{got}");
            assert!(
                got.contains("did not arrive in full within 600 ms"),
                "{got}"
            );
        }
    }
    a.emu.shutdown().await;
}
