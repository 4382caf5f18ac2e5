//! The fault injector HTTP API, served by the emulator. Handlers only translate
//! HTTP to the [`crate::fault_injector`] contract and call [`Emulator`] and
//! [`ActionStore`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::catalogue;
use super::{ActionError, ActionStore, Emulator};
use crate::fault_injector::{Action, ActionAccepted, ActionState, ApiError};
use crate::timing::{API_BODY_LIMIT, API_REQUEST_TIMEOUT};

#[derive(Clone)]
struct AppState {
    emulator: Arc<Emulator>,
    actions: Arc<ActionStore>,
    body_limit: usize,
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

/// How the API guards itself.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// A bearer token every route but `/health` requires, when set.
    pub token: Option<String>,
    /// Bound on receiving a request: its headers, then its body.
    pub request_timeout: Duration,
    /// The largest body read.
    pub body_limit: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            token: None,
            request_timeout: API_REQUEST_TIMEOUT,
            body_limit: API_BODY_LIMIT,
        }
    }
}

/// The environment variable `--api-token` reads; clients of the suite send
/// the same variable's token.
pub const API_TOKEN_ENV: &str = "FAULT_INJECTION_API_TOKEN";

/// The router, for tests and for [`serve`].
pub fn router(emulator: Arc<Emulator>, options: &ApiOptions) -> Router {
    let state = AppState {
        emulator,
        actions: Arc::new(ActionStore::default()),
        body_limit: options.body_limit,
    };
    let guard = Guard {
        token: options.token.clone(),
        request_timeout: options.request_timeout,
        body_limit: options.body_limit,
    };
    Router::new()
        .route("/action", post(post_action).get(list_actions))
        .route("/action/{id}", get(get_action))
        .route("/topology-change-standalone", get(standalone_triggers))
        .route("/slot-migrate", get(slot_migrate_triggers).post(slot_migrate))
        .route(RECORD_ROUTE, get(database_record))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; the API has POST /action, GET /action, GET /action/{id}, GET /health, GET /topology-change-standalone?effect=E, GET /slot-migrate?effect=E, and the emulator's own GET /emulator/databases/{bdb_id}/record[?name=N]",
            )
        })
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .layer(middleware::from_fn_with_state(guard.clone(), authorize))
        .layer(middleware::from_fn_with_state(guard.clone(), bounded))
        .layer(DefaultBodyLimit::max(guard.body_limit))
        .with_state(state)
}

#[derive(Clone)]
struct Guard {
    token: Option<String>,
    request_timeout: Duration,
    body_limit: usize,
}

/// Refuses a request without the bearer token, when one is set; `/health`
/// answers without one, so that a probe needs none.
async fn authorize(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let Some(token) = &g.token else {
        return next.run(req).await;
    };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => unauthorized("the bearer token is not this fault injector's"),
        None => unauthorized(&format!(
            "this fault injector requires a bearer token: send `Authorization: Bearer <token>` with the token given to --api-token (clients of this suite read {API_TOKEN_ENV})"
        )),
    }
}

fn unauthorized(msg: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Compares in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers 408 when a request (its body included) takes longer than the
/// bound to arrive and be handled.
async fn bounded(State(g): State<Guard>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(g.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request did not arrive in full within {}; send the whole body at once",
                crate::timeline::show(Some(g.request_timeout))
            ),
        ),
    }
}

/// Why a body could not be read, said so that the caller can fix it.
fn rejected(e: BytesRejection, limit: usize) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than {} KiB; an action is a small JSON object such as {{\"type\": \"failover\", \"parameters\": {{\"bdb_id\": 1}}}}",
                limit / 1024
            ),
        )
    } else {
        error(e.status(), format!("the body could not be read: {e}"))
    }
}

/// What to say when the API listens at `bound`: nothing on loopback; beyond
/// it, that anyone who reaches it can run maintenance (and, without a token,
/// how to guard it).
fn exposure_warning(bound: SocketAddr, token: bool) -> Option<String> {
    if bound.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "the fault injector API listens on {bound}, beyond loopback: anyone who reaches it can fail over, migrate and delete databases{}",
        if token { "" } else { "; give it --api-token" }
    ))
}

/// Binds `addr` and serves until `cancel`; returns the bound address. A
/// client gets [`ApiOptions::request_timeout`] to send its headers; binding
/// anywhere but loopback is logged as a warning.
pub async fn serve(
    emulator: Arc<Emulator>,
    addr: SocketAddr,
    options: &ApiOptions,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "; something else listens there (another emulator?): pick another with --api HOST:PORT, or --api 127.0.0.1:0 for any free port"
                }
                _ => "",
            };
            anyhow::anyhow!("binding the fault injector API on {addr}: {e}{hint}")
        })?;
    let bound = listener.local_addr()?;
    if let Some(warning) = exposure_warning(bound, options.token.is_some()) {
        tracing::warn!(%bound, "{warning}");
    }
    let app = router(emulator, options);
    let header_timeout = options.request_timeout;
    tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut errors = super::accept::AcceptErrors::new("the fault injector API");
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        errors.failed(e).await;
                        continue;
                    }
                },
            };
            let app = app.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // A client that connects and never sends a byte is dropped
                // after the same bound (hyper's timer starts at the first).
                let mut first = [0u8; 1];
                match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let mut builder = AutoBuilder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(app),
                );
                let _ = watcher.watch(conn).await;
            });
        }
        let _ = tokio::time::timeout(header_timeout, graceful.shutdown()).await;
    });
    Ok(bound)
}

async fn post_action(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return rejected(e, s.body_limit),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON ({e}); send {{\"type\": \"failover\", \"parameters\": {{\"bdb_id\": 1}}}}"),
            )
        }
    };
    submit(&s, &value)
}

/// Reads `body` as an action and queues it: `{"action_id", "status": "pending"}`,
/// or the refusal.
fn submit(s: &AppState, body: &Value) -> Response {
    let action = match Action::parse(body) {
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

/// The emulator's own namespace, beside the fault injector's routes and
/// behind the same token: the server's record of a database.
pub const RECORD_ROUTE: &str = "/emulator/databases/{bdb_id}/record";

/// `GET /emulator/databases/{bdb_id}/record[?name=N]`: every client
/// connection of the database (those that named themselves N with `CLIENT
/// SETNAME`), and the endpoint's moves ([`crate::server_record::DatabaseRecord`]).
async fn database_record(
    State(s): State<AppState>,
    Path(bdb_id): Path<String>,
    Query(q): Params,
) -> Response {
    let Ok(id) = bdb_id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("bdb_id {bdb_id:?} is not a number; GET /emulator/databases/1/record"),
        );
    };
    match s.emulator.existing_database(id) {
        Ok(db) => Json(
            db.record(q.get("name").map(String::as_str), &s.emulator.nodes())
                .await,
        )
        .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

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
    let include_tls = match q.get("include_tls").map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        Some(v) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("include_tls is true or false, got {v:?}"),
            )
        }
    };
    match catalogue::standalone(&s.emulator, effect, include_tls) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn slot_migrate_triggers(State(s): State<AppState>, Query(q): Params) -> Response {
    let Some(effect) = q.get("effect") else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing query parameter effect (slot-shuffle, add, remove or remove-add)",
        );
    };
    match catalogue::slot_migrate(&s.emulator, effect) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /slot-migrate?effect=E&bdb_id=N[&trigger=T|&variant=V][&source_node=n][&target_node=n]`:
/// the same action as `slot_migrate` through `POST /action`.
async fn slot_migrate(State(s): State<AppState>, Query(q): Params) -> Response {
    let mut params = serde_json::Map::new();
    for (k, v) in &q {
        params.insert(k.clone(), Value::String(v.clone()));
    }
    for required in ["effect", "bdb_id"] {
        if !params.contains_key(required) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("missing query parameter {required}; POST /slot-migrate?effect=slot-shuffle&trigger=migrate&bdb_id=1"),
            );
        }
    }
    let body = serde_json::json!({ "type": "slot_migrate", "parameters": params });
    submit(&s, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_is_warned_about_with_what_to_do() {
        assert_eq!(exposure_warning(([127, 0, 0, 1], 8080).into(), false), None);
        assert_eq!(exposure_warning(([127, 0, 3, 2], 8080).into(), false), None);
        let open = exposure_warning(([0, 0, 0, 0], 8080).into(), false).unwrap();
        assert!(
            open.starts_with("the fault injector API listens on 0.0.0.0:8080, beyond loopback")
                && open.ends_with("; give it --api-token"),
            "{open}"
        );
        let guarded = exposure_warning(([10, 0, 0, 5], 8080).into(), true).unwrap();
        assert!(guarded.ends_with("delete databases"), "{guarded}");
    }
}
