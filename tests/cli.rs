//! `maint-e2e emulator` as a separate process: ready line, endpoints file, API,
//! clean stop on SIGTERM, clear errors.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use maint_e2e::config::EndpointsFile;
use maint_e2e::probe::Probe;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_maint-e2e");

/// Children of `pid`, read from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            out.push(child);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_runs_standalone_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.json");
    let mut child = Command::new(BIN)
        .args([
            "emulator",
            "--nodes",
            "2",
            "--grace-s",
            "1",
            "--endpoints-out",
        ])
        .arg(&endpoints)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(
        ready["endpoints_config"].as_str().unwrap(),
        endpoints.to_str().unwrap()
    );
    let url = ready["fault_injector_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let file = EndpointsFile::load(&endpoints).unwrap();
    let db = file.database("standalone").unwrap();
    assert!(db.bdb_id.is_some());
    let probe = Probe::connect(&db.primary_endpoint().address(), true, Some(None))
        .await
        .unwrap();
    probe.ping().await.unwrap();
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let shards = children(child.id());
    assert_eq!(shards.len(), 2, "a primary and a replica");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    for pid in shards {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "redis-server {pid} survived"
        );
    }
}

#[test]
fn bad_options_and_a_missing_redis_server_are_clear_errors() {
    let out = Command::new(BIN)
        .args(["emulator", "--nodes", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be between 1 and 250"));

    let out = Command::new(BIN)
        .args(["emulator"])
        .env("REDIS_SERVER_BIN", "/nonexistent/redis-server")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("REDIS_SERVER_BIN=/nonexistent/redis-server does not name a file"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["emulator"])
        .env_remove("REDIS_SERVER_BIN")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install redis-server"), "{err}");
}
