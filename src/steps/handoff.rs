//! Handoffs: `Then every connection of "app" hands off exactly once`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use cucumber::{then, when};
use tokio::time::Instant;

use super::{InFlight, MaintWorld, StepResult};
use crate::client::EventKind;
use crate::notification::{Endpoint, Kind, Notification};
use crate::tracker::Received;

impl MaintWorld {
    /// Waits for the first MOVING `client` received.
    pub async fn wait_moving(&self, client: &str) -> Result<Received> {
        let tracker = self.tracker.clone();
        tracker
            .wait_for(self.patience(), &format!("MOVING on {client:?}"), |_| {
                tracker
                    .notifications_of(client, Kind::Moving)
                    .into_iter()
                    .next()
            })
            .await
            .map_err(|e| anyhow!("{e}; {client:?} saw:\n{}", self.tracker.describe(client)))
    }

    /// The endpoint the first MOVING `client` received names.
    pub async fn moving_target(&self, client: &str) -> Result<Endpoint> {
        let moving = self.wait_moving(client).await?;
        match moving.notification {
            Notification::Moving {
                endpoint: Some(target),
                ..
            } => Ok(target),
            other => fail!("{client:?} received {other} without an endpoint"),
        }
    }

    /// Successful handoffs per connection of `client`, as (seq, endpoint, when).
    fn handoffs(&self, client: &str) -> BTreeMap<u64, Vec<(i64, String, Instant)>> {
        let mut m: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for e in self.tracker.of_client(client) {
            if let EventKind::HandoffSucceeded { seq, endpoint } = e.kind {
                m.entry(e.conn).or_default().push((seq, endpoint, e.at));
            }
        }
        m
    }
}

/// One handoff per connection per MOVING event, none failed.
#[then(expr = "every connection of {string} hands off exactly once")]
async fn then_one_handoff_each(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    let ids: Vec<u64> = c.connections().iter().map(|c| c.id).collect();
    let tracker = w.tracker.clone();
    let name = client.clone();
    let waited = tracker
        .wait_for(
            w.patience(),
            &format!("a handoff on every connection of {client:?}"),
            |events| {
                ids.iter()
                    .all(|id| {
                        events.iter().any(|e| {
                            e.client == name
                                && e.conn == *id
                                && matches!(
                                    e.kind,
                                    EventKind::HandoffSucceeded { .. }
                                        | EventKind::HandoffFailed { .. }
                                )
                        })
                    })
                    .then_some(())
            },
        )
        .await;
    if let Err(e) = waited {
        fail!("{e}:\n{}", w.tracker.describe(&client));
    }
    let handoffs = w.handoffs(&client);
    for id in &ids {
        let failed: Vec<_> = w
            .tracker
            .of_client(&client)
            .into_iter()
            .filter(|e| e.conn == *id && matches!(e.kind, EventKind::HandoffFailed { .. }))
            .collect();
        if !failed.is_empty() {
            fail!(
                "connection {id} of {client:?} failed a handoff:\n{}",
                w.tracker.describe(&client)
            );
        }
        let mut seqs: Vec<i64> = handoffs
            .get(id)
            .map(|v| v.iter().map(|h| h.0).collect())
            .unwrap_or_default();
        let n = seqs.len();
        seqs.dedup();
        if n != 1 || seqs.len() != 1 {
            fail!(
                "connection {id} of {client:?} handed off {n} times (seqs {seqs:?}), expected once:\n{}",
                w.tracker.describe(&client)
            );
        }
    }
    Ok(())
}

/// Every connection now talks to the endpoint MOVING named (the configured
/// address when MOVING named none).
#[then(expr = "every connection of {string} now uses the endpoint MOVING named")]
async fn then_uses_moving_endpoint(w: &mut MaintWorld, client: String) -> StepResult {
    let target = match w.wait_moving(&client).await?.notification {
        Notification::Moving {
            endpoint: Some(e), ..
        } => e,
        _ => {
            let e = w.env()?.db.primary_endpoint();
            Endpoint::new(e.host.clone(), e.port)
        }
    };
    for c in w.client(&client)?.connections() {
        if c.endpoint().as_ref() != Some(&target) {
            fail!(
                "connection {} of {client:?} uses {:?}, MOVING named {target}",
                c.id,
                c.endpoint()
            );
        }
    }
    Ok(())
}

/// Opens one more connection now.
#[when(expr = "{string} opens a new connection")]
async fn when_opens_connection(w: &mut MaintWorld, client: String) -> StepResult {
    let c = w.client(&client)?;
    let conn = c
        .add_connection()
        .await
        .map_err(|e| anyhow!("opening a connection for {client:?}: {e}"))?;
    w.extra_connections.entry(client).or_default().push(conn);
    Ok(())
}

/// The connection opened during the window went straight to the new endpoint.
#[then(expr = "the new connection of {string} uses the endpoint MOVING named")]
async fn then_new_connection_target(w: &mut MaintWorld, client: String) -> StepResult {
    let target = w.moving_target(&client).await?;
    let conn = w
        .extra_connections
        .get(&client)
        .and_then(|v| v.last())
        .ok_or_else(|| anyhow!("{client:?} opened no new connection; use `When \"{client}\" opens a new connection`"))?;
    let first = w
        .tracker
        .of_client(&client)
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::Connected { endpoint, .. } if e.conn == conn.id => Some(endpoint),
            _ => None,
        });
    if first.as_deref() != Some(target.to_string().as_str()) {
        fail!(
            "the new connection {} of {client:?} dialled {first:?}, MOVING named {target}",
            conn.id
        );
    }
    Ok(())
}

/// Starts a blocking request that outlives the MOVING.
#[when(expr = "{string} sends a BLPOP that blocks for {int} seconds")]
async fn when_blpop(w: &mut MaintWorld, client: String, secs: u64) -> StepResult {
    let c = w.client(&client)?;
    let conn = c
        .connections()
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("{client:?} has no connection"))?;
    let endpoint = conn.endpoint().map(|e| e.to_string());
    let key = format!("{}:empty-list", w.prefix);
    let handle = tokio::spawn(async move {
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(key).arg(secs);
        let r = conn.query(&cmd).await;
        (r, Instant::now())
    });
    // The scenario moves on once the server holds the request.
    let addr = w.env()?.db.primary_endpoint().address();
    let probe = crate::probe::Probe::connect(&addr, false, None).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info =
            String::from_utf8_lossy(&probe.command(&["INFO", "clients"]).await?).into_owned();
        let blocked = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("blocked_clients:"))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if blocked >= 1 {
            break;
        }
        if Instant::now() > deadline {
            fail!("the BLPOP of {client:?} never blocked on the server: {info}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.in_flight = Some(InFlight {
        client,
        handle,
        endpoint,
    });
    Ok(())
}

/// The blocking request finished on the old connection, after the handoff, without error.
#[then("the request in flight completed without error after the handoff")]
async fn then_in_flight_ok(w: &mut MaintWorld) -> StepResult {
    let f = w
        .in_flight
        .take()
        .ok_or_else(|| anyhow!("no request in flight; use `When \"app\" sends a BLPOP ...`"))?;
    let (result, done_at) = tokio::time::timeout(w.patience(), f.handle)
        .await
        .map_err(|_| anyhow!("the request in flight never finished"))??;
    if let Err(e) = result {
        fail!("the request in flight on {:?} failed: {e}", f.endpoint);
    }
    let handed_off_at = w
        .handoffs(&f.client)
        .values()
        .flatten()
        .map(|h| h.2)
        .min()
        .ok_or_else(|| {
            anyhow!(
                "{:?} never handed off:\n{}",
                f.client,
                w.tracker.describe(&f.client)
            )
        })?;
    if done_at < handed_off_at {
        fail!("the request finished before the handoff; make it block longer");
    }
    Ok(())
}

/// MOVING null: the connection reconnected to the configured address at time_s/2.
#[then(expr = "{string} reconnects to its configured address half the grace period after MOVING")]
async fn then_reconnect_half_grace(w: &mut MaintWorld, client: String) -> StepResult {
    let moving = w.wait_moving(&client).await?;
    let Notification::Moving {
        time_s,
        endpoint: None,
        ..
    } = moving.notification
    else {
        fail!(
            "{client:?} received {}, expected MOVING without an endpoint",
            moving.notification
        );
    };
    let configured = w.env()?.db.primary_endpoint().address();
    let tracker = w.tracker.clone();
    let name = client.clone();
    let (at, endpoint) = tracker
        .wait_for(w.patience(), "a handoff after MOVING null", |events| {
            events.iter().find_map(|e| match &e.kind {
                EventKind::HandoffSucceeded { endpoint, .. }
                    if e.client == name && e.conn == moving.conn =>
                {
                    Some((e.at, endpoint.clone()))
                }
                _ => None,
            })
        })
        .await?;
    if endpoint != configured {
        fail!("{client:?} reconnected to {endpoint}, expected the configured {configured}");
    }
    let half = Duration::from_secs(time_s) / 2;
    let took = at - moving.at;
    if took < half.mul_f64(0.8) || took > half.mul_f64(1.5) + Duration::from_millis(500) {
        fail!("{client:?} reconnected {took:?} after MOVING; expected about {half:?} (time_s/2)");
    }
    Ok(())
}

/// Repeated MOVINGs of one event were ignored.
#[then(expr = "{string} ignored every repeated MOVING")]
async fn then_ignored_repeats(w: &mut MaintWorld, client: String) -> StepResult {
    let received = w.tracker.notifications_of(&client, Kind::Moving).len();
    let ignored = w
        .tracker
        .of_client(&client)
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MovingIgnored { .. }))
        .count();
    let conns = w.client(&client)?.connections().len();
    if received <= conns || ignored != received - conns {
        fail!(
            "{client:?} received {received} MOVING on {conns} connections and ignored {ignored}; expected repeats, all ignored:\n{}",
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// Every attempt of a handoff failed and the client gave up.
#[then(expr = "{string} gives up the handoff after {int} attempts")]
async fn then_gives_up(w: &mut MaintWorld, client: String, attempts: usize) -> StepResult {
    let tracker = w.tracker.clone();
    let name = client.clone();
    let conn = tracker
        .wait_for(w.patience(), "the handoff to be given up", |events| {
            events.iter().find_map(|e| {
                (e.client == name && matches!(e.kind, EventKind::HandoffFailed { .. }))
                    .then_some(e.conn)
            })
        })
        .await
        .map_err(|e| anyhow!("{e}:\n{}", w.tracker.describe(&client)))?;
    let failed = w
        .tracker
        .of_client(&client)
        .iter()
        .filter(|e| e.conn == conn && matches!(e.kind, EventKind::HandoffAttemptFailed { .. }))
        .count();
    if failed != attempts {
        fail!(
            "connection {conn} of {client:?} made {failed} failed attempts, expected {attempts}:\n{}",
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// Every failed attempt names the server's certificate as the reason.
#[then(expr = "every failed handoff attempt of {string} names the server's certificate")]
async fn then_attempts_name_certificate(w: &mut MaintWorld, client: String) -> StepResult {
    let reasons: Vec<String> = w
        .tracker
        .of_client(&client)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::HandoffAttemptFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    if reasons.is_empty()
        || !reasons
            .iter()
            .all(|r| r.to_lowercase().contains("certificate"))
    {
        fail!(
            "expected every failed attempt to name the certificate; reasons: {reasons:?}:\n{}",
            w.tracker.describe(&client)
        );
    }
    Ok(())
}
