//! How a database comes to be: its shard processes (one primary per slot
//! range, a replica of each on another node), its port, its endpoint proxies
//! on 127.0.0.1 and on the node that holds the endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::database::{DbShared, Node, Route};
use super::shard::{Shard, ShardSet, ShardSpec, Shards};
use super::slot_map::SlotMap;
use super::{
    keys, oss_cluster, proxy, tls, ActionError, Database, Emulator, DATABASE_PORTS,
    PORT_UNAVAILABLE,
};
use crate::fault_injector::DatabaseSpec;

impl Emulator {
    pub(crate) async fn start_shard(
        &self,
        node: Node,
        replica_of: Option<SocketAddr>,
        password: Option<String>,
        args: &[String],
    ) -> Result<Shard> {
        self.start_shard_in(node, replica_of, password, args, false)
            .await
    }

    /// Starts a shard, in cluster mode when `cluster` (an OSS Cluster API
    /// database's: attached to the others by [`oss_cluster::form`]).
    pub(crate) async fn start_shard_in(
        &self,
        node: Node,
        replica_of: Option<SocketAddr>,
        password: Option<String>,
        args: &[String],
        cluster: bool,
    ) -> Result<Shard> {
        let id = self.next_shard.fetch_add(1, Ordering::SeqCst);
        Shard::start(
            &self.bin,
            self.workdir.path(),
            ShardSpec {
                id,
                node: node.index,
                replica_of,
                password,
                args: args.to_vec(),
                cluster,
            },
        )
        .await
    }

    /// Which arguments of each command are keys, read from a shard's `COMMAND`
    /// once.
    async fn key_specs(&self, shard: &Shard) -> Result<Arc<keys::KeySpecs>> {
        self.key_specs
            .get_or_try_init(|| async {
                let mut c = shard.connect().await?;
                let reply: redis::Value = redis::cmd("COMMAND")
                    .query_async(&mut c)
                    .await
                    .context("reading the shard's COMMAND table")?;
                let specs = keys::KeySpecs::from_command_reply(&reply);
                anyhow::ensure!(
                    !specs.is_empty(),
                    "the shard's COMMAND table listed no command"
                );
                Ok(Arc::new(specs))
            })
            .await
            .cloned()
    }

    /// Starts the shards of a new database: `count` primaries on consecutive
    /// nodes from `first` (all on `first` when `dense`), each with a replica
    /// on the next node when asked.
    /// In cluster mode they are made one Redis Cluster, the slots split
    /// evenly among the primaries in order.
    async fn start_shards(
        &self,
        placement: Placement,
        count: usize,
        replication: bool,
        password: &Option<String>,
        args: &[String],
        cluster: bool,
    ) -> Result<Shards> {
        let nodes = self.up_nodes();
        let mut shards = Shards::default();
        for i in 0..count {
            let at = placement.primary(i);
            let started = async {
                let primary = self
                    .start_shard_in(
                        nodes[at % nodes.len()],
                        None,
                        password.clone(),
                        args,
                        cluster,
                    )
                    .await?;
                let replica = if replication {
                    let node = nodes[(at + 1) % nodes.len()];
                    // A cluster replica follows its primary once formed.
                    let of = (!cluster).then_some(primary.addr);
                    match self
                        .start_shard_in(node, of, password.clone(), args, cluster)
                        .await
                    {
                        Ok(r) => Some(r),
                        Err(e) => {
                            primary.stop().await;
                            return Err(e);
                        }
                    }
                } else {
                    None
                };
                Ok::<_, anyhow::Error>(ShardSet {
                    primary,
                    replica,
                    slots: keys::slot_range(i, count),
                })
            }
            .await;
            match started {
                Ok(set) => shards.sets.push(set),
                Err(e) => {
                    shards.stop().await;
                    return Err(e);
                }
            }
        }
        if cluster {
            let primaries: Vec<&Shard> = shards.sets.iter().map(|s| &s.primary).collect();
            let replicas: Vec<(usize, &Shard)> = shards
                .sets
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.replica.as_ref().map(|r| (i, r)))
                .collect();
            let formed =
                oss_cluster::form(&primaries, &replicas, self.config.timings.sync_timeout).await;
            if let Err(e) = formed {
                shards.stop().await;
                return Err(e.context("forming the Redis Cluster of an OSS Cluster API database"));
            }
        }
        for set in &shards.sets {
            if let Some(r) = &set.replica {
                if let Err(e) = r.wait_link_up(self.config.timings.sync_timeout).await {
                    shards.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(shards)
    }

    /// Creates a database: its primary shards (one per slot range), a replica
    /// of each on another node (with replication), the endpoint proxy and the
    /// public address.
    pub async fn create_database(&self, spec: DatabaseSpec) -> Result<Arc<Database>, ActionError> {
        use ActionError::Invalid;
        let cluster = spec.oss_cluster.unwrap_or(false);
        let external = match spec.oss_cluster_api_preferred_ip_type.as_deref() {
            None | Some("internal") => false,
            Some("external") => true,
            Some(other) => {
                return Err(Invalid(format!(
                    "oss_cluster_api_preferred_ip_type is internal or external, got {other:?}"
                )))
            }
        };
        let count = spec.shard_count()?;
        let shard_args = spec.shard_args(count)?;
        let tls_policy = spec.tls_policy()?;
        spec.timing.validate()?;
        let name = spec.name.clone();
        if let Some(name) = &name {
            if self.databases().iter().any(|d| &d.shared.name == name) {
                return Err(Invalid(format!(
                    "a database named {name:?} exists already; choose another name"
                )));
            }
        }
        if let Some(p) = spec.wanted_port() {
            self.check_port(p)?;
        }
        let id = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = name.unwrap_or_else(|| format!("db{id}"));
        let nodes = self.up_nodes();
        let first = (id as usize - 1) % nodes.len();
        let dense = spec.dense()?;
        let failed = ActionError::from;
        let mut shards = self
            .start_shards(
                Placement { first, dense },
                count as usize,
                spec.replication.unwrap_or(true),
                &spec.password,
                &shard_args,
                cluster,
            )
            .await
            .map_err(failed)?;
        let prepared = async {
            let key_specs = if count > 1 || cluster {
                Some(self.key_specs(&shards.sets[0].primary).await?)
            } else {
                None
            };
            let tls = match tls_policy {
                Some(policy) => {
                    let material = self.tls_material()?;
                    Some(tls::EndpointTls {
                        acceptor: material.acceptor(policy)?,
                        material,
                        policy,
                    })
                }
                None => None,
            };
            Ok::<_, anyhow::Error>((key_specs, tls))
        }
        .await;
        let (key_specs, tls) = match prepared {
            Ok(p) => p,
            Err(e) => {
                shards.stop().await;
                return Err(failed(e));
            }
        };
        // A port the emulator picked may be taken by another process before
        // the proxy binds it: then the next one is tried.
        let attempts = if spec.wanted_port().is_some() { 1 } else { 5 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match spec.wanted_port() {
                Some(p) => p,
                None => match self.free_database_port() {
                    Ok(p) => p,
                    Err(e) => {
                        shards.stop().await;
                        return Err(failed(e));
                    }
                },
            };
            let upstreams = shards.sets.iter().map(|s| s.primary.addr).collect();
            let mut shared = DbShared::new(id, name.clone(), port, upstreams, nodes[first]);
            if cluster {
                let at: Vec<Node> = shards
                    .sets
                    .iter()
                    .map(|s| Node {
                        index: s.primary.node,
                    })
                    .collect();
                for (s, n) in shards.sets.iter().zip(&at) {
                    shared.set_shard_node(s.primary.addr, *n);
                    if let Some(r) = &s.replica {
                        shared.set_shard_node(r.addr, Node { index: r.node });
                    }
                }
                shared.route = Arc::new(tokio::sync::RwLock::new(Route {
                    upstreams: shards.sets.iter().map(|s| s.primary.addr).collect(),
                    cluster: Some(SlotMap::even(at)),
                }));
                shared.oss_cluster = true;
                shared.external_ips = external;
            }
            shared.replay_completion = spec
                .replay_completion
                .unwrap_or(self.config.replay_completion);
            shared.max_connections = spec.max_connections.unwrap_or(self.config.max_connections);
            shared.naming = self.config.naming.clone();
            shared.cluster = self.cluster.clone();
            shared.discovery = self.discovery.clone();
            shared.key_specs = key_specs.clone();
            let shared = Arc::new(shared);
            let db = Arc::new(Database {
                shared: shared.clone(),
                timings: self.config.timings.with(&spec.timing),
                password: spec.password.clone(),
                credentials: spec.credentials(),
                tls: tls.clone(),
                shards: tokio::sync::Mutex::new(shards),
                shard_args: shard_args.clone(),
                listeners: Mutex::new(HashMap::new()),
                cancel: self.cancel.child_token(),
                turn: Arc::new(tokio::sync::Mutex::new(())),
                queued: AtomicUsize::new(0),
            });
            let started = async {
                let acceptor = db.tls.as_ref().map(|t| t.acceptor.clone());
                proxy::listen::listen_public(shared.clone(), acceptor, db.cancel.clone()).await?;
                // Each node that holds a primary fronts it (an OSS Cluster
                // API database); else the endpoint lives on one node.
                let mut at = vec![nodes[first]];
                if cluster {
                    let shards = db.shards.lock().await;
                    at = shards
                        .sets
                        .iter()
                        .map(|s| Node {
                            index: s.primary.node,
                        })
                        .collect();
                }
                for node in at {
                    db.listen_on(node).await?;
                }
                anyhow::Ok(())
            }
            .await;
            let e = match started {
                Ok(()) => {
                    self.databases.lock().unwrap().insert(id, db.clone());
                    tracing::info!(bdb_id = id, port, shards = count, "database created");
                    return Ok(db);
                }
                Err(e) => e,
            };
            // Stop listening, keep the shards for the next port.
            db.cancel.cancel();
            db.shared
                .close_all(crate::server_record::CloseCause::Shutdown);
            match Arc::try_unwrap(db) {
                Ok(db) if attempt < attempts => {
                    tracing::debug!(port, "port taken before the bind ({e:#}); trying another");
                    shards = db.shards.into_inner();
                }
                Ok(db) => {
                    db.shards.into_inner().stop().await;
                    return Err(Invalid(format!(
                        "{PORT_UNAVAILABLE}: {e:#}; choose another port"
                    )));
                }
                Err(db) => {
                    db.shutdown().await;
                    return Err(Invalid(format!(
                        "{PORT_UNAVAILABLE}: {e:#}; choose another port"
                    )));
                }
            }
        }
    }

    /// Refuses a port that is taken, in the words a real cluster uses.
    pub(crate) fn check_port(&self, port: u16) -> Result<(), ActionError> {
        if port < 1024 || !self.port_is_free(port) {
            return Err(ActionError::Invalid(format!(
                "{PORT_UNAVAILABLE}: port {port} is taken on 127.0.0.1 or on a node address (or below 1024); choose another port or leave it out"
            )));
        }
        Ok(())
    }

    /// The emulator's CA and server certificate, made on first use.
    fn tls_material(&self) -> Result<Arc<tls::TlsMaterial>> {
        let mut t = self.tls.lock().unwrap();
        if let Some(t) = &*t {
            return Ok(t.clone());
        }
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        for n in self.nodes() {
            names.push(n.internal_ip().to_string());
            names.push(n.external_ip().to_string());
        }
        names.extend(self.config.naming.certificate_names());
        let made = Arc::new(tls::TlsMaterial::generate(
            &self.workdir.path().join("tls"),
            "maint-e2e emulator CA",
            &names,
        )?);
        *t = Some(made.clone());
        Ok(made)
    }

    /// True when `port` can be bound on the public address and on every node.
    fn port_is_free(&self, port: u16) -> bool {
        let mut addrs: Vec<std::net::SocketAddr> = vec![([127, 0, 0, 1], port).into()];
        for n in self.nodes() {
            addrs.push((n.internal_ip(), port).into());
            addrs.push((n.external_ip(), port).into());
        }
        // Held together, so that each address is checked while the others are taken.
        let held: Result<Vec<_>, _> = addrs.iter().map(std::net::TcpListener::bind).collect();
        // The public address on `::1` too, where the machine has IPv6 loopback.
        let v6_free = match std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        };
        held.is_ok() && v6_free
    }

    /// A port free on the public address and on every node, from the range a
    /// real cluster gives databases. The range lies below the kernel's
    /// ephemeral ports, so an outgoing connection (a replica's, a test's)
    /// cannot take the port between this probe and the proxy's bind; the
    /// scan starts at a different place in every process.
    fn free_database_port(&self) -> Result<u16> {
        let (first, len) = (DATABASE_PORTS.start, DATABASE_PORTS.len());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0)
            ^ (std::process::id() as usize).wrapping_mul(7919);
        (0..len)
            .map(|i| first + ((seed + i) % len) as u16)
            .find(|&p| self.port_is_free(p))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no port in {DATABASE_PORTS:?} is free on 127.0.0.1 and every node address; stop what holds them or pass a port"
                )
            })
    }
}

/// Where a new database's primaries go: on consecutive nodes from `first`,
/// or all on `first` (`dense`).
#[derive(Clone, Copy)]
struct Placement {
    first: usize,
    dense: bool,
}

impl Placement {
    /// The node (its position among the nodes up) of primary `i`.
    fn primary(self, i: usize) -> usize {
        match self.dense {
            true => self.first,
            false => self.first + i,
        }
    }
}
