use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::client::MaintState;
use crate::notification::Notification;
use crate::report::{Outcome, Step};

/// A capture whose clock reads `zero` at `base`, and a helper for "`ms`
/// after the start".
struct Fixture {
    base: Instant,
    zero: SystemTime,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            base: Instant::now(),
            zero: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }
    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }
    fn ev(&self, ms: u64, client: &str, conn: u64, kind: EventKind) -> ClientEvent {
        ClientEvent {
            at: self.at(ms),
            client: client.into(),
            conn,
            kind,
        }
    }
    fn capture(&self, events: Vec<ClientEvent>) -> Capture {
        Capture {
            clock: Clock {
                instant: self.base,
                wall: self.zero,
            },
            events,
            actions: vec![ActionSpan {
                kind: "failover".into(),
                id: "a1".into(),
                posted: self.at(100),
                ended: Some(self.at(900)),
                status: Some("success".into()),
            }],
            traffic: vec![TrafficCapture {
                client: "app".into(),
                successes: (0..100).map(|i| self.at(i * 10)).collect(),
                errors: vec![(
                    self.at(450),
                    "timeout".into(),
                    "GET k".into(),
                    "no reply within 1s".into(),
                )],
            }],
            clients: vec![("app".into(), vec![])],
            writes_checked: 42,
            not_checked: Vec::new(),
        }
    }
}

fn failing_over(seq: i64) -> EventKind {
    EventKind::Notification {
        notification: Notification::FailingOver {
            seq,
            time_s: Some(2),
            shards: vec!["1".into()],
        },
        at_setup: false,
    }
}

fn failed_over(seq: i64) -> EventKind {
    EventKind::Notification {
        notification: Notification::FailedOver {
            seq,
            shards: vec!["1".into()],
        },
        at_setup: false,
    }
}

fn known_events(f: &Fixture) -> Vec<ClientEvent> {
    let connected = |ep: &str| EventKind::Connected {
        endpoint: ep.into(),
        maint: MaintState::On(None),
    };
    vec![
        f.ev(10, "app", 1, connected("127.0.0.1:1000")),
        f.ev(12, "app", 2, connected("127.0.0.1:1000")),
        f.ev(200, "app", 1, failing_over(5)),
        f.ev(
            200,
            "app",
            1,
            EventKind::Relaxed {
                timeout: Some(Duration::from_secs(2)),
            },
        ),
        f.ev(210, "app", 2, failing_over(5)),
        f.ev(
            210,
            "app",
            2,
            EventKind::Relaxed {
                timeout: Some(Duration::from_secs(2)),
            },
        ),
        f.ev(700, "app", 1, failed_over(6)),
        f.ev(
            800,
            "app",
            1,
            EventKind::Unrelaxed {
                timeout: Some(Duration::from_secs(1)),
            },
        ),
    ]
}

fn steps(failed_at: Option<f64>) -> Vec<Step> {
    let step = |text: &str, at: f64, outcome| Step {
        keyword: "When".into(),
        text: text.into(),
        outcome,
        at_ms: Some(at),
        duration_ms: Some(100.0),
        error: (outcome == Outcome::Failed).then(|| "it broke".into()),
        ..Step::default()
    };
    let mut s = vec![step("a failover", 100.0, Outcome::Passed)];
    if let Some(at) = failed_at {
        s.push(step("the check", at - 100.0, Outcome::Failed));
    }
    s
}

#[test]
fn every_event_lands_in_its_lane_in_order() {
    let f = Fixture::new();
    let c = f.capture(known_events(&f));
    let t = timeline(&c, f.zero, 1000.0, &steps(None));
    let labels: Vec<&str> = t.lanes.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "steps",
            "fault injector",
            "app traffic",
            "app #1 (127.0.0.1:1000)",
            "app #2 (127.0.0.1:1000)"
        ]
    );
    let one = &t.lanes[3];
    let classes: Vec<(&str, f64)> = one
        .marks
        .iter()
        .map(|m| (m.class.as_str(), m.at_ms))
        .collect();
    assert_eq!(
        classes,
        [
            ("connected", 10.0),
            ("notification", 200.0),
            ("notification", 700.0)
        ]
    );
    assert_eq!(one.marks[1].label, "FAILING_OVER 5 2s");
    assert_eq!(one.bands.len(), 1);
    assert_eq!((one.bands[0].from_ms, one.bands[0].to_ms), (200.0, 800.0));
    assert_eq!(
        one.bands[0].label, "relaxed: timeout 2 s, back to 1 s",
        "the band names the timeout in force and the one restored"
    );
    // Connection 2 was never un-relaxed: its band runs to the end.
    assert_eq!(t.lanes[4].bands[0].to_ms, 1000.0);
    assert!(t.lanes[4].bands[0].label.contains("until the end"));
    // The fault injector's action, posted and ended.
    let inj = &t.lanes[1];
    assert_eq!((inj.bands[0].from_ms, inj.bands[0].to_ms), (100.0, 900.0));
    assert_eq!(inj.bands[0].label, "failover a1: success");
    assert_eq!(inj.marks.len(), 2);
    // Traffic: the error with its class, and throughput of 100 op/s.
    let tr = &t.lanes[2];
    assert_eq!(tr.marks[0].at_ms, 450.0);
    assert_eq!(
        tr.marks[0].label,
        "GET k: timeout error: no reply within 1s"
    );
    assert!(tr.throughput.iter().all(|&(_, v)| (v - 100.0).abs() < 1e-9));
    assert_eq!(t.failure, None);
    let n = counts(&c);
    assert_eq!(
        (n.notifications, n.operations, n.errors, n.writes_checked),
        (3, 100, 1, 42)
    );
}

#[test]
fn a_failed_step_says_what_each_connection_was_doing() {
    let f = Fixture::new();
    let c = f.capture(known_events(&f));
    let t = timeline(&c, f.zero, 1000.0, &steps(Some(750.0)));
    let fail = t.failure.expect("a failed step marks the timeline");
    assert_eq!(fail.at_ms, 750.0, "the failed step's end");
    assert_eq!(fail.step, "When the check");
    assert_eq!(fail.error, "it broke");
    let lane = |name: &str| {
        fail.lanes
            .iter()
            .find(|l| l.lane == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", fail.lanes))
    };
    let one = lane("app #1 (127.0.0.1:1000)");
    assert_eq!(one.last.as_ref().unwrap().label, "FAILED_OVER 6");
    assert_eq!(
        one.within.as_deref(),
        Some("relaxed: timeout 2 s, back to 1 s")
    );
    let two = lane("app #2 (127.0.0.1:1000)");
    assert_eq!(two.last.as_ref().unwrap().label, "FAILING_OVER 5 2s");
    assert_eq!(
        lane("fault injector").within.as_deref(),
        Some("failover a1: success")
    );
    assert_eq!(
        lane("app traffic").last.as_ref().unwrap().class,
        "error",
        "the last error before the failure"
    );
}

#[test]
fn handoffs_are_bands_from_start_to_success_or_failure() {
    let f = Fixture::new();
    let events = vec![
        f.ev(
            100,
            "app",
            7,
            EventKind::HandoffStarted {
                seq: 3,
                endpoint: "127.0.0.1:2000".into(),
            },
        ),
        f.ev(
            150,
            "app",
            7,
            EventKind::HandoffAttemptFailed {
                seq: 3,
                endpoint: "127.0.0.1:2000".into(),
                reason: "refused".into(),
            },
        ),
        f.ev(
            300,
            "app",
            7,
            EventKind::HandoffSucceeded {
                seq: 3,
                endpoint: "127.0.0.1:2000".into(),
            },
        ),
    ];
    let t = timeline(&f.capture(events), f.zero, 1000.0, &[]);
    let lane = t.lanes.iter().find(|l| l.conns == [7]).unwrap();
    assert_eq!(lane.bands.len(), 1);
    assert_eq!((lane.bands[0].from_ms, lane.bands[0].to_ms), (100.0, 300.0));
    let classes: Vec<&str> = lane.marks.iter().map(|m| m.class.as_str()).collect();
    assert_eq!(
        classes,
        [
            "handoff-started",
            "handoff-attempt-failed",
            "handoff-succeeded"
        ]
    );
    assert!(lane.marks[1].label.ends_with("failed: refused"));
}

#[test]
fn connections_past_the_limit_share_one_lane() {
    let f = Fixture::new();
    let n = MAX_CONNECTION_LANES as u64 + 6;
    let events = (1..=n)
        .map(|conn| f.ev(conn, "app", conn, failing_over(1)))
        .collect();
    let t = timeline(&f.capture(events), f.zero, 1000.0, &[]);
    let app: Vec<&Lane> = t
        .lanes
        .iter()
        .filter(|l| l.kind == LaneKind::Connection || l.kind == LaneKind::Connections)
        .collect();
    assert_eq!(app.len(), MAX_CONNECTION_LANES + 1);
    let rest = app.last().unwrap();
    assert_eq!(rest.label, "app: 6 more connections");
    assert_eq!(rest.conns.len(), 6);
    assert_eq!(rest.marks.len(), 6, "none of their events is dropped");
}

#[test]
fn times_before_the_start_or_after_the_end_stay_on_the_axis() {
    let f = Fixture::new();
    let mut c = f.capture(vec![]);
    c.clock.wall = f.zero + Duration::from_millis(500);
    // Posted "at 100 ms" on a clock that reads 500 ms late: 600 ms.
    let t = timeline(&c, f.zero, 700.0, &[]);
    let inj = &t.lanes[1];
    assert_eq!(inj.bands[0].from_ms, 600.0);
    assert_eq!(inj.bands[0].to_ms, 700.0, "900 + 500 is past the end");
}

#[test]
fn a_connection_that_comes_back_is_shown_reconnecting() {
    let f = Fixture::new();
    let connected = |ep: &str, maint| EventKind::Connected {
        endpoint: ep.into(),
        maint,
    };
    let events = vec![
        f.ev(10, "app", 3, connected("127.0.0.1:1000", MaintState::Off)),
        f.ev(
            400,
            "app",
            3,
            EventKind::Disconnected {
                endpoint: "127.0.0.1:1000".into(),
            },
        ),
        f.ev(
            420,
            "app",
            3,
            connected(
                "127.0.0.1:1001",
                MaintState::On(Some(crate::notification::EndpointType::InternalIp)),
            ),
        ),
    ];
    let t = timeline(&f.capture(events), f.zero, 1000.0, &[]);
    let lane = t.lanes.iter().find(|l| l.conns == [3]).unwrap();
    let labels: Vec<&str> = lane.marks.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "connected to 127.0.0.1:1000 (notifications off)",
            "127.0.0.1:1000 closed the connection",
            "reconnected to 127.0.0.1:1001 (notifications on, MOVING as internal-ip)",
        ]
    );
    assert_eq!(
        lane.label, "app #3 (127.0.0.1:1000)",
        "named by its first endpoint"
    );
}
