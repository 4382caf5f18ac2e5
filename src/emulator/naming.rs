//! Host names of the emulated cluster: the database's DNS name and the
//! FQDN forms of MOVING.
//!
//! Real clusters give a database a dotted name in the cluster's domain
//! (`redis-12000.cluster.example.com`) and name nodes in the same domain, and some
//! clients check that a MOVING host name belongs to the domain they dialled. The
//! emulator's names live under [`DEFAULT_DOMAIN`]: names ending in `.localhost`
//! are loopback by definition (RFC 6761), and resolvers that follow that
//! (systemd-resolved, nss-myhostname, browsers) map every one of them to
//! 127.0.0.1, which is the database's public address: it routes to the node that
//! holds the endpoint, as a DNS name does. Plain glibc with `hosts: files dns`
//! does not, so the emulator checks at start-up, and where those names do not
//! resolve it falls back to `localhost` for every name, and says so.

use std::net::ToSocketAddrs;
use std::sync::mpsc;

use super::node::Node;
use crate::notification::{Endpoint, EndpointType};
use crate::timing::RESOLVE_CAP;

/// The domain the emulator's names live in, when it resolves.
pub const DEFAULT_DOMAIN: &str = "maint-e2e.localhost";

/// The names of a cluster: under a domain, or all `localhost`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    domain: Option<String>,
}

impl Default for Naming {
    /// Every name is `localhost`.
    fn default() -> Self {
        Naming { domain: None }
    }
}

impl Naming {
    /// The endpoint of database port `port` on `node`, in the form `ty`
    /// asks for. Host names resolve to the database's public address, which
    /// follows the endpoint.
    pub fn endpoint(&self, node: Node, ty: EndpointType, port: u16) -> Option<Endpoint> {
        match ty {
            EndpointType::InternalIp => Some(Endpoint::new(node.internal_ip().to_string(), port)),
            EndpointType::ExternalIp => Some(Endpoint::new(node.external_ip().to_string(), port)),
            EndpointType::InternalFqdn => Some(Endpoint::new(self.node(node, false), port)),
            EndpointType::ExternalFqdn => Some(Endpoint::new(self.node(node, true), port)),
            EndpointType::None => None,
        }
    }

    /// Names under `domain`, whether or not it resolves (tests of the wire form).
    pub fn under(domain: &str) -> Self {
        Naming {
            domain: Some(domain.trim_matches('.').to_ascii_lowercase()),
        }
    }

    /// Names under `domain` when a name in it resolves to a loopback address
    /// here; otherwise `localhost` for every name, with a warning that says why.
    pub fn resolving(domain: &str) -> Self {
        let probe = format!("redis-0.{}", domain.trim_matches('.'));
        if resolves_to_loopback(&probe) {
            tracing::info!(
                domain,
                "host names of the emulated cluster live under {domain}"
            );
            Naming::under(domain)
        } else {
            tracing::warn!(
                "host names under {domain} do not resolve to loopback on this machine (its resolver does not map *.localhost, as systemd-resolved or nss-myhostname would: on Debian or Ubuntu, `apt-get install libnss-myhostname`); the database's host name and the FQDN forms of MOVING use localhost instead"
            );
            Naming::default()
        }
    }

    /// The domain in use, if any.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The database's DNS name: `redis-<port>.<domain>`, or `localhost`.
    pub fn database(&self, port: u16) -> String {
        match &self.domain {
            Some(d) => format!("redis-{port}.{d}"),
            None => "localhost".into(),
        }
    }

    /// The FQDN of `node`, internal or external: `node2.<domain>` /
    /// `node2-ext.<domain>`, or `localhost`.
    pub fn node(&self, node: Node, external: bool) -> String {
        match &self.domain {
            Some(d) if external => format!("node{}-ext.{d}", node.index),
            Some(d) => format!("node{}.{d}", node.index),
            None => "localhost".into(),
        }
    }

    /// Names a server certificate must carry for these host names.
    pub fn certificate_names(&self) -> Vec<String> {
        match &self.domain {
            Some(d) => vec![d.clone(), format!("*.{d}")],
            None => Vec::new(),
        }
    }
}

/// True when `host` resolves, within [`RESOLVE_CAP`], to loopback addresses only.
/// The lookup runs on its own thread: a resolver with an unreachable DNS server
/// can take far longer than the cap.
pub fn resolves_to_loopback(host: &str) -> bool {
    let (tx, rx) = mpsc::channel();
    let name = format!("{host}:0");
    std::thread::spawn(move || {
        let found = name
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect::<Vec<_>>())
            .unwrap_or_default();
        let _ = tx.send(found);
    });
    match rx.recv_timeout(RESOLVE_CAP) {
        Ok(ips) => !ips.is_empty() && ips.iter().all(|ip| ip.is_loopback()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_a_domain_share_it() {
        let n = Naming::under("maint-e2e.localhost.");
        assert_eq!(n.database(12000), "redis-12000.maint-e2e.localhost");
        assert_eq!(
            n.node(Node { index: 2 }, false),
            "node2.maint-e2e.localhost"
        );
        assert_eq!(
            n.node(Node { index: 2 }, true),
            "node2-ext.maint-e2e.localhost"
        );
        assert_eq!(
            n.certificate_names(),
            ["maint-e2e.localhost", "*.maint-e2e.localhost"]
        );
    }

    #[test]
    fn without_a_domain_every_name_is_localhost() {
        let n = Naming::default();
        assert_eq!(n.database(12000), "localhost");
        assert_eq!(n.node(Node { index: 3 }, true), "localhost");
        assert!(n.certificate_names().is_empty());
    }

    #[test]
    fn localhost_resolves_and_an_invalid_name_does_not() {
        assert!(resolves_to_loopback("localhost"));
        assert!(!resolves_to_loopback("no-such-host.invalid"));
    }
}
