//! The endpoint proxy: one per (database, node), plus the public address.
//! Here: the session of a proxied client connection from accept to close,
//! and its record in the server's ledger. Beside it: `listen` (where it
//! listens, and what happens to a connection before its session), `local` (what the
//! proxy answers itself, and the notifications it writes) and `forward`
//! (commands to shards, replies back in order). Where each command goes
//! among shards is in `routing`.
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
use tokio::sync::{mpsc, OwnedRwLockReadGuard};
use tokio::time::Instant;
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

/// Commands of one connection sent on to shards and not answered yet: a
/// client that pipelines more waits for replies first. It bounds what a client
/// that never reads its replies makes a shard hold for it (with 100 KB values,
/// 25 MB rather than all it asked for); deep enough for any pipeline to run at
/// full speed.
mod forward;
pub mod listen;
mod local;

const MAX_IN_FLIGHT: usize = 256;

/// Commands read from one client and not sent on yet: past this, the proxy
/// stops reading the client's socket.
const MAX_PENDING: usize = 4096;

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
    /// Drained (`Control::Drain`): closes at its next pause after a reply,
    /// or by then.
    drain_by: Option<Instant>,
    /// Drained, and a reply was written since.
    drain_answered: bool,
}

/// Where and how a connection was accepted.
pub(super) struct Accepted {
    pub(super) node: Node,
    /// On the database's public address.
    pub(super) public: bool,
    /// On the node's external address.
    pub(super) local_external: bool,
    pub(super) local: SocketAddr,
    pub(super) peer: SocketAddr,
    /// The TLS version negotiated, when the database speaks TLS.
    pub(super) tls: Option<&'static str>,
}

/// Serves one accepted connection until it closes.
pub(super) async fn serve<S>(
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
        tls,
    } = at;
    let (tx, mut control) = mpsc::unbounded_channel();
    let id = match db.register(node, tx) {
        Ok(id) => id,
        Err(id) => return refuse_over_limit(&db, id, node, public, local, peer, stream).await,
    };
    db.ledger.accepted(id, node.index, public, local, peer);
    if let Some(version) = tls {
        db.ledger.encrypted(id, version);
    }
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
        drain_by: None,
        drain_answered: false,
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
                conn.drain_answered = conn.drain_by.is_some();
            }
            if conn.closing && !conn.awaits_shards() {
                return Ok(CloseCause::Client);
            }
            // Drained: closed at the pause after a reply, where a client that
            // reads each reply before it sends again finds the end of the
            // stream right behind the reply, not a request cut off. (Closed
            // at once while idle, it would race the client's next request.)
            if conn.drain_answered
                && pending.is_empty()
                && cbuf.is_empty()
                && conn.fifo.is_empty()
                && conn.transaction.is_none()
            {
                return Ok(CloseCause::Shutdown);
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
                _ = sleep_until_some(conn.drain_by), if conn.drain_by.is_some() => {
                    return Ok(CloseCause::Shutdown);
                }
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

/// Sleeps until `at` (forever when `None`).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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

/// What Redis answers a connection past `maxclients`, before it closes it.
pub const MAX_CLIENTS_REACHED: &str = "ERR max number of clients reached";

/// Tells a connection past the database's limit why, and closes it; the
/// server's record keeps it, closed on an error.
async fn refuse_over_limit<S>(
    db: &DbShared,
    id: u64,
    node: Node,
    public: bool,
    local: SocketAddr,
    peer: SocketAddr,
    mut stream: S,
) -> Result<()>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    db.ledger.accepted(id, node.index, public, local, peer);
    let detail = format!(
        "{MAX_CLIENTS_REACHED} (the database serves at most {} connections)",
        db.max_connections
    );
    db.ledger
        .closed(id, CloseCause::Error, Some(detail.clone()));
    tracing::warn!(bdb_id = db.id, "{detail}");
    stream
        .write_all(format!("-{MAX_CLIENTS_REACHED}\r\n").as_bytes())
        .await?;
    stream.shutdown().await?;
    Ok(())
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
}
