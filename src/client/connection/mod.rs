//! One maintenance-aware connection: a redis-rs `MultiplexedConnection` that can
//! be swapped for another, with its relax state and its handoffs. Here: its
//! state, requests and their timeouts, and the wiring of its relaxation
//! (`client::relax`, the state machine) to timers and events. Beside it:
//! `dial` (set-up and opt-in), `push` (the push loop and what each
//! notification does), `handoff`, `blocking` (block times of commands).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::pubsub::{self, ChannelKind, Subscriptions};
pub use super::relax::Relaxation;
use super::relax::{Relax, WindowKey};
use super::transport;
use super::{
    auto_endpoint_type, ClientError, ClientShared, EndpointTypeSetting, EventKind, MaintState,
    Mode, Protocol, Redirect,
};
use crate::notification::{Endpoint, Kind, Notification};

mod blocking;
mod dial;
mod handoff;
mod push;

use blocking::blocking_time;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
struct Active {
    conn: MultiplexedConnection,
    /// Ends the connection's driver (and so its socket) at once.
    driver: tokio::task::AbortHandle,
    /// The TLS version negotiated, `None` for a plain connection.
    tls: Option<&'static str>,
    generation: u64,
    endpoint: Endpoint,
    maint: MaintState,
}

/// A connection of a [`super::Client`].
pub struct ManagedConnection {
    /// Unique id, carried by every event.
    pub id: u64,
    shared: Arc<ClientShared>,
    me: Weak<ManagedConnection>,
    current: Mutex<Option<Active>>,
    generation: AtomicU64,
    relax: Mutex<Relax>,
    handled_moving: Mutex<HashSet<i64>>,
    reconnecting: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Its pub/sub subscriptions, re-issued on every connection that replaces
    /// the one in use, and the messages they received.
    subs: Subscriptions,
    /// A cluster client's node connection: always dialled here (a pool
    /// connection dials the database's address).
    home: Option<Endpoint>,
}

impl ManagedConnection {
    pub(crate) async fn open(shared: Arc<ClientShared>) -> Result<Arc<Self>, ClientError> {
        Self::open_to(shared, None).await
    }

    /// A connection to one node of a cluster, and to it only.
    pub(crate) async fn open_at(
        shared: Arc<ClientShared>,
        node: Endpoint,
    ) -> Result<Arc<Self>, ClientError> {
        Self::open_to(shared, Some(node)).await
    }

    async fn open_to(
        shared: Arc<ClientShared>,
        home: Option<Endpoint>,
    ) -> Result<Arc<Self>, ClientError> {
        let c = Arc::new_cyclic(|me| ManagedConnection {
            id: NEXT_ID.fetch_add(1, Ordering::SeqCst),
            shared: shared.clone(),
            me: me.clone(),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            relax: Mutex::new(Relax::default()),
            handled_moving: Mutex::new(HashSet::new()),
            reconnecting: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            subs: Subscriptions::default(),
            home,
        });
        let active = c.dial(&c.target()).await?;
        *c.current.lock().unwrap() = Some(active);
        Ok(c)
    }

    /// Where a new connection of its own goes now.
    fn target(&self) -> Endpoint {
        match &self.home {
            Some(h) => h.clone(),
            None => self.shared.dial_target(),
        }
    }

    /// The TLS version of the connection in use (`None`: plain, or none in use).
    pub fn tls_version(&self) -> Option<&'static str> {
        self.current.lock().unwrap().as_ref().and_then(|a| a.tls)
    }

    /// The endpoint the connection in use was dialled at.
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .map(|a| a.endpoint.clone())
    }

    /// Its notification state.
    pub fn maint_state(&self) -> Option<MaintState> {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .map(|a| a.maint.clone())
    }

    /// Where its relaxation stands now.
    pub fn relaxation(&self) -> Relaxation {
        self.relax.lock().unwrap().relaxation(Instant::now())
    }

    /// True while a window (or the tail after one) is open.
    pub fn is_relaxed(&self) -> bool {
        self.relax.lock().unwrap().active(Instant::now())
    }

    /// The response timeout a request sent now gets (`None`: unbounded).
    pub fn effective_timeout(&self) -> Option<Duration> {
        let o = &self.shared.options;
        if self.is_relaxed() {
            o.relaxed_effective()
        } else {
            o.response_timeout
        }
    }

    /// Sends one command with the effective timeout. The deadline follows the
    /// relax state: a request sent just before a window opens gets the relaxed
    /// timeout too. Blocking commands get their block time on top.
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, ClientError> {
        self.query_on(cmd, false).await
    }

    /// Sends `ASKING` and then `cmd`, back to back: the one command a
    /// cluster node that is importing its slot serves (an `ASK` redirect).
    pub async fn query_asking(&self, cmd: &redis::Cmd) -> Result<Value, ClientError> {
        self.query_on(cmd, true).await
    }

    async fn query_on(&self, cmd: &redis::Cmd, asking: bool) -> Result<Value, ClientError> {
        let active = self.active().await?;
        let started = Instant::now();
        let block = blocking_time(cmd);
        let mut conn = active.conn.clone();
        let fut: std::pin::Pin<
            Box<dyn std::future::Future<Output = redis::RedisResult<Value>> + Send + '_>,
        > = match asking {
            false => Box::pin(conn.send_packed_command(cmd)),
            true => {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").add_command(cmd.clone());
                Box::pin(async move {
                    let mut replies = conn.send_packed_commands(&pipe, 1, 1).await?;
                    Ok(replies.pop().unwrap_or(Value::Nil))
                })
            }
        };
        tokio::pin!(fut);
        let result = loop {
            let timeout = match (self.effective_timeout(), block) {
                (None, _) | (_, Some(None)) => None,
                (Some(t), Some(Some(b))) => Some(t + b),
                (Some(t), None) => Some(t),
            };
            let Some(t) = timeout else {
                break fut.await;
            };
            match tokio::time::timeout_at(started + t, &mut fut).await {
                Ok(r) => break r,
                Err(_) => {
                    // Relaxed meanwhile: the deadline moved on.
                    let now_allowed = self
                        .effective_timeout()
                        .map(|n| n + block.flatten().unwrap_or_default());
                    if now_allowed.is_none_or(|n| started + n > Instant::now()) {
                        continue;
                    }
                    return Err(ClientError::Timeout {
                        after: t,
                        in_window: self.is_relaxed(),
                    });
                }
            }
        };
        if let Ok(Value::ServerError(e)) = result {
            return Err(ClientError::server(e.code(), e.details()));
        }
        result.map_err(|e| {
            let err = ClientError::from_redis(e);
            if let ClientError::Connection { .. } = err {
                self.lost(active.generation);
            }
            err
        })
    }

    /// Subscribes to `channel`; every connection that later replaces this
    /// one (a handoff, a reconnect) subscribes to it again before it is used.
    /// Needs RESP3: messages arrive as pushes beside ordinary replies.
    pub async fn subscribe(&self, kind: ChannelKind, channel: &str) -> Result<(), ClientError> {
        if self.shared.options.protocol != Protocol::Resp3 {
            return Err(ClientError::Options(
                "pub/sub on a shared connection needs RESP3; use protocol 3".into(),
            ));
        }
        // Held first: a connection dialled from now on subscribes too.
        self.subs.add(kind, channel);
        self.query(&kind.subscribe(channel)).await.map(|_| ())
    }

    /// Its subscriptions and the messages they received.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subs
    }

    /// Moves to `target`, as a handoff does (the discovery service said the
    /// database is there now).
    pub(crate) async fn move_to(&self, target: Endpoint) {
        self.handoff(0, target).await;
    }

    /// Closes it for good; requests in flight hold handles of it and finish
    /// first.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.current.lock().unwrap().take();
    }

    /// Closes it for good at once, its socket too, whoever still holds a
    /// handle of it: a subscriber's connection then hears nothing more (the
    /// server drops its subscriptions with it).
    pub async fn close_now(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(a) = self.current.lock().unwrap().take() {
            a.driver.abort();
        }
    }

    async fn active(&self) -> Result<Active, ClientError> {
        if let Some(a) = self.current.lock().unwrap().clone() {
            return Ok(a);
        }
        let _one = self.reconnecting.lock().await;
        if let Some(a) = self.current.lock().unwrap().clone() {
            return Ok(a);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(ClientError::Connection {
                context: "the client was closed".into(),
                cause: None,
            });
        }
        if !self.shared.options.reconnect {
            return Err(ClientError::Connection {
                context:
                    "the connection was lost, and this client does not reconnect (reconnect: off)"
                        .into(),
                cause: None,
            });
        }
        let a = self.dial(&self.target()).await?;
        *self.current.lock().unwrap() = Some(a.clone());
        Ok(a)
    }

    /// Drops the connection of `generation` if it is still the one in use;
    /// its endpoint when it was.
    fn forget(&self, generation: u64) -> Option<Endpoint> {
        let mut cur = self.current.lock().unwrap();
        if cur.as_ref().is_some_and(|a| a.generation == generation) {
            return cur.take().map(|a| a.endpoint);
        }
        None
    }

    /// The connection of `generation` was lost (its driver saw it close, or a
    /// request on it failed to reach the server): recorded once, whichever
    /// comes first, if it was the one in use.
    fn lost(&self, generation: u64) {
        if let Some(endpoint) = self.forget(generation) {
            self.shared.emit(
                self.id,
                EventKind::Disconnected {
                    endpoint: endpoint.to_string(),
                },
            );
        }
    }

    /// The open window a completion of `start`'s kind with `seq` closes.
    fn matching_window(&self, start: Kind, seq: i64) -> Option<WindowKey> {
        self.relax.lock().unwrap().matching(start, seq)
    }

    /// The cluster client this connection belongs to, if any.
    fn cluster(&self) -> Option<Arc<dyn super::slot_events::SlotEvents>> {
        self.shared.cluster.get().and_then(Weak::upgrade)
    }

    /// Closes the window SMIGRATING `seq` opened, if it is still open: its
    /// slots moved, whichever node said so.
    pub(crate) fn end_smigrating(&self, seq: i64) {
        self.close_window(WindowKey::Event(Kind::SMigrating, seq));
    }

    fn open_window(&self, key: WindowKey, backstop: Instant) {
        if !self.shared.options.relax {
            return;
        }
        self.relax
            .lock()
            .unwrap()
            .open(key, backstop, Instant::now());
        self.schedule(backstop);
        self.reevaluate();
    }

    fn close_window(&self, key: WindowKey) {
        let tail = Instant::now() + self.shared.options.post_relaxed();
        let removed = self.relax.lock().unwrap().close(key, tail);
        if removed {
            self.schedule(tail);
            self.reevaluate();
        }
    }

    fn schedule(&self, at: Instant) {
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(me) = me.upgrade() {
                me.reevaluate();
            }
        });
    }

    /// Emits Relaxed / Unrelaxed when the relax state changed.
    fn reevaluate(&self) {
        let changed = self.relax.lock().unwrap().changed(Instant::now());
        match changed {
            Some(true) => self.shared.emit(
                self.id,
                EventKind::Relaxed {
                    timeout: self.shared.options.relaxed_effective(),
                },
            ),
            Some(false) => self.shared.emit(
                self.id,
                EventKind::Unrelaxed {
                    timeout: self.shared.options.response_timeout,
                },
            ),
            None => {}
        }
    }
}
