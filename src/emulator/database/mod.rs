//! What the proxies of one database share: the route to the primary shard (and the
//! gate that holds traffic during a switch-over), the registry of client
//! connections, the open maintenance windows (in [`windows`]) and the sequence counter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, RwLock};
use tokio::time::Instant;

pub use super::announcement::Announcement;
pub use super::cluster_settings::ClusterSettings;
use super::ledger::Ledger;
use super::naming::Naming;
pub use super::node::Node;
use super::slot_map::SlotMap;
use crate::notification::EndpointType;
use crate::server_record::CloseCause;

mod windows;
use windows::Window;

/// Where the proxies send traffic. Held for reading by every in-flight command;
/// a switch-over takes it for writing, which waits for in-flight replies and holds
/// new commands until the new route is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The primary shard of each shard set (of each slot range, in slot
    /// order, behind one endpoint).
    pub upstreams: Vec<SocketAddr>,
    /// An OSS Cluster API database: which set owns each slot and on which
    /// node each set's primary lives (each node's proxy fronts its own).
    pub cluster: Option<SlotMap>,
}

/// A message to one proxied connection.
#[derive(Debug)]
pub enum Control {
    /// Deliver this if the connection opted in.
    Announce(Arc<Announcement>),
    /// Close the connection now (the server's record says why).
    Close,
    /// Close the connection at its next pause after a reply: once a reply
    /// was written and no other is owed nor a command half read (or, for a
    /// connection that sends nothing or never pauses, at
    /// [`crate::timing::DRAIN_WITHIN`]).
    Drain,
    /// Shard set `shard` is served at `to` from now on: subscribe there to
    /// what the connection is subscribed to on its old primary, then say so.
    Resubscribe {
        /// The shard set's index.
        shard: usize,
        /// Its new primary.
        to: SocketAddr,
        /// Answered once done (or given up).
        done: tokio::sync::oneshot::Sender<()>,
    },
}

struct Registered {
    node: Node,
    control: mpsc::UnboundedSender<Control>,
    /// The MOVING form the connection asked for (`None`: not opted in).
    asked: Option<EndpointType>,
    /// Subscribed to some pub/sub channel.
    subscribed: bool,
}

/// State shared by all proxies of one database.
pub struct DbShared {
    /// Database id.
    pub id: u64,
    /// Database name.
    pub name: String,
    /// Port on every node and on the public address.
    pub port: u16,
    /// Route to the primary shards, and the switch-over gate.
    pub route: Arc<RwLock<Route>>,
    /// Which arguments are keys, for a database of several shards (`None`
    /// with one shard: every command goes to it).
    pub key_specs: Option<Arc<super::keys::KeySpecs>>,
    active_node: AtomicUsize,
    next_conn: AtomicU64,
    accepted: AtomicU64,
    next_seq: Mutex<i64>,
    conns: Mutex<HashMap<u64, Registered>>,
    windows: Mutex<Vec<Window>>,
    /// The last completion each node's proxy sent, by node index.
    last_completion: Mutex<HashMap<usize, Arc<Announcement>>>,
    /// Nodes whose proxy serves this database now.
    serving: Mutex<Vec<usize>>,
    /// The node of each primary shard (OSS Cluster API: a shard's redirect
    /// names its node's proxy instead).
    shard_nodes: Mutex<HashMap<SocketAddr, Node>>,
    latency: Mutex<Vec<Latency>>,
    /// Some latency may be in force (read on every reply, without the lock).
    latency_on: std::sync::atomic::AtomicBool,
    /// Send the last completion a node's proxy sent to connections that opt in
    /// on that node later.
    pub replay_completion: bool,
    /// The most client connections the database serves at once (0: no limit);
    /// past it a new connection is told `-ERR max number of clients reached`
    /// and closed.
    pub max_connections: usize,
    /// How the database's endpoints are named.
    pub naming: Naming,
    /// Settings of the whole cluster.
    pub cluster: Arc<ClusterSettings>,
    /// An OSS Cluster API database: every node that holds a primary fronts it.
    pub oss_cluster: bool,
    /// Its endpoints name the nodes' external IPs.
    pub external_ips: bool,
    /// The server's record: every client connection, every endpoint move.
    pub ledger: Ledger,
    /// The discovery service: told when the endpoint moves.
    pub discovery: Arc<super::discovery::Hub>,
}

/// Latency injected on the replies of one node (or of every node).
struct Latency {
    node: Option<Node>,
    /// `None`: held until `until` (a network failure), whenever written.
    delay: Option<std::time::Duration>,
    until: Instant,
}

impl DbShared {
    /// State for a new database whose endpoint lives on `node`.
    pub fn new(id: u64, name: String, port: u16, primaries: Vec<SocketAddr>, node: Node) -> Self {
        DbShared {
            id,
            name,
            port,
            route: Arc::new(RwLock::new(Route {
                upstreams: primaries,
                cluster: None,
            })),
            key_specs: None,
            active_node: AtomicUsize::new(node.index),
            next_conn: AtomicU64::new(1),
            accepted: AtomicU64::new(0),
            next_seq: Mutex::new(1),
            conns: Mutex::new(HashMap::new()),
            windows: Mutex::new(Vec::new()),
            last_completion: Mutex::new(HashMap::new()),
            serving: Mutex::new(Vec::new()),
            shard_nodes: Mutex::new(HashMap::new()),
            latency: Mutex::new(Vec::new()),
            latency_on: std::sync::atomic::AtomicBool::new(false),
            replay_completion: true,
            max_connections: 0,
            naming: Naming::default(),
            cluster: Arc::new(ClusterSettings::default()),
            oss_cluster: false,
            external_ips: false,
            ledger: Ledger::default(),
            discovery: Arc::default(),
        }
    }

    /// The nodes whose proxy serves this database now, in index order.
    pub fn serving_nodes(&self) -> Vec<Node> {
        let mut v: Vec<Node> = self
            .serving
            .lock()
            .unwrap()
            .iter()
            .map(|&index| Node { index })
            .collect();
        v.sort_by_key(|n| n.index);
        v
    }

    /// Whether the proxy on `node` serves this database now.
    pub fn is_serving(&self, node: Node) -> bool {
        self.serving.lock().unwrap().contains(&node.index)
    }

    /// Records that the primary shard at `addr` lives on `node`.
    pub fn set_shard_node(&self, addr: SocketAddr, node: Node) {
        self.shard_nodes.lock().unwrap().insert(addr, node);
    }

    /// The node of the primary shard at `addr`.
    pub fn shard_node(&self, addr: SocketAddr) -> Option<Node> {
        self.shard_nodes.lock().unwrap().get(&addr).copied()
    }

    /// The address form of an OSS Cluster API database's topology (`CLUSTER
    /// SLOTS`, redirects, SMIGRATED): its `oss_cluster_api_preferred_ip_type`.
    pub fn cluster_form(&self) -> EndpointType {
        match self.external_ips {
            true => EndpointType::ExternalIp,
            false => EndpointType::InternalIp,
        }
    }

    /// Records whether the proxy on `node` serves this database.
    pub fn set_serving(&self, node: Node, on: bool) {
        let mut s = self.serving.lock().unwrap();
        s.retain(|n| *n != node.index);
        if on {
            s.push(node.index);
        }
    }

    /// Delays what the proxies on `node` (every node when `None`) write to
    /// clients by `delay`, until `until`.
    pub fn add_latency(&self, node: Option<Node>, delay: std::time::Duration, until: Instant) {
        let mut l = self.latency.lock().unwrap();
        l.push(Latency {
            node,
            delay: Some(delay),
            until,
        });
        // Under the lock, as `latency` clears it.
        self.latency_on.store(true, Ordering::Relaxed);
    }

    /// Holds what the proxies on `node` (every node when `None`) write to
    /// clients until `until`: a network failure, as clients see it.
    pub fn add_failure(&self, node: Option<Node>, until: Instant) {
        let mut l = self.latency.lock().unwrap();
        l.push(Latency {
            node,
            delay: None,
            until,
        });
        self.latency_on.store(true, Ordering::Relaxed);
    }

    /// The delay injected on `node` now, if any (the largest one in force).
    pub fn latency(&self, node: Node) -> Option<std::time::Duration> {
        if !self.latency_on.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        let mut l = self.latency.lock().unwrap();
        l.retain(|l| l.until > now);
        if l.is_empty() {
            self.latency_on.store(false, Ordering::Relaxed);
        }
        l.iter()
            .filter(|l| l.node.is_none_or(|n| n == node))
            .map(|l| l.delay.unwrap_or(l.until - now))
            .max()
    }

    /// The node that holds the endpoint now (where the public address routes).
    pub fn active_node(&self) -> Node {
        Node {
            index: self.active_node.load(Ordering::SeqCst),
        }
    }

    /// Routes the public address to `node`.
    /// Routes the public address to `node`; Sentinel clients of the
    /// discovery service hear of the move.
    pub fn set_active_node(&self, node: Node) {
        let from = self.active_node.swap(node.index, Ordering::SeqCst);
        if from != node.index {
            self.discovery.publish(super::discovery::Switch {
                name: self.name.clone(),
                port: self.port,
                from: Node { index: from },
                to: node,
            });
        }
    }

    /// Takes the seq for a new event: N for its start, N+1 reserved for its completion.
    pub fn take_seq(&self) -> i64 {
        let mut next = self.next_seq.lock().unwrap();
        let seq = *next;
        *next += 2;
        seq
    }

    /// Registers a connection served on `node`; returns its id.
    /// How many connections the proxies have accepted so far (every node, the
    /// public address included; TLS handshakes that failed included).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Counts an accepted connection.
    pub fn accepted_one(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }

    /// Registers a new connection served on `node`; `Err` with its id when
    /// the database already serves [`DbShared::max_connections`].
    pub fn register(
        &self,
        node: Node,
        control: mpsc::UnboundedSender<Control>,
    ) -> Result<u64, u64> {
        let id = self.next_conn.fetch_add(1, Ordering::SeqCst);
        let mut conns = self.conns.lock().unwrap();
        if self.max_connections > 0 && conns.len() >= self.max_connections {
            return Err(id);
        }
        conns.insert(
            id,
            Registered {
                node,
                control,
                asked: None,
                subscribed: false,
            },
        );
        Ok(id)
    }

    /// Records the MOVING form connection `id` asked for.
    pub fn set_asked(&self, id: u64, ty: Option<EndpointType>) {
        if let Some(c) = self.conns.lock().unwrap().get_mut(&id) {
            c.asked = ty;
        }
    }

    /// Records whether connection `id` holds pub/sub subscriptions.
    pub fn set_subscribed(&self, id: u64, subscribed: bool) {
        if let Some(c) = self.conns.lock().unwrap().get_mut(&id) {
            c.subscribed = subscribed;
        }
    }

    /// Tells every subscribed connection that shard set `shard` is served at
    /// `to` now, and waits (at most `within`) until each has subscribed there:
    /// called while the switch-over still holds the traffic, no message
    /// published after it is lost.
    pub async fn move_subscriptions(
        &self,
        shard: usize,
        to: SocketAddr,
        within: std::time::Duration,
    ) {
        let waits: Vec<_> = self
            .conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.subscribed)
            .filter_map(|c| {
                let (done, wait) = tokio::sync::oneshot::channel();
                c.control
                    .send(Control::Resubscribe { shard, to, done })
                    .is_ok()
                    .then_some(wait)
            })
            .collect();
        let n = waits.len();
        if tokio::time::timeout(within, futures::future::join_all(waits))
            .await
            .is_err()
        {
            tracing::warn!(
                bdb_id = self.id,
                "{n} subscribed connection(s) did not all move to {to} within {within:?}"
            );
        }
    }

    /// The MOVING forms the connections opted in ask for, one per connection.
    pub fn asked_forms(&self) -> Vec<EndpointType> {
        self.conns
            .lock()
            .unwrap()
            .values()
            .filter_map(|c| c.asked)
            .collect()
    }

    /// Forgets a connection.
    pub fn deregister(&self, id: u64) {
        self.conns.lock().unwrap().remove(&id);
    }

    /// The nodes some client connection is served on.
    pub fn node_indexes(&self) -> Vec<usize> {
        let mut nodes: Vec<usize> = self
            .conns
            .lock()
            .unwrap()
            .values()
            .map(|c| c.node.index)
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Number of client connections served on `node`.
    pub fn connections_on(&self, node: Node) -> usize {
        self.conns
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.node == node)
            .count()
    }

    /// Closes every connection served on `node`, because of `cause`;
    /// returns how many.
    pub fn close_node(&self, node: Node, cause: CloseCause) -> usize {
        let mut n = 0;
        for (id, c) in self.conns.lock().unwrap().iter() {
            if c.node == node {
                self.ledger.closing(*id, cause);
                n += usize::from(c.control.send(Control::Close).is_ok());
            }
        }
        n
    }

    /// Closes the connections on `node` at their next pause, because of
    /// `cause`.
    pub fn drain_node(&self, node: Node, cause: CloseCause) {
        for (id, c) in self.conns.lock().unwrap().iter() {
            if c.node == node {
                self.ledger.closing(*id, cause);
                let _ = c.control.send(Control::Drain);
            }
        }
    }

    /// Closes every connection, because of `cause`.
    pub fn close_all(&self, cause: CloseCause) {
        for (id, c) in self.conns.lock().unwrap().iter() {
            self.ledger.closing(*id, cause);
            let _ = c.control.send(Control::Close);
        }
    }
}
