//! The server-decided claims on hand-made records.
use std::time::{Duration, SystemTime};

use super::*;
use crate::server_record::PushSent;

fn t(ms: u64) -> Timestamp {
    Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms))
}

fn conn(
    id: u64,
    node: usize,
    accepted: u64,
    closed: Option<(u64, CloseCause)>,
) -> ConnectionRecord {
    ConnectionRecord {
        id,
        node,
        public: false,
        local: format!("127.0.{node}.1:12000"),
        peer: "127.0.0.1:40000".into(),
        name: Some("app".into()),
        accepted_at: t(accepted),
        maint: Some("internal-ip".into()),
        tls: None,
        closed_at: closed.map(|(at, _)| t(at)),
        closed_by: closed.map(|(_, by)| by),
        close_detail: None,
        pushes: Vec::new(),
        pushes_total: 0,
        redirects: Vec::new(),
        redirects_total: 0,
    }
}

fn moving(c: &mut ConnectionRecord, at: u64, endpoint: Option<&str>) {
    c.pushes.push(PushSent {
        at: t(at),
        kind: "MOVING".into(),
        seq: Some(7),
        endpoint: endpoint.map(str::to_string),
    });
    c.pushes_total += 1;
}

/// The endpoint moves from node 1 to node 2 at 1 s; the grace ends at 3 s.
fn record(connections: Vec<ConnectionRecord>) -> DatabaseRecord {
    DatabaseRecord {
        bdb_id: 1,
        endpoint_node: 2,
        accepted_total: connections.len() as u64,
        nodes: Vec::new(),
        connections,
        endpoint_moves: vec![EndpointMove {
            seq: 7,
            from: 1,
            to: 2,
            at: t(1000),
            grace_end: t(3000),
            announced: true,
        }],
        slot_moves: Vec::new(),
        shards: Vec::new(),
        switch_overs: Vec::new(),
    }
}

/// Two connections on node 1 that each hand off: a new one on node 2,
/// the old one closed by the client.
fn handed_off() -> DatabaseRecord {
    let mut a = conn(1, 1, 0, Some((1200, CloseCause::Client)));
    let mut b = conn(2, 1, 0, Some((1300, CloseCause::Client)));
    moving(&mut a, 1000, Some("127.0.2.1:12000"));
    moving(&mut b, 1000, Some("127.0.2.1:12000"));
    record(vec![a, b, conn(3, 2, 1100, None), conn(4, 2, 1150, None)])
}

#[test]
fn connections_that_moved_before_the_grace_ended_handed_off() {
    let r = handed_off();
    handed_off_by_server(&r, "app").unwrap();
    uses_moving_endpoint(&r, "app", Some(2)).unwrap();
    newest_at_moving_endpoint(&r, "app").unwrap();
    assert!(handoffs_settled(&r, "app", t(1400)));
    assert_eq!(pushes_sent(&r, "app", Some("moving")), 2);
    assert_eq!(pushes_sent(&r, "app", Some("MIGRATING")), 0);
    assert_eq!(pushes_sent(&r, "other", None), 0);
    assert!(cut_at_grace_end(&r, "app").is_err());
    none_cut_off(&r, "app").unwrap();
    // Two old, then two new arriving before the old ones close: four.
    assert_eq!(peak_open(&r, "app").0, 4);
    open_at_most(&r, "app", 4).unwrap();
    assert!(open_at_most(&r, "app", 3).is_err());
    arrived_within(&r, "app", Duration::from_millis(200)).unwrap();
    let e = arrived_within(&r, "app", Duration::from_millis(120))
        .unwrap_err()
        .0;
    assert!(e.contains("connection 4"), "{e}");
}

#[test]
fn a_client_that_stays_until_the_server_cuts_it_off_did_not_hand_off() {
    // Notifications off: no MOVING, cut at the grace end, back through
    // the public address to node 2 afterwards.
    let mut late_a = conn(3, 2, 3050, None);
    late_a.public = true;
    let mut late_b = conn(4, 2, 3060, None);
    late_b.public = true;
    let r = record(vec![
        conn(1, 1, 0, Some((3000, CloseCause::GraceEnd))),
        conn(2, 1, 0, Some((3000, CloseCause::GraceEnd))),
        late_a,
        late_b,
    ]);
    let e = handed_off_by_server(&r, "app").unwrap_err().0;
    assert!(e.contains("closed 2 of the 2 connection(s)"), "{e}");
    let e = uses_moving_endpoint(&r, "app", Some(2)).unwrap_err().0;
    assert!(e.contains("sent no MOVING"), "{e}");
    cut_at_grace_end(&r, "app").unwrap();
    let e = none_cut_off(&r, "app").unwrap_err().0;
    assert!(e.contains("cut off 2 connection(s)"), "{e}");
}

#[test]
fn a_client_that_hands_off_twice_or_not_at_all_is_caught_by_the_count() {
    let mut r = handed_off();
    r.connections
        .push(conn(5, 2, 1500, Some((1600, CloseCause::Client))));
    let e = handed_off_by_server(&r, "app").unwrap_err().0;
    assert!(e.contains("accepted 3 of them"), "{e}");
    let mut r = handed_off();
    r.connections.retain(|c| c.id != 4);
    let e = handed_off_by_server(&r, "app").unwrap_err().0;
    assert!(e.contains("accepted 1 of them"), "{e}");
}

#[test]
fn a_connection_at_another_address_than_moving_named_is_refused() {
    let mut r = handed_off();
    // Reconnected to the public address instead of the IP MOVING named.
    r.connections[3].public = true;
    r.connections[3].local = "127.0.0.1:12000".into();
    let e = uses_moving_endpoint(&r, "app", Some(2)).unwrap_err().0;
    assert!(e.contains("MOVING named 127.0.2.1:12000"), "{e}");
    let e = newest_at_moving_endpoint(&r, "app").unwrap_err().0;
    assert!(e.contains("the new connection"), "{e}");
    // A MOVING null sends it to the public address, and only there.
    for c in &mut r.connections {
        for p in &mut c.pushes {
            p.endpoint = None;
        }
    }
    assert!(uses_moving_endpoint(&r, "app", Some(2)).is_err());
    r.connections[2].public = true;
    uses_moving_endpoint(&r, "app", Some(2)).unwrap();
    // A client whose pool opens connections as it needs them: however
    // many, each where MOVING sent it, and one at least.
    uses_moving_endpoint(&r, "app", None).unwrap();
    for c in &mut r.connections[2..] {
        c.closed_at = Some(t(9000));
        c.closed_by = Some(CloseCause::Client);
    }
    let e = uses_moving_endpoint(&r, "app", None).unwrap_err().0;
    assert!(
        e.contains("0 open connection(s) of \"app\", at least one expected"),
        "{e}"
    );
}

#[test]
fn a_moved_after_smigrated_was_applied_is_a_client_that_did_not_apply_it() {
    use crate::server_record::{Redirect, SlotMoveRecord, SlotsMoved};
    let mut r = handed_off();
    assert!(no_moved_after_smigrated(&r, "app", Duration::from_millis(300)).is_err());
    r.slot_moves.push(SlotsMoved {
        at: t(5000),
        moves: vec![SlotMoveRecord {
            from: 1,
            to: 2,
            slots: "0-100".into(),
        }],
    });
    let moved = |at: u64| Redirect {
        at: t(at),
        kind: "MOVED".into(),
        slot: 42,
    };
    // During the move and while SMIGRATED is being applied: fine.
    r.connections[2].redirects = vec![moved(4000), moved(5200)];
    no_moved_after_smigrated(&r, "app", Duration::from_millis(300)).unwrap();
    r.connections[3].redirects = vec![moved(6000)];
    let e = no_moved_after_smigrated(&r, "app", Duration::from_millis(300))
        .unwrap_err()
        .0;
    assert!(e.contains("MOVED 42") && e.contains("connection 4"), "{e}");
}

#[test]
fn moved_keys_must_be_on_the_target_alone() {
    let m = |on_source, on_target| KeysOfMove {
        from: 1,
        to: 2,
        slots: "0-100".into(),
        on_source,
        on_target,
    };
    keys_where_slots_went(&[m(0, 12)]).unwrap();
    let e = keys_where_slots_went(&[m(3, 12)]).unwrap_err().0;
    assert!(e.contains("still holds 3 key(s)"), "{e}");
    let e = keys_where_slots_went(&[m(0, 0)]).unwrap_err().0;
    assert!(e.contains("did not go with them"), "{e}");
    assert!(keys_where_slots_went(&[]).is_err());
}

#[test]
fn nothing_is_settled_while_a_left_connection_is_open_or_arrivals_are_missing_in_the_grace() {
    let mut r = handed_off();
    r.connections[1].closed_at = None;
    r.connections[1].closed_by = None;
    assert!(!handoffs_settled(&r, "app", t(1400)));
    let mut r = handed_off();
    r.connections.retain(|c| c.id != 4);
    assert!(!handoffs_settled(&r, "app", t(2000)));
    assert!(handoffs_settled(&r, "app", t(3100)));
    let e = handed_off_by_server(&record(Vec::new()), "app")
        .unwrap_err()
        .0;
    assert!(e.contains("CLIENT SETNAME"), "{e}");
}

#[test]
fn a_window_runs_from_the_start_the_server_wrote_to_the_completion_after_it_on_every_connection() {
    let push = |c: &mut ConnectionRecord, at: u64, kind: &str, seq: i64| {
        c.pushes.push(PushSent {
            at: t(at),
            kind: kind.into(),
            seq: Some(seq),
            endpoint: None,
        });
    };
    let mut a = conn(1, 1, 0, None);
    let mut b = conn(2, 1, 0, None);
    push(&mut a, 1_000, "FAILING_OVER", 1);
    push(&mut b, 1_010, "FAILING_OVER", 1);
    push(&mut a, 2_990, "FAILED_OVER", 2);
    push(&mut b, 3_000, "FAILED_OVER", 2);
    // A second window on one connection, still open: left out.
    push(&mut a, 5_000, "FAILING_OVER", 3);
    let mut other = conn(3, 1, 0, None);
    other.name = Some("other".into());
    push(&mut other, 0, "FAILING_OVER", 1);
    push(&mut other, 9_000, "FAILED_OVER", 2);
    let r = record(vec![a, b, other]);
    assert_eq!(
        windows(&r, "app", "FAILING_OVER", "FAILED_OVER"),
        vec![Window {
            from: t(1_010).0,
            to: t(2_990).0
        }]
    );
    assert_eq!(windows(&r, "app", "MIGRATING", "MIGRATED"), vec![]);
}

#[test]
fn a_window_on_a_connection_the_client_closed_before_the_completion_ends_at_the_close() {
    // redis-py drops a connection on a timeout: its window ended there, and
    // the requests it held are judged inside it.
    let mut dropped = conn(1, 1, 0, Some((3_400, CloseCause::Client)));
    dropped.pushes.push(PushSent {
        at: t(300),
        kind: "MIGRATING".into(),
        seq: Some(1),
        endpoint: None,
    });
    let r = record(vec![dropped]);
    assert_eq!(
        windows(&r, "app", "MIGRATING", "MIGRATED"),
        vec![Window {
            from: t(300).0,
            to: t(3_400).0
        }]
    );
}

#[test]
fn connections_move_from_the_move_to_their_last_arrival_or_close() {
    // Arrivals at 1.1 s and 1.15 s, closes at 1.2 s and 1.3 s.
    assert_eq!(moving_span(&handed_off(), "app"), Some((t(1000), t(1300))));
    assert_eq!(moving_span(&handed_off(), "other"), None);
}

#[test]
fn a_moving_sent_to_a_connection_that_arrived_on_the_new_node_is_caught() {
    no_moving_on_arrival(&handed_off(), "app").unwrap();
    let mut r = handed_off();
    let arrived = r.connections.iter_mut().find(|c| c.id == 3).unwrap();
    moving(arrived, 1100, Some("node-2.maint-e2e.localhost:12000"));
    let e = no_moving_on_arrival(&r, "app").unwrap_err().to_string();
    assert!(e.contains("to 1 of the 2 connection(s)"), "{e}");
    // Another move's MOVING is not this one's.
    r.connections[2].pushes[0].seq = Some(3);
    no_moving_on_arrival(&r, "app").unwrap();
    // No arrival: nothing to judge is not a pass.
    let none = record(vec![conn(1, 1, 0, Some((1200, CloseCause::Client)))]);
    assert!(no_moving_on_arrival(&none, "app").is_err());
}

#[test]
fn a_moves_grace_is_read_off_the_record() {
    let r = record(Vec::new());
    let ms = std::time::Duration::from_millis;
    assert_eq!(move_grace(&r, ms(2000), ms(200)), Ok(()));
    let e = move_grace(&r, ms(3000), ms(200)).unwrap_err().0;
    assert!(e.contains("had a grace of 2 s, not 3 s"), "{e}");
    let none = DatabaseRecord {
        endpoint_moves: Vec::new(),
        ..record(Vec::new())
    };
    assert!(move_grace(&none, ms(2000), ms(200)).is_err());
}

/// Two connections cut off at 1 s by a proxy restart, then those two that
/// replaced them (the client's reconnection), and what a client that does not
/// reconnect, or a fault that spared one, leaves instead.
#[test]
fn a_cut_is_judged_by_the_server_closes_and_the_connections_after_it() {
    let cut = |id| conn(id, 1, 0, Some((1000 + id, CloseCause::Restart)));
    let reconnected = record(vec![
        cut(1),
        cut(2),
        conn(3, 1, 1100, None),
        conn(4, 1, 1200, None),
    ]);
    cut_and_reconnected(&reconnected, "app").unwrap();

    let stayed_down = record(vec![cut(1), cut(2)]);
    let e = cut_and_reconnected(&stayed_down, "app").unwrap_err();
    assert!(e.0.contains("holds 0 opened since"), "{e}");

    let one_back = record(vec![cut(1), cut(2), conn(3, 1, 1100, None)]);
    assert!(cut_and_reconnected(&one_back, "app").is_err());

    let spared = record(vec![cut(1), conn(2, 1, 0, None), conn(3, 1, 1100, None)]);
    let e = cut_and_reconnected(&spared, "app").unwrap_err();
    assert!(e.0.contains("1 of the 2"), "{e}");

    let untouched = record(vec![conn(1, 1, 0, Some((900, CloseCause::Client)))]);
    let e = cut_and_reconnected(&untouched, "app").unwrap_err();
    assert!(e.0.contains("cut off no connection"), "{e}");
}

/// MOVING's endpoint, read off what the server wrote: the one it named, an
/// error where it wrote none, or two forms to one client.
#[test]
fn where_moving_sent_a_client_is_what_the_server_wrote() {
    let r = handed_off();
    assert_eq!(
        moving_named(&r, "app"),
        Ok((7, 2, Some("127.0.2.1:12000".into())))
    );
    let mut silent = handed_off();
    for c in &mut silent.connections {
        c.pushes.clear();
    }
    let e = moving_named(&silent, "app").unwrap_err().0;
    assert!(e.contains("sent no MOVING (seq 7)"), "{e}");
    let mut two = handed_off();
    two.connections[1].pushes[0].endpoint = Some("node2.example:12000".into());
    let e = moving_named(&two, "app").unwrap_err().0;
    assert!(e.contains("one form per client expected"), "{e}");
    // MOVING null: the configured address.
    let mut null = handed_off();
    for c in &mut null.connections {
        for p in &mut c.pushes {
            p.endpoint = None;
        }
    }
    assert_eq!(moving_named(&null, "app"), Ok((7, 2, None)));
}

/// What a client read, the server wrote: one connection had every push of
/// the list, with its sequence number.
#[test]
fn a_push_the_client_read_is_one_the_server_wrote() {
    let r = handed_off();
    wrote_to_one_connection(&r, "app", &[("MOVING", 7)]).unwrap();
    let e = wrote_to_one_connection(&r, "app", &[("MOVING", 8)])
        .unwrap_err()
        .0;
    assert!(
        e.contains("no connection of \"app\" written MOVING 8"),
        "{e}"
    );
    assert!(e.contains("MOVING 7 (connection 1)"), "{e}");
    let mut pair = handed_off();
    pair.connections[0].pushes.push(PushSent {
        at: t(1100),
        kind: "FAILED_OVER".into(),
        seq: Some(8),
        endpoint: None,
    });
    wrote_to_one_connection(&pair, "app", &[("MOVING", 7), ("FAILED_OVER", 8)]).unwrap();
    // Both written, but to two connections: not a pair.
    pair.connections[0].pushes.remove(0);
    let e = wrote_to_one_connection(&pair, "app", &[("MOVING", 7), ("FAILED_OVER", 8)])
        .unwrap_err()
        .0;
    assert!(e.contains("written MOVING 7 and FAILED_OVER 8"), "{e}");
    let e = wrote_to_one_connection(&r, "other", &[("MOVING", 7)])
        .unwrap_err()
        .0;
    assert!(e.ends_with("it wrote: nothing"), "{e}");
}

/// A client lets go of its connections to a node that left; one the node
/// closed as it stopped, or one still open, is a connection left behind.
#[test]
fn a_client_lets_go_of_a_node_that_left() {
    let gone = |id, by| conn(id, 1, 0, Some((2000 + id, by)));
    let r = record(vec![gone(1, CloseCause::Client), conn(2, 2, 0, None)]);
    assert!(none_open_on(&r, "app", 1));
    let_go_of_node(&r, "app", 1).unwrap();
    let r = record(vec![
        gone(1, CloseCause::Client),
        gone(2, CloseCause::NodeLeft),
    ]);
    let e = let_go_of_node(&r, "app", 1).unwrap_err().0;
    assert!(e.contains("left 1 connection(s) on node 1"), "{e}");
    let r = record(vec![conn(1, 1, 0, None)]);
    assert!(!none_open_on(&r, "app", 1));
    let e = let_go_of_node(&r, "app", 1).unwrap_err().0;
    assert!(e.contains("still open on node 1"), "{e}");
}

#[test]
fn a_pair_is_written_to_one_connection_with_consecutive_sequence_numbers() {
    let push = |c: &mut ConnectionRecord, kind: &str, seq: i64| {
        c.pushes.push(crate::server_record::PushSent {
            at: t(100),
            kind: kind.into(),
            seq: Some(seq),
            endpoint: None,
        });
    };
    let mut a = conn(1, 1, 0, None);
    let mut b = conn(2, 1, 0, None);
    push(&mut a, "MIGRATING", 7);
    push(&mut b, "MIGRATED", 8);
    let mut r = record(vec![a, b]);
    assert!(wrote_pair(&r, "app", "MIGRATING", Some("MIGRATED")).is_err());
    assert_eq!(wrote_pair(&r, "app", "MIGRATING", None).unwrap(), (7, None));
    assert!(wrote_pair(&r, "app", "FAILING_OVER", None).is_err());
    push(&mut r.connections[0], "MIGRATED", 9);
    assert!(wrote_pair(&r, "app", "MIGRATING", Some("MIGRATED")).is_err());
    push(&mut r.connections[0], "MIGRATED", 8);
    assert_eq!(
        wrote_pair(&r, "app", "MIGRATING", Some("MIGRATED")).unwrap(),
        (7, Some(8))
    );
    assert!(wrote_pair(&r, "other", "MIGRATING", None).is_err());
}

#[test]
fn the_server_says_which_form_each_open_connection_opted_in_for() {
    let mut never = conn(3, 1, 0, None);
    never.maint = None;
    let closed = {
        let mut c = conn(4, 1, 0, Some((500, CloseCause::Client)));
        c.maint = Some("none".into());
        c
    };
    let r = record(vec![
        conn(1, 1, 0, None),
        conn(2, 1, 0, None),
        closed.clone(),
    ]);
    assert_eq!(opted_in_as(&r, "app", "internal-ip"), Ok(2));
    let err = opted_in_as(&r, "app", "external-ip").unwrap_err().0;
    assert!(err.starts_with("the server holds 2 of the 2 open connection(s) of \"app\" otherwise than opted in for external-ip"), "{err}");
    let r = record(vec![conn(1, 1, 0, None), never]);
    let err = opted_in_as(&r, "app", "internal-ip").unwrap_err().0;
    assert!(err.contains("never opted in"), "{err}");
    let r = record(vec![closed]);
    assert!(
        opted_in_as(&r, "app", "none").is_err(),
        "no open connection"
    );
}

#[test]
fn moving_without_an_address_is_followed_by_a_connection_to_the_configured_address_at_half_the_grace(
) {
    // MOVING null at 1 s, the grace ends at 3 s: the reconnect is due at 2 s.
    let arrival = |at: u64| {
        let mut c = conn(2, 2, at, None);
        c.public = true;
        c
    };
    let old = || {
        let mut c = conn(1, 1, 0, Some((3000, CloseCause::Client)));
        moving(&mut c, 1000, None);
        c
    };
    let slack = Duration::from_millis(150);
    assert_eq!(
        reconnected_at_half_grace(&record(vec![old(), arrival(2050)]), "app", slack),
        Ok(1)
    );
    let err = reconnected_at_half_grace(&record(vec![old(), arrival(1100)]), "app", slack)
        .unwrap_err()
        .0;
    assert!(
        err.contains("no connection of \"app\" reached the configured address 1s after it"),
        "{err}"
    );
    assert!(err.contains("2 (100ms after)"), "{err}");
    let mut named = old();
    named.pushes[0].endpoint = Some("127.0.2.1:12000".into());
    assert!(
        reconnected_at_half_grace(&record(vec![named, arrival(2000)]), "app", slack)
            .unwrap_err()
            .0
            .contains("not a MOVING without an address")
    );
}

#[test]
fn the_server_says_which_tls_version_each_open_connection_negotiated() {
    let tls13 = |id| {
        let mut c = conn(id, 1, 0, None);
        c.tls = Some("1.3".into());
        c
    };
    let r = record(vec![tls13(1), tls13(2)]);
    assert_eq!(encrypted_as(&r, "app", Some("1.3")), Ok(2));
    let err = encrypted_as(&r, "app", None).unwrap_err().0;
    assert!(
        err.starts_with(
            "the server holds 2 of the 2 open connection(s) of \"app\" with other than no TLS"
        ),
        "{err}"
    );
    let r = record(vec![tls13(1), conn(2, 1, 0, None)]);
    let err = encrypted_as(&r, "app", Some("1.3")).unwrap_err().0;
    assert!(err.contains("uses no TLS"), "{err}");
    assert_eq!(
        encrypted_as(&record(vec![conn(1, 1, 0, None)]), "app", None),
        Ok(1)
    );
    assert!(
        encrypted_as(&record(vec![]), "app", None).is_err(),
        "no open connection"
    );
}
