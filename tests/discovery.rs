//! The discovery service as Sentinel clients use it: every node answers the
//! Sentinel protocol, names lead to the node that holds the endpoint (its
//! external address, or with `@internal` its internal one), and a move of
//! the endpoint is published as `+switch-master`; a shard failover is not.
#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{database, emulator};
use maint_e2e::raw::{Frame, RawConnection};
use maint_e2e::Action;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `+switch-master` messages `c` received so far.
fn switches(c: &RawConnection) -> Vec<String> {
    c.frames()
        .into_iter()
        .filter_map(|f| match f {
            Frame::Reply { raw, .. } if text(&raw).starts_with("*3\r\n$7\r\nmessage") => {
                Some(text(&raw).lines().last()?.to_string())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_names_the_endpoints_node_and_publishes_its_moves() {
    let emu = emulator(Duration::from_millis(100));
    let cancel = CancellationToken::new();
    let port = emu.serve_discovery(0, cancel.clone()).await.unwrap();
    let (id, _) = database(&emu, true).await;
    let db = emu.database(id).unwrap();
    let (name, dbport) = (db.name().to_string(), db.port());
    let node = db.active_node();
    // Listed in the endpoints file, one per node.
    let listed = emu
        .endpoints_file()
        .database(&name)
        .unwrap()
        .discovery_endpoints
        .clone();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.contains(&format!("127.0.1.1:{port}")), "{listed:?}");

    // Any node answers, without AUTH.
    let s = RawConnection::connect(&format!("127.0.3.1:{port}"), false, None)
        .await
        .unwrap();
    let ask = |n: &str| {
        let n = n.to_string();
        let s = &s;
        async move {
            text(
                &s.command(&["SENTINEL", "get-master-addr-by-name", &n])
                    .await
                    .unwrap(),
            )
        }
    };
    let at = |ip: String| format!("*2\r\n${}\r\n{ip}\r\n$5\r\n{dbport}\r\n", ip.len());
    assert_eq!(ask(&name).await, at(node.external_ip().to_string()));
    assert_eq!(
        ask(&format!("{name}@internal")).await,
        at(node.internal_ip().to_string())
    );
    assert_eq!(ask("nope").await, "*-1\r\n");
    let auth = text(&s.command(&["AUTH", "secret"]).await.unwrap());
    assert!(
        auth.starts_with("-ERR AUTH <password> called without any password"),
        "{auth}"
    );
    let role = text(&s.command(&["ROLE"]).await.unwrap());
    assert!(
        role.contains("sentinel") && role.contains(&format!("{name}@internal")),
        "{role}"
    );

    let sub = RawConnection::connect(&format!("127.0.1.2:{port}"), false, None)
        .await
        .unwrap();
    let confirmed = text(&sub.command(&["SUBSCRIBE", "+switch-master"]).await.unwrap());
    assert_eq!(
        confirmed,
        "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
    );

    // A shard failover moves no endpoint: nothing is published.
    emu.run(&Action::failover(id)).await.unwrap();
    // A rebind does: both names, from the old node to the new one.
    let out = emu
        .run(
            &Action::parse(&json!({"type": "bind", "parameters": {"bdb_id": id, "grace_s": 0.3}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let to = db.active_node();
    assert_ne!(to, node, "{out}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while switches(&sub).len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        switches(&sub),
        [
            format!(
                "{name} {} {dbport} {} {dbport}",
                node.external_ip(),
                to.external_ip()
            ),
            format!(
                "{name}@internal {} {dbport} {} {dbport}",
                node.internal_ip(),
                to.internal_ip()
            ),
        ]
    );
    assert_eq!(ask(&name).await, at(to.external_ip().to_string()));
    cancel.cancel();
    emu.shutdown().await;
}
