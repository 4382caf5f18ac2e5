//! The server's record, as steps read it: the emulator's
//! `GET /emulator/databases/{bdb_id}/record` (in-process and against
//! `maint-e2e emulator` alike), through the fault injector client. A real
//! cluster keeps no such record: a step then says what it could not check.

use anyhow::{anyhow, Result};

use super::MaintWorld;
use crate::fault_injector::Timestamp;
use crate::notification::Kind;
use crate::server_record::DatabaseRecord;
use crate::timeline::{server, Unmet};
use crate::timing::SERVER_POLL;
use crate::wait::{poll, Look};

impl MaintWorld {
    /// The name the server knows client `client` by.
    pub fn server_name(&self, client: &str) -> Result<String> {
        self.env()?
            .factory
            .server_name(client)
            .ok_or_else(|| anyhow!("the scenario's clients carry no server-visible name"))
    }

    /// The server's record of the database under test, its connections
    /// limited to those of `client`; `None` where the target keeps none.
    pub async fn server_record(&self, client: &str) -> Result<Option<DatabaseRecord>> {
        let env = self.env()?;
        let name = self.server_name(client)?;
        Ok(env
            .fault_injector
            .database_record(env.bdb_id, Some(&name))
            .await?)
    }

    /// The target is the emulator, in this process or as `maint-e2e
    /// emulator` of its own: it keeps a server record, and takes the faults
    /// only it injects (`network_latency`, `send_push`, ...) through its API.
    pub async fn emulator_target(&self) -> Result<bool> {
        if self.on_emulator() {
            return Ok(true);
        }
        Ok(self.server_record_all().await?.is_some())
    }

    /// The server's record of the whole database (every connection).
    pub async fn server_record_all(&self) -> Result<Option<DatabaseRecord>> {
        let env = self.env()?;
        Ok(env.fault_injector.database_record(env.bdb_id, None).await?)
    }

    /// Reads the server's record of `client` until `settled` says nothing
    /// more will change (or patience runs out: the last record is returned
    /// either way, for the claim to judge); `None` where the target keeps no
    /// record.
    pub async fn settled_record(
        &self,
        client: &str,
        settled: impl Fn(&DatabaseRecord, Timestamp) -> bool,
    ) -> Result<Option<DatabaseRecord>> {
        let Some(first) = self.server_record(client).await? else {
            return Ok(None);
        };
        if settled(&first, Timestamp::now()) {
            return Ok(Some(first));
        }
        let r = poll(SERVER_POLL * 5, self.patience(), || async {
            let r = self
                .server_record(client)
                .await?
                .ok_or_else(|| anyhow!("the server's record went away"))?;
            anyhow::Ok(if settled(&r, Timestamp::now()) {
                Look::Ready(r)
            } else {
                Look::NotYet(r)
            })
        })
        .await?;
        Ok(Some(r.unwrap_or_else(|last| last)))
    }

    /// What `client` says it read on one connection, the server wrote to one
    /// connection of it (waits for the record to show it).
    pub async fn server_wrote(
        &self,
        client: &str,
        read: &[&crate::timeline::Received],
    ) -> Result<()> {
        if self.env.is_none() {
            // A client of a server that is not the database under test.
            return Ok(());
        }
        let name = self.server_name(client)?;
        let wanted: Vec<(&str, i64)> = read
            .iter()
            .map(|r| (r.notification.kind().as_str(), r.notification.seq()))
            .collect();
        let Some(r) = self
            .settled_record(client, |r, _| {
                server::wrote_to_one_connection(r, &name, &wanted).is_ok()
            })
            .await?
        else {
            self.not_checked(&format!(
                "whether the server wrote what {client:?} says it read"
            ));
            return Ok(());
        };
        server::wrote_to_one_connection(&r, &name, &wanted).map_err(|e| self.unmet(client, e))?;
        Ok(())
    }

    /// For a client through a driver, whose reading of pushes nobody sees:
    /// the server wrote `first` (and `second` with the next sequence
    /// number, when given) to one of its connections, waiting until it has.
    pub async fn server_wrote_kinds(
        &self,
        client: &str,
        first: crate::notification::Kind,
        second: Option<crate::notification::Kind>,
    ) -> Result<()> {
        let name = self.server_name(client)?;
        let (a, b) = (first.as_str(), second.map(|k| k.as_str()));
        let Some(r) = self
            .settled_record(client, |r, _| server::wrote_pair(r, &name, a, b).is_ok())
            .await?
        else {
            anyhow::bail!(
                "a client through a driver is judged by the server's record, and this target keeps none"
            );
        };
        server::wrote_pair(&r, &name, a, b).map_err(|e| self.unmet(client, e))?;
        Ok(())
    }

    /// The server wrote no push of `kind` (none at all, when `None`) to any
    /// connection of `client`, decodable or not, set-up replays included.
    pub async fn server_sent_none(&self, client: &str, kind: Option<Kind>) -> Result<()> {
        if self.env.is_none() {
            // A client of a server that is not the database under test.
            return Ok(());
        }
        let Some(r) = self.server_record(client).await? else {
            self.not_checked("what the server pushed to the client");
            return Ok(());
        };
        let name = self.server_name(client)?;
        let what = kind.map(|k| k.as_str());
        let n = server::pushes_sent(&r, &name, what);
        if n > 0 {
            let pushes: Vec<String> = r
                .named(&name)
                .flat_map(|c| {
                    c.pushes
                        .iter()
                        .filter(|p| what.is_none_or(|k| p.kind.eq_ignore_ascii_case(k)))
                        .map(move |p| {
                            format!(
                                "{} seq {:?} at {} to connection {}",
                                p.kind, p.seq, p.at, c.id
                            )
                        })
                })
                .collect();
            return Err(self.unmet(
                client,
                Unmet(format!(
                    "the server wrote {n} {} to connections of {client:?}:\n  {}",
                    what.unwrap_or("push(es)"),
                    pushes.join("\n  ")
                )),
            ));
        }
        Ok(())
    }

    /// Records that `what` could not be checked against this target, and
    /// why: on the console now, and in the living document, its JSON and
    /// cucumber JSON as the scenario's own state (never as checked).
    pub fn not_checked(&self, what: &str) {
        self.not_checked_because(
            what,
            "the target keeps no server record (a real cluster's fault injector has no GET /emulator/databases/{bdb_id}/record)",
        );
    }

    /// The same, for another reason than a missing server record.
    pub fn not_checked_because(&self, what: &str, why: &str) {
        let line = format!("{what}: {why}");
        eprintln!("not checked: {line}");
        self.unchecked.lock().unwrap().push(line);
    }
}

/// The server's record of the endpoint's last move: its grace.
#[cucumber::then(expr = "the server gave the endpoint's last move a grace of {duration}")]
async fn then_move_grace(
    w: &mut MaintWorld,
    grace: super::params::DurationParam,
) -> super::StepResult {
    let want = grace.bounded("the grace")?;
    let Some(r) = w.server_record_all().await? else {
        w.not_checked("the grace of the endpoint's move (the server keeps no record here)");
        return Ok(());
    };
    server::move_grace(&r, want, crate::timing::TIGHT_SLACK).map_err(|e| anyhow!("{}", e.0))?;
    Ok(())
}
