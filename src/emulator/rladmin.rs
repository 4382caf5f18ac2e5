//! `execute_rladmin_command`: the text `rladmin status` prints, rendered
//! from the emulated cluster (the only command emulated).

use serde_json::{json, Value};

use super::{ActionError, Emulator};

/// Runs `command`; only `status` is emulated.
pub async fn run(emu: &Emulator, command: &str) -> Result<Value, ActionError> {
    if command.split_whitespace().next() != Some("status") {
        return Err(ActionError::Invalid(format!(
            "rladmin command {command:?} is not emulated; only \"status\" is"
        )));
    }
    Ok(json!({ "output": status(emu).await }))
}

/// What `rladmin status` prints.
pub async fn status(emu: &Emulator) -> String {
    let mut out = String::from("CLUSTER NODES:\nNODE:ID ROLE ADDRESS EXTERNAL_ADDRESS\n");
    for n in emu.nodes() {
        out += &format!(
            "node:{} {} {} {}\n",
            n.index,
            if n.index == 1 { "master" } else { "slave" },
            n.internal_ip(),
            n.external_ip()
        );
    }
    out +=
        "\nDATABASES:\nDB:ID NAME TYPE STATUS SHARDS PLACEMENT REPLICATION PERSISTENCE ENDPOINT\n";
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
    out
}
