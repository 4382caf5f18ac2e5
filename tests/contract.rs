//! The fault injector API as other clients' suites decode it, pinned field by
//! field (types included), against the embedded emulator over real HTTP; and
//! the database behaviours those suites rely on: a taken port, sequences in
//! every shape, server-side notifications off, which completion a connection
//! is replayed, host names, several shards behind one endpoint.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use maint_e2e::emulator::Naming;
use maint_e2e::emulator::{api, Emulator, EmulatorConfig, Timings};
use maint_e2e::notification::{EndpointType, Kind, Notification};
use maint_e2e::raw::RawConnection;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Api {
    emu: Arc<Emulator>,
    url: String,
    http: reqwest::Client,
    _stop: tokio_util::sync::DropGuard,
}

async fn api_with(config: EmulatorConfig) -> Api {
    let emu = Emulator::new(config).expect("redis-server must be installed for these tests");
    let cancel = CancellationToken::new();
    let addr = api::serve(
        emu.clone(),
        "127.0.0.1:0".parse().unwrap(),
        &api::ApiOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap();
    Api {
        emu,
        url: format!("http://{addr}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        _stop: cancel.drop_guard(),
    }
}

async fn fast_api() -> Api {
    api_with(EmulatorConfig {
        timings: Timings::fast(Duration::from_secs(2)),
        ..EmulatorConfig::default()
    })
    .await
}

impl Api {
    async fn post(&self, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/action", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Posts an action and polls it to a terminal status.
    async fn run(&self, body: Value) -> Value {
        let (code, accepted) = self.post(body.clone()).await;
        assert_eq!(code, 200, "{body} -> {accepted}");
        let id = accepted["action_id"].as_str().unwrap().to_string();
        self.wait(&id).await
    }

    /// Polls action `id` to a terminal status.
    async fn wait(&self, id: &str) -> Value {
        for _ in 0..1200 {
            let (_, s) = self.get(&format!("/action/{id}")).await;
            if matches!(s["status"].as_str(), Some("success" | "failed")) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("action {id} did not end within 30 s");
    }

    async fn create(&self, config: Value) -> Value {
        let s = self
            .run(json!({"type": "create_database", "parameters": {"cluster_index": 0, "database_config": config}}))
            .await;
        assert_eq!(s["status"], "success", "{s}");
        s["output"].clone()
    }
}

/// A raw RESP3 connection that opted in for internal IPs.
async fn opted_in(addr: &str) -> RawConnection {
    RawConnection::connect(addr, true, Some(Some(EndpointType::InternalIp)))
        .await
        .unwrap()
}

/// The id and port of a database `create_database` described.
fn ids(out: &Value) -> (u64, u64) {
    (
        out["bdb_id"].as_u64().expect("bdb_id is an integer"),
        out["port"].as_u64().expect("port is an integer"),
    )
}

/// An RFC 3339 time in UTC with microseconds, as typed clients decode it.
fn assert_rfc3339(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string, got {v}"));
    let b = s.as_bytes();
    assert_eq!(b.len(), 27, "{what} = {s:?}");
    for (i, c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 26);
        assert_eq!(c.is_ascii_digit(), want_digit, "{what} = {s:?} at {i}");
    }
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19], b[26]),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
        "{what} = {s:?}"
    );
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{v} is not an object"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_status_and_list_have_the_shapes_typed_clients_decode() {
    let api = fast_api().await;
    let (code, accepted) = api
        .post(json!({"type": "create_database", "parameters": {"database_config": {"name": "c1"}}}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(keys(&accepted), ["action_id", "status"]);
    assert!(accepted["action_id"].is_string());
    assert_eq!(accepted["status"], "pending");

    let id = accepted["action_id"].as_str().unwrap();
    let (_, early) = api.get(&format!("/action/{id}")).await;
    assert_rfc3339(&early["start_time"], "start_time");
    if early["status"] != "success" {
        assert!(early.get("end_time").is_none(), "{early}");
    }
    for _ in 0..400 {
        if api.get(&format!("/action/{id}")).await.1["status"] == "success" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let done = api.run(json!({"type": "execute_rladmin_command", "parameters": {"rladmin_command": "status", "bdb_id": "1"}})).await;
    assert_eq!(
        keys(&done),
        ["action_id", "end_time", "output", "start_time", "status"]
    );
    assert_eq!(done["status"], "success");
    assert_rfc3339(&done["start_time"], "start_time");
    assert_rfc3339(&done["end_time"], "end_time");
    assert!(done["output"].is_object(), "output is a map: {done}");
    // rladmin's answer: the text it printed and the node it ran on (an integer).
    assert_eq!(keys(&done["output"]), ["node_id", "output"]);
    assert!(done["output"]["node_id"].is_u64(), "{done}");
    assert!(done["output"]["output"].is_string(), "{done}");
    assert!(done["start_time"].as_str() <= done["end_time"].as_str());

    let failed = api
        .run(json!({"type": "failover", "parameters": {"bdb_id": 1, "shard_id": 99}}))
        .await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].is_string(), "{failed}");
    // Where it failed, as a text: the action, then its cause.
    let traceback = failed["traceback"]
        .as_str()
        .expect("a failure carries a traceback");
    assert!(
        traceback.starts_with("action ") && traceback.contains("(failover) failed\n"),
        "{traceback}"
    );
    assert!(traceback.contains("shard 99"), "{traceback}");
    assert_rfc3339(&failed["end_time"], "end_time");

    let (code, list) = api.get("/action").await;
    assert_eq!(code, 200);
    assert_eq!(keys(&list), ["actions"]);
    let rows = list["actions"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(
            keys(row),
            ["action_type", "job_id", "status", "submitted_at"]
        );
        assert!(row["job_id"].is_string() && row["action_type"].is_string());
        assert!(row["status"].is_string());
        assert_rfc3339(&row["submitted_at"], "submitted_at");
    }
    assert_eq!(rows[0]["action_type"], "create_database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_database_is_described_as_a_real_cluster_describes_it() {
    let api = fast_api().await;
    let out = api
        .create(json!({
            "name": "described", "port": 0, "memory_size": 268435456, "replication": false,
            "eviction_policy": "allkeys-lru", "sharding": false, "auto_upgrade": true,
            "shards_count": 1, "oss_cluster": false, "module_list": [],
            "shards_placement": "dense"
        }))
        .await;
    assert_eq!(
        keys(&out),
        [
            "bdb_id",
            "endpoints",
            "ignored",
            "name",
            "password",
            "port",
            "raw_endpoints",
            "shards_count",
            "tls",
            "username"
        ]
    );
    assert!(out["bdb_id"].is_u64(), "bdb_id is an integer: {out}");
    assert!(out["port"].is_u64());
    assert_eq!(out["tls"], false);
    let port = out["port"].as_u64().unwrap();
    assert_eq!(
        out["endpoints"],
        json!([format!("redis://127.0.0.1:{port}")])
    );
    assert_eq!(out["ignored"], json!(["auto_upgrade", "module_list"]));
    let raw = &out["raw_endpoints"][0];
    assert_eq!(
        keys(raw),
        [
            "addr",
            "addr_type",
            "dns_name",
            "oss_cluster_api_preferred_endpoint_type",
            "oss_cluster_api_preferred_ip_type",
            "port",
            "proxy_policy",
            "uid"
        ]
    );
    assert!(raw["addr"][0].is_string());
    assert_eq!(raw["addr_type"], "internal");
    assert_eq!(raw["dns_name"], "localhost");
    assert_eq!(raw["port"], port);
    assert_eq!(raw["proxy_policy"], "single");
    assert!(raw["uid"].is_string(), "uid is a string: {raw}");

    // The settings that map onto redis-server are in force on the shard.
    let p = RawConnection::connect(&format!("127.0.0.1:{port}"), false, None)
        .await
        .unwrap();
    let got =
        String::from_utf8(p.command(&["CONFIG", "GET", "maxmemory*"]).await.unwrap()).unwrap();
    assert!(
        got.contains("268435456") && got.contains("allkeys-lru"),
        "{got}"
    );

    // The endpoints file says the same.
    let file = api.emu.endpoints_file().to_json();
    assert_eq!(file["described"]["raw_endpoints"][0], *raw);

    // Bad settings are refused at once, saying what would do.
    for (config, says) in [
        (json!({"eviction_policy": "sometimes"}), "allkeys-lru"),
        (json!({"shards_placement": "clumped"}), "dense, sparse"),
        (json!({"memory_size": 1000}), "memory_size"),
        (json!({"shards_count": 99}), "shards_count"),
        (json!({"shards_count": 2, "sharding": false}), "sharding"),
        (json!({"grace_s": -1}), "grace_s"),
        (json!({"acl_users": "app"}), "acl_users"),
        (
            json!({"acl_users": [{"name": "a b", "password": "pw"}]}),
            "one word",
        ),
        (json!({"tls": true, "tls_min_version": "1.0"}), "\"1.3\""),
        (
            json!({"enforce_client_authentication": "enabled"}),
            "tls: true",
        ),
    ] {
        let (code, body) = api
            .post(json!({"type": "create_database", "parameters": {"database_config": config}}))
            .await;
        assert_eq!(code, 422, "{config} -> {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }
    let (code, body) = api
        .post(json!({"type": "update_cluster_config", "parameters": {"config": {"client_maint_notifications": "no"}}}))
        .await;
    assert_eq!(code, 422, "{body}");
    // Nothing broke: the database is still there and serving.
    p.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_refused_in_the_words_a_real_cluster_uses() {
    let api = fast_api().await;
    let out = api.create(json!({"name": "first"})).await;
    let port = out["port"].as_u64().unwrap();
    let (code, body) = api
        .post(json!({"type": "create_database", "parameters": {"database_config": {"name": "second", "port": port}}}))
        .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("port_unavailable"), "{msg}");
    assert!(msg.contains("Unavailable or invalid port"), "{msg}");
    assert!(msg.contains(&port.to_string()), "{msg}");
    // A retrying client asks for the next ports (some of which other
    // processes on this machine may hold) until one is accepted; nothing else
    // broke on the way.
    for next in port + 1..port + 21 {
        let (code, body) = api
            .post(json!({"type": "create_database", "parameters": {"database_config": {"name": "second", "port": next}}}))
            .await;
        if code == 422 {
            assert!(
                body["error"].as_str().unwrap().contains("port_unavailable"),
                "{body}"
            );
            continue;
        }
        assert_eq!(code, 200, "{body}");
        let id = body["action_id"].as_str().unwrap();
        for _ in 0..400 {
            let (_, s) = api.get(&format!("/action/{id}")).await;
            if s["status"] == "success" {
                assert_eq!(s["output"]["port"], next);
                return;
            }
            assert_ne!(s["status"], "failed", "{s}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("creating the database on port {next} did not end");
    }
    panic!("20 ports after {port} were all unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_accept_every_shape_callers_send() {
    let api = fast_api().await;
    let out = api.create(json!({"name": "seq"})).await;
    let id = out["bdb_id"].as_u64().unwrap().to_string();
    // The TypeScript suite's migrate-and-bind: bdbId, ids as strings, the
    // cluster index in each step's params.
    let s = api
        .run(
            json!({"type": "sequence_of_actions", "parameters": {"bdbId": id, "actions": [
                {"type": "migrate", "params": {"cluster_index": "0", "bdb_id": id}},
                {"type": "bind", "params": {"cluster_index": "0", "bdb_id": id}}
            ]}}),
        )
        .await;
    assert_eq!(s["status"], "success", "{s}");
    assert_eq!(s["output"]["steps"].as_array().unwrap().len(), 2);
    // No bdb_id at the top: each step's own; delays as seconds or durations.
    let s = api
        .run(json!({"type": "sequence_of_actions", "parameters": {"actions": [
            {"type": "failover", "parameters": {"bdb_id": id}, "delay": "10ms"},
            {"type": "failover", "params": {"bdb_id": id.parse::<u64>().unwrap()}, "delay": 0.01}
        ]}}))
        .await;
    assert_eq!(s["status"], "success", "{s}");
    // A Go time.Duration (nanoseconds) is not mistaken for an hour's sleep.
    let (code, body) = api
        .post(
            json!({"type": "sequence_of_actions", "parameters": {"bdb_id": id, "actions": [
                {"type": "failover", "delay": 5_000_000_000u64}
            ]}}),
        )
        .await;
    assert_eq!(code, 422);
    assert!(body["error"].as_str().unwrap().contains("delay"), "{body}");
    let (code, body) = api
        .post(json!({"type": "failover", "parameters": {"bdb_id": id, "cluster_index": 2}}))
        .await;
    assert_eq!(code, 422);
    assert!(
        body["error"].as_str().unwrap().contains("cluster_index"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_turned_off_on_the_cluster_are_refused_and_not_sent() {
    let api = fast_api().await;
    let out = api.create(json!({"name": "off"})).await;
    let (id, port) = ids(&out);
    let addr = format!("127.0.0.1:{port}");
    let before = opted_in(&addr).await;
    let s = api
        .run(json!({"type": "update_cluster_config", "parameters": {"config": {"client_maint_notifications": false, "oss_cluster_client_maint_notifications": false}}}))
        .await;
    assert_eq!(s["status"], "success");
    assert_eq!(
        s["output"]["ignored"],
        json!(["oss_cluster_client_maint_notifications"])
    );

    let p = RawConnection::connect(&addr, true, None).await.unwrap();
    let refused = p
        .command(&[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "internal-ip",
        ])
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&refused);
    assert!(
        text.starts_with("-ERR") && text.contains("disabled"),
        "{text}"
    );
    p.ping().await.unwrap();

    let s = api
        .run(json!({"type": "failover", "parameters": {"bdb_id": id}}))
        .await;
    assert_eq!(s["status"], "success");
    before.ping().await.unwrap();
    assert!(before.pushes().is_empty(), "{:?}", before.pushes());

    api.run(json!({"type": "update_cluster_config", "parameters": {"config": {"client_maint_notifications": true}}}))
        .await;
    let ok = p
        .command(&["CLIENT", "MAINT_NOTIFICATIONS", "ON"])
        .await
        .unwrap();
    assert!(ok.ends_with(b"+OK\r\n"), "{}", String::from_utf8_lossy(&ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_is_replayed_only_on_the_node_whose_proxy_sent_it() {
    let api = fast_api().await;
    let out = api.create(json!({"name": "replay"})).await;
    let (id, port) = ids(&out);
    let s = api
        .run(json!({"type": "migrate", "parameters": {"bdb_id": id}}))
        .await;
    assert_eq!(s["status"], "success");
    let migrated = |p: &RawConnection| {
        p.pushes()
            .iter()
            .filter(|(_, n)| matches!(n, Ok(Some(n)) if n.kind() == Kind::Migrated))
            .count()
    };
    // A new connection on the node that sent MIGRATED is replayed it.
    let old_node = api.emu.database(id).unwrap().active_node();
    let same = opted_in(&format!("{}:{port}", old_node.internal_ip())).await;
    assert_eq!(migrated(&same), 1);
    let s = api
        .run(json!({"type": "bind", "parameters": {"bdb_id": id}}))
        .await;
    assert_eq!(s["status"], "success");
    // A connection that arrives on the new node (as a handoff does) is not.
    let new_node = api.emu.database(id).unwrap().active_node();
    assert_ne!(new_node, old_node);
    let moved = opted_in(&format!("{}:{port}", new_node.internal_ip())).await;
    moved.ping().await.unwrap();
    assert_eq!(migrated(&moved), 0, "{:?}", moved.pushes());
    // The endpoint's proxy on a node it left forgets what it sent: back on
    // the old node, a new connection there is replayed nothing (a handoff
    // that lands on a node the endpoint held long ago must not count an old
    // MIGRATED as a new one).
    let s = api
        .run(json!({"type": "bind", "parameters": {"bdb_id": id, "target_node": old_node.index.to_string()}}))
        .await;
    assert_eq!(s["status"], "success", "{s}");
    let back = opted_in(&format!("{}:{port}", old_node.internal_ip())).await;
    back.ping().await.unwrap();
    assert_eq!(migrated(&back), 0, "{:?}", back.pushes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_live_in_the_cluster_domain_and_moving_names_the_node() {
    let api = api_with(EmulatorConfig {
        timings: Timings::fast(Duration::from_secs(2)),
        naming: Naming::under("maint-e2e.localhost"),
        ..EmulatorConfig::default()
    })
    .await;
    let out = api
        .create(json!({"name": "named", "replication": false}))
        .await;
    let (id, port) = ids(&out);
    assert_eq!(
        out["raw_endpoints"][0]["dns_name"],
        format!("redis-{port}.maint-e2e.localhost")
    );
    let addr = format!("127.0.0.1:{port}");
    let internal = RawConnection::connect(&addr, true, Some(Some(EndpointType::InternalFqdn)))
        .await
        .unwrap();
    let external = RawConnection::connect(&addr, true, Some(Some(EndpointType::ExternalFqdn)))
        .await
        .unwrap();
    let bind = api.run(json!({"type": "bind", "parameters": {"bdb_id": id, "target_node": "2"}}));
    let (bound, moving) = tokio::join!(
        bind,
        internal.wait_notification(Duration::from_secs(5), "MOVING", |n| n.kind()
            == Kind::Moving)
    );
    assert_eq!(bound["status"], "success");
    let endpoint = |n: Notification| match n {
        Notification::Moving { endpoint, .. } => endpoint.map(|e| e.to_string()),
        _ => None,
    };
    assert_eq!(
        endpoint(moving.unwrap().1),
        Some(format!("node2.maint-e2e.localhost:{port}"))
    );
    let ext = external
        .wait_notification(Duration::from_secs(1), "MOVING", |n| {
            n.kind() == Kind::Moving
        })
        .await
        .unwrap();
    assert_eq!(
        endpoint(ext.1),
        Some(format!("node2-ext.maint-e2e.localhost:{port}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_shards_sit_behind_one_endpoint_and_keys_find_theirs() {
    let api = fast_api().await;
    let out = api
        .create(json!({"name": "sharded", "sharding": true, "shards_count": 2, "proxy_policy": "single", "memory_size": 104857600u64}))
        .await;
    assert_eq!(out["shards_count"], 2);
    assert_eq!(out["ignored"], json!([]));
    let (id, port) = ids(&out);
    let addr = format!("127.0.0.1:{port}");
    let p = opted_in(&addr).await;
    // "foo" hashes to slot 12182 (second half), "bar" to 5061 (first half).
    for (k, v) in [("foo", "1"), ("bar", "2"), ("{foo}x", "3")] {
        assert_eq!(p.command(&["SET", k, v]).await.unwrap(), b"+OK\r\n");
    }
    let db = api.emu.database(id).unwrap();
    let direct: Vec<String> = {
        let sets = db.shard_sets().await;
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].slots, (0, 8191));
        assert_eq!(sets[1].slots, (8192, 16383));
        let mut keys = Vec::new();
        for set in &sets {
            // Straight to the shard's redis-server, past the proxy.
            let shard = RawConnection::connect(&set.primary.to_string(), false, None)
                .await
                .unwrap();
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            keys.push(text(shard.command(&["KEYS", "*"]).await.unwrap()));
            let max = text(
                shard
                    .command(&["CONFIG", "GET", "maxmemory"])
                    .await
                    .unwrap(),
            );
            assert!(max.contains("52428800"), "memory split over shards: {max}");
        }
        keys
    };
    assert!(
        direct[0].contains("bar") && !direct[0].contains("foo"),
        "{direct:?}"
    );
    assert!(
        direct[1].contains("foo") && direct[1].contains("{foo}x"),
        "{direct:?}"
    );
    assert_eq!(p.command(&["DBSIZE"]).await.unwrap(), b":3\r\n");
    assert_eq!(
        p.command(&["MGET", "foo", "{foo}x"]).await.unwrap(),
        b"*2\r\n$1\r\n1\r\n$1\r\n3\r\n"
    );
    let cross = p.command(&["MGET", "foo", "bar"]).await.unwrap();
    assert!(
        cross.starts_with(b"-CROSSSLOT"),
        "{}",
        String::from_utf8_lossy(&cross)
    );
    // A transaction runs on the shard of its keys, whatever comes first.
    let tx = p
        .pipeline(&[
            vec!["MULTI".into()],
            vec!["INCR".into(), "{foo}n".into()],
            vec!["INCR".into(), "{bar}other-shard".into()],
            vec!["EXEC".into()],
            vec!["MULTI".into()],
            vec!["INCR".into(), "{bar}n".into()],
            vec!["GET".into(), "bar".into()],
            vec!["EXEC".into()],
        ])
        .await
        .unwrap();
    let tx: Vec<String> = tx
        .iter()
        .map(|r| String::from_utf8_lossy(r).into())
        .collect();
    assert_eq!(tx[0], "+OK\r\n");
    assert_eq!(tx[1], "+QUEUED\r\n");
    assert!(tx[2].starts_with("-CROSSSLOT"), "{tx:?}");
    assert!(tx[3].starts_with("-EXECABORT"), "{tx:?}");
    assert_eq!(
        tx[4..],
        [
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*2\r\n:1\r\n$1\r\n2\r\n"
        ]
    );
    assert_eq!(p.command(&["GET", "{foo}n"]).await.unwrap(), b"_\r\n");

    // A failover moves every primary shard; the notifications name them all
    // in one element, and every key is still there.
    let primary_ids = || async {
        db.shard_sets()
            .await
            .iter()
            .map(|s| s.primary_id.to_string())
            .collect::<Vec<_>>()
    };
    let ids = primary_ids().await;
    let s = api
        .run(json!({"type": "failover", "parameters": {"bdb_id": id}}))
        .await;
    assert_eq!(s["status"], "success", "{s}");
    let (_, started) = p
        .wait_notification(Duration::from_secs(2), "FAILING_OVER", |n| {
            n.kind() == Kind::FailingOver
        })
        .await
        .unwrap();
    assert!(
        matches!(started, Notification::FailingOver { ref shards, .. } if *shards == ids),
        "{started:?}"
    );
    let moved = primary_ids().await;
    assert!(
        moved.iter().all(|m| !ids.contains(m)),
        "{ids:?} -> {moved:?}"
    );
    assert_eq!(
        p.command(&["MGET", "foo", "{foo}x"]).await.unwrap(),
        b"*2\r\n$1\r\n1\r\n$1\r\n3\r\n"
    );
    assert_eq!(p.command(&["GET", "bar"]).await.unwrap(), b"$1\r\n2\r\n");
    // One shard alone migrates when asked.
    let one = moved[1].parse::<u64>().unwrap();
    let s = api
        .run(json!({"type": "migrate", "parameters": {"bdb_id": id, "shard_id": one}}))
        .await;
    assert_eq!(s["status"], "success", "{s}");
    assert_eq!(s["output"]["shards"].as_array().unwrap().len(), 1);
    assert_eq!(p.command(&["GET", "foo"]).await.unwrap(), b"$1\r\n1\r\n");
    assert_eq!(p.command(&["DBSIZE"]).await.unwrap(), b":4\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completion_follows_the_switch_by_the_settle_time() {
    let api = fast_api().await;
    let out = api
        .create(json!({"name": "settle", "settle_s": 1.0, "lead_s": 0.2}))
        .await;
    let (id, port) = ids(&out);
    let p = opted_in(&format!("127.0.0.1:{port}")).await;
    let s = api
        .run(json!({"type": "failover", "parameters": {"bdb_id": id}}))
        .await;
    assert_eq!(s["status"], "success");
    let start = p
        .wait_until_count(Duration::from_secs(1), Kind::FailingOver, 1)
        .await
        .unwrap();
    let end = p
        .wait_until_count(Duration::from_secs(1), Kind::FailedOver, 1)
        .await
        .unwrap();
    let window = end - start;
    assert!(
        (1.2..3.0).contains(&window.as_secs_f64()),
        "lead 0.2 s + settle 1 s, got {window:?}"
    );
    let (_, announced) = p
        .wait_notification(Duration::from_secs(1), "FAILING_OVER", |n| {
            n.kind() == Kind::FailingOver
        })
        .await
        .unwrap();
    assert!(
        matches!(announced, Notification::FailingOver { time_s: Some(t), .. } if t >= 2),
        "time_s covers lead + settle + window: {announced:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_migration_catalogue_and_route_have_the_real_shapes() {
    let api = fast_api().await;
    for effect in ["slot-shuffle", "add", "remove", "remove-add"] {
        let (code, body) = api
            .get(&format!("/slot-migrate?effect={effect}&cluster_index=0"))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(keys(&body), ["cluster", "effect", "triggers"]);
        assert_eq!(body["effect"], effect);
        assert_eq!(keys(&body["cluster"]), ["index", "nodes"]);
        assert!(
            body["cluster"]["nodes"].is_u64(),
            "nodes is a number: {body}"
        );
        let names: Vec<&str> = body["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["migrate", "failover"]);
        for t in body["triggers"].as_array().unwrap() {
            assert_eq!(keys(t), ["description", "name", "requirements"]);
            let r = &t["requirements"][0];
            assert_eq!(
                keys(r),
                ["cluster", "dbconfig", "description", "oss_cluster_api"]
            );
            assert_eq!(keys(&r["cluster"]), ["actual_nodes", "min_nodes"]);
            assert!(r["cluster"]["min_nodes"].is_u64() && r["cluster"]["actual_nodes"].is_u64());
            assert_eq!(keys(&r["oss_cluster_api"]), ["endpoint_type", "ip_type"]);
            let db = &r["dbconfig"];
            assert_eq!(db["oss_cluster"], true);
            assert_eq!(db["proxy_policy"], "all-master-shards");
            assert!(
                db["shards_count"].is_u64() && db["replication"].is_boolean(),
                "{db}"
            );
            assert_eq!(db["replication"], t["name"] == "failover", "{t}");
        }
    }

    // A database as the catalogue asks for it, and the action by its route.
    let out = api
        .create(
            json!({"name": "oss", "oss_cluster": true, "shards_count": 2, "replication": false}),
        )
        .await;
    let id = out["bdb_id"].as_u64().unwrap();
    assert_eq!(out["raw_endpoints"][0]["proxy_policy"], "all-master-shards");
    // The endpoints: one per node that serves slots (the cluster's seeds).
    assert_eq!(out["endpoints"].as_array().unwrap().len(), 2, "{out}");
    let r = api
        .http
        .post(format!(
            "{}/slot-migrate?effect=slot-shuffle&trigger=migrate&bdb_id={id}&cluster_index=0",
            api.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(keys(&accepted), ["action_id", "status"]);
    assert_eq!(accepted["status"], "pending");
    let status = api.wait(accepted["action_id"].as_str().unwrap()).await;
    assert_eq!(status["status"], "success", "{status}");
    let output = &status["output"];
    assert_eq!(
        keys(output),
        [
            "effect",
            "joined_node",
            "left_node",
            "moves",
            "smigrated_seqs",
            "smigrating_seqs",
            "trigger"
        ]
    );
    let m = &output["moves"][0];
    assert_eq!(keys(m), ["slots", "source_node", "target_node"]);
    assert!(m["slots"].is_string() && m["source_node"].is_u64() && m["target_node"].is_u64());
    // SMIGRATED came after SMIGRATING, each seq its own.
    let first = output["smigrating_seqs"][0].as_i64().unwrap();
    assert!(output["smigrated_seqs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s.as_i64().unwrap() > first));
    // An address class that does not exist is refused, saying which do.
    let s = api
        .run(
            json!({"type": "create_database", "parameters": {"database_config": {
            "oss_cluster": true, "oss_cluster_api_preferred_ip_type": "public"}}}),
        )
        .await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("internal or external"),
        "{s}"
    );
    // A trigger the emulator does not run fails saying which it does.
    let s = api
        .run(json!({"type": "slot_migrate", "parameters": {"bdb_id": id, "effect": "add", "trigger": "maintenance_mode"}}))
        .await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["error"].as_str().unwrap().contains("migrate, failover"),
        "{s}"
    );
}

/// The emulator's own namespace: the server's record of a database, every
/// field with its type, as the suite reads it in both its passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_record_has_every_connection_and_move_field_by_field() {
    let api = fast_api().await;
    let out = api
        .create(json!({"name": "recorded", "replication": false}))
        .await;
    let (id, port) = ids(&out);
    let addr = format!("127.0.0.1:{port}");
    let stays = opted_in(&addr).await;
    stays
        .command(&["CLIENT", "SETNAME", "stays"])
        .await
        .unwrap();
    let leaves = RawConnection::connect(&addr, true, None).await.unwrap();
    leaves
        .command(&["CLIENT", "SETNAME", "leaves"])
        .await
        .unwrap();
    drop(leaves);
    let bound = api
        .run(json!({"type": "bind", "parameters": {"bdb_id": id, "target_node": 2}}))
        .await;
    assert_eq!(bound["status"], "success", "{bound}");

    let (code, all) = api.get(&format!("/emulator/databases/{id}/record")).await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(
        keys(&all),
        [
            "accepted_total",
            "bdb_id",
            "connections",
            "endpoint_moves",
            "endpoint_node",
            "nodes",
            "shards",
            "slot_moves",
            "switch_overs"
        ]
    );
    assert_eq!(all["slot_moves"], json!([]));
    // Nothing switched over yet.
    assert_eq!(all["switch_overs"], json!([]));
    // The shard itself, on node 1 (no replication asked).
    let shards = all["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "{all}");
    assert_eq!(keys(&shards[0]), ["addr", "node", "role"]);
    assert_eq!(shards[0]["role"], "primary");
    assert!(shards[0]["node"].is_u64());
    assert!(shards[0]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(all["bdb_id"].as_u64(), Some(id));
    assert_eq!(all["endpoint_node"].as_u64(), Some(2));
    assert!(all["accepted_total"].as_u64().unwrap() >= 2, "{all}");
    let nodes = all["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        keys(&nodes[1]),
        [
            "external_fqdn",
            "external_ip",
            "internal_fqdn",
            "internal_ip",
            "node"
        ]
    );
    assert_eq!(nodes[1]["node"].as_u64(), Some(2));
    assert_eq!(nodes[1]["internal_ip"], format!("127.0.2.1:{port}"));
    assert_eq!(nodes[1]["external_ip"], format!("127.0.2.2:{port}"));
    let moves = all["endpoint_moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1);
    let m = &moves[0];
    assert_eq!(
        keys(m),
        ["announced", "at", "from", "grace_end", "seq", "to"]
    );
    assert_eq!((m["from"].as_u64(), m["to"].as_u64()), (Some(1), Some(2)));
    assert!(m["seq"].is_i64() && m["announced"].as_bool() == Some(true));
    assert_rfc3339(&m["at"], "at");
    assert_rfc3339(&m["grace_end"], "grace_end");

    // A migration's switch-over held every request for a while.
    let migrated = api
        .run(json!({"type": "migrate", "parameters": {"bdb_id": id}}))
        .await;
    assert_eq!(migrated["status"], "success", "{migrated}");
    let (_, after) = api.get(&format!("/emulator/databases/{id}/record")).await;
    let held = after["switch_overs"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{after}");
    assert_eq!(keys(&held[0]), ["from", "shard_set", "to"]);
    assert_eq!(held[0]["shard_set"].as_u64(), Some(0));
    assert_rfc3339(&held[0]["from"], "from");
    assert_rfc3339(&held[0]["to"], "to");
    assert!(held[0]["from"].as_str() < held[0]["to"].as_str(), "{after}");

    // One name: only its connections.
    let (code, named) = api
        .get(&format!("/emulator/databases/{id}/record?name=stays"))
        .await;
    assert_eq!(code, 200);
    let conns = named["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{named}");
    let c = &conns[0];
    assert_eq!(
        keys(c),
        [
            "accepted_at",
            "close_detail",
            "closed_at",
            "closed_by",
            "id",
            "local",
            "maint",
            "name",
            "node",
            "peer",
            "public",
            "pushes",
            "pushes_total",
            "redirects",
            "redirects_total",
            "tls"
        ]
    );
    // A plain database: the connection negotiated no TLS.
    assert!(c["tls"].is_null(), "{c}");
    // A standalone database redirects nothing.
    assert_eq!(
        (&c["redirects"], &c["redirects_total"]),
        (&json!([]), &json!(0))
    );
    assert!(c["id"].is_u64());
    assert_eq!(c["node"].as_u64(), Some(1));
    assert_eq!(c["public"], true);
    assert_eq!(c["local"], addr);
    assert!(c["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(c["name"], "stays");
    assert_eq!(c["maint"], "internal-ip");
    assert_rfc3339(&c["accepted_at"], "accepted_at");
    assert_rfc3339(&c["closed_at"], "closed_at");
    // It stayed on the node the endpoint left, which closed it at the grace end.
    assert_eq!(c["closed_by"], "grace_end");
    assert!(c["close_detail"].is_null());
    // MOVING, then its repeat half-way through the grace.
    let pushes = c["pushes"].as_array().unwrap();
    assert_eq!(c["pushes_total"].as_u64(), Some(pushes.len() as u64));
    assert_eq!(pushes.len(), 2, "{c}");
    assert_eq!(keys(&pushes[0]), ["at", "endpoint", "kind", "seq"]);
    assert_eq!(pushes[0]["kind"], "MOVING");
    assert_eq!(pushes[0]["seq"], m["seq"]);
    assert_eq!(pushes[0]["endpoint"], format!("127.0.2.1:{port}"));
    assert_rfc3339(&pushes[0]["at"], "a push's at");

    let (_, gone) = api
        .get(&format!("/emulator/databases/{id}/record?name=leaves"))
        .await;
    let g = &gone["connections"][0];
    assert_eq!(g["closed_by"], "client", "{gone}");
    assert!(g["maint"].is_null() && g["pushes_total"] == 0);

    // Bad input, in words.
    let (code, e) = api.get("/emulator/databases/99/record").await;
    assert_eq!(code, 404);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("no database with bdb_id 99"),
        "{e}"
    );
    let (code, e) = api.get("/emulator/databases/one/record").await;
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().contains("not a number"), "{e}");
}
