//! `create_database` and `delete_database`.

use serde_json::{json, Value};

use crate::emulator::{ActionError, Emulator};
use crate::fault_injector::{CreatedDatabase, DatabaseSpec};

/// Creates a database; its output is the database as a real cluster
/// describes it.
pub async fn create(emu: &Emulator, spec: &DatabaseSpec) -> Result<Value, ActionError> {
    let d = emu.create_database(spec.clone()).await?;
    let c = d.config();
    let created = CreatedDatabase {
        bdb_id: d.shared.id,
        name: d.shared.name.clone(),
        port: d.shared.port,
        shards_count: d.shards.lock().await.sets.len(),
        endpoints: c.endpoints.iter().map(|e| e.to_string()).collect(),
        username: c.username,
        password: c.password,
        tls: c.tls,
        raw_endpoints: c.raw_endpoints.unwrap_or_default(),
        ignored: spec.ignored(),
    };
    Ok(serde_json::to_value(created).expect("a database description serializes"))
}

/// Deletes every database (`delete_all`); fails with `db_busy` while one
/// has an action queued or running, as a real cluster answers.
pub async fn delete_all(emu: &Emulator) -> Result<Value, ActionError> {
    let dbs = emu.databases();
    if let Some(busy) = dbs.iter().find(|d| d.actions_queued() > 0) {
        return Err(ActionError::Conflict(super::super::jobs::db_busy(
            busy.shared.id,
            busy.actions_queued(),
        )));
    }
    let mut deleted = Vec::new();
    for d in dbs {
        emu.delete_database(d.shared.id).await?;
        deleted.push(d.shared.id);
    }
    deleted.sort_unstable();
    Ok(json!({ "deleted": deleted }))
}

/// Deletes a database: proxies closed, shard processes stopped.
pub async fn delete(emu: &Emulator, id: u64) -> Result<Value, ActionError> {
    emu.delete_database(id).await?;
    Ok(json!({ "bdb_id": id, "deleted": true }))
}
