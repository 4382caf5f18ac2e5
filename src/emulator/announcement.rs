//! A notification a database announces, rendered per connection: in the
//! MOVING form the connection asked for, with the time left of its grace.

use tokio::time::Instant;

use super::naming::Naming;
use super::node::Node;
use crate::notification::{EndpointType, Notification};

/// A notification to deliver, rendered per connection.
#[derive(Clone, Debug)]
pub enum Announcement {
    /// MOVING to `target`; time left is computed from `deadline`.
    Moving {
        /// Event seq.
        seq: i64,
        /// When the old endpoint closes.
        deadline: Instant,
        /// Node the endpoint moves to.
        target: Node,
    },
    /// A start notification whose time left is computed from `deadline`.
    Start {
        /// The notification as first sent.
        notification: Notification,
        /// When the window is expected to end.
        deadline: Instant,
    },
    /// A completion.
    Done(Notification),
    /// SMIGRATED: slots moved from node to node, each node named in the form
    /// the connection asked for.
    SlotsMoved {
        /// Its own seq.
        seq: i64,
        /// Source node, target node, slot list.
        moves: Vec<(Node, Node, String)>,
        /// The address form of the database's topology
        /// (`oss_cluster_api_preferred_ip_type`): every connection gets the
        /// addresses `CLUSTER SLOTS` gives it, whatever MOVING form it asked for.
        form: EndpointType,
    },
    /// Push bytes sent as they are (an emulator fault: any frame at all).
    Raw(bytes::Bytes),
}

impl Announcement {
    /// The push bytes for a connection that asked for `ty`, at `now`.
    pub fn bytes(&self, ty: EndpointType, names: &Naming, port: u16, now: Instant) -> bytes::Bytes {
        match self {
            Announcement::Raw(b) => b.clone(),
            typed => typed
                .render(ty, names, port, now)
                .map(|n| n.to_resp3())
                .unwrap_or_default(),
        }
    }

    /// The notification for a connection that asked for `ty`, at `now`
    /// (`None` for a raw push).
    pub fn render(
        &self,
        ty: EndpointType,
        names: &Naming,
        port: u16,
        now: Instant,
    ) -> Option<Notification> {
        let left =
            |deadline: Instant| deadline.saturating_duration_since(now).as_secs_f64().ceil() as u64;
        Some(match self {
            Announcement::Moving {
                seq,
                deadline,
                target,
            } => Notification::Moving {
                seq: *seq,
                time_s: left(*deadline),
                endpoint: names.endpoint(*target, ty, port),
            },
            Announcement::Start {
                notification,
                deadline,
            } => notification.with_time_s(left(*deadline)),
            Announcement::Done(n) => n.clone(),
            Announcement::SlotsMoved { seq, moves, form } => {
                let at = |n: &Node| {
                    names
                        .endpoint(*n, *form, port)
                        .expect("a topology form has an address")
                };
                Notification::SMigrated {
                    seq: *seq,
                    moves: moves
                        .iter()
                        .map(|(from, to, slots)| crate::notification::SlotMove {
                            source: at(from),
                            target: at(to),
                            slots: slots.clone(),
                        })
                        .collect(),
                    rejected: Vec::new(),
                }
            }
            Announcement::Raw(_) => return None,
        })
    }

    pub(super) fn is_moving(&self) -> bool {
        match self {
            Announcement::Moving { .. } => true,
            Announcement::Start { notification, .. } => {
                matches!(notification, Notification::Moving { .. })
            }
            _ => false,
        }
    }

    pub(super) fn seq(&self) -> Option<i64> {
        match self {
            Announcement::Moving { seq, .. } => Some(*seq),
            Announcement::Start { notification, .. } => Some(notification.seq()),
            Announcement::Done(n) => Some(n.seq()),
            Announcement::SlotsMoved { seq, .. } => Some(*seq),
            Announcement::Raw(_) => None,
        }
    }
}
