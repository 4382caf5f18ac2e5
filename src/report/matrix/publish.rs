//! `maint-e2e matrix`: the runs' reports read, the page written and checked
//! in headless Chromium, each client's counts printed, the cells judged
//! against those that passed before.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::{build, page_height, render, Expected, Input, Matrix};
use crate::report::Run;

/// What `maint-e2e matrix` was asked.
pub struct Options {
    /// The runs' living-document folders, left to right; empty, those of
    /// [`DEFAULT_RUNS`] that exist.
    pub runs: Vec<PathBuf>,
    /// Where the page goes.
    pub out: PathBuf,
    /// Fail when a cell this file lists as passed did not pass.
    pub expect: Option<PathBuf>,
    /// Write the cells that passed here.
    pub write_expect: Option<PathBuf>,
    /// Save a picture of the whole page here.
    pub screenshot: Option<PathBuf>,
}

/// The runs the matrix takes when none are named: our own client's, then
/// each shipped driver's.
pub const DEFAULT_RUNS: [&str; 3] = [
    "target/living-doc",
    "target/living-doc-redis-py",
    "target/living-doc-node-redis",
];

/// Builds the page from the runs, checks it in headless Chromium, prints
/// each client's counts, and judges it against the cells that passed
/// before.
pub async fn publish(o: &Options) -> Result<Matrix> {
    let runs: Vec<PathBuf> = if o.runs.is_empty() {
        DEFAULT_RUNS
            .into_iter()
            .map(PathBuf::from)
            .filter(|d| d.join("report.json").is_file())
            .collect()
    } else {
        o.runs.clone()
    };
    if runs.is_empty() {
        bail!(
            "no run to put in the matrix: run the acceptance suite first \
             (`cargo test --test acceptance`, then with MAINT_E2E_CLIENT=redis-py or node-redis), \
             or name runs with --run"
        );
    }
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let out = std::path::absolute(&o.out)?;
    let mut inputs = Vec::new();
    for dir in &runs {
        let json = dir.join("report.json");
        let bytes = std::fs::read(&json).with_context(|| {
            format!(
                "reading {} ({} should be a run's living-document folder)",
                json.display(),
                dir.display()
            )
        })?;
        let run: Run = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", json.display()))?;
        let page = relative(&out, &std::path::absolute(dir.join("index.html"))?);
        inputs.push(Input { run, page });
    }
    let m = build(&inputs);
    let page = o.out.join("index.html");
    std::fs::write(&page, render(&m)?).with_context(|| format!("writing {}", page.display()))?;
    // The picture shows the rows another client ran (every row of our own
    // client's passes would make it five pages long).
    let shot = o
        .screenshot
        .as_deref()
        .map(|p| (p, page_height(&m, m.columns.len() > 1)));
    crate::report::browser::verify_matrix(&page, m.rows.len() * m.columns.len(), shot).await?;
    for c in &m.columns {
        println!(
            "{}: {} passed, {} failed, {} not applicable, {} not run",
            c.client, c.counts[0], c.counts[1], c.counts[2], c.counts[3]
        );
    }
    println!(
        "conformance matrix: {} (checked in headless Chromium)",
        page.display()
    );
    if let Some(png) = &o.screenshot {
        println!("its picture: {}", png.display());
    }
    if let Some(file) = &o.write_expect {
        std::fs::write(file, Expected::of(&m).render())
            .with_context(|| format!("writing {}", file.display()))?;
        println!("the cells that passed, written to {}", file.display());
    }
    if let Some(file) = &o.expect {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let expected =
            Expected::parse(&text).with_context(|| format!("reading {}", file.display()))?;
        for n in expected.newly_passing(&m) {
            println!("passes now, not yet in {}: {n}", file.display());
        }
        let regressions = expected.regressions(&m);
        if !regressions.is_empty() {
            bail!(
                "{} cell(s) of the conformance matrix passed before and no longer do:\n  {}",
                regressions.len(),
                regressions.join("\n  ")
            );
        }
        println!("every cell {} lists passed", file.display());
    }
    Ok(m)
}

/// `to` as a path relative to the folder `from` (both absolute).
pub(super) fn relative(from: &Path, to: &Path) -> String {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts = vec!["..".to_string(); f.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}
