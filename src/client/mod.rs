//! The client under test: smart client handoffs on top of redis-rs.
//!
//! redis-rs delivers maintenance pushes it does not know through the push sender
//! of a `MultiplexedConnection`; this layer reads them, relaxes timeouts while a
//! window is open, and hands connections off to the endpoint MOVING names. See
//! `CLIENT.md` for the behaviour and [`ClientOptions`] for the knobs.

pub mod cluster;
pub mod connection;
mod discovery;
mod error;
pub mod events;
mod options;
pub mod pubsub;
mod relax;
mod slot_events;
pub mod slot_table;
pub mod tls;
mod transport;

pub use error::{Cause, ClientError};
pub use options::{ClientOptions, EndpointTypeSetting, Mode, Protocol, UnknownMode};
pub use tls::{ClientCertificate, TlsOptions, TrustedCa};
pub use transport::SocketGauge;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redis::FromRedisValue;
use tokio::time::Instant;

use crate::config::DatabaseConfig;
use crate::notification::{Endpoint, EndpointType};
use crate::timing::RESOLVE_CAP;
use connection::ManagedConnection;
pub use events::{ClientEvent, EventKind, EventSink, MaintState, NoEvents};

/// Resolves the `auto` endpoint type: TLS -> fqdn, plain -> ip; a private,
/// loopback, link-local or CGNAT address -> internal, otherwise external. Names
/// are resolved with a 2 s cap; a name that does not resolve counts as external.
pub async fn auto_endpoint_type(host: &str, port: u16, tls: bool) -> EndpointType {
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => tokio::time::timeout(RESOLVE_CAP, tokio::net::lookup_host((host, port)))
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|mut it| it.next())
            .map(|a| a.ip()),
    };
    EndpointType::for_address(ip, tls)
}

/// An open MOVING window of a client: new connections go to its endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Redirect {
    pub endpoint: Endpoint,
    pub until: Instant,
}

/// Shared by the connections of one client.
pub(crate) struct ClientShared {
    pub name: String,
    pub db: DatabaseConfig,
    pub options: ClientOptions,
    pub sink: Arc<dyn EventSink>,
    pub redirect: Mutex<Option<Redirect>>,
    /// With TLS: what connections are wrapped with.
    pub tls: Option<tls::ClientTls>,
    /// Its open sockets, handoffs' new ones included.
    pub sockets: Arc<SocketGauge>,
    /// A turn to dial for a handoff ([`ClientOptions::handoff_workers`]).
    pub handoff_turns: tokio::sync::Semaphore,
    /// A cluster client's nodes and slot map (set once it connected).
    pub(crate) cluster: std::sync::OnceLock<std::sync::Weak<dyn slot_events::SlotEvents>>,
    /// Where the discovery service says the database is (a client that
    /// finds it there).
    pub discovered: Mutex<Option<Endpoint>>,
}

impl ClientShared {
    pub fn emit(&self, conn: u64, kind: EventKind) {
        self.emit_at(Instant::now(), conn, kind);
    }

    /// Records an event that happened at `at` (recorded later, once acted on).
    pub fn emit_at(&self, at: Instant, conn: u64, kind: EventKind) {
        tracing::debug!(client = %self.name, conn, ?kind, "client event");
        self.sink.record(ClientEvent {
            at,
            client: self.name.clone(),
            conn,
            kind,
        });
    }

    /// Where a new connection should go now.
    pub fn dial_target(&self) -> Endpoint {
        if let Some(r) = self.redirect.lock().unwrap().as_ref() {
            if r.until > Instant::now() {
                return r.endpoint.clone();
            }
        }
        if let Some(e) = self.discovered.lock().unwrap().as_ref() {
            return e.clone();
        }
        let e = self.db.primary_endpoint();
        Endpoint::new(e.host.clone(), e.port)
    }
}

/// A client: a pool of maintenance-aware connections, or a cluster client
/// with one per node.
pub struct Client {
    shared: Arc<ClientShared>,
    conns: Mutex<Vec<Arc<ManagedConnection>>>,
    next: AtomicUsize,
    cluster: Option<Arc<cluster::Cluster>>,
    /// The subscription to the discovery service's `+switch-master`.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Client {
    /// The name given to the factory.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The options it was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.shared.options
    }

    /// Its sockets: open now, and the most at once.
    pub fn sockets(&self) -> &SocketGauge {
        &self.shared.sockets
    }

    /// Its connections (a cluster client's: one per node).
    pub fn connections(&self) -> Vec<Arc<ManagedConnection>> {
        match &self.cluster {
            Some(c) => c.connections(),
            None => self.conns.lock().unwrap().clone(),
        }
    }

    /// A cluster client's nodes and slot map.
    pub fn cluster(&self) -> Option<&Arc<cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// Opens one more connection (to the MOVING target while a window is open).
    pub async fn add_connection(&self) -> Result<Arc<ManagedConnection>, ClientError> {
        let c = ManagedConnection::open(self.shared.clone()).await?;
        self.conns.lock().unwrap().push(c.clone());
        Ok(c)
    }

    /// Runs a command on the next connection of the pool.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClientError> {
        if let Some(c) = &self.cluster {
            let v = c.query(cmd).await?;
            return T::from_redis_value(v).map_err(|e| ClientError::Server(e.to_string()));
        }
        let conn = {
            let conns = self.conns.lock().unwrap();
            conns[self.next.fetch_add(1, Ordering::Relaxed) % conns.len()].clone()
        };
        let v = conn.query(cmd).await?;
        T::from_redis_value(v).map_err(|e| ClientError::Server(e.to_string()))
    }

    /// A cluster client: a connection per node, requests routed by slot.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        if let Some(w) = self.watcher.lock().unwrap().take() {
            w.abort();
        }
        if let Some(c) = &self.cluster {
            c.close().await;
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for c in conns {
            c.close().await;
        }
    }
}

/// The server-visible name of client `name` of a scenario whose keys start
/// with `prefix`: `<prefix>:<name>`, or `name` when it carries the prefix
/// already. `CLIENT SETNAME` takes no spaces: they become `_`.
pub fn server_name(prefix: &str, name: &str) -> String {
    let n = if name.starts_with(prefix) {
        name.to_string()
    } else {
        format!("{prefix}:{name}")
    };
    n.replace(|c: char| c.is_whitespace(), "_")
}

/// Builds clients for one database and tears them all down.
pub struct ClientFactory {
    db: DatabaseConfig,
    sink: Arc<dyn EventSink>,
    clients: Mutex<Vec<Arc<Client>>>,
    /// Builds cluster clients (an OSS Cluster API database).
    cluster: bool,
    /// Gives each client the server-visible name `<prefix>:<client name>`.
    name_prefix: Option<String>,
}

impl ClientFactory {
    /// A factory for `db` whose clients report to `sink`.
    pub fn new(db: DatabaseConfig, sink: Arc<dyn EventSink>) -> Self {
        ClientFactory {
            db,
            sink,
            clients: Mutex::new(Vec::new()),
            cluster: false,
            name_prefix: None,
        }
    }

    /// The same factory, naming each client it makes `<prefix>:<name>` to the
    /// server (unless its options name it): a scenario's clients are then
    /// told apart in the server's record, even on a shared cluster.
    pub fn naming_clients(mut self, prefix: &str) -> Self {
        self.name_prefix = Some(prefix.to_string());
        self
    }

    /// The name the server sees for the client called `name`.
    pub fn server_name(&self, name: &str) -> Option<String> {
        self.name_prefix.as_ref().map(|p| server_name(p, name))
    }

    /// A factory of cluster clients for `db`, an OSS Cluster API database:
    /// each connects to every node its endpoints' slot map names.
    pub fn cluster(db: DatabaseConfig, sink: Arc<dyn EventSink>) -> Self {
        ClientFactory {
            cluster: true,
            ..ClientFactory::new(db, sink)
        }
    }

    /// The database it connects to.
    pub fn database(&self) -> &DatabaseConfig {
        &self.db
    }

    /// Creates a client with `pool_size` connections, all ready.
    pub async fn create(
        &self,
        name: &str,
        mut options: ClientOptions,
    ) -> Result<Arc<Client>, ClientError> {
        if options.client_name.is_none() {
            options.client_name = self.server_name(name);
        }
        let tls = if self.db.tls || self.db.endpoints.iter().any(|e| e.tls) {
            Some(tls::ClientTls::new(&self.db, &options.tls)?)
        } else {
            None
        };
        if options.pool_size == 0 {
            return Err(ClientError::Options("pool_size must be at least 1".into()));
        }
        if options.handoff_workers == 0 {
            return Err(ClientError::Options(
                "handoff_workers must be at least 1".into(),
            ));
        }
        if options.mode == Mode::Enabled && options.protocol == Protocol::Resp2 {
            return Err(ClientError::handshake(
                "maintenance notifications need RESP3; use protocol 3 or mode auto/disabled",
            ));
        }
        let shared = Arc::new(ClientShared {
            name: name.to_string(),
            db: self.db.clone(),
            options: options.clone(),
            sink: self.sink.clone(),
            redirect: Mutex::new(None),
            tls,
            sockets: Arc::default(),
            handoff_turns: tokio::sync::Semaphore::new(options.handoff_workers.max(1)),
            cluster: std::sync::OnceLock::new(),
            discovered: Mutex::new(None),
        });
        let discovery_name = match options.discovery && !self.cluster {
            true => {
                let name = discovery::name(&shared).await;
                let at = discovery::resolve(&shared, &name).await?;
                *shared.discovered.lock().unwrap() = Some(at);
                Some(name)
            }
            false => None,
        };
        if self.cluster {
            let seeds = self
                .db
                .endpoints
                .iter()
                .map(|e| Endpoint::new(e.host.clone(), e.port))
                .collect();
            let cluster = cluster::Cluster::connect(shared.clone(), seeds).await?;
            let client = Arc::new(Client {
                shared,
                conns: Mutex::new(Vec::new()),
                next: AtomicUsize::new(0),
                cluster: Some(cluster),
                watcher: Mutex::new(None),
            });
            self.clients.lock().unwrap().push(client.clone());
            return Ok(client);
        }
        let client = Arc::new(Client {
            shared,
            conns: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            cluster: None,
            watcher: Mutex::new(None),
        });
        if let Some(name) = discovery_name {
            let services = self.db.discovery_endpoints.clone();
            let w = discovery::watch(Arc::downgrade(&client), services, name);
            *client.watcher.lock().unwrap() = Some(w);
        }
        for _ in 0..options.pool_size {
            if let Err(e) = client.add_connection().await {
                client.close().await;
                return Err(e);
            }
        }
        self.clients.lock().unwrap().push(client.clone());
        Ok(client)
    }

    /// Closes every client it created.
    pub async fn destroy_all(&self) {
        let clients = std::mem::take(&mut *self.clients.lock().unwrap());
        for c in clients {
            c.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_pool_of_no_connections_is_an_options_error_and_nothing_is_dialled() {
        // Port 9 on loopback: nothing listens, and nothing must be dialled.
        let endpoint = crate::config::DatabaseEndpoint::plain(([127, 0, 0, 1], 9).into());
        let db = DatabaseConfig::at("x", endpoint);
        let options = ClientOptions {
            pool_size: 0,
            ..ClientOptions::default()
        };
        let e = ClientFactory::new(db, Arc::new(NoEvents))
            .create("c", options)
            .await
            .err()
            .expect("a pool of no connections is refused");
        assert_eq!(e.class(), "options", "{e}");
        assert!(e.to_string().contains("pool_size"), "{e}");
    }

    #[test]
    fn relaxation_is_a_floor_and_never_shortens() {
        let o = |normal: Option<u64>, relaxed: u64| ClientOptions {
            response_timeout: normal.map(Duration::from_secs),
            relaxed_timeout: Duration::from_secs(relaxed),
            ..ClientOptions::default()
        };
        assert_eq!(
            o(Some(1), 3).relaxed_effective(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            o(Some(30), 3).relaxed_effective(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(o(None, 3).relaxed_effective(), None);
    }

    #[test]
    fn backstop_and_tail_default_to_multiples_of_relaxed() {
        let o = ClientOptions::default();
        assert_eq!(o.window_max(), Duration::from_secs(30));
        assert_eq!(o.post_relaxed(), Duration::from_secs(20));
    }

    #[tokio::test]
    async fn auto_endpoint_type_follows_tls_and_address_class() {
        use EndpointType::*;
        let cases = [
            ("127.0.0.1", false, InternalIp),
            ("10.1.2.3", true, InternalFqdn),
            ("100.64.0.9", false, InternalIp),
            ("169.254.1.1", false, InternalIp),
            ("::1", false, InternalIp),
            ("8.8.8.8", false, ExternalIp),
            ("203.0.113.7", true, ExternalFqdn),
            ("localhost", false, InternalIp),
        ];
        for (host, tls, want) in cases {
            assert_eq!(
                auto_endpoint_type(host, 6379, tls).await,
                want,
                "{host} tls={tls}"
            );
        }
    }

    #[test]
    fn modes_parse_with_a_helpful_error() {
        assert_eq!(Mode::parse("Enabled"), Ok(Mode::Enabled));
        assert!(Mode::parse("on")
            .unwrap_err()
            .to_string()
            .contains("disabled, enabled or auto"));
    }
}
