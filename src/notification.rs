//! The wire contract: typed maintenance notifications and their RESP3 push frames.
//!
//! The emulator encodes with [`Notification::to_resp3`]; the client decodes what
//! redis-rs delivers with [`Notification::from_push`]; raw connections decode whole
//! frames with [`Notification::from_resp3_frame`]. All decoding goes through one
//! liberal parser (see `WIRE.md`): any letter case, integers as numbers or numeric
//! strings, extra trailing elements ignored, missing optional elements allowed.

use std::fmt;
use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::types::{BytesFrame, Resp3Frame as _};

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
        /// Sequence number (start + 1).
        seq: i64,
        /// The moves, as triplets.
        moves: Vec<SlotMove>,
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

/// A protocol-neutral view of one frame element; both decoders map onto it.
#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// Integer.
    Int(i64),
    /// Any string (simple, bulk, verbatim).
    Str(Vec<u8>),
    /// Null.
    Null,
    /// Array, set or push.
    Array(Vec<Element>),
    /// Anything else (maps, doubles, booleans): never valid in a notification.
    Other(String),
}

impl Element {
    fn describe(&self) -> String {
        match self {
            Element::Int(i) => format!("integer {i}"),
            Element::Str(s) => format!("string {:?}", String::from_utf8_lossy(s)),
            Element::Null => "null".into(),
            Element::Array(a) => format!("array of {}", a.len()),
            Element::Other(o) => o.clone(),
        }
    }

    fn as_text(&self) -> Option<String> {
        match self {
            Element::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Element::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Element::Int(i) => Some(*i),
            Element::Str(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            _ => None,
        }
    }
}

impl From<&redis::Value> for Element {
    fn from(v: &redis::Value) -> Self {
        use redis::Value as V;
        match v {
            V::Int(i) => Element::Int(*i),
            V::BulkString(b) => Element::Str(b.clone()),
            V::SimpleString(s) => Element::Str(s.clone().into_bytes()),
            V::Okay => Element::Str(b"OK".to_vec()),
            V::VerbatimString { text, .. } => Element::Str(text.clone().into_bytes()),
            V::Nil => Element::Null,
            V::Array(a) | V::Set(a) => Element::Array(a.iter().map(Element::from).collect()),
            V::Push { kind, data } => {
                let mut items = vec![Element::Str(kind.to_string().into_bytes())];
                items.extend(data.iter().map(Element::from));
                Element::Array(items)
            }
            other => Element::Other(format!("{other:?}")),
        }
    }
}

impl From<&BytesFrame> for Element {
    fn from(f: &BytesFrame) -> Self {
        match f {
            BytesFrame::Number { data, .. } => Element::Int(*data),
            BytesFrame::BlobString { data, .. }
            | BytesFrame::SimpleString { data, .. }
            | BytesFrame::VerbatimString { data, .. } => Element::Str(data.to_vec()),
            BytesFrame::Null => Element::Null,
            BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => {
                Element::Array(data.iter().map(Element::from).collect())
            }
            BytesFrame::Set { data, .. } => {
                Element::Array(data.iter().map(Element::from).collect())
            }
            other => Element::Other(format!("{:?}", other.kind())),
        }
    }
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

    /// Decodes what redis-rs delivers as `PushKind::Other(name)` with `data`.
    /// `Ok(None)` when `name` is not a maintenance notification.
    pub fn from_push(name: &str, data: &[redis::Value]) -> Result<Option<Self>, NotificationError> {
        let Some(kind) = Kind::parse(name) else {
            return Ok(None);
        };
        let items: Vec<Element> = data.iter().map(Element::from).collect();
        Self::from_elements(kind, &items).map(Some)
    }

    /// Decodes a whole RESP3 push frame. `Ok(None)` for pushes of other kinds.
    pub fn from_resp3_frame(frame: &BytesFrame) -> Result<Option<Self>, NotificationError> {
        match Element::from(frame) {
            Element::Array(items) if !items.is_empty() => {
                let Element::Str(name) = &items[0] else {
                    return Err(NotificationError::NotAPush(items[0].describe()));
                };
                let name = String::from_utf8_lossy(name);
                match Kind::parse(&name) {
                    Some(kind) => Self::from_elements(kind, &items[1..]).map(Some),
                    None => Ok(None),
                }
            }
            other => Err(NotificationError::NotAPush(other.describe())),
        }
    }

    /// Decodes one complete RESP3 frame from raw bytes (for tests and raw connections).
    pub fn from_resp3_bytes(bytes: &[u8]) -> Result<Option<Self>, NotificationError> {
        let mut buf = BytesMut::from(bytes);
        match redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf) {
            Ok(Some((frame, _, _))) => Self::from_resp3_frame(&frame),
            Ok(None) => Err(NotificationError::Resp("incomplete frame".into())),
            Err(e) => Err(NotificationError::Resp(e.to_string())),
        }
    }

    /// Parses the elements after the name.
    pub fn from_elements(kind: Kind, items: &[Element]) -> Result<Self, NotificationError> {
        let seq = int_at(kind, items, 0, "seq")?
            .ok_or(NotificationError::Missing { kind, field: "seq" })?;
        let rest = items.get(1..).unwrap_or(&[]);
        Ok(match kind {
            Kind::Moving => {
                let time_s = non_negative(kind, int_at(kind, items, 1, "time_s")?, "time_s")?
                    .ok_or(NotificationError::Missing {
                        kind,
                        field: "time_s",
                    })?;
                let endpoint = match items.get(2) {
                    None | Some(Element::Null) => None,
                    Some(e) => {
                        let text = e.as_text().ok_or_else(|| NotificationError::Bad {
                            kind,
                            field: "endpoint",
                            found: e.describe(),
                        })?;
                        Endpoint::parse(&text)?
                    }
                };
                Notification::Moving {
                    seq,
                    time_s,
                    endpoint,
                }
            }
            Kind::Migrating | Kind::FailingOver => {
                let time_s = non_negative(kind, int_at(kind, items, 1, "time_s")?, "time_s")?;
                let shards = shard_ids(kind, items.get(2..).unwrap_or(&[]))?;
                if kind == Kind::Migrating {
                    Notification::Migrating {
                        seq,
                        time_s,
                        shards,
                    }
                } else {
                    Notification::FailingOver {
                        seq,
                        time_s,
                        shards,
                    }
                }
            }
            Kind::Migrated => Notification::Migrated {
                seq,
                shards: shard_ids(kind, rest)?,
            },
            Kind::FailedOver => Notification::FailedOver {
                seq,
                shards: shard_ids(kind, rest)?,
            },
            Kind::SMigrating => {
                let mut parts = Vec::new();
                for e in flatten(rest) {
                    parts.push(e.as_text().ok_or_else(|| NotificationError::Bad {
                        kind,
                        field: "slots",
                        found: e.describe(),
                    })?);
                }
                if parts.is_empty() {
                    return Err(NotificationError::Missing {
                        kind,
                        field: "slots",
                    });
                }
                Notification::SMigrating {
                    seq,
                    slots: parts.join(","),
                }
            }
            Kind::SMigrated => {
                let list = match rest.first() {
                    Some(Element::Array(list)) => list,
                    Some(other) => {
                        return Err(NotificationError::Bad {
                            kind,
                            field: "moves",
                            found: other.describe(),
                        })
                    }
                    None => {
                        return Err(NotificationError::Missing {
                            kind,
                            field: "moves",
                        })
                    }
                };
                let mut moves = Vec::new();
                for entry in list {
                    moves.push(slot_move(entry)?);
                }
                Notification::SMigrated { seq, moves }
            }
        })
    }

    /// Encodes as a RESP3 push frame.
    pub fn to_frame(&self) -> BytesFrame {
        let mut data = vec![blob(self.kind().as_str()), number(self.seq())];
        match self {
            Notification::Moving {
                time_s, endpoint, ..
            } => {
                data.push(number(*time_s as i64));
                data.push(match endpoint {
                    Some(e) => blob(&e.to_string()),
                    None => BytesFrame::Null,
                });
            }
            // Several shard ids travel as ONE comma-separated element: strict
            // parsers (Jedis) take exactly four (or three) elements.
            Notification::Migrating { time_s, shards, .. }
            | Notification::FailingOver { time_s, shards, .. } => {
                data.push(number(time_s.unwrap_or(0) as i64));
                if !shards.is_empty() {
                    data.push(blob(&shards.join(",")));
                }
            }
            Notification::Migrated { shards, .. } | Notification::FailedOver { shards, .. } => {
                if !shards.is_empty() {
                    data.push(blob(&shards.join(",")));
                }
            }
            Notification::SMigrating { slots, .. } => data.push(blob(slots)),
            Notification::SMigrated { moves, .. } => data.push(BytesFrame::Array {
                data: moves
                    .iter()
                    .map(|m| BytesFrame::Array {
                        data: vec![
                            blob(&m.source.to_string()),
                            blob(&m.target.to_string()),
                            blob(&m.slots),
                        ],
                        attributes: None,
                    })
                    .collect(),
                attributes: None,
            }),
        }
        BytesFrame::Push {
            data,
            attributes: None,
        }
    }

    /// The elements of the push as JSON (strings, integers, null, arrays), as
    /// the fault injector's `send_push` takes them.
    pub fn to_json(&self) -> serde_json::Value {
        fn json(f: &BytesFrame) -> serde_json::Value {
            match f {
                BytesFrame::BlobString { data, .. } => {
                    String::from_utf8_lossy(data).into_owned().into()
                }
                BytesFrame::Number { data, .. } => (*data).into(),
                BytesFrame::Array { data, .. } | BytesFrame::Push { data, .. } => {
                    data.iter().map(json).collect()
                }
                _ => serde_json::Value::Null,
            }
        }
        json(&self.to_frame())
    }

    /// Encodes as the bytes of a RESP3 push frame.
    pub fn to_resp3(&self) -> Bytes {
        let mut buf = BytesMut::new();
        redis_protocol::resp3::encode::complete::extend_encode(&mut buf, &self.to_frame(), false)
            .expect("a push of strings, numbers and nulls always encodes");
        buf.freeze()
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
            Notification::SMigrated { moves, .. } => {
                for m in moves {
                    write!(f, " [{} -> {} {}]", m.source, m.target, m.slots)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn blob(s: &str) -> BytesFrame {
    BytesFrame::BlobString {
        data: Bytes::copy_from_slice(s.as_bytes()),
        attributes: None,
    }
}

fn number(i: i64) -> BytesFrame {
    BytesFrame::Number {
        data: i,
        attributes: None,
    }
}

fn int_at(
    kind: Kind,
    items: &[Element],
    at: usize,
    field: &'static str,
) -> Result<Option<i64>, NotificationError> {
    match items.get(at) {
        None | Some(Element::Null) => Ok(None),
        Some(e) => e.as_int().map(Some).ok_or_else(|| NotificationError::Bad {
            kind,
            field,
            found: e.describe(),
        }),
    }
}

fn non_negative(
    kind: Kind,
    v: Option<i64>,
    field: &'static str,
) -> Result<Option<u64>, NotificationError> {
    match v {
        Some(i) if i < 0 => Err(NotificationError::Bad {
            kind,
            field,
            found: i.to_string(),
        }),
        other => Ok(other.map(|i| i as u64)),
    }
}

fn flatten(items: &[Element]) -> Vec<&Element> {
    let mut out = Vec::new();
    for e in items {
        match e {
            Element::Array(inner) => out.extend(flatten(inner)),
            other => out.push(other),
        }
    }
    out
}

/// Shard ids: one element each, an array of them, or one comma-separated
/// element.
fn shard_ids(kind: Kind, items: &[Element]) -> Result<Vec<String>, NotificationError> {
    let mut ids = Vec::new();
    for e in flatten(items)
        .into_iter()
        .filter(|e| !matches!(e, Element::Null))
    {
        let text = e.as_text().ok_or_else(|| NotificationError::Bad {
            kind,
            field: "shard id",
            found: e.describe(),
        })?;
        ids.extend(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    Ok(ids)
}

fn slot_move(entry: &Element) -> Result<SlotMove, NotificationError> {
    let kind = Kind::SMigrated;
    let bad = |found: String| NotificationError::Bad {
        kind,
        field: "triplet",
        found,
    };
    let Element::Array(parts) = entry else {
        return Err(bad(entry.describe()));
    };
    if parts.len() < 3 {
        return Err(bad(format!("{} elements, expected 3", parts.len())));
    }
    let text = |e: &Element| e.as_text().ok_or_else(|| bad(e.describe()));
    let endpoint = |e: &Element| -> Result<Endpoint, NotificationError> {
        Endpoint::parse(&text(e)?)?.ok_or_else(|| bad(e.describe()))
    };
    Ok(SlotMove {
        source: endpoint(&parts[0])?,
        target: endpoint(&parts[1])?,
        slots: text(&parts[2])?,
    })
}

/// Parses a slot list such as `0,5-10,20` into inclusive ranges.
pub fn parse_slots(list: &str) -> Result<Vec<(u16, u16)>, BadSlots> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let bad = || BadSlots(part.to_string());
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if a > b || b > 16383 {
            return Err(bad());
        }
        out.push((a, b));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_elements_follow_the_wire_layout() {
        let moving = Notification::Moving {
            seq: 7,
            time_s: 15,
            endpoint: None,
        };
        assert_eq!(moving.to_json(), serde_json::json!(["MOVING", 7, 15, null]));
        let migrating = Notification::Migrating {
            seq: 3,
            time_s: Some(5),
            shards: vec!["1".into(), "2".into()],
        };
        assert_eq!(
            migrating.to_json(),
            serde_json::json!(["MIGRATING", 3, 5, "1,2"])
        );
    }
    use redis::Value as V;

    fn bulk(s: &str) -> V {
        V::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn moving_encodes_byte_exact() {
        let n = Notification::Moving {
            seq: 7,
            time_s: 15,
            endpoint: Some(Endpoint::new("127.0.2.1", 12000)),
        };
        assert_eq!(
            &n.to_resp3()[..],
            b">4\r\n$6\r\nMOVING\r\n:7\r\n:15\r\n$15\r\n127.0.2.1:12000\r\n"
        );
    }

    #[test]
    fn moving_null_encodes_resp3_null() {
        let n = Notification::Moving {
            seq: 0,
            time_s: 2,
            endpoint: None,
        };
        assert_eq!(
            &n.to_resp3()[..],
            b">4\r\n$6\r\nMOVING\r\n:0\r\n:2\r\n_\r\n"
        );
    }

    #[test]
    fn failing_over_and_failed_over_encode_byte_exact() {
        let start = Notification::FailingOver {
            seq: 4,
            time_s: Some(2),
            shards: vec!["1".into()],
        };
        assert_eq!(
            &start.to_resp3()[..],
            b">4\r\n$12\r\nFAILING_OVER\r\n:4\r\n:2\r\n$1\r\n1\r\n"
        );
        let done = Notification::FailedOver {
            seq: 5,
            shards: vec!["1".into()],
        };
        assert_eq!(
            &done.to_resp3()[..],
            b">3\r\n$11\r\nFAILED_OVER\r\n:5\r\n$1\r\n1\r\n"
        );
    }

    #[test]
    fn several_shard_ids_travel_as_one_element_and_split_back() {
        let n = Notification::Migrating {
            seq: 8,
            time_s: Some(3),
            shards: vec!["3".into(), "5".into()],
        };
        // Exactly four elements, as strict parsers require.
        assert_eq!(
            &n.to_resp3()[..],
            b">4\r\n$9\r\nMIGRATING\r\n:8\r\n:3\r\n$3\r\n3,5\r\n"
        );
        let back = Notification::from_push("MIGRATED", &[V::Int(9), bulk("3, 5")]).unwrap();
        assert_eq!(
            back,
            Some(Notification::Migrated {
                seq: 9,
                shards: vec!["3".into(), "5".into()]
            })
        );
    }

    #[test]
    fn every_kind_round_trips_through_both_decoders() {
        let e = |h: &str, p| Endpoint::new(h, p);
        let all = vec![
            Notification::Moving {
                seq: 1,
                time_s: 15,
                endpoint: Some(e("::1", 12000)),
            },
            Notification::Moving {
                seq: 1,
                time_s: 0,
                endpoint: None,
            },
            Notification::Migrating {
                seq: 2,
                time_s: Some(3),
                shards: vec!["1".into(), "2".into()],
            },
            Notification::Migrated {
                seq: 3,
                shards: vec!["1".into()],
            },
            Notification::FailingOver {
                seq: 4,
                time_s: Some(0),
                shards: vec!["3".into()],
            },
            Notification::FailedOver {
                seq: 5,
                shards: vec![],
            },
            Notification::SMigrating {
                seq: 6,
                slots: "0,5-10,20".into(),
            },
            Notification::SMigrated {
                seq: 7,
                moves: vec![
                    SlotMove {
                        source: e("127.0.1.1", 7001),
                        target: e("127.0.2.1", 7002),
                        slots: "0-100".into(),
                    },
                    SlotMove {
                        source: e("127.0.1.1", 7001),
                        target: e("127.0.3.1", 7003),
                        slots: "101,200-300".into(),
                    },
                ],
            },
        ];
        for n in all {
            let bytes = n.to_resp3();
            assert_eq!(
                Notification::from_resp3_bytes(&bytes).unwrap(),
                Some(n.clone())
            );
            let BytesFrame::Push { data, .. } = n.to_frame() else {
                panic!("not a push")
            };
            let values: Vec<V> = data[1..].iter().map(frame_to_value).collect();
            assert_eq!(
                Notification::from_push(n.kind().as_str(), &values).unwrap(),
                Some(n)
            );
        }
    }

    fn frame_to_value(f: &BytesFrame) -> V {
        match f {
            BytesFrame::Number { data, .. } => V::Int(*data),
            BytesFrame::BlobString { data, .. } => V::BulkString(data.to_vec()),
            BytesFrame::Null => V::Nil,
            BytesFrame::Array { data, .. } => V::Array(data.iter().map(frame_to_value).collect()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_endpoint_means_null() {
        let n = Notification::from_push("MOVING", &[V::Int(3), V::Int(15)]).unwrap();
        assert_eq!(
            n,
            Some(Notification::Moving {
                seq: 3,
                time_s: 15,
                endpoint: None
            })
        );
    }

    #[test]
    fn placeholder_endpoints_mean_null() {
        for text in ["?:7002", ":7002", "host:0", "null"] {
            let n =
                Notification::from_push("MOVING", &[V::Int(3), V::Int(15), bulk(text)]).unwrap();
            assert!(
                matches!(n, Some(Notification::Moving { endpoint: None, .. })),
                "{text}: {n:?}"
            );
        }
    }

    #[test]
    fn numeric_strings_lowercase_names_and_extra_elements_are_accepted() {
        let n = Notification::from_push(
            "moving",
            &[
                bulk("12"),
                V::SimpleString("30".into()),
                bulk("10.0.0.1:6379"),
                bulk("extra"),
                V::Int(9),
            ],
        )
        .unwrap();
        assert_eq!(
            n,
            Some(Notification::Moving {
                seq: 12,
                time_s: 30,
                endpoint: Some(Endpoint::new("10.0.0.1", 6379))
            })
        );
        let n = Notification::from_push("Failed_Over", &[V::Int(8)]).unwrap();
        assert_eq!(
            n,
            Some(Notification::FailedOver {
                seq: 8,
                shards: vec![]
            })
        );
    }

    #[test]
    fn migrating_without_time_is_allowed() {
        let n = Notification::from_push("MIGRATING", &[V::Int(1)]).unwrap();
        assert_eq!(
            n,
            Some(Notification::Migrating {
                seq: 1,
                time_s: None,
                shards: vec![]
            })
        );
    }

    #[test]
    fn shard_ids_may_be_integers_or_an_array() {
        let n = Notification::from_push(
            "MIGRATED",
            &[V::Int(2), V::Array(vec![V::Int(1), bulk("2")])],
        )
        .unwrap();
        assert_eq!(
            n,
            Some(Notification::Migrated {
                seq: 2,
                shards: vec!["1".into(), "2".into()]
            })
        );
    }

    #[test]
    fn ipv6_endpoints_parse_in_both_forms() {
        for text in ["[::1]:12000", "::1:12000"] {
            assert_eq!(
                Endpoint::parse(text).unwrap(),
                Some(Endpoint::new("::1", 12000)),
                "{text}"
            );
        }
        assert_eq!(Endpoint::new("::1", 12000).to_string(), "[::1]:12000");
    }

    #[test]
    fn smigrating_accepts_several_slot_elements() {
        let n = Notification::from_push("SMIGRATING", &[V::Int(4), bulk("0,5-10"), bulk("20")])
            .unwrap();
        assert_eq!(
            n,
            Some(Notification::SMigrating {
                seq: 4,
                slots: "0,5-10,20".into()
            })
        );
        assert_eq!(
            parse_slots("0,5-10,20").unwrap(),
            vec![(0, 0), (5, 10), (20, 20)]
        );
        assert!(parse_slots("10-5").is_err());
    }

    #[test]
    fn smigrated_pairs_are_rejected_not_dropped() {
        let err = Notification::from_push(
            "SMIGRATED",
            &[
                V::Int(4),
                V::Array(vec![V::Array(vec![bulk("a:1"), bulk("b:2")])]),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected 3"), "{err}");
    }

    #[test]
    fn malformed_frames_are_errors_with_a_reason() {
        let err = Notification::from_push("MOVING", &[]).unwrap_err();
        assert_eq!(err.to_string(), "MOVING lacks its seq");
        let err = Notification::from_push("MOVING", &[bulk("x"), V::Int(1)]).unwrap_err();
        assert!(err.to_string().contains("bad seq"), "{err}");
        let err = Notification::from_push("MOVING", &[V::Int(1), V::Int(-3)]).unwrap_err();
        assert!(err.to_string().contains("bad time_s"), "{err}");
        let err = Notification::from_push("MOVING", &[V::Int(1), V::Int(3), bulk("nohostport")])
            .unwrap_err();
        assert!(matches!(err, NotificationError::BadEndpoint(_)), "{err}");
        assert!(Notification::from_resp3_bytes(b">1\r\n:5\r\n").is_err());
        assert!(Notification::from_resp3_bytes(b"+OK\r\n").is_err());
    }

    #[test]
    fn other_pushes_are_not_notifications() {
        assert_eq!(Notification::from_push("invalidate", &[]).unwrap(), None);
        assert_eq!(
            Notification::from_resp3_bytes(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n")
                .unwrap(),
            None
        );
    }
}
