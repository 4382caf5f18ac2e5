//! Decoding: every push a server may send, read liberally (see `WIRE.md`):
//! any letter case, integers as numbers or numeric strings, extra trailing
//! elements ignored, missing optional elements allowed.

use bytes::BytesMut;
use redis_protocol::resp3::types::{BytesFrame, Resp3Frame as _};

use super::{BadSlots, Endpoint, Kind, Notification, NotificationError, SlotMove};

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
                // Liberal: a bad entry is skipped and reported, the others
                // kept; a frame with nothing usable is an error.
                let mut moves = Vec::new();
                let mut rejected = Vec::new();
                for entry in list {
                    match slot_move(entry) {
                        Ok(m) => moves.push(m),
                        Err(e) => rejected.push(e.to_string()),
                    }
                }
                if moves.is_empty() {
                    if let Some(first) = rejected.first() {
                        return Err(NotificationError::Bad {
                            kind,
                            field: "moves",
                            found: format!("no usable triplet; first: {first}"),
                        });
                    }
                }
                Notification::SMigrated {
                    seq,
                    moves,
                    rejected,
                }
            }
        })
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
