//! Where the endpoint proxy listens: a node's addresses and the database's
//! public address, each accept loop with its back-off, and the set-up of an
//! accepted connection (TLS first) before `serve` takes it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{serve, Accepted};
use crate::emulator::database::{DbShared, Node};
use crate::timing::TLS_ACCEPT_WITHIN;

/// Binds the database's port on `addrs` and serves them as `node`: it
/// accepts connections until `accepting` is cancelled, and serves them until
/// `conns` is.
pub async fn listen_node(
    db: Arc<DbShared>,
    node: Node,
    addrs: &[SocketAddr],
    tls: Option<TlsAcceptor>,
    accepting: CancellationToken,
    conns: CancellationToken,
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
        let (db, accepting, conns, tls) =
            (db.clone(), accepting.clone(), conns.clone(), tls.clone());
        tokio::spawn(async move {
            accept_loop(l, accepting, conns, move || node, false, tls, db).await;
        });
    }
    Ok(())
}

/// Binds the public address, `127.0.0.1` and `::1` on the database's port
/// (host names under `.localhost` resolve to both, `::1` first); each new
/// connection is served by the node that holds the endpoint at that moment.
/// A machine without IPv6 loopback gets the IPv4 address alone.
pub async fn listen_public(
    db: Arc<DbShared>,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) -> Result<SocketAddr> {
    let addr: SocketAddr = ([127, 0, 0, 1], db.port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, db.port).into();
    let mut listeners = vec![bind(addr).map_err(|e| {
        taken(
            e,
            format!("binding public address {addr} of database {}", db.id),
        )
    })?];
    match bind(v6) {
        Ok(l) => listeners.push(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(taken(
                e,
                format!("binding public address {v6} of database {}", db.id),
            ))
        }
        Err(e) => {
            tracing::info!(
                bdb_id = db.id,
                "no IPv6 loopback here: the public address is {addr} alone ({e})"
            );
        }
    }
    for l in listeners {
        let picker = {
            let db = db.clone();
            move || db.active_node()
        };
        tokio::spawn(accept_loop(
            l,
            cancel.clone(),
            cancel.clone(),
            picker,
            true,
            tls.clone(),
            db.clone(),
        ));
    }
    Ok(addr)
}

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
    accepting: CancellationToken,
    conns: CancellationToken,
    node: impl Fn() -> Node + Send + 'static,
    public: bool,
    tls: Option<TlsAcceptor>,
    db: Arc<DbShared>,
) {
    let what = match public {
        true => format!("the public address of database {}", db.id),
        false => format!("the proxy of database {} on node {}", db.id, node().index),
    };
    let mut errors = crate::emulator::accept::AcceptErrors::new(what);
    loop {
        tokio::select! {
            _ = accepting.cancelled() => return,
            r = l.accept() => match r {
                Ok((stream, _)) => {
                    db.accepted_one();
                    let (db, cancel, node, tls) = (db.clone(), conns.clone(), node(), tls.clone());
                    tokio::spawn(async move {
                        if let Err(e) = accept(db, node, public, tls, stream, cancel).await {
                            tracing::debug!("proxy connection ended: {e:#}");
                        }
                    });
                }
                Err(e) => errors.failed(e).await,
            }
        }
    }
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
    if public && !db.is_serving(node) {
        // The node that holds the endpoint has no proxy up (a proxy or node
        // failure): the connection ends at once, as a refused one would.
        tracing::debug!(
            bdb_id = db.id,
            node = node.index,
            "public address: no proxy up on the endpoint's node"
        );
        return Ok(());
    }
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let peer = stream.peer_addr()?;
    let local_external = matches!(local.ip(), std::net::IpAddr::V4(ip) if ip == node.external_ip());
    let mut at = Accepted {
        node,
        public,
        local_external,
        local,
        peer,
        tls: None,
    };
    match tls {
        None => serve(db, at, stream, cancel).await,
        Some(acceptor) => {
            let tls = tokio::time::timeout(TLS_ACCEPT_WITHIN, acceptor.accept(stream))
                .await
                .context("the TLS handshake did not finish within 5 s")?
                .context("TLS handshake")?;
            at.tls = match tls.get_ref().1.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => Some("1.3"),
                Some(rustls::ProtocolVersion::TLSv1_2) => Some("1.2"),
                _ => Some("other"),
            };
            serve(db, at, tls, cancel).await
        }
    }
}
