//! Handoffs: `Then every connection of "app" hands off exactly once`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use cucumber::{then, when};
use tokio::time::Instant;

use super::params::DurationParam;
use super::{InFlight, MaintWorld, StepResult};
use crate::client::ClientError;
use crate::notification::{Endpoint, Kind, Notification};
use crate::server_record::{CloseCause, ConnectionRecord, DatabaseRecord};
use crate::timeline::{self, close_to, server, Received};
use crate::timing::{BLOCKED_WITHIN, PROMPT_GIVE_UP, PROMPT_HANDOFF, SERVER_POLL, TIGHT_SLACK};
use crate::wait::{poll, Look};

impl MaintWorld {
    /// The server decides: once its record of `client` settles, every
    /// connection the endpoint left on the old node moved, one new
    /// connection each on the new node before the grace ended, none cut off
    /// at the grace end. The client's timeline comes with a failure, as
    /// explanation. Where the target keeps no record (a real cluster), the
    /// client's own account is all there is, and the step says so.
    pub async fn one_handoff_each(&self, client: &str) -> Result<()> {
        self.judge_handoffs(client, server::handed_off_by_server)
            .await
    }

    /// Waits for the server's record of `client`'s handoffs to settle, then
    /// judges it with `claim`.
    async fn judge_handoffs(
        &self,
        client: &str,
        claim: impl Fn(&DatabaseRecord, &str) -> timeline::Claim,
    ) -> Result<()> {
        let name = self.server_name(client)?;
        let record = self
            .settled_record(client, |r, now| server::handoffs_settled(r, &name, now))
            .await?;
        match record {
            Some(r) => claim(&r, &name).map_err(|e| self.unmet(client, e)),
            None => {
                self.not_checked(&format!(
                    "which node each connection of {client:?} was on (the client's own account decides instead)"
                ));
                let ids = self.connection_ids(client)?;
                self.tracker
                    .wait_on(
                        client,
                        self.patience(),
                        "a handoff on every connection",
                        |events| timeline::handoff_ended_on_all(events, &ids).then_some(()),
                    )
                    .await?;
                timeline::one_handoff_each(&self.tracker.timeline(client), &ids)
                    .map_err(|e| self.unmet(client, e))
            }
        }
    }

    /// Waits for the first MOVING `client` received.
    pub async fn wait_moving(&self, client: &str) -> Result<Received> {
        self.tracker
            .wait_on(client, self.patience(), "MOVING", |events| {
                timeline::first(events, Kind::Moving)
            })
            .await
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
}

/// One handoff per connection per MOVING event, none failed.
#[then(expr = "every connection of {string} hands off exactly once")]
async fn then_one_handoff_each(w: &mut MaintWorld, client: String) -> StepResult {
    w.one_handoff_each(&client).await?;
    Ok(())
}

/// The same for every client of the scenario.
#[then("every connection of every client hands off exactly once")]
async fn then_one_handoff_each_everywhere(w: &mut MaintWorld) -> StepResult {
    let names: Vec<String> = w.clients.keys().cloned().collect();
    for name in names {
        w.one_handoff_each(&name).await?;
    }
    Ok(())
}

/// The server decides: no connection of `client` that a handoff opened on
/// the new node was sent the MOVING it followed.
#[then(
    expr = "the server sent no MOVING to a connection of {string} that arrived on the node the endpoint moved to"
)]
async fn then_no_moving_on_arrival(w: &mut MaintWorld, client: String) -> StepResult {
    let name = w.server_name(&client)?;
    let record = w
        .settled_record(&client, |r, now| server::handoffs_settled(r, &name, now))
        .await?;
    match record {
        Some(r) => server::no_moving_on_arrival(&r, &name).map_err(|e| w.unmet(&client, e))?,
        None => w.not_checked(&format!(
            "what the server sent the connections {client:?} opened on the new node"
        )),
    }
    Ok(())
}

/// Every connection handed off before the grace of its MOVING ended (the
/// server's record: each arrived on the new node within the grace).
#[then(expr = "every connection of {string} handed off within the grace of its MOVING")]
async fn then_handoff_within_grace(w: &mut MaintWorld, client: String) -> StepResult {
    w.one_handoff_each(&client).await?;
    Ok(())
}

/// Every connection relaxed its timeouts from its MOVING until its handoff.
#[then(expr = "every connection of {string} was relaxed from its MOVING until its handoff")]
async fn then_relaxed_through_handoff(w: &mut MaintWorld, client: String) -> StepResult {
    let ids = w.connection_ids(&client)?;
    let events = w.tracker.timeline(&client);
    timeline::relaxed_through_handoff(&events, &ids).map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// Every connection handed off soon after its MOVING, idle or not.
#[then(expr = "every connection of {string} handed off promptly after its MOVING")]
async fn then_prompt_handoff(w: &mut MaintWorld, client: String) -> StepResult {
    w.judge_handoffs(&client, |r, name| {
        server::arrived_within(r, name, PROMPT_HANDOFF)
    })
    .await?;
    Ok(())
}

/// The negative control of a handoff: the server closed every connection
/// the client left on the old node.
#[then(expr = "the server closed every connection of {string} when the grace ended")]
async fn then_dropped(w: &mut MaintWorld, client: String) -> StepResult {
    let name = w.server_name(&client)?;
    let record = w
        .settled_record(&client, |r, now| server::handoffs_settled(r, &name, now))
        .await?;
    if let Some(r) = record {
        server::cut_at_grace_end(&r, &name).map_err(|e| w.unmet(&client, e))?;
        return Ok(());
    }
    w.not_checked("who closed the connections (the client's own account decides instead)");
    let ids = w.connection_ids(&client)?;
    w.tracker
        .wait_on(
            &client,
            w.patience(),
            "every connection to be closed under it",
            |events| timeline::dropped_by_server(events, &ids).ok(),
        )
        .await?;
    Ok(())
}

/// The server decides: it closed no connection of `client` under it (at a
/// grace end, a proxy restart, a node leaving, on an error).
#[then(expr = "the server cut off no connection of {string}")]
async fn then_none_cut_off(w: &mut MaintWorld, client: String) -> StepResult {
    let name = w.server_name(&client)?;
    // Every move of the endpoint that found connections of the client has
    // had its say: those it left on the old node are closed (by the client,
    // or by the node at the grace end, recorded a moment after the action
    // ended), and no more will come.
    let Some(r) = w
        .settled_record(&client, |r, now| {
            server::moves_seen(r, &name).iter().all(|s| s.settled(now))
        })
        .await?
    else {
        w.not_checked(&format!(
            "whether the server cut off a connection of {client:?}"
        ));
        return Ok(());
    };
    server::none_cut_off(&r, &name).map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// The server decides: every connection (of any client) the old node held
/// when the endpoint last moved was closed by its client before the grace
/// ended; none was left for the server to cut off.
#[then("no connection is left on the node the endpoint moved away from before the grace ends")]
async fn then_old_node_empty(w: &mut MaintWorld) -> StepResult {
    let Some(first) = w.server_record_all().await? else {
        w.not_checked("which node each connection is on");
        return Ok(());
    };
    let Some(m) = first.endpoint_moves.last().cloned() else {
        fail!("the server recorded no move of the endpoint");
    };
    let left_on_old = |r: &DatabaseRecord| -> Vec<ConnectionRecord> {
        r.connections
            .iter()
            .filter(|c| c.node == m.from && c.open_at(m.at))
            .cloned()
            .collect()
    };
    let emptied = poll(SERVER_POLL * 5, w.patience(), || async {
        let r = w
            .server_record_all()
            .await?
            .ok_or_else(|| anyhow!("the server's record went away"))?;
        let left = left_on_old(&r);
        anyhow::Ok(match left.iter().all(|c| !c.is_open()) {
            true => Look::Ready(left),
            false => Look::NotYet(left),
        })
    })
    .await?;
    let left = match emptied {
        Ok(left) => left,
        Err(open) => fail!(
            "connections are still open on node {}, which the endpoint left:\n  {}",
            m.from,
            open.iter()
                .filter(|c| c.is_open())
                .map(|c| c.describe())
                .collect::<Vec<_>>()
                .join("\n  ")
        ),
    };
    let cut: Vec<String> = left
        .iter()
        .filter(|c| {
            c.closed_by == Some(CloseCause::GraceEnd)
                || c.closed_at.is_none_or(|t| t >= m.grace_end)
        })
        .map(|c| c.describe())
        .collect();
    if !cut.is_empty() {
        fail!(
            "node {} emptied only when the grace ended (at {}), cutting off:\n  {}",
            m.from,
            m.grace_end,
            cut.join("\n  ")
        );
    }
    Ok(())
}

/// Every connection now talks to the endpoint MOVING named (the configured
/// address when MOVING named none).
#[then(expr = "every connection of {string} now uses the endpoint MOVING named")]
async fn then_uses_moving_endpoint(w: &mut MaintWorld, client: String) -> StepResult {
    let name = w.server_name(&client)?;
    // A client through a driver opens connections as its pool needs them:
    // however many it holds, each must be where MOVING sent it.
    let expected = match w.record(&client)?.driven {
        Some(_) => None,
        None => Some(w.client(&client)?.options().pool_size + w.record(&client)?.opened.len()),
    };
    let record = w
        .settled_record(&client, |r, now| server::handoffs_settled(r, &name, now))
        .await?;
    if let Some(r) = record {
        server::uses_moving_endpoint(&r, &name, expected).map_err(|e| w.unmet(&client, e))?;
        return Ok(());
    }
    w.not_checked("where each connection is (the client's own account decides instead)");
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
        .map_err(|e| anyhow!("opening a connection for {client:?}: {}", e.chain()))?;
    w.record_mut(&client)?.opened.push(conn);
    Ok(())
}

/// The connection opened during the window went straight to the new endpoint.
#[then(expr = "the new connection of {string} uses the endpoint MOVING named")]
async fn then_new_connection_target(w: &mut MaintWorld, client: String) -> StepResult {
    if let Some(r) = w.server_record(&client).await? {
        let name = w.server_name(&client)?;
        server::newest_at_moving_endpoint(&r, &name).map_err(|e| w.unmet(&client, e))?;
        return Ok(());
    }
    w.not_checked("where the new connection went (the client's own account decides instead)");
    let target = w.moving_target(&client).await?;
    let conn = w.new_connection(&client)?;
    let first = timeline::first_dial(&w.tracker.timeline(&client), conn.id);
    if first.as_deref() != Some(target.to_string().as_str()) {
        fail!(
            "the new connection {} of {client:?} dialled {first:?}, MOVING named {target}",
            conn.id
        );
    }
    Ok(())
}

/// Starts a blocking request that outlives the MOVING.
#[when(expr = "{string} sends a BLPOP that blocks for {duration}")]
async fn when_blpop(w: &mut MaintWorld, client: String, block: DurationParam) -> StepResult {
    let secs = block.bounded("a BLPOP's block")?.as_secs_f64();
    start_blpop(w, client, secs).await
}

/// Starts a request that blocks until data comes (`BLPOP k 0`), which none will.
#[when(expr = "{string} sends a BLPOP that blocks without a timeout")]
async fn when_blpop_forever(w: &mut MaintWorld, client: String) -> StepResult {
    start_blpop(w, client, 0.0).await
}

/// Sends `BLPOP <empty list> <secs>` on the first connection of `client` and
/// returns once the server holds it blocked.
async fn start_blpop(w: &mut MaintWorld, client: String, secs: f64) -> StepResult {
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
    let raw = crate::raw::RawConnection::connect(&addr, false, None).await?;
    let blocked = poll(SERVER_POLL, BLOCKED_WITHIN, || async {
        let info = String::from_utf8_lossy(&raw.command(&["INFO", "clients"]).await?).into_owned();
        let blocked = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("blocked_clients:"))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        anyhow::Ok(match blocked {
            0 => Look::NotYet(info),
            _ => Look::Ready(()),
        })
    })
    .await?;
    if let Err(info) = blocked {
        fail!("the BLPOP of {client:?} never blocked on the server: {info}");
    }
    w.record_mut(&client)?.in_flight = Some(InFlight { handle, endpoint });
    Ok(())
}

/// The blocking request finished on the old connection, after the handoff, without error.
#[then("the request in flight completed without error after the handoff")]
async fn then_in_flight_ok(w: &mut MaintWorld) -> StepResult {
    let mut requests = Vec::new();
    for (name, r) in &mut w.clients {
        if let Some(f) = r.in_flight.take() {
            requests.push((name.clone(), f));
        }
    }
    if requests.is_empty() {
        fail!("no request in flight; use `When \"app\" sends a BLPOP ...`");
    }
    for (client, f) in requests {
        let (result, done_at) = tokio::time::timeout(w.patience(), f.handle)
            .await
            .map_err(|_| anyhow!("the request in flight of {client:?} never finished"))??;
        if let Err(e) = result {
            fail!(
                "the request in flight of {client:?} on {:?} failed: {}",
                f.endpoint,
                e.chain()
            );
        }
        let handed_off_at = timeline::first_handoff_at(&w.tracker.timeline(&client))
            .ok_or_else(|| w.unmet(&client, timeline::Unmet("never handed off".into())))?;
        if done_at < handed_off_at {
            fail!("the request of {client:?} finished before the handoff; make it block longer");
        }
    }
    Ok(())
}

/// The blocking request ended with a server error that says `text`, and the
/// same connection answers the next request.
#[then(expr = "the request in flight of {string} failed with an error that says {string}")]
async fn then_in_flight_failed(w: &mut MaintWorld, client: String, text: String) -> StepResult {
    let f = w.record_mut(&client)?.in_flight.take().ok_or_else(|| {
        anyhow!("{client:?} has no request in flight; use `When \"{client}\" sends a BLPOP ...`")
    })?;
    let (result, _) = tokio::time::timeout(w.patience(), f.handle)
        .await
        .map_err(|_| anyhow!("the request in flight of {client:?} never finished"))??;
    match result {
        Ok(v) => fail!("the request in flight of {client:?} succeeded ({v:?}); expected an error"),
        Err(e) if !e.chain().contains(&text) => fail!(
            "the request in flight of {client:?} failed with {:?}, which does not say {text:?}",
            e.chain()
        ),
        Err(ClientError::Server(_)) => {}
        Err(e) => fail!(
            "the request in flight of {client:?} failed with a {} error ({}); expected the server's answer",
            e.class(),
            e.chain()
        ),
    }
    let conn = w.client(&client)?.connections()[0].clone();
    if let Err(e) = conn.query(&redis::cmd("PING")).await {
        fail!(
            "after its blocked request ended, {client:?} could not PING on the same connection: {}",
            e.chain()
        );
    }
    Ok(())
}

/// MOVING null: the connection reconnected to the configured address at time_s/2.
#[then(expr = "{string} reconnects to its configured address half the grace period after MOVING")]
async fn then_reconnect_half_grace(w: &mut MaintWorld, client: String) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        w.judge_handoffs(&client, |r, name| {
            server::reconnected_at_half_grace(r, name, TIGHT_SLACK).map(drop)
        })
        .await?;
        return Ok(());
    }
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
    let (at, endpoint) = w
        .tracker
        .wait_on(
            &client,
            w.patience(),
            "a handoff after MOVING null",
            |events| timeline::handoff_of(events, moving.conn),
        )
        .await?;
    if endpoint != configured {
        fail!("{client:?} reconnected to {endpoint}, expected the configured {configured}");
    }
    let half = Duration::from_secs(time_s) / 2;
    let took = at - moving.at;
    if !close_to(took, half, TIGHT_SLACK) {
        fail!("{client:?} reconnected {took:?} after MOVING; expected about {half:?} (time_s/2)");
    }
    Ok(())
}

/// Repeated MOVINGs of one event were ignored.
#[then(expr = "{string} ignored every repeated MOVING")]
async fn then_ignored_repeats(w: &mut MaintWorld, client: String) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        // The server decides: it wrote a connection of the client the same
        // MOVING more than once, and each connection moved once.
        w.judge_handoffs(&client, |r, name| {
            if !r
                .named(name)
                .any(|c| c.pushes_of("MOVING").count() > 1)
            {
                return Err(timeline::Unmet(format!(
                    "the server's record shows no connection of {name:?} written MOVING more than once: nothing was repeated"
                )));
            }
            server::handed_off_by_server(r, name)
        })
        .await?;
        return Ok(());
    }
    let conns = w.client(&client)?.connections().len();
    timeline::repeats_ignored(&w.tracker.timeline(&client), conns)
        .map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// Every attempt of a handoff failed, each retry waited longer than the one
/// before, and the client gave up right after the last.
#[then(expr = "{string} gives up the handoff after {int} attempts")]
async fn then_gives_up(w: &mut MaintWorld, client: String, attempts: usize) -> StepResult {
    let conn = w
        .tracker
        .wait_on(
            &client,
            w.patience(),
            "the handoff to be given up",
            timeline::gave_up,
        )
        .await?;
    let events = w.tracker.timeline(&client);
    let failed = timeline::failed_attempts(&events, conn);
    if failed != attempts {
        fail!(
            "connection {conn} of {client:?} made {failed} failed attempts, expected {attempts}:\n{}",
            w.tracker.describe(&client)
        );
    }
    timeline::attempts_back_off(&events, conn, PROMPT_GIVE_UP).map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// Every failed attempt names the server's certificate as the reason.
#[then(expr = "every failed handoff attempt of {string} names the server's certificate")]
async fn then_attempts_name_certificate(w: &mut MaintWorld, client: String) -> StepResult {
    timeline::attempts_name(&w.tracker.timeline(&client), "certificate")
        .map_err(|e| w.unmet(&client, e))?;
    Ok(())
}
