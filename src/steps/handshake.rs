//! The opt-in handshake: against a plain redis-server, over RESP2, mid-window,
//! and what `auto` asks for.

use std::net::IpAddr;

use anyhow::{anyhow, Result};
use cucumber::gherkin::Step;
use cucumber::{given, then, when};

use super::params::{EndpointTypeParam, KindParam, ModeParam};
use super::{MaintWorld, StepResult};
use crate::client::{ClientError, ClientFactory, MaintState, Protocol};
use crate::config::{DatabaseConfig, DatabaseEndpoint};
use crate::emulator::{redis_server_bin, Shard, ShardSpec};
use crate::raw::{Frame, RawConnection};
use crate::server_record::MaintInfo;

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

    /// What the server says of each connection's opt-in, asked on that
    /// connection with `CLIENT MAINT_NOTIFICATIONS_INFO`: the server's own
    /// record, on a real cluster as on the emulator. `None` where the server
    /// does not know the command (a plain redis-server, an older cluster).
    pub(super) async fn server_opt_ins(
        &self,
        client: &str,
    ) -> Result<Option<Vec<(u64, MaintInfo)>>> {
        let mut out = Vec::new();
        let mut info = redis::cmd("CLIENT");
        info.arg("MAINT_NOTIFICATIONS_INFO");
        for c in self.client(client)?.connections() {
            match c.query(&info).await {
                Ok(reply) => {
                    let read = MaintInfo::from_reply(&reply).map_err(|e| {
                        anyhow!("the server's answer to CLIENT MAINT_NOTIFICATIONS_INFO on connection {}: {e}", c.id)
                    })?;
                    out.push((c.id, read));
                }
                Err(ClientError::Server(e)) => {
                    tracing::info!(
                        "the server does not answer CLIENT MAINT_NOTIFICATIONS_INFO: {e}"
                    );
                    return Ok(None);
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "asking the server for connection {}'s opt-in",
                        c.id
                    )))
                }
            }
        }
        Ok(Some(out))
    }

    /// The server decides that every connection of `client` has maintenance
    /// notifications off; where it cannot say, the client's account does.
    async fn judge_off(&self, client: &str) -> Result<()> {
        match self.server_opt_ins(client).await? {
            Some(infos) => {
                let on: Vec<String> = infos
                    .iter()
                    .filter(|(_, i)| i.on)
                    .map(|(id, i)| format!("connection {id}: on, {:?}", i.endpoint_type))
                    .collect();
                if !on.is_empty() {
                    fail!(
                        "the server has maintenance notifications on for {} connection(s) of {client:?}:\n  {}",
                        on.len(),
                        on.join("\n  ")
                    );
                }
            }
            None => {
                self.not_checked_because(
                    &format!("the server's record of {client:?}'s opt-in (the client's own account decides instead)"),
                    "the server does not answer CLIENT MAINT_NOTIFICATIONS_INFO",
                );
                for s in self.maint_states(client)? {
                    if matches!(s, MaintState::On(_)) {
                        fail!("a connection of {client:?} is {s:?}, expected off");
                    }
                }
            }
        }
        Ok(())
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

/// Every connection has the feature off because the server refused it: the
/// server holds it off (where it can say), and the client saw the refusal.
#[then(expr = "{string} has maintenance notifications off because the server refused them")]
async fn then_refused(w: &mut MaintWorld, client: String) -> StepResult {
    w.judge_off(&client).await?;
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
    w.judge_off(&client).await?;
    Ok(())
}

/// The server says, on each connection of `client`, that it opted in for
/// MOVING in form `ty` (`CLIENT MAINT_NOTIFICATIONS_INFO`).
#[then(
    expr = "the server has maintenance notifications on for every connection of {string}, with endpoint type {endpoint_type}"
)]
async fn then_server_on(w: &mut MaintWorld, client: String, ty: EndpointTypeParam) -> StepResult {
    if w.record(&client)?.driven.is_some() {
        // Its connections are the pool's: the server's record of each
        // one's opt-in decides.
        let name = w.server_name(&client)?;
        let Some(r) = w.server_record(&client).await? else {
            fail!("a client through a driver is judged by the server's record of its opt-ins, and there is none here");
        };
        crate::timeline::server::opted_in_as(&r, &name, ty.0.as_str())
            .map_err(|e| w.unmet(&client, e))?;
        return Ok(());
    }
    let Some(infos) = w.server_opt_ins(&client).await? else {
        w.not_checked_because(
            &format!("the server's record of {client:?}'s opt-in"),
            "the server does not answer CLIENT MAINT_NOTIFICATIONS_INFO",
        );
        return Ok(());
    };
    let want = ty.0.as_str();
    let wrong: Vec<String> = infos
        .iter()
        .filter(|(_, i)| !i.on || i.endpoint_type.as_deref() != Some(want))
        .map(|(id, i)| {
            format!(
                "connection {id}: {}, endpoint type {:?}",
                if i.on { "on" } else { "off" },
                i.endpoint_type
            )
        })
        .collect();
    if infos.is_empty() || !wrong.is_empty() {
        fail!(
            "the server holds {} of the {} connection(s) of {client:?} otherwise than on with {want}:\n  {}",
            wrong.len(),
            infos.len(),
            wrong.join("\n  ")
        );
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

/// `auto` picked the form the step's table gives for the configured
/// address: its class (internal for loopback, private, link-local and
/// shared addresses, told here without the client's own function) and the
/// database's TLS. The server's record decides: what every connection of
/// the client asked the proxy for (`CLIENT MAINT_NOTIFICATIONS ON
/// moving-endpoint-type ...`).
#[then(
    expr = "{string} asked for the endpoint type its TLS setting and address class call for, by this table:"
)]
async fn then_auto_type(w: &mut MaintWorld, step: &Step, client: String) -> StepResult {
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
    let tls = if db.tls || e.tls { "on" } else { "off" };
    let class = address_class(ip);
    let want = auto_table(step)?
        .into_iter()
        .find(|(t, c, _)| t == tls && c == class)
        .map(|(_, _, ty)| ty)
        .ok_or_else(|| {
            anyhow!("the table has no row for TLS {tls} and an {class} address ({ip})")
        })?;
    let Some(r) = w.server_record(&client).await? else {
        w.not_checked(
            "what each connection asked the server for (the client's own account decides instead)",
        );
        for s in w.maint_states(&client)? {
            if !matches!(&s, MaintState::On(Some(t)) if t.as_str() == want) {
                fail!("a connection of {client:?} is {s:?}; for {ip} with TLS {tls} auto must ask for {want}");
            }
        }
        return Ok(());
    };
    let name = w.server_name(&client)?;
    let open: Vec<_> = r.named(&name).filter(|c| c.is_open()).collect();
    let expected = w.options_of(&client)?.pool_size;
    let wrong: Vec<String> = open
        .iter()
        .filter(|c| c.maint.as_deref() != Some(want.as_str()))
        .map(|c| format!("{} asked for {:?}", c.describe(), c.maint))
        .collect();
    // A driver's client's pool opens connections as it needs them: at
    // least one, each asking for the right form.
    let all_there = match w.record(&client)?.driven {
        Some(_) => !open.is_empty(),
        None => open.len() == expected,
    };
    if !all_there || !wrong.is_empty() {
        fail!(
            "for {ip} ({class}) with TLS {tls}, auto must ask for {want} on each of the {expected} connections of {client:?}; the server holds {} open, and:\n  {}",
            open.len(),
            wrong.join("\n  ")
        );
    }
    Ok(())
}

/// The class of an address as the table of `auto` names it: `internal`
/// for loopback, private (RFC 1918, unique local), link-local and shared
/// (100.64/10) addresses, `external` otherwise.
fn address_class(ip: IpAddr) -> &'static str {
    let internal = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    };
    if internal {
        "internal"
    } else {
        "external"
    }
}

/// The rows of `| TLS | address class | endpoint type |`.
fn auto_table(step: &Step) -> Result<Vec<(String, String, String)>> {
    let table = step
        .table
        .as_ref()
        .ok_or_else(|| anyhow!("the step needs a | TLS | address class | endpoint type | table"))?;
    let mut rows = Vec::new();
    for row in &table.rows {
        match row.as_slice() {
            [t, c, ty] if t.trim() == "TLS" => {
                let _ = (c, ty);
            }
            [t, c, ty] => rows.push((
                t.trim().to_string(),
                c.trim().to_string(),
                ty.trim().to_string(),
            )),
            other => anyhow::bail!(
                "a row of the table has {} cells, 3 expected: {other:?}",
                other.len()
            ),
        }
    }
    Ok(rows)
}
