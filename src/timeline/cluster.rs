//! Claims about a cluster client through slot migrations: each move goes
//! into its slot map once, whichever nodes announced it, and its slot map
//! ends equal to the cluster's.

use std::collections::HashSet;
use std::time::Duration;

use super::{Claim, Unmet};
use crate::client::{ClientEvent, EventKind};
use crate::duration_text::show;
use crate::notification::Notification;

/// What a client made of the SMIGRATED it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MovesApplied {
    /// Distinct moves announced (source, target, slots).
    pub moves: usize,
    /// Moves received in all, repeats included.
    pub received: usize,
    /// Moves the client applied to its slot map.
    pub applied: usize,
}

/// Every distinct move announced by SMIGRATED was applied to the slot map
/// exactly once, however many nodes (connections) announced it; with
/// `repeated`, some move must have been announced more than once.
pub fn each_move_applied_once(events: &[ClientEvent], repeated: bool) -> Claim<MovesApplied> {
    let mut distinct = HashSet::new();
    let mut received = 0;
    let mut applied = 0;
    for e in events {
        match &e.kind {
            EventKind::Notification {
                notification: Notification::SMigrated { moves, .. },
                ..
            } => {
                for m in moves {
                    received += 1;
                    distinct.insert((m.source.to_string(), m.target.to_string(), m.slots.clone()));
                }
            }
            EventKind::SlotMapUpdated { moves, .. } => applied += moves,
            _ => {}
        }
    }
    let out = MovesApplied {
        moves: distinct.len(),
        received,
        applied,
    };
    if out.moves == 0 {
        unmet!("no SMIGRATED arrived");
    }
    if out.applied != out.moves {
        unmet!(
            "{} distinct move(s) were announced ({} announcements) but the slot map took {} update(s)",
            out.moves,
            out.received,
            out.applied
        );
    }
    if repeated && out.received <= out.moves {
        unmet!(
            "each of the {} move(s) was announced once only; nothing shows a repeat was ignored",
            out.moves
        );
    }
    Ok(out)
}

/// Every connection that received SMIGRATING stayed relaxed from then until
/// an SMIGRATED of a later seq reached the client (on any connection: the
/// nodes on both sides announce it), and was un-relaxed after it. Returns
/// how many windows that makes.
pub fn relaxed_until_smigrated(events: &[ClientEvent], back_within: Duration) -> Claim<usize> {
    let got = super::notifications(events);
    let starts: Vec<_> = got
        .iter()
        .filter(|r| matches!(r.notification, Notification::SMigrating { .. }))
        .collect();
    if starts.is_empty() {
        unmet!("no SMIGRATING arrived");
    }
    for s in &starts {
        let seq = s.notification.seq();
        let Some(end) = got.iter().find(|r| {
            matches!(r.notification, Notification::SMigrated { .. })
                && r.notification.seq() > seq
                && r.at >= s.at
        }) else {
            unmet!(
                "SMIGRATING {seq} on connection #{} has no SMIGRATED after it",
                s.conn
            );
        };
        super::relaxed_over(events, s.conn, s.at, end.at).map_err(|e| {
            Unmet(format!(
                "connection #{} after SMIGRATING {seq}: {}",
                s.conn, e.0
            ))
        })?;
        let back = events.iter().find(|e| {
            e.conn == s.conn && e.at >= end.at && matches!(e.kind, EventKind::Unrelaxed { .. })
        });
        let Some(back) = back else {
            unmet!(
                "connection #{} is still relaxed after {} ended the move SMIGRATING {seq} announced",
                s.conn,
                end.notification
            );
        };
        let took = back.at - end.at;
        if took > back_within {
            unmet!(
                "connection #{} came back {} after {} ended the move SMIGRATING {seq} announced, later than {}",
                s.conn,
                show(Some(took)),
                end.notification,
                show(Some(back_within))
            );
        }
    }
    Ok(starts.len())
}

/// Two slot maps, as runs of `(first, last, "host:port")`, are the same.
pub fn slot_maps_equal(client: &[(u16, u16, String)], cluster: &[(u16, u16, String)]) -> Claim {
    if client == cluster {
        return Ok(());
    }
    let show = |m: &[(u16, u16, String)]| {
        m.iter()
            .map(|(a, b, n)| format!("{a}-{b} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Unmet(format!(
        "the client's slot map is [{}]; the cluster's is [{}]",
        show(client),
        show(cluster)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::{Endpoint, SlotMove};
    use tokio::time::Instant;

    fn ev(conn: u64, kind: EventKind) -> ClientEvent {
        ClientEvent {
            at: Instant::now(),
            client: "c".into(),
            conn,
            kind,
        }
    }

    fn smigrated(conn: u64, seq: i64) -> ClientEvent {
        ev(
            conn,
            EventKind::Notification {
                notification: Notification::SMigrated {
                    seq,
                    moves: vec![SlotMove {
                        source: Endpoint::new("127.0.1.1", 1),
                        target: Endpoint::new("127.0.2.1", 1),
                        slots: "0-9".into(),
                    }],
                    rejected: Vec::new(),
                },
                at_setup: false,
            },
        )
    }

    #[test]
    fn a_move_announced_twice_is_applied_once() {
        let once = ev(
            1,
            EventKind::SlotMapUpdated {
                seq: 3,
                moves: 1,
                slots: 10,
            },
        );
        let events = vec![
            smigrated(1, 3),
            once.clone(),
            smigrated(2, 5),
            ev(2, EventKind::SlotMovesKnown { seq: 5 }),
        ];
        let got = each_move_applied_once(&events, true).unwrap();
        assert_eq!(
            got,
            MovesApplied {
                moves: 1,
                received: 2,
                applied: 1
            }
        );
        // Applied twice: the second announcement changed the map again.
        let mut twice = events.clone();
        twice.push(ev(
            2,
            EventKind::SlotMapUpdated {
                seq: 5,
                moves: 1,
                slots: 0,
            },
        ));
        assert!(each_move_applied_once(&twice, true)
            .unwrap_err()
            .0
            .contains("took 2 update(s)"));
        // Announced once only: nothing shows a repeat was ignored.
        let single = vec![smigrated(1, 3), once];
        assert!(each_move_applied_once(&single, false).is_ok());
        assert!(each_move_applied_once(&single, true)
            .unwrap_err()
            .0
            .contains("announced once only"));
        assert!(each_move_applied_once(&[], false)
            .unwrap_err()
            .0
            .contains("no SMIGRATED"));
    }

    #[test]
    fn slot_maps_compare_run_by_run() {
        let a = vec![(0, 9, "127.0.1.1:1".to_string())];
        assert!(slot_maps_equal(&a, &a).is_ok());
        let b = vec![(0, 9, "127.0.2.1:1".to_string())];
        let e = slot_maps_equal(&a, &b).unwrap_err().0;
        assert!(
            e.contains("0-9 127.0.1.1:1") && e.contains("0-9 127.0.2.1:1"),
            "{e}"
        );
    }

    fn smigrating(conn: u64, seq: i64) -> ClientEvent {
        ev(
            conn,
            EventKind::Notification {
                notification: Notification::SMigrating {
                    seq,
                    slots: "0-9".into(),
                },
                at_setup: false,
            },
        )
    }

    fn relaxed(conn: u64) -> ClientEvent {
        ev(
            conn,
            EventKind::Relaxed {
                timeout: Some(std::time::Duration::from_secs(3)),
            },
        )
    }

    fn unrelaxed(conn: u64) -> ClientEvent {
        ev(
            conn,
            EventKind::Unrelaxed {
                timeout: Some(std::time::Duration::from_secs(1)),
            },
        )
    }

    const WITHIN: Duration = Duration::from_millis(800);

    #[test]
    fn a_connection_relaxed_by_smigrating_must_come_back_after_smigrated() {
        // Connection 1 relaxed on SMIGRATING; the SMIGRATED that ends it
        // came on connection 2 (the other node), and 1 came back.
        let good = vec![smigrating(1, 1), relaxed(1), smigrated(2, 3), unrelaxed(1)];
        assert_eq!(relaxed_until_smigrated(&good, WITHIN), Ok(1));
        // Came back, but long after the tail.
        let mut late = good.clone();
        late[3].at = late[2].at + Duration::from_secs(2);
        let e = relaxed_until_smigrated(&late, WITHIN).unwrap_err().0;
        assert!(e.contains("came back 2 s after SMIGRATED 3"), "{e}");
        // Never came back: the bug of one client's async cluster path.
        let stuck = vec![smigrating(1, 1), relaxed(1), smigrated(2, 3)];
        let e = relaxed_until_smigrated(&stuck, WITHIN).unwrap_err().0;
        assert!(e.contains("still relaxed after SMIGRATED 3"), "{e}");
        // Never relaxed at all.
        let flat = vec![smigrating(1, 1), smigrated(1, 3)];
        assert!(relaxed_until_smigrated(&flat, WITHIN)
            .unwrap_err()
            .0
            .contains("connection #1"));
        // No SMIGRATED with a later seq.
        let open = vec![smigrating(1, 5), relaxed(1), smigrated(1, 3)];
        assert!(relaxed_until_smigrated(&open, WITHIN)
            .unwrap_err()
            .0
            .contains("has no SMIGRATED after it"));
        assert!(relaxed_until_smigrated(&[], WITHIN)
            .unwrap_err()
            .0
            .contains("no SMIGRATING"));
    }
}
