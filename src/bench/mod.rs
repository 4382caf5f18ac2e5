//! Benchmarks: what the emulator costs a test and how that grows, measured side
//! by side in one run (the contenders alternate, each figure is a median), so
//! that a noisy machine moves every contender alike.
//!
//! * [`overhead`]: throughput and latency of GET/SET straight to a shard,
//!   through a plain byte forwarder ([`forwarder`]), through twemproxy, and
//!   through an emulator endpoint (plain and TLS), with `redis-benchmark`;
//! * [`fanout`]: from a `bind` posted to the fault injector to the last MOVING
//!   read, for growing numbers of opted-in connections, and the emulator's
//!   resident memory over many rebinds;
//! * [`handoff`]: one client of many connections through a rebind under
//!   traffic: how long until every connection moved, failures, latency in and
//!   out of the window.
//!
//! Each prints a table and writes JSON (with the machine) under the output
//! directory. `maint-e2e bench <name>` runs one; `--smoke` runs it small.

pub mod fanout;
pub mod forwarder;
pub mod handoff;
pub mod overhead;
pub mod soak;
pub mod verdict;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// How big a benchmark run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Enough to show it works (CI).
    Smoke,
    /// The figures BENCHMARKS.md reports.
    Full,
}

/// A table printed to the terminal.
pub struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown, columns padded to line up.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .chain(std::iter::once(&self.columns[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.columns);
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// The machine a figure was measured on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "os": std::env::consts::OS,
        "redis_server": redis_server_version(),
        "maint_e2e": env!("CARGO_PKG_VERSION"),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

/// `redis-server --version`, or what kept it from answering.
fn redis_server_version() -> String {
    crate::emulator::redis_server_bin()
        .and_then(|bin| Ok(std::process::Command::new(bin).arg("--version").output()?))
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Writes `figures` with the machine as `<dir>/<name>.json`; returns the path.
pub fn write_json(dir: &Path, name: &str, size: Size, figures: Value) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    let doc = json!({
        "benchmark": name,
        "size": format!("{size:?}").to_lowercase(),
        "machine": machine(),
        "figures": figures,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn table_lines_up_its_columns() {
        let mut t = Table::new(&["path", "ops/s"]);
        t.row(vec!["direct".into(), "53000".into()]);
        let s = t.render();
        assert_eq!(
            s,
            "| path   | ops/s |\n| ------ | ----- |\n| direct | 53000 |\n"
        );
    }
}
