//! The connection's push loop: every push its transport reads, decoded into
//! a notification or dropped (malformed) or left alone, and what each
//! notification makes the connection do.

use super::*;

impl ManagedConnection {
    pub(super) fn listen(
        &self,
        generation: u64,
        mut rx: mpsc::UnboundedReceiver<(u64, PushInfo)>,
        mut setup: tokio::sync::watch::Receiver<Option<u64>>,
    ) {
        let me = self.me.clone();
        tokio::spawn(async move {
            while let Some((n, push)) = rx.recv().await {
                // How many pushes came before the handshake's reply.
                let Ok(before_reply) = setup.wait_for(Option::is_some).await.map(|v| v.unwrap())
                else {
                    return;
                };
                let Some(me) = me.upgrade() else { return };
                me.on_push(generation, push, n < before_reply);
            }
        });
    }

    pub(super) fn on_push(&self, generation: u64, push: PushInfo, at_setup: bool) {
        match push.kind {
            PushKind::Disconnection => self.lost(generation),
            PushKind::Other(name) => match Notification::from_push(&name, &push.data) {
                Ok(Some(n)) => self.on_notification(n, at_setup),
                Ok(None) => self.shared.emit(self.id, EventKind::PushIgnored { name }),
                Err(e) => {
                    tracing::warn!(conn = self.id, "dropped a malformed {name} push: {e}");
                    self.shared.emit(
                        self.id,
                        EventKind::MalformedPush {
                            name,
                            error: e.to_string(),
                        },
                    );
                }
            },
            // A cluster node that lost a sharded channel's slot tells its
            // subscribers so: the cluster client subscribes where it went.
            PushKind::SUnsubscribe if self.subs.any() => {
                let channel = pubsub::channel_of(&push);
                if let Some(channel) = channel.filter(|c| self.subs.remove(ChannelKind::Sharded, c))
                {
                    if let Some(cluster) = self.cluster() {
                        cluster.on_unsubscribed(self.id, channel);
                    }
                }
            }
            kind if self.subs.any() && pubsub::is_confirmation(&kind) => {}
            _ if self.subs.any() && pubsub::message_of(&push, Instant::now()).is_some() => {
                if let Some(m) = pubsub::message_of(&push, Instant::now()) {
                    self.subs.keep(m);
                }
            }
            other => self.shared.emit(
                self.id,
                EventKind::PushIgnored {
                    name: other.to_string(),
                },
            ),
        }
    }

    /// Acts on a notification, then records it (with the time it arrived):
    /// whoever sees it recorded sees what it changed recorded too.
    pub(super) fn on_notification(&self, n: Notification, at_setup: bool) {
        let now = Instant::now();
        self.act_on(&n, now);
        self.shared.emit_at(
            now,
            self.id,
            EventKind::Notification {
                notification: n,
                at_setup,
            },
        );
    }

    pub(super) fn act_on(&self, n: &Notification, now: Instant) {
        let o = &self.shared.options;
        match n.clone() {
            Notification::Migrating { seq, .. }
            | Notification::FailingOver { seq, .. }
            | Notification::SMigrating { seq, .. } => {
                self.open_window(WindowKey::Event(n.kind(), seq), now + o.window_max());
                if let (Notification::SMigrating { slots, .. }, Some(cluster)) = (n, self.cluster())
                {
                    cluster.on_smigrating(self.id, seq, slots);
                }
            }
            Notification::Migrated { seq, .. }
            | Notification::FailedOver { seq, .. }
            | Notification::SMigrated { seq, .. } => {
                let start = match n.kind() {
                    Kind::Migrated => Kind::Migrating,
                    Kind::FailedOver => Kind::FailingOver,
                    _ => Kind::SMigrating,
                };
                // Its own window (start seq + 1, as servers number them), or
                // else the oldest open window of its kind: a server that
                // numbers completions otherwise must not leave the client
                // relaxed until the backstop.
                let key = self.matching_window(start, seq);
                if let Some(key) = key {
                    self.close_window(key);
                }
                if let (Notification::SMigrated { moves, .. }, Some(cluster)) = (n, self.cluster())
                {
                    cluster.on_smigrated(self.id, seq, moves);
                }
            }
            Notification::Moving {
                seq,
                time_s,
                endpoint,
            } => {
                if !self.handled_moving.lock().unwrap().insert(seq) {
                    self.shared.emit(self.id, EventKind::MovingIgnored { seq });
                    return;
                }
                let window = Duration::from_secs(time_s);
                if !o.hand_off {
                    return;
                }
                self.open_window(WindowKey::Handoff(seq), now + o.window_max().max(window));
                let Some(me) = self.me.upgrade() else { return };
                match endpoint {
                    Some(endpoint) => {
                        *self.shared.redirect.lock().unwrap() = Some(Redirect {
                            endpoint: endpoint.clone(),
                            until: now + window,
                        });
                        tokio::spawn(async move { me.handoff(seq, endpoint).await });
                    }
                    None => {
                        tokio::spawn(async move {
                            tokio::time::sleep(window / 2).await;
                            let e = me.shared.db.primary_endpoint();
                            let target = Endpoint::new(e.host.clone(), e.port);
                            me.handoff(seq, target).await
                        });
                    }
                }
            }
        }
    }
}
