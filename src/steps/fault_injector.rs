//! The fault injector's own contract: action lifecycle, rladmin, and the
//! cluster's settings (its databases: [`super::fi_databases`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use cucumber::{given, then, when};
use serde_json::{Map, Value};

use super::{MaintWorld, StepResult};
use crate::fault_injector::{
    Action, ActionState, ActionStatus, BdbId, CreatedDatabase, DatabaseSpec, FaultInjectorClient,
};
use crate::timing::{ACTION_WATCH_POLL, CREATE_DATABASE_WITHIN, RESOLVE_CAP};
use crate::wait::{poll, Look};

/// What a scenario did through the fault injector.
#[derive(Default)]
pub struct InjectorRecord {
    /// Databases created by steps, by name, with their descriptions.
    pub created: BTreeMap<String, CreatedDatabase>,
    /// Databases deleted by steps, by name, with their descriptions.
    pub deleted: BTreeMap<String, CreatedDatabase>,
    /// Actions steps posted and watch, in order; "it" is the last.
    pub watched: Vec<Watched>,
    /// The last refusal of a `create_database`.
    pub refusal: Option<String>,
    /// The last answer to a request sent as is: status and body.
    pub answer: Option<(u16, String)>,
    /// A step turned maintenance notifications off cluster-wide: the teardown
    /// turns them back on (the setting outlives the scenario on a cluster).
    pub notifications_turned_off: bool,
    /// A step tuned the cluster's rebind grace through rladmin: the teardown
    /// brings the cluster's settings back (`reset_cluster`, on the emulator).
    pub grace_tuned: bool,
}

impl InjectorRecord {
    /// Stops polling every watched action.
    pub fn stop_watching(&mut self) {
        for w in self.watched.drain(..) {
            w.watch.abort();
        }
    }
}

/// The states an action went through, in order, and its last status.
type Seen = (Vec<ActionState>, ActionStatus);

/// An action posted by a step and watched from the moment it was accepted.
pub struct Watched {
    /// What `POST /action` answered.
    pub accepted: ActionState,
    /// Every distinct state seen while polling, in order, and the last answer.
    pub watch: tokio::task::JoinHandle<Result<Seen>>,
}

/// Polls action `id` closely (to see `running`) until it ends.
async fn watch(fi: FaultInjectorClient, id: String, within: Duration) -> Result<Seen> {
    let seen: std::sync::Mutex<Vec<ActionState>> = Default::default();
    let ended = poll(ACTION_WATCH_POLL, within, || async {
        let s = fi.status(&id).await?;
        let mut states = seen.lock().unwrap();
        if states.last() != Some(&s.status) {
            states.push(s.status);
        }
        anyhow::Ok(match s.is_terminal() {
            true => Look::Ready(s),
            false => Look::NotYet(s.status),
        })
    })
    .await?;
    match ended {
        Ok(last) => Ok((seen.into_inner().unwrap(), last)),
        Err(state) => Err(anyhow!("action {id} still {state} after {within:?}")),
    }
}

impl MaintWorld {
    /// Posts `action` and watches it until it ends.
    async fn post_watched(&mut self, action: Action) -> Result<()> {
        let fi = self.env()?.fault_injector.clone();
        let accepted = fi.submit(&action).await?;
        let watch = tokio::spawn(watch(fi, accepted.action_id, self.patience()));
        self.injector.watched.push(Watched {
            accepted: accepted.status,
            watch,
        });
        Ok(())
    }

    async fn watched_end(&mut self) -> Result<Seen> {
        let w = self.injector.watched.last_mut().ok_or_else(|| {
            anyhow!("no action posted; use `When a failover is posted to the fault injector`")
        })?;
        (&mut w.watch).await?
    }

    /// The database a step created last, with its description.
    pub(super) fn last_created(&self) -> Result<(&String, &CreatedDatabase)> {
        self.injector
            .created
            .iter()
            .next_back()
            .ok_or_else(|| anyhow!("no database was created in this scenario"))
    }

    /// A database a step created.
    pub(super) fn created(&self, name: &str) -> Result<&CreatedDatabase> {
        self.injector
            .created
            .get(name)
            .ok_or_else(|| anyhow!("no database {name:?} was created in this scenario"))
    }

    pub(super) async fn create_db(&mut self, name: &str, replication: bool) -> Result<()> {
        let fi = self.env()?.fault_injector.clone();
        let spec = DatabaseSpec {
            replication: Some(replication),
            shards_count: Some(1),
            ..DatabaseSpec::named(name)
        };
        let created = fi
            .create_database(spec, self.patience())
            .await
            .with_context(|| format!("creating database {name:?}"))?;
        self.injector.created.insert(name.to_string(), created);
        Ok(())
    }

    pub(super) async fn rladmin_databases(&self) -> Result<Vec<String>> {
        let env = self.env()?;
        let action = Action::ExecuteRladminCommand {
            rladmin_command: "status".into(),
            bdb_id: Some(BdbId(env.bdb_id)),
        };
        let done = env.fault_injector.run(&action, self.patience()).await?;
        let text = done
            .output
            .as_ref()
            .and_then(|o| o.get("output"))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("rladmin status has no output.output text: {done:?}"))?
            .to_string();
        let mut names = Vec::new();
        let mut in_databases = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("DATABASES:") {
                in_databases = true;
            } else if in_databases && line.starts_with("db:") {
                if let Some(name) = line.split_whitespace().nth(1) {
                    names.push(name.to_string());
                }
            } else if in_databases && line.ends_with(':') {
                in_databases = false;
            }
        }
        Ok(names)
    }

    /// `update_cluster_config` with `client_maint_notifications`.
    pub async fn set_cluster_notifications(&self, on: bool) -> Result<()> {
        let mut config = Map::new();
        config.insert("client_maint_notifications".into(), on.into());
        let action = Action::UpdateClusterConfig { config };
        self.env()?
            .fault_injector
            .run(&action, self.patience())
            .await?;
        Ok(())
    }

    /// `create_database` named `name` on `port`; a refusal is recorded, not
    /// returned.
    pub(super) async fn create_db_on(&mut self, name: &str, port: u16) -> Result<()> {
        let fi = self.env()?.fault_injector.clone();
        let spec = DatabaseSpec {
            port: Some(port),
            ..DatabaseSpec::named(name)
        };
        match fi.create_database(spec, self.patience()).await {
            Ok(created) => {
                self.injector.created.insert(name.to_string(), created);
                self.injector.refusal = None;
            }
            Err(e) => self.injector.refusal = Some(format!("{e:#}")),
        }
        Ok(())
    }

    /// Deletes every database the scenario created (teardown).
    pub async fn delete_created(&mut self) {
        let Some(env) = self.env.as_ref() else { return };
        for (name, created) in std::mem::take(&mut self.injector.created) {
            let action = Action::delete_database(created.bdb_id);
            if let Err(e) = env
                .fault_injector
                .run(&action, CREATE_DATABASE_WITHIN)
                .await
            {
                tracing::warn!("deleting database {name:?} after the scenario: {e:#}");
            }
        }
    }
}

/// A failover, migration or rebind of the database under test, watched.
#[when(expr = "a {word} is posted to the fault injector")]
async fn when_post(w: &mut MaintWorld, what: String) -> StepResult {
    let bdb = w.env()?.bdb_id;
    let action = match what.as_str() {
        "failover" => Action::failover(bdb),
        "migration" => Action::migrate(bdb),
        "rebind" => Action::bind(bdb),
        other => fail!("unknown action {other:?}; post a failover, a migration or a rebind"),
    };
    w.post_watched(action).await?;
    Ok(())
}

/// `topology_change_standalone` with the first trigger the catalogue offers
/// for `effect`, run to its end.
#[when(expr = "the fault injector produces the {word} effect with its first trigger")]
async fn when_effect(w: &mut MaintWorld, effect: String) -> StepResult {
    let catalogue = w.env()?.fault_injector.standalone_triggers(&effect).await?;
    let trigger = catalogue
        .pointer("/triggers/0/name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the catalogue offers no trigger for {effect}: {catalogue}"))?
        .to_string();
    w.run_action(|bdb| Action::TopologyChangeStandalone {
        bdb_id: BdbId(bdb),
        effect,
        trigger: Some(trigger),
        source_node: None,
        target_node: None,
        skip_end_notification: false,
        timing: Default::default(),
    })
    .await?;
    Ok(())
}

/// A failover of a database a step created, watched.
#[when(expr = "a failover of {string} is posted to the fault injector")]
async fn when_post_failover_of(w: &mut MaintWorld, name: String) -> StepResult {
    let id = w.created(&name)?.bdb_id;
    w.post_watched(Action::failover(id)).await?;
    Ok(())
}

/// `POST /action` answered `pending`.
#[then("the fault injector accepted it as pending")]
async fn then_pending(w: &mut MaintWorld) -> StepResult {
    let got = w.injector.watched.last().map(|x| x.accepted);
    if got != Some(ActionState::Pending) {
        fail!("POST /action answered status {got:?}, expected pending");
    }
    Ok(())
}

/// Polling saw `running`, then `success`.
#[then("its status went through running to success")]
async fn then_running_success(w: &mut MaintWorld) -> StepResult {
    let (seen, last) = w.watched_end().await?;
    use ActionState::{Pending, Running, Success};
    let lifecycle = seen.iter().all(|s| [Pending, Running, Success].contains(s));
    if !lifecycle || !seen.contains(&Running) || seen.last() != Some(&Success) {
        fail!("the action went through {seen:?}, expected running then success: {last:?}");
    }
    Ok(())
}

/// It failed, and said why.
#[then(expr = "it ends failed with an error that says {string}")]
async fn then_failed_with(w: &mut MaintWorld, text: String) -> StepResult {
    let (seen, last) = w.watched_end().await?;
    match last.status {
        ActionState::Failed if last.error_text().contains(&text) => Ok(()),
        _ => fail!("the action went through {seen:?} and ended {last:?}; expected failed with an error that says {text:?}"),
    }
}

/// `update_cluster_config` turns `client_maint_notifications` off (and the
/// scenario's end turns it back on).
#[given("maintenance notifications are turned off on the cluster")]
async fn given_notifications_off(w: &mut MaintWorld) -> StepResult {
    w.setup_database().await?;
    w.injector.notifications_turned_off = true;
    w.set_cluster_notifications(false).await?;
    Ok(())
}

/// The host name of the MOVING `client` received is a name in the cluster's
/// domain that resolves here, quickly, and every address it resolves to
/// answers. Where the emulator's names fell back to `localhost` (no resolver
/// for `*.localhost` on this machine) it is not checked, and says why.
#[then(expr = "the host name MOVING gave {string} resolves")]
async fn then_moving_resolves(w: &mut MaintWorld, client: String) -> StepResult {
    let moving = w.wait_moving(&client).await?;
    let crate::notification::Notification::Moving {
        endpoint: Some(e), ..
    } = &moving.notification
    else {
        fail!(
            "{client:?} received {}, which names no host",
            moving.notification
        );
    };
    if e.host == "localhost" {
        w.not_checked_because(
            &format!("whether the cluster's host names resolve (MOVING named {e})"),
            "the emulator's names fell back to localhost: this machine's resolver does not map *.localhost (on Debian or Ubuntu, `apt-get install libnss-myhostname`)",
        );
        return Ok(());
    }
    if !e.host.contains('.') {
        fail!("MOVING named {e}: a host name in the cluster's domain has a dot");
    }
    let found = tokio::time::timeout(
        RESOLVE_CAP,
        tokio::net::lookup_host((e.host.as_str(), e.port)),
    )
    .await;
    let addrs: Vec<std::net::SocketAddr> = match found {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(err)) => fail!("{} does not resolve: {err}", e.host),
        Err(_) => fail!("resolving {} took more than {RESOLVE_CAP:?}", e.host),
    };
    if addrs.is_empty() {
        fail!("{} resolves to no address", e.host);
    }
    // Every address it resolves to answers (a client may try any of them
    // first: `::1` comes before 127.0.0.1 under nss-myhostname).
    for a in &addrs {
        match tokio::time::timeout(RESOLVE_CAP, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => fail!(
                "{} resolves to {a}, which refuses a connection: {err}",
                e.host
            ),
            Err(_) => fail!(
                "{} resolves to {a}, which does not answer within {RESOLVE_CAP:?}",
                e.host
            ),
        }
    }
    Ok(())
}
