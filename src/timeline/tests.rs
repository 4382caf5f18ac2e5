//! Unit tests of [`super`].

use super::*;
use crate::client::MaintState;
use crate::workload::Report;

/// A hand-made timeline: events `ms` milliseconds after a start.
struct Timeline {
    start: Instant,
    events: Vec<ClientEvent>,
}

impl Timeline {
    fn new() -> Self {
        Timeline {
            start: Instant::now(),
            events: Vec::new(),
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }
    fn push(mut self, ms: u64, conn: u64, kind: EventKind) -> Self {
        let at = self.at(ms);
        self.events.push(ClientEvent {
            at,
            client: "app".into(),
            conn,
            kind,
        });
        self
    }
    fn got(self, ms: u64, conn: u64, n: Notification) -> Self {
        self.push(
            ms,
            conn,
            EventKind::Notification {
                notification: n,
                at_setup: false,
            },
        )
    }
    fn replay(self, ms: u64, conn: u64, n: Notification) -> Self {
        self.push(
            ms,
            conn,
            EventKind::Notification {
                notification: n,
                at_setup: true,
            },
        )
    }
    fn relax(self, ms: u64, conn: u64, secs: u64) -> Self {
        self.push(
            ms,
            conn,
            EventKind::Relaxed {
                timeout: Some(Duration::from_secs(secs)),
            },
        )
    }
    fn unrelax(self, ms: u64, conn: u64, secs: u64) -> Self {
        self.push(
            ms,
            conn,
            EventKind::Unrelaxed {
                timeout: Some(Duration::from_secs(secs)),
            },
        )
    }
    fn handoff(self, ms: u64, conn: u64, seq: i64) -> Self {
        self.push(
            ms,
            conn,
            EventKind::HandoffSucceeded {
                seq,
                endpoint: "127.0.2.1:12000".into(),
            },
        )
    }
}

fn failing_over(seq: i64) -> Notification {
    Notification::FailingOver {
        seq,
        time_s: Some(2),
        shards: vec!["1".into()],
    }
}

fn failed_over(seq: i64) -> Notification {
    Notification::FailedOver {
        seq,
        shards: vec!["1".into()],
    }
}

fn moving(seq: i64) -> Notification {
    Notification::Moving {
        seq,
        time_s: 2,
        endpoint: None,
    }
}

#[test]
fn a_pair_needs_consecutive_seqs_on_one_connection_in_order() {
    let t = Timeline::new()
        .got(0, 1, failing_over(5))
        .got(10, 2, failed_over(6))
        .got(20, 1, failed_over(7));
    assert!(pair(&t.events, Kind::FailingOver, Kind::FailedOver).is_none());
    let t = t.got(30, 1, failed_over(6));
    let (a, b) = pair(&t.events, Kind::FailingOver, Kind::FailedOver).unwrap();
    assert_eq!((a.conn, b.notification.seq()), (1, 6));
}

#[test]
fn latest_live_skips_replays_and_first_takes_either() {
    let t = Timeline::new()
        .got(0, 1, moving(1))
        .replay(10, 2, moving(1))
        .got(20, 1, moving(3));
    assert_eq!(
        latest_live(&t.events, Kind::Moving)
            .unwrap()
            .notification
            .seq(),
        3
    );
    assert_eq!(first(&t.events, Kind::Moving).unwrap().conn, 1);
    assert_eq!(
        replayed_at_setup(&t.events, 2, Kind::Moving).unwrap().conn,
        2
    );
    assert!(replayed_at_setup(&t.events, 1, Kind::Moving).is_none());
}

#[test]
fn relaxed_over_a_window_reads_the_timeout_and_refuses_an_unrelax_inside() {
    let t = Timeline::new()
        .relax(100, 1, 3)
        .unrelax(400, 1, 1)
        .relax(500, 1, 3);
    let (from, to) = (t.at(100), t.at(300));
    assert_eq!(
        relaxed_over(&t.events, 1, from, to),
        Ok(Some(Duration::from_secs(3)))
    );
    // Relaxed before the window opened counts, un-relaxed inside does not.
    assert_eq!(
        relaxed_over(&t.events, 1, t.at(200), t.at(300)),
        Ok(Some(Duration::from_secs(3)))
    );
    let e = relaxed_over(&t.events, 1, t.at(200), t.at(450)).unwrap_err();
    assert!(e.0.contains("un-relaxed inside"), "{e}");
    let e = relaxed_over(&t.events, 2, from, to).unwrap_err();
    assert!(e.0.contains("not relaxed"), "{e}");
    assert_eq!(
        unrelaxed_after(&t.events, 1, t.at(150)),
        Some((t.at(400), Some(Duration::from_secs(1))))
    );
    assert_eq!(any_unrelaxed_after(&t.events, t.at(450)), None);
    assert!(ever_relaxed(&t.events, 1) && !ever_relaxed(&t.events, 2));
}

#[test]
fn a_timeout_throughout_needs_a_window_and_no_other_value() {
    let ten = Some(Duration::from_secs(10));
    let t = Timeline::new().relax(0, 1, 10).unrelax(50, 1, 10);
    assert_eq!(timeout_throughout(&t.events, ten), Ok(()));
    let t = t.relax(60, 2, 3);
    assert!(timeout_throughout(&t.events, ten)
        .unwrap_err()
        .0
        .contains("connection 2 went to 3 s"));
    assert!(timeout_throughout(&[], ten)
        .unwrap_err()
        .0
        .contains("never entered a window"));
}

#[test]
fn one_handoff_each_counts_per_connection() {
    let t = Timeline::new().handoff(0, 1, 4).handoff(5, 2, 4);
    assert!(handoff_ended_on_all(&t.events, &[1, 2]));
    assert!(!handoff_ended_on_all(&t.events, &[1, 2, 3]));
    assert_eq!(one_handoff_each(&t.events, &[1, 2]), Ok(()));
    assert_eq!(first_handoff_at(&t.events), Some(t.at(0)));
    assert_eq!(handoff_of(&t.events, 2).unwrap().0, t.at(5));
    let twice = Timeline::new().handoff(0, 1, 4).handoff(9, 1, 6);
    assert!(one_handoff_each(&twice.events, &[1])
        .unwrap_err()
        .0
        .contains("2 times"));
    let failed = Timeline::new().handoff(0, 1, 4).push(
        3,
        1,
        EventKind::HandoffFailed {
            seq: 4,
            endpoint: "x:1".into(),
            reason: "no".into(),
        },
    );
    assert!(one_handoff_each(&failed.events, &[1])
        .unwrap_err()
        .0
        .contains("failed a handoff"));
    assert_eq!(gave_up(&failed.events), Some(1));
}

#[test]
fn repeats_must_exist_and_all_be_ignored() {
    let t = Timeline::new().got(0, 1, moving(2)).got(1, 1, moving(2));
    assert!(repeats_ignored(&t.events, 1).is_err());
    let t = t.push(2, 1, EventKind::MovingIgnored { seq: 2 });
    assert_eq!(repeats_ignored(&t.events, 1), Ok(()));
    let once = Timeline::new().got(0, 1, moving(2));
    assert!(repeats_ignored(&once.events, 1).is_err());
}

#[test]
fn attempts_and_dials_are_read_from_their_events() {
    let attempt = |reason: &str| EventKind::HandoffAttemptFailed {
        seq: 1,
        endpoint: "x:1".into(),
        reason: reason.into(),
    };
    let t = Timeline::new()
        .push(
            0,
            7,
            EventKind::Connected {
                endpoint: "127.0.0.1:1".into(),
                maint: MaintState::Off,
            },
        )
        .push(1, 7, attempt("invalid peer certificate"))
        .push(2, 7, attempt("Certificate unknown"));
    assert_eq!(first_dial(&t.events, 7).as_deref(), Some("127.0.0.1:1"));
    assert_eq!(failed_attempts(&t.events, 7), 2);
    assert_eq!(attempts_name(&t.events, "certificate"), Ok(()));
    let t = t.push(3, 7, attempt("refused"));
    assert!(attempts_name(&t.events, "certificate").is_err());
    assert!(attempts_name(&[], "certificate").is_err());
}

#[test]
fn exact_counts_ignore_replays_and_zero_rows() {
    let t = Timeline::new()
        .replay(0, 1, failing_over(1))
        .got(1, 1, failing_over(1))
        .got(2, 1, failed_over(2));
    let want: BTreeMap<_, _> = [("FAILING_OVER", 1), ("FAILED_OVER", 1), ("MOVING", 0)].into();
    assert_eq!(exact_counts(&t.events, 1, &want), Ok(()));
    let t = t.got(3, 1, failed_over(2));
    assert!(exact_counts(&t.events, 1, &want).is_err());
}

#[test]
fn close_to_half_the_grace_excludes_its_end() {
    let (half, slack) = (Duration::from_secs(1), Duration::from_millis(200));
    assert!(close_to(Duration::from_millis(1050), half, slack));
    assert!(close_to(Duration::from_millis(1400), half, slack));
    // A reconnect at the very end of a 2 s grace.
    assert!(!close_to(Duration::from_secs(2), half, slack));
    assert!(!close_to(Duration::from_millis(700), half, slack));
}

#[test]
fn a_connection_dropped_by_the_server_shows_as_disconnected() {
    let t = Timeline::new().got(0, 1, moving(4)).push(
        2000,
        1,
        EventKind::Disconnected {
            endpoint: "127.0.1.1:1".into(),
        },
    );
    assert_eq!(dropped_by_server(&t.events, &[1]), Ok(()));
    assert!(dropped_by_server(&t.events, &[1, 2]).is_err());
}

#[test]
fn relaxed_through_a_handoff_needs_a_relax_between_moving_and_it() {
    let relaxed = Timeline::new()
        .got(0, 1, moving(4))
        .relax(0, 1, 3)
        .handoff(40, 1, 4);
    assert_eq!(relaxed_through_handoff(&relaxed.events, &[1]), Ok(()));
    let not = Timeline::new().got(0, 1, moving(4)).handoff(40, 1, 4);
    assert!(relaxed_through_handoff(&not.events, &[1]).is_err());
    assert!(relaxed_through_handoff(&not.events, &[2]).is_err());
}

#[test]
fn attempts_back_off_more_each_time_and_the_give_up_is_prompt() {
    let attempt = || EventKind::HandoffAttemptFailed {
        seq: 1,
        endpoint: "x:1".into(),
        reason: "timed out".into(),
    };
    let gave_up = || EventKind::HandoffFailed {
        seq: 1,
        endpoint: "x:1".into(),
        reason: "timed out".into(),
    };
    let prompt = Duration::from_millis(50);
    let good = Timeline::new()
        .push(300, 1, attempt())
        .push(700, 1, attempt())
        .push(1200, 1, attempt())
        .push(1201, 1, gave_up());
    assert_eq!(attempts_back_off(&good.events, 1, prompt), Ok(()));
    let flat = Timeline::new()
        .push(300, 1, attempt())
        .push(600, 1, attempt())
        .push(900, 1, attempt())
        .push(901, 1, gave_up());
    assert!(attempts_back_off(&flat.events, 1, prompt).is_err());
    let late = Timeline::new()
        .push(300, 1, attempt())
        .push(700, 1, attempt())
        .push(1200, 1, attempt())
        .push(1600, 1, gave_up());
    assert!(attempts_back_off(&late.events, 1, prompt).is_err());
}

#[test]
fn a_prompt_handoff_is_one_within_the_bound_after_moving() {
    let t = Timeline::new()
        .got(0, 1, moving(4))
        .handoff(30, 1, 4)
        .got(0, 2, moving(4))
        .handoff(900, 2, 4);
    let bound = Duration::from_millis(500);
    assert_eq!(handed_off_within(&t.events, &[1], bound), Ok(()));
    let e = handed_off_within(&t.events, &[1, 2], bound).unwrap_err();
    assert!(e.0.contains("connection 2 handed off 900ms"), "{e}");
    assert!(handed_off_within(&t.events, &[3], bound).is_err());
}

#[test]
fn bands_are_inclusive_and_about_allows_slack() {
    let (lo, hi) = (Duration::from_millis(1500), Duration::from_secs(2));
    assert!(in_band(Duration::from_millis(1500), lo, hi));
    assert!(in_band(Duration::from_secs(2), lo, hi));
    assert!(!in_band(Duration::from_millis(2100), lo, hi));
    let half = Duration::from_secs(1);
    let slack = Duration::from_millis(500);
    assert!(about(Duration::from_millis(800), half, slack));
    assert!(about(Duration::from_millis(2000), half, slack));
    assert!(!about(Duration::from_millis(700), half, slack));
    assert!(!about(Duration::from_millis(2100), half, slack));
}

#[test]
fn clean_traffic_needs_work_done_and_no_error() {
    let mut r = Report::default();
    assert!(traffic_clean(&r).unwrap_err().0.contains("no operation"));
    r.ok = 10;
    assert_eq!(traffic_clean(&r), Ok(()));
    r.errors.push(crate::workload::OpError {
        op: "SET".into(),
        error: crate::client::ClientError::Timeout {
            after: Duration::from_secs(1),
            in_window: false,
        },
        sent: Instant::now(),
        at: Instant::now(),
    });
    assert!(traffic_clean(&r).unwrap_err().0.contains("1 errors"));
}

#[test]
fn the_handoff_window_runs_from_the_first_moving_to_the_last_handoff() {
    let t = Timeline::new();
    assert_eq!(handoff_window(&t.events), None);
    let t = t
        .got(100, 1, moving(3))
        .got(120, 2, moving(3))
        .handoff(150, 2, 3)
        .handoff(400, 1, 3);
    assert_eq!(handoff_window(&t.events), Some((t.at(100), t.at(400))));
}

#[test]
fn latency_in_the_window_is_compared_with_latency_outside_it() {
    let t = Timeline::new();
    let mut r = Report::default();
    // Outside: 100 operations of 1..=100 ms; inside: 10 of 150 ms.
    for i in 1..=100u64 {
        r.latencies.push((t.at(i), Duration::from_millis(i)));
    }
    for i in 0..10u64 {
        r.latencies
            .push((t.at(1_000 + i), Duration::from_millis(150)));
    }
    let (from, to) = (t.at(1_000), t.at(1_100));
    assert_eq!(
        latency_quantile(&r, from, to, false, 0.99),
        Some(Duration::from_millis(99))
    );
    assert_eq!(
        latency_quantile(&r, from, to, true, 0.99),
        Some(Duration::from_millis(150))
    );
    assert_eq!(
        p99_within_factor(&r, from, to, 2.0),
        Ok((Duration::from_millis(150), Duration::from_millis(99)))
    );
    let err = p99_within_factor(&r, from, to, 1.5).unwrap_err();
    assert!(err.0.contains("more than 1.5 x"), "{err}");
    assert_eq!(
        p99_under(&r, from, to, Duration::from_millis(200)),
        Ok(Duration::from_millis(150))
    );
    let over = p99_under(&r, from, to, Duration::from_millis(100)).unwrap_err();
    assert!(over.0.contains("not under 100ms"), "{over}");
    let empty = p99_within_factor(&r, t.at(5_000), t.at(6_000), 2.0).unwrap_err();
    assert!(empty.0.contains("during the window"), "{empty}");
}

#[test]
fn sockets_stay_within_the_pool_and_one_new_connection_each() {
    assert_eq!(sockets_within(8, 4), Ok(()));
    assert_eq!(sockets_within(3, 4), Ok(()));
    assert!(sockets_within(9, 4).unwrap_err().0.contains("9 sockets"));
}

#[test]
fn a_duration_is_shown_as_the_steps_write_it_and_reads_back() {
    use crate::steps::params::parse_duration;
    for (d, text) in [
        (Some(Duration::from_millis(500)), "500 ms"),
        (Some(Duration::from_secs(3)), "3 s"),
        (Some(Duration::from_millis(2500)), "2.5 s"),
        (Some(Duration::from_secs(120)), "2 min"),
        (Some(Duration::from_secs(90)), "90 s"),
        (None, "unbounded"),
    ] {
        assert_eq!(show(d), text);
        assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
    }
}

#[test]
fn each_connection_must_have_dealt_with_the_push_as_claimed() {
    let t = Timeline::new()
        .push(
            1,
            1,
            EventKind::MalformedPush {
                name: "MOVING".into(),
                error: "seq is not a number".into(),
            },
        )
        .push(
            2,
            2,
            EventKind::PushIgnored {
                name: "message".into(),
            },
        )
        .push(
            3,
            2,
            EventKind::MalformedPush {
                name: "MOVING".into(),
                error: "seq is not a number".into(),
            },
        );
    assert_eq!(
        push_handled_on_each(&t.events, &[1, 2], "MOVING", PushFate::DroppedMalformed),
        Ok(())
    );
    assert_eq!(
        push_handled_on_each(&t.events, &[1, 2], "message", PushFate::LeftAlone),
        Err(Unmet(
            "connection 1 did not leave a message push alone".into()
        ))
    );
    assert_eq!(
        push_handled_on_each(&t.events, &[2], "MOVING", PushFate::LeftAlone),
        Err(Unmet(
            "connection 2 did not leave a MOVING push alone".into()
        )),
        "dropping a malformed push is not leaving it alone"
    );
}

#[test]
fn a_fault_may_cost_a_bounded_number_of_errors_of_one_class_and_nothing_after() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let timeout = |ms| crate::workload::OpError {
        op: "GET k".into(),
        error: crate::client::ClientError::Timeout {
            after: Duration::from_secs(1),
            in_window: false,
        },
        sent: at(ms),
        at: at(ms),
    };
    let mut r = Report {
        ok: 3,
        successes: vec![at(10), at(20), at(500)],
        ..Report::default()
    };
    assert_eq!(
        errors_bounded(&r, &["timeout"], 2),
        Ok(()),
        "none is within bounds"
    );
    r.errors = vec![timeout(100), timeout(200)];
    assert_eq!(errors_bounded(&r, &["timeout"], 2), Ok(()));
    assert!(errors_bounded(&r, &["timeout"], 1)
        .unwrap_err()
        .0
        .contains("2 timeout errors; at most 1"));
    assert!(errors_bounded(&r, &["connection"], 5)
        .unwrap_err()
        .0
        .contains("expected connection errors only"));
    assert_eq!(errors_bounded(&r, &["connection", "timeout"], 5), Ok(()));
    r.errors.push(timeout(600));
    assert!(errors_bounded(&r, &["timeout"], 5)
        .unwrap_err()
        .0
        .contains("did not recover"));
}

#[test]
fn a_dropped_connection_must_come_back() {
    let connected = || EventKind::Connected {
        endpoint: "127.0.0.1:1".into(),
        maint: crate::client::MaintState::Off,
    };
    let closed = || EventKind::Disconnected {
        endpoint: "127.0.0.1:1".into(),
    };
    let t = Timeline::new()
        .push(0, 1, connected())
        .push(0, 2, connected())
        .push(10, 1, closed())
        .push(12, 1, connected())
        .push(10, 2, closed());
    assert_eq!(reconnected_each(&t.events, &[1]), Ok(()));
    assert_eq!(
        reconnected_each(&t.events, &[1, 2]),
        Err(Unmet(
            "connection 2 was closed and never connected again".into()
        ))
    );
    let t = Timeline::new().push(0, 3, connected());
    assert_eq!(
        reconnected_each(&t.events, &[3]),
        Err(Unmet("connection 3 was never closed by the server".into()))
    );
}

#[test]
fn every_push_read_counts_for_received_no_notification_decoded_or_not() {
    let t = Timeline::new()
        .push(
            1,
            1,
            EventKind::MalformedPush {
                name: "MOVING".into(),
                error: "seq is not a number".into(),
            },
        )
        .push(
            2,
            1,
            EventKind::PushIgnored {
                name: "message".into(),
            },
        )
        .push(
            3,
            1,
            EventKind::PushIgnored {
                name: "SOMETHING_NEW".into(),
            },
        );
    let moving = pushes_read(&t.events, Some(Kind::Moving));
    assert_eq!(moving.len(), 1);
    assert!(moving[0].contains("could not decode (seq is not a number)"));
    assert!(pushes_read(&t.events, Some(Kind::Migrating)).is_empty());
    let any = pushes_read(&t.events, None);
    assert_eq!(any.len(), 2, "the pub/sub message is not one: {any:?}");
    assert!(any[1].contains("SOMETHING_NEW push it left alone"));
}
