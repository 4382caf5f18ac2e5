//! The cucumber World and the step definitions, grouped by subject:
//! [`bad_input`] (what bad requests get), [`faults`] (unannounced faults, odd pushes),
//! [`database`] (the target), [`clients`], [`maintenance`] (fault injector
//! actions), [`notifications`], [`timeouts`], [`handoff`], [`handshake`],
//! [`traffic`], [`raw`] (raw connections), [`security`] (TLS and
//! credentials), [`stress`] (many clients, overlapping actions, latency) and
//! [`fault_injector`] (the API's own contract), [`server`] (the server's
//! record, as steps read it) and [`controls`] (a claim that must fail, and why).
//!
//! The World holds the target, the event tracker, one [`ClientUnderTest`] per
//! client name ([`record`]: the suite's own client, or one through its
//! driver), and what the scenario must clean up. Steps stay thin: they
//! parse their line, wait on the tracker, call a claim of
//! [`crate::timeline`], and report what was expected and what happened, with
//! the client's timeline.

/// Returns an error from a step or a World method, whatever its error type.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(anyhow::anyhow!($($arg)*).into())
    };
}

pub mod bad_input;
pub mod clients;
pub mod cluster;
pub mod controls;
pub mod database;
pub mod fault_injector;
pub mod faults;
pub mod fi_databases;
pub mod handoff;
pub mod handshake;
pub mod maintenance;
pub mod notifications;
pub mod params;
pub mod pubsub;
pub mod raw;
pub mod record;
pub mod security;
pub mod server;
pub mod stress;
pub mod timeouts;
pub mod traffic;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::time::Instant;

use crate::client::{Client, ClientError, ClientOptions};
use crate::config::Target;
use crate::fault_injector::ActionStatus;
use crate::raw::RawConnection;
use crate::report;
use crate::timeline::Unmet;
use crate::timing::{
    DEFAULT_PATIENCE, PATIENCE_MARGIN, SUITE_HANDOFF_TIMEOUT, SUITE_POST_HANDOFF_RELAXED,
    SUITE_RELAXED_TIMEOUT, SUITE_RELAXED_WINDOW_MAX, SUITE_RESPONSE_TIMEOUT,
};
use crate::tracker::Tracker;

pub use database::{Env, DATABASE_ENV, GRACE_ENV, SHARDED_DATABASE_ENV, TLS_DATABASE_ENV};
pub use record::{ClientUnderTest, InFlight, Refusal, Traffic};

/// A step failure: prints the whole error chain.
pub struct Failure(anyhow::Error);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.into())
    }
}

/// What every step returns.
pub type StepResult = std::result::Result<(), Failure>;

/// A fault injector action the scenario ran.
#[derive(Clone, Debug)]
pub struct ActionRun {
    /// Type.
    pub action_type: &'static str,
    /// Id.
    pub id: String,
    /// When it was posted.
    pub started: Instant,
    /// When the scenario saw it end.
    pub ended: Option<Instant>,
    /// Terminal status, once known.
    pub status: Option<ActionStatus>,
}

/// What a scenario started that must be stopped when it ends.
#[derive(Default)]
pub struct Resources {
    /// Listeners that accept connections and never answer.
    pub black_holes: Vec<tokio::net::TcpListener>,
    /// A plain redis-server that knows nothing of maintenance notifications.
    pub plain_server: Option<(crate::emulator::Shard, tempfile::TempDir)>,
    /// Background tasks a step started.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Folders a step made.
    pub temp_dirs: Vec<tempfile::TempDir>,
}

impl Resources {
    async fn release(&mut self) {
        self.black_holes.clear();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.temp_dirs.clear();
        if let Some((shard, _dir)) = self.plain_server.take() {
            shard.stop().await;
        }
    }
}

/// Per-scenario state: everything a scenario creates is its own.
#[derive(cucumber::World)]
#[world(init = Self::new)]
pub struct MaintWorld {
    target: std::result::Result<Target, String>,
    /// The database under test, once a step asked for it.
    pub env: Option<Env>,
    /// Every client event.
    pub tracker: Arc<Tracker>,
    /// The clients under test, by name.
    pub clients: BTreeMap<String, ClientUnderTest>,
    /// Raw connections, by name.
    pub raw: BTreeMap<String, RawConnection>,
    /// Actions run, in order.
    pub actions: Vec<ActionRun>,
    /// What the scenario did through the fault injector: databases created
    /// and deleted, actions it watches, refusals, cluster settings to restore.
    pub injector: fault_injector::InjectorRecord,
    /// Unique key prefix of this scenario.
    pub prefix: String,
    /// What the teardown stops.
    pub resources: Resources,
    /// When the scenario began, on both clocks (the report's time origin).
    pub clock: crate::report::Clock,
    /// What its steps could not check against this target, and why.
    pub unchecked: std::sync::Mutex<Vec<String>>,
}

impl fmt::Debug for MaintWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaintWorld")
            .field("target", &self.target)
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .field("actions", &self.actions)
            .finish()
    }
}

static SCENARIO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl MaintWorld {
    /// A fresh World; the target comes from the environment.
    pub async fn new() -> Result<Self> {
        let n = SCENARIO.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(MaintWorld {
            target: Target::from_env().map_err(|e| e.to_string()),
            env: None,
            tracker: Arc::new(Tracker::new()),
            clients: BTreeMap::new(),
            raw: BTreeMap::new(),
            actions: Vec::new(),
            injector: fault_injector::InjectorRecord::default(),
            prefix: format!("maint-e2e:{}:{n}", std::process::id()),
            resources: Resources::default(),
            clock: crate::report::Clock::now(),
            unchecked: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// True when the suite runs against the embedded emulator.
    pub fn on_emulator(&self) -> bool {
        matches!(self.target, Ok(Target::Emulator))
    }

    /// The record of a client under test.
    pub fn record(&self, name: &str) -> Result<&ClientUnderTest> {
        self.clients.get(name).ok_or_else(|| {
            anyhow!("no client named {name:?}; create it with `Given a client \"{name}\" ...`")
        })
    }

    /// The record of a client under test, to change it.
    pub fn record_mut(&mut self, name: &str) -> Result<&mut ClientUnderTest> {
        self.clients.get_mut(name).ok_or_else(|| {
            anyhow!("no client named {name:?}; create it with `Given a client \"{name}\" ...`")
        })
    }

    /// A connected client by name.
    pub fn client(&self, name: &str) -> Result<Arc<Client>> {
        let r = self.record(name)?;
        if let Some((_, process)) = &r.driven {
            fail!(
                "{name:?} is {} {}, through its driver: this step reads the suite's own client from inside",
                process.client,
                process.version
            );
        }
        r.client.clone().ok_or_else(|| {
            anyhow!(
                "client {name:?} did not connect: {}",
                r.refusal
                    .as_ref()
                    .map_or("no attempt made", |r| r.error.as_str())
            )
        })
    }

    /// What the traffic of a connected client sends its requests through.
    pub fn requests(&self, name: &str) -> Result<Arc<dyn crate::workload::Requests>> {
        match &self.record(name)?.driven {
            Some((c, _)) => Ok(c.clone()),
            None => Ok(self.client(name)?),
        }
    }

    /// The options a client was made with.
    pub fn options_of(&self, name: &str) -> Result<ClientOptions> {
        match &self.record(name)?.options {
            Some(o) => Ok(o.clone()),
            None => Ok(self.client(name)?.options().clone()),
        }
    }

    /// The ids of the connections of a connected client.
    pub fn connection_ids(&self, name: &str) -> Result<Vec<u64>> {
        Ok(self
            .client(name)?
            .connections()
            .iter()
            .map(|c| c.id)
            .collect())
    }

    /// Records what connecting a client named `name` gave.
    pub fn add_client(
        &mut self,
        name: &str,
        made: std::result::Result<Arc<Client>, ClientError>,
    ) -> Result<()> {
        if self.clients.get(name).is_some_and(|r| r.client.is_some()) {
            fail!("a client named {name:?} exists already in this scenario");
        }
        let (client, refusal) = match made {
            Ok(c) => (Some(c), None),
            Err(e) => (
                None,
                Some(Refusal {
                    error: e.chain(),
                    took: None,
                    accepted: None,
                }),
            ),
        };
        self.clients.insert(
            name.to_string(),
            ClientUnderTest {
                client,
                refusal,
                ..ClientUnderTest::default()
            },
        );
        Ok(())
    }

    /// A claim that did not hold, with the timeline of `client`.
    pub fn unmet(&self, client: &str, e: Unmet) -> anyhow::Error {
        anyhow!("{client:?}: {e}:\n{}", self.tracker.describe(client))
    }

    /// Client options the suite uses: the defaults of `CLIENT.md` scaled to
    /// the target's grace so that scenarios take seconds.
    pub fn suite_options(&self) -> ClientOptions {
        Self::suite_defaults()
    }

    /// The client options every scenario starts from.
    pub fn suite_defaults() -> ClientOptions {
        ClientOptions {
            relaxed_timeout: SUITE_RELAXED_TIMEOUT,
            relaxed_window_max: Some(SUITE_RELAXED_WINDOW_MAX),
            post_handoff_relaxed: Some(SUITE_POST_HANDOFF_RELAXED),
            handoff_timeout: SUITE_HANDOFF_TIMEOUT,
            response_timeout: Some(SUITE_RESPONSE_TIMEOUT),
            ..ClientOptions::default()
        }
    }

    /// How long to wait for anything an action causes.
    pub fn patience(&self) -> Duration {
        self.env
            .as_ref()
            .map(|e| e.grace * 3 + PATIENCE_MARGIN)
            .unwrap_or(DEFAULT_PATIENCE)
    }

    /// What the living documentation keeps of this scenario: its events,
    /// actions, traffic (stopped first, when still running) and clients.
    pub async fn capture(&mut self) -> report::Capture {
        let defaults = Self::suite_defaults().describe();
        let mut traffic = Vec::new();
        let mut clients = Vec::new();
        let mut writes_checked = 0;
        for (name, r) in &mut self.clients {
            writes_checked += r.writes_checked;
            if let Some(t) = &mut r.traffic {
                if t.report.is_none() {
                    t.report = Some(t.workload.stop().await);
                }
                let rep = t.report.as_ref().expect("set above");
                traffic.push(report::TrafficCapture {
                    client: name.clone(),
                    successes: rep.successes.clone(),
                    errors: rep
                        .errors
                        .iter()
                        .map(|e| (e.at, e.error.class().into(), e.op.clone(), e.error.chain()))
                        .collect(),
                });
            }
            let options = r
                .client
                .as_ref()
                .map(|c| c.options().clone())
                .or(r.options.clone());
            let settings = match (&options, &r.refusal) {
                (Some(o), _) => o
                    .describe()
                    .into_iter()
                    .filter(|s| !defaults.contains(s))
                    .map(|(k, v)| report::Setting::new(k, v))
                    .collect(),
                (None, Some(refusal)) => {
                    vec![report::Setting::new("refused", refusal.error.clone())]
                }
                (None, None) => Vec::new(),
            };
            let mut settings = settings;
            if let Some((_, p)) = &r.driven {
                settings.insert(
                    0,
                    report::Setting::new(
                        "client under test",
                        format!("{} {} (driver)", p.client, p.version),
                    ),
                );
            }
            clients.push((name.clone(), settings));
        }
        // Clients the steps make for themselves (the reader of acknowledged
        // writes) carry the scenario's key prefix: the report names them
        // without it.
        let own = format!("{}-", self.prefix);
        let mut events = self.tracker.events();
        for e in &mut events {
            if let Some(rest) = e.client.strip_prefix(&own) {
                e.client = rest.to_string();
            }
        }
        report::Capture {
            clock: self.clock,
            events,
            actions: self
                .actions
                .iter()
                .map(|a| report::ActionSpan {
                    kind: a.action_type.into(),
                    id: a.id.clone(),
                    posted: a.started,
                    ended: a.ended,
                    status: a.status.as_ref().map(|s| match s.error_text() {
                        e if e.is_empty() => s.status.to_string(),
                        e => format!("{}: {e}", s.status),
                    }),
                })
                .collect(),
            traffic,
            clients,
            writes_checked,
            not_checked: self.unchecked.lock().unwrap().clone(),
        }
    }

    /// Stops everything the scenario started.
    pub async fn teardown(&mut self) {
        self.injector.stop_watching();
        if std::mem::take(&mut self.injector.notifications_turned_off) {
            if let Err(e) = self.set_cluster_notifications(true).await {
                tracing::warn!("turning maintenance notifications back on: {e:#}");
            }
        }
        if std::mem::take(&mut self.injector.grace_tuned) {
            let reset = crate::fault_injector::Action::ResetCluster {
                clean_all_dbs: None,
                clean_maintenance_mode: None,
                cluster_index: None,
            };
            let patience = self.patience();
            if let Ok(env) = self.env() {
                if let Err(e) = env.fault_injector.run(&reset, patience).await {
                    tracing::warn!("bringing the cluster's settings back: {e:#}");
                }
            }
        }
        self.delete_created().await;
        self.raw.clear();
        for r in self.clients.values_mut() {
            r.close().await;
        }
        self.clients.clear();
        self.resources.release().await;
        if let Some(env) = self.env.take() {
            env.stop().await;
        }
    }
}
