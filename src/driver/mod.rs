//! Clients under test in another process, through a driver: a small program
//! beside the client (`drivers/redis-py/driver.py`) that speaks a line
//! protocol on its standard input and output (`docs/DRIVERS.md`). The suite
//! creates clients through it with the scenario's settings, sends each
//! request of the traffic through it and times it, and records what the
//! driver lets it see of the client as explanation ([`events`]).

pub mod applicable;
pub mod events;
pub mod install;
pub mod process;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::client::{ClientError, EventSink};
pub use install::{prepare, Launch, DRIVERS};
pub use process::{DriverError, DriverProcess, PROTOCOL};

/// Names the client under test: unset, the suite's own; `redis-py`, the
/// client of that driver.
pub const CLIENT_ENV: &str = "MAINT_E2E_CLIENT";

/// The driver `MAINT_E2E_CLIENT` selects, if any.
pub fn selected() -> Option<String> {
    std::env::var(CLIENT_ENV)
        .ok()
        .filter(|c| !c.trim().is_empty())
}

/// Settings of a client made through a driver, as `create` sends them
/// (protocol 1): only those set are sent; a driver refuses one its client
/// does not have, and the scenario is then not applicable to it.
#[derive(Clone, Debug, Default)]
pub struct DriverSettings(pub Map<String, Value>);

impl DriverSettings {
    /// Sets `key` to `value`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    /// Sets the duration `key` in seconds (`None`: no limit, `null`).
    pub fn duration(self, key: &str, d: Option<Duration>) -> Self {
        let v = d.map_or(Value::Null, |d| json!(d.as_secs_f64()));
        self.set(key, v)
    }
}

/// One client under test, made by a driver.
pub struct DriverClient {
    process: Arc<DriverProcess>,
    /// Its name in the scenario (and the name the server sees).
    pub name: String,
}

impl DriverClient {
    /// Creates client `name` with `settings` through `process`.
    pub async fn create(
        process: Arc<DriverProcess>,
        name: &str,
        settings: DriverSettings,
    ) -> Result<DriverClient, DriverError> {
        let mut fields = Map::new();
        fields.insert("client".into(), json!(name));
        fields.insert("settings".into(), Value::Object(settings.0));
        let within = crate::timing::DRIVER_CREATE_WITHIN;
        tokio::time::timeout(within, process.request("create", fields))
            .await
            .map_err(|_| DriverError::Failed {
                client: process.client.clone(),
                op: "create".into(),
                message: format!(
                    "the client neither connected nor gave up within {within:?} (does it retry a refused connection without end?)"
                ),
            })??;
        Ok(DriverClient {
            process,
            name: name.to_string(),
        })
    }

    /// Sends `cmd` through the client; how it ended, as the client said.
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<redis::Value, ClientError> {
        let args: Vec<Value> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => json!(String::from_utf8_lossy(b)),
                // A cursor's place: the traffic sends none.
                _ => json!("0"),
            })
            .collect();
        let mut fields = Map::new();
        fields.insert("client".into(), json!(self.name));
        fields.insert("args".into(), Value::Array(args));
        let sent = Instant::now();
        let answer =
            self.process
                .request("command", fields)
                .await
                .map_err(|e| ClientError::Connection {
                    context: format!("the driver did not run the request: {e}"),
                    cause: None,
                })?;
        outcome(&answer, sent.elapsed())
    }

    /// Closes the client (every connection of it).
    pub async fn close(&self) -> Result<(), DriverError> {
        let mut fields = Map::new();
        fields.insert("client".into(), json!(self.name));
        self.process.request("close", fields).await.map(|_| ())
    }
}

/// A `command` answer as a reply or a classified error.
fn outcome(answer: &Map<String, Value>, took: Duration) -> Result<redis::Value, ClientError> {
    let error = || {
        answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("(no error text)")
            .to_string()
    };
    match answer.get("outcome").and_then(Value::as_str) {
        Some("ok") => Ok(reply(answer.get("reply").unwrap_or(&Value::Null))),
        Some("timeout") => Err(ClientError::Timeout {
            after: took,
            in_window: false,
        }),
        Some("server") => Err(ClientError::Server(error())),
        Some("connection") => Err(ClientError::Connection {
            context: error(),
            cause: None,
        }),
        Some(other) => Err(ClientError::Connection {
            context: format!("{other}: {}", error()),
            cause: None,
        }),
        None => Err(ClientError::Connection {
            context: format!("the driver answered without an outcome: {answer:?}"),
            cause: None,
        }),
    }
}

/// A reply in the protocol's JSON as a RESP value.
fn reply(v: &Value) -> redis::Value {
    match v {
        Value::Null => redis::Value::Nil,
        Value::String(s) => redis::Value::BulkString(s.as_bytes().to_vec()),
        Value::Number(n) => n
            .as_i64()
            .map(redis::Value::Int)
            .unwrap_or_else(|| redis::Value::BulkString(n.to_string().into_bytes())),
        Value::Bool(b) => redis::Value::Boolean(*b),
        Value::Array(items) => redis::Value::Array(items.iter().map(reply).collect()),
        Value::Object(_) => redis::Value::BulkString(v.to_string().into_bytes()),
    }
}

/// Starts the driver of `client` (installing what it needs on first use);
/// its events go to `sink`.
pub async fn start(client: &str, sink: Arc<dyn EventSink>) -> anyhow::Result<DriverProcess> {
    let launch = prepare(client).await?;
    Ok(DriverProcess::start(client, &launch.program, &launch.args, sink).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified_as_the_driver_says() {
        let a = |v: Value| v.as_object().unwrap().clone();
        let took = Duration::from_millis(5);
        assert_eq!(
            outcome(&a(json!({"outcome": "ok", "reply": ["a", 1, null]})), took).unwrap(),
            redis::Value::Array(vec![
                redis::Value::BulkString(b"a".to_vec()),
                redis::Value::Int(1),
                redis::Value::Nil
            ])
        );
        let class = |v: Value| outcome(&a(v), took).unwrap_err().class();
        assert_eq!(
            class(json!({"outcome": "timeout", "error": "t"})),
            "timeout"
        );
        assert_eq!(
            class(json!({"outcome": "connection", "error": "c"})),
            "connection"
        );
        assert_eq!(
            class(json!({"outcome": "server", "error": "ERR x"})),
            "server"
        );
        assert_eq!(
            class(json!({"outcome": "other", "error": "o"})),
            "connection"
        );
        assert_eq!(class(json!({"reply": 1})), "connection");
        assert!(matches!(
            outcome(&a(json!({"outcome": "server", "error": "MOVED 1 h:1"})), took),
            Err(ClientError::Server(m)) if m == "MOVED 1 h:1"
        ));
    }
}
