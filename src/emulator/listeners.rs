//! Where a database's proxies listen: a node's proxy started, stopped with
//! its connections cut, or drained (it takes no new connection and lets each
//! one go at its next pause).

use std::net::SocketAddr;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::{proxy, Database, Node};
use crate::server_record::CloseCause;

/// One node's proxy of a database: cancelling `accepting` stops it taking
/// connections, cancelling `conns` (its parent) also ends those it took.
pub(super) struct Listener {
    accepting: CancellationToken,
    conns: CancellationToken,
}

impl Database {
    /// Starts the endpoint proxy of this database on `node`.
    pub async fn listen_on(&self, node: Node) -> Result<()> {
        if self.listeners.lock().unwrap().contains_key(&node.index) {
            return Ok(());
        }
        let conns = self.cancel.child_token();
        let accepting = conns.child_token();
        let port = self.shared.port;
        let addrs: Vec<SocketAddr> = vec![
            (node.internal_ip(), port).into(),
            (node.external_ip(), port).into(),
        ];
        let acceptor = self.tls.as_ref().map(|t| t.acceptor.clone());
        proxy::listen::listen_node(
            self.shared.clone(),
            node,
            &addrs,
            acceptor,
            accepting.clone(),
            conns.clone(),
        )
        .await?;
        self.listeners
            .lock()
            .unwrap()
            .insert(node.index, Listener { accepting, conns });
        self.shared.set_serving(node, true);
        Ok(())
    }

    /// Stops listening on `node` and closes its connections, because of
    /// `cause` (what the server's record says of each).
    pub fn stop_on(&self, node: Node, cause: CloseCause) {
        // Recorded before the listener's token ends the connections' tasks.
        self.shared.close_node(node, cause);
        if let Some(l) = self.listeners.lock().unwrap().remove(&node.index) {
            l.conns.cancel();
        }
        self.shared.set_serving(node, false);
        self.shared.forget_completion(node);
    }

    /// Stops listening on `node` and closes each of its connections at its
    /// next pause (see [`super::database::Control::Drain`]), because of `cause`.
    pub fn drain_on(&self, node: Node, cause: CloseCause) {
        if let Some(l) = self.listeners.lock().unwrap().remove(&node.index) {
            l.accepting.cancel();
        }
        self.shared.set_serving(node, false);
        self.shared.forget_completion(node);
        self.shared.drain_node(node, cause);
    }
}
