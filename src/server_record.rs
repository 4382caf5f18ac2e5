//! The server's record of a database: every client connection its proxies
//! accepted (on which node, under which client name, what they sent it, when
//! and why it closed) and every move of its endpoint. The emulator keeps it
//! and serves it on `GET /emulator/databases/{bdb_id}/record`; the suite's
//! claims read it, so that what a client did is judged by what the server saw,
//! never by what the client says of itself.
//!
//! Shared by both sides: the emulator writes these types, the suite reads them
//! back over HTTP (the same path in-process and against `maint-e2e emulator`).

use serde::{Deserialize, Serialize};

use crate::fault_injector::Timestamp;

/// Why a client connection closed, as the server saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseCause {
    /// The client closed it (end of stream, or `QUIT`).
    Client,
    /// The node lost the endpoint: its proxy closed what was left when the
    /// grace of the MOVING ended.
    GraceEnd,
    /// The proxy restarted (`dmc_restart`): dropped without notice.
    Restart,
    /// The endpoint's name was pointed at another node, unannounced
    /// (`dns_resolution_change`): the old node closed the connection at its
    /// next pause, once every reply it owed was written.
    AddressChange,
    /// A node left an OSS Cluster API database and its proxy stopped.
    NodeLeft,
    /// The node failed (`node_failure`): its proxies and shards went down.
    NodeFailure,
    /// The proxy stopped (`proxy_failure`).
    ProxyFailure,
    /// The database was deleted or the emulator stopped.
    Shutdown,
    /// The proxy ended it on an error (malformed input, a shard lost with
    /// replies owed); the detail says which.
    Error,
}

/// A push the server wrote to a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushSent {
    /// When it was written.
    pub at: Timestamp,
    /// Its name (`MOVING`, `SMIGRATED`, ...), `raw` for a push sent as is.
    pub kind: String,
    /// Its sequence number, when it has one.
    pub seq: Option<i64>,
    /// The endpoint a MOVING named (`host:port`), `None` for `null`.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// One client connection, from accept to close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// Its id among the database's connections (increasing).
    pub id: u64,
    /// The node whose proxy served it.
    pub node: usize,
    /// Accepted on the database's public address (the name every client is
    /// configured with), rather than on a node's own address.
    pub public: bool,
    /// The address it connected to (`127.0.2.1:12000`).
    pub local: String,
    /// The client's address.
    pub peer: String,
    /// The name it gave with `CLIENT SETNAME`, the last one.
    pub name: Option<String>,
    /// When it was accepted.
    pub accepted_at: Timestamp,
    /// The MOVING form it opted in for (`internal-ip`, ...), `None` when it
    /// never opted in (or opted out).
    pub maint: Option<String>,
    /// The TLS version it negotiated (`1.2`, `1.3`), `None` unencrypted.
    #[serde(default)]
    pub tls: Option<String>,
    /// When it closed, `None` while open.
    pub closed_at: Option<Timestamp>,
    /// Who closed it.
    pub closed_by: Option<CloseCause>,
    /// What the proxy said when it ended a connection on an error.
    #[serde(default)]
    pub close_detail: Option<String>,
    /// The pushes written to it (the first [`PUSHES_KEPT`]).
    pub pushes: Vec<PushSent>,
    /// How many pushes were written to it in all.
    pub pushes_total: u64,
    /// The redirects (`-MOVED`, `-ASK`) it was answered (the latest
    /// [`PUSHES_KEPT`]).
    #[serde(default)]
    pub redirects: Vec<Redirect>,
    /// How many redirects it was answered in all.
    #[serde(default)]
    pub redirects_total: u64,
}

/// A redirect the server answered a request with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Redirect {
    /// When.
    pub at: Timestamp,
    /// `MOVED` or `ASK`.
    pub kind: String,
    /// The slot.
    pub slot: u16,
}

/// Pushes kept per connection; more are counted only.
pub const PUSHES_KEPT: usize = 64;

/// Hash slots that moved between nodes (an OSS Cluster API database's
/// `slot_migrate`), as SMIGRATED announced them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotsMoved {
    /// When SMIGRATED went out.
    pub at: Timestamp,
    /// Each move: from which node to which, which slots.
    pub moves: Vec<SlotMoveRecord>,
}

/// One move of slots between two nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotMoveRecord {
    /// The node the slots left.
    pub from: usize,
    /// The node they moved to.
    pub to: usize,
    /// The slots, as SMIGRATED lists them (`"0-100,200"`).
    pub slots: String,
}

/// One `redis-server` process of the database, as the server runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Its address (`127.0.0.1:port`): the shard itself, not a proxy.
    pub addr: String,
    /// The node it lives on.
    pub node: usize,
    /// `primary` or `replica`.
    pub role: String,
}

/// A move of the database's endpoint from node to node (a rebind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointMove {
    /// The MOVING's sequence number.
    pub seq: i64,
    /// The node it left.
    pub from: usize,
    /// The node it moved to.
    pub to: usize,
    /// When the move began (MOVING went out, unless the move is unannounced).
    pub at: Timestamp,
    /// When the grace ends: the old node closes what is left on it.
    pub grace_end: Timestamp,
    /// Whether MOVING was sent at all.
    pub announced: bool,
}

/// A stretch in which the server held the database's requests: a shard set
/// switched over (failover, migration), new requests waiting for it and
/// those in flight finishing first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwitchOver {
    /// The shard set that switched.
    pub shard_set: usize,
    /// When the server began holding requests (it asked for them to drain).
    pub from: Timestamp,
    /// When requests flowed again, to the new primary.
    pub to: Timestamp,
}

/// The database's endpoint on one node, in every form MOVING can name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeEndpoints {
    /// The node.
    pub node: usize,
    /// `internal-ip`: `host:port`.
    pub internal_ip: String,
    /// `external-ip`.
    pub external_ip: String,
    /// `internal-fqdn`.
    pub internal_fqdn: String,
    /// `external-fqdn`.
    pub external_fqdn: String,
}

impl NodeEndpoints {
    /// The endpoint in the form `ty` names (`internal-ip`, ...); `None` for
    /// `none` or an unknown form.
    pub fn in_form(&self, ty: &str) -> Option<&str> {
        Some(match ty {
            "internal-ip" => &self.internal_ip,
            "external-ip" => &self.external_ip,
            "internal-fqdn" => &self.internal_fqdn,
            "external-fqdn" => &self.external_fqdn,
            _ => return None,
        })
    }
}

/// What `GET /emulator/databases/{bdb_id}/record` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatabaseRecord {
    /// The database.
    pub bdb_id: u64,
    /// The node that holds the endpoint now.
    pub endpoint_node: usize,
    /// Connections its proxies accepted in all, on every address, TLS
    /// handshakes that failed included (each one a connection attempt).
    pub accepted_total: u64,
    /// Its endpoint on every node of the cluster.
    pub nodes: Vec<NodeEndpoints>,
    /// The connections asked for (all, or those of one name), by id.
    pub connections: Vec<ConnectionRecord>,
    /// Every move of the endpoint, in order.
    pub endpoint_moves: Vec<EndpointMove>,
    /// Every slot migration that completed, in order.
    #[serde(default)]
    pub slot_moves: Vec<SlotsMoved>,
    /// Its shards' own processes, primaries first.
    #[serde(default)]
    pub shards: Vec<ShardRecord>,
    /// Every switch-over that held its requests, in order.
    #[serde(default)]
    pub switch_overs: Vec<SwitchOver>,
}

impl ConnectionRecord {
    /// Open at `t`: accepted before it and not closed by then.
    pub fn open_at(&self, t: Timestamp) -> bool {
        self.accepted_at <= t && self.closed_at.is_none_or(|c| c > t)
    }

    /// Open now.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }

    /// The pushes of kind `kind` written to it.
    pub fn pushes_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a PushSent> + 'a {
        self.pushes
            .iter()
            .filter(move |p| p.kind.eq_ignore_ascii_case(kind))
    }

    /// One line for a failure message.
    pub fn describe(&self) -> String {
        let closed = match (&self.closed_at, self.closed_by) {
            (Some(at), Some(by)) => format!(", closed at {at} by {}", by.as_str()),
            (Some(at), None) => format!(", closed at {at}"),
            _ => ", open".into(),
        };
        format!(
            "connection {} on node {} (via {}{}), accepted at {}{closed}, {} push(es)",
            self.id,
            self.node,
            self.local,
            if self.public {
                ", the public address"
            } else {
                ""
            },
            self.accepted_at,
            self.pushes_total
        )
    }
}

impl CloseCause {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Client => "client",
            CloseCause::GraceEnd => "grace_end",
            CloseCause::AddressChange => "address_change",
            CloseCause::Restart => "restart",
            CloseCause::NodeLeft => "node_left",
            CloseCause::NodeFailure => "node_failure",
            CloseCause::ProxyFailure => "proxy_failure",
            CloseCause::Shutdown => "shutdown",
            CloseCause::Error => "error",
        }
    }
}

impl DatabaseRecord {
    /// The endpoint on node `node`.
    pub fn node(&self, node: usize) -> Option<&NodeEndpoints> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// The connections named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ConnectionRecord> + 'a {
        self.connections
            .iter()
            .filter(move |c| c.name.as_deref() == Some(name))
    }
}

/// What a server holds of one connection's opt-in, as `CLIENT
/// MAINT_NOTIFICATIONS_INFO` answers it: the server's own word, on a real
/// cluster as on the emulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintInfo {
    /// `status` is `on`.
    pub on: bool,
    /// `moving-endpoint-type` of its `parameters`, when given.
    pub endpoint_type: Option<String>,
}

impl MaintInfo {
    /// Reads the reply: a map (a flat array of pairs over RESP2) of `status`
    /// and `parameters`. `Err` says what is wrong with it.
    pub fn from_reply(reply: &redis::Value) -> Result<MaintInfo, String> {
        let status = field(reply, "status")?
            .and_then(text)
            .ok_or_else(|| format!("no status in {reply:?}"))?;
        let endpoint_type = match field(reply, "parameters")? {
            Some(p) => field(p, "moving-endpoint-type")?.and_then(text),
            None => None,
        };
        match status.as_str() {
            "on" | "off" => Ok(MaintInfo {
                on: status == "on",
                endpoint_type,
            }),
            other => Err(format!("status {other:?} is neither on nor off")),
        }
    }
}

/// The value under `key` of a map reply (or a flat array of pairs).
fn field<'a>(reply: &'a redis::Value, key: &str) -> Result<Option<&'a redis::Value>, String> {
    use redis::Value;
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(a) if a.len() % 2 == 0 => a.chunks(2).map(|p| (&p[0], &p[1])).collect(),
        other => return Err(format!("expected a map, got {other:?}")),
    };
    Ok(pairs
        .into_iter()
        .find(|(k, _)| text(k).is_some_and(|k| k.eq_ignore_ascii_case(key)))
        .map(|(_, v)| v))
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) | redis::Value::VerbatimString { text: s, .. } => {
            Some(s.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod maint_info_tests {
    use super::MaintInfo;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_the_map_and_the_flat_form() {
        let on = Value::Map(vec![
            (bulk("status"), bulk("on")),
            (
                bulk("parameters"),
                Value::Map(vec![(bulk("moving-endpoint-type"), bulk("none"))]),
            ),
        ]);
        assert_eq!(
            MaintInfo::from_reply(&on).unwrap(),
            MaintInfo {
                on: true,
                endpoint_type: Some("none".into())
            }
        );
        let off = Value::Array(vec![
            bulk("status"),
            bulk("off"),
            bulk("parameters"),
            Value::Array(vec![]),
        ]);
        assert_eq!(
            MaintInfo::from_reply(&off).unwrap(),
            MaintInfo {
                on: false,
                endpoint_type: None
            }
        );
        assert!(MaintInfo::from_reply(&bulk("on")).is_err());
    }
}
