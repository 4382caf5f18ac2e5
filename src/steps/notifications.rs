//! What the client received: `Then "app" receives FAILING_OVER then FAILED_OVER ...`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use cucumber::gherkin::Step;
use cucumber::then;

use super::params::{EndpointForm, EndpointTypeParam, KindParam};
use super::{MaintWorld, StepResult};
use crate::notification::EndpointType;
use crate::notification::{Kind, Notification};
use crate::timeline::{self, server, Received};
use crate::timing::SERVER_POLL;
use crate::wait::{poll, Look};

impl MaintWorld {
    /// Waits until some connection of `client` received `first` (seq N) and then
    /// `second` (seq N+1); returns both.
    pub async fn wait_pair(
        &self,
        client: &str,
        first: Kind,
        second: Kind,
    ) -> Result<(Received, Received)> {
        let what = format!("{first} then {second} on one connection");
        self.tracker
            .wait_on(client, self.patience(), &what, |events| {
                timeline::pair(events, first, second)
            })
            .await
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
    if w.record(&client)?.driven.is_some() {
        w.server_wrote_kinds(&client, first.0, Some(second.0))
            .await?;
        return Ok(());
    }
    let (a, b) = w.wait_pair(&client, first.0, second.0).await?;
    w.server_wrote(&client, &[&a, &b]).await?;
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
    if w.record(&client)?.driven.is_some() {
        if !w.window_judged(&client, first.0, second.0, None).await? {
            fail!("a client through a driver is judged by its requests inside the server's windows, and none could be judged here");
        }
        return Ok(());
    }
    let (a, b) = w.wait_pair(&client, first.0, second.0).await?;
    if w.window_judged(&client, first.0, second.0, None).await? {
        return Ok(());
    }
    timeline::relaxed_over(&w.tracker.timeline(&client), a.conn, a.at, b.at)
        .map_err(|e| w.unmet(&client, e))?;
    Ok(())
}

/// A MOVING of the given form arrived, as the server wrote it.
#[then(expr = "{string} receives MOVING with {endpoint_form}")]
async fn then_moving_form(w: &mut MaintWorld, client: String, form: EndpointForm) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        let (_, (seq, _, named)) = w.server_moving(&client).await?;
        if !form.matches_text(named.as_deref()) {
            fail!("the server's MOVING (seq {seq}) to {client:?} named {named:?}, not {form:?}");
        }
        return Ok(());
    }
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
    w.server_wrote(&client, &[&moving]).await?;
    Ok(())
}

/// MOVING named the new node in exactly the form the client asked for: on
/// the emulator, internal and external told apart by the node's own
/// addresses and names; against a cluster, only the form (IP, name, none).
#[then(expr = "{string} receives MOVING in the form {endpoint_type} asks for")]
async fn then_moving_type(w: &mut MaintWorld, client: String, ty: EndpointTypeParam) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        return w.moving_written_in_form(&client, ty.0).await;
    }
    let moving = w.wait_moving(&client).await?;
    let Notification::Moving { endpoint, .. } = &moving.notification else {
        unreachable!("wait_moving returns a MOVING")
    };
    let form = EndpointForm::of_type(ty.0);
    if !form.matches(endpoint.as_ref()) {
        fail!(
            "{client:?} asked for {} and received {}, not {form:?}",
            ty.0,
            moving.notification
        );
    }
    // The server decides where MOVING pointed: the endpoint, in the asked
    // form, of the node that holds it after the move.
    let Some(r) = w.server_record(&client).await? else {
        w.not_checked(&format!(
            "whether {} names the node the endpoint moved to (only its form is checked)",
            moving.notification
        ));
        return Ok(());
    };
    let name = w.server_name(&client)?;
    let (seq, to, named) = server::moving_named(&r, &name).map_err(|e| w.unmet(&client, e))?;
    let node = r
        .node(to)
        .ok_or_else(|| anyhow!("the server's record lists no node {to}"))?;
    let expected = node.in_form(ty.0.as_str()).map(str::to_string);
    if named != expected {
        fail!(
            "{client:?} asked for {}; the server's MOVING (seq {seq}) named {named:?}, but the endpoint moved to node {to}, which is {expected:?} in that form",
            ty.0
        );
    }
    if endpoint.as_ref().map(|e| e.to_string()) != named {
        fail!(
            "the server's MOVING (seq {seq}) named {named:?}; {client:?} read {}",
            moving.notification
        );
    }
    Ok(())
}

impl MaintWorld {
    /// The server's record decides, for a client whose reads nobody sees:
    /// it wrote `client` a MOVING naming, in form `ty`, the node the
    /// endpoint moved to.
    async fn moving_written_in_form(&self, client: &str, ty: EndpointType) -> StepResult {
        let (record, (seq, to, named)) = self.server_moving(client).await?;
        let node = record
            .node(to)
            .ok_or_else(|| anyhow!("the server's record lists no node {to}"))?;
        let expected = node.in_form(ty.as_str()).map(str::to_string);
        if named != expected {
            fail!(
                "{client:?} asked for {ty}; the server's MOVING (seq {seq}) named {named:?}, but the endpoint moved to node {to}, which is {expected:?} in that form"
            );
        }
        Ok(())
    }
}

impl MaintWorld {
    /// The server's record once it wrote `client`'s connections a MOVING,
    /// with that MOVING's sequence number, target node and endpoint.
    pub(super) async fn server_moving(
        &self,
        client: &str,
    ) -> Result<(
        crate::server_record::DatabaseRecord,
        (i64, usize, Option<String>),
    )> {
        let name = self.server_name(client)?;
        let record = poll(SERVER_POLL, self.patience(), || async {
            let Some(r) = self.server_record(client).await? else {
                anyhow::bail!("a client through a driver is judged by the server's record of what it wrote, and there is none here");
            };
            anyhow::Ok(match server::moving_named(&r, &name) {
                Ok(_) => Look::Ready(r),
                Err(e) => Look::NotYet(e),
            })
        })
        .await?
        .map_err(|e| self.unmet(client, e))?;
        let moving = server::moving_named(&record, &name).map_err(|e| self.unmet(client, e))?;
        Ok((record, moving))
    }
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
    let events = w.tracker.timeline(&client);
    for conn in conns {
        timeline::exact_counts(&events, conn, &want).map_err(|e| w.unmet(&client, e))?;
    }
    Ok(())
}

/// No notification at all.
#[then(expr = "{string} received no notification")]
async fn then_none(w: &mut MaintWorld, client: String) -> StepResult {
    w.server_sent_none(&client, None).await?;
    let got = timeline::pushes_read(&w.tracker.timeline(&client), None);
    if !got.is_empty() {
        fail!(
            "{client:?} read {} notification push(es): {}:\n{}",
            got.len(),
            got.join("; "),
            w.tracker.describe(&client)
        );
    }
    Ok(())
}
