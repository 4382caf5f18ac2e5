//! The emulator's fault injector API over real HTTP: bad input answered
//! with a status and a message, actions through their states, the trigger
//! catalogue, and timing overrides out of range. What the answers' shapes
//! are, field by field, is in `contract.rs`.
#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{database, emulator, get, post, serve_api, wait_status};
use maint_e2e::fault_injector::ActionState;
use maint_e2e::wait::{poll, Look};
use maint_e2e::{Action, DatabaseSpec};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

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
            r#"{"type": "delete_database", "parameters": {"cluster_index": 0}}"#.into(),
            422,
            "delete_database needs bdb_id, or \"delete_all\": true",
        ),
        (
            format!(
                r#"{{"type": "delete_database", "parameters": {{"bdb_id": {id}, "delete_all": true}}}}"#
            ),
            422,
            "not both",
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

    let delete = Action::delete_database(id);
    fi.run(&delete, Duration::from_secs(10)).await.unwrap();
    assert!(emu.database(id).is_none());
    cancel.cancel();
    emu.shutdown().await;
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
            let configs: Vec<&str> = t["requirements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["config"].as_str().unwrap())
                .collect();
            assert_eq!(configs, ["single", "scaled_single"], "{t}");
            let db = &t["requirements"][0]["dbconfig"];
            assert_eq!(db["shards_count"], 1, "{t}");
            assert!(db["port"].is_u64(), "{t}");
            // Callers keep the name up to its last two dashes.
            assert!(
                db["name"].as_str().unwrap().matches('-').count() >= 2,
                "{t}"
            );
        }
    }
    // With the TLS shapes: each requirement's dbconfig creates the database
    // its config names, on the port it offers; names and ports are never
    // offered twice.
    let catalogue = |q: &'static str| {
        let u = format!("{url}/topology-change-standalone?effect=conn_drop&cluster_index=0{q}");
        async move {
            let (status, body) = get(&u).await;
            assert_eq!(status, 200, "{body}");
            body["triggers"][0]["requirements"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let first = catalogue("&include_tls=true").await;
    let second = catalogue("&include_tls=true").await;
    let offered = |r: &[Value], key: &str| -> Vec<String> {
        r.iter().map(|r| r["dbconfig"][key].to_string()).collect()
    };
    for key in ["name", "port"] {
        let mut all = [offered(&first, key), offered(&second, key)].concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8, "{key} offered twice: {all:?}");
    }
    for r in &first {
        let (status, accepted) = post(
            &url,
            &json!({"type": "create_database", "parameters": {"database_config": r["dbconfig"]}})
                .to_string(),
        )
        .await;
        assert_eq!(status, 200, "{accepted}");
        let id = accepted["action_id"].as_str().unwrap();
        let done = wait_status(&url, id).await;
        let out = &done["output"];
        assert_eq!(done["status"], "success", "{r}: {done}");
        assert_eq!(out["port"], r["dbconfig"]["port"], "{r}: {out}");
        let db = emu.database(out["bdb_id"].as_u64().unwrap()).unwrap();
        let (shards, tls, mtls) = match r["config"].as_str().unwrap() {
            "single" => (1, false, false),
            "scaled_single" => (2, false, false),
            "single_tls" => (1, true, false),
            "mtls" => (1, true, true),
            other => panic!("unknown config {other}"),
        };
        assert_eq!(db.shard_sets().await.len(), shards, "{r}");
        assert_eq!(db.tls_policy().is_some(), tls, "{r}");
        assert_eq!(db.tls_policy().is_some_and(|p| p.client_auth), mtls, "{r}");
    }
    let (status, body) = get(&format!(
        "{url}/topology-change-standalone?effect=conn_drop&include_tls=maybe"
    ))
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("include_tls"),
        "{body}"
    );
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
    let (status, body) = post_slots("effect=add&bdb_id=99&variant=migrate").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no database with bdb_id 99"),
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

/// The rladmin commands clients' suites send: `status` and its sections,
/// the grace tuned for later rebinds, a rebind away from a node, a failover
/// and a node's shards migrated; a command that changes nothing fails, as
/// rladmin exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rladmin_commands_run_on_the_cluster_and_a_no_op_fails() {
    let emu = emulator(Duration::from_millis(100));
    let (id, _) = database(&emu, true).await;
    let rladmin = |command: String| {
        let emu = emu.clone();
        async move {
            let action = Action::parse(&json!({
                "type": "execute_rladmin_command",
                "parameters": {"rladmin_command": command, "bdb_id": id}
            }))
            .unwrap();
            emu.run(&action).await
        }
    };
    let out = rladmin("status".into()).await.unwrap();
    assert_eq!(out["node_id"], 1, "{out}");
    let text = out["output"].as_str().unwrap();
    for section in ["CLUSTER NODES:", "DATABASES:", "ENDPOINTS:", "SHARDS:"] {
        assert!(text.contains(section), "{text}");
    }
    let shards = rladmin("status shards".into()).await.unwrap();
    let text = shards["output"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("SHARDS:") && !text.contains("DATABASES:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("db:{id} ")) && text.contains(" master "),
        "{text}"
    );

    // The grace of later rebinds, then a rebind away from the endpoint's node.
    rladmin("tune cluster endpoint_rebind_propagation_grace_time 1".into())
        .await
        .unwrap();
    let db = emu.database(id).unwrap();
    let from = db.active_node().index;
    rladmin(format!("bind endpoint {id}:1 exclude {from}"))
        .await
        .unwrap();
    let record = db.record(None, &emu.nodes()).await;
    let m = record.endpoint_moves.last().expect("the endpoint moved");
    assert_eq!(m.from, from);
    assert_ne!(m.to, from);
    let grace = m.grace_end.0.duration_since(m.at.0).unwrap();
    assert_eq!(grace, Duration::from_secs(1), "the tuned grace");
    // It is not on that node any more: nothing to do, a failure.
    let e = rladmin(format!("bind endpoint {id}:1 exclude {from}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("rladmin exited with status 1"), "{e}");
    let e = rladmin(format!("bind endpoint {id}:1 policy single"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already has proxy policy single"), "{e}");

    // A failover of the database's shard by id, then its node's shards moved.
    let shard = text
        .lines()
        .find(|l| l.contains(" master "))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("redis:")))
        .unwrap()
        .to_string();
    rladmin(format!("failover shard {shard}")).await.unwrap();
    let after = rladmin("status shards".into()).await.unwrap();
    let text = after["output"].as_str().unwrap().to_string();
    let primary_node = text
        .lines()
        .find(|l| l.contains(" master "))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("node:")))
        .unwrap()
        .to_string();
    let to = emu
        .nodes()
        .into_iter()
        .find(|n| format!("node:{}", n.index) != primary_node)
        .unwrap()
        .index;
    let from_node = primary_node.trim_start_matches("node:");
    rladmin(format!(
        "migrate node {from_node} all_shards target_node {to}"
    ))
    .await
    .unwrap();
    let moved = rladmin("status shards".into()).await.unwrap();
    let text = moved["output"].as_str().unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(" master ") && l.contains(&format!("node:{to} "))),
        "{text}"
    );
    let e = rladmin(format!(
        "migrate node {from_node} all_shards target_node {to}"
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("nothing to migrate"), "{e}");
    emu.shutdown().await;
}

/// `delete_database` with `delete_all`, as the newest suites start: every
/// database goes, its shard processes with it; a database busy with an
/// action is answered `db_busy`, which clients retry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_all_deletes_every_database_unless_one_is_busy() {
    let emu = emulator(Duration::from_millis(100));
    let (a, _) = database(&emu, true).await;
    database(&emu, false).await;
    let cancel = CancellationToken::new();
    let url = format!("http://{}", serve_api(&emu, &cancel).await);
    let fi = maint_e2e::fault_injector::FaultInjectorClient::new(&url).unwrap();
    // A failover keeps database `a` busy for a while.
    let busy = fi.submit(&Action::failover(a)).await.unwrap().action_id;
    let delete_all =
        r#"{"type": "delete_database", "parameters": {"cluster_index": 0, "delete_all": true}}"#;
    let (status, answer) = post(&url, delete_all).await;
    let refused = match status {
        409 => answer.to_string(),
        _ => fi
            .wait(
                answer["action_id"].as_str().unwrap(),
                Duration::from_secs(10),
            )
            .await
            .unwrap()
            .error_text(),
    };
    assert!(refused.contains(r#""error_code":"db_busy""#), "{refused}");
    fi.wait(&busy, Duration::from_secs(30)).await.unwrap();
    let pids = emu.shard_pids().await;
    assert!(!pids.is_empty());
    let (status, answer) = post(&url, delete_all).await;
    assert_eq!(status, 200, "{answer}");
    let done = fi
        .wait(
            answer["action_id"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ActionState::Success, "{done:?}");
    assert!(emu.databases().is_empty());
    assert!(emu.shard_pids().await.is_empty());
    for pid in pids {
        let gone = poll(
            Duration::from_millis(20),
            Duration::from_secs(5),
            || async {
                anyhow::Ok(
                    match std::path::Path::new(&format!("/proc/{pid}")).exists() {
                        false => Look::Ready(()),
                        true => Look::NotYet(()),
                    },
                )
            },
        )
        .await
        .unwrap();
        assert!(gone.is_ok(), "shard process {pid} outlived delete_all");
    }
    cancel.cancel();
    emu.shutdown().await;
}

/// `reset_cluster`, as node-redis's cluster specs start: every database
/// deleted, cluster settings back to their defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_cluster_deletes_every_database_and_restores_the_settings() {
    let emu = emulator(Duration::from_millis(100));
    database(&emu, false).await;
    let run = |body: Value| {
        let emu = emu.clone();
        async move { emu.run(&Action::parse(&body).unwrap()).await }
    };
    run(json!({"type": "update_cluster_config", "parameters": {"config": {"client_maint_notifications": false}}}))
        .await
        .unwrap();
    run(json!({"type": "execute_rladmin_command", "parameters": {
        "rladmin_command": "tune cluster endpoint_rebind_propagation_grace_time 3"}}))
    .await
    .unwrap();
    let out = run(json!({"type": "reset_cluster", "parameters": {
        "clean_all_dbs": true, "clean_maintenance_mode": true}}))
    .await
    .unwrap();
    assert_eq!(out["deleted"].as_array().map(Vec::len), Some(1), "{out}");
    assert!(emu.databases().is_empty());
    assert!(emu.cluster.maint_notifications());
    assert_eq!(emu.cluster.rebind_grace(), None);
    emu.shutdown().await;
}
