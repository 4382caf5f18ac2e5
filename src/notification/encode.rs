//! Encoding: a notification as the RESP3 push frame servers send, its bytes,
//! and its elements as JSON.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp3::types::BytesFrame;

use super::Notification;

impl Notification {
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
