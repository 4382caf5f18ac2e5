//! Raw probe connections: what the server itself sends, byte for byte.

use std::time::Duration;

use anyhow::anyhow;
use cucumber::{given, then};

use super::params::EndpointTypeParam;
use super::{MaintWorld, StepResult};
use crate::notification::Kind;
use crate::probe::Probe;

/// An idle RESP3 connection that opted in.
#[given(expr = "an idle probe connection that opted in for endpoint type {endpoint_type}")]
async fn given_probe(w: &mut MaintWorld, ty: EndpointTypeParam) -> StepResult {
    let addr = w.env()?.db.primary_endpoint().address();
    let p = Probe::connect(&addr, true, Some(Some(ty.0))).await?;
    w.probes.insert("probe".into(), p);
    Ok(())
}

/// A RESP2 connection that never opted in.
#[given("a RESP2 probe connection")]
async fn given_resp2_probe(w: &mut MaintWorld) -> StepResult {
    let addr = w.env()?.db.primary_endpoint().address();
    let p = Probe::connect(&addr, false, None).await?;
    w.probes.insert("resp2".into(), p);
    Ok(())
}

/// The server closes a connection that did not move when the grace ends.
#[then("the probe is closed by the server when the grace period of its MOVING ends")]
async fn then_probe_closed(w: &mut MaintWorld) -> StepResult {
    let patience = w.patience();
    let p = w
        .probes
        .get("probe")
        .ok_or_else(|| anyhow!("no probe; use `Given an idle probe connection ...`"))?;
    let (at, moving) = p
        .wait_notification(patience, "MOVING", |n| n.kind() == Kind::Moving)
        .await?;
    let grace = Duration::from_secs(moving.time_s().unwrap_or(0));
    let closed = p.wait_closed(grace * 2 + Duration::from_secs(5)).await?;
    let took = closed - at;
    if took < grace.mul_f64(0.8) || took > grace.mul_f64(1.5) + Duration::from_millis(500) {
        fail!("the probe was closed {took:?} after {moving}; expected about {grace:?}");
    }
    Ok(())
}

/// No push reached the RESP2 connection, and it is still in sync.
#[then("the RESP2 probe received no push and still answers PING")]
async fn then_resp2_probe_clean(w: &mut MaintWorld) -> StepResult {
    let p = w
        .probes
        .get("resp2")
        .ok_or_else(|| anyhow!("no RESP2 probe; use `Given a RESP2 probe connection`"))?;
    let pushes = p.pushes();
    if !pushes.is_empty() {
        fail!(
            "the RESP2 probe received {} pushes: {:?}",
            pushes.len(),
            pushes
        );
    }
    p.ping().await?;
    Ok(())
}
