//! The server's record of one database, as its proxies keep it: every client
//! connection from accept to close, and every move of the endpoint. What
//! [`crate::server_record`] describes on the wire.
//!
//! Bounded: the connections still open are all kept, the closed ones up to
//! [`CLOSED_KEPT`] (the oldest go first), so a soak of thousands of actions
//! holds a fixed amount.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::fault_injector::Timestamp;
use crate::notification::EndpointType;
use crate::server_record::{
    CloseCause, ConnectionRecord, EndpointMove, PushSent, Redirect, SlotMoveRecord, SlotsMoved,
    SwitchOver, PUSHES_KEPT,
};

/// Closed connections kept.
pub const CLOSED_KEPT: usize = 20_000;

/// Endpoint moves (and switch-overs) kept.
const MOVES_KEPT: usize = 1_000;

/// The record of one database.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    open: BTreeMap<u64, ConnectionRecord>,
    closed: VecDeque<ConnectionRecord>,
    moves: VecDeque<EndpointMove>,
    slot_moves: VecDeque<SlotsMoved>,
    switch_overs: VecDeque<SwitchOver>,
}

impl Ledger {
    /// Records connection `id`, accepted now by `node`'s proxy.
    pub fn accepted(
        &self,
        id: u64,
        node: usize,
        public: bool,
        local: SocketAddr,
        peer: SocketAddr,
    ) {
        self.inner.lock().unwrap().open.insert(
            id,
            ConnectionRecord {
                id,
                node,
                public,
                local: local.to_string(),
                peer: peer.to_string(),
                name: None,
                accepted_at: Timestamp::now(),
                maint: None,
                tls: None,
                closed_at: None,
                closed_by: None,
                close_detail: None,
                pushes: Vec::new(),
                pushes_total: 0,
                redirects: Vec::new(),
                redirects_total: 0,
            },
        );
    }

    fn with(&self, id: u64, f: impl FnOnce(&mut ConnectionRecord)) {
        if let Some(c) = self.inner.lock().unwrap().open.get_mut(&id) {
            f(c);
        }
    }

    /// Connection `id` negotiated TLS `version` (`1.2`, `1.3`).
    pub fn encrypted(&self, id: u64, version: &str) {
        self.with(id, |c| c.tls = Some(version.to_string()));
    }

    /// Connection `id` named itself `name` (`CLIENT SETNAME`).
    pub fn named(&self, id: u64, name: &str) {
        self.with(id, |c| {
            c.name = (!name.is_empty()).then(|| name.to_string())
        });
    }

    /// Connection `id` opted in for `ty` (`None`: opted out).
    pub fn maint(&self, id: u64, ty: Option<EndpointType>) {
        self.with(id, |c| c.maint = ty.map(|t| t.as_str().to_string()));
    }

    /// A push was written to connection `id`.
    pub fn pushed(&self, id: u64, push: PushSent) {
        self.with(id, |c| {
            c.pushes_total += 1;
            if c.pushes.len() < PUSHES_KEPT {
                c.pushes.push(push);
            }
        });
    }

    /// Connection `id` was answered `reply`: kept when it is a redirect
    /// (`-MOVED <slot> <addr>`, `-ASK <slot> <addr>`), the latest
    /// [`PUSHES_KEPT`] of them.
    pub fn redirected(&self, id: u64, reply: &[u8]) {
        let Some(r) = parse_redirect(reply) else {
            return;
        };
        self.with(id, |c| {
            c.redirects_total += 1;
            // The latest are kept: a claim asks whether any came after a
            // moment (SMIGRATED), and a client that was redirected many
            // times before it must not hide the ones after.
            if c.redirects.len() == PUSHES_KEPT {
                c.redirects.remove(0);
            }
            c.redirects.push(r);
        });
    }

    /// Slots moved between nodes; SMIGRATED goes out now.
    pub fn slots_moved(&self, moves: Vec<SlotMoveRecord>) {
        let mut inner = self.inner.lock().unwrap();
        inner.slot_moves.push_back(SlotsMoved {
            at: Timestamp::now(),
            moves,
        });
        while inner.slot_moves.len() > MOVES_KEPT {
            inner.slot_moves.pop_front();
        }
    }

    /// The server is about to close connection `id` because of `by`: the
    /// cause it is recorded with, whatever ends its task first.
    pub fn closing(&self, id: u64, by: CloseCause) {
        self.with(id, |c| {
            c.closed_by.get_or_insert(by);
        });
    }

    /// Connection `id` closed now, because of `by` (unless the server said
    /// why first, with [`Ledger::closing`]).
    pub fn closed(&self, id: u64, by: CloseCause, detail: Option<String>) {
        let mut inner = self.inner.lock().unwrap();
        let Some(mut c) = inner.open.remove(&id) else {
            return;
        };
        c.closed_at = Some(Timestamp::now());
        c.closed_by.get_or_insert(by);
        c.close_detail = detail;
        inner.closed.push_back(c);
        while inner.closed.len() > CLOSED_KEPT {
            inner.closed.pop_front();
        }
    }

    /// The endpoint began a move.
    pub fn endpoint_moved(&self, m: EndpointMove) {
        let mut inner = self.inner.lock().unwrap();
        inner.moves.push_back(m);
        while inner.moves.len() > MOVES_KEPT {
            inner.moves.pop_front();
        }
    }

    /// A switch-over held the database's requests.
    pub fn switched_over(&self, s: SwitchOver) {
        let mut inner = self.inner.lock().unwrap();
        inner.switch_overs.push_back(s);
        while inner.switch_overs.len() > MOVES_KEPT {
            inner.switch_overs.pop_front();
        }
    }

    /// The switch-overs that held requests, in order.
    pub fn switch_overs(&self) -> Vec<SwitchOver> {
        self.inner
            .lock()
            .unwrap()
            .switch_overs
            .iter()
            .cloned()
            .collect()
    }

    /// The slot migrations that completed.
    pub fn slot_moves(&self) -> Vec<SlotsMoved> {
        self.inner
            .lock()
            .unwrap()
            .slot_moves
            .iter()
            .cloned()
            .collect()
    }

    /// The connections (those named `name`, when given), by id, and the
    /// endpoint's moves.
    pub fn snapshot(&self, name: Option<&str>) -> (Vec<ConnectionRecord>, Vec<EndpointMove>) {
        let inner = self.inner.lock().unwrap();
        let mut conns: Vec<ConnectionRecord> = inner
            .closed
            .iter()
            .chain(inner.open.values())
            .filter(|c| name.is_none_or(|n| c.name.as_deref() == Some(n)))
            .cloned()
            .collect();
        conns.sort_by_key(|c| c.id);
        (conns, inner.moves.iter().cloned().collect())
    }
}

/// `-MOVED 1234 host:port` or `-ASK ...`, as a redirect.
fn parse_redirect(reply: &[u8]) -> Option<Redirect> {
    let text = std::str::from_utf8(reply.strip_prefix(b"-")?).ok()?;
    let mut words = text.split_ascii_whitespace();
    let kind = words.next()?;
    if kind != "MOVED" && kind != "ASK" {
        return None;
    }
    Some(Redirect {
        at: Timestamp::now(),
        kind: kind.to_string(),
        slot: words.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_connection_is_recorded_from_accept_to_close_with_its_name_and_pushes() {
        let l = Ledger::default();
        l.accepted(1, 2, false, addr("127.0.2.1:12000"), addr("127.0.0.1:5000"));
        l.accepted(2, 2, true, addr("127.0.0.1:12000"), addr("127.0.0.1:5001"));
        l.named(1, "app");
        l.maint(1, Some(EndpointType::InternalIp));
        for seq in 0..(PUSHES_KEPT as i64 + 3) {
            l.pushed(
                1,
                PushSent {
                    at: Timestamp::now(),
                    kind: "MOVING".into(),
                    seq: Some(seq),
                    endpoint: None,
                },
            );
        }
        l.closed(1, CloseCause::GraceEnd, None);
        // Closing twice keeps the first cause.
        l.closed(1, CloseCause::Client, None);
        let (all, _) = l.snapshot(None);
        assert_eq!(all.len(), 2);
        let (named, _) = l.snapshot(Some("app"));
        assert_eq!(named.len(), 1);
        let c = &named[0];
        assert_eq!(c.node, 2);
        assert_eq!(c.local, "127.0.2.1:12000");
        assert_eq!(c.maint.as_deref(), Some("internal-ip"));
        assert_eq!(c.closed_by, Some(CloseCause::GraceEnd));
        assert!(c.closed_at.is_some());
        assert_eq!(c.pushes.len(), PUSHES_KEPT);
        assert_eq!(c.pushes_total, PUSHES_KEPT as u64 + 3);
        assert!(all[1].is_open() && all[1].public);
    }

    #[test]
    fn redirects_are_kept_with_their_slot_and_other_errors_ignored() {
        let l = Ledger::default();
        l.accepted(1, 1, false, addr("127.0.1.1:1"), addr("127.0.0.1:2"));
        l.redirected(1, b"-MOVED 1234 127.0.2.1:12000\r\n");
        l.redirected(1, b"-ASK 7 127.0.2.1:12000\r\n");
        l.redirected(1, b"-ERR wrong\r\n");
        l.redirected(1, b"+OK\r\n");
        let (all, _) = l.snapshot(None);
        let r = &all[0].redirects;
        assert_eq!(all[0].redirects_total, 2);
        assert_eq!((r[0].kind.as_str(), r[0].slot), ("MOVED", 1234));
        assert_eq!((r[1].kind.as_str(), r[1].slot), ("ASK", 7));
    }

    #[test]
    fn the_latest_redirects_are_kept() {
        let l = Ledger::default();
        l.accepted(1, 1, false, addr("127.0.1.1:1"), addr("127.0.0.1:2"));
        let n = PUSHES_KEPT as u16 + 10;
        for slot in 0..n {
            l.redirected(1, format!("-MOVED {slot} 127.0.2.1:12000\r\n").as_bytes());
        }
        let (all, _) = l.snapshot(None);
        let r = &all[0].redirects;
        assert_eq!(all[0].redirects_total, u64::from(n));
        assert_eq!(r.len(), PUSHES_KEPT);
        // The one after many others is there: a claim about what came late
        // sees it.
        assert_eq!(r.last().unwrap().slot, n - 1);
        assert_eq!(r[0].slot, 10);
    }

    #[test]
    fn closed_connections_are_kept_up_to_a_bound_oldest_first_out() {
        let l = Ledger::default();
        let n = CLOSED_KEPT as u64 + 10;
        for id in 1..=n {
            l.accepted(id, 1, false, addr("127.0.1.1:1"), addr("127.0.0.1:2"));
            l.closed(id, CloseCause::Client, None);
        }
        let (all, _) = l.snapshot(None);
        assert_eq!(all.len(), CLOSED_KEPT);
        assert_eq!(all[0].id, 11);
    }
}
