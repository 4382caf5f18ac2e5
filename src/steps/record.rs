//! One record per client under test: the client (the suite's own, or one
//! through its driver), the options it was made with, its traffic, a
//! request in flight, its subscription and publisher, and why it could not
//! connect when it could not.

use std::sync::Arc;

use tokio::time::Instant;

use super::pubsub;
use crate::client::connection::ManagedConnection;
use crate::client::{Client, ClientError, ClientOptions};
use crate::workload::{Report, Workload};

/// A request a step started in the background.
pub struct InFlight {
    /// The request's outcome and when it came.
    pub handle: tokio::task::JoinHandle<(std::result::Result<redis::Value, ClientError>, Instant)>,
    /// Endpoint of the connection it was sent on.
    pub endpoint: Option<String>,
}

/// Background traffic of a client and, once stopped, what it did.
pub struct Traffic {
    /// The traffic, running or stopped (its ledger outlives it).
    pub workload: Workload,
    /// What it did, once stopped.
    pub report: Option<Report>,
}

/// Everything that belongs to one client under test.
#[derive(Default)]
pub struct ClientUnderTest {
    /// The client, once it connected.
    pub client: Option<Arc<Client>>,
    /// The client under test through a driver (`MAINT_E2E_CLIENT`), once it
    /// connected, with its driver's process (one per client).
    pub driven: Option<(
        Arc<crate::driver::DriverClient>,
        Arc<crate::driver::DriverProcess>,
    )>,
    /// The options it was made with.
    pub options: Option<ClientOptions>,
    /// Why connecting failed, when it did.
    pub refusal: Option<Refusal>,
    /// Connections steps opened, in order.
    pub opened: Vec<Arc<ManagedConnection>>,
    /// Its background traffic.
    pub traffic: Option<Traffic>,
    /// A request it has in flight.
    pub in_flight: Option<InFlight>,
    /// Acknowledged writes of its traffic read back intact.
    pub writes_checked: usize,
    /// The pub/sub channel it subscribed to, on which connection.
    pub subscription: Option<pubsub::Subscribed>,
    /// Its background publisher.
    pub publisher: Option<pubsub::Publisher>,
}

/// Why a client could not connect, and what it took to find out.
pub struct Refusal {
    /// The error and its causes.
    pub error: String,
    /// How long the connect step took (steps that time it).
    pub took: Option<std::time::Duration>,
    /// Connections the emulated database accepted meanwhile (none counted
    /// against a cluster).
    pub accepted: Option<u64>,
}

impl ClientUnderTest {
    pub(super) async fn close(&mut self) {
        if let Some(t) = &mut self.traffic {
            t.workload.stop().await;
        }
        if let Some(f) = self.in_flight.take() {
            f.handle.abort();
        }
        if let Some(p) = &mut self.publisher {
            p.stop().await;
        }
        if let Some(c) = &self.client {
            c.close().await;
        }
        if let Some((c, process)) = &self.driven {
            if let Err(e) = c.close().await {
                tracing::warn!("closing {}: {e}", c.name);
            }
            process.stop().await;
        }
    }
}
