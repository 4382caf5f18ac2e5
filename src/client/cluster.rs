//! The cluster client: one maintenance-aware connection per node of an OSS
//! Cluster API database, requests routed by hash slot, `MOVED` and `ASK`
//! followed, and the slot map kept by the cluster's own word.
//!
//! Each node connection is a [`ManagedConnection`] pinned to its node: it
//! opts in, relaxes on SMIGRATING and reports SMIGRATED here. SMIGRATED moves
//! the slots it names in the slot map, once per move whichever node
//! announced it, and ends every window an SMIGRATING of those slots opened,
//! on whichever connection it opened. redis-rs's own cluster connection
//! cannot carry this: it has no hook to opt each node connection in or to
//! relax one node's timeout, and it hands pushes over without their node.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use redis::Value;

use super::connection::ManagedConnection;
use super::pubsub::{ChannelKind, Message};
use super::slot_events::SlotEvents;
use super::slot_table::SlotTable;
use super::{ClientError, ClientShared, EventKind};
use crate::notification::{parse_slots, Endpoint, SlotMove};
use crate::slots::slot;
use crate::timing::{CLUSTER_MAX_REDIRECTS, CLUSTER_TRYAGAIN_PAUSE};

/// A window an SMIGRATING opened on one node connection.
struct OpenMove {
    conn: u64,
    seq: i64,
    slots: Vec<(u16, u16)>,
}

/// A cluster client's nodes, slot map and maintenance state.
pub struct Cluster {
    me: std::sync::Weak<Cluster>,
    shared: Arc<ClientShared>,
    table: Mutex<SlotTable>,
    nodes: Mutex<BTreeMap<String, Arc<ManagedConnection>>>,
    /// Serialises opening a node connection.
    opening: tokio::sync::Mutex<()>,
    /// Moves applied, as (source, target, slots).
    applied: Mutex<HashSet<(String, String, String)>>,
    open: Mutex<Vec<OpenMove>>,
    refreshing: tokio::sync::Mutex<()>,
    /// Every connection that ever held a subscription (their messages).
    subscribers: Mutex<Vec<Arc<ManagedConnection>>>,
}

/// `MOVED` or `ASK`, its slot and where to.
fn redirect(message: &str) -> Option<(&str, u16, Endpoint)> {
    let mut parts = message.split_whitespace();
    let kind = parts.next().filter(|k| *k == "MOVED" || *k == "ASK")?;
    let slot = parts.next()?.parse().ok()?;
    let to = Endpoint::parse(parts.next()?).ok().flatten()?;
    Some((kind, slot, to))
}

/// The key a command is routed by: its first key, `None` for commands that
/// name none (they go to any node).
fn key_of(cmd: &redis::Cmd) -> Option<Vec<u8>> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let at = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let n: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            (n > 0).then_some(3)?
        }
        b"XREAD" | b"XREADGROUP" => {
            args.iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?
                + 1
        }
        b"PING" | b"ECHO" | b"INFO" | b"PUBLISH" | b"SUBSCRIBE" | b"PSUBSCRIBE"
        | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE" | b"CLUSTER" | b"CLIENT" | b"HELLO" | b"AUTH"
        | b"SELECT" | b"COMMAND" | b"DBSIZE" | b"FLUSHALL" | b"FLUSHDB" | b"TIME" | b"CONFIG"
        | b"SCRIPT" | b"FUNCTION" | b"MULTI" | b"EXEC" | b"DISCARD" | b"WAIT" | b"KEYS"
        | b"SCAN" | b"RANDOMKEY" | b"ROLE" | b"MEMORY" | b"SLOWLOG" | b"QUIT" | b"RESET" => {
            return None
        }
        _ => 1,
    };
    args.get(at).map(|k| k.to_vec())
}

impl Cluster {
    /// Connects to the first seed that answers, reads the slot map there
    /// and opens a connection to every node in it.
    pub(crate) async fn connect(
        shared: Arc<ClientShared>,
        seeds: Vec<Endpoint>,
    ) -> Result<Arc<Cluster>, ClientError> {
        let mut last = None;
        for seed in seeds {
            let conn = match ManagedConnection::open_at(shared.clone(), seed.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let table = match Self::read_slots(&conn).await {
                Ok(t) => t,
                Err(e) => {
                    conn.close().await;
                    last = Some(e);
                    continue;
                }
            };
            let cluster = Arc::new_cyclic(|me| Cluster {
                me: me.clone(),
                shared: shared.clone(),
                table: Mutex::new(table.clone()),
                nodes: Mutex::new(BTreeMap::new()),
                opening: tokio::sync::Mutex::new(()),
                applied: Mutex::new(HashSet::new()),
                open: Mutex::new(Vec::new()),
                refreshing: tokio::sync::Mutex::new(()),
                subscribers: Mutex::new(Vec::new()),
            });
            let events: std::sync::Weak<dyn SlotEvents> = Arc::downgrade(&cluster) as _;
            let _ = shared.cluster.set(events);
            match table.nodes().contains(&seed) {
                true => {
                    cluster.nodes.lock().unwrap().insert(seed.to_string(), conn);
                }
                false => conn.close().await,
            }
            for node in table.nodes() {
                if let Err(e) = cluster.node(&node).await {
                    cluster.close().await;
                    return Err(e);
                }
            }
            return Ok(cluster);
        }
        Err(last.unwrap_or_else(|| ClientError::Options("the database lists no endpoint".into())))
    }

    async fn read_slots(conn: &ManagedConnection) -> Result<SlotTable, ClientError> {
        let reply = conn.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        SlotTable::from_cluster_slots(&reply).map_err(ClientError::Server)
    }

    /// The connection to `node`, opened when there is none yet.
    async fn node(&self, node: &Endpoint) -> Result<Arc<ManagedConnection>, ClientError> {
        let key = node.to_string();
        if let Some(c) = self.nodes.lock().unwrap().get(&key) {
            return Ok(c.clone());
        }
        let _one = self.opening.lock().await;
        if let Some(c) = self.nodes.lock().unwrap().get(&key) {
            return Ok(c.clone());
        }
        let c = ManagedConnection::open_at(self.shared.clone(), node.clone()).await?;
        self.nodes.lock().unwrap().insert(key, c.clone());
        Ok(c)
    }

    /// Its node connections.
    pub fn connections(&self) -> Vec<Arc<ManagedConnection>> {
        self.nodes.lock().unwrap().values().cloned().collect()
    }

    /// Its slot map, as runs of `(first, last, "host:port")`.
    pub fn slot_map(&self) -> Vec<(u16, u16, String)> {
        self.table.lock().unwrap().ranges()
    }

    /// Where a request for `slot` goes (any node for none).
    fn route(&self, slot: Option<u16>) -> Option<Endpoint> {
        let t = self.table.lock().unwrap();
        match slot {
            Some(s) => t.get(s).cloned(),
            None => None,
        }
        .or_else(|| t.nodes().into_iter().next())
    }

    /// Runs `cmd` on the node of its key's slot, following `MOVED` and
    /// `ASK`, and once more after the slot map is read again when the
    /// node's connection failed.
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, ClientError> {
        let slot = key_of(cmd).map(|k| slot(&k));
        let mut target = self.route(slot);
        let mut asking = false;
        let mut retried = false;
        for _ in 0..CLUSTER_MAX_REDIRECTS {
            let Some(to) = target.clone() else {
                return Err(ClientError::Connection {
                    context: "the cluster's slot map names no node".into(),
                    cause: None,
                });
            };
            let conn = self.node(&to).await?;
            let result = match std::mem::take(&mut asking) {
                true => conn.query_asking(cmd).await,
                false => conn.query(cmd).await,
            };
            match result {
                Err(ClientError::Server(message)) => {
                    if let Some((kind, s, next)) = redirect(&message) {
                        self.shared.emit(
                            conn.id,
                            EventKind::Redirected {
                                kind: kind.to_string(),
                                slot: s,
                                endpoint: next.to_string(),
                            },
                        );
                        match kind {
                            "MOVED" => {
                                self.table.lock().unwrap().set(&[(s, s)], &next);
                                if self.shared.options.refresh_on_moved {
                                    self.refresh_soon();
                                }
                            }
                            _ => asking = true,
                        }
                        target = Some(next);
                        continue;
                    }
                    if message.starts_with("TRYAGAIN") {
                        tokio::time::sleep(CLUSTER_TRYAGAIN_PAUSE).await;
                        continue;
                    }
                    return Err(ClientError::Server(message));
                }
                Err(e @ (ClientError::Connection { .. } | ClientError::Handshake { .. }))
                    if !retried =>
                {
                    retried = true;
                    tracing::debug!(client = %self.shared.name, "{to}: {e}; reading the slot map again");
                    self.refresh().await;
                    target = self.route(slot);
                }
                other => return other,
            }
        }
        Err(ClientError::Server(format!(
            "redirected {CLUSTER_MAX_REDIRECTS} times in a row; the cluster's nodes disagree about the slot map"
        )))
    }

    /// Reads the slot map again in the background (once at a time).
    fn refresh_soon(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move { me.refresh().await });
    }

    /// Reads the slot map again from a node that answers.
    async fn refresh(&self) {
        let Ok(_one) = self.refreshing.try_lock() else {
            return;
        };
        for conn in self.connections() {
            if let Ok(t) = Self::read_slots(&conn).await {
                *self.table.lock().unwrap() = t;
                self.reconcile().await;
                return;
            }
        }
    }

    /// Connections to every node of the map; those to nodes that left it go.
    async fn reconcile(&self) {
        let nodes = self.table.lock().unwrap().nodes();
        let keep: HashSet<String> = nodes.iter().map(Endpoint::to_string).collect();
        let gone: Vec<Arc<ManagedConnection>> = {
            let mut n = self.nodes.lock().unwrap();
            let leaving: Vec<String> = n.keys().filter(|k| !keep.contains(*k)).cloned().collect();
            leaving.iter().filter_map(|k| n.remove(k)).collect()
        };
        for c in gone {
            // Its subscriptions go to the nodes that serve their slots now,
            // before it closes: a node that left the map may never say so
            // with a sunsubscribe (its proxy kept the subscription alive).
            let held = c.subscriptions().held();
            for (kind, channel) in &held {
                // Held here until held there: a message on its way to the old
                // connection meanwhile is still taken.
                self.subscribe_again(c.id, *kind, channel, "its node left the slot map")
                    .await;
                c.subscriptions().remove(*kind, channel);
            }
            // A subscriber's connection goes at once: left open by handles
            // still held, it would go on hearing what it no longer holds.
            match held.is_empty() {
                true => c.close().await,
                false => c.close_now().await,
            }
        }
        for node in nodes {
            if let Err(e) = self.node(&node).await {
                tracing::warn!(client = %self.shared.name, "connecting to node {node}: {e}");
            }
        }
    }

    /// SMIGRATING on connection `conn`: its window is remembered with the
    /// slots it is about.
    pub(crate) fn on_smigrating(&self, conn: u64, seq: i64, slots: &str) {
        let slots = parse_slots(slots).unwrap_or_default();
        self.open
            .lock()
            .unwrap()
            .push(OpenMove { conn, seq, slots });
    }

    /// SMIGRATED on connection `conn`: the moves not applied yet go into the
    /// slot map, and every window an SMIGRATING of those slots opened ends.
    pub(crate) fn on_smigrated(&self, conn: u64, seq: i64, moves: &[SlotMove]) {
        let fresh: Vec<&SlotMove> = {
            let mut applied = self.applied.lock().unwrap();
            moves
                .iter()
                .filter(|m| {
                    applied.insert((m.source.to_string(), m.target.to_string(), m.slots.clone()))
                })
                .collect()
        };
        let moved: Vec<(u16, u16)> = moves
            .iter()
            .flat_map(|m| parse_slots(&m.slots).unwrap_or_default())
            .collect();
        if fresh.is_empty() {
            self.shared.emit(conn, EventKind::SlotMovesKnown { seq });
        } else {
            let mut changed = 0;
            {
                let mut t = self.table.lock().unwrap();
                for m in &fresh {
                    changed += t.set(&parse_slots(&m.slots).unwrap_or_default(), &m.target);
                }
            }
            self.shared.emit(
                conn,
                EventKind::SlotMapUpdated {
                    seq,
                    moves: fresh.len(),
                    slots: changed,
                },
            );
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move { me.reconcile().await });
            }
        }
        let overlaps = |a: &[(u16, u16)]| {
            a.iter()
                .any(|&(x, y)| moved.iter().any(|&(p, q)| x <= q && p <= y))
        };
        let ended: Vec<OpenMove> = {
            let mut open = self.open.lock().unwrap();
            let (ended, kept) = std::mem::take(&mut *open)
                .into_iter()
                .partition(|o| overlaps(&o.slots));
            *open = kept;
            ended
        };
        let conns = self.connections();
        for o in ended {
            if let Some(c) = conns.iter().find(|c| c.id == o.conn) {
                c.end_smigrating(o.seq);
            }
        }
    }

    /// Subscribes to `channel` on the node that serves it (a sharded
    /// channel: the node of its slot, `MOVED` followed; a channel: any node);
    /// returns the connection that holds it.
    pub async fn subscribe(
        &self,
        kind: ChannelKind,
        channel: &str,
    ) -> Result<Arc<ManagedConnection>, ClientError> {
        let at = match kind {
            ChannelKind::Sharded => Some(slot(channel.as_bytes())),
            ChannelKind::Channel => None,
        };
        let mut target = self.route(at);
        for _ in 0..CLUSTER_MAX_REDIRECTS {
            let node = target.clone().ok_or_else(|| ClientError::Connection {
                context: "the cluster's slot map names no node".into(),
                cause: None,
            })?;
            let conn = self.node(&node).await?;
            match conn.subscribe(kind, channel).await {
                Ok(()) => {
                    let mut subs = self.subscribers.lock().unwrap();
                    if !subs.iter().any(|c| c.id == conn.id) {
                        subs.push(conn.clone());
                    }
                    return Ok(conn);
                }
                Err(ClientError::Server(message)) => {
                    conn.subscriptions().remove(kind, channel);
                    let Some((_, s, next)) = redirect(&message) else {
                        return Err(ClientError::Server(message));
                    };
                    self.table.lock().unwrap().set(&[(s, s)], &next);
                    target = Some(next);
                }
                Err(e) => {
                    conn.subscriptions().remove(kind, channel);
                    return Err(e);
                }
            }
        }
        Err(ClientError::Server(format!(
            "subscribing to {channel:?}: redirected {CLUSTER_MAX_REDIRECTS} times in a row"
        )))
    }

    /// A node told connection `conn` it no longer serves sharded `channel`
    /// (its slot moved): subscribe where it is served now.
    pub(crate) fn on_unsubscribed(&self, conn: u64, channel: String) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            me.subscribe_again(conn, ChannelKind::Sharded, &channel, "its slot moved")
                .await
        });
    }

    /// Subscribes to `channel` again, where the slot map says it is served,
    /// because connection `conn` no longer holds it (`why`).
    /// Not with `resubscribe` off (a negative control's client).
    async fn subscribe_again(&self, conn: u64, kind: ChannelKind, channel: &str, why: &str) {
        if !self.shared.options.resubscribe {
            tracing::info!(
                client = %self.shared.name,
                conn,
                "not subscribing again to {channel:?} after {why}: resubscribe is off"
            );
            return;
        }
        match self.subscribe(kind, channel).await {
            Ok(c) => self.shared.emit(
                c.id,
                EventKind::Resubscribed {
                    endpoint: c.endpoint().map(|e| e.to_string()).unwrap_or_default(),
                    channels: 1,
                },
            ),
            Err(e) => tracing::warn!(
                client = %self.shared.name,
                conn,
                "subscribing again to {channel:?} after {why}: {e}"
            ),
        }
    }

    /// Every message its subscriptions received, on any connection, in
    /// arrival order.
    pub fn received(&self) -> Vec<Message> {
        let mut all: Vec<Message> = self
            .subscribers
            .lock()
            .unwrap()
            .iter()
            .flat_map(|c| c.subscriptions().received())
            .collect();
        all.sort_by_key(|m| m.at);
        all
    }

    /// Closes every node connection.
    pub async fn close(&self) {
        let conns = std::mem::take(&mut *self.nodes.lock().unwrap());
        for c in conns.into_values() {
            c.close().await;
        }
    }
}

impl SlotEvents for Cluster {
    fn on_smigrating(&self, conn: u64, seq: i64, slots: &str) {
        Cluster::on_smigrating(self, conn, seq, slots)
    }

    fn on_smigrated(&self, conn: u64, seq: i64, moves: &[SlotMove]) {
        Cluster::on_smigrated(self, conn, seq, moves)
    }

    fn on_unsubscribed(&self, conn: u64, channel: String) {
        Cluster::on_unsubscribed(self, conn, channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_routed_by_their_first_key() {
        let k = |c: &redis::Cmd| key_of(c).map(|k| String::from_utf8(k).unwrap());
        assert_eq!(k(redis::cmd("SET").arg("a").arg(1)), Some("a".into()));
        assert_eq!(k(&redis::cmd("PING")), None);
        assert_eq!(
            k(redis::cmd("EVAL").arg("s").arg(1).arg("b")),
            Some("b".into())
        );
        assert_eq!(k(redis::cmd("EVAL").arg("s").arg(0)), None);
        assert_eq!(
            k(redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg("s")
                .arg("0")),
            Some("s".into())
        );
        assert_eq!(
            k(redis::cmd("SPUBLISH").arg("ch").arg("m")),
            Some("ch".into())
        );
    }

    #[test]
    fn redirects_are_read_from_the_error_text() {
        let (kind, slot, to) = redirect("MOVED 5000 127.0.2.1:12000").unwrap();
        assert_eq!(
            (kind, slot, to.to_string().as_str()),
            ("MOVED", 5000, "127.0.2.1:12000")
        );
        assert_eq!(redirect("ASK 1 127.0.3.1:1").unwrap().0, "ASK");
        assert!(redirect("ERR no").is_none());
    }
}
