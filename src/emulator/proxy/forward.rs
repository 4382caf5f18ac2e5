//! Forwarding: each command to the shard (or shards) that owns it, with the
//! replies kept in order, transactions and blocking commands tracked, and
//! subscriptions taken to a new primary after a switch-over.

use super::*;

impl Conn {
    /// Forwards the commands at the front of `pending` (up to the next local
    /// one) on the route `guard` holds, connecting to a shard first if its
    /// address changed.
    pub(super) async fn forward(
        &mut self,
        ups: &mut Vec<Option<Upstream>>,
        pending: &mut VecDeque<Command>,
        guard: RouteGuard,
    ) -> Result<()> {
        let shards = guard.upstreams.len();
        if ups.len() != shards {
            ups.resize_with(shards, || None);
        }
        let mut batches = vec![BytesMut::new(); shards];
        while pending.front().is_some_and(|c| !c.is_maint()) && self.fifo.len() < MAX_IN_FLIGHT {
            let c = pending.pop_front().unwrap();
            let mut asking = false;
            // In RESP2, an (un)subscribe of several channels is answered by
            // as many replies, each owed to the client.
            let mut confirmations = 1;
            let plan = match &guard.cluster {
                None => routing::plan(
                    &c,
                    shards,
                    self.db.key_specs.as_deref(),
                    self.in_multi,
                    &self.tx,
                ),
                Some(map) => match self.cluster_local(&c, map) {
                    Some(reply) => Plan::Answer(reply),
                    None => {
                        asking = std::mem::take(&mut self.asking);
                        let node = self.node;
                        let form = self.topology_form();
                        let (names, port) = (&self.db.naming, self.db.port);
                        let place = |slot: u16| {
                            let owner = map.owner(slot);
                            if map.nodes[owner] == node {
                                return Ok(owner);
                            }
                            match map.importing.get(&slot) {
                                Some(&t) if asking && map.nodes[t] == node => Ok(t),
                                _ => {
                                    let e = names.endpoint(map.node_of(slot), form, port);
                                    let e = e.expect("a topology form has an address");
                                    Err(Bytes::from(format!(
                                        "-MOVED {slot} {}:{}\r\n",
                                        e.host, e.port
                                    )))
                                }
                            }
                        };
                        // A node left with no primary still takes a
                        // connection's session and keyless commands, on
                        // the shard that serves slot 0.
                        let mut here = map.sets_on(node);
                        if here.is_empty() {
                            here.push(map.owner(0));
                        }
                        routing::plan_among(
                            &c,
                            &here,
                            place,
                            self.db.key_specs.as_deref(),
                            self.in_multi,
                            &self.tx,
                        )
                    }
                },
            };
            if let Plan::Send(targets, _) = &plan {
                for &t in targets {
                    let moved = match &ups[t] {
                        None => true,
                        // Replies still owed by the old primary (a blocked
                        // command's) come first: what follows them goes
                        // there too, as on a real connection.
                        Some(u) => u.addr != guard.upstreams[t] && !self.awaits(t),
                    };
                    if moved {
                        // Commands already batched for it go on the new connection.
                        ups[t] = Some(self.connect_upstream(guard.upstreams[t], t).await?);
                    }
                }
                confirmations = match targets[..] {
                    [t] if self.proto == 2 => self.subs.confirmations(&c, t).unwrap_or(1),
                    _ => 1,
                };
                if self.subs.track(&c, targets.clone()) {
                    self.db.set_subscribed(self.id, self.subs.any());
                }
            }
            let sharded = shards > 1 || guard.cluster.is_some();
            let was_deferred = self.tx.deferred_multi.is_some();
            let after = self.track(&c, &guard, sharded);
            let (targets, how) = match plan {
                Plan::Answer(reply) => {
                    if reply == CROSSSLOT && self.in_multi {
                        self.tx.aborted = true;
                    }
                    if c.name() == "MULTI" && sharded {
                        self.tx.deferred_multi = Some(c.raw.clone());
                    }
                    if matches!(c.name(), "EXEC" | "DISCARD") {
                        self.tx = ShardedTx::default();
                    }
                    self.db.ledger.redirected(self.id, &reply);
                    self.fifo.push_back(Entry::Canned(reply));
                    continue;
                }
                Plan::Send(targets, how) => (targets, how),
            };
            if sharded && self.in_multi && was_deferred && self.tx.shard.is_none() {
                // The transaction's first command names its shard: MULTI goes
                // there now, its reply already given.
                let t = targets[0];
                self.tx.shard = Some(t);
                let multi = self.tx.deferred_multi.take().unwrap_or_default();
                batches[t].extend_from_slice(&multi);
                self.fifo.push_back(Entry::Upstream {
                    _guard: Some(guard.clone()),
                    shard: t,
                    after: After::Nothing,
                    to: ReplyTo::Discard,
                });
            }
            if sharded && c.name() == "WATCH" {
                self.tx.shard.get_or_insert(targets[0]);
            }
            let exec_aborted = sharded && c.name() == "EXEC" && self.tx.aborted;
            if sharded && matches!(c.name(), "EXEC" | "DISCARD") {
                self.tx = ShardedTx::default();
            }
            // In RESP3, (un)subscribe confirmations are pushes: no reply slot.
            let push_only = self.proto == 3
                && matches!(
                    c.name(),
                    "SUBSCRIBE"
                        | "PSUBSCRIBE"
                        | "SSUBSCRIBE"
                        | "UNSUBSCRIBE"
                        | "PUNSUBSCRIBE"
                        | "SUNSUBSCRIBE"
                );
            if asking && targets.len() == 1 {
                // ASKING goes right before the command, on the same shard
                // connection; the client had its reply already.
                batches[targets[0]].extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                self.fifo.push_back(Entry::Upstream {
                    _guard: Some(guard.clone()),
                    shard: targets[0],
                    after: After::Nothing,
                    to: ReplyTo::Discard,
                });
            }
            let count = targets.len();
            for (i, t) in targets.into_iter().enumerate() {
                if exec_aborted {
                    batches[t].extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
                } else {
                    batches[t].extend_from_slice(&c.raw);
                }
                if push_only {
                    continue;
                }
                let to = match (count, exec_aborted) {
                    (_, true) => ReplyTo::Discard,
                    (1, false) => ReplyTo::Client,
                    _ => ReplyTo::Part {
                        merge: how,
                        last: i + 1 == count,
                    },
                };
                let unguarded = (c.blocks() && !self.in_multi) || self.behind_blocking(t);
                self.fifo.push_back(Entry::Upstream {
                    _guard: (!unguarded).then(|| guard.clone()),
                    shard: t,
                    after,
                    to,
                });
                for _ in 1..confirmations {
                    self.fifo.push_back(Entry::Upstream {
                        _guard: (!unguarded).then(|| guard.clone()),
                        shard: t,
                        after: After::Nothing,
                        to: ReplyTo::Client,
                    });
                }
            }
            if exec_aborted {
                self.fifo
                    .push_back(Entry::Canned(Bytes::from_static(EXECABORT)));
            }
        }
        for (t, batch) in batches.iter().enumerate() {
            if !batch.is_empty() {
                let u = ups[t]
                    .as_mut()
                    .ok_or_else(|| anyhow!("no connection to shard {t}"))?;
                u.w.write_all(batch).await?;
            }
        }
        Ok(())
    }

    /// Follows the connection state a command changes: what to replay on a new
    /// shard, transactions, and what its reply changes.
    pub(super) fn track(&mut self, c: &Command, guard: &RouteGuard, sharded: bool) -> After {
        match c.name() {
            "HELLO" => {
                self.session.hello = Some(c.raw.clone());
                // HELLO [protover [AUTH username password] [SETNAME name]]:
                // a client may name itself here rather than with CLIENT
                // SETNAME (node-redis does), and the record keeps it alike.
                let mut i = 2;
                while i < c.args.len() {
                    match c.arg(i).to_ascii_uppercase().as_str() {
                        "AUTH" => i += 3,
                        "SETNAME" => {
                            self.db.ledger.named(self.id, &c.arg(i + 1));
                            i += 2;
                        }
                        _ => i += 1,
                    }
                }
                let v = c.arg(1).parse().ok();
                self.session.proto = v.or(self.session.proto);
                return v.map(After::Hello).unwrap_or(After::Nothing);
            }
            "AUTH" => self.session.auth = Some(c.raw.clone()),
            "SELECT" => self.session.select = Some(c.raw.clone()),
            "CLIENT" if c.arg(1).eq_ignore_ascii_case("SETNAME") => {
                self.db.ledger.named(self.id, &c.arg(2));
                self.session.setname = Some(c.raw.clone())
            }
            "RESET" => {
                self.session = Session::default();
                self.transaction = None;
                self.in_multi = false;
                self.tx = ShardedTx::default();
                return After::Reset;
            }
            "QUIT" => return After::Quit,
            "WATCH" | "MULTI" => {
                self.in_multi |= c.name() == "MULTI";
                self.transaction.get_or_insert_with(|| guard.clone());
            }
            "EXEC" | "DISCARD" => {
                self.in_multi = false;
                self.transaction = None;
            }
            "UNWATCH" if !self.in_multi => {
                self.transaction = None;
                if sharded {
                    self.tx = ShardedTx::default();
                }
            }
            _ => {}
        }
        After::Nothing
    }

    /// Reads what the shards sent: replies in the order the client is owed
    /// them, pushes as they come, each written whole.
    pub(super) fn on_upstream(&mut self, ups: &mut [Option<Upstream>]) -> Result<()> {
        loop {
            self.flush_locals();
            let Some(Entry::Upstream { shard, after, .. }) = self.fifo.front() else {
                break;
            };
            let (shard, after) = (*shard, *after);
            let proto = match after {
                After::Hello(v) => v,
                _ => self.proto,
            };
            let u = ups.get_mut(shard).and_then(Option::as_mut).ok_or_else(|| {
                anyhow!("a reply is owed by shard {shard}, which is not connected")
            })?;
            let Some(d) = decode(&mut u.buf, proto)
                .with_context(|| format!("malformed reply from shard {}", u.addr))?
            else {
                break;
            };
            match d {
                Decoded::Push(raw) => self.pass_push(&raw, shard),
                Decoded::Reply { raw, error } => {
                    let Some(Entry::Upstream { to, .. }) = self.fifo.pop_front() else {
                        unreachable!()
                    };
                    match after {
                        After::Hello(v) if !error => self.proto = v,
                        After::Reset => {
                            self.proto = 2;
                            self.maint = None;
                        }
                        After::Quit => self.closing = true,
                        _ => {}
                    }
                    match to {
                        ReplyTo::Client if error => {
                            // A shard's redirect names its node's proxy.
                            let form = self.topology_form();
                            let db = &self.db;
                            let rewritten = slot_map::rewrite_redirect(&raw, |addr| {
                                db.naming.endpoint(db.shard_node(addr)?, form, db.port)
                            });
                            db.ledger.redirected(self.id, &raw);
                            self.out
                                .extend_from_slice(rewritten.as_deref().unwrap_or(&raw));
                        }
                        ReplyTo::Client => self.out.extend_from_slice(&raw),
                        ReplyTo::Discard => {}
                        ReplyTo::Part { merge: how, last } => {
                            self.parts.push(raw);
                            if last {
                                let merged = merge(&self.parts, how);
                                self.parts.clear();
                                self.out.extend_from_slice(&merged);
                            }
                        }
                    }
                }
            }
        }
        // A shard no reply is owed by sends only pushes (pub/sub messages),
        // and, to a subscriber in RESP2, its messages and the confirmations
        // after a command's first as replies.
        for (i, u) in ups.iter_mut().enumerate() {
            let owed = self
                .fifo
                .iter()
                .any(|e| matches!(e, Entry::Upstream { shard, .. } if *shard == i));
            let Some(u) = u.as_mut().filter(|_| !owed) else {
                continue;
            };
            let subscribed = self.subs.on(i);
            while let Some(d) = decode(&mut u.buf, self.proto)
                .with_context(|| format!("malformed reply from shard {}", u.addr))?
            {
                match d {
                    Decoded::Push(raw) => self.pass_push(&raw, i),
                    Decoded::Reply { raw, .. } if subscribed => self.out.extend_from_slice(&raw),
                    Decoded::Reply { raw, .. } => tracing::debug!(
                        "dropped a reply no command was waiting for from shard {}: {:?}",
                        u.addr,
                        String::from_utf8_lossy(&raw)
                    ),
                }
            }
        }
        Ok(())
    }

    /// Passes on a push from shard set `shard`, minding what it says of
    /// the connection's subscriptions there.
    fn pass_push(&mut self, raw: &[u8], shard: usize) {
        self.subs.on_push(raw, shard);
        self.db.set_subscribed(self.id, self.subs.any());
        self.out.extend_from_slice(raw);
    }

    /// Shard set `shard` is served at `to` now: a connection subscribed on
    /// it subscribes there (after passing on what the old primary sent), and
    /// the old connection goes. One that still owes a reply stays where it is.
    pub(super) async fn resubscribe(
        &mut self,
        ups: &mut Vec<Option<Upstream>>,
        shard: usize,
        to: SocketAddr,
    ) -> Result<()> {
        if !self.subs.on(shard) || self.awaits(shard) {
            return Ok(());
        }
        if ups.len() <= shard {
            ups.resize_with(shard + 1, || None);
        }
        if let Some(old) = ups[shard].as_mut() {
            if old.addr == to {
                return Ok(());
            }
            // Messages published before the switch, already on their way.
            old.read_ready();
            self.on_upstream(ups)?;
        }
        ups[shard] = Some(self.connect_upstream(to, shard).await?);
        Ok(())
    }

    /// Opens a connection to a (new) primary of shard set `shard`, with the
    /// session (HELLO with its AUTH, AUTH, SELECT, SETNAME) and the
    /// subscriptions held there replayed on it.
    pub(super) async fn connect_upstream(
        &mut self,
        addr: SocketAddr,
        shard: usize,
    ) -> Result<Upstream> {
        let session: Vec<Bytes> = [
            &self.session.hello,
            &self.session.auth,
            &self.session.select,
            &self.session.setname,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let proto = self.session.proto.unwrap_or(self.proto);
        Upstream::connect(addr, &session, self.subs.replay(shard), proto).await
    }
}
