//! What makes a benchmark run fail, over the figures it wrote: a failed
//! operation, a lost write, a failed action, file descriptors that grew, a
//! handoff that was not one per connection, or the emulator's throughput
//! below a floor of the forwarder's. CI's smoke runs go through these, so a
//! benchmark that keeps working also keeps its promises.

use anyhow::{bail, Result};
use serde_json::Value;

use super::Size;

/// File descriptors a run may end with beyond those it began with (tokio's
/// own, a log file, a pool that lingers a moment).
pub const FD_SLACK: u64 = 16;

/// The lowest ratio of the emulator's throughput to the plain forwarder's a
/// run may show, in every row: full runs (release build) measure 0.83 to
/// 1.08; smoke runs (a debug build, the median of three short rounds) 0.3
/// to 0.7 (BENCHMARKS.md).
pub fn overhead_floor(size: Size) -> f64 {
    match size {
        Size::Smoke => 0.2,
        Size::Full => 0.75,
    }
}

fn n(v: &Value, what: &str) -> u64 {
    v[what].as_u64().unwrap_or(0)
}

/// The soak: no failed operation, write or action; descriptors flat.
pub fn soak(figures: &Value) -> Result<()> {
    let mut wrong = Vec::new();
    if n(figures, "errors") > 0 {
        wrong.push(format!(
            "{} operations failed ({})",
            n(figures, "errors"),
            figures["errors_by_class"]
        ));
    }
    if n(figures, "writes_lost") > 0 {
        wrong.push(format!(
            "{} acknowledged writes lost or wrong",
            n(figures, "writes_lost")
        ));
    }
    if figures["failed_actions"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        wrong.push(format!("actions failed: {}", figures["failed_actions"]));
    }
    fds_flat(&figures["fds"], "the emulator", &mut wrong);
    verdict("soak", wrong)
}

/// Handoff at scale: every rebind moved every connection once, no
/// operation failed; descriptors flat.
pub fn handoff(figures: &Value) -> Result<()> {
    let mut wrong = Vec::new();
    for row in figures["rows"].as_array().into_iter().flatten() {
        let round = &row["rebind"];
        if n(row, "failed") > 0 {
            wrong.push(format!(
                "rebind {round}: {} operations failed ({})",
                n(row, "failed"),
                row["errors_by_class"]
            ));
        }
        if row["one_handoff_each"] != Value::Bool(true) {
            wrong.push(format!("rebind {round}: not one handoff per connection"));
        }
    }
    fds_flat(&figures["fds"], "this process", &mut wrong);
    verdict("handoff", wrong)
}

/// Proxy overhead: the emulator's throughput at least `floor` times the
/// forwarder's in every row.
pub fn overhead(figures: &Value, floor: f64) -> Result<()> {
    let wrong = figures["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["path"] == "emulator")
        .filter(|r| r["ratio_to_forwarder"].as_f64().unwrap_or(0.0) < floor)
        .map(|r| {
            format!(
                "{} at {} connections, pipeline {}: {:.2} x the forwarder, below the floor of {floor}",
                r["test"].as_str().unwrap_or("?"),
                r["clients"],
                r["pipeline"],
                r["ratio_to_forwarder"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    verdict("overhead", wrong)
}

fn fds_flat(fds: &Value, whose: &str, wrong: &mut Vec<String>) {
    let (start, end) = (n(fds, "start"), n(fds, "end"));
    if end > start + FD_SLACK {
        wrong.push(format!(
            "{whose} held {start} file descriptors at the start and {end} at the end (more than {FD_SLACK} more: a leak)"
        ));
    }
}

fn verdict(bench: &str, wrong: Vec<String>) -> Result<()> {
    if wrong.is_empty() {
        return Ok(());
    }
    bail!(
        "the {bench} benchmark broke its promises:\n  {}",
        wrong.join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_clean_soak_passes_and_each_broken_promise_is_named() {
        let clean = json!({"errors": 0, "writes_lost": 0, "failed_actions": [], "fds": {"start": 40, "end": 44}});
        soak(&clean).unwrap();
        let broken = json!({"errors": 2, "errors_by_class": {"timeout": 2}, "writes_lost": 1,
            "failed_actions": ["bind #3: refused"], "fds": {"start": 40, "end": 90}});
        let e = soak(&broken).unwrap_err().to_string();
        for words in [
            "2 operations failed",
            "1 acknowledged writes lost",
            "bind #3",
            "40 file descriptors at the start and 90",
        ] {
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn a_handoff_round_with_a_failure_or_a_missing_handoff_fails() {
        let ok = json!({"rows": [{"rebind": 1, "failed": 0, "one_handoff_each": true}], "fds": {"start": 10, "end": 12}});
        handoff(&ok).unwrap();
        let bad = json!({"rows": [{"rebind": 2, "failed": 3, "errors_by_class": {}, "one_handoff_each": false}]});
        let e = handoff(&bad).unwrap_err().to_string();
        assert!(
            e.contains("rebind 2: 3 operations failed") && e.contains("not one handoff"),
            "{e}"
        );
    }

    #[test]
    fn the_emulator_below_the_floor_fails_other_paths_do_not_count() {
        let rows = json!({"rows": [
            {"path": "emulator", "test": "GET", "clients": 50, "pipeline": 16, "ratio_to_forwarder": 0.15},
            {"path": "emulator-tls", "test": "GET", "clients": 50, "pipeline": 16, "ratio_to_forwarder": 0.1},
            {"path": "emulator", "test": "SET", "clients": 1, "pipeline": 1, "ratio_to_forwarder": 0.7},
        ]});
        let e = overhead(&rows, 0.2).unwrap_err().to_string();
        assert!(
            e.contains("GET at 50 connections, pipeline 16: 0.15"),
            "{e}"
        );
        assert!(!e.contains("0.10"), "{e}");
        overhead(&rows, 0.1).unwrap();
    }
}
