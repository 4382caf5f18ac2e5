//! What the API answers: an action's state, status and list, what
//! `create_database` produces, and the error body.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Timestamp;

/// Where an action is in its life, by its wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// Accepted, not started.
    Pending,
    /// Running.
    Running,
    /// Ended well.
    Success,
    /// Ended well (what some real services say instead of `success`).
    Finished,
    /// Ended badly; the status says why.
    Failed,
    /// Stopped before its end (real services only).
    Cancelled,
}

impl ActionState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Running => "running",
            ActionState::Success => "success",
            ActionState::Finished => "finished",
            ActionState::Failed => "failed",
            ActionState::Cancelled => "cancelled",
        }
    }

    /// True once the action will not change any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ActionState::Pending | ActionState::Running)
    }

    /// True for an action that ended well.
    pub fn is_success(self) -> bool {
        matches!(self, ActionState::Success | ActionState::Finished)
    }
}

impl fmt::Display for ActionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /action` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionAccepted {
    /// Id to poll.
    pub action_id: String,
    /// `pending` at first.
    pub status: ActionState,
}

/// `GET /action/{id}` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionStatus {
    /// The id.
    pub action_id: String,
    /// Where it is.
    pub status: ActionState,
    /// Why it failed (a string here; real services may send an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// What it produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Where a failure came from, one cause a line, the outermost first
    /// (failed actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
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
        self.status.is_terminal()
    }

    /// The error as text (empty when there is none).
    pub fn error_text(&self) -> String {
        match &self.error {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }
}

/// One row of `GET /action`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionSummary {
    /// The id.
    pub job_id: String,
    /// The type.
    pub action_type: String,
    /// Where it is.
    pub status: ActionState,
    /// When it was submitted.
    pub submitted_at: Timestamp,
}

/// `GET /action` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ActionList {
    /// Every action, oldest first.
    pub actions: Vec<ActionSummary>,
}

/// The output of `create_database`: the database as a real cluster describes
/// it, with the endpoints-file fields clients read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CreatedDatabase {
    /// Its id.
    pub bdb_id: u64,
    /// Its name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// Primary shards.
    pub shards_count: usize,
    /// `redis://host:port` or `rediss://host:port`.
    pub endpoints: Vec<String>,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// TLS on the endpoint.
    pub tls: bool,
    /// The endpoint as a real database description has it (`addr`,
    /// `addr_type`, `dns_name`, `port`, `proxy_policy`, `uid`, ...).
    pub raw_endpoints: Value,
    /// Settings that were sent and change nothing here.
    pub ignored: Vec<String>,
}

impl CreatedDatabase {
    /// The database as an endpoints file describes it, to connect to it.
    pub fn database_config(
        &self,
    ) -> Result<crate::config::DatabaseConfig, crate::config::BadEndpoint> {
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| crate::config::DatabaseEndpoint::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(crate::config::BadEndpoint {
                text: String::new(),
                problem: format!("database {:?} has no endpoint", self.name),
            });
        }
        Ok(crate::config::DatabaseConfig {
            name: self.name.clone(),
            bdb_id: Some(self.bdb_id),
            username: self.username.clone(),
            password: self.password.clone(),
            tls: self.tls,
            certificates_location: None,
            endpoints,
            raw_endpoints: Some(self.raw_endpoints.clone()),
            discovery_endpoints: Vec::new(),
        })
    }
}

/// Error body of every non-2xx answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiError {
    /// What is wrong and how to fix it.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_their_wire_names_and_know_their_end() {
        for (state, name) in [
            (ActionState::Pending, "pending"),
            (ActionState::Running, "running"),
            (ActionState::Success, "success"),
            (ActionState::Finished, "finished"),
            (ActionState::Failed, "failed"),
            (ActionState::Cancelled, "cancelled"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), name);
            assert_eq!(
                serde_json::from_value::<ActionState>(name.into()).unwrap(),
                state
            );
            assert_eq!(state.to_string(), name);
        }
        assert!(!ActionState::Running.is_terminal());
        assert!(ActionState::Failed.is_terminal() && !ActionState::Failed.is_success());
        assert!(ActionState::Finished.is_success());
        assert!(serde_json::from_value::<ActionState>("done".into()).is_err());
    }
}
