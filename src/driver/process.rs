//! One driver process and the line protocol spoken with it (protocol 1 of
//! `docs/DRIVERS.md`): requests written to its standard input, each answered
//! on its standard output by a line with the request's id; events on the
//! same output, without an id, handed to an [`EventSink`]. What it writes to
//! standard error is kept (the last lines) to explain its failures.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::events::Observations;
use crate::client::EventSink;

/// The protocol version this suite speaks.
pub const PROTOCOL: u64 = 1;

/// Round trips of `clock` when a driver starts; the quickest maps its clock.
const CLOCK_SAMPLES: usize = 8;

/// Lines of a driver's standard error kept to explain a failure.
const STDERR_TAIL: usize = 40;

/// Why a request to a driver did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The client under test cannot express the request (a setting it does
    /// not have): the scenario is not applicable to it.
    #[error("not applicable to {client}: {reason}")]
    NotApplicable {
        /// The driver's client.
        client: String,
        /// Why, in the driver's words.
        reason: String,
    },
    /// The driver answered with an error.
    #[error("the {client} driver failed {op}: {message}")]
    Failed {
        /// The driver's client.
        client: String,
        /// The request.
        op: String,
        /// The driver's words.
        message: String,
    },
    /// The driver broke the protocol or is gone.
    #[error("the {client} driver {what}{}", stderr_suffix(.stderr))]
    Broken {
        /// The driver's client.
        client: String,
        /// What happened.
        what: String,
        /// The last lines it wrote to standard error.
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its last words on standard error:\n{stderr}")
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Map<String, Value>>>>>;

/// A running driver.
pub struct DriverProcess {
    /// The client it drives (`redis-py`), as its `hello` says.
    pub client: String,
    /// Its client's version, as its `hello` says.
    pub version: String,
    /// The settings of `create` it maps onto its client.
    pub settings: Vec<String>,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    next: AtomicU64,
    child: Mutex<Option<Child>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    observations: Arc<Observations>,
}

impl DriverProcess {
    /// Starts `program` with `args`, reads its `hello` and aligns its clock
    /// with this process's; its events go to `sink`.
    pub async fn start(
        label: &str,
        program: &str,
        args: &[String],
        sink: Arc<dyn EventSink>,
    ) -> Result<DriverProcess, DriverError> {
        let broken = |what: String| DriverError::Broken {
            client: label.to_string(),
            what,
            stderr: String::new(),
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| broken(format!("could not be started ({program}): {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut t = tail.lock().unwrap();
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let pending: Pending = Arc::default();
        let observations = Arc::new(Observations::new(sink));
        let (reader_pending, reader_obs) = (pending.clone(), observations.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(Value::Object(message)) = serde_json::from_str::<Value>(&line) else {
                    tracing::warn!("a driver wrote a line that is not a JSON object: {line}");
                    continue;
                };
                match message.get("id").and_then(Value::as_u64) {
                    Some(id) => {
                        if let Some(tx) = reader_pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(message);
                        }
                    }
                    None => reader_obs.event(&message),
                }
            }
            // Gone: every request still waiting learns it (its sender drops).
            reader_pending.lock().unwrap().clear();
        });
        let mut p = DriverProcess {
            client: label.to_string(),
            version: String::new(),
            settings: Vec::new(),
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next: AtomicU64::new(1),
            child: Mutex::new(Some(child)),
            stderr,
            observations,
        };
        let hello = p.request("hello", Map::new()).await?;
        let protocol = hello.get("protocol").and_then(Value::as_u64);
        if protocol != Some(PROTOCOL) {
            return Err(p.broken(format!(
                "speaks protocol {protocol:?}; this suite speaks {PROTOCOL}"
            )));
        }
        let text = |k: &str| {
            hello
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        p.client = text("client");
        p.version = text("version");
        p.settings = hello
            .get("settings")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        p.align_clock().await?;
        Ok(p)
    }

    /// Maps the driver's monotonic clock onto this process's instants: the
    /// driver's reading is taken halfway through the round trip, of the
    /// quickest of a few (a driver just started, or a busy machine, can
    /// take long to read one request, which would skew the mapping by half
    /// of that).
    async fn align_clock(&self) -> Result<(), DriverError> {
        let mut best: Option<(Duration, Instant, f64)> = None;
        for _ in 0..CLOCK_SAMPLES {
            let sent = Instant::now();
            let answer = self.request("clock", Map::new()).await?;
            let received = Instant::now();
            let now = answer
                .get("now")
                .and_then(Value::as_f64)
                .ok_or_else(|| self.broken("answered clock without a number \"now\"".into()))?;
            let rtt = received - sent;
            if best.is_none_or(|(b, _, _)| rtt < b) {
                best = Some((rtt, sent + rtt / 2, now));
            }
        }
        let (_, here, now) = best.expect("at least one sample");
        self.observations.set_clock(here, now);
        Ok(())
    }

    /// The instant of this process a driver's clock reading `t` was.
    pub fn instant(&self, t: f64) -> Instant {
        self.observations.instant(t)
    }

    /// Sends request `op` with `fields`; returns the answer's fields.
    pub async fn request(
        &self,
        op: &str,
        mut fields: Map<String, Value>,
    ) -> Result<Map<String, Value>, DriverError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        fields.insert("id".into(), json!(id));
        fields.insert("op".into(), json!(op));
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut line = Value::Object(fields).to_string();
        line.push('\n');
        let written = self.stdin.lock().await.write_all(line.as_bytes()).await;
        if let Err(e) = written {
            self.pending.lock().unwrap().remove(&id);
            return Err(self.broken(format!("did not take request {op}: {e}")));
        }
        let mut answer = rx
            .await
            .map_err(|_| self.broken(format!("ended before it answered {op}")))?;
        if answer.get("ok") == Some(&Value::Bool(true)) {
            answer.remove("id");
            answer.remove("ok");
            return Ok(answer);
        }
        let message = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("(no error text)")
            .to_string();
        if answer.get("not_applicable") == Some(&Value::Bool(true)) {
            return Err(DriverError::NotApplicable {
                client: self.client.clone(),
                reason: message,
            });
        }
        Err(DriverError::Failed {
            client: self.client.clone(),
            op: op.to_string(),
            message,
        })
    }

    /// Asks the driver to end, and waits (a moment) for it to; then kills it.
    pub async fn stop(&self) {
        let _ = self
            .stdin
            .lock()
            .await
            .write_all(b"{\"op\":\"bye\"}\n")
            .await;
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    fn broken(&self, what: String) -> DriverError {
        DriverError::Broken {
            client: self.client.clone(),
            what,
            stderr: self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}
