//! The baseline of the proxy benchmarks: one extra hop that only copies bytes,
//! each way, with nothing decoded.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A byte forwarder on a loopback port; stops when dropped.
pub struct Forwarder {
    /// Where clients connect.
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Forwarder {
    /// Listens on an ephemeral loopback port and forwards every connection to `to`.
    pub async fn start(to: SocketAddr) -> Result<Forwarder> {
        let l = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the byte forwarder")?;
        let addr = l.local_addr()?;
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = l.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("forwarder accept failed: {e}");
                            continue;
                        }
                    },
                };
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Ok(Forwarder { addr, stop })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
