//! The endpoint proxy: one per (database, node), plus the public address.
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
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::{BytesFrame as Resp2Frame, Resp2Frame as _};
use redis_protocol::resp3::types::BytesFrame as Resp3Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedRwLockReadGuard};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::database::{Announcement, Control, DbShared, Node, Route};
use crate::notification::EndpointType;

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
        listeners.push(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding endpoint proxy of database {} on {a}", db.id))?,
        );
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
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding public address {addr} of database {}", db.id))?;
    let picker = {
        let db = db.clone();
        move || db.active_node()
    };
    tokio::spawn(accept_loop(l, cancel, picker, true, tls, db));
    Ok(addr)
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
                    let (db, cancel, node, tls) = (db.clone(), cancel.clone(), node(), tls.clone());
                    tokio::spawn(async move {
                        if let Err(e) = accept(db, node, public, tls, stream, cancel).await {
                            tracing::debug!("proxy connection ended: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

struct Command {
    raw: Bytes,
    args: Vec<Bytes>,
}

impl Command {
    fn name(&self) -> String {
        self.arg(0).to_ascii_uppercase()
    }

    fn arg(&self, i: usize) -> String {
        self.args
            .get(i)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default()
    }

    fn is_maint(&self) -> bool {
        self.name() == "CLIENT" && self.arg(1).eq_ignore_ascii_case("MAINT_NOTIFICATIONS")
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

type RouteGuard = Arc<OwnedRwLockReadGuard<Route>>;

enum Entry {
    /// A command forwarded upstream, waiting for its reply. Holding the route
    /// keeps a switch-over from starting until the reply is in.
    Upstream { _guard: RouteGuard, after: After },
    /// A command answered by the proxy, evaluated when it reaches the head.
    Local(Command),
}

struct Upstream {
    addr: SocketAddr,
    r: OwnedReadHalf,
    w: OwnedWriteHalf,
    buf: BytesMut,
}

#[derive(Default)]
struct Session {
    hello: Option<Bytes>,
    auth: Option<Bytes>,
    select: Option<Bytes>,
    setname: Option<Bytes>,
}

struct Conn {
    db: Arc<DbShared>,
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
    /// straddles two shards.
    transaction: Option<RouteGuard>,
    in_multi: bool,
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
    let local_external =
        matches!(stream.local_addr()?.ip(), std::net::IpAddr::V4(ip) if ip == node.external_ip());
    match tls {
        None => serve(db, node, public, local_external, stream, cancel).await,
        Some(acceptor) => {
            let tls = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream))
                .await
                .context("the TLS handshake did not finish within 5 s")?
                .context("TLS handshake")?;
            serve(db, node, public, local_external, tls, cancel).await
        }
    }
}

async fn serve<S>(
    db: Arc<DbShared>,
    node: Node,
    public: bool,
    local_external: bool,
    stream: S,
    cancel: CancellationToken,
) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut control) = mpsc::unbounded_channel();
    let id = db.register(node, tx);
    let guard = Deregister(db.clone(), id);
    let (mut cr, mut cw) = tokio::io::split(stream);
    let mut conn = Conn {
        db: db.clone(),
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
        closing: false,
    };
    let mut cbuf = BytesMut::with_capacity(4096);
    let mut pending: VecDeque<Command> = VecDeque::new();
    let mut up: Option<Upstream> = None;
    let result: Result<()> = async {
        loop {
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
                cw.write_all(&conn.out).await?;
                conn.out.clear();
            }
            if conn.closing
                && !conn
                    .fifo
                    .iter()
                    .any(|e| matches!(e, Entry::Upstream { .. }))
            {
                return Ok(());
            }
            // Inside a transaction the route is held already: no waiting for it.
            if let Some(guard) = conn.transaction.clone() {
                if pending.front().is_some_and(|c| !c.is_maint()) {
                    conn.forward(&mut up, &mut pending, guard).await?;
                    continue;
                }
            }
            let wants_route = !pending.is_empty() && conn.transaction.is_none() && !conn.closing;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                ctl = control.recv() => match ctl {
                    Some(Control::Announce(a)) => conn.announce(&a),
                    Some(Control::Close) | None => return Ok(()),
                },
                n = read_upstream(&mut up) => {
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
                        if conn.fifo.iter().any(|e| matches!(e, Entry::Upstream { .. })) {
                            bail!("shard closed the connection with replies outstanding");
                        }
                        up = None;
                        continue;
                    }
                    conn.on_upstream(up.as_mut().unwrap())?;
                }
                guard = db.route.clone().read_owned(), if wants_route => {
                    conn.forward(&mut up, &mut pending, Arc::new(guard)).await?;
                }
                n = cr.read_buf(&mut cbuf), if pending.len() < 4096 => {
                    if n? == 0 {
                        return Ok(());
                    }
                    loop {
                        match redis_protocol::resp2::decode::decode_bytes_mut(&mut cbuf) {
                            Ok(Some((frame, _, raw))) => pending.push_back(command(frame, raw)?),
                            Ok(None) => break,
                            Err(e) => {
                                let msg = format!("-ERR Protocol error: {e}\r\n");
                                let _ = cw.write_all(msg.as_bytes()).await;
                                bail!("malformed RESP from client: {e}");
                            }
                        }
                    }
                }
            }
        }
    }
    .await;
    drop(guard);
    result
}

struct Deregister(Arc<DbShared>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        self.0.deregister(self.1);
    }
}

async fn read_upstream(up: &mut Option<Upstream>) -> std::io::Result<usize> {
    match up {
        Some(u) => u.r.read_buf(&mut u.buf).await,
        None => std::future::pending().await,
    }
}

fn command(frame: Resp2Frame, raw: Bytes) -> Result<Command> {
    let Resp2Frame::Array(items) = frame else {
        bail!(
            "client sent a {:?} frame; commands are arrays of bulk strings",
            frame.kind()
        );
    };
    let mut args = Vec::with_capacity(items.len());
    for i in items {
        match i {
            Resp2Frame::BulkString(b) | Resp2Frame::SimpleString(b) => args.push(b),
            Resp2Frame::Integer(n) => args.push(Bytes::from(n.to_string())),
            other => bail!(
                "command argument is a {:?}; expected a bulk string",
                other.kind()
            ),
        }
    }
    if args.is_empty() {
        bail!("empty command");
    }
    Ok(Command { raw, args })
}

enum Decoded {
    Push(Bytes),
    Reply { raw: Bytes, error: bool },
}

fn decode(buf: &mut BytesMut, proto: u8) -> Result<Option<Decoded>> {
    if proto == 3 {
        Ok(
            redis_protocol::resp3::decode::complete::decode_bytes_mut(buf)?.map(|(f, _, raw)| {
                match f {
                    Resp3Frame::Push { .. } => Decoded::Push(raw),
                    Resp3Frame::SimpleError { .. } | Resp3Frame::BlobError { .. } => {
                        Decoded::Reply { raw, error: true }
                    }
                    _ => Decoded::Reply { raw, error: false },
                }
            }),
        )
    } else {
        Ok(
            redis_protocol::resp2::decode::decode_bytes_mut(buf)?.map(|(f, _, raw)| {
                Decoded::Reply {
                    error: matches!(f, Resp2Frame::Error(_)),
                    raw,
                }
            }),
        )
    }
}

impl Conn {
    fn flush_locals(&mut self) {
        while let Some(Entry::Local(_)) = self.fifo.front() {
            let Some(Entry::Local(c)) = self.fifo.pop_front() else {
                unreachable!()
            };
            self.answer_maint(&c);
        }
    }

    fn answer_maint(&mut self, c: &Command) {
        let sub = c.arg(2).to_ascii_uppercase();
        let reply = match (sub.as_str(), c.args.len()) {
            ("OFF", 3) => {
                self.maint = None;
                Ok(())
            }
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

    fn push(&mut self, a: &Announcement, now: Instant) {
        if let (Some(ty), 3) = (self.maint, self.proto) {
            self.out.extend_from_slice(&a.bytes(ty, self.db.port, now));
        }
    }

    fn announce(&mut self, a: &Announcement) {
        self.push(a, Instant::now());
    }

    /// Forwards the commands at the front of `pending` (up to the next local
    /// one) on the route `guard` holds, connecting to it first if it changed.
    async fn forward(
        &mut self,
        up: &mut Option<Upstream>,
        pending: &mut VecDeque<Command>,
        guard: RouteGuard,
    ) -> Result<()> {
        if up.as_ref().map(|u| u.addr) != Some(guard.upstream) {
            *up = Some(self.connect_upstream(guard.upstream).await?);
        }
        let mut batch = BytesMut::new();
        while pending.front().is_some_and(|c| !c.is_maint()) {
            let c = pending.pop_front().unwrap();
            let after = self.track(&c, &guard);
            batch.extend_from_slice(&c.raw);
            // In RESP3, (un)subscribe confirmations are pushes: no reply slot.
            let push_only = self.proto == 3
                && matches!(
                    c.name().as_str(),
                    "SUBSCRIBE"
                        | "PSUBSCRIBE"
                        | "SSUBSCRIBE"
                        | "UNSUBSCRIBE"
                        | "PUNSUBSCRIBE"
                        | "SUNSUBSCRIBE"
                );
            if !push_only {
                self.fifo.push_back(Entry::Upstream {
                    _guard: guard.clone(),
                    after,
                });
            }
        }
        up.as_mut().unwrap().w.write_all(&batch).await?;
        Ok(())
    }

    /// Follows the connection state a command changes: what to replay on a new
    /// shard, transactions, and what its reply changes.
    fn track(&mut self, c: &Command, guard: &RouteGuard) -> After {
        match c.name().as_str() {
            "HELLO" => {
                self.session.hello = Some(c.raw.clone());
                return c.arg(1).parse().map(After::Hello).unwrap_or(After::Nothing);
            }
            "AUTH" => self.session.auth = Some(c.raw.clone()),
            "SELECT" => self.session.select = Some(c.raw.clone()),
            "CLIENT" if c.arg(1).eq_ignore_ascii_case("SETNAME") => {
                self.session.setname = Some(c.raw.clone())
            }
            "RESET" => {
                self.session = Session::default();
                self.transaction = None;
                self.in_multi = false;
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
            "UNWATCH" if !self.in_multi => self.transaction = None,
            _ => {}
        }
        After::Nothing
    }

    fn on_upstream(&mut self, u: &mut Upstream) -> Result<()> {
        loop {
            let proto = match self.fifo.front() {
                Some(Entry::Upstream {
                    after: After::Hello(v),
                    ..
                }) => *v,
                _ => self.proto,
            };
            let Some(d) = decode(&mut u.buf, proto)
                .with_context(|| format!("malformed reply from shard {}", u.addr))?
            else {
                return Ok(());
            };
            match d {
                Decoded::Push(raw) => self.out.extend_from_slice(&raw),
                Decoded::Reply { raw, error } => {
                    if let Some(Entry::Upstream { after, .. }) = self.fifo.pop_front() {
                        match after {
                            After::Hello(v) if !error => self.proto = v,
                            After::Reset => {
                                self.proto = 2;
                                self.maint = None;
                            }
                            After::Quit => self.closing = true,
                            _ => {}
                        }
                    }
                    self.out.extend_from_slice(&raw);
                    self.flush_locals();
                }
            }
        }
    }

    /// Opens a connection to a (new) primary and replays the session on it
    /// (HELLO with its AUTH, AUTH, SELECT), discarding those replies.
    async fn connect_upstream(&mut self, addr: SocketAddr) -> Result<Upstream> {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to shard {addr} timed out"))?
            .with_context(|| format!("connecting to shard {addr}"))?;
        s.set_nodelay(true)?;
        let (mut r, mut w) = s.into_split();
        let replay: Vec<Bytes> = [
            &self.session.hello,
            &self.session.auth,
            &self.session.select,
            &self.session.setname,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        for raw in &replay {
            w.write_all(raw).await?;
        }
        let mut left = replay.len();
        let mut buf = BytesMut::new();
        while left > 0 {
            if let Some(Decoded::Reply { .. }) = decode(&mut buf, self.proto)? {
                left -= 1;
                continue;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), r.read_buf(&mut buf))
                .await
                .context("replaying the session on the new shard timed out")??;
            if n == 0 {
                bail!("new shard {addr} closed the connection during session replay");
            }
        }
        Ok(Upstream { addr, r, w, buf })
    }
}
