//! Pub/sub through maintenance: a client subscribes to a channel (or a
//! sharded channel), another publishes numbered messages to it in the
//! background, and the subscriber must receive every one of them.

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use cucumber::{given, then};
use tokio_util::sync::CancellationToken;

use super::{MaintWorld, StepResult};
use crate::client::connection::ManagedConnection;
use crate::client::pubsub::ChannelKind;
use crate::client::Client;
use crate::timeline::{self, Published};
use crate::timing::PUBLISH_PACE;

/// A client's subscription: what it listens to and on which connection.
pub struct Subscribed {
    /// Channel or sharded channel.
    pub kind: ChannelKind,
    /// The channel's name.
    pub channel: String,
    /// The connection that subscribed (it re-subscribes on whatever replaces it).
    pub conn: Arc<ManagedConnection>,
}

/// Numbered messages published in the background until stopped.
pub struct Publisher {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Every message sent so far and how it went.
    pub ledger: Arc<Mutex<Vec<Published>>>,
}

impl Publisher {
    /// Publishes `1`, `2`, ... on `channel` through `client`, one at a time.
    fn start(client: Arc<Client>, kind: ChannelKind, channel: String) -> Publisher {
        let stop = CancellationToken::new();
        let ledger = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (stop, ledger) = (stop.clone(), ledger.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    n += 1;
                    let outcome = client
                        .query::<i64>(&kind.publish(&channel, &n.to_string()))
                        .await
                        .map_err(|e| e.chain());
                    ledger.lock().unwrap().push(Published { n, outcome });
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(PUBLISH_PACE) => {}
                    }
                }
            })
        };
        Publisher {
            stop,
            task: Some(task),
            ledger,
        }
    }

    /// Stops it after the message in progress.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl MaintWorld {
    /// Stops the publisher of `client`; what it published and how each went.
    async fn stop_publisher(&mut self, client: &str) -> anyhow::Result<Vec<Published>> {
        let p = self.record_mut(client)?.publisher.as_mut().ok_or_else(|| {
            anyhow!("{client:?} published nothing; use `Given \"{client}\" publishes steadily to the channel ...`")
        })?;
        p.stop().await;
        let published = p.ledger.lock().unwrap().clone();
        Ok(published)
    }
}

fn kind_of(words: &str) -> ChannelKind {
    match words {
        "sharded channel" => ChannelKind::Sharded,
        _ => ChannelKind::Channel,
    }
}

/// The client subscribes, on its first connection, to a channel of its own
/// (a cluster client: on the node that serves it; `of hash slot N`: a
/// sharded channel named to hash to that slot).
#[given(regex = r#"^"([^"]+)" subscribes to a (channel|sharded channel)(?: of hash slot (\d+))?$"#)]
async fn given_subscribes(
    w: &mut MaintWorld,
    client: String,
    kind: String,
    slot: String,
) -> StepResult {
    let kind = kind_of(&kind);
    let base = format!("{}:{client}:{}", w.prefix, kind.as_str().replace(' ', "-"));
    let channel = match slot.parse::<u16>() {
        Ok(s) if s < crate::slots::SLOTS => (0u32..)
            .map(|i| format!("{base}:{i}"))
            .find(|c| crate::slots::slot(c.as_bytes()) == s)
            .expect("every slot has names"),
        Ok(s) => fail!("hash slots run from 0 to 16383, not {s}"),
        Err(_) => base,
    };
    let c = w.client(&client)?;
    let subscribed = match c.cluster() {
        // A cluster client subscribes on the node that serves the channel.
        Some(cluster) => cluster.subscribe(kind, &channel).await,
        None => {
            let conn = c
                .connections()
                .first()
                .cloned()
                .ok_or_else(|| anyhow!("{client:?} has no connection"))?;
            conn.subscribe(kind, &channel).await.map(|()| conn)
        }
    };
    let conn = subscribed.map_err(|e| {
        anyhow!(
            "{client:?} could not subscribe to {} {channel:?}: {}",
            kind.as_str(),
            e.chain()
        )
    })?;
    w.record_mut(&client)?.subscription = Some(Subscribed {
        kind,
        channel,
        conn,
    });
    Ok(())
}

/// Another client publishes numbered messages to that channel until the
/// subscriber's messages are checked.
#[given(expr = "{string} publishes steadily to the channel {string} subscribed to")]
async fn given_publishes(w: &mut MaintWorld, publisher: String, subscriber: String) -> StepResult {
    let (kind, channel) = {
        let s = w.record_mut(&subscriber)?.subscription.as_ref().ok_or_else(|| {
            anyhow!("{subscriber:?} subscribed to nothing; use `Given \"{subscriber}\" subscribes to a channel`")
        })?;
        (s.kind, s.channel.clone())
    };
    let client = w.client(&publisher)?;
    w.record_mut(&publisher)?.publisher = Some(Publisher::start(client, kind, channel));
    Ok(())
}

/// Stops the publisher and waits until the subscriber received what it
/// published: every message, first arrivals in order.
#[then(expr = "{string} received every message {string} published")]
async fn then_received_every(
    w: &mut MaintWorld,
    subscriber: String,
    publisher: String,
) -> StepResult {
    let published = w.stop_publisher(&publisher).await?;
    let conn = w
        .record_mut(&subscriber)?
        .subscription
        .as_ref()
        .map(|s| s.conn.clone())
        .ok_or_else(|| anyhow!("{subscriber:?} subscribed to nothing"))?;
    // The last messages may still be on their way.
    let subs = conn.subscriptions();
    let check = || {
        let payloads: Vec<String> = subs.received().into_iter().map(|m| m.payload).collect();
        timeline::every_message_received(&published, &payloads)
    };
    let _ = crate::wait::until(subs.arrived(), w.patience(), "the last messages", || {
        check().ok()
    })
    .await;
    let delivery = check().map_err(|e| w.unmet(&subscriber, e))?;
    if delivery.published < 10 {
        fail!(
            "{publisher:?} published only {} messages: too few to show anything; let the maintenance run under the publisher",
            delivery.published
        );
    }
    println!(
        "{subscriber:?} received {} of {} messages, {} of them twice",
        delivery.received, delivery.published, delivery.duplicates
    );
    Ok(())
}

/// Messages published after the step that judges delivery through moves
/// began, before the publisher stops: about 300 ms at the publisher's pace,
/// well past the client's last reaction to the move (a connection it drops
/// as its node leaves the slot map, some 50 ms after SMIGRATED).
const MESSAGES_AFTER_MOVE: usize = 30;

/// The last messages that must tell one story (each reached no subscriber,
/// or each was received) before delivery is judged: about 100 ms at the
/// publisher's pace, so that a connection let go late (on a loaded
/// machine) is judged by what follows it, not by the message it took along.
const SETTLED_TAIL: usize = 10;

/// A cluster client's subscriber: every message the server delivered to a
/// subscriber reached it, in order, through slot moves; messages published
/// while it was subscribing again on the channel's new node (the server
/// said they reached nobody) may be missing, and delivery went on after.
#[then(
    expr = "{string} received every message {string} published while subscribed, and kept receiving after the move"
)]
async fn then_received_through_moves(
    w: &mut MaintWorld,
    subscriber: String,
    publisher: String,
) -> StepResult {
    // The move's last effects (a connection the client drops as its node
    // leaves the slot map) come as the action ends: the publisher goes on
    // until a few messages went out after this step began, so that whether
    // delivery resumed is seen, not the race of the last message.
    let ledger = w
        .record(&publisher)?
        .publisher
        .as_ref()
        .map(|p| p.ledger.clone())
        .ok_or_else(|| anyhow!("{publisher:?} published nothing"))?;
    let c = w.client(&subscriber)?;
    let cluster = c
        .cluster()
        .ok_or_else(|| anyhow!("{subscriber:?} is not a cluster client"))?
        .clone();
    let from = ledger.lock().unwrap().len();
    let _ = crate::wait::poll(PUBLISH_PACE, w.patience(), || async {
        let payloads: Vec<String> = cluster.received().into_iter().map(|m| m.payload).collect();
        let ledger = ledger.lock().unwrap();
        anyhow::Ok(
            match ledger.len() >= from + MESSAGES_AFTER_MOVE
                && timeline::delivery_settled(&ledger, &payloads, SETTLED_TAIL)
            {
                true => crate::wait::Look::Ready(()),
                false => crate::wait::Look::NotYet(()),
            },
        )
    })
    .await;
    let published = w.stop_publisher(&publisher).await?;
    let check = || {
        let payloads: Vec<String> = cluster.received().into_iter().map(|m| m.payload).collect();
        timeline::delivered_through_moves(&published, &payloads)
    };
    let _ = crate::wait::poll(crate::timing::SERVER_POLL, w.patience(), || async {
        anyhow::Ok(match check() {
            Ok(_) => crate::wait::Look::Ready(()),
            Err(e) => crate::wait::Look::NotYet(e),
        })
    })
    .await;
    let d = check().map_err(|e| w.unmet(&subscriber, e))?;
    if d.published < 10 {
        fail!(
            "{publisher:?} published only {} messages: too few to show anything",
            d.published
        );
    }
    println!(
        "{subscriber:?} received {} of {} messages ({} reached no subscriber while it moved), {} twice",
        d.received, d.published, d.unheard, d.duplicates
    );
    Ok(())
}
