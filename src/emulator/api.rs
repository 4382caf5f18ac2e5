//! The fault injector HTTP API, served by the emulator. Handlers only translate
//! HTTP to the [`crate::fault_injector`] contract and call [`Emulator`] and
//! [`ActionStore`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::catalogue;
use super::{ActionError, ActionStore, Emulator};
use crate::fault_injector::{Action, ActionAccepted, ActionState, ApiError};

#[derive(Clone)]
struct AppState {
    emulator: Arc<Emulator>,
    actions: Arc<ActionStore>,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

impl IntoResponse for ActionError {
    fn into_response(self) -> Response {
        let status = match &self {
            ActionError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ActionError::Conflict(_) => StatusCode::CONFLICT,
            ActionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error(status, self.to_string())
    }
}

/// The router, for tests and for [`serve`].
pub fn router(emulator: Arc<Emulator>) -> Router {
    let state = AppState {
        emulator,
        actions: Arc::new(ActionStore::default()),
    };
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/action", post(post_action).get(list_actions))
        .route("/action/{id}", get(get_action))
        .route("/topology-change-standalone", get(standalone_triggers))
        .route("/slot-migrate", get(slot_migrate_triggers).post(slot_migrate))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; the API has POST /action, GET /action, GET /action/{id}, GET /health, GET /topology-change-standalone?effect=E, GET /slot-migrate?effect=E",
            )
        })
        .with_state(state)
}

/// Binds `addr` and serves until `cancel`; returns the bound address.
pub async fn serve(
    emulator: Arc<Emulator>,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the fault injector API on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = router(emulator);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    Ok(bound)
}

async fn post_action(State(s): State<AppState>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON ({e}); send {{\"type\": \"failover\", \"parameters\": {{\"bdb_id\": 1}}}}"),
            )
        }
    };
    let action = match Action::parse(&value) {
        Ok(a) => a,
        Err(e) => return ActionError::from(e).into_response(),
    };
    match s.actions.submit(&s.emulator, action) {
        Ok(action_id) => Json(ActionAccepted {
            action_id,
            status: ActionState::Pending,
        })
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_action(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.actions.status(&id) {
        Some(st) => Json(st).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no action with id {id:?}; GET /action lists them"),
        ),
    }
}

async fn list_actions(State(s): State<AppState>) -> Response {
    Json(s.actions.list()).into_response()
}

type Params = Query<HashMap<String, String>>;

async fn standalone_triggers(State(s): State<AppState>, Query(q): Params) -> Response {
    let Some(effect) = q.get("effect") else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "missing query parameter effect; one of {}",
                catalogue::effects().join(", ")
            ),
        );
    };
    match catalogue::standalone(&s.emulator, effect) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn slot_migrate_triggers(State(s): State<AppState>, Query(q): Params) -> Response {
    match q.get("effect") {
        Some(effect) => Json(catalogue::slot_migrate(&s.emulator, effect)).into_response(),
        None => error(
            StatusCode::BAD_REQUEST,
            "missing query parameter effect (slot-shuffle, add, remove or remove-add)",
        ),
    }
}

async fn slot_migrate() -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "OSS Cluster API databases are not emulated, so there is no slot to migrate; use POST /action with topology_change_standalone on a standalone database",
    )
}
