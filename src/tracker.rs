//! Records every notification and client event, and answers the assertions the
//! steps make about them. Assertions read events, never log text.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::{ClientEvent, EventKind, EventSink};
use crate::notification::{Kind, Notification};

/// The event log of a scenario.
#[derive(Default)]
pub struct Tracker {
    events: Mutex<Vec<ClientEvent>>,
    changed: Notify,
}

impl EventSink for Tracker {
    fn record(&self, event: ClientEvent) {
        self.events.lock().unwrap().push(event);
        self.changed.notify_waiters();
    }
}

/// A notification as one connection received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// Connection id.
    pub conn: u64,
    /// When.
    pub at: Instant,
    /// What.
    pub notification: Notification,
    /// Replayed during the connection's set-up rather than sent live.
    pub at_setup: bool,
}

impl Tracker {
    /// A new, empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<ClientEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Events of one client.
    pub fn of_client(&self, client: &str) -> Vec<ClientEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.client == client)
            .cloned()
            .collect()
    }

    /// Notifications one client received, in order.
    pub fn notifications(&self, client: &str) -> Vec<Received> {
        self.of_client(client)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Notification {
                    notification,
                    at_setup,
                } => Some(Received {
                    conn: e.conn,
                    at: e.at,
                    notification,
                    at_setup,
                }),
                _ => None,
            })
            .collect()
    }

    /// Notifications of `kind` one client received.
    pub fn notifications_of(&self, client: &str, kind: Kind) -> Vec<Received> {
        self.notifications(client)
            .into_iter()
            .filter(|r| r.notification.kind() == kind)
            .collect()
    }

    /// A readable dump of one client's events, for failure messages.
    pub fn describe(&self, client: &str) -> String {
        let events = self.of_client(client);
        let Some(first) = events.first().map(|e| e.at) else {
            return format!("(client {client:?} recorded no events)");
        };
        events
            .iter()
            .map(|e| format!("  +{:>6.3}s {e}", (e.at - first).as_secs_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `ready` holds for the event log, or fails after `within`
    /// saying `what` was awaited.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut ready: impl FnMut(&[ClientEvent]) -> Option<T>,
    ) -> Result<T> {
        // A snapshot, so that `ready` may call back into the tracker.
        crate::wait::until(&self.changed, within, what, || ready(&self.events())).await
    }
}
