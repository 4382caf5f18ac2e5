//! One maintenance-aware connection: a redis-rs `MultiplexedConnection` that can
//! be swapped for another, with its relax state and its handoffs. One concept
//! over some six hundred lines (dial, opt in, react to each notification, hand
//! off): the parts share the connection's state and its one push loop.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::pubsub::{self, ChannelKind, Subscriptions};
use super::transport;
use super::{
    auto_endpoint_type, ClientError, ClientShared, EndpointTypeSetting, EventKind, MaintState,
    Mode, Protocol, Redirect,
};
use crate::notification::{Endpoint, Kind, Notification};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
struct Active {
    conn: MultiplexedConnection,
    /// The TLS version negotiated, `None` for a plain connection.
    tls: Option<&'static str>,
    generation: u64,
    endpoint: Endpoint,
    maint: MaintState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum WindowKey {
    /// MIGRATING / FAILING_OVER / SMIGRATING (the kind) with this seq.
    Event(Kind, i64),
    /// The handoff for MOVING with this seq.
    Handoff(i64),
}

/// Where a connection's relaxation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relaxation {
    /// Not relaxed: the configured timeout applies.
    Off,
    /// Windows are open; the last of their backstops.
    Windows {
        /// When the last window closes at the latest.
        backstop: Instant,
    },
    /// Every window closed; only the tail is left.
    Tail {
        /// When it ends.
        until: Instant,
    },
}

#[derive(Default)]
struct Relax {
    /// Open windows and their backstops.
    windows: HashMap<WindowKey, Instant>,
    /// When each window opened (kept for windows that are open).
    opened: HashMap<WindowKey, Instant>,
    tail_until: Option<Instant>,
    relaxed: bool,
}

impl Relax {
    fn active(&mut self, now: Instant) -> bool {
        self.windows.retain(|_, backstop| *backstop > now);
        let open = &self.windows;
        self.opened.retain(|k, _| open.contains_key(k));
        !self.windows.is_empty() || self.tail_until.is_some_and(|t| t > now)
    }
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
        let now = Instant::now();
        let mut r = self.relax.lock().unwrap();
        if !r.active(now) {
            return Relaxation::Off;
        }
        match r.windows.values().max() {
            Some(b) => Relaxation::Windows { backstop: *b },
            None => Relaxation::Tail {
                until: r.tail_until.unwrap_or(now),
            },
        }
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

    /// Closes it for good.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.current.lock().unwrap().take();
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

    /// Opens a connection to `target` and does the handshake.
    async fn dial(&self, target: &Endpoint) -> Result<Active, ClientError> {
        let o = &self.shared.options;
        let db = &self.shared.db;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let settings = transport::settings(o, db);
        let mut cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        // Pushes are numbered as they arrive, so that those sent before the
        // handshake's reply (replays of open windows and of the last
        // completion) can be told from live ones.
        let (tx, rx) = mpsc::unbounded_channel::<(u64, PushInfo)>();
        let arrived = Arc::new(AtomicU64::new(0));
        let (setup_tx, setup_rx) = tokio::sync::watch::channel(None::<u64>);
        if o.protocol == Protocol::Resp3 {
            let arrived = arrived.clone();
            cfg = cfg.set_push_sender(move |info: PushInfo| {
                tx.send((arrived.fetch_add(1, Ordering::SeqCst), info))
            });
        }
        let context = format!("connecting to {target}");
        let setup = tokio::time::timeout(
            o.connect_timeout + o.relaxed_timeout,
            transport::open(
                target,
                &settings,
                cfg,
                o.connect_timeout,
                self.shared.tls.as_ref(),
                &self.shared.sockets,
            ),
        )
        .await
        .map_err(|e| ClientError::connection(context.clone(), e))?;
        let (mut conn, tls) = setup?;
        if o.protocol == Protocol::Resp3 {
            self.listen(generation, rx, setup_rx);
        }
        let named = self.set_name(&mut conn, target).await;
        let maint = match named {
            Ok(()) => self.handshake(&mut conn, target).await,
            Err(e) => Err(e),
        };
        setup_tx.send_replace(Some(arrived.load(Ordering::SeqCst)));
        let maint = maint?;
        self.shared.emit(
            self.id,
            EventKind::Connected {
                endpoint: target.to_string(),
                maint: maint.clone(),
            },
        );
        if self.shared.options.resubscribe {
            self.resubscribe(&mut conn, target).await?;
        }
        Ok(Active {
            conn,
            tls,
            generation,
            endpoint: target.clone(),
            maint,
        })
    }

    /// Gives the connection the client's name (`CLIENT SETNAME`), so that
    /// the server's record tells whose connection it is.
    async fn set_name(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
    ) -> Result<(), ClientError> {
        let o = &self.shared.options;
        let Some(name) = &o.client_name else {
            return Ok(());
        };
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("SETNAME").arg(name);
        match tokio::time::timeout(o.relaxed_timeout, conn.send_packed_command(&cmd)).await {
            Ok(Ok(Value::ServerError(e))) => Err(ClientError::handshake(format!(
                "{target} refused CLIENT SETNAME {name}: {e}"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClientError::connection(
                format!("{target}: naming the connection (CLIENT SETNAME)"),
                e,
            )),
            Err(_) => Err(ClientError::handshake(format!(
                "{target} did not answer CLIENT SETNAME within {:?}",
                o.relaxed_timeout
            ))),
        }
    }

    async fn handshake(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
    ) -> Result<MaintState, ClientError> {
        let o = &self.shared.options;
        if o.mode == Mode::Disabled || o.protocol == Protocol::Resp2 {
            return Ok(MaintState::Off);
        }
        let ty = match o.endpoint_type {
            EndpointTypeSetting::Fixed(t) => t,
            EndpointTypeSetting::Auto => {
                auto_endpoint_type(&target.host, target.port, self.shared.db.tls).await
            }
        };
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("MAINT_NOTIFICATIONS")
            .arg("ON")
            .arg("moving-endpoint-type")
            .arg(ty.as_str());
        let reply = tokio::time::timeout(o.relaxed_timeout, conn.send_packed_command(&cmd)).await;
        let refusal = match reply {
            Ok(Ok(Value::ServerError(e))) => e.to_string(),
            Ok(Ok(_)) => return Ok(MaintState::On(Some(ty))),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => {
                return Err(ClientError::connection(
                    format!("{target} closed the connection during the handshake"),
                    e,
                ))
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", o.relaxed_timeout),
        };
        match o.mode {
            Mode::Enabled => Err(ClientError::handshake(format!(
                "{target} refused CLIENT MAINT_NOTIFICATIONS ON ({refusal}); the server does not support maintenance notifications: use mode auto or disabled"
            ))),
            _ => {
                tracing::debug!(conn = self.id, "maintenance notifications off: {refusal}");
                Ok(MaintState::Refused(refusal))
            }
        }
    }

    /// Subscribes a new connection to everything the connection it replaces
    /// was subscribed to, before it is put in use: a subscriber misses no
    /// message across a handoff (it may see one twice, on both connections).
    async fn resubscribe(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
    ) -> Result<(), ClientError> {
        let channels = self
            .subs
            .subscribe_on(conn, target, self.shared.options.relaxed_timeout)
            .await?;
        if channels == 0 {
            return Ok(());
        }
        self.shared.emit(
            self.id,
            EventKind::Resubscribed {
                endpoint: target.to_string(),
                channels,
            },
        );
        Ok(())
    }

    fn listen(
        &self,
        generation: u64,
        mut rx: mpsc::UnboundedReceiver<(u64, PushInfo)>,
        mut setup: tokio::sync::watch::Receiver<Option<u64>>,
    ) {
        let me = self.me.clone();
        tokio::spawn(async move {
            while let Some((n, push)) = rx.recv().await {
                // How many pushes came before the handshake's reply.
                let Ok(before_reply) = setup.wait_for(Option::is_some).await.map(|v| v.unwrap())
                else {
                    return;
                };
                let Some(me) = me.upgrade() else { return };
                me.on_push(generation, push, n < before_reply);
            }
        });
    }

    fn on_push(&self, generation: u64, push: PushInfo, at_setup: bool) {
        match push.kind {
            PushKind::Disconnection => self.lost(generation),
            PushKind::Other(name) => match Notification::from_push(&name, &push.data) {
                Ok(Some(n)) => self.on_notification(n, at_setup),
                Ok(None) => self.shared.emit(self.id, EventKind::PushIgnored { name }),
                Err(e) => {
                    tracing::warn!(conn = self.id, "dropped a malformed {name} push: {e}");
                    self.shared.emit(
                        self.id,
                        EventKind::MalformedPush {
                            name,
                            error: e.to_string(),
                        },
                    );
                }
            },
            // A cluster node that lost a sharded channel's slot tells its
            // subscribers so: the cluster client subscribes where it went.
            PushKind::SUnsubscribe if self.subs.any() => {
                let channel = pubsub::channel_of(&push);
                if let Some(channel) = channel.filter(|c| self.subs.remove(ChannelKind::Sharded, c))
                {
                    if let Some(cluster) = self.cluster() {
                        cluster.on_unsubscribed(self.id, channel);
                    }
                }
            }
            kind if self.subs.any() && pubsub::is_confirmation(&kind) => {}
            _ if self.subs.any() && pubsub::message_of(&push, Instant::now()).is_some() => {
                if let Some(m) = pubsub::message_of(&push, Instant::now()) {
                    self.subs.keep(m);
                }
            }
            other => self.shared.emit(
                self.id,
                EventKind::PushIgnored {
                    name: other.to_string(),
                },
            ),
        }
    }

    /// Acts on a notification, then records it (with the time it arrived):
    /// whoever sees it recorded sees what it changed recorded too.
    fn on_notification(&self, n: Notification, at_setup: bool) {
        let now = Instant::now();
        self.act_on(&n, now);
        self.shared.emit_at(
            now,
            self.id,
            EventKind::Notification {
                notification: n,
                at_setup,
            },
        );
    }

    fn act_on(&self, n: &Notification, now: Instant) {
        let o = &self.shared.options;
        match n.clone() {
            Notification::Migrating { seq, .. }
            | Notification::FailingOver { seq, .. }
            | Notification::SMigrating { seq, .. } => {
                self.open_window(WindowKey::Event(n.kind(), seq), now + o.window_max());
                if let (Notification::SMigrating { slots, .. }, Some(cluster)) = (n, self.cluster())
                {
                    cluster.on_smigrating(self.id, seq, slots);
                }
            }
            Notification::Migrated { seq, .. }
            | Notification::FailedOver { seq, .. }
            | Notification::SMigrated { seq, .. } => {
                let start = match n.kind() {
                    Kind::Migrated => Kind::Migrating,
                    Kind::FailedOver => Kind::FailingOver,
                    _ => Kind::SMigrating,
                };
                // Its own window (start seq + 1, as servers number them), or
                // else the oldest open window of its kind: a server that
                // numbers completions otherwise must not leave the client
                // relaxed until the backstop.
                let key = self.matching_window(start, seq);
                if let Some(key) = key {
                    self.close_window(key);
                }
                if let (Notification::SMigrated { moves, .. }, Some(cluster)) = (n, self.cluster())
                {
                    cluster.on_smigrated(self.id, seq, moves);
                }
            }
            Notification::Moving {
                seq,
                time_s,
                endpoint,
            } => {
                if !self.handled_moving.lock().unwrap().insert(seq) {
                    self.shared.emit(self.id, EventKind::MovingIgnored { seq });
                    return;
                }
                let window = Duration::from_secs(time_s);
                if !o.hand_off {
                    return;
                }
                self.open_window(WindowKey::Handoff(seq), now + o.window_max().max(window));
                let Some(me) = self.me.upgrade() else { return };
                match endpoint {
                    Some(endpoint) => {
                        *self.shared.redirect.lock().unwrap() = Some(Redirect {
                            endpoint: endpoint.clone(),
                            until: now + window,
                        });
                        tokio::spawn(async move { me.handoff(seq, endpoint).await });
                    }
                    None => {
                        tokio::spawn(async move {
                            tokio::time::sleep(window / 2).await;
                            let e = me.shared.db.primary_endpoint();
                            let target = Endpoint::new(e.host.clone(), e.port);
                            me.handoff(seq, target).await
                        });
                    }
                }
            }
        }
    }

    async fn handoff(&self, seq: i64, target: Endpoint) {
        let o = self.shared.options.clone();
        let endpoint = target.to_string();
        self.shared.emit(
            self.id,
            EventKind::HandoffStarted {
                seq,
                endpoint: endpoint.clone(),
            },
        );
        // Waits for a turn among the client's handoff workers.
        let Ok(_turn) = self.shared.handoff_turns.acquire().await else {
            return;
        };
        let mut reason = String::new();
        for attempt in 0..=o.max_handoff_retries {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            match tokio::time::timeout(o.handoff_timeout, self.dial(&target)).await {
                Ok(Ok(active)) => {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    let old = self.current.lock().unwrap().replace(active);
                    // Requests in flight hold clones of the old connection and
                    // finish there; it closes when the last of them is done.
                    drop(old);
                    self.shared.emit(
                        self.id,
                        EventKind::HandoffSucceeded {
                            seq,
                            endpoint: endpoint.clone(),
                        },
                    );
                    self.close_window(WindowKey::Handoff(seq));
                    return;
                }
                Ok(Err(e)) => reason = e.chain(),
                Err(_) => reason = format!("no connection within {:?}", o.handoff_timeout),
            }
            self.shared.emit(
                self.id,
                EventKind::HandoffAttemptFailed {
                    seq,
                    endpoint: endpoint.clone(),
                    reason: reason.clone(),
                },
            );
            if attempt < o.max_handoff_retries {
                let backoff = Duration::from_millis(100 << attempt.min(4));
                tokio::time::sleep(backoff).await;
            }
        }
        // New connections must not keep dialling an address that failed.
        {
            let mut redirect = self.shared.redirect.lock().unwrap();
            if redirect.as_ref().is_some_and(|r| r.endpoint == target) {
                *redirect = None;
            }
        }
        self.shared.emit(
            self.id,
            EventKind::HandoffFailed {
                seq,
                endpoint,
                reason,
            },
        );
        self.close_window(WindowKey::Handoff(seq));
    }

    /// The open window a completion of `start`'s kind with `seq` closes.
    fn matching_window(&self, start: Kind, seq: i64) -> Option<WindowKey> {
        let r = self.relax.lock().unwrap();
        let own = WindowKey::Event(start, seq - 1);
        if r.windows.contains_key(&own) {
            return Some(own);
        }
        r.windows
            .iter()
            .filter(|(k, _)| matches!(k, WindowKey::Event(kind, _) if *kind == start))
            .min_by_key(|(k, backstop)| (r.opened.get(*k).copied(), **backstop))
            .map(|(k, _)| *k)
    }

    /// The cluster client this connection belongs to, if any.
    fn cluster(&self) -> Option<Arc<super::cluster::Cluster>> {
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
        {
            let mut r = self.relax.lock().unwrap();
            r.windows.entry(key).or_insert(backstop);
            r.opened.entry(key).or_insert_with(Instant::now);
        }
        self.schedule(backstop);
        self.reevaluate();
    }

    fn close_window(&self, key: WindowKey) {
        let tail = Instant::now() + self.shared.options.post_relaxed();
        let removed = {
            let mut r = self.relax.lock().unwrap();
            let removed = r.windows.remove(&key).is_some();
            r.opened.remove(&key);
            if removed {
                r.tail_until = Some(r.tail_until.map_or(tail, |t| t.max(tail)));
            }
            removed
        };
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
        let changed = {
            let mut r = self.relax.lock().unwrap();
            let now_relaxed = r.active(Instant::now());
            let changed = now_relaxed != r.relaxed;
            r.relaxed = now_relaxed;
            changed.then_some(now_relaxed)
        };
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

/// How long a blocking command may block: `None` for other commands,
/// `Some(None)` for "forever" (timeout 0).
fn blocking_time(cmd: &redis::Cmd) -> Option<Option<Duration>> {
    let args: Vec<String> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let secs = |s: &String| s.parse::<f64>().ok().filter(|v| *v >= 0.0);
    let as_block = |v: f64, unit: f64| (v > 0.0).then(|| Duration::from_secs_f64(v * unit));
    match name.as_str() {
        "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BZPOPMIN" | "BZPOPMAX" => {
            Some(as_block(secs(args.last()?)?, 1.0))
        }
        "BLMPOP" | "BZMPOP" => Some(as_block(secs(args.get(1)?)?, 1.0)),
        "XREAD" | "XREADGROUP" | "WAIT" | "WAITAOF" => {
            let at = if name.starts_with('W') {
                args.len().checked_sub(1)?
            } else {
                args.iter().position(|a| a.eq_ignore_ascii_case("BLOCK"))? + 1
            };
            Some(as_block(secs(args.get(at)?)?, 0.001))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_commands_carry_their_block_time() {
        let c = |args: &[&str]| {
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            blocking_time(&cmd)
        };
        assert_eq!(c(&["GET", "k"]), None);
        assert_eq!(
            c(&["BLPOP", "a", "b", "2"]),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(c(&["BLPOP", "a", "0"]), Some(None));
        assert_eq!(
            c(&["BLMPOP", "1.5", "1", "k", "LEFT"]),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            c(&["XREAD", "BLOCK", "250", "STREAMS", "s", "$"]),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(c(&["XREAD", "STREAMS", "s", "$"]), None);
    }
}
