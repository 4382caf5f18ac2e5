//! OSS Cluster API databases: a cluster client per client step, slots that
//! move between nodes (`slot_migrate`), and what the client's slot map and
//! relaxation made of it.

use anyhow::{anyhow, Result};
use cucumber::{given, then, when};

use super::params::DurationParam;
use super::{MaintWorld, StepResult};
use crate::client::slot_table::SlotTable;
use crate::client::ClientFactory;
use crate::fault_injector::{Action, BdbId, DatabaseSpec, TimingOverrides};
use crate::raw::RawConnection;
use crate::timeline;

/// Names the OSS Cluster API database of the endpoints file (default
/// `oss-cluster`, as the Go framework's example names it).
pub const CLUSTER_DATABASE_ENV: &str = "MAINT_E2E_CLUSTER_DATABASE";

/// A `slot_migrate` by trigger `migrate`.
fn slot_migrate(bdb: u64, effect: &str, timing: TimingOverrides) -> Action {
    Action::SlotMigrate {
        bdb_id: BdbId(bdb),
        effect: effect.into(),
        trigger: Some("migrate".into()),
        source_node: None,
        target_node: None,
        timing,
    }
}

impl MaintWorld {
    /// Switches the scenario to an OSS Cluster API database of `shards`
    /// primary shards (each with a replica on the next node, with
    /// `replicas`); clients made from now on are cluster clients.
    pub async fn use_cluster_database(&mut self, shards: u32, replicas: bool) -> Result<()> {
        let config = DatabaseSpec {
            oss_cluster: Some(true),
            shards_count: Some(shards),
            proxy_policy: Some("all-master-shards".into()),
            replication: Some(replicas),
            ..DatabaseSpec::default()
        };
        self.switch_database(
            "oss-cluster",
            CLUSTER_DATABASE_ENV,
            config,
            |_, _, _| Ok(()),
        )
        .await?;
        let tracker = self.tracker.clone();
        let prefix = self.prefix.clone();
        let env = self.env.as_mut().expect("switched above");
        env.factory = ClientFactory::cluster(env.db.clone(), tracker).naming_clients(&prefix);
        Ok(())
    }

    /// The slot map the cluster gives now (`CLUSTER SLOTS` from the first
    /// of its endpoints that answers).
    async fn cluster_slot_map(&self) -> Result<Vec<(u16, u16, String)>> {
        let mut last = anyhow!("the database lists no endpoint");
        for e in &self.env()?.db.endpoints {
            let answer = async {
                let raw = RawConnection::connect(&e.address(), true, None).await?;
                let bytes = raw.command(&["CLUSTER", "SLOTS"]).await?;
                let value = redis::parse_redis_value(&bytes)?;
                SlotTable::from_cluster_slots(&value).map_err(|e| anyhow!(e))
            }
            .await;
            match answer {
                Ok(t) => return Ok(t.ranges()),
                Err(err) => last = err.context(format!("asking {} for CLUSTER SLOTS", e.address())),
            }
        }
        Err(last)
    }
}

/// The scenario's database is an OSS Cluster API one: a proxy per node that
/// holds slots, clients that read the slot map and talk to every node.
#[given(regex = r"^an OSS Cluster API database of (\d+) shards( with a replica each)?$")]
async fn given_cluster_database(w: &mut MaintWorld, shards: u32, replicas: String) -> StepResult {
    w.use_cluster_database(shards, !replicas.is_empty()).await?;
    Ok(())
}

/// Any `slot_migrate` of the catalogue: `effect` by `trigger`.
#[when(expr = "the fault injector moves slots with the {word} effect by {word}")]
async fn when_slot_migrate(w: &mut MaintWorld, effect: String, trigger: String) -> StepResult {
    w.run_action(|bdb| Action::SlotMigrate {
        bdb_id: BdbId(bdb),
        effect,
        trigger: Some(trigger),
        source_node: None,
        target_node: None,
        timing: TimingOverrides::default(),
    })
    .await?;
    Ok(())
}

/// `slot_migrate` `slot-shuffle`.
#[when("half of one node's slots move to another node")]
async fn when_shuffle(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| slot_migrate(bdb, "slot-shuffle", TimingOverrides::default()))
        .await?;
    Ok(())
}

/// `slot_migrate` `add`.
#[when("a new node joins the cluster and takes a share of every node's slots")]
async fn when_add(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| slot_migrate(bdb, "add", TimingOverrides::default()))
        .await?;
    Ok(())
}

/// `slot_migrate` `remove`.
#[when("a node gives its slots to the others and leaves the cluster")]
async fn when_remove(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| slot_migrate(bdb, "remove", TimingOverrides::default()))
        .await?;
    Ok(())
}

/// `slot_migrate` `remove-add`.
#[when("a node hands all its slots to a new node and leaves the cluster")]
async fn when_remove_add(w: &mut MaintWorld) -> StepResult {
    w.run_action(|bdb| slot_migrate(bdb, "remove-add", TimingOverrides::default()))
        .await?;
    Ok(())
}

/// Starts a `slot-shuffle` whose SMIGRATING comes `lead` before any slot
/// moves.
#[when(expr = "slots start moving between nodes with a lead of {duration}")]
async fn when_shuffle_starts(w: &mut MaintWorld, lead: DurationParam) -> StepResult {
    let timing = TimingOverrides {
        lead_s: Some(lead.bounded("the lead")?.as_secs_f64()),
        ..TimingOverrides::default()
    };
    w.start_action(|bdb| slot_migrate(bdb, "slot-shuffle", timing))
        .await?;
    // Started once announced: the scenario's clients heard SMIGRATING.
    let names: Vec<String> = w.clients.keys().cloned().collect();
    for name in names {
        w.tracker
            .wait_on(&name, w.patience(), "SMIGRATING", |events| {
                timeline::notifications_of(events, crate::notification::Kind::SMigrating)
                    .first()
                    .cloned()
            })
            .await?;
    }
    Ok(())
}

/// Waits for the last `slot_migrate` to end.
#[when("the slots have moved")]
async fn when_moved(w: &mut MaintWorld) -> StepResult {
    w.finish_last(
        "slot_migrate",
        "When slots start moving between nodes with a lead of ...",
    )
    .await?;
    Ok(())
}

/// The client's slot map, once the moves it was told of are in, is the
/// one the cluster gives a new connection.
#[then(expr = "the slot map of {string} matches the cluster's")]
async fn then_slot_map(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    let cluster = c
        .cluster()
        .ok_or_else(|| anyhow!("{client:?} is not a cluster client; start with `Given an OSS Cluster API database of N shards`"))?
        .clone();
    let want = w.cluster_slot_map().await?;
    timeline::slot_maps_equal(&cluster.slot_map(), &want).map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// Each move SMIGRATED announced went into the slot map once; some were
/// announced by more than one node.
#[then(expr = "{string} applied each slot move once, though several nodes announced it")]
async fn then_applied_once(w: &mut MaintWorld, client: String) -> StepResult {
    w.wait_claim(&client, "every node's SMIGRATED", |events| {
        timeline::each_move_applied_once(events, true)
    })
    .await?;
    Ok(())
}

/// Relaxed on SMIGRATING until SMIGRATED, on every connection that got
/// SMIGRATING (whichever node's SMIGRATED came first), then back.
#[then(
    expr = "every connection of {string} that received SMIGRATING stayed relaxed until SMIGRATED, then came back"
)]
async fn then_relaxed_until_smigrated(w: &mut MaintWorld, client: String) -> StepResult {
    // Back once the post-handoff tail after SMIGRATED has run, give or take
    // a busy machine.
    let back_within = w.client(&client)?.options().post_relaxed() + crate::timing::BAND_SLACK;
    w.wait_claim(&client, "every relaxed connection to come back", |events| {
        timeline::relaxed_until_smigrated(events, back_within)
    })
    .await?;
    Ok(())
}

impl MaintWorld {
    /// Waits (at most the scenario's patience) until `claim` holds over the
    /// timeline of `client`; fails with what the claim says when it does not.
    async fn wait_claim<T>(
        &self,
        client: &str,
        what: &str,
        claim: impl Fn(&[crate::client::ClientEvent]) -> timeline::Claim<T>,
    ) -> Result<T> {
        let waited = self
            .tracker
            .wait_on(client, self.patience(), what, |events| claim(events).ok())
            .await;
        match waited {
            Ok(t) => Ok(t),
            Err(_) => match claim(&self.tracker.timeline(client)) {
                Ok(t) => Ok(t),
                Err(e) => Err(self.unmet(client, e)),
            },
        }
    }
}

/// The server decides: after it announced where the slots went, it
/// redirected no request of the client (`-MOVED`).
#[then(expr = "{string} needed no MOVED once SMIGRATED said where the slots went")]
async fn then_no_moved_after(w: &mut MaintWorld, client: String) -> StepResult {
    // A moment for requests of the traffic to show what the client does.
    tokio::time::sleep(crate::timing::SMIGRATED_APPLIED_WITHIN * 2).await;
    let Some(r) = w.server_record(&client).await? else {
        w.not_checked(&format!(
            "which requests of {client:?} the server redirected"
        ));
        return Ok(());
    };
    let name = w.server_name(&client)?;
    crate::timeline::server::no_moved_after_smigrated(
        &r,
        &name,
        crate::timing::SMIGRATED_APPLIED_WITHIN,
    )
    .map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// The server decides: the client closed every connection it had to the
/// node the last slot migration took out of the cluster (its `left_node`),
/// before that node stopped (waits until none is open there).
#[then(expr = "{string} let go of its connections to the node that left, before the node stopped")]
async fn then_let_go_of_left_node(w: &mut MaintWorld, client: String) -> StepResult {
    let left = w
        .last_action("slot_migrate")?
        .status
        .as_ref()
        .and_then(|s| s.output.as_ref())
        .and_then(|o| o["left_node"].as_u64())
        .ok_or_else(|| {
            anyhow!("the last slot migration took no node out of the cluster (no left_node); use it after a node leaves")
        })? as usize;
    let name = w.server_name(&client)?;
    let Some(r) = w
        .settled_record(&client, |r, _| {
            timeline::server::none_open_on(r, &name, left)
        })
        .await?
    else {
        w.not_checked(&format!(
            "who closed the connections of {client:?} to node {left}, which left the cluster"
        ));
        return Ok(());
    };
    timeline::server::let_go_of_node(&r, &name, left).map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// The shards themselves decide: for each move of the last slot migration,
/// `CLUSTER COUNTKEYSINSLOT` on the primaries of both nodes, slot by slot.
#[then(
    "the shards hold every moved slot's keys on the node it moved to, and none on the node it left"
)]
async fn then_keys_moved(w: &mut MaintWorld) -> StepResult {
    let Some(r) = w.server_record_all().await? else {
        w.not_checked("which shard holds the moved slots' keys (the shards are not reachable)");
        return Ok(());
    };
    let Some(last) = r.slot_moves.last() else {
        fail!(
            "the server recorded no slot migration of database {}",
            r.bdb_id
        );
    };
    let mut seen = Vec::new();
    for m in &last.moves {
        let slots: Vec<u16> = crate::notification::parse_slots(&m.slots)
            .map_err(|e| anyhow!("the record's slots {:?}: {e}", m.slots))?
            .into_iter()
            .flat_map(|(a, b)| a..=b)
            .collect();
        let on = |node: usize| {
            r.shards
                .iter()
                .filter(move |s| s.node == node && s.role == "primary")
                .map(|s| s.addr.clone())
                .collect::<Vec<_>>()
        };
        seen.push(timeline::server::KeysOfMove {
            from: m.from,
            to: m.to,
            slots: m.slots.clone(),
            on_source: keys_in_slots(&on(m.from), &slots).await?,
            on_target: keys_in_slots(&on(m.to), &slots).await?,
        });
    }
    tracing::info!(?seen, "keys of the moved slots, by the shards");
    timeline::server::keys_where_slots_went(&seen).map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Keys the shards at `addrs` hold in `slots`, by their own count.
async fn keys_in_slots(addrs: &[String], slots: &[u16]) -> Result<u64> {
    let mut total = 0;
    for addr in addrs {
        let shard = RawConnection::connect(addr, false, None).await?;
        for chunk in slots.chunks(1000) {
            let commands: Vec<Vec<String>> = chunk
                .iter()
                .map(|s| vec!["CLUSTER".into(), "COUNTKEYSINSLOT".into(), s.to_string()])
                .collect();
            for reply in shard.pipeline(&commands).await? {
                let text = String::from_utf8_lossy(&reply);
                total += text
                    .trim()
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        anyhow!("the shard at {addr} answered {text:?} to CLUSTER COUNTKEYSINSLOT")
                    })?;
            }
        }
    }
    Ok(total)
}

/// The nodes that serve slots now, as the cluster names them: each node's
/// address in `CLUSTER SLOTS`, with the emulator's node index (its
/// internal address is `127.0.<index>.1`).
async fn serving_nodes(w: &MaintWorld) -> Result<Vec<(usize, String)>> {
    let mut nodes: Vec<(usize, String)> = Vec::new();
    for (_, _, addr) in w.cluster_slot_map().await? {
        let index = addr
            .strip_prefix("127.0.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(n, _)| n.parse().ok())
            .ok_or_else(|| {
                anyhow!("the cluster names node {addr}, not an emulator node's internal address (127.0.<n>.1:port); this step needs the emulator's internal-ip form")
            })?;
        if !nodes.iter().any(|(i, _)| *i == index) {
            nodes.push((index, addr));
        }
    }
    Ok(nodes)
}

/// The sequence number of the SMIGRATING of `slots` a node sends (its
/// SMIGRATED: one more, as servers number them): each node its own.
fn smigrating_seq(slots: &[(u16, u16)], node: usize) -> i64 {
    let first = slots.first().map_or(0, |r| r.0);
    20_000 + i64::from(first) * 10 + node as i64 * 2
}

fn slots_param(slots: &str) -> Result<Vec<(u16, u16)>> {
    let parsed = crate::notification::parse_slots(slots).map_err(|e| anyhow!("{e:?}"))?;
    if parsed.is_empty() {
        anyhow::bail!("name the slots, such as 0-99");
    }
    Ok(parsed)
}

/// SMIGRATING of `slots` from every node that serves slots, each its own
/// push and sequence number (emulator only); nothing moves. Stricter than a
/// slot migration, which names its SMIGRATING by one seq on every node: a
/// client must end each connection's window by its slots, not by its seq.
#[when(expr = "the emulator sends SMIGRATING of slots {word} from every node")]
async fn when_smigrating_everywhere(w: &mut MaintWorld, slots: String) -> StepResult {
    w.emulator()?;
    let ranges = slots_param(&slots)?;
    for (node, _) in serving_nodes(w).await? {
        let n = crate::notification::Notification::SMigrating {
            seq: smigrating_seq(&ranges, node),
            slots: slots.clone(),
        };
        w.send_push_to(&n, Some(node)).await?;
    }
    Ok(())
}

/// SMIGRATED of `slots` (they stay on the node that holds them) from that
/// node alone, to its own connections only (emulator only): the other
/// nodes' connections never hear of it.
#[when(
    expr = "the emulator sends SMIGRATED of slots {word} from the node that holds them, to that node's connections only"
)]
async fn when_smigrated_from_one(w: &mut MaintWorld, slots: String) -> StepResult {
    w.emulator()?;
    let ranges = slots_param(&slots)?;
    let map = w.cluster_slot_map().await?;
    let holder = map
        .iter()
        .find(|(a, b, _)| *a <= ranges[0].0 && ranges[0].0 <= *b)
        .map(|(_, _, addr)| addr.clone())
        .ok_or_else(|| anyhow!("no node holds slot {}", ranges[0].0))?;
    let (node, addr) = serving_nodes(w)
        .await?
        .into_iter()
        .find(|(_, a)| *a == holder)
        .ok_or_else(|| anyhow!("node {holder} is not in the slot map"))?;
    let here = crate::notification::Endpoint::parse(&addr)?
        .ok_or_else(|| anyhow!("the cluster names node {addr:?}, not an address"))?;
    let n = crate::notification::Notification::SMigrated {
        seq: smigrating_seq(&ranges, node) + 1,
        moves: vec![crate::notification::SlotMove {
            source: here.clone(),
            target: here,
            slots,
        }],
        rejected: Vec::new(),
    };
    w.send_push_to(&n, Some(node)).await?;
    Ok(())
}
