//! Finding the database through the cluster's discovery service (the
//! Sentinel protocol every Enterprise node answers), as a client configured
//! for Sentinel does: `SENTINEL get-master-addr-by-name` gives the address
//! new connections dial, and a `+switch-master` naming the database moves
//! every connection to the new address before the old one goes away.
//!
//! The name asked for is the database's (its external address), or with
//! `@internal` its internal one, as the client's address class says.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;

use super::{auto_endpoint_type, Client, ClientError, ClientShared};
use crate::notification::{Endpoint, EndpointType};

/// Pause before the watcher subscribes again after losing the service.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(200);

/// The name the client looks its database up by.
pub(crate) async fn name(shared: &ClientShared) -> String {
    let e = shared.db.primary_endpoint();
    let internal = matches!(
        auto_endpoint_type(&e.host, e.port, shared.db.tls).await,
        EndpointType::InternalIp | EndpointType::InternalFqdn
    );
    match internal {
        true => format!("{}@internal", shared.db.name),
        false => shared.db.name.clone(),
    }
}

/// The service's addresses, or an error that says where to list them.
fn services(shared: &ClientShared) -> Result<&[String], ClientError> {
    match shared.db.discovery_endpoints.as_slice() {
        [] => Err(ClientError::Options(format!(
            "database {:?} lists no discovery_endpoints in the endpoints file; list the discovery service (host:port of a node's Sentinel port, 8001 on Enterprise) or turn discovery off",
            shared.db.name
        ))),
        list => Ok(list),
    }
}

/// Asks the discovery service (each listed node in turn) where `name` is.
pub(crate) async fn resolve(shared: &ClientShared, name: &str) -> Result<Endpoint, ClientError> {
    let mut reasons = Vec::new();
    for service in services(shared)? {
        let asked = async {
            let client = redis::Client::open(format!("redis://{service}"))?;
            let mut c = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(name)
                .query_async::<Option<(String, u16)>>(&mut c)
                .await
        };
        match tokio::time::timeout(shared.options.connect_timeout, asked).await {
            Ok(Ok(Some((host, port)))) => return Ok(Endpoint::new(host, port)),
            Ok(Ok(None)) => reasons.push(format!("{service}: no database named {name:?}")),
            Ok(Err(e)) => reasons.push(format!("{service}: {e}")),
            Err(_) => reasons.push(format!(
                "{service}: no answer within {:?}",
                shared.options.connect_timeout
            )),
        }
    }
    Err(ClientError::Connection {
        context: format!(
            "finding {name:?} through the discovery service: {}",
            reasons.join("; ")
        ),
        cause: None,
    })
}

/// Listens for `+switch-master` about `name` on the discovery service until
/// the client is gone; moves the client's connections when one comes.
pub(crate) fn watch(
    client: Weak<Client>,
    services: Vec<String>,
    name: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for service in services.iter().cycle() {
            if client.strong_count() == 0 {
                return;
            }
            if let Err(e) = listen(&client, service, &name).await {
                tracing::debug!(%service, "discovery service subscription ended: {e}");
            }
            tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
        }
    })
}

/// One subscription to `service`, until it ends.
async fn listen(client: &Weak<Client>, service: &str, name: &str) -> redis::RedisResult<()> {
    let c = redis::Client::open(format!("redis://{service}"))?;
    let mut pubsub = c.get_async_pubsub().await?;
    pubsub.subscribe("+switch-master").await?;
    let mut messages = pubsub.on_message();
    while let Some(m) = messages.next().await {
        let text: String = m.get_payload()?;
        let Some(to) = switch_for(&text, name) else {
            continue;
        };
        let Some(client) = client.upgrade() else {
            return Ok(());
        };
        client.follow_switch(to).await;
    }
    Ok(())
}

/// The new address in `+switch-master <name> <old ip> <old port> <new ip>
/// <new port>`, when it is about `name`.
fn switch_for(text: &str, name: &str) -> Option<Endpoint> {
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [n, _, _, ip, port] if *n == name => {
            Some(Endpoint::new(ip.to_string(), port.parse().ok()?))
        }
        _ => None,
    }
}

impl Client {
    /// The database moved to `to` (the discovery service said so): new
    /// connections dial it, and every connection moves there (unless the
    /// client is told to ignore it, for negative controls).
    pub(crate) async fn follow_switch(self: &Arc<Self>, to: Endpoint) {
        tracing::info!(client = %self.shared.name, %to, "+switch-master");
        if !self.shared.options.follow_switch_master {
            return;
        }
        *self.shared.discovered.lock().unwrap() = Some(to.clone());
        let conns = self.conns.lock().unwrap().clone();
        let moves = conns.iter().map(|c| c.move_to(to.clone()));
        futures::future::join_all(moves).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_is_read_for_its_own_name_only() {
        let m = "db@internal 127.0.1.1 12000 127.0.2.1 12000";
        assert_eq!(
            switch_for(m, "db@internal"),
            Some(Endpoint::new("127.0.2.1", 12000))
        );
        assert_eq!(switch_for(m, "db"), None);
        assert_eq!(switch_for("db 1 2 3", "db"), None);
        assert_eq!(switch_for("db a 1 b port", "db"), None);
    }
}
