//! Databases through the fault injector: created, described, listed by
//! rladmin, used, refused and deleted.

use std::time::Duration;

use anyhow::{anyhow, Result};
use cucumber::{then, when};
use serde_json::Value;
use tokio::time::Instant;

use super::{MaintWorld, StepResult};
use crate::client::ClientFactory;
use crate::config::DatabaseEndpoint;
use crate::fault_injector::Action;
use crate::timing::RESOLVE_CAP;

/// `create_database` with a replica.
#[when(expr = "a database {string} is created through the fault injector")]
async fn when_create(w: &mut MaintWorld, name: String) -> StepResult {
    w.create_db(&name, true).await?;
    Ok(())
}

/// `create_database` without a replica.
#[when(expr = "a database {string} without replication is created through the fault injector")]
async fn when_create_single(w: &mut MaintWorld, name: String) -> StepResult {
    w.create_db(&name, false).await?;
    Ok(())
}

/// `delete_database`.
#[when(expr = "the database {string} is deleted through the fault injector")]
async fn when_delete(w: &mut MaintWorld, name: String) -> StepResult {
    let id = w.created(&name)?.bdb_id;
    let action = Action::delete_database(id);
    w.env()?.fault_injector.run(&action, w.patience()).await?;
    if let Some(created) = w.injector.created.remove(&name) {
        w.injector.deleted.insert(name, created);
    }
    Ok(())
}

/// `delete_database` of a database that may be busy with an action, as the
/// newest suites delete: refused while busy (the refusal is recorded), tried
/// again every half second until it is deleted.
#[when(
    expr = "the database {string} is deleted through the fault injector, retrying while it is busy"
)]
async fn when_delete_retrying(w: &mut MaintWorld, name: String) -> StepResult {
    let id = w.created(&name)?.bdb_id;
    let action = Action::delete_database(id);
    let fi = w.env()?.fault_injector.clone();
    let deadline = Instant::now() + w.patience();
    loop {
        match fi.run(&action, w.patience()).await {
            Ok(_) => break,
            Err(e) if e.to_string().contains("db_busy") && Instant::now() < deadline => {
                w.injector.refusal = Some(e.to_string());
                tokio::time::sleep(DELETE_RETRY_PAUSE).await;
            }
            Err(e) => fail!("deleting {name:?}: {e}"),
        }
    }
    if let Some(created) = w.injector.created.remove(&name) {
        w.injector.deleted.insert(name, created);
    }
    Ok(())
}

/// Pause between deletions of a busy database (clients' suites wait 5 s).
const DELETE_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The output of the last `create_database` has what callers read.
#[then("its description has bdb_id, endpoints, username, password, tls and raw_endpoints")]
async fn then_description(w: &mut MaintWorld) -> StepResult {
    // The contract's type has every field; what is left is their values.
    let (name, out) = w.last_created()?;
    let url = out.endpoints.first().map(String::as_str).unwrap_or("");
    if DatabaseEndpoint::parse(url).is_err() {
        fail!("endpoints of {name:?} should be redis:// or rediss:// URLs: {out:?}");
    }
    Ok(())
}

/// `rladmin status` has a `db:<id> <name>` row.
#[then(expr = "rladmin status lists {string}")]
async fn then_listed(w: &mut MaintWorld, name: String) -> StepResult {
    let names = w.rladmin_databases().await?;
    if !names.contains(&name) {
        fail!("rladmin status lists {names:?}, not {name:?}");
    }
    Ok(())
}

/// `rladmin status` has no row for it any more.
#[then(expr = "rladmin status no longer lists {string}")]
async fn then_not_listed(w: &mut MaintWorld, name: String) -> StepResult {
    let names = w.rladmin_databases().await?;
    if names.contains(&name) {
        fail!("rladmin status still lists {name:?}: {names:?}");
    }
    Ok(())
}

/// A client of the new database writes and reads.
#[then(expr = "a client can write and read through the endpoint of {string}")]
async fn then_usable(w: &mut MaintWorld, name: String) -> StepResult {
    let db = w.created(&name)?.database_config()?;
    let factory = ClientFactory::new(db, w.tracker.clone());
    let client = factory
        .create(&format!("{name}-user"), w.suite_options())
        .await
        .map_err(|e| anyhow!("connecting to {name:?}: {}", e.chain()))?;
    let key = format!("{}:created", w.prefix);
    let result: Result<String> = async {
        client
            .query::<()>(redis::cmd("SET").arg(&key).arg("v"))
            .await?;
        Ok(client.query::<String>(redis::cmd("GET").arg(&key)).await?)
    }
    .await;
    factory.destroy_all().await;
    match result? {
        v if v == "v" => Ok(()),
        other => fail!("read {other:?} back from {name:?}, expected \"v\""),
    }
}

/// Nothing listens on the deleted database's endpoint.
#[then(expr = "the endpoint of {string} refuses connections")]
async fn then_refused(w: &mut MaintWorld, name: String) -> StepResult {
    let deleted = w
        .injector
        .deleted
        .get(&name)
        .ok_or_else(|| anyhow!("{name:?} was not deleted in this scenario"))?;
    let e = deleted.database_config()?.primary_endpoint().clone();
    match tokio::time::timeout(RESOLVE_CAP, tokio::net::TcpStream::connect(e.address())).await {
        Ok(Err(_)) | Err(_) => Ok(()),
        Ok(Ok(_)) => fail!(
            "{} still accepts connections after {name:?} was deleted",
            e.address()
        ),
    }
}

/// A database on a port the database under test holds already.
#[when(
    expr = "a database {string} is created through the fault injector on the port of the database under test"
)]
async fn when_create_taken(w: &mut MaintWorld, name: String) -> StepResult {
    let port = w.env()?.db.primary_endpoint().port;
    w.create_db_on(&name, port).await?;
    if w.injector.refusal.is_none() {
        fail!("the fault injector created {name:?} on port {port}, which the database under test holds");
    }
    Ok(())
}

/// What a client that retries on the next port does: the ports after the
/// taken one, until one is free (at most 20).
#[when(expr = "a database {string} is created through the fault injector on the next free port")]
async fn when_create_next(w: &mut MaintWorld, name: String) -> StepResult {
    let taken = w.env()?.db.primary_endpoint().port;
    for port in taken.saturating_add(1)..taken.saturating_add(21) {
        w.create_db_on(&name, port).await?;
        match &w.injector.refusal {
            None => return Ok(()),
            Some(e) if e.contains("port_unavailable") => continue,
            Some(e) => fail!("creating {name:?} on port {port} failed otherwise: {e}"),
        }
    }
    fail!("20 ports after {taken} were all unavailable")
}

/// The last refusal of a `create_database` or a `delete_database` says `text`.
#[then(expr = "the fault injector refuses it with an error that says {string}")]
async fn then_refused_saying(w: &mut MaintWorld, text: String) -> StepResult {
    match &w.injector.refusal {
        Some(e) if e.contains(&text) => Ok(()),
        Some(e) => fail!("the refusal {e:?} does not say {text:?}"),
        None => fail!("nothing was refused"),
    }
}

/// The created database's `raw_endpoints[0]` has the fields, and the types,
/// a real cluster's description has.
#[then("its raw endpoint has addr, addr_type, dns_name, port, proxy_policy and uid")]
async fn then_raw_endpoint(w: &mut MaintWorld) -> StepResult {
    let (name, created) = w.last_created()?;
    let out = serde_json::to_value(created)?;
    let raw = out
        .pointer("/raw_endpoints/0")
        .ok_or_else(|| anyhow!("the description of {name:?} has no raw_endpoints[0]: {out}"))?;
    let text = |k: &str| raw.get(k).is_some_and(Value::is_string);
    let checks = [
        ("addr", raw.pointer("/addr/0").is_some_and(Value::is_string)),
        ("addr_type", text("addr_type")),
        ("dns_name", text("dns_name") && raw["dns_name"] != ""),
        ("port", raw.get("port").is_some_and(Value::is_u64)),
        ("proxy_policy", text("proxy_policy")),
        ("uid", text("uid")),
    ];
    for (field, ok) in checks {
        if !ok {
            fail!("raw_endpoints[0].{field} of {name:?} is missing or of the wrong type: {raw}");
        }
    }
    if raw["port"] != out["port"] && out.get("port").is_some() {
        fail!(
            "raw_endpoints[0].port {} is not the database's port {}",
            raw["port"],
            out["port"]
        );
    }
    Ok(())
}
