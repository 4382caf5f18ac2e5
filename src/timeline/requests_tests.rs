use std::time::{Duration, SystemTime};

use super::*;

fn t(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn req(sent: u64, took: u64, outcome: Outcome) -> Request {
    Request {
        sent: t(sent),
        took: ms(took),
        outcome,
    }
}

/// The window of a switch-over: opened at 1 s, completed at 3 s.
fn window() -> Vec<Window> {
    vec![Window {
        from: t(1_000),
        to: t(3_000),
    }]
}

const RELAXED: Relaxed = Relaxed {
    beyond: Duration::from_secs(1),
    to: None,
};

#[test]
fn a_request_held_past_the_configured_timeout_inside_the_window_and_answered_shows_relaxation() {
    let reqs = [
        req(500, 5, Outcome::Answered),
        req(1_300, 1_500, Outcome::Answered),
        req(2_900, 5, Outcome::Answered),
    ];
    assert_eq!(
        relaxed_by_requests(&window(), &reqs, RELAXED),
        Ok(vec![ms(1_500)])
    );
}

#[test]
fn a_held_request_that_timed_out_at_the_configured_timeout_was_not_relaxed() {
    let reqs = [
        req(1_300, 1_500, Outcome::Answered),
        req(1_310, 1_000, Outcome::TimedOut),
    ];
    let e = relaxed_by_requests(&window(), &reqs, RELAXED).unwrap_err();
    assert!(e.0.contains("timed out after 1 s"), "{e}");
    assert!(e.0.contains("it was not relaxed"), "{e}");
}

#[test]
fn without_a_held_request_nothing_shows_relaxation() {
    // Fast replies only, and a slow one sent before the window opened.
    let reqs = [
        req(200, 1_500, Outcome::Answered),
        req(1_500, 5, Outcome::Answered),
    ];
    let e = relaxed_by_requests(&window(), &reqs, RELAXED).unwrap_err();
    assert!(e.0.contains("no request held longer than 1 s"), "{e}");
    assert!(e.0.contains("800 ms before the window opened"), "{e}");
    // Its deadline must fall inside the window: one sent 500 ms before the
    // completion proves nothing.
    let reqs = [req(2_500, 1_200, Outcome::Answered)];
    assert!(relaxed_by_requests(&window(), &reqs, RELAXED).is_err());
    // No window at all: the server opened none.
    let e = relaxed_by_requests(&[], &reqs, RELAXED).unwrap_err();
    assert!(e.0.contains("no maintenance window"), "{e}");
}

#[test]
fn a_named_timeout_is_neither_cut_short_nor_overrun() {
    let to_2s = Relaxed {
        beyond: Duration::from_secs(1),
        to: Some(Some(Duration::from_secs(2))),
    };
    let held = req(1_800, 1_500, Outcome::Answered);
    // Timed out at the named timeout: as claimed.
    let reqs = [req(1_000, 2_050, Outcome::TimedOut), held.clone()];
    assert_eq!(
        relaxed_by_requests(&window(), &reqs, to_2s),
        Ok(vec![ms(1_500)])
    );
    // Timed out well before it.
    let reqs = [req(1_000, 1_010, Outcome::TimedOut), held.clone()];
    let e = relaxed_by_requests(&window(), &reqs, to_2s).unwrap_err();
    assert!(
        e.0.contains("well before the window's timeout of 2 s"),
        "{e}"
    );
    // Answered well after it: the timeout was longer than claimed.
    let reqs = [req(1_000, 3_000, Outcome::Answered), held.clone()];
    let e = relaxed_by_requests(&window(), &reqs, to_2s).unwrap_err();
    assert!(e.0.contains("was answered after 3 s, well beyond"), "{e}");
    // Unbounded: no timeout at all.
    let unbounded = Relaxed {
        beyond: Duration::from_secs(3),
        to: Some(None),
    };
    let long = [Window {
        from: t(1_000),
        to: t(12_000),
    }];
    let reqs = [req(1_000, 4_000, Outcome::Answered)];
    assert_eq!(
        relaxed_by_requests(&long, &reqs, unbounded),
        Ok(vec![ms(4_000)])
    );
    let reqs = [
        req(1_000, 4_000, Outcome::Answered),
        req(1_100, 9_000, Outcome::TimedOut),
    ];
    let e = relaxed_by_requests(&long, &reqs, unbounded).unwrap_err();
    assert!(e.0.contains("though its timeout is unbounded"), "{e}");
}

#[test]
fn windows_of_several_connections_are_narrowed_to_what_they_share() {
    let w = |a, b| Window {
        from: t(a),
        to: t(b),
    };
    assert_eq!(
        shared_windows(vec![w(5_000, 6_000), w(1_010, 3_000), w(1_000, 2_990)]),
        vec![w(1_010, 2_990), w(5_000, 6_000)]
    );
    assert_eq!(shared_windows(vec![]), vec![]);
}

#[test]
fn requests_of_a_report_are_placed_on_the_wall_clock() {
    use crate::client::ClientError;
    use crate::workload::{OpError, Report};
    use tokio::time::Instant;
    let r = Report::default();
    let now = Instant::now();
    let report = Report {
        latencies: vec![(now, ms(1_500))],
        errors: vec![
            OpError {
                sent: now,
                at: now + ms(1_000),
                op: "GET k".into(),
                error: ClientError::Timeout {
                    after: ms(1_000),
                    in_window: false,
                },
            },
            OpError {
                sent: now,
                at: now,
                op: "BLPOP k (held 50ms)".into(),
                error: ClientError::Timeout {
                    after: ms(1_050),
                    in_window: false,
                },
            },
        ],
        ..r
    };
    let reqs = requests(&report);
    assert_eq!(reqs.len(), 2, "held BLPOPs are left out: {reqs:?}");
    let wall = report.clock.wall(now);
    assert_eq!(reqs[0].sent, wall - ms(1_500));
    assert_eq!(reqs[0].outcome, Outcome::Answered);
    assert_eq!((reqs[1].sent, reqs[1].took), (wall, ms(1_000)));
    assert_eq!(reqs[1].outcome, Outcome::TimedOut);
}
