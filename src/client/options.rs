//! What a client is told: its mode, endpoint type, protocol, timeouts,
//! handoff settings and the test-only switches negative controls turn off.

use std::time::Duration;

use super::tls::TlsOptions;
use crate::notification::EndpointType;

/// Whether the client asks for maintenance notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never asked.
    Disabled,
    /// Asked; a refusal or a RESP2 connection fails the connection.
    Enabled,
    /// Asked; a refusal turns the feature off quietly.
    Auto,
}

impl Mode {
    /// Parses `disabled`, `enabled` or `auto`.
    pub fn parse(s: &str) -> Result<Mode, UnknownMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disabled" => Ok(Mode::Disabled),
            "enabled" => Ok(Mode::Enabled),
            "auto" => Ok(Mode::Auto),
            other => Err(UnknownMode(other.to_string())),
        }
    }
}

/// A mode name that is not disabled, enabled or auto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}; expected disabled, enabled or auto")]
pub struct UnknownMode(pub String);

/// Which MOVING address form the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointTypeSetting {
    /// Pick from TLS and the address class (see `WIRE.md`).
    Auto,
    /// Always this form.
    Fixed(EndpointType),
}

/// RESP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2: no pushes.
    Resp2,
    /// RESP3.
    Resp3,
}

/// Options of one client (defaults as `CLIENT.md` gives them).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// disabled / enabled / auto.
    pub mode: Mode,
    /// MOVING address form.
    pub endpoint_type: EndpointTypeSetting,
    /// Timeout floor while a window is open.
    pub relaxed_timeout: Duration,
    /// A window closes after this even without its completion (default 3 x relaxed).
    pub relaxed_window_max: Option<Duration>,
    /// Relaxation kept after a completion or a handoff (default 2 x relaxed).
    pub post_handoff_relaxed: Option<Duration>,
    /// One handoff attempt: dial + handshake.
    pub handoff_timeout: Duration,
    /// Attempts after the first before giving up.
    pub max_handoff_retries: u32,
    /// Handoffs of the client dialling at once; the others wait their turn,
    /// so that a rebind of a large pool does not open every connection at
    /// the same moment (and starve the traffic meanwhile).
    pub handoff_workers: usize,
    /// Connections per client.
    pub pool_size: usize,
    /// Normal response timeout; `None` waits forever.
    pub response_timeout: Option<Duration>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// RESP version.
    pub protocol: Protocol,
    /// Relax timeouts inside maintenance windows (test-only switch: off makes
    /// a client that ignores the windows, for negative controls).
    pub relax: bool,
    /// Hand connections off on MOVING (test-only switch: off makes a client
    /// that stays where it is, for negative controls).
    pub hand_off: bool,
    /// Subscribe a new connection (a handoff's, a reconnect's) to what the
    /// one it replaces was subscribed to (test-only switch: off makes a
    /// subscriber that goes deaf after a move, for negative controls).
    pub resubscribe: bool,
    /// Dial again when the connection in use was lost (test-only switch:
    /// off makes a client that stays down after a drop, for negative
    /// controls).
    pub reconnect: bool,
    /// A cluster client reads the whole slot map again after a `MOVED`
    /// (test-only switch: off makes a client that learns a moved slot only
    /// from its own MOVED, for negative controls).
    pub refresh_on_moved: bool,
    /// Find the database through the cluster's discovery service (the
    /// endpoints file's `discovery_endpoints`), as a Sentinel client does,
    /// rather than dial its endpoint.
    pub discovery: bool,
    /// With discovery: move every connection when `+switch-master` names
    /// the database (test-only switch: off makes a client that ignores it,
    /// for negative controls).
    pub follow_switch_master: bool,
    /// TLS settings, used when the database is a TLS one.
    pub tls: TlsOptions,
    /// User name instead of the endpoints file's.
    pub username: Option<String>,
    /// Password instead of the endpoints file's.
    pub password: Option<String>,
    /// The name the server sees: `CLIENT SETNAME` on every connection,
    /// handoffs included, so that the server's record tells this client's
    /// connections apart (`None`: no name).
    pub client_name: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            mode: Mode::Auto,
            endpoint_type: EndpointTypeSetting::Auto,
            relaxed_timeout: Duration::from_secs(10),
            relaxed_window_max: None,
            post_handoff_relaxed: None,
            handoff_timeout: Duration::from_secs(15),
            max_handoff_retries: 3,
            handoff_workers: 10,
            pool_size: 1,
            response_timeout: Some(Duration::from_millis(500)),
            connect_timeout: Duration::from_secs(1),
            protocol: Protocol::Resp3,
            relax: true,
            hand_off: true,
            resubscribe: true,
            reconnect: true,
            refresh_on_moved: true,
            discovery: false,
            follow_switch_master: true,
            tls: TlsOptions::default(),
            username: None,
            password: None,
            client_name: None,
        }
    }
}

impl ClientOptions {
    /// Every setting by the name a client's settings table gives it (and
    /// its value as written there); a password is shown as given or not,
    /// never itself.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let show = |d: Duration| crate::duration_text::show(Some(d));
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        vec![
            (
                "maintenance notifications",
                format!("{:?}", self.mode).to_lowercase(),
            ),
            (
                "endpoint type",
                match self.endpoint_type {
                    EndpointTypeSetting::Auto => "auto".into(),
                    EndpointTypeSetting::Fixed(t) => t.to_string(),
                },
            ),
            ("protocol", format!("{:?}", self.protocol)),
            ("connections", self.pool_size.to_string()),
            (
                "response timeout",
                crate::duration_text::show(self.response_timeout),
            ),
            ("relaxed timeout", show(self.relaxed_timeout)),
            ("relaxed window max", show(self.window_max())),
            ("post-handoff tail", show(self.post_relaxed())),
            ("connect timeout", show(self.connect_timeout)),
            ("handoff timeout", show(self.handoff_timeout)),
            ("handoff retries", self.max_handoff_retries.to_string()),
            ("handoff workers", self.handoff_workers.to_string()),
            ("relaxation", on_off(self.relax)),
            ("handoffs", on_off(self.hand_off)),
            ("resubscribe", on_off(self.resubscribe)),
            ("reconnect", on_off(self.reconnect)),
            ("slot map refresh on MOVED", on_off(self.refresh_on_moved)),
            ("discovery service", on_off(self.discovery)),
            ("+switch-master", on_off(self.follow_switch_master)),
            ("TLS verification", on_off(self.tls.verify)),
            ("TLS versions", self.tls.versions()),
            (
                "user",
                self.username
                    .clone()
                    .unwrap_or_else(|| "the endpoints file's".into()),
            ),
            (
                "password",
                if self.password.is_some() {
                    "given"
                } else {
                    "the endpoints file's"
                }
                .into(),
            ),
        ]
    }

    /// The backstop of a window.
    pub fn window_max(&self) -> Duration {
        self.relaxed_window_max.unwrap_or(self.relaxed_timeout * 3)
    }

    /// The relaxed tail after a completion or handoff.
    pub fn post_relaxed(&self) -> Duration {
        self.post_handoff_relaxed
            .unwrap_or(self.relaxed_timeout * 2)
    }

    /// Effective timeout while relaxed: max(normal, relaxed); never shortened.
    pub fn relaxed_effective(&self) -> Option<Duration> {
        self.response_timeout.map(|t| t.max(self.relaxed_timeout))
    }
}
