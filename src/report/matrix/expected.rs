//! The cells of the conformance matrix that passed before, and which of
//! them no longer do.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use super::{Matrix, State};

/// The cells that passed before, one per line: `<client>\t<key>`, where
/// the client is its name without its version (`redis-py`). Lines starting
/// with `#` are comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    cells: BTreeSet<(String, String)>,
}

/// A client's name without its version: `redis-py 8.2.0` → `redis-py`.
pub fn client_name(client: &str) -> &str {
    client.split_whitespace().next().unwrap_or(client)
}

impl Expected {
    /// Reads the file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut cells = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((client, key)) = line.split_once('\t') else {
                bail!(
                    "line {}: {line:?} is not `<client><TAB><feature file>: <scenario>`",
                    i + 1
                );
            };
            cells.insert((client.to_string(), key.to_string()));
        }
        Ok(Expected { cells })
    }

    /// Every cell of `m` that passed.
    pub fn of(m: &Matrix) -> Self {
        let mut cells = BTreeSet::new();
        for r in &m.rows {
            for (c, cell) in m.columns.iter().zip(&r.cells) {
                if cell.state == State::Passed {
                    cells.insert((client_name(&c.client).to_string(), r.key.clone()));
                }
            }
        }
        Expected { cells }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# The conformance matrix's cells that passed: `maint-e2e matrix --expect` fails\n\
             # when one of them no longer passes. Written by `maint-e2e matrix --write-expect`.\n",
        );
        for (client, key) in &self.cells {
            out.push_str(&format!("{client}\t{key}\n"));
        }
        out
    }

    /// The cells expected to pass that did not in `m`, each saying how it
    /// ended instead; a client `m` has no column for is one regression.
    pub fn regressions(&self, m: &Matrix) -> Vec<String> {
        let mut out = Vec::new();
        let mut missing: BTreeMap<&str, usize> = BTreeMap::new();
        for (client, key) in &self.cells {
            let Some(c) = m
                .columns
                .iter()
                .position(|col| client_name(&col.client) == client)
            else {
                *missing.entry(client).or_default() += 1;
                continue;
            };
            match m.rows.iter().find(|r| &r.key == key) {
                None => out.push(format!(
                    "{client}: \"{key}\" passed before and is no longer in the run \
                     (renamed? rewrite the expectations with --write-expect)"
                )),
                Some(r) if r.cells[c].state != State::Passed => out.push(format!(
                    "{client}: \"{key}\" passed before and is now {}{}",
                    r.cells[c].state.as_str(),
                    if r.cells[c].detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.cells[c].detail)
                    }
                )),
                Some(_) => {}
            }
        }
        for (client, n) in missing {
            out.push(format!(
                "{client}: no run of it in the matrix, and {n} cell(s) of it passed before \
                 (did its driver start? run `MAINT_E2E_CLIENT={client} cargo test --test acceptance`)"
            ));
        }
        out
    }

    /// Cells of `m` that pass and are not expected to: candidates to add.
    pub fn newly_passing(&self, m: &Matrix) -> Vec<String> {
        Expected::of(m)
            .cells
            .difference(&self.cells)
            .map(|(c, k)| format!("{c}: \"{k}\""))
            .collect()
    }
}
