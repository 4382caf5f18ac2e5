//! The emulator: a local stand-in for a Redis Enterprise cluster and its fault
//! injector.
//!
//! * [`shard`]: real `redis-server` processes, and the shard sets of a database;
//! * `create`: how a database comes to be (shards, port, endpoint proxies);
//! * `spec`: what the emulator makes of a `database_config`;
//! * [`timing`]: every timing knob of the maintenance ([`Timings`]);
//! * [`database`]: state the proxies of one database share (its maintenance
//!   windows in `database::windows`);
//! * [`proxy`]: the RESP-aware endpoint proxy that emits notifications;
//! * `framing`: a client's bytes read as commands, as `redis-server` reads
//!   them (arrays, inline commands, its limits and its error words);
//! * `routing`: which shard each command goes to, and how replies of several
//!   shards merge;
//! * `oss_cluster`: a Redis Cluster formed of cluster-mode shards (slots,
//!   meeting, a shard that joins, a replica promoted), for OSS Cluster API
//!   databases;
//! * [`slot_map`]: such a database's slot map as its proxies see it, and the
//!   topology answers (`CLUSTER SLOTS`, `SHARDS`, `NODES`) made of it;
//! * `slot_plan`: which slots each `slot_migrate` effect moves where;
//! * `upstream`: a proxied connection's connection to one shard (session
//!   replay, reads, frame boundaries);
//! * `pubsub`: a proxied connection's subscriptions, moved to a shard's new
//!   primary during a switch-over;
//! * [`keys`]: hash slots and key positions, for several shards behind one
//!   endpoint;
//! * [`naming`]: the cluster's host names (the database's, the FQDN forms of
//!   MOVING);
//! * `jobs`: the action store and its lifecycle (pending, running, success or
//!   failed);
//! * `operations`: what each action does, one file per operation (failover,
//!   migrate, bind, topology changes, slot migration, latency, pushes,
//!   cluster settings, databases, rladmin);
//! * [`catalogue`]: which trigger produces each effect (standalone and slot
//!   migration catalogues);
//! * `outages`: the nodes and proxies a fault took down, and what comes back
//!   with them;
//! * `record`: the server's record of a database, as the suite reads it;
//! * [`discovery`]: the discovery service (the Sentinel protocol on every
//!   node);
//! * `accept`: a listener's failed accepts, backed off and logged once a second;
//! * [`tls`]: the emulator's CA and the endpoints' server certificate;
//! * [`api`]: the fault injector's HTTP API: HTTP in, the
//!   [`crate::fault_injector`] contract out;
//! * `error`: [`ActionError`], why an action was refused or failed.
//!
//! Topology: node `n` owns `127.0.n.1` (internal) and `127.0.n.2` (external); a
//! database listens on port P on the node that holds its endpoint, and on its
//! public address `127.0.0.1:P`, which routes to that node.

mod accept;
mod announcement;
pub mod api;
pub mod catalogue;
mod cluster_settings;
mod create;
mod database;
pub mod discovery;
mod error;
mod framing;
#[cfg(test)]
mod framing_props;
mod jobs;
mod keys;
mod ledger;
mod listeners;
mod naming;
mod node;
mod operations;
pub mod oss_cluster;
mod outages;
mod proxy;
mod pubsub;
mod record;
mod routing;
mod shard;
pub mod slot_map;
mod slot_plan;
mod spec;
mod timing;
mod tls;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseConfig, DatabaseEndpoint, EndpointsFile};
use crate::server_record::CloseCause;
pub use database::Node;
use database::{ClusterSettings, DbShared};
pub use error::ActionError;
pub use jobs::ActionStore;
pub use naming::{Naming, DEFAULT_DOMAIN};
use shard::Shards;
pub use shard::{free_port, redis_server_bin, Shard, ShardSpec};
pub use timing::Timings;
pub use tls::{TlsMaterial, TlsPolicy, TlsVersion, CA_FILE};

use crate::fault_injector::Action;
use crate::notification::EndpointType;

/// The ACL user of the databases `maint-e2e emulator` creates with one.
pub const ACL_USER: &str = "maint-e2e-acl";

/// What that user may do: keys under `maint-e2e:` (the suite's), reads,
/// writes and connection commands, nothing dangerous, and `ACL WHOAMI`.
pub const LIMITED_ACL_RULES: &str =
    "~maint-e2e:* resetchannels -@all +@connection +@read +@write +@keyspace +@transaction -@dangerous +acl|whoami";

/// Ports given to databases created without one, as on a real cluster.
pub const DATABASE_PORTS: std::ops::Range<u16> = 10000..20000;

/// What a real cluster answers when `create_database` asks for a port it
/// cannot have; callers that retry on the next port look for these words.
pub const PORT_UNAVAILABLE: &str = "port_unavailable: Unavailable or invalid port";

/// The most client connections a database serves at once by default: far
/// more than any scenario opens (1,000 in the largest, twice that while they
/// hand off), and with two descriptors each (the client's and the shard's)
/// well inside a process's usual limit, so that a client that opens
/// connections without end is refused, clearly, before the emulator runs out
/// of file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How the emulator is built.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Number of nodes (1..=250).
    pub nodes: usize,
    /// Timings.
    pub timings: Timings,
    /// Retain the last completion (MIGRATED / FAILED_OVER) each node's proxy
    /// sent and send it to every connection that opts in on that node later, as
    /// real servers do.
    pub replay_completion: bool,
    /// Host names of the cluster (see [`naming`]).
    pub naming: naming::Naming,
    /// The most client connections a database serves at once (0: no limit),
    /// unless `create_database` says otherwise.
    pub max_connections: usize,
    /// Keep the run directory (shard logs, certificates and private keys) when
    /// the emulator stops; by default it is removed.
    pub keep_run_dir: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            nodes: 3,
            timings: Timings::default(),
            replay_completion: true,
            naming: naming::Naming::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            keep_run_dir: false,
        }
    }
}

/// One emulated database.
pub struct Database {
    /// What the proxies share.
    pub(crate) shared: Arc<DbShared>,
    /// Timing of this database's maintenance.
    pub(crate) timings: Timings,
    /// Password of the default user.
    pub(crate) password: Option<String>,
    /// The user the endpoints file names (the first ACL user, else `default`
    /// when there is a password) and its password.
    pub(crate) credentials: Option<(String, String)>,
    /// TLS on every endpoint of the database.
    pub(crate) tls: Option<tls::EndpointTls>,
    /// The shard processes.
    pub(crate) shards: tokio::sync::Mutex<Shards>,
    /// `redis-server` options every shard of this database starts with.
    shard_args: Vec<String>,
    /// The proxy of each node that serves the database.
    listeners: Mutex<HashMap<usize, listeners::Listener>>,
    cancel: CancellationToken,
    /// Actions on this database run one at a time, in the order they were
    /// submitted (as a real cluster queues them); this is their turn.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Actions queued or running on it.
    queued: AtomicUsize,
}

/// An action's turn on its database; the next one starts when it is dropped.
pub struct Turn {
    db: Arc<Database>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.db.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One primary shard and its replica as seen from outside: ids, addresses,
/// nodes and the slots they own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSetView {
    /// Id of the primary shard.
    pub primary_id: u32,
    /// Address of the primary's `redis-server`.
    pub primary: SocketAddr,
    /// Node the primary lives on.
    pub primary_node: usize,
    /// Address of the replica's `redis-server`, when there is one.
    pub replica: Option<SocketAddr>,
    /// Node the replica lives on.
    pub replica_node: Option<usize>,
    /// First and last hash slot.
    pub slots: (u16, u16),
}

impl Database {
    /// Its bdb_id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its port (on 127.0.0.1 and on the node that holds the endpoint).
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// The node that holds the endpoint.
    pub fn active_node(&self) -> Node {
        self.shared.active_node()
    }

    /// Proxied connections open on `node`.
    pub fn connections_on(&self, node: Node) -> usize {
        self.shared.connections_on(node)
    }

    /// Proxied connections open on every node but the one that holds the
    /// endpoint: those a rebind left behind.
    pub fn connections_off_endpoint(&self) -> usize {
        let active = self.active_node();
        self.shared
            .node_indexes()
            .into_iter()
            .filter(|n| *n != active.index)
            .map(|index| self.shared.connections_on(Node { index }))
            .sum()
    }

    /// The MOVING forms its opted-in connections asked for, as the proxies
    /// recorded them (one entry per connection).
    pub fn asked_forms(&self) -> Vec<EndpointType> {
        self.shared.asked_forms()
    }

    /// True while a switch-over holds the database's traffic.
    pub fn is_switching(&self) -> bool {
        self.shared.route.try_read().is_err()
    }

    /// The proxies' slot map (an OSS Cluster API database's).
    pub async fn slot_map(&self) -> Option<slot_map::SlotMap> {
        self.shared.route.read().await.cluster.clone()
    }

    /// Its shard sets, in slot order.
    pub async fn shard_sets(&self) -> Vec<ShardSetView> {
        self.shards
            .lock()
            .await
            .sets
            .iter()
            .map(|s| ShardSetView {
                primary_id: s.primary.id,
                primary: s.primary.addr,
                primary_node: s.primary.node,
                replica: s.replica.as_ref().map(|r| r.addr),
                replica_node: s.replica.as_ref().map(|r| r.node),
                slots: s.slots,
            })
            .collect()
    }

    /// How many client connections its proxies have accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted()
    }

    /// What its TLS endpoints ask of clients (none without TLS).
    pub fn tls_policy(&self) -> Option<TlsPolicy> {
        self.tls.as_ref().map(|t| t.policy)
    }

    /// The endpoints-file entry a client of this database needs.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            name: self.shared.name.clone(),
            bdb_id: Some(self.shared.id),
            username: self.credentials.as_ref().map(|c| c.0.clone()),
            password: self.credentials.as_ref().map(|c| c.1.clone()),
            tls: self.tls.is_some(),
            certificates_location: self.tls.as_ref().map(|t| t.material.dir.clone()),
            endpoints: self.endpoints(),
            raw_endpoints: Some(json!([self.raw_endpoint()])),
            discovery_endpoints: self.shared.discovery.endpoints(),
        }
    }

    /// Where clients connect: the public address; for an OSS Cluster API
    /// database, the proxy of every node that serves slots (a cluster
    /// client's seed nodes, as the Go framework's `oss-cluster` entry lists
    /// them).
    fn endpoints(&self) -> Vec<DatabaseEndpoint> {
        let at = |host: String| DatabaseEndpoint {
            tls: self.tls.is_some(),
            host,
            port: self.shared.port,
        };
        match self.shared.oss_cluster {
            true => self
                .shared
                .serving_nodes()
                .into_iter()
                .map(|n| match self.shared.external_ips {
                    true => at(n.external_ip().to_string()),
                    false => at(n.internal_ip().to_string()),
                })
                .collect(),
            false => vec![at("127.0.0.1".into())],
        }
    }

    /// The database's endpoint as a real cluster describes it (`raw_endpoints`
    /// of the endpoints file and of `create_database`'s output), field for field.
    pub fn raw_endpoint(&self) -> Value {
        json!({
            "addr": [self.shared.active_node().internal_ip().to_string()],
            "addr_type": "internal",
            "dns_name": self.shared.naming.database(self.shared.port),
            "oss_cluster_api_preferred_endpoint_type": "ip",
            "oss_cluster_api_preferred_ip_type": if self.shared.external_ips { "external" } else { "internal" },
            "port": self.shared.port,
            "proxy_policy": if self.shared.oss_cluster { "all-master-shards" } else { "single" },
            "uid": format!("{}:1", self.shared.id),
        })
    }

    /// Queues an action on the database: the returned turn resolves when
    /// every action submitted before it has finished, and is held while it runs.
    pub fn queue(self: &Arc<Self>) -> impl std::future::Future<Output = Turn> + Send + 'static {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let db = self.clone();
        // The place in line is taken here, at submission (tokio's mutex is fair).
        let waiting = self.turn.clone().lock_owned();
        async move {
            let guard = waiting.await;
            Turn { db, _guard: guard }
        }
    }

    /// Actions queued or running on the database.
    pub fn actions_queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    async fn shutdown(&self) {
        self.shared.close_all(CloseCause::Shutdown);
        self.cancel.cancel();
        self.shards.lock().await.stop().await;
    }
}

/// The emulated cluster.
pub struct Emulator {
    /// Configuration.
    pub config: EmulatorConfig,
    /// Settings of the whole cluster (`update_cluster_config`).
    pub cluster: Arc<ClusterSettings>,
    bin: PathBuf,
    workdir: tempfile::TempDir,
    databases: Mutex<BTreeMap<u64, Arc<Database>>>,
    next_db: AtomicU64,
    next_shard: AtomicU32,
    tls: Mutex<Option<Arc<tls::TlsMaterial>>>,
    /// Nodes and proxies down.
    outages: outages::Outages,
    /// The discovery service's state (where it listens, the moves it tells).
    discovery: Arc<discovery::Hub>,
    key_specs: tokio::sync::OnceCell<Arc<keys::KeySpecs>>,
    cancel: CancellationToken,
}

impl Emulator {
    /// Checks the configuration and finds `redis-server`; starts nothing yet.
    pub fn new(config: EmulatorConfig) -> Result<Arc<Self>> {
        if config.nodes == 0 || config.nodes > 250 {
            anyhow::bail!("--nodes must be between 1 and 250, got {}", config.nodes);
        }
        let bin = shard::redis_server_bin()?;
        shard::check_version(&bin)?;
        let workdir = tempfile::Builder::new()
            .prefix("maint-e2e-emulator-")
            .disable_cleanup(config.keep_run_dir)
            .tempdir()
            .context("creating the emulator's working directory")?;
        let nodes = config.nodes;
        Ok(Arc::new(Emulator {
            config,
            cluster: Arc::new(ClusterSettings::default()),
            bin,
            workdir,
            databases: Mutex::new(BTreeMap::new()),
            next_db: AtomicU64::new(1),
            next_shard: AtomicU32::new(1),
            tls: Mutex::new(None),
            outages: outages::Outages::default(),
            discovery: Arc::new(discovery::Hub::new(nodes)),
            key_specs: tokio::sync::OnceCell::new(),
            cancel: CancellationToken::new(),
        }))
    }

    /// Where shard logs, certificates and private keys live (removed when the
    /// emulator stops, unless `keep_run_dir`).
    pub fn run_dir(&self) -> &std::path::Path {
        self.workdir.path()
    }

    /// Starts the discovery service on `port` of every node (0: a port free
    /// on all of them), until `cancel`; returns the port.
    pub async fn serve_discovery(
        self: &Arc<Self>,
        port: u16,
        cancel: CancellationToken,
    ) -> Result<u16> {
        discovery::serve(self.clone(), port, cancel).await
    }

    /// The cluster's nodes.
    pub fn nodes(&self) -> Vec<Node> {
        (1..=self.config.nodes)
            .map(|index| Node { index })
            .collect()
    }

    /// The nodes that are up (not stopped by `node_failure`): where shards
    /// and endpoints can go.
    pub fn up_nodes(&self) -> Vec<Node> {
        let nodes = self.nodes();
        nodes
            .into_iter()
            .filter(|n| !self.outages.node_down(n.index))
            .collect()
    }

    /// A database by id.
    pub fn database(&self, id: u64) -> Option<Arc<Database>> {
        self.databases.lock().unwrap().get(&id).cloned()
    }

    /// A database that exists, or a refusal that lists those that do.
    pub fn existing_database(&self, id: u64) -> Result<Arc<Database>, ActionError> {
        self.database(id).ok_or_else(|| {
            ActionError::Invalid(format!(
                "no database with bdb_id {id}; existing: {:?}",
                self.databases.lock().unwrap().keys().collect::<Vec<_>>()
            ))
        })
    }

    /// Runs `action` to its end, as `POST /action` would in the background;
    /// returns its output.
    pub async fn run(self: &Arc<Self>, action: &Action) -> Result<Value, ActionError> {
        operations::run(self, action).await
    }

    /// The forms of a node's address or name `e` is here (none when it is
    /// no node's; several when names do not resolve in the cluster's domain
    /// and every host name is `localhost`): what a MOVING's endpoint really is.
    pub fn endpoint_types_of(&self, e: &crate::notification::Endpoint) -> Vec<EndpointType> {
        use EndpointType::*;
        let mut out: Vec<EndpointType> = Vec::new();
        for node in self.nodes() {
            for ty in [InternalIp, ExternalIp, InternalFqdn, ExternalFqdn] {
                let named = self.config.naming.endpoint(node, ty, e.port);
                if named.as_ref() == Some(e) && !out.contains(&ty) {
                    out.push(ty);
                }
            }
        }
        out
    }

    /// All databases.
    pub fn databases(&self) -> Vec<Arc<Database>> {
        self.databases.lock().unwrap().values().cloned().collect()
    }

    /// The endpoints file describing every database.
    pub fn endpoints_file(&self) -> EndpointsFile {
        EndpointsFile {
            source: "emulator".into(),
            databases: self
                .databases()
                .iter()
                .map(|d| (d.shared.name.clone(), d.config()))
                .collect(),
        }
    }

    /// Deletes a database: proxies closed, shard processes stopped.
    pub async fn delete_database(&self, id: u64) -> Result<(), ActionError> {
        let db = self
            .databases
            .lock()
            .unwrap()
            .remove(&id)
            .ok_or_else(|| ActionError::Invalid(format!("no database with bdb_id {id}")))?;
        self.outages.forget_database(id);
        db.shutdown().await;
        Ok(())
    }

    /// Process ids of every shard (for tests that prove nothing is left behind).
    pub async fn shard_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for db in self.databases() {
            pids.extend(db.shards.lock().await.pids());
        }
        pids
    }

    /// Stops every database and process.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let dbs: Vec<Arc<Database>> = std::mem::take(&mut *self.databases.lock().unwrap())
            .into_values()
            .collect();
        futures::future::join_all(dbs.iter().map(|db| db.shutdown())).await;
    }
}
