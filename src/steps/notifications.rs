//! What the client received: `Then "app" receives FAILING_OVER then FAILED_OVER ...`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use cucumber::gherkin::Step;
use cucumber::then;

use super::params::{EndpointForm, KindParam};
use super::{MaintWorld, StepResult};
use crate::client::EventKind;
use crate::notification::{Kind, Notification};
use crate::tracker::Received;

impl MaintWorld {
    /// Waits until some connection of `client` received `first` (seq N) and then
    /// `second` (seq N+1); returns both.
    pub async fn wait_pair(
        &self,
        client: &str,
        first: Kind,
        second: Kind,
    ) -> Result<(Received, Received)> {
        let tracker = self.tracker.clone();
        let found = tracker
            .wait_for(
                self.patience(),
                &format!("{first} then {second} on one connection of {client:?}"),
                |_| {
                    let got = tracker.notifications(client);
                    got.iter()
                        .filter(|a| a.notification.kind() == first)
                        .find_map(|a| {
                            got.iter()
                                .find(|b| {
                                    b.conn == a.conn
                                        && b.notification.kind() == second
                                        && b.notification.seq() == a.notification.seq() + 1
                                        && b.at >= a.at
                                })
                                .map(|b| (a.clone(), b.clone()))
                        })
                },
            )
            .await;
        found.map_err(|e| anyhow!("{e}; {client:?} saw:\n{}", self.tracker.describe(client)))
    }
}

/// A start and its completion, seq N and N+1, on the same connection.
#[then(
    expr = "{string} receives {kind} then {kind} with consecutive sequence numbers on the same connection"
)]
async fn then_pair(
    w: &mut MaintWorld,
    client: String,
    first: KindParam,
    second: KindParam,
) -> StepResult {
    w.wait_pair(&client, first.0, second.0).await?;
    Ok(())
}

/// The connection was relaxed while the window was open.
#[then(expr = "{string} was relaxed between {kind} and {kind}")]
async fn then_relaxed_between(
    w: &mut MaintWorld,
    client: String,
    first: KindParam,
    second: KindParam,
) -> StepResult {
    let (a, b) = w.wait_pair(&client, first.0, second.0).await?;
    let events = w.tracker.of_client(&client);
    let on_conn: Vec<_> = events.iter().filter(|e| e.conn == a.conn).collect();
    // The relax state when `a` arrived and every change until `b`.
    let mut relaxed = false;
    for e in &on_conn {
        if e.at > b.at {
            break;
        }
        match e.kind {
            EventKind::Relaxed { .. } => relaxed = true,
            EventKind::Unrelaxed { .. } if e.at >= a.at => {
                fail!(
                    "connection {} of {client:?} was un-relaxed before {}:\n{}",
                    a.conn,
                    b.notification,
                    w.tracker.describe(&client)
                )
            }
            EventKind::Unrelaxed { .. } => relaxed = false,
            _ => {}
        }
    }
    if !relaxed {
        fail!(
            "connection {} of {client:?} was never relaxed between {} and {}:\n{}",
            a.conn,
            a.notification,
            b.notification,
            w.tracker.describe(&client)
        );
    }
    Ok(())
}

/// A MOVING of the given form arrived.
#[then(expr = "{string} receives MOVING with {endpoint_form}")]
async fn then_moving_form(w: &mut MaintWorld, client: String, form: EndpointForm) -> StepResult {
    let moving = w.wait_moving(&client).await?;
    let Notification::Moving { endpoint, .. } = &moving.notification else {
        unreachable!()
    };
    if !form.matches(endpoint.as_ref()) {
        fail!(
            "{client:?} received {} but expected {form:?}",
            moving.notification
        );
    }
    Ok(())
}

/// Exact counts per connection, then nothing else.
#[then(expr = "every connection of {string} received exactly:")]
async fn then_counts(w: &mut MaintWorld, step: &Step, client: String) -> StepResult {
    let table = step
        .table
        .as_ref()
        .ok_or_else(|| anyhow!("this step needs a table of | NOTIFICATION | count |"))?;
    let mut want: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in &table.rows {
        let [name, count] = row.as_slice() else {
            fail!("each row needs two cells: | NOTIFICATION | count |, got {row:?}");
        };
        let kind = Kind::parse(name).ok_or_else(|| anyhow!("unknown notification {name:?}"))?;
        want.insert(
            kind.as_str(),
            count
                .trim()
                .parse()
                .map_err(|_| anyhow!("{count:?} is not a count"))?,
        );
    }
    let c = w.client(&client)?;
    let mut conns: Vec<u64> = c.connections().iter().map(|c| c.id).collect();
    conns.sort();
    for conn in conns {
        let mut got: BTreeMap<&'static str, usize> = BTreeMap::new();
        for r in w
            .tracker
            .notifications(&client)
            .iter()
            // Replays at set-up repeat an event the connection may have seen.
            .filter(|r| r.conn == conn && !r.at_setup)
        {
            *got.entry(r.notification.kind().as_str()).or_insert(0) += 1;
        }
        let want_nonzero: BTreeMap<_, _> = want
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
            .collect();
        if got != want_nonzero {
            fail!(
                "connection {conn} of {client:?} received {got:?}, expected exactly {want_nonzero:?}:\n{}",
                w.tracker.describe(&client)
            );
        }
    }
    Ok(())
}

/// No notification at all.
#[then(expr = "{string} received no notification")]
async fn then_none(w: &mut MaintWorld, client: String) -> StepResult {
    let got = w.tracker.notifications(&client);
    if !got.is_empty() {
        fail!(
            "{client:?} received {} notifications:\n{}",
            got.len(),
            w.tracker.describe(&client)
        );
    }
    Ok(())
}
