//! `maint-e2e emulator` as a separate process: ready line, endpoints file, API,
//! clean stop on SIGTERM, clear errors.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use maint_e2e::config::EndpointsFile;
use maint_e2e::raw::RawConnection;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_maint-e2e");

/// (pid, parent pid, state) of every process, read from /proc.
fn processes() -> Vec<(u32, u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state));
    }
    out
}

/// Every descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let all = processes();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    found.remove(0);
    found
}

/// Running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    processes().iter().any(|p| p.0 == pid && p.2 != 'Z')
}

fn redis_servers(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.split('\0')
                    .next()
                    .is_some_and(|argv0| argv0.contains("redis-server"))
            })
        })
        .collect()
}

/// Waits (bounded) until none of `pids` runs.
async fn all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "still running: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The emulator process; killed by PID if a test ends early.
struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the emulator; returns it and its ready line.
fn start(extra: &[&str]) -> (Emulator, Value) {
    let mut child = Command::new(BIN)
        .args([
            "emulator",
            "--discovery-port",
            "0",
            "--nodes",
            "2",
            "--grace-s",
            "1",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Emulator(child);
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (child, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_runs_standalone_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.json");
    let (mut child, ready) = start(&["--endpoints-out", endpoints.to_str().unwrap()]);
    assert_eq!(
        ready["endpoints_config"].as_str().unwrap(),
        endpoints.to_str().unwrap()
    );
    let url = ready["fault_injector_url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let file = EndpointsFile::load(&endpoints).unwrap();
    let db = file.database("standalone").unwrap();
    assert!(db.bdb_id.is_some());
    let probe = RawConnection::connect(&db.primary_endpoint().address(), true, Some(None))
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

    let tls = file.database("standalone-tls").unwrap();
    assert!(tls.tls && tls.endpoints[0].tls, "{tls:?}");
    let certs = tls.certificates_location.clone().unwrap();
    for f in ["ca.crt", "redis.crt", "client.crt"] {
        assert!(std::fs::read_to_string(certs.join(f))
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["redis.key", "client.key"] {
            let mode = std::fs::metadata(certs.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{f}: private keys are the owner's only"
            );
        }
    }
    let run_dir = certs.parent().unwrap().to_path_buf();
    // The variants other clients' frameworks name, described as they read them.
    for (name, tls, user) in [
        ("standalone0-tls", true, Some("default")),
        (
            "standalone0-acl",
            false,
            Some(maint_e2e::emulator::ACL_USER),
        ),
        (
            "standalone0-acl-tls",
            true,
            Some(maint_e2e::emulator::ACL_USER),
        ),
        ("standalone0-mtls", true, Some("default")),
        ("standalone0-tls13", true, Some("default")),
    ] {
        let d = file.database(name).unwrap();
        assert_eq!((d.tls, d.username.as_deref()), (tls, user), "{name}");
        assert!(d.password.is_some(), "{name}");
        assert_eq!(d.certificates_location.is_some(), tls, "{name}");
    }

    let sharded = file.database("standalone-sharded").unwrap();
    let p = RawConnection::connect(&sharded.primary_endpoint().address(), true, None)
        .await
        .unwrap();
    assert_eq!(
        p.command(&["MSET", "{a}1", "x", "{a}2", "y"])
            .await
            .unwrap(),
        b"+OK\r\n"
    );

    let shards = redis_servers(&descendants(child.0.id()));
    assert_eq!(
        shards.len(),
        22,
        "seven databases of a primary and a replica, one of two of each, and oss-cluster of two of each"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    all_gone(&shards).await;
    assert!(
        !run_dir.exists(),
        "the run directory {} (private keys) outlived the emulator",
        run_dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_emulator_leaves_no_redis_server_behind() {
    let (mut child, _) = start(&[]);
    let started = descendants(child.0.id());
    let shards = redis_servers(&started);
    assert_eq!(
        shards.len(),
        22,
        "seven databases of a primary and a replica, one of two of each, and oss-cluster of two of each"
    );
    // SIGKILL: no handler, no destructor runs.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    all_gone(&started).await;
}

#[test]
fn bad_options_and_a_missing_redis_server_are_clear_errors() {
    let out = Command::new(BIN)
        .args(["emulator", "--discovery-port", "0", "--nodes", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes must be between 1 and 250"));

    let out = Command::new(BIN)
        .args(["emulator", "--discovery-port", "0"])
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
        .args(["emulator", "--discovery-port", "0"])
        .env_remove("REDIS_SERVER_BIN")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install redis-server"), "{err}");

    // A redis-server too old for the emulator (a script that says it is 6.0).
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("redis-server");
    std::fs::write(
        &old,
        "#!/bin/sh\necho 'Redis server v=6.0.16 sha=00000000:0'\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&old).status().unwrap();
    let out = Command::new(BIN)
        .args(["emulator", "--discovery-port", "0"])
        .env("REDIS_SERVER_BIN", &old)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis-server 6.0.16 (")
            && err.contains("is too old: the emulator needs 7.0 or newer"),
        "{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one line: {err}");
}

/// Runs the binary with `args`, which must exit 1; its stderr and the last
/// line of it.
fn refused(args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    (err, last)
}

#[test]
fn a_taken_api_port_is_a_one_line_error_that_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (err, last) = refused(&["emulator", "--discovery-port", "0", "--api", &addr]);
    assert!(
        last.starts_with(&format!(
            "error: binding the fault injector API on {addr}: "
        )) && last
            .ends_with("pick another with --api HOST:PORT, or --api 127.0.0.1:0 for any free port"),
        "{err}"
    );
}

#[test]
fn a_taken_discovery_port_is_an_error_that_says_what_to_do() {
    // Taken on node 2's internal address: every node's must be free.
    let taken = std::net::TcpListener::bind("127.0.2.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (err, last) = refused(&["emulator", "--nodes", "2", "--discovery-port", &port]);
    assert!(
        last.contains(&format!(
            "binding the discovery service on 127.0.2.1:{port}"
        )) && last.contains("--discovery-port"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_env_gives_the_exports_other_suites_read() {
    let mut child = Command::new(BIN)
        .args([
            "emulator",
            "--discovery-port",
            "0",
            "--nodes",
            "2",
            "--grace-s",
            "1",
            "--print-env",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let child = Emulator(child);
    let mut lines = String::new();
    for _ in 0..4 {
        out.read_line(&mut lines).unwrap();
    }
    // A real shell reads them.
    let shell = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{lines}\nprintf '%s\\n' \"$FAULT_INJECTION_API_URL\" \"$RE_FAULT_INJECTOR_URL\" \"$REDIS_ENDPOINTS_CONFIG_PATH\" \"$DATABASE_NAME\""
        ))
        .output()
        .unwrap();
    let text = String::from_utf8(shell.stdout).unwrap();
    let values: Vec<&str> = text.lines().collect();
    assert_eq!(values.len(), 4, "{lines}");
    assert!(values[0].starts_with("http://127.0.0.1:"), "{lines}");
    assert_eq!(values[0], values[1]);
    assert_eq!(values[3], "standalone");
    let file = EndpointsFile::load(std::path::Path::new(values[2])).unwrap();
    assert!(file.database("standalone").is_ok());
    let health: Value = reqwest::get(format!("{}/health", values[0]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_run_dir_keeps_the_certificates_after_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.json");
    let (mut child, _) = start(&[
        "--keep-run-dir",
        "--endpoints-out",
        endpoints.to_str().unwrap(),
    ]);
    let file = EndpointsFile::load(&endpoints).unwrap();
    let certs = file
        .database("standalone-tls")
        .unwrap()
        .certificates_location
        .clone()
        .unwrap();
    let run_dir = certs.parent().unwrap().to_path_buf();
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let kept = certs.join("client.key").exists();
    std::fs::remove_dir_all(&run_dir).unwrap();
    assert!(kept, "--keep-run-dir removed {}", run_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_given_on_the_command_line_guards_every_route_but_health() {
    let (_child, ready) = start(&["--api-token", "from-the-cli"]);
    let url = ready["fault_injector_url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    let bare = http.get(format!("{url}/action")).send().await.unwrap();
    assert_eq!(status(bare), 401);
    let with = http
        .get(format!("{url}/action"))
        .bearer_auth("from-the-cli")
        .send()
        .await
        .unwrap();
    assert_eq!(status(with), 200);
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(status(health), 200);
}

/// Out of file descriptors, the fault injector API neither spins nor floods
/// its log: one line a second, with how many failures it stands for, and it
/// answers again once connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_out_of_file_descriptors_backs_off_and_logs_once_a_second() {
    const LIMIT: usize = 256;
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\"")])
        .args([BIN, "emulator", "--discovery-port", "0", "--nodes", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Emulator(child);
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let url = ready["fault_injector_url"].as_str().unwrap().to_string();
    let addr = url.trim_start_matches("http://").to_string();
    let in_use = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(in_use < LIMIT, "{in_use} descriptors in use at start");
    // More connections than it has descriptors left: the kernel queues the
    // rest, and every accept of them fails.
    let mut held = Vec::new();
    for _ in 0..(LIMIT - in_use + 20) {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(held);
    let health = async {
        loop {
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                reqwest::get(format!("{url}/health")),
            )
            .await;
            if let Ok(Ok(r)) = answer {
                break r.status();
            }
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(30), health)
        .await
        .expect("the API answers again once connections close");
    assert!(status.is_success(), "{status}");
    drop(child);
    let lines: Vec<String> = log
        .join()
        .unwrap()
        .into_iter()
        .filter(|l| l.contains("could not accept"))
        .collect();
    // 2.5 s of failures: the first, then one a second.
    assert!(
        (2..=4).contains(&lines.len()),
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("times in the last second")),
        "{}",
        lines.join("\n")
    );
}
