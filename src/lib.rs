//! maint-e2e: prove that a Redis client survives Redis Enterprise maintenance.
//!
//! Map of the crate:
//! * [`notification`]: the wire contract, typed notifications <-> RESP3 push frames;
//! * [`config`]: endpoints files and the environment that picks the target;
//! * [`fault_injector`]: the fault injector's HTTP API types and client;
//! * [`emulator`]: a local Redis Enterprise stand-in (real `redis-server` shards,
//!   endpoint proxies that emit notifications and read client bytes as the
//!   server does, pub/sub that follows a shard, the fault injector API;
//!   OSS Cluster API databases: cluster-mode shards behind a proxy per node,
//!   `slot_migrate` moving slots for real, SMIGRATING / SMIGRATED);
//! * [`client`]: the client under test, smart client handoffs on redis-rs over
//!   its own TCP and TLS (trusted CA, client certificate, versions, credentials),
//!   with pub/sub subscriptions that follow each handoff, and a cluster client
//!   (`client::cluster`: a connection per node, slot routing, SMIGRATED); its
//!   relaxation state machine in `client::relax`. It imports nothing of the
//!   suite below (`tests/layout.rs` keeps it so, and keeps imports free of
//!   circles);
//! * [`server_record`]: the server's record of a database (every client
//!   connection from accept to close, every endpoint move), as the emulator
//!   serves it and the suite's claims read it;
//! * [`duration_text`]: durations written the one way features write them;
//! * [`slots`]: hash slots, as the proxies and the cluster client compute them;
//! * [`tracker`]: every client event of a scenario, and waiting on them;
//! * [`timeline`]: every claim about a client, as a pure function over its events
//!   (by family), the server's record (`timeline::server`) or its requests
//!   (`timeline::requests`);
//! * [`workload`]: background traffic, error classes, acknowledged-write ledger;
//! * [`raw`]: raw RESP connections, to check what a server sends byte for byte;
//! * [`wait`]: the one way to wait, with a bound (on a notified change, or by polling);
//! * [`timing`]: every fixed duration of the harness, with why it has its value;
//! * [`driver`]: other clients under test, each through a driver process (docs/DRIVERS.md);
//! * [`steps`]: the cucumber World and step definitions;
//! * [`suite`]: the acceptance suite as one call (features, target, reports);
//! * [`report`]: the living documentation: each scenario with its timeline, as a page, JSON and cucumber JSON;
//!   and the conformance matrix of several clients' runs (`report::matrix`);
//! * [`bench`]: benchmarks of the emulator (proxy overhead, fan-out, handoff at scale).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use client::{Client, ClientError, ClientFactory, ClientOptions, Mode};
pub use config::{DatabaseConfig, EndpointsFile, Target};
pub use emulator::{Emulator, EmulatorConfig, Timings};
pub use fault_injector::{Action, DatabaseSpec, FaultInjectorClient};
pub use notification::{EndpointType, Kind, Notification};
pub use tracker::Tracker;

pub mod bench;
pub mod client;
pub mod config;
pub mod driver;
pub mod duration_text;
pub mod emulator;
pub mod fault_injector;
pub mod notification;
pub mod raw;
pub mod report;
pub mod server_record;
pub mod slots;
pub mod steps;
pub mod suite;
pub mod timeline;
pub mod timing;
pub mod tracker;
pub mod wait;
pub mod workload;
