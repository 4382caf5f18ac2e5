//! `network_latency`: every reply of a database's endpoint (on one node, or
//! on all) is delayed for a while; `network_failure`: nothing reaches the
//! endpoint's clients for a while, then everything held does (what a
//! client sees of a link that drops packets and recovers).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::check_node;
use crate::emulator::{ActionError, Emulator};
use crate::fault_injector::Action;

/// Puts the latency of a `network_latency` action in force; returns when it
/// ends and the action's output.
pub fn start(emu: &Emulator, action: &Action) -> Result<(Instant, Value), ActionError> {
    let Action::NetworkLatency {
        bdb_id,
        delay_ms,
        duration_s,
        node,
    } = action
    else {
        return Err(ActionError::Invalid("not a network_latency action".into()));
    };
    let d = emu.existing_database(bdb_id.0)?;
    if !(0.0..=3600.0).contains(duration_s) || *delay_ms > 600_000 {
        return Err(ActionError::Invalid(format!(
            "duration_s must be between 0 and 3600 and delay_ms at most 600000; got {duration_s} s and {delay_ms} ms"
        )));
    }
    let node = node.map(|n| check_node(emu, n.0, "node")).transpose()?;
    let until = Instant::now() + Duration::from_secs_f64(*duration_s);
    d.shared
        .add_latency(node, Duration::from_millis(*delay_ms), until);
    Ok((
        until,
        json!({ "delay_ms": delay_ms, "duration_s": duration_s, "node": node.map(|n| n.index) }),
    ))
}

/// Puts the failure of a `network_failure` action in force; returns when it
/// ends and the action's output.
pub fn start_failure(emu: &Emulator, action: &Action) -> Result<(Instant, Value), ActionError> {
    let Action::NetworkFailure {
        bdb_id,
        duration_s,
        node,
    } = action
    else {
        return Err(ActionError::Invalid("not a network_failure action".into()));
    };
    let d = emu.existing_database(bdb_id.0)?;
    if !(0.0..=3600.0).contains(duration_s) {
        return Err(ActionError::Invalid(format!(
            "duration_s must be between 0 and 3600; got {duration_s}"
        )));
    }
    let node = node.map(|n| check_node(emu, n.0, "node")).transpose()?;
    let until = Instant::now() + Duration::from_secs_f64(*duration_s);
    d.shared.add_failure(node, until);
    Ok((
        until,
        json!({ "duration_s": duration_s, "node": node.map(|n| n.index) }),
    ))
}
