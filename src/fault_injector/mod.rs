//! The fault injector HTTP API: its JSON types and a client for it.
//!
//! The same client drives the emulator and a real fault injector next to a Redis
//! Enterprise cluster.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A point in time as the API writes it: an RFC 3339 string in UTC with
/// microseconds (`"2026-11-28T23:10:04.123456Z"`), which typed clients decode as
/// a timestamp. Read liberally: an RFC 3339 string with any precision or
/// offset-free form, or a number of seconds since the epoch (what older
/// services wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    /// Seconds since the epoch.
    pub fn epoch_seconds(&self) -> f64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_micros(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
                .map(Timestamp)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "a time is an RFC 3339 string such as \"2026-11-28T23:10:04.123456Z\"; {s:?}: {e}"
                    ))
                }),
            Value::Number(n) if n.as_f64().is_some_and(|v| v >= 0.0) => Ok(Timestamp(
                UNIX_EPOCH + Duration::from_secs_f64(n.as_f64().unwrap_or(0.0)),
            )),
            other => Err(serde::de::Error::custom(format!(
                "a time is an RFC 3339 string or seconds since the epoch, got {other}"
            ))),
        }
    }
}

/// `POST /action` body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionRequest {
    /// Action type, such as `failover`.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its parameters.
    #[serde(default)]
    pub parameters: Value,
}

/// `POST /action` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionAccepted {
    /// Id to poll.
    pub action_id: String,
    /// Always `pending` at first.
    #[serde(default)]
    pub status: String,
}

/// `GET /action/{id}` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionStatus {
    /// The id.
    pub action_id: String,
    /// pending, running, success, failed (real services also say finished, cancelled).
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// What it produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// When it started running (when it was submitted, while pending).
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// When it ended; absent until it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
}

impl ActionStatus {
    /// True once the action will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "success" | "finished" | "failed" | "cancelled"
        )
    }
}

/// One row of `GET /action`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionSummary {
    /// The id.
    pub job_id: String,
    /// The type.
    pub action_type: String,
    /// Its status.
    pub status: String,
    /// When it was submitted.
    pub submitted_at: Timestamp,
}

/// `GET /action` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionList {
    /// Every action, oldest first.
    pub actions: Vec<ActionSummary>,
}

/// Error body of every non-2xx answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiError {
    /// What is wrong and how to fix it.
    pub error: String,
}

/// An HTTP client of the fault injector.
#[derive(Clone, Debug)]
pub struct FaultInjectorClient {
    base: String,
    http: reqwest::Client,
}

impl FaultInjectorClient {
    /// A client of the service at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(FaultInjectorClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<()> {
        let r = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .with_context(|| format!("fault injector at {} is not reachable", self.base))?;
        if !r.status().is_success() {
            bail!(
                "fault injector at {} answered {} to /health",
                self.base,
                r.status()
            );
        }
        Ok(())
    }

    /// `POST /action`; returns the action id.
    pub async fn trigger(&self, action_type: &str, parameters: Value) -> Result<String> {
        Ok(self.submit(action_type, parameters).await?.action_id)
    }

    /// `POST /action`; returns the whole answer.
    pub async fn submit(&self, action_type: &str, parameters: Value) -> Result<ActionAccepted> {
        let req = ActionRequest {
            action_type: action_type.to_string(),
            parameters,
        };
        let post = self.http.post(format!("{}/action", self.base)).json(&req);
        send(post, &format!("posting {action_type} to {}", self.base)).await
    }

    /// `GET /action/{id}`.
    pub async fn status(&self, id: &str) -> Result<ActionStatus> {
        let get = self.http.get(format!("{}/action/{id}", self.base));
        send(get, &format!("polling action {id}")).await
    }

    /// Polls until the action is terminal or `within` passes.
    pub async fn wait(&self, id: &str, within: Duration) -> Result<ActionStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let s = self.status(id).await?;
            if s.is_terminal() {
                return Ok(s);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("action {id} still {} after {within:?}", s.status));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /topology-change-standalone?effect=E&cluster_index=0`: the triggers
    /// that produce `effect` on a standalone database.
    pub async fn standalone_triggers(&self, effect: &str) -> Result<Value> {
        let get = self.http.get(format!(
            "{}/topology-change-standalone?effect={}&cluster_index=0",
            self.base,
            url::form_urlencoded::byte_serialize(effect.as_bytes()).collect::<String>()
        ));
        send(
            get,
            &format!("asking {} for the triggers of {effect}", self.base),
        )
        .await
    }

    /// `create_database` with `database_config`, run to its end; returns its
    /// output and the new database's id.
    pub async fn create_database(
        &self,
        database_config: Value,
        within: Duration,
    ) -> Result<(Value, u64)> {
        let done = self
            .run(
                "create_database",
                serde_json::json!({ "database_config": database_config }),
                within,
            )
            .await?;
        let output = done
            .output
            .ok_or_else(|| anyhow!("create_database succeeded without output"))?;
        let id = output
            .get("bdb_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("create_database output lacks bdb_id: {output}"))?;
        Ok((output, id))
    }

    /// Triggers and waits for success; any other end is an error.
    pub async fn run(
        &self,
        action_type: &str,
        parameters: Value,
        within: Duration,
    ) -> Result<ActionStatus> {
        let id = self.trigger(action_type, parameters).await?;
        let s = self.wait(&id, within).await?;
        if s.status != "success" && s.status != "finished" {
            bail!(
                "{action_type} action {id} ended {}: {}",
                s.status,
                s.error.map(|e| e.to_string()).unwrap_or_default()
            );
        }
        Ok(s)
    }
}

/// Sends `req` and reads a JSON answer; `what` says what was being done.
async fn send<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<T> {
    let r = req.send().await.with_context(|| what.to_string())?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{what}: the fault injector answered {status} {body}");
    }
    serde_json::from_str(&body)
        .with_context(|| format!("{what}: the fault injector answered {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_rfc_3339_and_read_in_either_form() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456));
        let text = serde_json::to_value(t).unwrap();
        assert_eq!(text, "2026-11-18T11:06:40.123456Z");
        assert_eq!(serde_json::from_value::<Timestamp>(text).unwrap(), t);
        let number: Timestamp = serde_json::from_value(serde_json::json!(1_795_000_000.5)).unwrap();
        assert_eq!(number.epoch_seconds(), 1_795_000_000.5);
        let err = serde_json::from_value::<Timestamp>(serde_json::json!("yesterday"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RFC 3339") && err.contains("yesterday"),
            "{err}"
        );
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!(true)).is_err());
    }
}
