//! maint-e2e: prove that a Redis client survives Redis Enterprise maintenance.
//!
//! Map of the crate:
//! * [`notification`]: the wire contract, typed notifications <-> RESP3 push frames;
//! * [`config`]: endpoints files and the environment that picks the target;
//! * [`fault_injector`]: the fault injector's HTTP API types and client;
//! * [`emulator`]: a local Redis Enterprise stand-in (real `redis-server` shards,
//!   endpoint proxies that emit notifications, the fault injector API);
//! * [`client`]: the client under test, smart client handoffs on redis-rs;
//! * [`tracker`]: every notification and client event, and the assertions on them;
//! * [`workload`]: background traffic, error classes, acknowledged-write ledger;
//! * [`probe`]: raw RESP connections, to check what a server sends byte for byte;
//! * [`wait`]: bounded waits on conditions that change with a notification;
//! * [`steps`]: the cucumber World and step definitions.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod emulator;
pub mod fault_injector;
pub mod notification;
pub mod probe;
pub mod steps;
pub mod tracker;
pub mod wait;
pub mod workload;
