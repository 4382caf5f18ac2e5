//! The cucumber World and the step definitions, grouped by subject:
//! [`database`] (the target), [`clients`], [`maintenance`] (fault injector
//! actions), [`notifications`], [`timeouts`], [`handoff`], [`handshake`],
//! [`traffic`], [`probes`] and [`fault_injector`] (the API's own contract).
//!
//! Steps stay thin: they parse their line and call World methods that return
//! `Result`; a failure message says what was expected and what happened,
//! with the client's event log.

/// Returns an error from a step or a World method, whatever its error type.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err(anyhow::anyhow!($($arg)*).into())
    };
}

pub mod clients;
pub mod database;
pub mod fault_injector;
pub mod handoff;
pub mod handshake;
pub mod maintenance;
pub mod notifications;
pub mod params;
pub mod probes;
pub mod timeouts;
pub mod traffic;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::connection::ManagedConnection;
use crate::client::{Client, ClientFactory, ClientOptions};
use crate::config::{DatabaseConfig, EndpointsFile, Target};
use crate::emulator::{api, Emulator, EmulatorConfig, Timings};
use crate::fault_injector::{ActionStatus, FaultInjectorClient};
use crate::probe::Probe;
use crate::tracker::Tracker;
use crate::workload::{Report, Workload};

/// Names the database of the endpoints file the suite uses against an external
/// target (default `standalone`).
pub const DATABASE_ENV: &str = "MAINT_E2E_DATABASE";
/// MOVING grace, in seconds, the suite expects from an external target (default 15).
pub const GRACE_ENV: &str = "MAINT_E2E_GRACE_S";

/// Names the TLS database of the endpoints file (default `standalone-tls`).
pub const TLS_DATABASE_ENV: &str = "MAINT_E2E_TLS_DATABASE";

/// Names the database of several shards behind one endpoint (default
/// `standalone-sharded`).
pub const SHARDED_DATABASE_ENV: &str = "MAINT_E2E_SHARDED_DATABASE";

/// MOVING grace of the embedded emulator: short, so scenarios take seconds.
pub const EMULATOR_GRACE: Duration = Duration::from_secs(2);

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

/// The database under test, its fault injector and its client factory.
pub struct Env {
    emulator: Option<Arc<Emulator>>,
    api_cancel: CancellationToken,
    /// The fault injector (the emulator's or a real one).
    pub fault_injector: FaultInjectorClient,
    /// The database.
    pub db: DatabaseConfig,
    /// Its id.
    pub bdb_id: u64,
    /// MOVING grace to expect.
    pub grace: Duration,
    /// Builds the clients.
    pub factory: ClientFactory,
}

/// A fault injector action the scenario ran.
#[derive(Clone, Debug)]
pub struct ActionRun {
    /// Type.
    pub action_type: String,
    /// Id.
    pub id: String,
    /// When it was posted.
    pub started: Instant,
    /// Terminal status, once known.
    pub status: Option<ActionStatus>,
}

/// A request started in the background by a step.
pub struct InFlight {
    /// Client it runs on.
    pub client: String,
    /// The request's outcome and when it came.
    pub handle: tokio::task::JoinHandle<(
        std::result::Result<redis::Value, crate::client::ClientError>,
        Instant,
    )>,
    /// Endpoint of the connection it was sent on.
    pub endpoint: Option<String>,
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
    /// Clients by name.
    pub clients: BTreeMap<String, Arc<Client>>,
    /// Connections opened by steps, by client.
    pub extra_connections: BTreeMap<String, Vec<Arc<ManagedConnection>>>,
    /// Background traffic by client.
    pub workloads: BTreeMap<String, Workload>,
    /// Stopped workloads, kept for their ledgers.
    pub workloads_done: BTreeMap<String, Workload>,
    /// Reports of stopped traffic.
    pub reports: BTreeMap<String, Report>,
    /// Raw probes by name.
    pub probes: BTreeMap<String, Probe>,
    /// Actions run, in order.
    pub actions: Vec<ActionRun>,
    /// A request started in the background.
    pub in_flight: Option<InFlight>,
    /// Unique key prefix of this scenario.
    pub prefix: String,
    /// Listeners that accept connections and never answer.
    pub black_holes: Vec<tokio::net::TcpListener>,
    /// A plain redis-server that knows nothing of maintenance notifications.
    pub plain_server: Option<(crate::emulator::shard::Shard, tempfile::TempDir)>,
    /// Why the last `... connects` step failed to connect.
    pub connect_error: Option<String>,
    /// What the scenario did through the fault injector: databases created
    /// and deleted, the action it watches, refusals, cluster settings to restore.
    pub injector: fault_injector::InjectorRecord,
    /// Background tasks a step started (stopped at teardown).
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Folders a step made (removed at teardown).
    pub temp_dirs: Vec<tempfile::TempDir>,
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
            extra_connections: BTreeMap::new(),
            workloads: BTreeMap::new(),
            workloads_done: BTreeMap::new(),
            reports: BTreeMap::new(),
            probes: BTreeMap::new(),
            actions: Vec::new(),
            in_flight: None,
            prefix: format!("maint-e2e:{}:{n}", std::process::id()),
            black_holes: Vec::new(),
            plain_server: None,
            connect_error: None,
            injector: fault_injector::InjectorRecord::default(),
            tasks: Vec::new(),
            temp_dirs: Vec::new(),
        })
    }

    /// True when the suite runs against the embedded emulator.
    pub fn on_emulator(&self) -> bool {
        matches!(self.target, Ok(Target::Emulator))
    }

    /// The environment, or an error saying which step sets it up.
    pub fn env(&self) -> Result<&Env> {
        self.env.as_ref().ok_or_else(|| {
            anyhow!("no database yet: start the scenario with `Given a standalone database`")
        })
    }

    /// Sets up the database under test: a fresh emulator, or the one the
    /// endpoints file names.
    pub async fn setup_database(&mut self) -> Result<()> {
        if self.env.is_some() {
            // Already set up (by the Background, say): one database per scenario.
            return Ok(());
        }
        let target = self.target.clone().map_err(|e| anyhow!(e))?;
        let env = match target {
            Target::Emulator => {
                let emulator = Emulator::new(EmulatorConfig {
                    nodes: 3,
                    timings: Timings::fast(EMULATOR_GRACE),
                    ..EmulatorConfig::default()
                })?;
                let cancel = CancellationToken::new();
                let addr = api::serve(emulator.clone(), ([127, 0, 0, 1], 0).into(), cancel.clone())
                    .await?;
                let fi = FaultInjectorClient::new(&format!("http://{addr}"))?;
                let (_, bdb_id) = fi
                    .create_database(
                        serde_json::json!({"name": "standalone", "replication": true}),
                        Duration::from_secs(30),
                    )
                    .await
                    .context("creating the database on the emulator")?;
                let db = emulator.endpoints_file().database("standalone")?.clone();
                Env {
                    emulator: Some(emulator),
                    api_cancel: cancel,
                    fault_injector: fi,
                    bdb_id,
                    grace: EMULATOR_GRACE,
                    factory: ClientFactory::new(db.clone(), self.tracker.clone()),
                    db,
                }
            }
            Target::External {
                endpoints,
                fault_injector,
            } => {
                let file = EndpointsFile::load(&endpoints)?;
                let name = std::env::var(DATABASE_ENV).unwrap_or_else(|_| "standalone".into());
                let db = file.database(&name)?.clone();
                let bdb_id = db.bdb_id.ok_or_else(|| {
                    anyhow!(
                        "database {name:?} in {} has no bdb_id; the fault injector needs it",
                        endpoints.display()
                    )
                })?;
                let grace = match std::env::var(GRACE_ENV) {
                    Ok(v) => Duration::from_secs_f64(v.parse().with_context(|| {
                        format!("{GRACE_ENV}={v:?} is not a number of seconds")
                    })?),
                    Err(_) => Duration::from_secs(15),
                };
                let fi = FaultInjectorClient::new(&fault_injector)?;
                fi.health().await?;
                Env {
                    emulator: None,
                    api_cancel: CancellationToken::new(),
                    fault_injector: fi,
                    bdb_id,
                    grace,
                    factory: ClientFactory::new(db.clone(), self.tracker.clone()),
                    db,
                }
            }
        };
        self.env = Some(env);
        Ok(())
    }

    /// Switches the scenario to a TLS database: one the emulator creates, or the
    /// one [`TLS_DATABASE_ENV`] names in the endpoints file.
    pub async fn use_tls_database(&mut self) -> Result<()> {
        let config = serde_json::json!({"tls": true, "replication": true});
        self.switch_database(
            "standalone-tls",
            TLS_DATABASE_ENV,
            config,
            |db, name, file| {
                if !db.tls {
                    anyhow::bail!(
                        "database {name:?} in {file} is not a TLS database (tls: true, rediss://)"
                    );
                }
                Ok(())
            },
        )
        .await
    }

    /// Switches the scenario to a database of `shards` primary shards behind one
    /// endpoint: one the emulator creates, or the one
    /// [`SHARDED_DATABASE_ENV`] names in the endpoints file.
    pub async fn use_sharded_database(&mut self, shards: u32) -> Result<()> {
        let config = serde_json::json!({"sharding": true, "shards_count": shards, "proxy_policy": "single", "replication": true});
        self.switch_database(
            "standalone-sharded",
            SHARDED_DATABASE_ENV,
            config,
            |_, _, _| Ok(()),
        )
        .await
    }

    /// Switches the scenario to another database: on the emulator, one created
    /// with `config` and named `name`; against a cluster, the one `env_var`
    /// names in the endpoints file (default `name`), checked by `check`.
    async fn switch_database(
        &mut self,
        name: &str,
        env_var: &str,
        mut config: serde_json::Value,
        check: impl Fn(&DatabaseConfig, &str, &str) -> Result<()>,
    ) -> Result<()> {
        self.setup_database().await?;
        let target = self.target.clone().map_err(|e| anyhow!(e))?;
        let patience = self.patience();
        let env = self.env.as_mut().expect("set up above");
        let (db, bdb_id) = match target {
            Target::Emulator => {
                config["name"] = name.into();
                let (_, id) = env
                    .fault_injector
                    .create_database(config, patience)
                    .await
                    .with_context(|| format!("creating the database {name:?} on the emulator"))?;
                let emu = env.emulator.as_ref().expect("an emulator target has one");
                (emu.endpoints_file().database(name)?.clone(), id)
            }
            Target::External { endpoints, .. } => {
                let name = std::env::var(env_var).unwrap_or_else(|_| name.into());
                let file = EndpointsFile::load(&endpoints)?;
                let shown = endpoints.display().to_string();
                let db = file.database(&name).with_context(|| {
                    format!("this scenario needs the database {name:?}: add it to {shown} or set {env_var}")
                })?;
                check(db, &name, &shown)?;
                let id = db
                    .bdb_id
                    .ok_or_else(|| anyhow!("database {name:?} has no bdb_id"))?;
                (db.clone(), id)
            }
        };
        env.factory = ClientFactory::new(db.clone(), self.tracker.clone());
        env.db = db;
        env.bdb_id = bdb_id;
        Ok(())
    }

    /// The emulator, for steps that need control only it gives.
    pub fn emulator(&self) -> Result<Arc<Emulator>> {
        self.env()?.emulator.clone().ok_or_else(|| {
            anyhow!("this step needs the embedded emulator; tag the scenario @emulator")
        })
    }

    /// A client by name.
    pub fn client(&self, name: &str) -> Result<Arc<Client>> {
        self.clients.get(name).cloned().ok_or_else(|| {
            anyhow!("no client named {name:?}; create it with `Given a client \"{name}\" ...`")
        })
    }

    /// Client options the suite uses: the defaults of `CLIENT.md` scaled to
    /// the target's grace so that scenarios take seconds.
    pub fn suite_options(&self) -> ClientOptions {
        ClientOptions {
            relaxed_timeout: Duration::from_secs(3),
            relaxed_window_max: Some(Duration::from_secs(20)),
            post_handoff_relaxed: Some(Duration::from_millis(300)),
            handoff_timeout: Duration::from_secs(3),
            response_timeout: Some(Duration::from_secs(1)),
            ..ClientOptions::default()
        }
    }

    /// How long to wait for anything an action causes.
    pub fn patience(&self) -> Duration {
        self.env
            .as_ref()
            .map(|e| e.grace * 3 + Duration::from_secs(10))
            .unwrap_or(Duration::from_secs(30))
    }

    /// Stops everything the scenario started.
    pub async fn teardown(&mut self) {
        if let Some(w) = self.injector.watched.take() {
            w.watch.abort();
        }
        if std::mem::take(&mut self.injector.notifications_turned_off) {
            if let Err(e) = self.set_cluster_notifications(true).await {
                tracing::warn!("turning maintenance notifications back on: {e:#}");
            }
        }
        self.delete_created().await;
        for w in self.workloads.values_mut() {
            w.stop().await;
        }
        self.workloads.clear();
        self.probes.clear();
        if let Some(f) = self.in_flight.take() {
            f.handle.abort();
        }
        for c in self.clients.values() {
            c.close().await;
        }
        self.clients.clear();
        self.black_holes.clear();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.temp_dirs.clear();
        if let Some((shard, _dir)) = self.plain_server.take() {
            shard.stop().await;
        }
        if let Some(env) = self.env.take() {
            env.factory.destroy_all().await;
            env.api_cancel.cancel();
            if let Some(emu) = env.emulator {
                let t = Instant::now();
                emu.shutdown().await;
                tracing::debug!(took = ?t.elapsed(), "emulator stopped");
            }
        }
    }
}
