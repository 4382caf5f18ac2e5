use super::publish::relative;
use super::*;
use crate::report::{Feature, NotApplicable, Scenario, Step};
use std::path::Path;

fn scenario(name: &str, line: usize, outcome: Outcome, failed: Option<(&str, &str)>) -> Scenario {
    Scenario {
        anchor: format!("pn-{line}"),
        name: name.into(),
        line,
        outcome,
        steps: failed
            .map(|(text, error)| {
                vec![Step {
                    keyword: "Then ".into(),
                    text: text.into(),
                    outcome: Outcome::Failed,
                    error: Some(format!("{error}\nmore lines")),
                    ..Step::default()
                }]
            })
            .unwrap_or_default(),
        ..Scenario::default()
    }
}

fn run(client: &str, scenarios: Vec<Scenario>, not_applicable: Vec<(usize, &str)>) -> Run {
    Run {
        client: client.into(),
        features: vec![Feature {
            name: "Push".into(),
            path: "features/pn.feature".into(),
            scenarios,
            ..Feature::default()
        }],
        not_applicable: not_applicable
            .into_iter()
            .map(|(line, name)| NotApplicable {
                feature: "features/pn.feature".into(),
                line,
                scenario: name.into(),
                client: client.into(),
                reason: "`Then x` is not expressible through a driver yet".into(),
            })
            .collect(),
        ..Run::default()
    }
}

/// Our client ran all three (the outline's two examples share a name);
/// redis-py passed one, failed one, could not express the third.
fn matrix() -> Matrix {
    let own = run(
        "maint-e2e handoffs 0.1.0 (redis crate)",
        vec![
            scenario("PN1 pair", 10, Outcome::Passed, None),
            scenario("ET1-ET5 type", 20, Outcome::Passed, None),
            scenario("ET1-ET5 type", 21, Outcome::Passed, None),
        ],
        vec![],
    );
    let py = run(
        "redis-py 8.2.0",
        vec![
            scenario("PN1 pair", 10, Outcome::Passed, None),
            scenario(
                "ET1-ET5 type",
                20,
                Outcome::Failed,
                Some(("the traffic saw no errors", "2 errors: timeout")),
            ),
        ],
        vec![(21, "ET1-ET5 type")],
    );
    build(&[
        Input {
            run: own,
            page: "../living-doc/index.html".into(),
        },
        Input {
            run: py,
            page: "../living-doc-redis-py/index.html".into(),
        },
    ])
}

#[test]
fn each_cell_says_how_the_client_did_and_links_to_its_timeline() {
    let m = matrix();
    let keys: Vec<_> = m.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "pn.feature: PN1 pair",
            "pn.feature: ET1-ET5 type #1",
            "pn.feature: ET1-ET5 type #2"
        ]
    );
    let py: Vec<_> = m.rows.iter().map(|r| r.cells[1].clone()).collect();
    assert_eq!(py[0].state, State::Passed);
    assert_eq!(
        py[0].link.as_deref(),
        Some("../living-doc-redis-py/index.html#pn-10")
    );
    assert_eq!(py[1].state, State::Failed);
    assert_eq!(
        py[1].detail,
        "Then the traffic saw no errors: 2 errors: timeout"
    );
    assert_eq!(py[2].state, State::NotApplicable);
    assert!(py[2].detail.contains("not expressible"), "{}", py[2].detail);
    assert_eq!(
        py[2].link.as_deref(),
        Some("../living-doc-redis-py/index.html#not-applicable")
    );
    assert_eq!(m.columns[1].client, "redis-py 8.2.0");
    assert_eq!(m.columns[1].counts, [1, 1, 1, 0]);
    assert_eq!(m.columns[0].counts, [3, 0, 0, 0]);
}

#[test]
fn a_scenario_a_run_lacks_is_not_run_there() {
    let m = build(&[
        Input {
            run: run(
                "a 1",
                vec![scenario("PN1 pair", 10, Outcome::Passed, None)],
                vec![],
            ),
            page: "a/index.html".into(),
        },
        Input {
            run: run(
                "b 1",
                vec![scenario("PN2 other", 12, Outcome::Passed, None)],
                vec![],
            ),
            page: "b/index.html".into(),
        },
    ]);
    assert_eq!(m.rows.len(), 2);
    assert_eq!(m.rows[1].cells[0].state, State::NotRun);
    assert_eq!(m.rows[1].cells[0].link, None);
    assert_eq!(m.columns[0].counts, [1, 0, 0, 1]);
}

#[test]
fn a_cell_that_passed_before_and_no_longer_does_is_a_regression() {
    let m = matrix();
    let before = Expected::parse(
        "# comment\n\
         redis-py\tpn.feature: PN1 pair\n\
         redis-py\tpn.feature: ET1-ET5 type #1\n\
         redis-py\tpn.feature: ET1-ET5 type #2\n\
         redis-py\tpn.feature: PN9 gone\n\
         node-redis\tpn.feature: PN1 pair\n",
    )
    .unwrap();
    assert_eq!(
        before.regressions(&m),
        [
            "redis-py: \"pn.feature: ET1-ET5 type #1\" passed before and is now failed: Then the traffic saw no errors: 2 errors: timeout",
            "redis-py: \"pn.feature: ET1-ET5 type #2\" passed before and is now not-applicable: `Then x` is not expressible through a driver yet",
            "redis-py: \"pn.feature: PN9 gone\" passed before and is no longer in the run (renamed? rewrite the expectations with --write-expect)",
            "node-redis: no run of it in the matrix, and 1 cell(s) of it passed before (did its driver start? run `MAINT_E2E_CLIENT=node-redis cargo test --test acceptance`)",
        ]
    );
    // What passes now, written and read back, holds; our own client's
    // passes are new to this list.
    let now = Expected::of(&m);
    assert!(Expected::parse(&now.render())
        .unwrap()
        .regressions(&m)
        .is_empty());
    assert_eq!(
        before.newly_passing(&m),
        [
            "maint-e2e: \"pn.feature: ET1-ET5 type #1\"",
            "maint-e2e: \"pn.feature: ET1-ET5 type #2\"",
            "maint-e2e: \"pn.feature: PN1 pair\""
        ]
    );
    let err = Expected::parse("redis-py pn.feature: PN1 pair\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("line 1: "), "{err}");
}

#[test]
fn the_page_draws_every_cell_with_its_state_and_link() {
    let m = matrix();
    let html = render(&m).unwrap();
    assert!(
        html.contains(r#"<table id="matrix" data-cells="6">"#),
        "{html}"
    );
    assert_eq!(html.matches(r#"<td class="cell passed""#).count(), 4);
    assert_eq!(html.matches(r#"<td class="cell failed""#).count(), 1);
    assert!(html.contains(r#"<a href="../living-doc-redis-py/index.html#pn-10">passed</a>"#));
    assert!(html.contains("1 passed, 1 failed, 1 not applicable"));
    assert!(page_height(&m, false) > page_height(&m, true));
}

#[test]
fn a_run_is_linked_relative_to_the_page() {
    assert_eq!(
        relative(
            Path::new("/w/target/conformance"),
            Path::new("/w/target/living-doc-redis-py/index.html")
        ),
        "../living-doc-redis-py/index.html"
    );
    assert_eq!(
        relative(Path::new("/w/a"), Path::new("/w/a/b.html")),
        "b.html"
    );
}
