//! How a request of the client under test fails, with its cause kept.

use std::sync::Arc;
use std::time::Duration;

/// The error underneath a [`ClientError`], kept whole for its chain.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Keeps `e`.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(e))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are the same when they say the same.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

/// How a request failed. The cause, when there is one, is the error's
/// [`source`](std::error::Error::source); [`ClientError::chain`] prints both.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// No reply in time.
    #[error("timed out after {after:?}{}", if *in_window { " inside a maintenance window" } else { "" })]
    Timeout {
        /// The timeout that expired.
        after: Duration,
        /// A window was open.
        in_window: bool,
    },
    /// The connection closed or could not be made.
    #[error("connection error: {context}")]
    Connection {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        cause: Option<Cause>,
    },
    /// The server answered with an error (its text is the whole cause).
    #[error("server error: {0}")]
    Server(String),
    /// The handshake failed (auth, notifications refused in enabled mode, RESP2 + enabled).
    #[error("handshake failed: {context}")]
    Handshake {
        /// What went wrong.
        context: String,
        /// Why, when another error says it.
        #[source]
        cause: Option<Cause>,
    },
    /// The options contradict themselves or are out of range; nothing was dialled.
    #[error("invalid client options: {0}")]
    Options(String),
}

impl ClientError {
    /// A short class name: timeout, connection, server, handshake, options.
    pub fn class(&self) -> &'static str {
        match self {
            ClientError::Timeout { .. } => "timeout",
            ClientError::Connection { .. } => "connection",
            ClientError::Server(_) => "server",
            ClientError::Handshake { .. } => "handshake",
            ClientError::Options(_) => "options",
        }
    }

    /// The error and every cause under it, `: `-separated.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out += &format!(": {e}");
            next = e.source();
        }
        out
    }

    /// A connection error saying `context`, caused by `cause`.
    pub(crate) fn connection(
        context: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> ClientError {
        ClientError::Connection {
            context: context.into(),
            cause: Some(Cause::new(cause)),
        }
    }

    /// A handshake error saying `context` (the emulator's or the client's own words).
    pub(crate) fn handshake(context: impl Into<String>) -> ClientError {
        ClientError::Handshake {
            context: context.into(),
            cause: None,
        }
    }

    /// A server's error reply in its own words: `NOPERM this user has ...`.
    pub(crate) fn server(code: &str, detail: Option<&str>) -> ClientError {
        ClientError::Server(match detail {
            Some(d) => format!("{code} {d}"),
            None => code.to_string(),
        })
    }

    pub(crate) fn from_redis(e: redis::RedisError) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                after: Duration::ZERO,
                in_window: false,
            }
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            ClientError::connection("the connection failed", e)
        } else if let Some(code) = e.code() {
            ClientError::server(code, e.detail())
        } else {
            ClientError::Server(e.to_string())
        }
    }
}
