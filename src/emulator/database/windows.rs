//! The maintenance windows of one database: announcements sent to its
//! connections, the starts that stay open for connections that opt in later,
//! and the completion each node's proxy retains.

use std::sync::Arc;

use tokio::time::Instant;

use super::{Announcement, Control, DbShared, Node};
use crate::notification::{EndpointType, Notification};

/// An announcement still open for connections that opt in later.
pub(super) struct Window {
    announcement: Arc<Announcement>,
    /// `None`: every node.
    node: Option<Node>,
}

impl DbShared {
    /// Sends `a` to every connection (on `node` only, when given). Start
    /// announcements stay open for connections that opt in later.
    pub fn announce(&self, a: Announcement, node: Option<Node>) -> Arc<Announcement> {
        let a = Arc::new(a);
        if !matches!(
            *a,
            Announcement::Done(_) | Announcement::Raw(_) | Announcement::SlotsMoved { .. }
        ) {
            self.windows.lock().unwrap().push(Window {
                announcement: a.clone(),
                node,
            });
        }
        self.deliver(&a, node);
        a
    }

    /// Sends `a` to every connection (on `node` only, when given), without
    /// opening a window: a re-send.
    pub fn deliver(&self, a: &Arc<Announcement>, node: Option<Node>) {
        let mut reached = 0;
        for c in self.conns.lock().unwrap().values() {
            if node.is_none_or(|n| n == c.node)
                && c.control.send(Control::Announce(a.clone())).is_ok()
            {
                reached += 1;
            }
        }
        let what = match &**a {
            Announcement::Raw(b) => format!("raw push {:?}", String::from_utf8_lossy(b)),
            typed => typed
                .render(
                    EndpointType::InternalIp,
                    &self.naming,
                    self.port,
                    Instant::now(),
                )
                .map(|n| n.to_string())
                .unwrap_or_default(),
        };
        tracing::info!(
            bdb_id = self.id,
            node = node.map(|n| n.index),
            connections = reached,
            "announced {what}"
        );
    }

    /// Closes the window opened by the start with `seq`.
    pub fn close_window(&self, seq: i64) {
        self.windows
            .lock()
            .unwrap()
            .retain(|w| w.announcement.seq() != Some(seq));
    }

    /// Closes the window of `seq` and sends its completion to every connection.
    /// Each node whose proxy serves the database now sent it, and retains it as
    /// its last completion.
    pub fn complete(&self, seq: i64, completion: Notification) {
        self.close_window(seq);
        let done = Arc::new(Announcement::Done(completion));
        {
            let mut last = self.last_completion.lock().unwrap();
            for n in self.serving.lock().unwrap().iter() {
                last.insert(*n, done.clone());
            }
        }
        self.deliver(&done, None);
    }

    /// The endpoint left `node`: its proxy there forgets the completion it
    /// retained (when the endpoint comes back, it is a new one).
    pub fn forget_completion(&self, node: Node) {
        self.last_completion.lock().unwrap().remove(&node.index);
    }

    /// What a connection on `node` is sent when it opts in: the last completion
    /// that node's proxy sent (when replay is on), then every start announcement
    /// still open for it. A connection that arrives on a node through a handoff
    /// is not sent a completion that another node's proxy sent.
    ///
    /// A connection made through the public address during a MOVING window
    /// gets that MOVING when it asked for an address (`internal-ip`,
    /// `external-ip`): the public address stands for the one the database's
    /// name led to before the move, the node going away. One that asked for a
    /// host name or `none` came in through the name, which already leads to
    /// the node MOVING points to: it is where MOVING would send it, so it is
    /// sent nothing (a real cluster sends MOVING only to connections on the
    /// node that is going away; sent to the connection a handoff opens, a
    /// client that follows every MOVING would hand off again and again).
    pub fn on_opt_in(
        &self,
        node: Node,
        public: bool,
        asked: EndpointType,
        now: Instant,
    ) -> Vec<Arc<Announcement>> {
        let mut out = Vec::new();
        if self.replay_completion {
            out.extend(
                self.last_completion
                    .lock()
                    .unwrap()
                    .get(&node.index)
                    .cloned(),
            );
        }
        let mut windows = self.windows.lock().unwrap();
        windows.retain(|w| match &*w.announcement {
            Announcement::Moving { deadline, .. } => *deadline > now,
            _ => true,
        });
        out.extend(
            windows
                .iter()
                .filter(|w| {
                    w.node.is_none_or(|n| n == node)
                        || (public && w.announcement.is_moving() && arrives_by_address(asked))
                })
                .map(|w| w.announcement.clone()),
        );
        out
    }
}

/// Whether a connection that asked MOVING in form `asked` dialled an address
/// rather than a name: the only connections on the public address a MOVING
/// can send elsewhere.
fn arrives_by_address(asked: EndpointType) -> bool {
    matches!(asked, EndpointType::InternalIp | EndpointType::ExternalIp)
}
