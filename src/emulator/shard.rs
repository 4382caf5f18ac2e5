//! A shard: one real `redis-server` process on 127.0.0.1 and an ephemeral port.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, ChildStdin, Command};

use crate::timing::{
    REPLICATION_POLL, SERVER_POLL, SHARD_COMMAND_TIMEOUT, SHARD_CONNECT_TIMEOUT, SHARD_PID_WITHIN,
    SHARD_START_WITHIN, SHARD_STOP_WITHIN,
};
use crate::wait::{poll, Look};

/// Environment variable naming the `redis-server` binary.
pub const REDIS_SERVER_BIN_ENV: &str = "REDIS_SERVER_BIN";

/// Finds `redis-server`: [`REDIS_SERVER_BIN_ENV`] first, then PATH.
pub fn redis_server_bin() -> Result<PathBuf> {
    find_redis_server(
        std::env::var_os(REDIS_SERVER_BIN_ENV),
        std::env::var_os("PATH"),
    )
}

/// [`redis_server_bin`] on explicit values of the two variables.
pub fn find_redis_server(bin: Option<OsString>, path: Option<OsString>) -> Result<PathBuf> {
    if let Some(bin) = bin.filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{REDIS_SERVER_BIN_ENV}={} does not name a file; point it at a redis-server binary or unset it to search PATH",
            bin.display()
        );
    }
    std::env::split_paths(&path.unwrap_or_default())
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "redis-server was not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server) or set {REDIS_SERVER_BIN_ENV} to its path"
            )
        })
}

/// The oldest `redis-server` the emulator runs: sharded pub/sub and
/// `SHUTDOWN NOW` came in 7.0.
pub const MIN_REDIS_SERVER: (u32, u32) = (7, 0);

/// Runs `bin --version` and refuses a server older than
/// [`MIN_REDIS_SERVER`], saying what to do; returns its version.
pub fn check_version(bin: &Path) -> Result<(u32, u32, u32)> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = parse_version(&text) else {
        bail!(
            "{} --version printed {:?}, not a redis-server version; point {REDIS_SERVER_BIN_ENV} at redis-server",
            bin.display(),
            text.trim()
        );
    };
    if (v.0, v.1) < MIN_REDIS_SERVER {
        bail!(
            "redis-server {}.{}.{} ({}) is too old: the emulator needs {}.{} or newer (sharded pub/sub, SHUTDOWN NOW); install a newer one (Debian 12 and Ubuntu 24.04 ship 7.0 or later) and put it on PATH or name it with {REDIS_SERVER_BIN_ENV}",
            v.0,
            v.1,
            v.2,
            bin.display(),
            MIN_REDIS_SERVER.0,
            MIN_REDIS_SERVER.1
        );
    }
    Ok(v)
}

/// The version in `redis-server --version`'s line (`... v=7.0.15 sha=...`).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// How a shard process is started.
#[derive(Clone, Debug)]
pub struct ShardSpec {
    /// Cluster-wide shard id (as carried by notifications).
    pub id: u32,
    /// Node it is placed on (1-based).
    pub node: usize,
    /// Primary to replicate from, if this is a replica.
    pub replica_of: Option<SocketAddr>,
    /// `requirepass`/`masterauth`, when the database has a password.
    pub password: Option<String>,
    /// More options for `redis-server` (`--maxmemory 1000000`, ...).
    pub args: Vec<String>,
    /// Started in cluster mode (`cluster-enabled`), its node file beside its
    /// log; a cluster replica is attached by [`super::oss_cluster::form`], not
    /// by `replica_of`.
    pub cluster: bool,
}

/// A running `redis-server`. Killed when stopped or dropped.
#[derive(Debug)]
pub struct Shard {
    /// Cluster-wide id.
    pub id: u32,
    /// Node it lives on.
    pub node: usize,
    /// Where it listens.
    pub addr: SocketAddr,
    password: Option<String>,
    /// The guard shell (see [`GUARD`]); redis-server is its child.
    child: Child,
    /// Held open: closing it (on stop, on drop, or when this process dies in
    /// any way) makes the guard stop redis-server.
    lifeline: Option<ChildStdin>,
    pid: u32,
    log: PathBuf,
}

/// Runs redis-server (`$0 "$@"`) under a small shell that stops it, by PID,
/// as soon as its stdin closes: when the shard is stopped or dropped, and also
/// when the emulator's process dies without running any clean-up (SIGKILL, a
/// test runner's timeout). It prints redis-server's PID first and exits with
/// redis-server's status.
const GUARD: &str = r#"exec 3<&0
"$0" "$@" </dev/null &
pid=$!
echo "$pid"
trap 'kill "$pid" 2>/dev/null' HUP INT TERM
(read -r _ <&3; kill "$pid" 2>/dev/null) </dev/null >/dev/null 2>&1 &
wait "$pid"
status=$?
wait "$pid" 2>/dev/null
exit "$status"
"#;

impl Shard {
    /// Starts the process and waits until it answers PING.
    pub async fn start(bin: &Path, workdir: &Path, spec: ShardSpec) -> Result<Shard> {
        let mut last_err = None;
        // Another process may grab the port between our probe and redis-server's bind.
        for _ in 0..5 {
            let port = free_port()?;
            match Self::start_on(bin, workdir, &spec, port).await {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("no attempt made")))
    }

    async fn start_on(bin: &Path, workdir: &Path, spec: &ShardSpec, port: u16) -> Result<Shard> {
        let log = workdir.join(format!("shard-{}-{port}.log", spec.id));
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(GUARD).arg(bin);
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // A rebind of a large pool reaches the shard as that many new
            // connections at once (redis-server's default backlog is 511).
            .args(["--tcp-backlog", "4096"])
            .args(["--repl-diskless-sync", "yes"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(workdir)
            .arg("--dbfilename")
            .arg(format!("shard-{}-{port}.rdb", spec.id))
            .arg("--logfile")
            .arg(&log);
        if let Some(pw) = &spec.password {
            cmd.args(["--requirepass", pw, "--masterauth", pw]);
        }
        if spec.cluster {
            cmd.args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(format!("nodes-{}-{port}.conf", spec.id))
                // How long a node may be silent before the others mark it
                // failing: short, as everything is on one machine.
                .args(["--cluster-node-timeout", "2000"])
                // A primary that gave all its slots away stays a primary
                // (with no slot) rather than following the node that took
                // them: the emulator decides where shards go.
                .args(["--cluster-allow-replica-migration", "no"]);
        }
        cmd.args(&spec.args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} for shard {}", bin.display(), spec.id))?;
        let lifeline = child.stdin.take();
        let mut first = String::new();
        if let Some(out) = child.stdout.take() {
            use tokio::io::AsyncBufReadExt;
            let mut out = tokio::io::BufReader::new(out);
            tokio::time::timeout(SHARD_PID_WITHIN, out.read_line(&mut first))
                .await
                .context("redis-server's guard did not report a PID")??;
        }
        let pid: u32 = first
            .trim()
            .parse()
            .with_context(|| format!("redis-server's guard printed {first:?}, not a PID"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let shard = Shard {
            id: spec.id,
            node: spec.node,
            addr,
            password: spec.password.clone(),
            child,
            lifeline,
            pid,
            log,
        };
        let starting = tokio::sync::Mutex::new(shard);
        let answered = poll(SERVER_POLL, SHARD_START_WITHIN, || async {
            let mut shard = starting.lock().await;
            if let Some(status) = shard.child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut e) = shard.child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut stderr).await;
                }
                bail!(
                    "redis-server for shard {} on port {port} exited with {status}: {} {}",
                    spec.id,
                    stderr.trim(),
                    shard.log_tail()
                );
            }
            if let Ok(mut c) = shard.connect().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return Ok(Look::Ready(()));
                }
            }
            Ok(Look::NotYet(()))
        })
        .await?;
        let shard = starting.into_inner();
        if answered.is_err() {
            bail!(
                "redis-server for shard {} on port {port} did not answer PING within {SHARD_START_WITHIN:?}; {}",
                spec.id,
                shard.log_tail()
            );
        }
        // REPLICAOF at run time connects at once; `--replicaof` waits for the
        // next once-a-second replication cron.
        if let Some(primary) = spec.replica_of {
            shard.replicate(Some(primary)).await?;
        }
        Ok(shard)
    }

    fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "last log lines: {}",
                    lines[lines.len().saturating_sub(5)..].join(" | ")
                )
            }
            Err(_) => String::new(),
        }
    }

    /// The process id of redis-server.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    /// An admin connection (RESP2) straight to the process.
    pub async fn connect(&self) -> Result<redis::aio::MultiplexedConnection> {
        use redis::IntoConnectionInfo;
        let mut info = redis::ConnectionAddr::Tcp(self.addr.ip().to_string(), self.addr.port())
            .into_connection_info()?;
        if let Some(pw) = &self.password {
            info = info
                .set_redis_settings(redis::RedisConnectionInfo::default().set_password(pw.clone()));
        }
        let client = redis::Client::open(info)?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(SHARD_CONNECT_TIMEOUT))
            .set_response_timeout(Some(SHARD_COMMAND_TIMEOUT));
        Ok(client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?)
    }

    /// Runs one admin command and returns its reply as text.
    pub async fn admin(&self, args: &[&str]) -> Result<String> {
        let mut c = self
            .connect()
            .await
            .with_context(|| format!("connecting to shard {} at {}", self.id, self.addr))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let v: redis::Value = cmd
            .query_async(&mut c)
            .await
            .with_context(|| format!("{} on shard {} at {}", args.join(" "), self.id, self.addr))?;
        Ok(match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) => s,
            redis::Value::Okay => "OK".into(),
            other => format!("{other:?}"),
        })
    }

    /// A field of `INFO replication`.
    pub async fn replication_field(&self, field: &str) -> Result<Option<String>> {
        let info = self.admin(&["INFO", "replication"]).await?;
        Ok(info_field(&info, field))
    }

    /// Waits until this replica's link to its primary is up.
    pub async fn wait_link_up(&self, within: Duration) -> Result<()> {
        let synced = poll(SERVER_POLL, within, || async {
            let up = self.replication_field("master_link_status").await?;
            let syncing = self.replication_field("master_sync_in_progress").await?;
            anyhow::Ok(match (up.as_deref(), syncing.as_deref()) {
                (Some("up"), Some("0")) => Look::Ready(()),
                _ => Look::NotYet(()),
            })
        })
        .await?;
        if synced.is_err() {
            bail!(
                "shard {} at {} did not finish syncing from its primary within {within:?}",
                self.id,
                self.addr
            );
        }
        Ok(())
    }

    /// Makes this shard replicate `primary` (or become a primary with `None`).
    pub async fn replicate(&self, primary: Option<SocketAddr>) -> Result<()> {
        match primary {
            Some(p) => {
                let port = p.port().to_string();
                self.admin(&["REPLICAOF", &p.ip().to_string(), &port])
                    .await?
            }
            None => self.admin(&["REPLICAOF", "NO", "ONE"]).await?,
        };
        Ok(())
    }

    /// Kills the process at once (SIGKILL, by its PID), as a crash would;
    /// [`Shard::stop`] reaps it.
    pub fn kill(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
    }

    /// Stops the process and waits for it to exit.
    pub async fn stop(mut self) {
        // SHUTDOWN ... NOW skips the wait for replicas that SIGTERM does (the
        // data is throwaway); servers before 7.0 know only SHUTDOWN NOSAVE. A
        // reply means it refused; a closed connection means it went.
        for args in [
            &["SHUTDOWN", "NOSAVE", "NOW"][..],
            &["SHUTDOWN", "NOSAVE"][..],
        ] {
            if self.admin(args).await.is_err() {
                break;
            }
        }
        self.lifeline.take();
        if tokio::time::timeout(SHARD_STOP_WITHIN, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid = self.pid, "redis-server ignored SIGTERM; killing it");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Reads `field:value` out of an INFO section.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

/// Waits until `replica` has applied everything `primary` has written.
pub async fn wait_caught_up(primary: &Shard, replica: &Shard, within: Duration) -> Result<()> {
    let offset = |v: Option<String>| -> u64 { v.and_then(|v| v.parse().ok()).unwrap_or(0) };
    let caught_up = poll(REPLICATION_POLL, within, || async {
        let want = offset(primary.replication_field("master_repl_offset").await?);
        let have = offset(replica.replication_field("slave_repl_offset").await?);
        anyhow::Ok(match have >= want {
            true => Look::Ready(()),
            false => Look::NotYet((have, want)),
        })
    })
    .await?;
    if let Err((have, want)) = caught_up {
        bail!(
            "replica shard {} reached offset {have} of {want} within {within:?}; refusing to promote it and lose writes",
            replica.id
        );
    }
    Ok(())
}

/// An ephemeral port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(l.local_addr()?.port())
}

/// One primary shard and its replica, and the slots they own.
pub struct ShardSet {
    /// The primary.
    pub primary: Shard,
    /// The replica, with replication.
    pub replica: Option<Shard>,
    /// First and last hash slot.
    pub slots: (u16, u16),
}

/// The shards of a database, in slot order.
#[derive(Default)]
pub struct Shards {
    /// One per primary shard.
    pub sets: Vec<ShardSet>,
}

impl Shards {
    /// Stops every process of the database.
    pub async fn stop(&mut self) {
        let stops = std::mem::take(&mut self.sets)
            .into_iter()
            .flat_map(|s| std::iter::once(s.primary).chain(s.replica))
            .map(Shard::stop);
        futures::future::join_all(stops).await;
    }

    /// Process ids of every shard.
    pub fn pids(&self) -> Vec<u32> {
        self.sets
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(s.replica.as_ref()))
            .filter_map(Shard::pid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_redis_server_says_how_to_install_it() {
        let err = find_redis_server(None, Some("/nonexistent:/also-not".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install redis-server"), "{err}");
        assert!(err.contains(REDIS_SERVER_BIN_ENV), "{err}");
        let err = find_redis_server(Some("/no/such/redis".into()), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/no/such/redis") && err.contains("does not name a file"),
            "{err}"
        );
    }

    #[test]
    fn versions_are_read_from_the_version_line() {
        assert_eq!(
            parse_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n"),
            Some((7, 0, 15))
        );
        assert_eq!(
            parse_version("Valkey server v=8.1.0 sha=0"),
            Some((8, 1, 0))
        );
        assert_eq!(parse_version("hello"), None);
    }

    #[test]
    fn a_server_too_old_or_not_a_server_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |name: &str, prints: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho '{prints}'\n")).unwrap();
            std::process::Command::new("chmod")
                .args(["+x", &p.to_string_lossy()])
                .status()
                .unwrap();
            p
        };
        let old = fake(
            "old",
            "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1",
        );
        let err = check_version(&old).unwrap_err().to_string();
        assert!(
            err.starts_with("redis-server 6.0.16 (")
                && err.contains("is too old: the emulator needs 7.0 or newer"),
            "{err}"
        );
        assert!(err.contains(REDIS_SERVER_BIN_ENV), "{err}");
        let other = fake("other", "something else");
        let err = check_version(&other).unwrap_err().to_string();
        assert!(err.contains("not a redis-server version"), "{err}");
        let real = redis_server_bin().unwrap();
        assert!(check_version(&real).unwrap() >= (7, 0, 0));
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Replication\r\nrole:master\r\nmaster_repl_offset:42\r\n";
        assert_eq!(
            info_field(info, "master_repl_offset").as_deref(),
            Some("42")
        );
        assert_eq!(info_field(info, "missing"), None);
    }
}
