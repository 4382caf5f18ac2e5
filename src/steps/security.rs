//! TLS and authentication: the database's (which TLS it asks for, whom it
//! lets in) and what each connection of a client shows of it.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use cucumber::gherkin::Step;
use cucumber::{given, then, when};

use super::clients::apply_settings;
use super::params::ModeParam;
use super::{MaintWorld, StepResult};
use crate::config::DatabaseConfig;
use crate::fault_injector::{AclUser, DatabaseSpec};

/// Names the database that accepts TLS 1.3 only (default `standalone0-tls13`).
pub const TLS13_DATABASE_ENV: &str = "MAINT_E2E_TLS13_DATABASE";
/// Names the database that requires client certificates (default `standalone0-mtls`).
pub const MTLS_DATABASE_ENV: &str = "MAINT_E2E_MTLS_DATABASE";
/// Names the database whose default user has a password (default `standalone0-tls`).
pub const PASSWORD_DATABASE_ENV: &str = "MAINT_E2E_PASSWORD_DATABASE";
/// Names the database whose user is a limited ACL user (default `standalone0-acl`).
pub const ACL_DATABASE_ENV: &str = "MAINT_E2E_ACL_DATABASE";

/// A TLS database with a password, as the emulator's `standalone0-*` ones.
fn tls_spec() -> DatabaseSpec {
    DatabaseSpec {
        tls: Some(true),
        replication: Some(true),
        password: Some("maint-e2e-secret".into()),
        ..DatabaseSpec::default()
    }
}

fn needs_tls(db: &DatabaseConfig, name: &str, file: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        db.tls,
        "database {name:?} in {file} is not a TLS database (tls: true, rediss://)"
    );
    Ok(())
}

/// The database accepts TLS 1.3 and nothing older.
#[given("the database accepts TLS 1.3 only")]
async fn given_tls13(w: &mut MaintWorld) -> StepResult {
    let spec = DatabaseSpec {
        tls_min_version: Some("1.3".into()),
        ..tls_spec()
    };
    w.switch_database("standalone0-tls13", TLS13_DATABASE_ENV, spec, needs_tls)
        .await?;
    Ok(())
}

/// The database requires a client certificate signed by the cluster's CA.
#[given("the database requires client certificates")]
async fn given_mtls(w: &mut MaintWorld) -> StepResult {
    let spec = DatabaseSpec {
        enforce_client_authentication: Some(true),
        ..tls_spec()
    };
    w.switch_database("standalone0-mtls", MTLS_DATABASE_ENV, spec, |db, name, file| {
        needs_tls(db, name, file)?;
        let dir = db.certificates_location.as_ref().ok_or_else(|| {
            anyhow!("database {name:?} in {file} names no certificatesLocation holding client.crt and client.key")
        })?;
        anyhow::ensure!(
            dir.join("client.crt").exists() && dir.join("client.key").exists(),
            "{} must hold client.crt and client.key for database {name:?}",
            dir.display()
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// The database's default user has a password, which the endpoints file gives.
#[given("the database requires a password")]
async fn given_password(w: &mut MaintWorld) -> StepResult {
    w.switch_database(
        "standalone0-tls",
        PASSWORD_DATABASE_ENV,
        tls_spec(),
        |db, name, file| {
            anyhow::ensure!(
                db.password.is_some(),
                "database {name:?} in {file} has no password"
            );
            Ok(())
        },
    )
    .await?;
    Ok(())
}

/// The endpoints file's user is an ACL user limited to the suite's keys
/// (`maint-e2e:*`) and to reads, writes and connection commands.
#[given("the database's user is an ACL user limited to the suite's keys and a command set")]
async fn given_acl_user(w: &mut MaintWorld) -> StepResult {
    let spec = DatabaseSpec {
        replication: Some(true),
        password: Some("maint-e2e-secret".into()),
        acl_users: vec![AclUser {
            name: crate::emulator::ACL_USER.into(),
            password: "maint-e2e-acl-secret".into(),
            rules: Some(crate::emulator::LIMITED_ACL_RULES.into()),
        }],
        ..DatabaseSpec::default()
    };
    w.switch_database("standalone0-acl", ACL_DATABASE_ENV, spec, |db, name, file| {
        anyhow::ensure!(
            db.username.as_deref().is_some_and(|u| u != "default") && db.password.is_some(),
            "database {name:?} in {file} names no ACL user (username other than default, and password)"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// A client connected by the step itself with a settings table: a refusal is
/// recorded with how long it took and how many connections the database
/// accepted meanwhile.
#[when(
    expr = "a client {string} with maintenance notifications {mode} connects with these settings:"
)]
async fn when_connects_with(
    w: &mut MaintWorld,
    step: &Step,
    name: String,
    mode: ModeParam,
) -> StepResult {
    let mut o = w.suite_options();
    o.mode = mode.0;
    apply_settings(step, &mut o)?;
    w.resolve_settings(&mut o)?;
    let accepted = w.accepted_now().await?;
    let t = Instant::now();
    match crate::driver::selected() {
        Some(driver) => w.create_driven(&driver, &name, o, true).await?,
        None => {
            let made = w.env()?.factory.create(&name, o).await;
            w.add_client(&name, made)?;
        }
    }
    let took = t.elapsed();
    let attempts = match (accepted, w.accepted_now().await?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    if let Some(n) = attempts {
        eprintln!(
            "{name:?}: the database accepted {n} connection(s) in the {took:?} it took to connect"
        );
    }
    if let Some(r) = &mut w.record_mut(&name)?.refusal {
        (r.took, r.accepted) = (Some(took), attempts);
    }
    Ok(())
}

impl MaintWorld {
    /// Connections the database has accepted so far, every attempt counted
    /// (TLS handshakes that failed included), by the server's record; `None`
    /// where the target keeps none.
    async fn accepted_now(&self) -> anyhow::Result<Option<u64>> {
        Ok(self.server_record_all().await?.map(|r| r.accepted_total))
    }
}

/// The refusal came at once: within `limit`, after one connection (counted
/// by the emulator; against a cluster the time only, with a note).
#[then(expr = "connecting {string} failed within {duration} after a single connection attempt")]
async fn then_failed_at_once(
    w: &mut MaintWorld,
    client: String,
    limit: super::params::DurationParam,
) -> StepResult {
    let limit = limit.bounded("the time a refusal may take")?;
    let Some(r) = &w.record(&client)?.refusal else {
        fail!("connecting {client:?} succeeded; expected a refusal");
    };
    let (Some(took), attempts) = (r.took, r.accepted) else {
        fail!("connect {client:?} with `a client ... connects with these settings:` first");
    };
    if took > limit {
        fail!("the refusal took {took:?}, more than {limit:?}: was it retried?");
    }
    match attempts {
        Some(1) => Ok(()),
        Some(n) => fail!("the database accepted {n} connections while {client:?} connected; a refusal is not retried"),
        None => {
            w.not_checked(&format!("how many connection attempts {client:?} made (the refusal took {took:?})"));
            Ok(())
        }
    }
}

/// A command the database's user may not run is refused by Redis itself.
#[then(expr = "the command {string} from {string} is refused with an error that says {string}")]
async fn then_command_refused(
    w: &mut MaintWorld,
    command: String,
    client: String,
    text: String,
) -> StepResult {
    let mut words = command.split_whitespace();
    let mut cmd = redis::cmd(words.next().ok_or_else(|| anyhow!("an empty command"))?);
    for a in words {
        cmd.arg(a);
    }
    match w.requests(&client)?.request(&cmd).await {
        Ok(v) => fail!("{command} succeeded ({v:?}); expected a refusal that says {text:?}"),
        Err(e) if e.to_string().contains(&text) => Ok(()),
        Err(e) => fail!(
            "{command} failed with {:?}, which does not say {text:?}",
            e.chain()
        ),
    }
}

/// Every connection in use runs TLS of that version (`1.2`, `1.3`) or none.
#[then(regex = r#"^every connection of "([^"]*)" (?:uses TLS (1\.2|1\.3)|is unencrypted)$"#)]
async fn then_tls_version(w: &mut MaintWorld, client: String, version: String) -> StepResult {
    let want = (!version.is_empty()).then_some(version.as_str());
    // The server decides: the version each open connection negotiated.
    let name = w.server_name(&client)?;
    match w.server_record(&client).await? {
        Some(r) => {
            crate::timeline::server::encrypted_as(&r, &name, want)
                .map_err(|e| w.unmet(&client, e))?;
        }
        None if w.record(&client)?.driven.is_some() => {
            fail!("a client through a driver is judged by the server's record of its connections, and there is none here")
        }
        None => w.not_checked(&format!(
            "the TLS version of {client:?}'s connections as the server negotiated it (the client's account decides)"
        )),
    }
    if w.record(&client)?.driven.is_some() {
        return Ok(());
    }
    for c in w.client(&client)?.connections() {
        let got = c.tls_version();
        if got != want {
            let say = |v: Option<&str>| v.map_or("no TLS".to_string(), |v| format!("TLS {v}"));
            fail!(
                "connection {} of {client:?} uses {}, expected {}",
                c.id,
                say(got),
                say(want)
            );
        }
    }
    Ok(())
}

/// `ACL WHOAMI` on every connection in use names the endpoints file's user
/// (`default` when it names none).
#[then(expr = "every connection of {string} is authenticated as the database's user")]
async fn then_whoami(w: &mut MaintWorld, client: String) -> StepResult {
    let env = w.env()?;
    let want = env.db.username.clone().unwrap_or_else(|| "default".into());
    if w.record(&client)?.driven.is_some() {
        // The server answers whom each request came from; the pool picks
        // the connection: as many as it holds.
        let requests = w.requests(&client)?;
        for round in 0..w.options_of(&client)?.pool_size.max(1) {
            let v = requests
                .request(redis::cmd("ACL").arg("WHOAMI"))
                .await
                .map_err(|e| anyhow!("ACL WHOAMI {round} of {client:?}: {}", e.chain()))?;
            if v != redis::Value::BulkString(want.clone().into_bytes()) {
                fail!("ACL WHOAMI {round} of {client:?} answered {v:?}, expected {want:?}");
            }
        }
        return Ok(());
    }
    for c in w.client(&client)?.connections() {
        let v = tokio::time::timeout(
            Duration::from_secs(2),
            c.query(redis::cmd("ACL").arg("WHOAMI")),
        )
        .await
        .map_err(|_| anyhow!("ACL WHOAMI on connection {} got no answer", c.id))?
        .map_err(|e| anyhow!("ACL WHOAMI on connection {}: {}", c.id, e.chain()))?;
        let who = redis::from_redis_value::<String>(v)?;
        if who != want {
            fail!(
                "connection {} of {client:?} is authenticated as {who:?}, expected {want:?}",
                c.id
            );
        }
    }
    Ok(())
}
