//! What the client reports: one event per notification, relax, un-relax, handoff
//! step and reconnect, with the connection id, seq, endpoint and time.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::notification::{EndpointType, Notification};

/// Whether a connection receives maintenance notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaintState {
    /// Opted in, MOVING in this form (`None`: the server chose).
    On(Option<EndpointType>),
    /// Not asked (mode disabled, or RESP2 in auto mode).
    Off,
    /// Asked and refused (auto mode keeps the connection).
    Refused(String),
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// A connection is ready (first connect, reconnect or handoff target).
    Connected {
        /// `host:port` dialled.
        endpoint: String,
        /// Notification state.
        maint: MaintState,
    },
    /// A maintenance notification arrived.
    Notification {
        /// What arrived.
        notification: Notification,
        /// Sent during the connection's set-up, before the reply to `CLIENT
        /// MAINT_NOTIFICATIONS`: a replay of an open window or of the last
        /// completion, not a new event.
        at_setup: bool,
    },
    /// A push named like a notification could not be parsed; it was dropped.
    MalformedPush {
        /// Push name.
        name: String,
        /// Why.
        error: String,
    },
    /// A push that is not a maintenance notification (a pub/sub message on a
    /// connection that is not subscribed, say): left alone, never taken for
    /// a reply.
    PushIgnored {
        /// Push name (`message`, `invalidate`, ...).
        name: String,
    },
    /// Timeouts were relaxed.
    Relaxed {
        /// The effective response timeout now (`None`: unbounded).
        timeout: Option<Duration>,
    },
    /// Timeouts came back to the configured ones.
    Unrelaxed {
        /// The effective response timeout now.
        timeout: Option<Duration>,
    },
    /// A handoff began.
    HandoffStarted {
        /// MOVING seq.
        seq: i64,
        /// Target.
        endpoint: String,
    },
    /// One attempt failed; more may follow.
    HandoffAttemptFailed {
        /// MOVING seq.
        seq: i64,
        /// Target.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The new connection is in use.
    HandoffSucceeded {
        /// MOVING seq.
        seq: i64,
        /// Target.
        endpoint: String,
    },
    /// Every attempt failed; the old connection keeps serving.
    HandoffFailed {
        /// MOVING seq.
        seq: i64,
        /// Target.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A MOVING that changes nothing (already handled for this connection).
    MovingIgnored {
        /// MOVING seq.
        seq: i64,
    },
    /// A new connection (a handoff's, a reconnect's) subscribed again to the
    /// pub/sub channels of the one it replaces.
    Resubscribed {
        /// `host:port` of the new connection.
        endpoint: String,
        /// How many channels.
        channels: usize,
    },
    /// A cluster client applied SMIGRATED: its slot map follows the moves
    /// it had not applied yet.
    SlotMapUpdated {
        /// SMIGRATED seq.
        seq: i64,
        /// Moves applied.
        moves: usize,
        /// Slots that changed node.
        slots: usize,
    },
    /// A cluster client received an SMIGRATED whose every move it had
    /// applied already (another node announced it first): nothing changed.
    SlotMovesKnown {
        /// SMIGRATED seq.
        seq: i64,
    },
    /// A cluster node redirected a request (`MOVED` or `ASK`), and the
    /// client followed it.
    Redirected {
        /// `MOVED` or `ASK`.
        kind: String,
        /// The slot.
        slot: u16,
        /// `host:port` it went to.
        endpoint: String,
    },
    /// The server closed the connection in use.
    Disconnected {
        /// `host:port`.
        endpoint: String,
    },
    /// What a client under test in another process let its driver see (a
    /// relaxation it reported, a notification it handled), in the driver's
    /// words: it explains a failure, it never decides a claim.
    Observed {
        /// What the driver saw.
        what: String,
    },
}

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientEvent {
    /// When it happened.
    pub at: Instant,
    /// Client name given to the factory.
    pub client: String,
    /// Connection id (unique in the process).
    pub conn: u64,
    /// What happened.
    pub kind: EventKind,
}

impl fmt::Display for ClientEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{} ", self.client, self.conn)?;
        match &self.kind {
            EventKind::Notification {
                notification,
                at_setup,
            } => {
                write!(f, "received {notification}")?;
                if *at_setup {
                    write!(f, " (at set-up)")?;
                }
                Ok(())
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// Where events go.
pub trait EventSink: Send + Sync + 'static {
    /// Records one event; must not block.
    fn record(&self, event: ClientEvent);
}

/// Discards events.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn record(&self, _event: ClientEvent) {}
}
