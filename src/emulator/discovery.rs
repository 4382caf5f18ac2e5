//! The discovery service: as on Redis Enterprise, every node answers the
//! Sentinel protocol on one port (8001 by default; no AUTH), so that a
//! client configured for Sentinel finds its database there.
//!
//! * `SENTINEL get-master-addr-by-name <db>` gives the address of the node
//!   that holds the endpoint of the database named `<db>` (its external
//!   address), `<db>@internal` its internal one; an unknown name, nil.
//! * `+switch-master <db> <old ip> <old port> <new ip> <new port>` is
//!   published to subscribers whenever the endpoint moves to another node
//!   (a rebind, a node failure), for both names; a shard failover moves no
//!   endpoint and publishes nothing.
//!
//! Also `SENTINEL master(s)`, `sentinels`, `replicas` / `slaves`, `ROLE`,
//! `INFO`, `PING`, `HELLO`, `CLIENT`, `SUBSCRIBE` / `PSUBSCRIBE` (and their
//! undoing) and `QUIT`, as much as Sentinel clients ask.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::framing::{take_commands, Command};
use super::{Emulator, Node};

/// The Enterprise port of the discovery service.
pub const DEFAULT_PORT: u16 = 8001;

/// The channel Sentinel announces a new primary on.
pub const SWITCH_MASTER: &str = "+switch-master";

/// The suffix of a database's internal name.
const INTERNAL: &str = "@internal";

/// A database endpoint that moved to another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The database's name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// The node it left.
    pub from: Node,
    /// The node it moved to.
    pub to: Node,
}

impl Switch {
    /// The `+switch-master` messages of the move: the database's name with
    /// external addresses, then its internal name with internal ones.
    pub fn messages(&self) -> [String; 2] {
        let (name, port) = (&self.name, self.port);
        [
            format!(
                "{name} {} {port} {} {port}",
                self.from.external_ip(),
                self.to.external_ip()
            ),
            format!(
                "{name}{INTERNAL} {} {port} {} {port}",
                self.from.internal_ip(),
                self.to.internal_ip()
            ),
        ]
    }
}

/// What the databases share with the service: where it listens, and the
/// moves it announces.
pub struct Hub {
    port: OnceLock<u16>,
    nodes: usize,
    tx: broadcast::Sender<Switch>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(0)
    }
}

impl Hub {
    /// The hub of a cluster of `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Hub {
            port: OnceLock::new(),
            nodes,
            tx: broadcast::channel(1024).0,
        }
    }

    /// Announces a move (to nobody, when nobody listens).
    pub fn publish(&self, s: Switch) {
        let _ = self.tx.send(s);
    }

    /// The service on every node (`host:port`), once it listens.
    pub fn endpoints(&self) -> Vec<String> {
        let Some(port) = self.port.get() else {
            return Vec::new();
        };
        (1..=self.nodes)
            .map(|index| format!("{}:{port}", Node { index }.internal_ip()))
            .collect()
    }
}

/// Listens on `port` (0: one that is free on every node) of every node's
/// internal and external address; serves until `cancel`. Returns the port.
pub async fn serve(emu: Arc<Emulator>, port: u16, cancel: CancellationToken) -> Result<u16> {
    // A port picked free can be taken by another emulator before it is
    // bound (scenarios start theirs side by side): another is picked then.
    let (port, listeners) = match port {
        0 => {
            let mut last = None;
            let mut bound = None;
            for _ in 0..FREE_PORT_TRIES {
                let p = free_port(&emu)?;
                match bind_all(&emu, p).await {
                    Ok(l) => {
                        bound = Some((p, l));
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match (bound, last) {
                (Some(b), _) => b,
                (None, Some(e)) => return Err(e),
                (None, None) => anyhow::bail!("no port tried for the discovery service"),
            }
        }
        p => (p, bind_all(&emu, p).await?),
    };
    if emu.discovery.port.set(port).is_err() {
        anyhow::bail!("the discovery service already runs");
    }
    for l in listeners {
        let (emu, cancel) = (emu.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut errors = super::accept::AcceptErrors::new("the discovery service");
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = l.accept() => match r {
                        Ok((s, _)) => {
                            let (emu, cancel) = (emu.clone(), cancel.clone());
                            tokio::spawn(async move {
                                if let Err(e) = session(emu, s, cancel).await {
                                    tracing::debug!("discovery connection ended: {e:#}");
                                }
                            });
                        }
                        Err(e) => errors.failed(e).await,
                    }
                }
            }
        });
    }
    tracing::info!(port, "discovery service (Sentinel protocol) on every node");
    Ok(port)
}

/// Ports a free discovery port is picked from before giving up.
const FREE_PORT_TRIES: usize = 5;

/// Listeners on `port` of every node's internal and external address.
async fn bind_all(emu: &Emulator, port: u16) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for node in emu.nodes() {
        for ip in [node.internal_ip(), node.external_ip()] {
            let addr = SocketAddr::from((ip, port));
            let l = TcpListener::bind(addr).await.with_context(|| {
                format!("binding the discovery service on {addr} (choose another port with --discovery-port, or 0 for a free one)")
            })?;
            listeners.push(l);
        }
    }
    Ok(listeners)
}

/// A port free on every node's addresses.
fn free_port(emu: &Emulator) -> Result<u16> {
    for _ in 0..100 {
        let p = super::free_port()?;
        let free = emu.nodes().iter().all(|n| {
            [n.internal_ip(), n.external_ip()]
                .iter()
                .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
        });
        if free {
            return Ok(p);
        }
    }
    anyhow::bail!("no port is free on every node's addresses for the discovery service")
}

/// One client of the service.
async fn session(emu: Arc<Emulator>, mut s: TcpStream, cancel: CancellationToken) -> Result<()> {
    s.set_nodelay(true)?;
    let mut switches = emu.discovery.tx.subscribe();
    let mut buf = BytesMut::new();
    let mut commands = VecDeque::new();
    let mut c = Client::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = s.read_buf(&mut buf) => {
                if r? == 0 {
                    return Ok(());
                }
                if let Err(e) = take_commands(&mut buf, &mut commands) {
                    s.write_all(format!("-{e}\r\n").as_bytes()).await?;
                    return Ok(());
                }
                let mut out = BytesMut::new();
                while let Some(cmd) = commands.pop_front() {
                    if c.answer(&emu, &cmd, &mut out) == Next::Close {
                        s.write_all(&out).await?;
                        return Ok(());
                    }
                }
                s.write_all(&out).await?;
            }
            m = switches.recv() => match m {
                Ok(switch) => {
                    let mut out = BytesMut::new();
                    for text in switch.messages() {
                        c.deliver(&text, &mut out);
                    }
                    s.write_all(&out).await?;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("a discovery client missed {n} +switch-master messages");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

#[derive(PartialEq, Eq)]
enum Next {
    Go,
    Close,
}

/// A connection's state: its protocol and subscriptions.
#[derive(Default)]
struct Client {
    resp3: bool,
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
}

impl Client {
    fn subscribed(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Writes a published message to `out` if the client listens for it.
    fn deliver(&self, text: &str, out: &mut BytesMut) {
        let head = |out: &mut BytesMut, n: usize| match self.resp3 {
            true => out.put_slice(format!(">{n}\r\n").as_bytes()),
            false => out.put_slice(format!("*{n}\r\n").as_bytes()),
        };
        if self.channels.contains(SWITCH_MASTER) {
            head(out, 3);
            for part in ["message", SWITCH_MASTER, text] {
                bulk(out, part);
            }
        }
        for p in self.patterns.iter().filter(|p| glob(p, SWITCH_MASTER)) {
            head(out, 4);
            for part in ["pmessage", p, SWITCH_MASTER, text] {
                bulk(out, part);
            }
        }
    }

    /// Answers one command into `out`.
    fn answer(&mut self, emu: &Emulator, cmd: &Command, out: &mut BytesMut) -> Next {
        let args: Vec<String> = (0..cmd.args.len())
            .map(|i| cmd.arg(i).into_owned())
            .collect();
        let sub = args
            .get(1)
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        match (cmd.name(), sub.as_str()) {
            ("PING", _) if self.subscribed() > 0 && !self.resp3 => {
                out.put_slice(b"*2\r\n");
                bulk(out, "pong");
                bulk(out, args.get(1).map(String::as_str).unwrap_or(""));
            }
            ("PING", _) => match args.get(1) {
                Some(m) => bulk(out, m),
                None => out.put_slice(b"+PONG\r\n"),
            },
            ("QUIT", _) => {
                out.put_slice(b"+OK\r\n");
                return Next::Close;
            }
            ("AUTH", _) => error(
                out,
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            ("HELLO", _) => self.hello(&args, out),
            ("CLIENT", "id") => out.put_slice(b":1\r\n"),
            ("CLIENT", "getname") => out.put_slice(b"$-1\r\n"),
            ("CLIENT", _) => out.put_slice(b"+OK\r\n"),
            ("ROLE", _) => {
                let names = names(emu);
                out.put_slice(b"*2\r\n");
                bulk(out, "sentinel");
                array(out, &names);
            }
            ("INFO", _) => bulk(out, &info(emu)),
            ("SENTINEL", _) => sentinel(emu, &sub, &args, out),
            ("SUBSCRIBE" | "PSUBSCRIBE", _) if args.len() > 1 => {
                let pattern = cmd.name() == "PSUBSCRIBE";
                for a in &args[1..] {
                    match pattern {
                        true => self.patterns.insert(a.clone()),
                        false => self.channels.insert(a.clone()),
                    };
                    self.confirm(out, if pattern { "psubscribe" } else { "subscribe" }, a);
                }
            }
            ("UNSUBSCRIBE" | "PUNSUBSCRIBE", _) => {
                let pattern = cmd.name() == "PUNSUBSCRIBE";
                let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                let gone: Vec<String> = match args.len() {
                    1 => std::mem::take(set).into_iter().collect(),
                    _ => args[1..].iter().filter(|a| set.remove(*a)).cloned().collect(),
                };
                for a in gone {
                    self.confirm(out, kind, &a);
                }
            }
            (name, _) => error(
                out,
                &format!(
                    "ERR unknown command '{}', with args beginning with: {}",
                    name.to_ascii_lowercase(),
                    args[1..].iter().map(|a| format!("'{a}' ")).collect::<String>()
                ),
            ),
        }
        Next::Go
    }

    fn confirm(&self, out: &mut BytesMut, kind: &str, name: &str) {
        out.put_slice(if self.resp3 { b">3\r\n" } else { b"*3\r\n" });
        bulk(out, kind);
        bulk(out, name);
        out.put_slice(format!(":{}\r\n", self.subscribed()).as_bytes());
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    fn hello(&mut self, args: &[String], out: &mut BytesMut) {
        if args.iter().any(|a| a.eq_ignore_ascii_case("AUTH")) {
            return error(
                out,
                "WRONGPASS invalid username-password pair or user is disabled.",
            );
        }
        match args.get(1).map(String::as_str) {
            None | Some("2") => self.resp3 = self.resp3 && args.len() == 1,
            Some("3") => self.resp3 = true,
            Some(_) => return error(out, "NOPROTO unsupported protocol version"),
        }
        let fields = [
            ("server", "redis".to_string()),
            ("version", "7.4.0".to_string()),
            ("proto", if self.resp3 { "3" } else { "2" }.to_string()),
            ("mode", "sentinel".to_string()),
            ("role", "master".to_string()),
        ];
        match self.resp3 {
            true => out.put_slice(format!("%{}\r\n", fields.len() + 2).as_bytes()),
            false => out.put_slice(format!("*{}\r\n", 2 * (fields.len() + 2)).as_bytes()),
        }
        for (k, v) in &fields {
            bulk(out, k);
            match *k {
                "proto" => out.put_slice(format!(":{v}\r\n").as_bytes()),
                _ => bulk(out, v),
            }
        }
        bulk(out, "id");
        out.put_slice(b":1\r\n");
        bulk(out, "modules");
        out.put_slice(b"*0\r\n");
    }
}

/// `SENTINEL <sub> ...`.
fn sentinel(emu: &Emulator, sub: &str, args: &[String], out: &mut BytesMut) {
    let name = args.get(2).map(String::as_str).unwrap_or("");
    match sub {
        "get-master-addr-by-name" => match address(emu, name) {
            Some((ip, port)) => array(out, &[ip, port.to_string()]),
            None => out.put_slice(b"*-1\r\n"),
        },
        "master" => match address(emu, name) {
            Some((ip, port)) => array(out, &master(name, &ip, port)),
            None => error(out, "ERR No such master with that name"),
        },
        "masters" => {
            let all: Vec<Vec<String>> = names(emu)
                .iter()
                .filter_map(|n| address(emu, n).map(|(ip, port)| master(n, &ip, port)))
                .collect();
            out.put_slice(format!("*{}\r\n", all.len()).as_bytes());
            for m in all {
                array(out, &m);
            }
        }
        "sentinels" | "replicas" | "slaves" => match address(emu, name) {
            Some(_) => out.put_slice(b"*0\r\n"),
            None => error(out, "ERR No such master with that name"),
        },
        _ => error(
            out,
            &format!("ERR Unknown sentinel subcommand '{sub}'; the discovery service answers get-master-addr-by-name, master, masters, sentinels and replicas"),
        ),
    }
}

/// The address `name` (a database's name, or it with `@internal`) leads to.
fn address(emu: &Emulator, name: &str) -> Option<(String, u16)> {
    let (db, internal) = match name.strip_suffix(INTERNAL) {
        Some(db) => (db, true),
        None => (name, false),
    };
    let d = emu.databases().into_iter().find(|d| d.name() == db)?;
    let node = d.active_node();
    let ip = match internal {
        true => node.internal_ip(),
        false => node.external_ip(),
    };
    Some((ip.to_string(), d.port()))
}

/// Every name the service knows: each database's, and its internal one.
fn names(emu: &Emulator) -> Vec<String> {
    emu.databases()
        .iter()
        .flat_map(|d| [d.name().to_string(), format!("{}{INTERNAL}", d.name())])
        .collect()
}

/// `SENTINEL master`'s field list for one name.
fn master(name: &str, ip: &str, port: u16) -> Vec<String> {
    [
        ("name", name.to_string()),
        ("ip", ip.to_string()),
        ("port", port.to_string()),
        ("flags", "master".to_string()),
        ("num-slaves", "0".to_string()),
        ("num-other-sentinels", "0".to_string()),
        ("quorum", "1".to_string()),
        ("role-reported", "master".to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect()
}

fn info(emu: &Emulator) -> String {
    let names = names(emu);
    let mut s = String::from("# Server\r\nredis_mode:sentinel\r\n\r\n# Sentinel\r\n");
    s.push_str(&format!("sentinel_masters:{}\r\n", names.len()));
    for (i, n) in names.iter().enumerate() {
        if let Some((ip, port)) = address(emu, n) {
            s.push_str(&format!(
                "master{i}:name={n},status=ok,address={ip}:{port},slaves=0,sentinels=1\r\n"
            ));
        }
    }
    s
}

fn bulk(out: &mut BytesMut, s: &str) {
    out.put_slice(format!("${}\r\n", s.len()).as_bytes());
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

fn array(out: &mut BytesMut, items: &[String]) {
    out.put_slice(format!("*{}\r\n", items.len()).as_bytes());
    for i in items {
        bulk(out, i);
    }
}

fn error(out: &mut BytesMut, e: &str) {
    out.put_slice(b"-");
    out.put_slice(e.as_bytes());
    out.put_slice(b"\r\n");
}

/// Whether glob `pattern` (`*`, `?`) matches `s`.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

/// A frame of bytes, for tests of the encoders.
#[cfg(test)]
fn frame(f: impl FnOnce(&mut BytesMut)) -> bytes::Bytes {
    let mut b = BytesMut::new();
    f(&mut b);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_announced_under_both_names_with_their_addresses() {
        let s = Switch {
            name: "db".into(),
            port: 12000,
            from: Node { index: 1 },
            to: Node { index: 2 },
        };
        assert_eq!(
            s.messages(),
            [
                "db 127.0.1.2 12000 127.0.2.2 12000".to_string(),
                "db@internal 127.0.1.1 12000 127.0.2.1 12000".to_string(),
            ]
        );
    }

    #[test]
    fn subscribers_get_messages_and_pattern_subscribers_pmessages() {
        let mut c = Client::default();
        c.channels.insert(SWITCH_MASTER.into());
        c.patterns.insert("*".into());
        c.patterns.insert("+sdown".into());
        let got = frame(|b| c.deliver("db 1 2 3 4", b));
        assert_eq!(
            &got[..],
            b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$10\r\ndb 1 2 3 4\r\n\
*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$14\r\n+switch-master\r\n$10\r\ndb 1 2 3 4\r\n"
        );
        c.resp3 = true;
        c.patterns.clear();
        assert!(frame(|b| c.deliver("x", b)).starts_with(b">3\r\n"));
    }

    #[test]
    fn globs_match_as_redis_does() {
        assert!(glob("*", "+switch-master"));
        assert!(glob("+switch-*", "+switch-master"));
        assert!(glob("+sw?tch-master", "+switch-master"));
        assert!(!glob("+sdown", "+switch-master"));
    }
}
