//! The wire contract: typed maintenance notifications and their RESP3 push frames.
//!
//! The emulator encodes with [`Notification::to_resp3`]; the client decodes what
//! redis-rs delivers with [`Notification::from_push`]; raw connections decode whole
//! frames with [`Notification::from_resp3_frame`]. All decoding goes through one
//! liberal parser (see `WIRE.md`): any letter case, integers as numbers or numeric
//! strings, extra trailing elements ignored, missing optional elements allowed.
//!
//! The types live here; `decode` reads frames, `encode` writes them.

use std::fmt;
use std::net::IpAddr;

mod decode;
mod encode;

pub use decode::{parse_slots, Element};

/// The address form a connection asks MOVING to carry (`moving-endpoint-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointType {
    /// The node's internal IP.
    InternalIp,
    /// The node's internal host name.
    InternalFqdn,
    /// The node's external IP.
    ExternalIp,
    /// The node's external host name.
    ExternalFqdn,
    /// No address: MOVING carries null.
    None,
}

impl EndpointType {
    /// Every type, as sent on the wire.
    pub const ALL: [EndpointType; 5] = [
        EndpointType::InternalIp,
        EndpointType::InternalFqdn,
        EndpointType::ExternalIp,
        EndpointType::ExternalFqdn,
        EndpointType::None,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointType::InternalIp => "internal-ip",
            EndpointType::InternalFqdn => "internal-fqdn",
            EndpointType::ExternalIp => "external-ip",
            EndpointType::ExternalFqdn => "external-fqdn",
            EndpointType::None => "none",
        }
    }

    /// Parses the wire spelling in any letter case.
    pub fn parse(text: &str) -> Result<EndpointType, UnknownEndpointType> {
        EndpointType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownEndpointType(text.to_string()))
    }

    /// The form `auto` asks for: FQDN with TLS, IP without; internal for a
    /// private, loopback, link-local or CGNAT address, external otherwise
    /// (and for an address not known).
    pub fn for_address(ip: Option<IpAddr>, tls: bool) -> EndpointType {
        match (tls, ip.is_some_and(is_internal)) {
            (true, true) => EndpointType::InternalFqdn,
            (true, false) => EndpointType::ExternalFqdn,
            (false, true) => EndpointType::InternalIp,
            (false, false) => EndpointType::ExternalIp,
        }
    }

    /// True for the host-name forms.
    pub fn is_fqdn(self) -> bool {
        matches!(
            self,
            EndpointType::InternalFqdn | EndpointType::ExternalFqdn
        )
    }
}

impl fmt::Display for EndpointType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for a private, loopback, link-local or CGNAT address: one a client
/// inside the cluster's network reaches.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// An endpoint type name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown endpoint type {0:?}; expected one of internal-ip, internal-fqdn, external-ip, external-fqdn, none")]
pub struct UnknownEndpointType(pub String);

/// A slot or slot range that is not `N` or `N-M` with N <= M <= 16383.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad slot range {0:?}; slots are N or N-M with N <= M <= 16383")]
pub struct BadSlots(pub String);

/// The seven maintenance notification kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The endpoint moves; the connection should follow.
    Moving,
    /// A shard migration starts.
    Migrating,
    /// A shard migration completed.
    Migrated,
    /// A failover starts.
    FailingOver,
    /// A failover completed.
    FailedOver,
    /// Slots start to migrate (cluster).
    SMigrating,
    /// Slots migrated (cluster).
    SMigrated,
}

impl Kind {
    /// Every kind, in catalogue order.
    pub const ALL: [Kind; 7] = [
        Kind::Moving,
        Kind::Migrating,
        Kind::Migrated,
        Kind::FailingOver,
        Kind::FailedOver,
        Kind::SMigrating,
        Kind::SMigrated,
    ];

    /// The name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Moving => "MOVING",
            Kind::Migrating => "MIGRATING",
            Kind::Migrated => "MIGRATED",
            Kind::FailingOver => "FAILING_OVER",
            Kind::FailedOver => "FAILED_OVER",
            Kind::SMigrating => "SMIGRATING",
            Kind::SMigrated => "SMIGRATED",
        }
    }

    /// Parses a wire name in any letter case; `None` for names that are not maintenance kinds.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }

    /// True for kinds that open a maintenance window.
    pub fn is_start(self) -> bool {
        matches!(
            self,
            Kind::Moving | Kind::Migrating | Kind::FailingOver | Kind::SMigrating
        )
    }

    /// The completion that closes a window opened by this kind, if any.
    pub fn completion(self) -> Option<Kind> {
        match self {
            Kind::Migrating => Some(Kind::Migrated),
            Kind::FailingOver => Some(Kind::FailedOver),
            Kind::SMigrating => Some(Kind::SMigrated),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `host:port` endpoint carried by MOVING or SMIGRATED.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl Endpoint {
    /// Builds an endpoint.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`, `[v6]:port` or bare `v6:port`. Placeholders that mean
    /// "no address" (`?:7002`, `:7002`, `host:0`, empty, `null`) give `Ok(None)`.
    pub fn parse(text: &str) -> Result<Option<Endpoint>, NotificationError> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("null") {
            return Ok(None);
        }
        let bad = || NotificationError::BadEndpoint(text.to_string());
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            (host, port)
        } else {
            text.rsplit_once(':').ok_or_else(bad)?
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || host == "?" || port == 0 {
            return Ok(None);
        }
        Ok(Some(Endpoint::new(host, port)))
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One entry of SMIGRATED: slots that moved from `source` to `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMove {
    /// Node the slots left.
    pub source: Endpoint,
    /// Node the slots now live on.
    pub target: Endpoint,
    /// Slot list such as `0,5-10,20`.
    pub slots: String,
}

/// A typed maintenance notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// `MOVING seq time_s endpoint|null`.
    Moving {
        /// Event sequence number.
        seq: i64,
        /// Seconds left before the old endpoint closes.
        time_s: u64,
        /// Where to move; `None` means reconnect to the configured address.
        endpoint: Option<Endpoint>,
    },
    /// `MIGRATING seq time_s shards...`.
    Migrating {
        /// Event sequence number.
        seq: i64,
        /// Expected duration, when given.
        time_s: Option<u64>,
        /// Shard ids concerned.
        shards: Vec<String>,
    },
    /// `MIGRATED seq shards...`.
    Migrated {
        /// Sequence number (start + 1).
        seq: i64,
        /// Shard ids concerned.
        shards: Vec<String>,
    },
    /// `FAILING_OVER seq time_s shards...`.
    FailingOver {
        /// Event sequence number.
        seq: i64,
        /// Expected duration, when given.
        time_s: Option<u64>,
        /// Shard ids concerned.
        shards: Vec<String>,
    },
    /// `FAILED_OVER seq shards...`.
    FailedOver {
        /// Sequence number (start + 1).
        seq: i64,
        /// Shard ids concerned.
        shards: Vec<String>,
    },
    /// `SMIGRATING seq slots`.
    SMigrating {
        /// Event sequence number.
        seq: i64,
        /// Slot list such as `0,5-10,20`.
        slots: String,
    },
    /// `SMIGRATED seq [[source, target, slots], ...]`.
    SMigrated {
        /// Its own sequence number (not its SMIGRATING's).
        seq: i64,
        /// The moves, as triplets.
        moves: Vec<SlotMove>,
        /// Entries that were not `[source, target, slots]` triplets (pairs,
        /// say), each with why: skipped, the rest of the frame kept. Never
        /// encoded.
        rejected: Vec<String>,
    },
}

/// Why a push frame could not be read as a maintenance notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// The frame is not a push (or not an array) with a name first.
    #[error("not a push frame with a name first: {0}")]
    NotAPush(String),
    /// A required element is missing.
    #[error("{kind} lacks its {field}")]
    Missing {
        /// Kind being parsed.
        kind: Kind,
        /// Name of the missing element.
        field: &'static str,
    },
    /// An element has the wrong type or value.
    #[error("{kind} has a bad {field}: {found}")]
    Bad {
        /// Kind being parsed.
        kind: Kind,
        /// Name of the element.
        field: &'static str,
        /// What was found instead.
        found: String,
    },
    /// An endpoint is not `host:port`.
    #[error("endpoint {0:?} is not host:port")]
    BadEndpoint(String),
    /// The bytes are not valid RESP3.
    #[error("malformed RESP3: {0}")]
    Resp(String),
}

impl Notification {
    /// The kind of this notification.
    pub fn kind(&self) -> Kind {
        match self {
            Notification::Moving { .. } => Kind::Moving,
            Notification::Migrating { .. } => Kind::Migrating,
            Notification::Migrated { .. } => Kind::Migrated,
            Notification::FailingOver { .. } => Kind::FailingOver,
            Notification::FailedOver { .. } => Kind::FailedOver,
            Notification::SMigrating { .. } => Kind::SMigrating,
            Notification::SMigrated { .. } => Kind::SMigrated,
        }
    }

    /// The sequence number.
    pub fn seq(&self) -> i64 {
        match self {
            Notification::Moving { seq, .. }
            | Notification::Migrating { seq, .. }
            | Notification::Migrated { seq, .. }
            | Notification::FailingOver { seq, .. }
            | Notification::FailedOver { seq, .. }
            | Notification::SMigrating { seq, .. }
            | Notification::SMigrated { seq, .. } => *seq,
        }
    }

    /// Seconds announced by a start notification, if any.
    pub fn time_s(&self) -> Option<u64> {
        match self {
            Notification::Moving { time_s, .. } => Some(*time_s),
            Notification::Migrating { time_s, .. } | Notification::FailingOver { time_s, .. } => {
                *time_s
            }
            _ => None,
        }
    }

    /// The same notification with its announced time replaced (used for late joiners).
    pub fn with_time_s(&self, remaining: u64) -> Notification {
        let mut n = self.clone();
        match &mut n {
            Notification::Moving { time_s, .. } => *time_s = remaining,
            Notification::Migrating { time_s, .. } | Notification::FailingOver { time_s, .. } => {
                *time_s = Some(remaining)
            }
            _ => {}
        }
        n
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.seq())?;
        if let Some(t) = self.time_s() {
            write!(f, " {t}s")?;
        }
        match self {
            Notification::Moving {
                endpoint: Some(e), ..
            } => write!(f, " {e}"),
            Notification::Moving { endpoint: None, .. } => write!(f, " null"),
            Notification::SMigrating { slots, .. } => write!(f, " {slots}"),
            Notification::SMigrated {
                moves, rejected, ..
            } => {
                for m in moves {
                    write!(f, " [{} -> {} {}]", m.source, m.target, m.slots)?;
                }
                if !rejected.is_empty() {
                    write!(f, " ({} malformed entries skipped)", rejected.len())?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
