//! A client of the fault injector: the same one drives the emulator and a
//! real fault injector next to a Redis Enterprise cluster.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{
    Action, ActionAccepted, ActionList, ActionState, ActionStatus, CreatedDatabase, DatabaseSpec,
};
use crate::server_record::DatabaseRecord;
use crate::timing::{ACTION_POLL, HTTP_TIMEOUT};
use crate::wait::{poll, Look};

/// What went wrong talking to the fault injector.
#[derive(Debug, thiserror::Error)]
pub enum FaultInjectorError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Build(#[source] reqwest::Error),
    /// The service did not answer.
    #[error(
        "{what}: the fault injector at {url} is not reachable; check FAULT_INJECTION_API_URL (`maint-e2e emulator` starts one), or unset it and REDIS_ENDPOINTS_CONFIG_PATH to run against the embedded emulator"
    )]
    Unreachable {
        /// What was being done.
        what: String,
        /// Its base URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// It answered with an error status.
    #[error("{what}: the fault injector answered {status} {body}")]
    Refused {
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The body, which says why.
        body: String,
    },
    /// Its answer is not what the contract says.
    #[error("{what}: the fault injector answered {body}")]
    Decode {
        /// What was being done.
        what: String,
        /// The body.
        body: String,
        /// Why it could not be read.
        #[source]
        source: serde_json::Error,
    },
    /// An action did not end in time.
    #[error("action {id} still {state} after {within:?}")]
    NotEnded {
        /// The action.
        id: String,
        /// Where it was last seen.
        state: ActionState,
        /// How long it was given.
        within: Duration,
    },
    /// An action ended, but not well.
    #[error("{action_type} action {id} ended {state}: {error}")]
    Ended {
        /// Its type.
        action_type: &'static str,
        /// Its id.
        id: String,
        /// How it ended.
        state: ActionState,
        /// Why.
        error: String,
    },
}

/// What the client's methods return.
pub type Result<T, E = FaultInjectorError> = std::result::Result<T, E>;

/// An HTTP client of the fault injector.
#[derive(Clone, Debug)]
pub struct FaultInjectorClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl FaultInjectorClient {
    /// A client of the service at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(FaultInjectorError::Build)?;
        Ok(FaultInjectorClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: None,
        })
    }

    /// The same client, sending `Authorization: Bearer <token>` when given
    /// one (a fault injector started with `--api-token`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<serde_json::Value> {
        self.get("/health", "asking for /health").await
    }

    /// `POST /action`.
    pub async fn submit(&self, action: &Action) -> Result<ActionAccepted> {
        let post = self.http.post(format!("{}/action", self.base)).json(action);
        self.send(post, &format!("posting {}", action.type_name()))
            .await
    }

    /// `GET /action/{id}`.
    pub async fn status(&self, id: &str) -> Result<ActionStatus> {
        self.get(&format!("/action/{id}"), &format!("polling action {id}"))
            .await
    }

    /// `GET /action`.
    pub async fn list(&self) -> Result<ActionList> {
        self.get("/action", "listing actions").await
    }

    /// Polls until the action is terminal or `within` passes.
    pub async fn wait(&self, id: &str, within: Duration) -> Result<ActionStatus> {
        let ended = poll(ACTION_POLL, within, || async {
            let s = self.status(id).await?;
            Ok::<_, FaultInjectorError>(match s.is_terminal() {
                true => Look::Ready(s),
                false => Look::NotYet(s.status),
            })
        })
        .await?;
        ended.map_err(|state| FaultInjectorError::NotEnded {
            id: id.to_string(),
            state,
            within,
        })
    }

    /// Submits `action` and waits for it to end well; any other end is an error.
    pub async fn run(&self, action: &Action, within: Duration) -> Result<ActionStatus> {
        let id = self.submit(action).await?.action_id;
        let s = self.wait(&id, within).await?;
        if !s.status.is_success() {
            return Err(FaultInjectorError::Ended {
                action_type: action.type_name(),
                id,
                state: s.status,
                error: s.error_text(),
            });
        }
        Ok(s)
    }

    /// `create_database` with `config`, run to its end.
    pub async fn create_database(
        &self,
        config: DatabaseSpec,
        within: Duration,
    ) -> Result<CreatedDatabase> {
        let action = Action::CreateDatabase {
            database_config: config,
        };
        let done = self.run(&action, within).await?;
        let body = done.output.unwrap_or_default();
        serde_json::from_value(body.clone()).map_err(|source| FaultInjectorError::Decode {
            what: "reading what create_database produced".into(),
            body: body.to_string(),
            source,
        })
    }

    /// `GET /topology-change-standalone?effect=E&cluster_index=0`: the triggers
    /// that produce `effect` on a standalone database.
    pub async fn standalone_triggers(&self, effect: &str) -> Result<serde_json::Value> {
        let path = format!(
            "/topology-change-standalone?effect={}&cluster_index=0",
            url::form_urlencoded::byte_serialize(effect.as_bytes()).collect::<String>()
        );
        self.get(&path, &format!("asking for the triggers of {effect}"))
            .await
    }

    /// The emulator's record of database `bdb_id` (its connections named
    /// `name`, when given): `None` when the service keeps none (a real
    /// fault injector has no such route).
    pub async fn database_record(
        &self,
        bdb_id: u64,
        name: Option<&str>,
    ) -> Result<Option<DatabaseRecord>> {
        let mut path = format!("/emulator/databases/{bdb_id}/record");
        if let Some(n) = name {
            path.push_str("?name=");
            path.extend(url::form_urlencoded::byte_serialize(n.as_bytes()));
        }
        match self
            .get(
                &path,
                &format!("asking for the server's record of database {bdb_id}"),
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            // The emulator answers an unknown database in its own words.
            Err(FaultInjectorError::Refused { status, body, .. })
                if matches!(status, 404 | 405 | 501)
                    && !body.contains("no database with bdb_id") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `body` as is to `path` (`POST` when there is a body, else
    /// `GET`) and returns the status and the body of the answer, whatever
    /// they are: for checking how the service answers bad input.
    pub async fn raw(&self, path: &str, body: Option<Vec<u8>>) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let req = match body {
            Some(b) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b),
            None => self.http.get(url),
        };
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let unreachable = |source| FaultInjectorError::Unreachable {
            what: format!("sending a raw request to {path}"),
            url: self.base.clone(),
            source,
        };
        let r = req.send().await.map_err(unreachable)?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(unreachable)?))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let get = self.http.get(format!("{}{path}", self.base));
        self.send(get, what).await
    }

    /// Sends `req` and reads a JSON answer; `what` says what was being done.
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T> {
        let unreachable = |source| FaultInjectorError::Unreachable {
            what: what.to_string(),
            url: self.base.clone(),
            source,
        };
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let r = req.send().await.map_err(unreachable)?;
        let status = r.status();
        let body = r.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(FaultInjectorError::Refused {
                what: what.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_str(&body).map_err(|source| FaultInjectorError::Decode {
            what: what.to_string(),
            body,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_fault_injector_says_which_variable_to_check() {
        // Nothing listens on port 1 of loopback.
        let fi = FaultInjectorClient::new("http://127.0.0.1:1").unwrap();
        let err = fi.health().await.unwrap_err();
        let top = err.to_string();
        assert!(
            top.starts_with("asking for /health: the fault injector at http://127.0.0.1:1 is not reachable; check FAULT_INJECTION_API_URL"),
            "{top}"
        );
        // The cause is kept.
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("Connection refused"), "{chain}");
    }
}
