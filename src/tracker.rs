//! Records every client event of a scenario, hands each client's timeline to
//! the claims of [`crate::timeline`], and waits for a timeline to hold.
//! Claims read events, never log text.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::Notify;

use crate::client::{ClientEvent, EventSink};

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

impl Tracker {
    /// A new, empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, in the order they happened. (A client records a
    /// notification once it acted on it, with the time it arrived: what the
    /// notification changed is recorded before it, and sorted after it.)
    pub fn events(&self) -> Vec<ClientEvent> {
        let mut events = self.events.lock().unwrap().clone();
        events.sort_by_key(|e| e.at);
        events
    }

    /// The timeline of one client: its events, in the order they happened.
    pub fn timeline(&self, client: &str) -> Vec<ClientEvent> {
        let mut events: Vec<ClientEvent> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.client == client)
            .cloned()
            .collect();
        events.sort_by_key(|e| e.at);
        events
    }

    /// A readable dump of one client's events, for failure messages.
    pub fn describe(&self, client: &str) -> String {
        let events = self.timeline(client);
        let Some(first) = events.first().map(|e| e.at) else {
            return format!("(client {client:?} recorded no events)");
        };
        events
            .iter()
            .map(|e| format!("  +{:>6.3}s {e}", (e.at - first).as_secs_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `ready` holds for the events of every client, or fails
    /// after `within` saying `what` was awaited.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut ready: impl FnMut(&[ClientEvent]) -> Option<T>,
    ) -> Result<T> {
        // A snapshot, so that `ready` may call back into the tracker.
        Ok(crate::wait::until(&self.changed, within, what, || ready(&self.events())).await?)
    }

    /// Waits until `ready` holds for the timeline of `client`, or fails after
    /// `within` saying `what` was awaited, with the timeline.
    pub async fn wait_on<T>(
        &self,
        client: &str,
        within: Duration,
        what: &str,
        mut ready: impl FnMut(&[ClientEvent]) -> Option<T>,
    ) -> Result<T> {
        let waited = crate::wait::until(&self.changed, within, what, || {
            ready(&self.timeline(client))
        })
        .await;
        waited.map_err(|e| anyhow::anyhow!("{e}; {client:?} saw:\n{}", self.describe(client)))
    }
}
