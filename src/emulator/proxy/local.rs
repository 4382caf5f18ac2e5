//! What a proxy answers itself, never forwarding: `CLIENT
//! MAINT_NOTIFICATIONS` (the opt-in and its replayed windows), the cluster
//! topology replies (`CLUSTER SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES`) in
//! the form the connection asked for, and the notifications the database
//! announces to every connection.

use super::*;

impl Conn {
    pub(super) fn flush_locals(&mut self) {
        loop {
            match self.fifo.front() {
                Some(Entry::Local(_)) => {
                    let Some(Entry::Local(c)) = self.fifo.pop_front() else {
                        unreachable!()
                    };
                    self.answer_maint(&c);
                }
                Some(Entry::Canned(_)) => {
                    let Some(Entry::Canned(b)) = self.fifo.pop_front() else {
                        unreachable!()
                    };
                    self.out.extend_from_slice(&b);
                }
                _ => return,
            }
        }
    }

    pub(super) fn answer_maint(&mut self, c: &Command) {
        if c.arg(1).eq_ignore_ascii_case("MAINT_NOTIFICATIONS_INFO") {
            let info = maint_info(self.maint, self.proto, c.args.len());
            self.out.extend_from_slice(&info);
            return;
        }
        let sub = c.arg(2).to_ascii_uppercase();
        let reply = match (sub.as_str(), c.args.len()) {
            ("OFF", 3) => {
                self.maint = None;
                Ok(())
            }
            ("ON", 3) | ("ON", 5) if !self.db.cluster.maint_notifications() => Err(
                "ERR maintenance notifications are disabled on this cluster (client_maint_notifications is false)".to_string(),
            ),
            ("ON", 3) | ("ON", 5) if self.proto != 3 => Err(
                "ERR CLIENT MAINT_NOTIFICATIONS needs RESP3: send HELLO 3 first".to_string(),
            ),
            ("ON", 3) => {
                self.maint = Some(if self.local_external {
                    EndpointType::ExternalIp
                } else {
                    EndpointType::InternalIp
                });
                Ok(())
            }
            ("ON", 5) if c.arg(3).eq_ignore_ascii_case("moving-endpoint-type") => {
                match EndpointType::parse(&c.arg(4)) {
                    Ok(t) => {
                        self.maint = Some(t);
                        Ok(())
                    }
                    Err(e) => Err(format!("ERR {e}")),
                }
            }
            _ => Err(
                "ERR syntax: CLIENT MAINT_NOTIFICATIONS ON [moving-endpoint-type <internal-ip|internal-fqdn|external-ip|external-fqdn|none>] | OFF"
                    .to_string(),
            ),
        };
        match reply {
            Ok(()) => {
                self.db.set_asked(self.id, self.maint);
                self.db.ledger.maint(self.id, self.maint);
                if let Some(asked) = self.maint {
                    let now = Instant::now();
                    for a in self.db.on_opt_in(self.node, self.public, asked, now) {
                        self.push(&a, now);
                    }
                }
                self.out.extend_from_slice(b"+OK\r\n");
            }
            Err(e) => {
                self.out.extend_from_slice(b"-");
                self.out.extend_from_slice(e.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The address form topology answers and redirects use: the
    /// database's (`oss_cluster_api_preferred_ip_type`), the same on every
    /// connection, as on a real cluster. A client learns the topology on one
    /// connection and is told of slot moves on another: the addresses must
    /// agree, whatever MOVING form each connection asked for.
    pub(super) fn topology_form(&self) -> EndpointType {
        self.db.cluster_form()
    }

    /// What the proxy of an OSS Cluster API database answers itself:
    /// ASKING (remembered for the next command), READONLY / READWRITE, and
    /// the topology, with the proxies' addresses in the database's form.
    pub(super) fn cluster_local(&mut self, c: &Command, map: &SlotMap) -> Option<Bytes> {
        let ok = || Some(Bytes::from_static(b"+OK\r\n"));
        match c.name() {
            "ASKING" => {
                self.asking = true;
                return ok();
            }
            "READONLY" | "READWRITE" => return ok(),
            "CLUSTER" => {}
            _ => return None,
        }
        let form = self.topology_form();
        let (names, port) = (&self.db.naming, self.db.port);
        let at = |n: Node| {
            names
                .endpoint(n, form, port)
                .expect("a topology form has an address")
        };
        Some(match c.arg(1).to_ascii_uppercase().as_str() {
            "SLOTS" => slot_map::cluster_slots(map, at),
            "SHARDS" => slot_map::cluster_shards(map, at, self.proto),
            "NODES" => slot_map::cluster_nodes(map, at, self.node),
            "INFO" => slot_map::cluster_info(map),
            "MYID" => {
                let id = slot_map::node_id(self.node);
                Bytes::from(format!("${}\r\n{id}\r\n", id.len()))
            }
            _ => return None,
        })
    }

    /// Acts on a control message; false when the connection must close.
    pub(super) async fn on_control(
        &mut self,
        ctl: Option<Control>,
        ups: &mut Vec<Option<Upstream>>,
    ) -> Result<bool> {
        match ctl {
            Some(Control::Announce(a)) => self.announce(&a),
            Some(Control::Resubscribe { shard, to, done }) => {
                self.resubscribe(ups, shard, to).await?;
                let _ = done.send(());
            }
            Some(Control::Drain) => {
                self.drain_by
                    .get_or_insert(Instant::now() + crate::timing::DRAIN_WITHIN);
            }
            Some(Control::Close) | None => return Ok(false),
        }
        Ok(true)
    }

    pub(super) fn push(&mut self, a: &Announcement, now: Instant) {
        if let (Some(ty), 3) = (self.maint, self.proto) {
            // With notifications turned off cluster-wide, the proxy sends none,
            // also to connections that opted in before.
            if self.db.cluster.maint_notifications() {
                let bytes = a.bytes(ty, &self.db.naming, self.db.port, now);
                self.out.extend_from_slice(&bytes);
                self.db.ledger.pushed(self.id, pushed(a, ty, &self.db, now));
            }
        }
    }

    pub(super) fn announce(&mut self, a: &Announcement) {
        self.push(a, Instant::now());
    }
}

/// `CLIENT MAINT_NOTIFICATIONS_INFO`: what the server holds of the
/// connection's opt-in, as clients' suites read it back. A map (a flat array
/// in RESP2) of `status` (`on` / `off`) and `parameters`, itself a map
/// holding `moving-endpoint-type` as the connection asked for it, empty when
/// it is off. `n` is the command's argument count: it takes none.
fn maint_info(maint: Option<EndpointType>, proto: u8, n: usize) -> Vec<u8> {
    if n != 2 {
        return b"-ERR wrong number of arguments for 'client|maint_notifications_info' command\r\n"
            .to_vec();
    }
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    let map = |pairs: usize| match proto {
        3 => format!("%{pairs}\r\n"),
        _ => format!("*{}\r\n", pairs * 2),
    };
    let mut out = map(2);
    out += &bulk("status");
    out += &bulk(if maint.is_some() { "on" } else { "off" });
    out += &bulk("parameters");
    match maint {
        Some(ty) => {
            out += &map(1);
            out += &bulk("moving-endpoint-type");
            out += &bulk(ty.as_str());
        }
        None => out += &map(0),
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_a_map_of_status_and_the_type_asked_for() {
        let on = maint_info(Some(EndpointType::ExternalFqdn), 3, 2);
        assert_eq!(
            String::from_utf8(on).unwrap(),
            "%2\r\n$6\r\nstatus\r\n$2\r\non\r\n$10\r\nparameters\r\n%1\r\n$20\r\nmoving-endpoint-type\r\n$13\r\nexternal-fqdn\r\n"
        );
        let off = maint_info(None, 2, 2);
        assert_eq!(
            String::from_utf8(off).unwrap(),
            "*4\r\n$6\r\nstatus\r\n$3\r\noff\r\n$10\r\nparameters\r\n*0\r\n"
        );
        assert!(maint_info(None, 3, 3).starts_with(b"-ERR wrong number of arguments"));
    }
}
