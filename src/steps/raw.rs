//! Raw connections: what the server itself sends, byte for byte, to a
//! connection no client library stands between.

use std::time::Duration;

use anyhow::{anyhow, Result};
use cucumber::{given, then};

use super::params::EndpointTypeParam;
use super::{MaintWorld, StepResult};
use crate::notification::Kind;
use crate::raw::RawConnection;
use crate::timeline::about;
use crate::timing::{BAND_SLACK, GRACE_MARGIN};

/// The raw connection that opted in.
const OPTED_IN: &str = "opted in";
/// The raw RESP2 connection.
const RESP2: &str = "RESP2";

impl MaintWorld {
    fn raw_connection(&self, name: &str, hint: &str) -> Result<&RawConnection> {
        self.raw
            .get(name)
            .ok_or_else(|| anyhow!("no {name} raw connection; use `Given {hint}`"))
    }
}

/// A raw RESP3 connection that opted in for `type` and sends nothing more.
#[given(expr = "an idle raw connection that opted in for endpoint type {endpoint_type}")]
async fn given_raw(w: &mut MaintWorld, ty: EndpointTypeParam) -> StepResult {
    let addr = w.env()?.db.primary_endpoint().address();
    let p = RawConnection::connect(&addr, true, Some(Some(ty.0))).await?;
    w.raw.insert(OPTED_IN.into(), p);
    Ok(())
}

/// A raw RESP2 connection (it cannot receive pushes).
#[given("a raw RESP2 connection")]
async fn given_raw_resp2(w: &mut MaintWorld) -> StepResult {
    let addr = w.env()?.db.primary_endpoint().address();
    let p = RawConnection::connect(&addr, false, None).await?;
    w.raw.insert(RESP2.into(), p);
    Ok(())
}

/// The server closes the raw connection about `time_s` of its MOVING after it.
#[then("the raw connection is closed by the server when the grace period of its MOVING ends")]
async fn then_raw_closed(w: &mut MaintWorld) -> StepResult {
    let patience = w.patience();
    let p = w.raw_connection(
        OPTED_IN,
        "an idle raw connection that opted in for endpoint type ...",
    )?;
    let (at, moving) = p
        .wait_notification(patience, "MOVING", |n| n.kind() == Kind::Moving)
        .await?;
    let grace = Duration::from_secs(moving.time_s().unwrap_or(0));
    let closed = p.wait_closed(grace * 2 + GRACE_MARGIN).await?;
    let took = closed - at;
    if !about(took, grace, BAND_SLACK) {
        fail!("the raw connection was closed {took:?} after {moving}; expected about {grace:?}");
    }
    Ok(())
}

/// Nothing pushed to a RESP2 connection, and it still works.
#[then("the raw RESP2 connection received no push and still answers PING")]
async fn then_raw_resp2_clean(w: &mut MaintWorld) -> StepResult {
    let p = w.raw_connection(RESP2, "a raw RESP2 connection")?;
    let pushes = p.pushes();
    if !pushes.is_empty() {
        fail!(
            "the raw RESP2 connection received {} pushes: {:?}",
            pushes.len(),
            pushes
        );
    }
    p.ping().await?;
    Ok(())
}
