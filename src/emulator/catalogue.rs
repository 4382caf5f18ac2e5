//! The trigger catalogue: which emulator maintenance produces each effect a
//! standalone client can observe (`GET /topology-change-standalone`), and the
//! database each trigger needs.

use serde_json::{json, Value};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{ActionError, Emulator, DATABASE_PORTS};

/// What a trigger runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steps {
    /// MIGRATING, the shard moves to another node, MIGRATED.
    Migrate,
    /// FAILING_OVER, the replica is promoted, FAILED_OVER.
    Failover,
    /// MOVING; the endpoint moves; the old one closes after the grace.
    Bind,
    /// No push: the database's name and public address lead to another
    /// node; the old node closes its connections after the grace.
    AddressChange,
    /// A migration, then the endpoint follows the data (MOVING).
    MigrateThenBind,
}

/// One trigger of one effect.
#[derive(Debug)]
pub struct Trigger {
    /// The effect it produces.
    pub effect: &'static str,
    /// Its name, as real clusters' catalogues give it.
    pub name: &'static str,
    /// Older names it is also called by.
    pub aliases: &'static [&'static str],
    /// What it does, in a sentence.
    pub description: &'static str,
    /// What it runs.
    pub steps: Steps,
}

/// Every effect, with its triggers; the first trigger is the default.
pub const TRIGGERS: &[Trigger] = &[
    Trigger {
        effect: "data_movement_no_conn_drop",
        name: "migrate",
        aliases: &["shard_migrate"],
        description: "MIGRATING, the primary shard is copied to a new redis-server on another node and traffic switches to it, MIGRATED; connections stay open",
        steps: Steps::Migrate,
    },
    Trigger {
        effect: "data_movement_no_conn_drop",
        name: "failover",
        aliases: &["shard_failover"],
        description: "FAILING_OVER, the replica is promoted once it has caught up, FAILED_OVER; connections stay open",
        steps: Steps::Failover,
    },
    Trigger {
        effect: "data_movement_conn_drop",
        name: "migrate",
        aliases: &["shard_migrate_endpoint_follows"],
        description: "MIGRATING, the primary shard moves to another node, MIGRATED; a notification lead later the endpoint moves to that node: MOVING, and connections left on the old endpoint are closed after the grace",
        steps: Steps::MigrateThenBind,
    },
    Trigger {
        effect: "conn_drop",
        name: "endpoint_rebind",
        aliases: &[],
        description: "the endpoint moves to another node: MOVING, and connections left on the old endpoint are closed after the grace",
        steps: Steps::Bind,
    },
    Trigger {
        effect: "dns_resolution_change",
        name: "endpoint_address_change",
        aliases: &[],
        description: "the database's name and public address now lead to another node, and nobody is told: no push; after the grace the old node lets each connection go at its next pause after a reply",
        steps: Steps::AddressChange,
    },
];

/// The effects, in catalogue order.
pub fn effects() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in TRIGGERS {
        if !out.contains(&t.effect) {
            out.push(t.effect);
        }
    }
    out
}

/// The trigger `name` of `effect` (its first one when `name` is `None`).
pub fn resolve(effect: &str, name: Option<&str>) -> Result<&'static Trigger, ActionError> {
    let of_effect: Vec<&Trigger> = TRIGGERS.iter().filter(|t| t.effect == effect).collect();
    if of_effect.is_empty() {
        return Err(ActionError::Invalid(format!(
            "unknown effect {effect:?}; the emulator produces {}",
            effects().join(", ")
        )));
    }
    match name {
        None => Ok(of_effect[0]),
        Some(n) => of_effect
            .iter()
            .copied()
            .find(|t| t.name == n || t.aliases.contains(&n))
            .ok_or_else(|| {
                ActionError::Invalid(format!(
                    "effect {effect} has no trigger {n:?}; its triggers are {}",
                    of_effect
                        .iter()
                        .map(|t| t.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }),
    }
}

/// The database shapes a standalone trigger can be run on, as `config`
/// names them: `(config, shards, TLS, mutual TLS, what it is)`. The TLS
/// ones are listed only when asked for (`include_tls=true`).
const CONFIGS: &[(&str, usize, bool, bool, &str)] = &[
    ("single", 1, false, false, "a standalone database with one primary shard and a replica on another node"),
    ("scaled_single", 2, false, false, "a standalone database with two primary shards behind one endpoint, each with a replica on another node"),
    ("single_tls", 1, true, false, "the single database, its endpoint behind TLS"),
    ("mtls", 1, true, true, "the single database, its endpoint behind TLS that requires a client certificate"),
];

/// Calls of the catalogue so far (names and ports differ from one call to
/// the next: suites that run side by side never ask for the same database).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// The next port offered to a requirement (walks the database ports).
static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// The body of `GET /topology-change-standalone?effect=E[&include_tls=true]`:
/// each trigger with a requirement per database shape (`config`), each
/// with a `dbconfig` that `create_database` takes as it is, its name and
/// port unique to this call.
pub fn standalone(emu: &Emulator, effect: &str, include_tls: bool) -> Result<Value, ActionError> {
    resolve(effect, None)?;
    let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let triggers: Vec<Value> = TRIGGERS
        .iter()
        .filter(|t| t.effect == effect)
        .map(|t| {
            let requirements: Vec<Value> = CONFIGS
                .iter()
                .filter(|(_, _, tls, _, _)| include_tls || !tls)
                .map(|&(config, shards, tls, mtls, description)| {
                    let mut dbconfig = json!({
                        // Callers keep the part before the last two dashes
                        // as the name of the database they create.
                        "name": format!(
                            "maint-e2e-{}-{}-c{call}-db-1",
                            t.name.replace('_', ""),
                            config.replace('_', "")
                        ),
                        "port": offered_port(emu),
                        "shards_count": shards,
                        "replication": true,
                        "oss_cluster": false,
                        "tls": tls,
                    });
                    if mtls {
                        dbconfig["enforce_client_authentication"] = json!("enabled");
                    }
                    json!({ "config": config, "dbconfig": dbconfig, "description": description })
                })
                .collect();
            json!({
                "name": t.name,
                "description": t.description,
                "requirements": requirements,
            })
        })
        .collect();
    Ok(json!({ "effect": effect, "cluster": cluster(emu), "triggers": triggers }))
}

/// A database port that is free now and was not offered before in this
/// process (until the range wraps).
fn offered_port(emu: &Emulator) -> u16 {
    let (first, len) = (DATABASE_PORTS.start, DATABASE_PORTS.len());
    let start = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    for i in 0..len {
        let port = first + ((start + i) % len) as u16;
        if emu.check_port(port).is_ok() {
            NEXT_PORT.fetch_add(i, Ordering::Relaxed);
            return port;
        }
    }
    first + (start % len) as u16
}

/// The body of `GET /slot-migrate?effect=E`: the triggers the emulator
/// runs for that effect, each with the database it needs (`nodes` is a
/// number here, as the real catalogue gives it).
pub fn slot_migrate(emu: &Emulator, effect: &str) -> Result<Value, ActionError> {
    use super::operations::slot_migrate::{EFFECTS, TRIGGERS};
    if !EFFECTS.contains(&effect) {
        return Err(ActionError::Invalid(format!(
            "unknown effect {effect:?}; one of {}",
            EFFECTS.join(", ")
        )));
    }
    let nodes = emu.nodes().len();
    let description = match effect {
        "slot-shuffle" => "slots move between nodes that serve slots",
        "add" => "a node that held no slot takes some",
        "remove" => "a node gives its slots to the others and leaves",
        _ => "a node's slots go to a node that held none, and it leaves",
    };
    // Shards the database needs for the effect to have room, as the real
    // catalogue sizes them; replicas only for failover.
    let shards = |trigger: &str| match (effect, trigger) {
        ("remove-add", "failover") => 1,
        ("remove-add", _) => nodes.saturating_sub(1).max(1),
        ("add", "failover") => 2,
        ("slot-shuffle", _) => 2 * nodes,
        _ => nodes,
    };
    // Adding a node by failover keeps every node that served slots: both
    // primaries start on one node, and one of them fails over to the next
    // (node-redis counts one master more after an add).
    let dense = |trigger: &str| effect == "add" && trigger == "failover";
    let how = |trigger: &str| match trigger {
        "failover" => "by failover: a shard's replica on another node takes over its slots",
        _ => {
            "by slot migration: importing / migrating slots, keys moved with MIGRATE, ASK meanwhile"
        }
    };
    let triggers: Vec<Value> = TRIGGERS
        .iter()
        .map(|t| {
            let shards = shards(t);
            let replication = *t == "failover";
            // One per address class the cluster API can name nodes in
            // (callers outside the cluster's network skip `internal`).
            let requirements: Vec<Value> = ["internal", "external"]
                .iter()
                .map(|ip| json!({
                    "dbconfig": {
                        "name": format!("maint-e2e-{effect}-{t}-{ip}-db-1"),
                        "shards_count": shards,
                        "replication": replication,
                        "oss_cluster": true,
                        "oss_cluster_api_preferred_ip_type": ip,
                        "proxy_policy": "all-master-shards",
                        "shards_placement": if dense(t) { "dense" } else { "sparse" },
                        "tls": false,
                    },
                    "cluster": { "min_nodes": nodes.min(2), "actual_nodes": nodes },
                    "oss_cluster_api": { "ip_type": ip, "endpoint_type": "ip" },
                    "description": format!(
                        "an OSS Cluster API database of {shards} primary shard(s){}{} over {nodes} nodes, its nodes named by {ip} IP",
                        if dense(t) { " on one node" } else { "" },
                        if replication { ", each with a replica on the next node" } else { "" }
                    ),
                }))
                .collect();
            json!({
                "name": t,
                "description": format!("{description}, {}", how(t)),
                "requirements": requirements,
            })
        })
        .collect();
    Ok(json!({
        "effect": effect,
        "cluster": { "index": 0, "nodes": nodes },
        "triggers": triggers,
    }))
}

fn cluster(emu: &Emulator) -> Value {
    json!({
        "index": 0,
        "nodes": emu
            .nodes()
            .iter()
            .map(|n| json!({ "host": n.internal_ip().to_string(), "port": 0, "id": n.index }))
            .collect::<Vec<_>>(),
    })
}
