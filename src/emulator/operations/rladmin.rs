//! `execute_rladmin_command`: the `rladmin` commands clients' suites send,
//! run on the emulated cluster. The output is what rladmin prints, with the
//! node it ran on (`{"output": "<text>", "node_id": 1}`); a command that would
//! change nothing fails, as rladmin exits non-zero.
//!
//! * `status` (`status nodes|shards|endpoints|databases` for one section);
//! * `bind endpoint <db>:<n> exclude <node>`: the endpoint leaves that node
//!   (a rebind, MOVING and all); `bind endpoint <db>:<n> policy single`;
//! * `migrate node <a> all_shards target_node <b>`: every primary shard of the
//!   action's database on node a moves to node b;
//! * `failover shard <id> [<id>...]` (also `failover db db:<id> shard ...`);
//! * `tune cluster endpoint_rebind_propagation_grace_time <s>`: the MOVING
//!   grace of every later rebind (an action's own `grace_s` still wins).

use std::time::Duration;

use serde_json::{json, Value};

use super::{bind, failover, migrate, timings};
use crate::emulator::{ActionError, Database, Emulator};
use crate::fault_injector::TimingOverrides;

/// The node rladmin runs on.
const RLADMIN_NODE: usize = 1;

/// A parsed rladmin command.
#[derive(Debug, PartialEq)]
enum Command {
    /// `status`, or one of its sections.
    Status(Option<Section>),
    /// `bind endpoint <db>:<n> exclude <node>`.
    BindExclude { bdb_id: u64, node: usize },
    /// `bind endpoint <db>:<n> policy single`.
    BindPolicySingle { bdb_id: u64 },
    /// `migrate node <from> all_shards target_node <to>`.
    MigrateNode { from: usize, to: usize },
    /// `failover [db db:<id>] shard <ids>`.
    Failover {
        bdb_id: Option<u64>,
        shards: Vec<u32>,
    },
    /// `tune cluster endpoint_rebind_propagation_grace_time <s>`.
    TuneRebindGrace(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Section {
    Nodes,
    Databases,
    Endpoints,
    Shards,
}

/// What rladmin commands the emulator runs, for error messages.
const KNOWN: &str = "status [nodes|databases|endpoints|shards], bind endpoint <db>:<n> exclude <node> | policy single, migrate node <a> all_shards target_node <b>, failover [db db:<id>] shard <ids>, tune cluster endpoint_rebind_propagation_grace_time <s>";

fn parse(command: &str) -> Result<Command, ActionError> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let unknown = || {
        ActionError::Invalid(format!(
            "rladmin command {command:?} is not emulated; these are: {KNOWN}"
        ))
    };
    let number = |w: &str, what: &str| -> Result<u64, ActionError> {
        let digits = w.rsplit(':').next().unwrap_or(w);
        digits.parse().map_err(|_| {
            ActionError::Invalid(format!("rladmin {command:?}: {what} {w:?} is not a number"))
        })
    };
    Ok(match words.as_slice() {
        ["status"] => Command::Status(None),
        ["status", s, ..] => Command::Status(Some(match *s {
            "nodes" => Section::Nodes,
            "databases" => Section::Databases,
            "endpoints" => Section::Endpoints,
            "shards" => Section::Shards,
            _ => return Err(unknown()),
        })),
        ["bind", "endpoint", uid, "exclude", node] => Command::BindExclude {
            bdb_id: endpoint_db(uid, command)?,
            node: number(node, "node")? as usize,
        },
        ["bind", "endpoint", uid, "policy", "single"] => Command::BindPolicySingle {
            bdb_id: endpoint_db(uid, command)?,
        },
        ["migrate", "node", from, "all_shards", "target_node", to] => Command::MigrateNode {
            from: number(from, "node")? as usize,
            to: number(to, "target_node")? as usize,
        },
        ["failover", rest @ ..] => {
            let (bdb_id, rest) = match rest {
                ["db", db, rest @ ..] => (Some(number(db, "db")?), rest),
                _ => (None, rest),
            };
            let ["shard", ids @ ..] = rest else {
                return Err(unknown());
            };
            let ids: Vec<&str> = ids.iter().copied().filter(|w| *w != "immediate").collect();
            if ids.is_empty() {
                return Err(ActionError::Invalid(format!(
                    "rladmin {command:?}: name the shards to fail over"
                )));
            }
            Command::Failover {
                bdb_id,
                shards: ids
                    .iter()
                    .map(|w| number(w, "shard").map(|n| n as u32))
                    .collect::<Result<_, _>>()?,
            }
        }
        ["tune", "cluster", "endpoint_rebind_propagation_grace_time", s] => {
            let secs: f64 = s.parse().ok().filter(|s: &f64| (0.0..=3600.0).contains(s)).ok_or_else(|| {
                ActionError::Invalid(format!(
                    "rladmin {command:?}: endpoint_rebind_propagation_grace_time is whole seconds between 0 and 3600, got {s:?}"
                ))
            })?;
            Command::TuneRebindGrace(Duration::from_secs_f64(secs))
        }
        _ => return Err(unknown()),
    })
}

/// The database of endpoint uid `<db>:<n>` (`endpoint:1:1` too).
fn endpoint_db(uid: &str, command: &str) -> Result<u64, ActionError> {
    let uid = uid.trim_start_matches("endpoint:");
    uid.split(':')
        .next()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| {
            ActionError::Invalid(format!(
                "rladmin {command:?}: endpoint {uid:?} is not <db>:<n> (1:1, say)"
            ))
        })
}

/// Runs `command`; `bdb_id` is the action's database, for commands that do
/// not name one.
pub async fn run(emu: &Emulator, bdb_id: Option<u64>, command: &str) -> Result<Value, ActionError> {
    let text = match parse(command)? {
        Command::Status(section) => status(emu, section).await,
        Command::TuneRebindGrace(grace) => {
            emu.cluster.set_rebind_grace(grace);
            "Finished successfully\n".to_string()
        }
        Command::BindExclude { bdb_id, node } => {
            let db = emu.existing_database(bdb_id)?;
            let from = db.shared.active_node();
            if from.index != node {
                return Err(no_op(format!(
                    "endpoint {bdb_id}:1 is not bound to node:{node}; nothing to do"
                )));
            }
            let to = emu
                .nodes()
                .into_iter()
                .find(|n| n.index != node)
                .ok_or_else(|| no_op("there is no other node to bind the endpoint to".into()))?;
            let t = timings(&db, &TimingOverrides::default())?;
            bind::bind(emu, &db, &t, None, Some(to.index), 1).await?;
            "Finished successfully\n".to_string()
        }
        Command::BindPolicySingle { bdb_id } => {
            let db = emu.existing_database(bdb_id)?;
            if db.shared.oss_cluster {
                return Err(ActionError::Invalid(format!(
                    "database {bdb_id} uses the OSS Cluster API: its endpoints follow its shards"
                )));
            }
            return Err(no_op(format!(
                "endpoint {bdb_id}:1 already has proxy policy single; nothing to do"
            )));
        }
        Command::MigrateNode { from, to } => {
            let db = database(emu, bdb_id, command)?;
            let ids: Vec<u32> = {
                let s = db.shards.lock().await;
                s.sets
                    .iter()
                    .filter(|set| set.primary.node == from)
                    .map(|set| set.primary.id)
                    .collect()
            };
            if ids.is_empty() {
                return Err(no_op(format!(
                    "node:{from} holds no primary shard of database {}; nothing to migrate",
                    db.shared.id
                )));
            }
            let t = timings(&db, &TimingOverrides::default())?;
            for id in ids {
                migrate::migrate(emu, &db, &t, Some(to), false, Some(id)).await?;
            }
            "Finished successfully\n".to_string()
        }
        Command::Failover {
            bdb_id: named,
            shards,
        } => {
            let db = database(emu, named.or(bdb_id), command)?;
            let t = timings(&db, &TimingOverrides::default())?;
            for id in shards {
                failover::failover(&db, &t, false, Some(id)).await?;
            }
            "Finished successfully\n".to_string()
        }
    };
    Ok(json!({ "output": text, "node_id": RLADMIN_NODE }))
}

fn database(
    emu: &Emulator,
    bdb_id: Option<u64>,
    command: &str,
) -> Result<std::sync::Arc<Database>, ActionError> {
    let id = bdb_id.ok_or_else(|| {
        ActionError::Invalid(format!(
            "rladmin {command:?} acts on a database: give bdb_id in the action's parameters"
        ))
    })?;
    emu.existing_database(id)
}

/// A command that would change nothing: rladmin exits non-zero.
fn no_op(what: String) -> ActionError {
    crate::emulator::error::failed_because(format!("rladmin exited with status 1: {what}"))
}

/// What `rladmin status` prints (one section, or all).
async fn status(emu: &Emulator, section: Option<Section>) -> String {
    let show = |s: Section| section.is_none_or(|x| x == s);
    let mut out = String::new();
    if show(Section::Nodes) {
        out += "CLUSTER NODES:\nNODE:ID ROLE ADDRESS EXTERNAL_ADDRESS SHARDS STATUS\n";
        for n in emu.nodes() {
            let mut shards = 0;
            for d in emu.databases() {
                let s = d.shards.lock().await;
                shards += s
                    .sets
                    .iter()
                    .filter(|set| set.primary.node == n.index)
                    .count();
                shards += s
                    .sets
                    .iter()
                    .filter(|set| set.replica.as_ref().is_some_and(|r| r.node == n.index))
                    .count();
            }
            out += &format!(
                "node:{} {} {} {} {shards} OK\n",
                n.index,
                if n.index == RLADMIN_NODE {
                    "master"
                } else {
                    "slave"
                },
                n.internal_ip(),
                n.external_ip()
            );
        }
        out += "\n";
    }
    if show(Section::Databases) {
        out += "DATABASES:\nDB:ID NAME TYPE STATUS SHARDS PLACEMENT REPLICATION PERSISTENCE ENDPOINT\n";
        for d in emu.databases() {
            let s = d.shards.lock().await;
            out += &format!(
                "db:{} {} redis active {} dense {} disabled {}:{}\n",
                d.shared.id,
                d.shared.name,
                s.sets.len(),
                if s.sets.iter().all(|s| s.replica.is_some()) {
                    "enabled"
                } else {
                    "disabled"
                },
                d.shared.active_node().internal_ip(),
                d.shared.port
            );
        }
        out += "\n";
    }
    if show(Section::Endpoints) {
        out += "ENDPOINTS:\nDB:ID NAME ID NODE ROLE SSL\n";
        for d in emu.databases() {
            let nodes = match d.shared.oss_cluster {
                true => d.shared.node_indexes(),
                false => vec![d.shared.active_node().index],
            };
            let role = match d.shared.oss_cluster {
                true => "all-master-shards",
                false => "single",
            };
            for n in nodes {
                out += &format!(
                    "db:{} {} endpoint:{}:1 node:{n} {role} {}\n",
                    d.shared.id,
                    d.shared.name,
                    d.shared.id,
                    if d.tls.is_some() { "Yes" } else { "No" }
                );
            }
        }
        out += "\n";
    }
    if show(Section::Shards) {
        out += "SHARDS:\nDB:ID NAME ID NODE ROLE SLOTS USED_MEMORY STATUS\n";
        for d in emu.databases() {
            let s = d.shards.lock().await;
            for set in &s.sets {
                let mut row = |id: u32, node: usize, role: &str| {
                    out += &format!(
                        "db:{} {} redis:{id} node:{node} {role} 0-16383 2MB OK\n",
                        d.shared.id, d.shared.name
                    );
                };
                row(set.primary.id, set.primary.node, "master");
                if let Some(r) = &set.replica {
                    row(r.id, r.node, "slave");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_suites_send_parse() {
        assert_eq!(parse("status").unwrap(), Command::Status(None));
        assert_eq!(
            parse("status shards").unwrap(),
            Command::Status(Some(Section::Shards))
        );
        assert_eq!(
            parse("bind endpoint 3:1 exclude 2").unwrap(),
            Command::BindExclude { bdb_id: 3, node: 2 }
        );
        assert_eq!(
            parse("bind endpoint 3:1 policy single").unwrap(),
            Command::BindPolicySingle { bdb_id: 3 }
        );
        assert_eq!(
            parse("migrate node 1 all_shards target_node 3").unwrap(),
            Command::MigrateNode { from: 1, to: 3 }
        );
        assert_eq!(
            parse("failover db db:4 shard 7 8 immediate").unwrap(),
            Command::Failover {
                bdb_id: Some(4),
                shards: vec![7, 8]
            }
        );
        assert_eq!(
            parse("failover shard redis:5").unwrap(),
            Command::Failover {
                bdb_id: None,
                shards: vec![5]
            }
        );
        assert_eq!(
            parse("tune cluster endpoint_rebind_propagation_grace_time 4").unwrap(),
            Command::TuneRebindGrace(Duration::from_secs(4))
        );
        for bad in [
            "restart db 1",
            "status everything",
            "failover shard",
            "tune cluster endpoint_rebind_propagation_grace_time soon",
            "bind endpoint one exclude 2",
        ] {
            assert!(matches!(parse(bad), Err(ActionError::Invalid(_))), "{bad}");
        }
        let e = parse("restart db 1").unwrap_err().to_string();
        assert!(e.contains("is not emulated; these are: status"), "{e}");
    }
}
