//! `update_cluster_config`: cluster settings, as a real cluster's
//! `PUT /v1/cluster` takes them. `client_maint_notifications` turns
//! maintenance notifications on or off; other settings are listed as ignored.

use serde_json::{json, Map, Value};

use crate::emulator::{ActionError, Emulator};

const MAINT_NOTIFICATIONS: &str = "client_maint_notifications";

/// Refuses settings of the wrong type.
pub fn check(config: &Map<String, Value>) -> Result<(), ActionError> {
    match config.get(MAINT_NOTIFICATIONS) {
        Some(v) if !v.is_boolean() => Err(ActionError::Invalid(format!(
            "{MAINT_NOTIFICATIONS} is true or false, got {v}"
        ))),
        _ => Ok(()),
    }
}

/// Applies the settings the emulator knows.
pub fn update(emu: &Emulator, config: &Map<String, Value>) -> Result<Value, ActionError> {
    check(config)?;
    let mut applied = Map::new();
    let mut ignored = Vec::new();
    for (key, value) in config {
        match (key.as_str(), value) {
            (MAINT_NOTIFICATIONS, Value::Bool(on)) => {
                emu.cluster.set_maint_notifications(*on);
                let state = if *on { "on" } else { "off" };
                tracing::info!("maintenance notifications turned {state}");
                applied.insert(key.clone(), Value::Bool(*on));
            }
            _ => ignored.push(key.clone()),
        }
    }
    Ok(json!({ "config": applied, "ignored": ignored }))
}

/// Cluster settings back to their defaults (`reset_cluster`): maintenance
/// notifications on, the rebind grace untuned. Returns the settings now.
pub fn reset(emu: &Emulator) -> Value {
    emu.cluster.reset();
    json!({ MAINT_NOTIFICATIONS: true, "endpoint_rebind_propagation_grace_time": null })
}
