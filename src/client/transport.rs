//! How one connection of the client is opened: TCP within the connect
//! timeout, TLS when the database has it (the server verified against the
//! name dialled: after a handoff, the one MOVING gave), then redis-rs's own
//! set-up on that stream (HELLO with the credentials). Every socket is
//! counted while it is open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::tls::ClientTls;
use super::{Cause, ClientError, ClientOptions, Protocol};
use crate::config::DatabaseConfig;
use crate::notification::Endpoint;

/// What redis-rs sends at set-up: the protocol and the same credentials on
/// every connection, handoffs included (the options' over the endpoints file's).
pub(crate) fn settings(o: &ClientOptions, db: &DatabaseConfig) -> redis::RedisConnectionInfo {
    let mut settings = redis::RedisConnectionInfo::default().set_protocol(match o.protocol {
        Protocol::Resp2 => redis::ProtocolVersion::RESP2,
        Protocol::Resp3 => redis::ProtocolVersion::RESP3,
    });
    if let Some(u) = o.username.as_ref().or(db.username.as_ref()) {
        settings = settings.set_username(u);
    }
    if let Some(p) = o.password.as_ref().or(db.password.as_ref()) {
        settings = settings.set_password(p);
    }
    settings
}

/// A failure while opening: a TLS one in words that say what to fix (a
/// handshake error), else `otherwise`.
fn failure<E>(
    tls: Option<&ClientTls>,
    e: E,
    target: &Endpoint,
    otherwise: impl FnOnce(E) -> ClientError,
) -> ClientError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tls.and_then(|t| t.explain(&e, &target.to_string())) {
        Some(why) => ClientError::Handshake {
            context: why,
            cause: Some(Cause::new(e)),
        },
        None => otherwise(e),
    }
}

/// The sockets a client has open, and the most it had at once.
#[derive(Default, Debug)]
pub struct SocketGauge {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl SocketGauge {
    /// Counts one more socket until the returned guard is dropped.
    fn opened(self: &Arc<Self>) -> OpenSocket {
        let n = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        OpenSocket(self.clone())
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The most sockets open at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// One open socket of a [`SocketGauge`].
struct OpenSocket(Arc<SocketGauge>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Opens a connection to `target`; the TLS version negotiated, if any, and
/// a handle that ends the connection's driver. The driver runs on its own
/// task and ends when the last handle of the connection is dropped, the
/// server closes it, or it is aborted (a connection closed for good must hear
/// nothing more); `gauge` counts the socket until then.
pub(crate) async fn open(
    target: &Endpoint,
    settings: &redis::RedisConnectionInfo,
    cfg: redis::AsyncConnectionConfig,
    connect_timeout: Duration,
    tls: Option<&ClientTls>,
    gauge: &Arc<SocketGauge>,
) -> Result<(MultiplexedConnection, Option<&'static str>, AbortHandle), ClientError> {
    let context = || format!("connecting to {target}");
    let tcp = tokio::time::timeout(
        connect_timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|e| ClientError::connection(context(), e))?
    .map_err(|e| ClientError::connection(context(), e))?;
    let _ = tcp.set_nodelay(true);
    let socket = gauge.opened();
    let set_up_failed = |e: redis::RedisError| {
        failure(tls, e, target, |e| {
            if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() {
                ClientError::connection(context(), e)
            } else {
                ClientError::Handshake {
                    context: context(),
                    cause: Some(Cause::new(e)),
                }
            }
        })
    };
    let Some(t) = tls else {
        let (conn, driver) = MultiplexedConnection::new_with_config(settings, tcp, cfg)
            .await
            .map_err(set_up_failed)?;
        let task = tokio::spawn(async move {
            let _socket = socket;
            driver.await
        });
        return Ok((conn, None, task.abort_handle()));
    };
    let handshake = || format!("TLS handshake with {target}");
    let name = ClientTls::server_name(&target.host)?;
    let stream = tokio::time::timeout(connect_timeout, t.connector.connect(name, tcp))
        .await
        .map_err(|e| ClientError::connection(handshake(), e))?
        .map_err(|e| failure(tls, e, target, |e| ClientError::connection(handshake(), e)))?;
    let version = match stream.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        _ => "unknown",
    };
    let (conn, driver) = MultiplexedConnection::new_with_config(settings, stream, cfg)
        .await
        .map_err(set_up_failed)?;
    let task = tokio::spawn(async move {
        let _socket = socket;
        driver.await
    });
    Ok((conn, Some(version), task.abort_handle()))
}
