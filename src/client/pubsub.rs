//! Pub/sub on a maintenance-aware connection: the subscriptions a connection
//! holds, re-issued on every connection that replaces it (a handoff, a
//! reconnect), and the messages it received, whichever connection they came on.
//!
//! Over RESP3 a subscribed connection still serves ordinary requests, and
//! messages arrive as pushes through the same push loop as notifications.

use std::sync::Mutex;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::time::Instant;

use super::ClientError;
use crate::notification::Endpoint;

/// What a subscription listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `SUBSCRIBE` / `PUBLISH`.
    Channel,
    /// `SSUBSCRIBE` / `SPUBLISH`: the channel lives on the shard of its slot.
    Sharded,
}

impl ChannelKind {
    /// The command that subscribes to one channel of this kind.
    pub fn subscribe(self, channel: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(match self {
            ChannelKind::Channel => "SUBSCRIBE",
            ChannelKind::Sharded => "SSUBSCRIBE",
        });
        cmd.arg(channel);
        cmd
    }

    /// The command that publishes `message` on `channel`; its reply counts
    /// the subscribers that were sent the message.
    pub fn publish(self, channel: &str, message: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(match self {
            ChannelKind::Channel => "PUBLISH",
            ChannelKind::Sharded => "SPUBLISH",
        });
        cmd.arg(channel).arg(message);
        cmd
    }

    /// How the steps name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Channel => "channel",
            ChannelKind::Sharded => "sharded channel",
        }
    }
}

/// A message a subscription received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// When it arrived.
    pub at: Instant,
    /// Its kind of channel.
    pub kind: ChannelKind,
    /// The channel it was published on.
    pub channel: String,
    /// What was published.
    pub payload: String,
}

/// The message a push carries, if it is one (`message`, `smessage`,
/// `pmessage`).
pub fn message_of(push: &PushInfo, at: Instant) -> Option<Message> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let (kind, channel, payload) = match (&push.kind, push.data.as_slice()) {
        (PushKind::Message, [c, p]) => (ChannelKind::Channel, c, p),
        (PushKind::PMessage, [_pattern, c, p]) => (ChannelKind::Channel, c, p),
        (PushKind::SMessage, [c, p]) => (ChannelKind::Sharded, c, p),
        _ => return None,
    };
    Some(Message {
        at,
        kind,
        channel: text(channel)?,
        payload: text(payload)?,
    })
}

/// The channel an unsubscribe push names (`sunsubscribe <channel> <count>`).
pub fn channel_of(push: &PushInfo) -> Option<String> {
    match push.data.first()? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// True for the server's confirmations of (un)subscribe commands.
pub fn is_confirmation(kind: &PushKind) -> bool {
    matches!(
        kind,
        PushKind::Subscribe
            | PushKind::PSubscribe
            | PushKind::SSubscribe
            | PushKind::Unsubscribe
            | PushKind::PUnsubscribe
            | PushKind::SUnsubscribe
    )
}

/// A connection's subscriptions and what they received.
#[derive(Default)]
pub struct Subscriptions {
    held: Mutex<Vec<(ChannelKind, String)>>,
    received: Mutex<Vec<Message>>,
    arrived: tokio::sync::Notify,
}

impl Subscriptions {
    /// Adds one (once).
    pub fn add(&self, kind: ChannelKind, channel: &str) {
        let mut held = self.held.lock().unwrap();
        if !held.iter().any(|(k, c)| *k == kind && c == channel) {
            held.push((kind, channel.to_string()));
        }
    }

    /// Drops one; true when it was held.
    pub fn remove(&self, kind: ChannelKind, channel: &str) -> bool {
        let mut held = self.held.lock().unwrap();
        let before = held.len();
        held.retain(|(k, c)| !(*k == kind && c == channel));
        held.len() != before
    }

    /// What a new connection must subscribe to.
    pub fn held(&self) -> Vec<(ChannelKind, String)> {
        self.held.lock().unwrap().clone()
    }

    /// Subscribes `conn`, a new connection to `target`, to every channel
    /// held, one command per channel (each answered by one confirmation, which
    /// redis-rs takes as its reply), each within `within`; returns how many.
    pub async fn subscribe_on(
        &self,
        conn: &mut MultiplexedConnection,
        target: &Endpoint,
        within: std::time::Duration,
    ) -> Result<usize, ClientError> {
        let held = self.held();
        for (kind, channel) in &held {
            let reply =
                tokio::time::timeout(within, conn.send_packed_command(&kind.subscribe(channel)))
                    .await
                    .map_err(|e| {
                        ClientError::connection(format!("subscribing again on {target}"), e)
                    })?;
            match reply {
                Ok(Value::ServerError(e)) => {
                    return Err(ClientError::server(e.code(), e.details()))
                }
                Ok(_) => {}
                Err(e) => return Err(ClientError::from_redis(e)),
            }
        }
        Ok(held.len())
    }

    /// True when it holds some.
    pub fn any(&self) -> bool {
        !self.held.lock().unwrap().is_empty()
    }

    /// Keeps a message that arrived.
    pub fn keep(&self, m: Message) {
        self.received.lock().unwrap().push(m);
        self.arrived.notify_waiters();
    }

    /// Notified after each message kept (for [`crate::wait::until`]).
    pub fn arrived(&self) -> &tokio::sync::Notify {
        &self.arrived
    }

    /// Every message received so far, in arrival order.
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn messages_of_each_kind_are_read_and_other_pushes_are_not() {
        let at = Instant::now();
        let push = |kind, data| PushInfo { kind, data };
        let m = message_of(&push(PushKind::Message, vec![bulk("news"), bulk("1")]), at);
        assert_eq!(
            m.map(|m| (m.kind, m.channel, m.payload)),
            Some((ChannelKind::Channel, "news".into(), "1".into()))
        );
        let m = message_of(
            &push(
                PushKind::PMessage,
                vec![bulk("n*"), bulk("news"), bulk("2")],
            ),
            at,
        );
        assert_eq!(m.map(|m| m.payload), Some("2".into()));
        let m = message_of(&push(PushKind::SMessage, vec![bulk("s"), bulk("3")]), at);
        assert_eq!(m.map(|m| m.kind), Some(ChannelKind::Sharded));
        assert_eq!(
            message_of(&push(PushKind::Message, vec![bulk("only-one")]), at),
            None
        );
        assert_eq!(
            message_of(
                &push(PushKind::Other("MOVING".into()), vec![bulk("a"), bulk("b")]),
                at
            ),
            None
        );
    }

    #[test]
    fn a_subscription_is_held_once() {
        let s = Subscriptions::default();
        s.add(ChannelKind::Channel, "a");
        s.add(ChannelKind::Channel, "a");
        s.add(ChannelKind::Sharded, "a");
        s.add(ChannelKind::Channel, "b");
        let mut held = s.held();
        held.sort_by_key(|(k, c)| (k.as_str(), c.clone()));
        assert_eq!(
            held,
            [
                (ChannelKind::Channel, "a".to_string()),
                (ChannelKind::Channel, "b".to_string()),
                (ChannelKind::Sharded, "a".to_string())
            ]
        );
        // Let go of once: held no more, and a second time is not held.
        assert!(s.remove(ChannelKind::Channel, "a"));
        assert!(!s.remove(ChannelKind::Channel, "a"));
        assert!(s.remove(ChannelKind::Sharded, "a"));
        assert_eq!(s.held(), [(ChannelKind::Channel, "b".to_string())]);
        assert!(s.any());
        assert!(s.remove(ChannelKind::Channel, "b"));
        assert!(!s.any());
    }
}
