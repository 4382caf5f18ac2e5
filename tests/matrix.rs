//! The conformance matrix as `maint-e2e matrix` makes it: two runs' living
//! documents written as the suite writes them, the page built from them and
//! opened in headless Chromium (Debian's `chromium`; `MAINT_E2E_CHROMIUM`
//! names another), its picture kept under `target/conformance-test/`, and
//! the cells judged against the ones that passed before.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use maint_e2e::report::matrix::{publish, Options, State};
use maint_e2e::report::{Feature, NotApplicable, Outcome, Run, Scenario, Step};

fn kept(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/conformance-test")
        .join(name)
}

fn scenario(id: &str, line: usize, outcome: Outcome) -> Scenario {
    Scenario {
        anchor: format!("push-{line}"),
        id: id.into(),
        name: format!("{id} a failover is announced"),
        line,
        outcome,
        steps: vec![Step {
            keyword: "Then ".into(),
            text: "the traffic saw no errors".into(),
            outcome,
            error: (outcome == Outcome::Failed).then(|| "2 errors: timeout".to_string()),
            ..Step::default()
        }],
        ..Scenario::default()
    }
}

/// A run of `client`: PN1 as `pn1`, PN2 passed or not applicable.
fn run(client: &str, pn1: Outcome, pn2_applies: bool) -> Run {
    let mut scenarios = vec![scenario("PN1", 10, pn1)];
    let mut not_applicable = Vec::new();
    if pn2_applies {
        scenarios.push(scenario("PN2", 20, Outcome::Passed));
    } else {
        not_applicable.push(NotApplicable {
            feature: "features/push.feature".into(),
            line: 20,
            scenario: "PN2 a failover is announced".into(),
            client: client.into(),
            reason: "`Then x` is not expressible through a driver yet".into(),
        });
    }
    Run {
        title: "maint-e2e acceptance suite".into(),
        target: "embedded emulator".into(),
        client: client.into(),
        features: vec![Feature {
            name: "Push notifications".into(),
            path: "features/push.feature".into(),
            scenarios,
            ..Feature::default()
        }],
        not_applicable,
        ..Run::default()
    }
}

/// A fresh folder `root` holding our own client's run, every scenario
/// passed; its living-document folder.
fn own_run(root: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(root);
    let own = root.join("living-doc");
    run(
        "maint-e2e handoffs 1.0 (redis crate)",
        Outcome::Passed,
        true,
    )
    .write(&own)
    .unwrap();
    own
}

#[tokio::test]
async fn the_matrix_page_draws_every_cell_in_a_browser_and_a_lost_pass_fails_it() {
    let root = kept("two-clients");
    let own = own_run(&root);
    let py = root.join("living-doc-redis-py");
    run("redis-py 8.2.0", Outcome::Failed, false)
        .write(&py)
        .unwrap();
    // What passed before: PN1 for both.
    let expect = root.join("passing.tsv");
    std::fs::write(
        &expect,
        "maint-e2e\tpush.feature: PN1 a failover is announced\n\
         redis-py\tpush.feature: PN1 a failover is announced\n",
    )
    .unwrap();
    let png = root.join("matrix.png");
    let options = Options {
        runs: vec![own.clone(), py.clone()],
        out: root.join("conformance"),
        expect: Some(expect.clone()),
        write_expect: Some(root.join("now.tsv")),
        screenshot: Some(png.clone()),
    };
    let err = publish(&options).await.unwrap_err().to_string();
    assert!(
        err.contains("1 cell(s) of the conformance matrix passed before and no longer do")
            && err.contains("redis-py: \"push.feature: PN1 a failover is announced\" passed before and is now failed: Then the traffic saw no errors: 2 errors: timeout"),
        "{err}"
    );
    // The page was written and checked before the judgement; its cells link
    // to each run's page, relative to it.
    let html = std::fs::read_to_string(root.join("conformance/index.html")).unwrap();
    assert!(html.contains(r#"href="../living-doc-redis-py/index.html#push-10""#));
    assert!(html.contains(r#"href="../living-doc-redis-py/index.html#not-applicable""#));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1280);
    // What passes now is what the next run is held to.
    let now = std::fs::read_to_string(root.join("now.tsv")).unwrap();
    assert!(now.contains("maint-e2e\tpush.feature: PN2 a failover is announced"));
    assert!(!now.contains("redis-py\t"), "{now}");

    // redis-py fixed: every cell that passed before passes.
    run("redis-py 8.2.1", Outcome::Passed, false)
        .write(&py)
        .unwrap();
    let m = publish(&Options {
        screenshot: None,
        write_expect: None,
        ..options
    })
    .await
    .unwrap();
    let states: Vec<_> = m.rows.iter().map(|r| r.cells[1].state).collect();
    assert_eq!(states, [State::Passed, State::NotApplicable]);
}

#[tokio::test]
async fn a_page_that_draws_fewer_cells_than_the_matrix_has_fails_the_browser_check() {
    let root = kept("tampered");
    let own = own_run(&root);
    let out = root.join("conformance");
    publish(&Options {
        runs: vec![own],
        out: out.clone(),
        expect: None,
        write_expect: None,
        screenshot: None,
    })
    .await
    .unwrap();
    let page = out.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // One cell taken out, as a broken template would.
    let start = html.find(r#"<td class="cell"#).unwrap();
    let end = start + html[start..].find("</td>").unwrap() + "</td>".len();
    std::fs::write(&page, format!("{}{}", &html[..start], &html[end..])).unwrap();
    let err = maint_e2e::report::browser::verify_matrix(&page, 2, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("drew 1 of 2 cells"), "{err}");
}

#[tokio::test]
async fn no_run_to_build_from_says_how_to_make_one() {
    let root = kept("none");
    let err = publish(&Options {
        runs: vec![root.join("nothing-here")],
        out: root.join("conformance"),
        expect: None,
        write_expect: None,
        screenshot: None,
    })
    .await
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("should be a run's living-document folder"),
        "{text}"
    );
}
