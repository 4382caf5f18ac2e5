//! The endpoint proxy: one per (database, node), plus the public address. One
//! concept over several hundred lines: a proxied client connection, from
//! accept to close. Where each command goes among shards is in `routing`.
//!
//! Each client connection is one task that owns both sockets. Client commands are
//! decoded with the RESP2 decoder (clients send arrays of bulk strings) and kept in
//! order; replies from the shard are decoded with the decoder of the protocol the
//! connection negotiated, so that a push is only ever written between whole reply
//! frames. `CLIENT MAINT_NOTIFICATIONS` is answered here, in reply order; the
//! shards never see it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedRwLockReadGuard};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::database::{Announcement, Control, DbShared, Node, Route};
use super::framing::{take_commands, Command};
use super::pubsub::Subscriptions;
use super::routing::{self, merge, Merge, Plan, ShardedTx, CROSSSLOT, EXECABORT};
use super::slot_map::{self, SlotMap};
use super::upstream::{decode, read_upstreams, reserve, Decoded, Upstream};
use crate::fault_injector::Timestamp;
use crate::notification::{EndpointType, Notification};
use crate::server_record::{CloseCause, PushSent};
use crate::timing::{ACCEPT_RETRY, TLS_ACCEPT_WITHIN};

/// Binds the database's port on `addrs` and serves them as `node` until `cancel`.
pub async fn listen_node(
    db: Arc<DbShared>,
    node: Node,
    addrs: &[SocketAddr],
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut listeners = Vec::new();
    for a in addrs {
        listeners.push(bind(*a).map_err(|e| {
            taken(
                e,
                format!("binding endpoint proxy of database {} on {a}", db.id),
            )
        })?);
    }
    for l in listeners {
        let (db, cancel, tls) = (db.clone(), cancel.clone(), tls.clone());
        tokio::spawn(async move {
            accept_loop(l, cancel, move || node, false, tls, db).await;
        });
    }
    Ok(())
}

/// Binds the public address; each new connection is served by the node that
/// holds the endpoint at that moment.
pub async fn listen_public(
    db: Arc<DbShared>,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) -> Result<SocketAddr> {
    let addr: SocketAddr = ([127, 0, 0, 1], db.port).into();
    let l = bind(addr).map_err(|e| {
        taken(
            e,
            format!("binding public address {addr} of database {}", db.id),
        )
    })?;
    let picker = {
        let db = db.clone();
        move || db.active_node()
    };
    tokio::spawn(accept_loop(l, cancel, picker, true, tls, db));
    Ok(addr)
}

/// Commands of one connection sent on to shards and not answered yet: a
/// client that pipelines more waits for replies first. It bounds what a client
/// that never reads its replies makes a shard hold for it (with 100 KB values,
/// 25 MB rather than all it asked for); deep enough for any pipeline to run at
/// full speed.
const MAX_IN_FLIGHT: usize = 256;

/// Commands read from one client and not sent on yet: past this, the proxy
/// stops reading the client's socket.
const MAX_PENDING: usize = 4096;

/// A bind error in words that say what to do when the port is taken.
fn taken(e: std::io::Error, what: String) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; the port is taken: pick another (`--port`, or `port` in create_database) or leave it out for a free one"
        }
        _ => "",
    };
    anyhow!("{what}: {e}{hint}")
}

/// Connections the kernel queues for a listener before it refuses more: a
/// rebind sends every connection of a database to the new node at once.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with room for a whole database's connections arriving
/// at once (tokio's default backlog of 1,024 drops handoffs of larger pools).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_loop(
    l: TcpListener,
    cancel: CancellationToken,
    node: impl Fn() -> Node + Send + 'static,
    public: bool,
    tls: Option<TlsAcceptor>,
    db: Arc<DbShared>,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = l.accept() => match r {
                Ok((stream, _)) => {
                    db.accepted_one();
                    let (db, cancel, node, tls) = (db.clone(), cancel.clone(), node(), tls.clone());
                    tokio::spawn(async move {
                        if let Err(e) = accept(db, node, public, tls, stream, cancel).await {
                            tracing::debug!("proxy connection ended: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
}

/// What a forwarded command changes once its reply arrives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    /// `HELLO <v>`: the reply comes in protocol v, and so does the rest.
    Hello(u8),
    /// `RESET`: back to RESP2, no notifications.
    Reset,
    /// `QUIT`: close after the reply.
    Quit,
}

/// Where the reply of one shard goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReplyTo {
    /// Straight to the client.
    Client,
    /// Nowhere: the proxy answered the client itself.
    Discard,
    /// Kept until the last part comes, then merged into one reply.
    Part { merge: Merge, last: bool },
}

type RouteGuard = Arc<OwnedRwLockReadGuard<Route>>;

enum Entry {
    /// A command forwarded to a shard, waiting for its reply. Holding the
    /// route keeps a switch-over from starting until the reply is in; a
    /// blocking command, and whatever waits behind it on the same shard
    /// connection, holds none (a client blocked forever must not veto
    /// maintenance).
    Upstream {
        _guard: Option<RouteGuard>,
        shard: usize,
        after: After,
        to: ReplyTo,
    },
    /// A command answered by the proxy, evaluated when it reaches the head.
    Local(Command),
    /// A reply the proxy made, sent when it reaches the head.
    Canned(Bytes),
}

#[derive(Default)]
struct Session {
    hello: Option<Bytes>,
    auth: Option<Bytes>,
    select: Option<Bytes>,
    setname: Option<Bytes>,
    /// The protocol the last HELLO asks for: replies to a replayed session
    /// come in it.
    proto: Option<u8>,
}

struct Conn {
    db: Arc<DbShared>,
    /// Its id among the database's connections.
    id: u64,
    node: Node,
    /// Accepted on the database's public address.
    public: bool,
    local_external: bool,
    proto: u8,
    maint: Option<EndpointType>,
    fifo: VecDeque<Entry>,
    out: BytesMut,
    session: Session,
    /// Held from WATCH or MULTI to EXEC or DISCARD: a transaction never
    /// straddles two switch-overs.
    transaction: Option<RouteGuard>,
    in_multi: bool,
    tx: ShardedTx,
    /// Replies of a command sent to several shards, until the last arrives.
    parts: Vec<Bytes>,
    /// Pub/sub subscriptions per shard, moved to a shard's new primary.
    subs: Subscriptions,
    /// OSS Cluster API: the last command was ASKING; the next goes to the
    /// shard importing its slot.
    asking: bool,
    closing: bool,
}

/// Sets up one accepted connection (TLS first, when the database has it), then
/// serves it.
async fn accept(
    db: Arc<DbShared>,
    node: Node,
    public: bool,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    cancel: CancellationToken,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let peer = stream.peer_addr()?;
    let local_external = matches!(local.ip(), std::net::IpAddr::V4(ip) if ip == node.external_ip());
    let at = Accepted {
        node,
        public,
        local_external,
        local,
        peer,
    };
    match tls {
        None => serve(db, at, stream, cancel).await,
        Some(acceptor) => {
            let tls = tokio::time::timeout(TLS_ACCEPT_WITHIN, acceptor.accept(stream))
                .await
                .context("the TLS handshake did not finish within 5 s")?
                .context("TLS handshake")?;
            serve(db, at, tls, cancel).await
        }
    }
}

/// Where and how a connection was accepted.
struct Accepted {
    node: Node,
    /// On the database's public address.
    public: bool,
    /// On the node's external address.
    local_external: bool,
    local: SocketAddr,
    peer: SocketAddr,
}

async fn serve<S>(
    db: Arc<DbShared>,
    at: Accepted,
    stream: S,
    cancel: CancellationToken,
) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        node,
        public,
        local_external,
        local,
        peer,
    } = at;
    let (tx, mut control) = mpsc::unbounded_channel();
    let id = db.register(node, tx);
    db.ledger.accepted(id, node.index, public, local, peer);
    let guard = Deregister(db.clone(), id);
    let (mut cr, mut cw) = tokio::io::split(stream);
    let mut conn = Conn {
        db: db.clone(),
        id,
        node,
        public,
        local_external,
        proto: 2,
        maint: None,
        fifo: VecDeque::new(),
        out: BytesMut::new(),
        session: Session::default(),
        transaction: None,
        in_multi: false,
        tx: ShardedTx::default(),
        parts: Vec::new(),
        subs: Subscriptions::default(),
        asking: false,
        closing: false,
    };
    let mut cbuf = BytesMut::with_capacity(4096);
    let mut pending: VecDeque<Command> = VecDeque::new();
    let mut ups: Vec<Option<Upstream>> = Vec::new();
    // Made once: each `cancelled()` registers with the token shared by every
    // connection of the database.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    // Control messages that came while a write to the client was stalled.
    let mut deferred: VecDeque<Control> = VecDeque::new();
    // Why the connection ends, as the server's record says it; a close the
    // server ordered has its cause recorded already.
    let result: Result<CloseCause> = async {
        loop {
            while let Some(ctl) = deferred.pop_front() {
                if !conn.on_control(Some(ctl), &mut ups).await? {
                    return Ok(CloseCause::Shutdown);
                }
            }
            // Commands the proxy answers take their place in reply order; those
            // whose turn has come are answered, then everything buffered is sent.
            while pending.front().is_some_and(Command::is_maint) {
                let c = pending.pop_front().unwrap();
                conn.fifo.push_back(Entry::Local(c));
            }
            conn.flush_locals();
            if !conn.out.is_empty() {
                if let Some(delay) = db.latency(node) {
                    tokio::time::sleep(delay).await;
                }
                // A client that does not read stalls this write, and with it
                // everything of this connection (back-pressure: nothing more
                // is read from it or its shards); a close or a shutdown still
                // ends it.
                let write = cw.write_all(&conn.out);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut cancelled => return Ok(CloseCause::Shutdown),
                        r = &mut write => {
                            r?;
                            break;
                        }
                        ctl = control.recv() => match ctl {
                            Some(Control::Close) | None => return Ok(CloseCause::Shutdown),
                            Some(other) => deferred.push_back(other),
                        },
                    }
                }
                conn.out.clear();
            }
            if conn.closing && !conn.awaits_shards() {
                return Ok(CloseCause::Client);
            }
            // Inside a transaction the route is held already: no waiting for it.
            if let Some(guard) = conn.transaction.clone() {
                if pending.front().is_some_and(|c| !c.is_maint()) && conn.fifo.len() < MAX_IN_FLIGHT {
                    conn.forward(&mut ups, &mut pending, guard).await?;
                    continue;
                }
            }
            let wants_route = !pending.is_empty()
                && conn.transaction.is_none()
                && !conn.closing
                && conn.fifo.len() < MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(CloseCause::Shutdown),
                ctl = control.recv() => if !conn.on_control(ctl, &mut ups).await? {
                    return Ok(CloseCause::Shutdown);
                },
                (shard, n) = read_upstreams(&mut ups) => {
                    let closed = match n {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => {
                            tracing::debug!("shard connection failed: {e}");
                            true
                        }
                    };
                    if closed {
                        // A shard that stopped after a switch-over: reconnect on
                        // the next command. With replies owed, the client must
                        // learn that they are lost.
                        if conn.awaits(shard) {
                            bail!("shard closed the connection with replies outstanding");
                        }
                        ups[shard] = None;
                        continue;
                    }
                    conn.on_upstream(&mut ups)?;
                }
                guard = db.route.clone().read_owned(), if wants_route => {
                    conn.forward(&mut ups, &mut pending, Arc::new(guard)).await?;
                }
                n = async { reserve(&mut cbuf); cr.read_buf(&mut cbuf).await }, if pending.len() < MAX_PENDING => {
                    if n? == 0 {
                        return Ok(CloseCause::Client);
                    }
                    if let Err(e) = take_commands(&mut cbuf, &mut pending) {
                        let msg = format!("-ERR {}\r\n", one_line(&e.to_string()));
                        let _ = cw.write_all(msg.as_bytes()).await;
                        bail!("malformed RESP from client: {e}");
                    }
                }
            }
        }
    }
    .await;
    let result = match result {
        Ok(cause) => {
            db.ledger.closed(id, cause, None);
            Ok(())
        }
        Err(e) => {
            db.ledger
                .closed(id, CloseCause::Error, Some(one_line(&format!("{e:#}"))));
            Err(e)
        }
    };
    drop(guard);
    result
}

/// What the server's record keeps of push `a`, written now to a connection
/// that asked for `ty`.
fn pushed(a: &Announcement, ty: EndpointType, db: &DbShared, now: Instant) -> PushSent {
    let n = a.render(ty, &db.naming, db.port, now);
    PushSent {
        at: Timestamp::now(),
        kind: n.as_ref().map_or("raw".into(), |n| n.kind().to_string()),
        seq: n.as_ref().map(Notification::seq),
        endpoint: match n {
            Some(Notification::Moving { endpoint, .. }) => endpoint.map(|e| e.to_string()),
            _ => None,
        },
    }
}

/// `text` as one line, fit for a RESP simple error.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

struct Deregister(Arc<DbShared>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        self.0.deregister(self.1);
    }
}

impl Conn {
    /// True while some reply from a shard is owed.
    fn awaits_shards(&self) -> bool {
        self.fifo
            .iter()
            .any(|e| matches!(e, Entry::Upstream { .. }))
    }

    /// True when a reply owed by `shard` holds no route: a blocking command
    /// is ahead of whatever is sent to that shard now.
    fn behind_blocking(&self, shard: usize) -> bool {
        self.fifo
            .iter()
            .any(|e| matches!(e, Entry::Upstream { _guard: None, shard: s, .. } if *s == shard))
    }

    /// True while a reply from `shard` is owed.
    fn awaits(&self, shard: usize) -> bool {
        self.fifo
            .iter()
            .any(|e| matches!(e, Entry::Upstream { shard: s, .. } if *s == shard))
    }

    fn flush_locals(&mut self) {
        loop {
            match self.fifo.front() {
                Some(Entry::Local(_)) => {
                    let Some(Entry::Local(c)) = self.fifo.pop_front() else {
                        unreachable!()
                    };
                    self.answer_maint(&c);
                }
                Some(Entry::Canned(_)) => {
                    let Some(Entry::Canned(b)) = self.fifo.pop_front() else {
                        unreachable!()
                    };
                    self.out.extend_from_slice(&b);
                }
                _ => return,
            }
        }
    }

    fn answer_maint(&mut self, c: &Command) {
        let sub = c.arg(2).to_ascii_uppercase();
        let reply = match (sub.as_str(), c.args.len()) {
            ("OFF", 3) => {
                self.maint = None;
                Ok(())
            }
            ("ON", 3) | ("ON", 5) if !self.db.cluster.maint_notifications() => Err(
                "ERR maintenance notifications are disabled on this cluster (client_maint_notifications is false)".to_string(),
            ),
            ("ON", 3) | ("ON", 5) if self.proto != 3 => Err(
                "ERR CLIENT MAINT_NOTIFICATIONS needs RESP3: send HELLO 3 first".to_string(),
            ),
            ("ON", 3) => {
                self.maint = Some(if self.local_external {
                    EndpointType::ExternalIp
                } else {
                    EndpointType::InternalIp
                });
                Ok(())
            }
            ("ON", 5) if c.arg(3).eq_ignore_ascii_case("moving-endpoint-type") => {
                match EndpointType::parse(&c.arg(4)) {
                    Ok(t) => {
                        self.maint = Some(t);
                        Ok(())
                    }
                    Err(e) => Err(format!("ERR {e}")),
                }
            }
            _ => Err(
                "ERR syntax: CLIENT MAINT_NOTIFICATIONS ON [moving-endpoint-type <internal-ip|internal-fqdn|external-ip|external-fqdn|none>] | OFF"
                    .to_string(),
            ),
        };
        match reply {
            Ok(()) => {
                self.db.set_asked(self.id, self.maint);
                self.db.ledger.maint(self.id, self.maint);
                if self.maint.is_some() {
                    let now = Instant::now();
                    for a in self.db.on_opt_in(self.node, self.public, now) {
                        self.push(&a, now);
                    }
                }
                self.out.extend_from_slice(b"+OK\r\n");
            }
            Err(e) => {
                self.out.extend_from_slice(b"-");
                self.out.extend_from_slice(e.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The address form topology answers and redirects use on this
    /// connection: the one it asked MOVING in, else the class of address it
    /// came in on.
    fn topology_form(&self) -> EndpointType {
        match self.maint {
            Some(EndpointType::None) | None if self.local_external => EndpointType::ExternalIp,
            Some(EndpointType::None) | None => EndpointType::InternalIp,
            Some(t) => t,
        }
    }

    /// What the proxy of an OSS Cluster API database answers itself:
    /// ASKING (remembered for the next command), READONLY / READWRITE, and
    /// the topology, with the proxies' addresses in this connection's form.
    fn cluster_local(&mut self, c: &Command, map: &SlotMap) -> Option<Bytes> {
        let ok = || Some(Bytes::from_static(b"+OK\r\n"));
        match c.name() {
            "ASKING" => {
                self.asking = true;
                return ok();
            }
            "READONLY" | "READWRITE" => return ok(),
            "CLUSTER" => {}
            _ => return None,
        }
        let form = self.topology_form();
        let (names, port) = (&self.db.naming, self.db.port);
        let at = |n: Node| {
            n.endpoint(form, names, port)
                .expect("a topology form has an address")
        };
        Some(match c.arg(1).to_ascii_uppercase().as_str() {
            "SLOTS" => slot_map::cluster_slots(map, at),
            "SHARDS" => slot_map::cluster_shards(map, at, self.proto),
            "NODES" => slot_map::cluster_nodes(map, at, self.node),
            "INFO" => slot_map::cluster_info(map),
            "MYID" => {
                let id = slot_map::node_id(self.node);
                Bytes::from(format!("${}\r\n{id}\r\n", id.len()))
            }
            _ => return None,
        })
    }

    /// Acts on a control message; false when the connection must close.
    async fn on_control(
        &mut self,
        ctl: Option<Control>,
        ups: &mut Vec<Option<Upstream>>,
    ) -> Result<bool> {
        match ctl {
            Some(Control::Announce(a)) => self.announce(&a),
            Some(Control::Resubscribe { shard, to, done }) => {
                self.resubscribe(ups, shard, to).await?;
                let _ = done.send(());
            }
            Some(Control::Close) | None => return Ok(false),
        }
        Ok(true)
    }

    fn push(&mut self, a: &Announcement, now: Instant) {
        if let (Some(ty), 3) = (self.maint, self.proto) {
            // With notifications turned off cluster-wide, the proxy sends none,
            // also to connections that opted in before.
            if self.db.cluster.maint_notifications() {
                let bytes = a.bytes(ty, &self.db.naming, self.db.port, now);
                self.out.extend_from_slice(&bytes);
                self.db.ledger.pushed(self.id, pushed(a, ty, &self.db, now));
            }
        }
    }

    fn announce(&mut self, a: &Announcement) {
        self.push(a, Instant::now());
    }

    /// Forwards the commands at the front of `pending` (up to the next local
    /// one) on the route `guard` holds, connecting to a shard first if its
    /// address changed.
    async fn forward(
        &mut self,
        ups: &mut Vec<Option<Upstream>>,
        pending: &mut VecDeque<Command>,
        guard: RouteGuard,
    ) -> Result<()> {
        let shards = guard.upstreams.len();
        if ups.len() != shards {
            ups.resize_with(shards, || None);
        }
        let mut batches = vec![BytesMut::new(); shards];
        while pending.front().is_some_and(|c| !c.is_maint()) && self.fifo.len() < MAX_IN_FLIGHT {
            let c = pending.pop_front().unwrap();
            let mut asking = false;
            let plan = match &guard.cluster {
                None => routing::plan(
                    &c,
                    shards,
                    self.db.key_specs.as_deref(),
                    self.in_multi,
                    &self.tx,
                ),
                Some(map) => match self.cluster_local(&c, map) {
                    Some(reply) => Plan::Answer(reply),
                    None => {
                        asking = std::mem::take(&mut self.asking);
                        let node = self.node;
                        let form = self.topology_form();
                        let (names, port) = (&self.db.naming, self.db.port);
                        let place = |slot: u16| {
                            let owner = map.owner(slot);
                            if map.nodes[owner] == node {
                                return Ok(owner);
                            }
                            match map.importing.get(&slot) {
                                Some(&t) if asking && map.nodes[t] == node => Ok(t),
                                _ => {
                                    let e = map.node_of(slot).endpoint(form, names, port);
                                    let e = e.expect("a topology form has an address");
                                    Err(Bytes::from(format!(
                                        "-MOVED {slot} {}:{}\r\n",
                                        e.host, e.port
                                    )))
                                }
                            }
                        };
                        // A node left with no primary still takes a
                        // connection's session and keyless commands, on
                        // the shard that serves slot 0.
                        let mut here = map.sets_on(node);
                        if here.is_empty() {
                            here.push(map.owner(0));
                        }
                        routing::plan_among(
                            &c,
                            &here,
                            place,
                            self.db.key_specs.as_deref(),
                            self.in_multi,
                            &self.tx,
                        )
                    }
                },
            };
            if let Plan::Send(targets, _) = &plan {
                for &t in targets {
                    let moved = match &ups[t] {
                        None => true,
                        // Replies still owed by the old primary (a blocked
                        // command's) come first: what follows them goes
                        // there too, as on a real connection.
                        Some(u) => u.addr != guard.upstreams[t] && !self.awaits(t),
                    };
                    if moved {
                        // Commands already batched for it go on the new connection.
                        ups[t] = Some(self.connect_upstream(guard.upstreams[t], t).await?);
                    }
                }
                if self.subs.track(&c, targets.clone()) {
                    self.db.set_subscribed(self.id, self.subs.any());
                }
            }
            let sharded = shards > 1 || guard.cluster.is_some();
            let was_deferred = self.tx.deferred_multi.is_some();
            let after = self.track(&c, &guard, sharded);
            let (targets, how) = match plan {
                Plan::Answer(reply) => {
                    if reply == CROSSSLOT && self.in_multi {
                        self.tx.aborted = true;
                    }
                    if c.name() == "MULTI" && sharded {
                        self.tx.deferred_multi = Some(c.raw.clone());
                    }
                    if matches!(c.name(), "EXEC" | "DISCARD") {
                        self.tx = ShardedTx::default();
                    }
                    self.db.ledger.redirected(self.id, &reply);
                    self.fifo.push_back(Entry::Canned(reply));
                    continue;
                }
                Plan::Send(targets, how) => (targets, how),
            };
            if sharded && self.in_multi && was_deferred && self.tx.shard.is_none() {
                // The transaction's first command names its shard: MULTI goes
                // there now, its reply already given.
                let t = targets[0];
                self.tx.shard = Some(t);
                let multi = self.tx.deferred_multi.take().unwrap_or_default();
                batches[t].extend_from_slice(&multi);
                self.fifo.push_back(Entry::Upstream {
                    _guard: Some(guard.clone()),
                    shard: t,
                    after: After::Nothing,
                    to: ReplyTo::Discard,
                });
            }
            if sharded && c.name() == "WATCH" {
                self.tx.shard.get_or_insert(targets[0]);
            }
            let exec_aborted = sharded && c.name() == "EXEC" && self.tx.aborted;
            if sharded && matches!(c.name(), "EXEC" | "DISCARD") {
                self.tx = ShardedTx::default();
            }
            // In RESP3, (un)subscribe confirmations are pushes: no reply slot.
            let push_only = self.proto == 3
                && matches!(
                    c.name(),
                    "SUBSCRIBE"
                        | "PSUBSCRIBE"
                        | "SSUBSCRIBE"
                        | "UNSUBSCRIBE"
                        | "PUNSUBSCRIBE"
                        | "SUNSUBSCRIBE"
                );
            if asking && targets.len() == 1 {
                // ASKING goes right before the command, on the same shard
                // connection; the client had its reply already.
                batches[targets[0]].extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                self.fifo.push_back(Entry::Upstream {
                    _guard: Some(guard.clone()),
                    shard: targets[0],
                    after: After::Nothing,
                    to: ReplyTo::Discard,
                });
            }
            let count = targets.len();
            for (i, t) in targets.into_iter().enumerate() {
                if exec_aborted {
                    batches[t].extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
                } else {
                    batches[t].extend_from_slice(&c.raw);
                }
                if push_only {
                    continue;
                }
                let to = match (count, exec_aborted) {
                    (_, true) => ReplyTo::Discard,
                    (1, false) => ReplyTo::Client,
                    _ => ReplyTo::Part {
                        merge: how,
                        last: i + 1 == count,
                    },
                };
                let unguarded = (c.blocks() && !self.in_multi) || self.behind_blocking(t);
                self.fifo.push_back(Entry::Upstream {
                    _guard: (!unguarded).then(|| guard.clone()),
                    shard: t,
                    after,
                    to,
                });
            }
            if exec_aborted {
                self.fifo
                    .push_back(Entry::Canned(Bytes::from_static(EXECABORT)));
            }
        }
        for (t, batch) in batches.iter().enumerate() {
            if !batch.is_empty() {
                let u = ups[t]
                    .as_mut()
                    .ok_or_else(|| anyhow!("no connection to shard {t}"))?;
                u.w.write_all(batch).await?;
            }
        }
        Ok(())
    }

    /// Follows the connection state a command changes: what to replay on a new
    /// shard, transactions, and what its reply changes.
    fn track(&mut self, c: &Command, guard: &RouteGuard, sharded: bool) -> After {
        match c.name() {
            "HELLO" => {
                self.session.hello = Some(c.raw.clone());
                let v = c.arg(1).parse().ok();
                self.session.proto = v.or(self.session.proto);
                return v.map(After::Hello).unwrap_or(After::Nothing);
            }
            "AUTH" => self.session.auth = Some(c.raw.clone()),
            "SELECT" => self.session.select = Some(c.raw.clone()),
            "CLIENT" if c.arg(1).eq_ignore_ascii_case("SETNAME") => {
                self.db.ledger.named(self.id, &c.arg(2));
                self.session.setname = Some(c.raw.clone())
            }
            "RESET" => {
                self.session = Session::default();
                self.transaction = None;
                self.in_multi = false;
                self.tx = ShardedTx::default();
                return After::Reset;
            }
            "QUIT" => return After::Quit,
            "WATCH" | "MULTI" => {
                self.in_multi |= c.name() == "MULTI";
                self.transaction.get_or_insert_with(|| guard.clone());
            }
            "EXEC" | "DISCARD" => {
                self.in_multi = false;
                self.transaction = None;
            }
            "UNWATCH" if !self.in_multi => {
                self.transaction = None;
                if sharded {
                    self.tx = ShardedTx::default();
                }
            }
            _ => {}
        }
        After::Nothing
    }

    /// Reads what the shards sent: replies in the order the client is owed
    /// them, pushes as they come, each written whole.
    fn on_upstream(&mut self, ups: &mut [Option<Upstream>]) -> Result<()> {
        loop {
            self.flush_locals();
            let Some(Entry::Upstream { shard, after, .. }) = self.fifo.front() else {
                break;
            };
            let (shard, after) = (*shard, *after);
            let proto = match after {
                After::Hello(v) => v,
                _ => self.proto,
            };
            let u = ups.get_mut(shard).and_then(Option::as_mut).ok_or_else(|| {
                anyhow!("a reply is owed by shard {shard}, which is not connected")
            })?;
            let Some(d) = decode(&mut u.buf, proto)
                .with_context(|| format!("malformed reply from shard {}", u.addr))?
            else {
                break;
            };
            match d {
                Decoded::Push(raw) => self.out.extend_from_slice(&raw),
                Decoded::Reply { raw, error } => {
                    let Some(Entry::Upstream { to, .. }) = self.fifo.pop_front() else {
                        unreachable!()
                    };
                    match after {
                        After::Hello(v) if !error => self.proto = v,
                        After::Reset => {
                            self.proto = 2;
                            self.maint = None;
                        }
                        After::Quit => self.closing = true,
                        _ => {}
                    }
                    match to {
                        ReplyTo::Client if error => {
                            // A shard's redirect names its node's proxy.
                            let form = self.topology_form();
                            let db = &self.db;
                            let rewritten = slot_map::rewrite_redirect(&raw, |addr| {
                                db.shard_node(addr)?.endpoint(form, &db.naming, db.port)
                            });
                            db.ledger.redirected(self.id, &raw);
                            self.out
                                .extend_from_slice(rewritten.as_deref().unwrap_or(&raw));
                        }
                        ReplyTo::Client => self.out.extend_from_slice(&raw),
                        ReplyTo::Discard => {}
                        ReplyTo::Part { merge: how, last } => {
                            self.parts.push(raw);
                            if last {
                                let merged = merge(&self.parts, how);
                                self.parts.clear();
                                self.out.extend_from_slice(&merged);
                            }
                        }
                    }
                }
            }
        }
        // A shard no reply is owed by sends only pushes (pub/sub messages).
        for (i, u) in ups.iter_mut().enumerate() {
            let owed = self
                .fifo
                .iter()
                .any(|e| matches!(e, Entry::Upstream { shard, .. } if *shard == i));
            let Some(u) = u.as_mut().filter(|_| !owed) else {
                continue;
            };
            while let Some(d) = decode(&mut u.buf, self.proto)
                .with_context(|| format!("malformed reply from shard {}", u.addr))?
            {
                match d {
                    Decoded::Push(raw) => self.out.extend_from_slice(&raw),
                    Decoded::Reply { raw, .. } => tracing::debug!(
                        "dropped a reply no command was waiting for from shard {}: {:?}",
                        u.addr,
                        String::from_utf8_lossy(&raw)
                    ),
                }
            }
        }
        Ok(())
    }

    /// Shard set `shard` is served at `to` now: a connection subscribed on
    /// it subscribes there (after passing on what the old primary sent), and
    /// the old connection goes. One that still owes a reply stays where it is.
    async fn resubscribe(
        &mut self,
        ups: &mut Vec<Option<Upstream>>,
        shard: usize,
        to: SocketAddr,
    ) -> Result<()> {
        if !self.subs.on(shard) || self.awaits(shard) {
            return Ok(());
        }
        if ups.len() <= shard {
            ups.resize_with(shard + 1, || None);
        }
        if let Some(old) = ups[shard].as_mut() {
            if old.addr == to {
                return Ok(());
            }
            // Messages published before the switch, already on their way.
            old.read_ready();
            self.on_upstream(ups)?;
        }
        ups[shard] = Some(self.connect_upstream(to, shard).await?);
        Ok(())
    }

    /// Opens a connection to a (new) primary of shard set `shard`, with the
    /// session (HELLO with its AUTH, AUTH, SELECT, SETNAME) and the
    /// subscriptions held there replayed on it.
    async fn connect_upstream(&mut self, addr: SocketAddr, shard: usize) -> Result<Upstream> {
        let session: Vec<Bytes> = [
            &self.session.hello,
            &self.session.auth,
            &self.session.select,
            &self.session.setname,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let proto = self.session.proto.unwrap_or(self.proto);
        Upstream::connect(addr, &session, self.subs.replay(shard), proto).await
    }
}
