//! The target: the database under test, its fault injector and its client
//! factory (`Given a standalone database`), on the embedded emulator or on the
//! cluster an endpoints file names.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use cucumber::given;
use tokio_util::sync::CancellationToken;

use super::{MaintWorld, StepResult};
use crate::client::ClientFactory;
use crate::config::{DatabaseConfig, EndpointsFile, Target};
use crate::emulator::{api, Emulator, EmulatorConfig, Naming, Timings, DEFAULT_DOMAIN};
use crate::fault_injector::{DatabaseSpec, FaultInjectorClient};
use crate::timing::{CLUSTER_GRACE, CREATE_DATABASE_WITHIN, EMULATOR_GRACE};

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

impl Env {
    /// Closes what the factory opened and stops the emulator.
    pub async fn stop(self) {
        self.factory.destroy_all().await;
        self.api_cancel.cancel();
        if let Some(emu) = self.emulator {
            let t = tokio::time::Instant::now();
            emu.shutdown().await;
            tracing::debug!(took = ?t.elapsed(), "emulator stopped");
        }
    }
}

/// The host names of the embedded emulator, as `maint-e2e emulator` names
/// them: under its domain where this machine resolves it, `localhost`
/// otherwise (probed once a run, and said once).
fn embedded_naming() -> Naming {
    static NAMING: std::sync::OnceLock<Naming> = std::sync::OnceLock::new();
    NAMING
        .get_or_init(|| Naming::resolving(DEFAULT_DOMAIN))
        .clone()
}

impl MaintWorld {
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
                    naming: embedded_naming(),
                    ..EmulatorConfig::default()
                })?;
                let cancel = CancellationToken::new();
                let addr = api::serve(
                    emulator.clone(),
                    ([127, 0, 0, 1], 0).into(),
                    &api::ApiOptions::default(),
                    cancel.clone(),
                )
                .await?;
                // The discovery service, on a port of its own: scenarios run
                // side by side, each with its emulator.
                emulator.serve_discovery(0, cancel.clone()).await?;
                let fi = FaultInjectorClient::new(&format!("http://{addr}"))?;
                let created = fi
                    .create_database(
                        DatabaseSpec {
                            replication: Some(true),
                            ..DatabaseSpec::named("standalone")
                        },
                        CREATE_DATABASE_WITHIN,
                    )
                    .await
                    .context("creating the database on the emulator")?;
                let bdb_id = created.bdb_id;
                let db = emulator.endpoints_file().database("standalone")?.clone();
                Env {
                    emulator: Some(emulator),
                    api_cancel: cancel,
                    fault_injector: fi,
                    bdb_id,
                    grace: EMULATOR_GRACE,
                    factory: ClientFactory::new(db.clone(), self.tracker.clone())
                        .naming_clients(&self.prefix),
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
                    Err(_) => CLUSTER_GRACE,
                };
                let fi = FaultInjectorClient::new(&fault_injector)?
                    .with_token(std::env::var(crate::emulator::api::API_TOKEN_ENV).ok());
                fi.health().await?;
                Env {
                    emulator: None,
                    api_cancel: CancellationToken::new(),
                    fault_injector: fi,
                    bdb_id,
                    grace,
                    factory: ClientFactory::new(db.clone(), self.tracker.clone())
                        .naming_clients(&self.prefix),
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
        let config = DatabaseSpec {
            tls: Some(true),
            replication: Some(true),
            ..DatabaseSpec::default()
        };
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
        let config = DatabaseSpec {
            sharding: Some(true),
            shards_count: Some(shards),
            proxy_policy: Some("single".into()),
            replication: Some(true),
            ..DatabaseSpec::default()
        };
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
    pub(super) async fn switch_database(
        &mut self,
        name: &str,
        env_var: &str,
        mut config: DatabaseSpec,
        check: impl Fn(&DatabaseConfig, &str, &str) -> Result<()>,
    ) -> Result<()> {
        self.setup_database().await?;
        let target = self.target.clone().map_err(|e| anyhow!(e))?;
        let patience = self.patience();
        let env = self.env.as_mut().expect("set up above");
        let (db, bdb_id) = match target {
            Target::Emulator => {
                config.name = Some(name.into());
                let id = env
                    .fault_injector
                    .create_database(config, patience)
                    .await
                    .with_context(|| format!("creating the database {name:?} on the emulator"))?
                    .bdb_id;
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
        env.factory =
            ClientFactory::new(db.clone(), self.tracker.clone()).naming_clients(&self.prefix);
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
}

/// Sets up the database under test (a fresh emulator, or the external one).
#[given("a standalone database")]
async fn given_a_standalone_database(w: &mut MaintWorld) -> StepResult {
    w.setup_database().await?;
    Ok(())
}

/// The scenario's database is a TLS one whose certificates come from the
/// cluster's CA (the emulator's own, or the one the endpoints file names).
#[given("the database uses TLS with certificates from the cluster's CA")]
async fn given_tls_database(w: &mut MaintWorld) -> StepResult {
    w.use_tls_database().await?;
    Ok(())
}

/// The scenario's database has several primary shards behind one endpoint;
/// the proxy routes each key to its shard by hash slot.
#[given(expr = "a database of {int} shards behind one endpoint")]
async fn given_sharded_database(w: &mut MaintWorld, shards: u32) -> StepResult {
    w.use_sharded_database(shards).await?;
    Ok(())
}
