//! The living documentation as people use it: a real run of a failing and a
//! passing scenario against the embedded emulator, read back from its JSON,
//! its cucumber JSON and its page; and pages opened in headless Chromium
//! (Debian's `chromium`; `MAINT_E2E_CHROMIUM` names another), which must load
//! without a script error and draw every timeline, with a screenshot kept
//! under `target/living-doc-test/`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use maint_e2e::client::{ClientEvent, EventKind, MaintState};
use maint_e2e::notification::Notification;
use maint_e2e::report::browser::verify_page;
use maint_e2e::report::capture::{counts, timeline};
use maint_e2e::report::cucumber_json::JsonFeature;
use maint_e2e::report::{
    ActionSpan, Capture, Clock, Feature, Outcome, Run, Scenario, Step, TrafficCapture,
};
use maint_e2e::suite::Suite;
use tokio::time::Instant;

/// Where this test's reports stay after the run, to be looked at.
fn kept(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/living-doc-test")
        .join(name)
}

const PROMISES: &str = r#"Feature: A promise checked against what happened
  Two clients through the same failover: one relaxes its timeouts, one does
  not. Both are held to the claim that their traffic sees no errors.

  Background:
    Given a standalone database

  Scenario: RP1 a client that does not relax is held to no errors through a failover
    Given a client "app" with 2 connections and maintenance notifications enabled and these settings:
      | response timeout | 1 s |
      | relaxed timeout  | 3 s |
      | relaxation       | off |
    And steady traffic from "app"
    When the database fails over
    Then the traffic saw no errors
    And every acknowledged write is readable

  Scenario: RP2 a client that relaxes sees no errors through a failover
    Given a client "app" with 2 connections and maintenance notifications enabled
    And steady traffic from "app"
    When the database fails over
    Then the traffic saw no errors
    And every acknowledged write is readable
"#;

fn scenario<'a>(run: &'a Run, id: &str) -> &'a Scenario {
    run.scenarios()
        .map(|(_, s)| s)
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no {id} in the report"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_shows_what_each_connection_did_when_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("promises.feature"), PROMISES).unwrap();
    let out = kept("promises");
    let _ = std::fs::remove_dir_all(&out);
    let passed = Suite {
        features: dir.path().to_path_buf(),
        junit: dir.path().join("junit.xml"),
        report_dir: out.clone(),
        command_line: false,
    }
    .run()
    .await
    .unwrap();
    assert!(!passed, "RP1 fails by design");

    let run: Run =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(run.target, "embedded emulator (one per scenario)");
    assert!(run.settings.iter().any(|s| s.name == "relaxed timeout"));
    let feature = &run.features[0];
    assert!(feature
        .description
        .starts_with("Two clients through the same failover"));

    let rp1 = scenario(&run, "RP1");
    assert_eq!(rp1.outcome, Outcome::Failed);
    let texts: Vec<(&str, Outcome, bool)> = rp1
        .steps
        .iter()
        .map(|s| (s.text.as_str(), s.outcome, s.at_ms.is_some()))
        .collect();
    assert_eq!(
        texts,
        [
            ("a standalone database", Outcome::Passed, true),
            (
                "a client \"app\" with 2 connections and maintenance notifications enabled and these settings:",
                Outcome::Passed,
                true
            ),
            ("steady traffic from \"app\"", Outcome::Passed, true),
            ("the database fails over", Outcome::Passed, true),
            ("the traffic saw no errors", Outcome::Failed, true),
            ("every acknowledged write is readable", Outcome::Skipped, false),
        ]
    );
    assert!(rp1.steps[0].background);
    let failed = &rp1.steps[4];
    assert!(
        failed.error.as_deref().unwrap_or("").contains("timeout"),
        "{failed:?}"
    );
    // The terminal's recap names the scenario, the failed step and its error
    // (only RP1: RP2 passed).
    let recap = run.failure_recap();
    assert!(
        recap.starts_with("FAILED ")
            && recap.contains("promises.feature:8 RP1 a client that does not relax"),
        "{recap}"
    );
    assert!(
        recap.contains("  at line 15: Then the traffic saw no errors\n    "),
        "{recap}"
    );
    assert!(
        recap.contains("timeout") && !recap.contains("RP2"),
        "{recap}"
    );
    assert!(
        rp1.counts.errors > 0 && rp1.counts.notifications >= 4,
        "{:?}",
        rp1.counts
    );
    assert_eq!(
        rp1.clients[0]
            .settings
            .iter()
            .find(|s| s.name == "relaxation")
            .map(|s| s.value.as_str()),
        Some("off"),
        "the report shows what differs from the suite's settings"
    );

    let t = rp1.timeline.as_ref().expect("RP1 has a timeline");
    let failure = t
        .failure
        .as_ref()
        .expect("the failed step is on the timeline");
    let step_end = failed.at_ms.unwrap() + failed.duration_ms.unwrap();
    assert!((failure.at_ms - step_end).abs() < 1e-6);
    assert!(failure.at_ms <= t.span_ms);
    let lanes: Vec<&str> = t.lanes.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(
        &lanes[..3],
        ["steps", "fault injector", "app traffic"],
        "{lanes:?}"
    );
    let conn_lanes: Vec<_> = t
        .lanes
        .iter()
        .filter(|l| l.client.as_deref() == Some("app") && l.conns.len() == 1)
        .collect();
    assert_eq!(conn_lanes.len(), 2, "one lane per connection: {lanes:?}");
    for l in &conn_lanes {
        let kinds: Vec<&str> = l
            .marks
            .iter()
            .filter(|m| m.class == "notification")
            .map(|m| m.label.split(' ').next().unwrap())
            .collect();
        assert_eq!(kinds, ["FAILING_OVER", "FAILED_OVER"], "{}", l.label);
        let at_failure = failure
            .lanes
            .iter()
            .find(|s| s.lane == l.label)
            .expect("each connection's state at the failure");
        assert!(
            at_failure
                .last
                .as_ref()
                .unwrap()
                .label
                .starts_with("FAILED_OVER"),
            "{at_failure:?}"
        );
    }
    let traffic = failure
        .lanes
        .iter()
        .find(|s| s.lane == "app traffic")
        .unwrap();
    let last = traffic.last.as_ref().unwrap();
    assert_eq!(last.class, "error");
    assert!(last.label.contains("timeout error"), "{last:?}");
    assert!(failure
        .lanes
        .iter()
        .any(|s| s.lane == "fault injector"
            && s.last.as_ref().unwrap().label.starts_with("failover")));

    let rp2 = scenario(&run, "RP2");
    assert_eq!(rp2.outcome, Outcome::Passed);
    assert_eq!(rp2.counts.errors, 0);
    assert!(
        rp2.counts.writes_checked > 0 && rp2.counts.operations > 0,
        "{:?}",
        rp2.counts
    );
    assert!(rp2.timeline.as_ref().unwrap().failure.is_none());

    // The same run as cucumber JSON, the timeline embedded.
    let cj: Vec<JsonFeature> =
        serde_json::from_slice(&std::fs::read(out.join("cucumber.json")).unwrap()).unwrap();
    let el = cj[0]
        .elements
        .iter()
        .find(|e| e.name.starts_with("RP1"))
        .unwrap();
    let statuses: Vec<&str> = el.steps.iter().map(|s| s.result.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["passed", "passed", "passed", "passed", "failed", "skipped"]
    );
    assert_eq!(el.steps[1].rows.len(), 3);
    let embedded = el.after[0]
        .embeddings
        .iter()
        .find(|e| e.mime_type == "application/json")
        .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&embedded.data)
        .unwrap();
    let from_cucumber: maint_e2e::report::Timeline = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(&from_cucumber, t);

    // The page: opened in a browser, every timeline drawn, the failure's
    // moment and table in it, and a picture of RP1's timeline kept.
    let page = out.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("class=\"failure-line\""));
    assert!(html.contains("When the step failed, each lane had last done:"));
    let png = out.join("RP1-timeline.png");
    let check = verify_page(&page, Some(("RP1", &png))).await.unwrap();
    assert_eq!((check.timelines, check.drawn), (2, 2));
    assert_png(&png, 1280);
}

/// A PNG `width` pixels wide.
fn assert_png(path: &Path, width: u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(w, width);
}

/// A run of one scenario whose timeline is known: two connections, a
/// failover, traffic with one error.
fn known_run() -> Run {
    let base = Instant::now();
    let zero = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let at = |ms: u64| base + Duration::from_millis(ms);
    let ev = |ms, conn, kind| ClientEvent {
        at: at(ms),
        client: "app".into(),
        conn,
        kind,
    };
    let note = |n| EventKind::Notification {
        notification: n,
        at_setup: false,
    };
    let events = vec![
        ev(
            10,
            1,
            EventKind::Connected {
                endpoint: "127.0.0.1:1000".into(),
                maint: MaintState::On(None),
            },
        ),
        ev(
            20,
            2,
            EventKind::Connected {
                endpoint: "127.0.0.1:1000".into(),
                maint: MaintState::On(None),
            },
        ),
        ev(
            300,
            1,
            note(Notification::FailingOver {
                seq: 1,
                time_s: Some(2),
                shards: vec!["1".into()],
            }),
        ),
        ev(
            300,
            1,
            EventKind::Relaxed {
                timeout: Some(Duration::from_secs(3)),
            },
        ),
        ev(
            310,
            2,
            note(Notification::FailingOver {
                seq: 1,
                time_s: Some(2),
                shards: vec!["1".into()],
            }),
        ),
        ev(
            900,
            1,
            note(Notification::FailedOver {
                seq: 2,
                shards: vec!["1".into()],
            }),
        ),
        ev(
            1200,
            1,
            EventKind::Unrelaxed {
                timeout: Some(Duration::from_secs(1)),
            },
        ),
    ];
    let capture = Capture {
        clock: Clock {
            instant: base,
            wall: zero,
        },
        events,
        actions: vec![ActionSpan {
            kind: "failover".into(),
            id: "f1".into(),
            posted: at(200),
            ended: Some(at(1000)),
            status: Some("success".into()),
        }],
        traffic: vec![TrafficCapture {
            client: "app".into(),
            successes: (0..150).map(|i| at(i * 10)).collect(),
            errors: vec![(
                at(600),
                "timeout".into(),
                "GET k".into(),
                "no reply in 1 s".into(),
            )],
        }],
        clients: vec![("app".into(), vec![])],
        writes_checked: 75,
        not_checked: Vec::new(),
    };
    let steps = vec![Step {
        keyword: "When".into(),
        text: "the database fails over".into(),
        line: 5,
        outcome: Outcome::Passed,
        at_ms: Some(200.0),
        duration_ms: Some(800.0),
        ..Step::default()
    }];
    let tl = timeline(&capture, zero, 1500.0, &steps);
    Run {
        title: "known".into(),
        target: "hand-made".into(),
        features: vec![Feature {
            name: "Known".into(),
            path: "features/known.feature".into(),
            scenarios: vec![Scenario {
                anchor: "known-3".into(),
                id: "KN1".into(),
                name: "KN1 a known timeline".into(),
                line: 3,
                outcome: Outcome::Passed,
                duration_ms: 1500.0,
                steps,
                counts: counts(&capture),
                timeline: Some(tl),
                ..Scenario::default()
            }],
            ..Feature::default()
        }],
        ..Run::default()
    }
}

/// The tooltips of the marks of each lane of the page's timeline, lane by lane.
fn drawn_marks(html: &str) -> Vec<Vec<String>> {
    html.split("<g class=\"lane ")
        .skip(1)
        .map(|lane| {
            let lane = lane.split("</g>").next().unwrap();
            lane.split("class=\"mark ")
                .skip(1)
                .map(|m| {
                    let t = m.split("<title>").nth(1).unwrap();
                    t.split("</title>").next().unwrap().to_string()
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_known_timeline_is_in_the_page_lane_by_lane_in_order() {
    let run = known_run();
    let dir = tempfile::tempdir().unwrap();
    let w = run.write(dir.path()).unwrap();
    let back: Run = serde_json::from_slice(&std::fs::read(&w.json).unwrap()).unwrap();
    assert_eq!(back, run, "the JSON is the run");
    let html = std::fs::read_to_string(&w.html).unwrap();
    let inline = html
        .split("<script type=\"application/json\" id=\"report-data\">")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    let inline: Run = serde_json::from_str(inline).unwrap();
    assert_eq!(inline, run, "the page carries the same data");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing fetched"
    );
    assert_eq!(
        drawn_marks(&html),
        vec![
            vec![],
            vec![
                "+0.200 s failover posted (f1)".to_string(),
                "+1.000 s failover ended: success".into(),
            ],
            vec!["+0.600 s GET k: timeout error: no reply in 1 s".into()],
            vec![
                "+0.010 s connected to 127.0.0.1:1000 (notifications on)".into(),
                "+0.300 s FAILING_OVER 1 2s".into(),
                "+0.900 s FAILED_OVER 2".into(),
            ],
            vec![
                "+0.020 s connected to 127.0.0.1:1000 (notifications on)".into(),
                "+0.310 s FAILING_OVER 1 2s".into(),
            ],
        ]
    );
    assert!(html.contains("+0.300 s to +1.200 s: relaxed: timeout 3 s, back to 1 s"));
    assert!(html.contains("+0.310 s") && html.contains("app #2 (127.0.0.1:1000)"));
}

#[tokio::test]
async fn the_browser_check_fails_on_a_script_error_or_a_timeline_not_drawn() {
    let run = known_run();
    let dir = tempfile::tempdir().unwrap();
    let w = run.write(dir.path()).unwrap();
    let check = verify_page(&w.html, None).await.unwrap();
    assert_eq!((check.timelines, check.drawn), (1, 1));
    assert!(check.errors.is_empty());

    let good = std::fs::read_to_string(&w.html).unwrap();
    let first_mark = good.find("<circle class=\"mark").unwrap();
    let end = first_mark + good[first_mark..].find("</circle>").unwrap() + "</circle>".len();
    std::fs::write(&w.html, format!("{}{}", &good[..first_mark], &good[end..])).unwrap();
    let err = verify_page(&w.html, None).await.unwrap_err().to_string();
    assert!(err.contains("drew 0 of 1 timelines"), "{err}");

    std::fs::write(
        &w.html,
        good.replace("</body>", "<script>noSuchFunction();</script></body>"),
    )
    .unwrap();
    let err = verify_page(&w.html, None).await.unwrap_err().to_string();
    assert!(
        err.contains("script errors") && err.contains("noSuchFunction"),
        "{err}"
    );
}

/// A claim left unchecked on a target is a state of its own, shown in every
/// output: the page (in the summary and the scenario), its JSON, cucumber
/// JSON and the terminal's recap; without one, none of them mentions it.
#[test]
fn a_claim_not_checked_is_its_own_state_in_every_output() {
    let mut run = known_run();
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read_to_string(run.write(dir.path()).unwrap().html).unwrap();
    assert!(
        !plain.contains("not checked"),
        "nothing unchecked, nothing said"
    );
    assert!(!run.failure_recap().contains("NOT CHECKED"));

    let why = "which node each connection is on: the target keeps no server record";
    run.features[0].scenarios[0].not_checked = vec![why.into()];
    let w = run.write(dir.path()).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert!(
        html.contains("1 with claims not checked on this target"),
        "summary"
    );
    assert!(html.contains("1 not checked</span>"), "the scenario's row");
    assert!(html.contains("Not checked on this target") && html.contains(why));
    let back: Run = serde_json::from_slice(&std::fs::read(&w.json).unwrap()).unwrap();
    assert_eq!(
        back.features[0].scenarios[0].not_checked,
        vec![why.to_string()]
    );
    let cucumber = std::fs::read_to_string(&w.cucumber).unwrap();
    assert!(
        cucumber.contains("\"not checked\""),
        "an embedding named so"
    );
    let recap = run.failure_recap();
    assert!(
        recap.contains("NOT CHECKED on this target: claims of 1 scenario(s)")
            && recap.contains("known.feature:3 KN1")
            && recap.contains(why),
        "{recap}"
    );
}

/// A scenario not applicable to the client under test is listed, with its
/// reason, in the page (counted in the header), its JSON and cucumber JSON
/// (a skipped step saying why); without one, none mentions it.
#[test]
fn a_scenario_not_applicable_is_listed_in_every_output() {
    let mut run = known_run();
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read_to_string(run.write(dir.path()).unwrap().html).unwrap();
    assert!(!plain.contains("not applicable"));
    let why = "`Then \"app\" received exactly:` is not expressible through a driver yet";
    run.not_applicable = vec![maint_e2e::report::NotApplicable {
        feature: "features/other.feature".into(),
        line: 9,
        scenario: "OT1 <something>".into(),
        client: "redis-py 8.2.0".into(),
        reason: why.into(),
    }];
    let w = run.write(dir.path()).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert!(
        html.contains("1 not applicable to the client under test"),
        "header"
    );
    assert!(
        html.contains("features/other.feature:9 OT1 &#60;something&#62;")
            && html.contains("redis-py 8.2.0"),
        "the list: {}",
        &html[html.find("id=\"not-applicable\"").unwrap_or(0)..][..600.min(html.len())]
    );
    let back: Run = serde_json::from_slice(&std::fs::read(&w.json).unwrap()).unwrap();
    assert_eq!(back.not_applicable, run.not_applicable);
    let cucumber: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&w.cucumber).unwrap()).unwrap();
    let feature = cucumber
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["uri"] == "features/other.feature")
        .expect("a feature for the file");
    let step = &feature["elements"][0]["steps"][0];
    assert_eq!(step["result"]["status"], "skipped");
    assert!(step["result"]["error_message"]
        .as_str()
        .unwrap()
        .contains(why));
}
