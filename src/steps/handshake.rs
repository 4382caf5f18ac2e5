//! The opt-in handshake: against a plain redis-server, over RESP2, mid-window,
//! and what `auto` asks for.

use std::net::IpAddr;

use anyhow::{anyhow, Result};
use cucumber::{given, then, when};

use super::params::{KindParam, ModeParam};
use super::{MaintWorld, StepResult};
use crate::client::{ClientFactory, MaintState, Protocol};
use crate::config::{DatabaseConfig, DatabaseEndpoint};
use crate::emulator::{redis_server_bin, Shard, ShardSpec};
use crate::notification::EndpointType;
use crate::raw::{Frame, RawConnection};

impl MaintWorld {
    /// Records the outcome of creating a client: the client, or why it failed.
    async fn connect_client(
        &mut self,
        name: &str,
        factory: Option<&ClientFactory>,
        mode: ModeParam,
        protocol: Protocol,
    ) -> Result<()> {
        let mut o = self.suite_options();
        o.mode = mode.0;
        o.protocol = protocol;
        let made = match factory {
            Some(f) => f.create(name, o).await,
            None => self.env()?.factory.create(name, o).await,
        };
        self.add_client(name, made)
    }

    fn maint_states(&self, client: &str) -> Result<Vec<MaintState>> {
        Ok(self
            .client(client)?
            .connections()
            .iter()
            .filter_map(|c| c.maint_state())
            .collect())
    }
}

/// A real redis-server of its own, which answers `CLIENT MAINT_NOTIFICATIONS`
/// with an error, as open-source Redis does.
#[given("a plain redis-server that knows nothing of maintenance notifications")]
async fn given_plain_server(w: &mut MaintWorld) -> StepResult {
    let dir = tempfile::Builder::new()
        .prefix("maint-e2e-plain-")
        .tempdir()?;
    let shard = Shard::start(
        &redis_server_bin()?,
        dir.path(),
        ShardSpec {
            id: 0,
            node: 0,
            replica_of: None,
            password: None,
            args: Vec::new(),
            cluster: false,
        },
    )
    .await?;
    w.resources.plain_server = Some((shard, dir));
    Ok(())
}

/// A client of the plain server.
#[when(
    expr = "a client {string} with maintenance notifications {mode} connects to the plain redis-server"
)]
async fn when_client_on_plain(w: &mut MaintWorld, name: String, mode: ModeParam) -> StepResult {
    let (shard, _) = w.resources.plain_server.as_ref().ok_or_else(|| {
        anyhow!("no plain server; start with `Given a plain redis-server that knows nothing of maintenance notifications`")
    })?;
    let db = DatabaseConfig::at("plain", DatabaseEndpoint::plain(shard.addr));
    let factory = ClientFactory::new(db, w.tracker.clone());
    // The client outlives its factory in the World; teardown closes it.
    w.connect_client(&name, Some(&factory), mode, Protocol::Resp3)
        .await?;
    Ok(())
}

/// A client of the database under test, connected by the step itself (so
/// that a refusal is recorded, not a failure).
#[when(expr = "a client {string} with maintenance notifications {mode} connects")]
async fn when_client_connects(w: &mut MaintWorld, name: String, mode: ModeParam) -> StepResult {
    w.connect_client(&name, None, mode, Protocol::Resp3).await?;
    Ok(())
}

/// A RESP2 client of the database under test.
#[when(expr = "a client {string} using RESP2 with maintenance notifications {mode} connects")]
async fn when_resp2_client(w: &mut MaintWorld, name: String, mode: ModeParam) -> StepResult {
    w.connect_client(&name, None, mode, Protocol::Resp2).await?;
    Ok(())
}

/// Connecting the client failed, saying `text`.
#[then(expr = "connecting {string} fails with an error that says {string}")]
async fn then_connect_failed(w: &mut MaintWorld, client: String, text: String) -> StepResult {
    match w.record(&client)?.refusal.as_ref().map(|r| &r.error) {
        Some(e) if e.contains(&text) => Ok(()),
        Some(e) => fail!("connecting failed with {e:?}, which does not say {text:?}"),
        None => fail!("connecting succeeded; expected an error that says {text:?}"),
    }
}

/// Every connection has the feature off because the server refused it.
#[then(expr = "{string} has maintenance notifications off because the server refused them")]
async fn then_refused(w: &mut MaintWorld, client: String) -> StepResult {
    for s in w.maint_states(&client)? {
        if !matches!(s, MaintState::Refused(_)) {
            fail!("a connection of {client:?} is {s:?}, expected refused by the server");
        }
    }
    Ok(())
}

/// Every connection has the feature off (never asked, or refused).
#[then(expr = "{string} has maintenance notifications off")]
async fn then_off(w: &mut MaintWorld, client: String) -> StepResult {
    for s in w.maint_states(&client)? {
        if matches!(s, MaintState::On(_)) {
            fail!("a connection of {client:?} is {s:?}, expected off");
        }
    }
    Ok(())
}

/// Byte-level: the open start notification precedes the opt-in's `+OK`.
#[then(expr = "a raw connection that opts in now receives {kind} before its +OK")]
async fn then_raw_before_ok(w: &mut MaintWorld, kind: KindParam) -> StepResult {
    let addr = w.env()?.db.primary_endpoint().address();
    let p = RawConnection::connect(&addr, true, Some(None)).await?;
    let frames = p.frames();
    let push = frames.iter().position(
        |f| matches!(f, Frame::Push { notification: Ok(Some(n)), .. } if n.kind() == kind.0),
    );
    let ok = frames
        .iter()
        .rposition(|f| matches!(f, Frame::Reply { raw, .. } if raw.as_slice() == b"+OK\r\n"));
    match (push, ok) {
        (Some(p), Some(o)) if p < o => Ok(()),
        _ => fail!(
            "expected {} before the +OK of CLIENT MAINT_NOTIFICATIONS; the connection received {frames:?}",
            kind.0
        ),
    }
}

/// `auto` picked the form WIRE.md prescribes for the configured address.
#[then(expr = "{string} asked for the endpoint type its TLS setting and address class call for")]
async fn then_auto_type(w: &mut MaintWorld, client: String) -> StepResult {
    let db = w.env()?.db.clone();
    let e = db.primary_endpoint();
    let ip: IpAddr = match e.host.parse() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((e.host.as_str(), e.port))
            .await?
            .next()
            .ok_or_else(|| anyhow!("{} does not resolve", e.host))?
            .ip(),
    };
    let tls = db.tls || e.tls;
    let want = EndpointType::for_address(Some(ip), tls);
    for s in w.maint_states(&client)? {
        if s != MaintState::On(Some(want)) {
            fail!(
                "a connection of {client:?} is {s:?}; for {} ({ip}, TLS {tls}) auto must ask for {want}",
                e.host
            );
        }
    }
    // Server-side truth: what the proxies were asked, one entry per connection.
    let Ok(emu) = w.emulator() else {
        eprintln!("note: against a cluster only the client's own record of what it asked is read");
        return Ok(());
    };
    let asked = emu.existing_database(w.env()?.bdb_id)?.asked_forms();
    let conns = w.client(&client)?.connections().len();
    if asked.len() < conns || asked.iter().any(|t| *t != want) {
        fail!(
            "the emulator's proxies were asked for {asked:?} by the {conns} connections of {client:?}; auto must ask for {want}"
        );
    }
    Ok(())
}
