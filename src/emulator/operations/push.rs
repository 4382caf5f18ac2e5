//! `send_push`: one push frame, built from JSON, to every opted-in
//! connection of a database, or of one of its nodes (to test how clients
//! take malformed or unknown notifications, or one node's word alone).

use serde_json::{json, Value};

use crate::emulator::database::Announcement;
use crate::emulator::{ActionError, Database, Node};

/// Sends the push `elements` make to every opted-in connection of `db` (on
/// `node` only, when given).
pub fn send(db: &Database, elements: &[Value], node: Option<Node>) -> Result<Value, ActionError> {
    let frame = push_frame(elements)?;
    db.shared.announce(Announcement::Raw(frame.clone()), node);
    Ok(json!({ "bytes": String::from_utf8_lossy(&frame), "node_id": node.map(|n| n.index) }))
}

/// Encodes JSON elements as one RESP3 push frame.
fn push_frame(elements: &[Value]) -> Result<bytes::Bytes, ActionError> {
    use redis_protocol::resp3::types::BytesFrame;
    fn element(v: &Value) -> Result<BytesFrame, ActionError> {
        Ok(match v {
            Value::String(s) => BytesFrame::BlobString {
                data: bytes::Bytes::copy_from_slice(s.as_bytes()),
                attributes: None,
            },
            Value::Number(n) if n.is_i64() => BytesFrame::Number {
                data: n.as_i64().unwrap(),
                attributes: None,
            },
            Value::Null => BytesFrame::Null,
            Value::Array(items) => BytesFrame::Array {
                data: items.iter().map(element).collect::<Result<_, _>>()?,
                attributes: None,
            },
            other => {
                return Err(ActionError::Invalid(format!(
                    "push elements are strings, integers, null or arrays; got {other}"
                )))
            }
        })
    }
    if !elements.first().is_some_and(Value::is_string) {
        return Err(ActionError::Invalid(
            "push must start with its name as a string, such as [\"MOVING\", 7, 15, null]".into(),
        ));
    }
    let frame = BytesFrame::Push {
        data: elements.iter().map(element).collect::<Result<_, _>>()?,
        attributes: None,
    };
    let mut buf = bytes::BytesMut::new();
    redis_protocol::resp3::encode::complete::extend_encode(&mut buf, &frame, false)
        .map_err(|e| ActionError::Invalid(format!("cannot encode the push: {e}")))?;
    Ok(buf.freeze())
}
