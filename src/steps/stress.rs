//! Load: many clients of many connections through several maintenance
//! actions at once, `When these maintenance actions are posted, ...`, and what
//! a client's users feel (`the p99 latency of "app" ...`).

use anyhow::anyhow;
use cucumber::gherkin::Step;
use cucumber::{given, then, when};

use super::clients::MAX_POOL;
use super::params::{parse_duration, DurationParam, ModeParam};
use super::{MaintWorld, StepResult};
use crate::fault_injector::Action;
use crate::timeline::{self, server};
use crate::timing::{SOCKET_SLACK, TRAFFIC_PHASE_MIN};
use tokio::time::Instant;

/// Names in `"a", "b" and "c"`.
fn names(list: &str) -> Vec<String> {
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Several clients alike: `clients "a", "b" and "c" with 150 connections
/// each and maintenance notifications enabled`.
#[given(
    regex = r#"^clients ((?:"[^"]+"(?:, | and )?)+) with (\d+) connections each and maintenance notifications (enabled|disabled|auto)$"#
)]
async fn given_clients(
    w: &mut MaintWorld,
    list: String,
    connections: String,
    mode: ModeParam,
) -> StepResult {
    let pool = match connections.parse() {
        Ok(n @ 1..=MAX_POOL) => n,
        _ => fail!("{connections:?} connections: a client has between 1 and {MAX_POOL}"),
    };
    let names = names(&list);
    if names.len() < 2 {
        fail!("name two clients or more, as in clients \"a\" and \"b\"; for one, use `a client \"a\" with ...`");
    }
    for name in names {
        w.create_client(&name, |o| {
            o.mode = mode.0;
            o.pool_size = pool;
        })
        .await?;
    }
    Ok(())
}

/// One row of a maintenance plan.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    action: &'static str,
    after: std::time::Duration,
}

/// Reads `| action | after |` rows: failover, migration or rebind, and the
/// time after the one before it was posted.
fn plan(rows: &[Vec<String>]) -> anyhow::Result<Vec<Planned>> {
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let [action, after] = row.as_slice() else {
            return Err(anyhow!(
                "row {}: two cells, | action | after |; got {row:?}",
                i + 1
            ));
        };
        if i == 0 && action.trim() == "action" {
            continue;
        }
        let action = match action.trim() {
            "failover" => "failover",
            "migration" => "migrate",
            "rebind" => "bind",
            other => {
                return Err(anyhow!(
                "row {}: unknown action {other:?}; the actions are failover, migration and rebind",
                i + 1
            ))
            }
        };
        let after = parse_duration(after.trim())
            .map_err(|e| anyhow!("row {}: {e}", i + 1))?
            .ok_or_else(|| anyhow!("row {}: after cannot be unbounded", i + 1))?;
        out.push(Planned { action, after });
    }
    if out.is_empty() {
        return Err(anyhow!("the table names no action"));
    }
    Ok(out)
}

/// Posts the actions of the table, each `after` the one before it, without
/// waiting for any to finish (the cluster queues them), then waits for all;
/// each must succeed.
#[when("these maintenance actions are posted, each the given time after the one before:")]
async fn when_actions_posted(w: &mut MaintWorld, step: &Step) -> StepResult {
    let table = step
        .table
        .as_ref()
        .ok_or_else(|| anyhow!("this step needs a table of | action | after |"))?;
    let planned = plan(&table.rows)?;
    let mut started = Vec::new();
    for p in planned {
        tokio::time::sleep(p.after).await;
        started.push(
            w.start_action(|bdb| match p.action {
                "failover" => Action::failover(bdb),
                "migrate" => Action::migrate(bdb),
                _ => Action::bind(bdb),
            })
            .await?,
        );
    }
    for i in started {
        w.finish_action(i).await?;
    }
    Ok(())
}

/// No client had more sockets open at once than its pool holds plus one new
/// connection per connection handing off.
#[then("no client ever had more connections open than its pool holds, beyond one new connection per handoff")]
async fn then_within_pool(w: &mut MaintWorld) -> StepResult {
    for name in w.clients.keys() {
        let c = w.client(name)?;
        let pool = c.options().pool_size;
        timeline::sockets_within(c.sockets().peak(), pool).map_err(|e| w.unmet(name, e))?;
    }
    Ok(())
}

/// The server's count decides: at no moment did it hold more connections of
/// a client than its pool, the handoffs it dials at once, one per request
/// its traffic keeps in flight (an old connection stays until they are
/// answered), and a slack.
#[then(
    "the server never held more connections of a client than its pool, its handoff workers and its requests in flight, and a few"
)]
async fn then_server_within_pool(w: &mut MaintWorld) -> StepResult {
    let names: Vec<String> = w.clients.keys().cloned().collect();
    for name in names {
        let c = w.client(&name)?;
        let in_flight = w
            .record(&name)?
            .traffic
            .as_ref()
            .map_or(0, |t| t.workload.concurrency());
        let bound = c.options().pool_size + c.options().handoff_workers + in_flight + SOCKET_SLACK;
        let Some(r) = w.server_record(&name).await? else {
            w.not_checked(&format!(
                "how many connections of {name:?} the server held at once"
            ));
            continue;
        };
        let server_name = w.server_name(&name)?;
        let (peak, _) = server::peak_open(&r, &server_name);
        tracing::info!(
            client = name,
            peak,
            bound,
            own_peak = c.sockets().peak(),
            "connections held at once"
        );
        server::open_at_most(&r, &server_name, bound).map_err(|e| w.unmet(&name, e))?;
    }
    Ok(())
}

impl MaintWorld {
    /// Stops the traffic; gives `client`'s report and its handoff window
    /// (first MOVING to last handoff).
    async fn traffic_in_handoff_window(
        &mut self,
        client: &str,
    ) -> anyhow::Result<(&crate::workload::Report, Instant, Instant)> {
        self.stop_traffic().await?;
        let (from, to) = self.moving_span(client).await?;
        let (report, _) = self.traffic_report(client)?;
        Ok((report, from, to))
    }

    /// While the connections of `client` moved, by the server's record (the
    /// first move that found some on the node it left, to the last of their
    /// arrivals and closes); the client's own account (its first MOVING to
    /// its last handoff) where the target keeps no record.
    async fn moving_span(&self, client: &str) -> anyhow::Result<(Instant, Instant)> {
        let clock = self.traffic_so_far(client)?.clock;
        if let Some(r) = self.server_record(client).await? {
            let name = self.server_name(client)?;
            let (from, to) = server::moving_span(&r, &name).ok_or_else(|| {
                self.unmet(
                    client,
                    timeline::Unmet("the server saw no connection of it move".into()),
                )
            })?;
            return Ok((clock.instant(from.0), clock.instant(to.0)));
        }
        self.not_checked(&format!(
            "when the connections of {client:?} moved (the client's account: its first MOVING to its last handoff)"
        ));
        let events = self.tracker.timeline(client);
        timeline::handoff_window(&events).ok_or_else(|| {
            self.unmet(
                client,
                timeline::Unmet("no MOVING followed by a handoff".into()),
            )
        })
    }
}

/// Throughput while the endpoint moves: every client's traffic completed,
/// from the move to the end of its grace (by the server's record; the
/// rebind action's own span, posted to ended, where the target keeps none),
/// at least half as many operations a second as before the scenario's
/// first action.
#[then("the traffic of every client kept at least half its pace from before the maintenance while the endpoint moved")]
async fn then_pace_kept(w: &mut MaintWorld) -> StepResult {
    pace_kept_in(w, Span::EndpointMove).await
}

/// The same over the whole maintenance, from the first action posted to
/// the last one ended, except while the server held every request (a
/// shard set switching over, by the server's record): there no client
/// completes anything, and outside them the traffic must move on.
#[then("the traffic of every client kept at least half its pace from before the maintenance throughout the maintenance, except while the server held every request")]
async fn then_pace_kept_throughout(w: &mut MaintWorld) -> StepResult {
    pace_kept_in(w, Span::Maintenance).await
}

/// Which stretch a pace claim is about.
#[derive(Clone, Copy, PartialEq)]
enum Span {
    /// The last endpoint move, to its grace end.
    EndpointMove,
    /// The first action posted to the last one ended.
    Maintenance,
}

async fn pace_kept_in(w: &mut MaintWorld, span: Span) -> StepResult {
    let (first_action, last_action) = match (w.actions.first(), w.actions.last()) {
        (Some(f), Some(l)) => (f.started, (l.started, l.ended.unwrap_or_else(Instant::now))),
        _ => fail!("no maintenance ran in this scenario"),
    };
    let last_ended = w
        .actions
        .iter()
        .map(|a| a.ended.unwrap_or_else(Instant::now))
        .max()
        .unwrap_or(last_action.1);
    let names = w.stop_traffic().await?;
    let record = w.server_record_all().await?;
    if span == Span::Maintenance && record.is_none() {
        w.not_checked(
            "when the server held every request (the pace is measured over the whole maintenance)",
        );
    }
    for name in names {
        let (report, _) = w.traffic_report(&name)?;
        let during = match (span, record.as_ref().and_then(|r| r.endpoint_moves.last())) {
            (Span::Maintenance, _) => (first_action, last_ended),
            (Span::EndpointMove, Some(m)) => (
                report.clock.instant(m.at.0),
                report.clock.instant(m.grace_end.0),
            ),
            (Span::EndpointMove, None) => last_action,
        };
        let held: Vec<(Instant, Instant)> = match (span, &record) {
            (Span::Maintenance, Some(r)) => r
                .switch_overs
                .iter()
                .map(|s| (report.clock.instant(s.from.0), report.clock.instant(s.to.0)))
                .collect(),
            _ => Vec::new(),
        };
        let start = report.successes.first().copied().unwrap_or(first_action);
        let (before, kept) = timeline::pace_kept(
            report,
            (start, first_action),
            during,
            &held,
            PACE_KEPT,
            TRAFFIC_PHASE_MIN,
        )
        .map_err(|e| w.unmet(&name, e))?;
        let what = match span {
            Span::EndpointMove => "while the endpoint moved",
            Span::Maintenance => "throughout the maintenance",
        };
        eprintln!(
            "{name:?}: {kept:.0} operations a second {what} ({:?}, {} switch-over(s) held every request), {before:.0} before the maintenance",
            during.1 - during.0,
            held.len()
        );
    }
    Ok(())
}

/// A stretch of traffic before any maintenance: the pace the traffic keeps
/// while connections move is measured against it.
#[given(expr = "the traffic runs for {duration} before any maintenance")]
async fn given_traffic_runs(w: &mut MaintWorld, d: DurationParam) -> StepResult {
    let d = d.bounded("a stretch of traffic")?;
    if !w.actions.is_empty() {
        fail!("a maintenance action ran already; put this step before the first `When`");
    }
    if !w.clients.values().any(|c| c.traffic.is_some()) {
        fail!("no traffic runs; start it with `Given steady traffic from \"app\"`");
    }
    tokio::time::sleep(d).await;
    Ok(())
}

/// The share of its pace before the maintenance a client's traffic keeps
/// while its connections move.
const PACE_KEPT: f64 = 0.5;

/// What a client's users feel while its connections move: the p99 latency of
/// its traffic from the first MOVING to the last handoff, against the rest.
#[then(
    expr = "the p99 latency of {string} while its connections moved was at most {float} times its p99 outside that"
)]
async fn then_latency_in_window(w: &mut MaintWorld, client: String, factor: f64) -> StepResult {
    let (report, from, to) = w.traffic_in_handoff_window(&client).await?;
    let (inside, outside) =
        timeline::p99_within_factor(report, from, to, factor).map_err(|e| w.unmet(&client, e))?;
    tracing::info!(client, ?inside, ?outside, window = ?(to - from), "p99 latency in and out of the handoffs");
    Ok(())
}

/// The same against a fixed bound: what a user of the client notices.
#[then(expr = "the p99 latency of {string} while its connections moved stayed under {duration}")]
async fn then_latency_in_window_under(
    w: &mut MaintWorld,
    client: String,
    bound: DurationParam,
) -> StepResult {
    let Some(bound) = bound.0 else {
        fail!("an unbounded latency bounds nothing; give a duration such as 100 ms");
    };
    let (report, from, to) = w.traffic_in_handoff_window(&client).await?;
    let p99 = timeline::p99_under(report, from, to, bound).map_err(|e| w.unmet(&client, e))?;
    tracing::info!(client, ?p99, window = ?(to - from), "p99 latency during the handoffs");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::steps::params::tests::rows;

    #[test]
    fn names_are_read_from_a_quoted_list() {
        assert_eq!(names(r#""a", "b" and "c""#), vec!["a", "b", "c"]);
        assert_eq!(names(r#""one" and "two""#), vec!["one", "two"]);
    }

    #[test]
    fn a_plan_reads_actions_and_delays_and_names_what_is_wrong() {
        let p = plan(&rows(&[
            ["action", "after"],
            ["failover", "0 s"],
            ["migration", "1 s"],
            ["rebind", "500 ms"],
        ]))
        .unwrap();
        assert_eq!(
            p,
            vec![
                Planned {
                    action: "failover",
                    after: Duration::ZERO
                },
                Planned {
                    action: "migrate",
                    after: Duration::from_secs(1)
                },
                Planned {
                    action: "bind",
                    after: Duration::from_millis(500)
                },
            ]
        );
        let err = |r: &[[&str; 2]]| plan(&rows(r)).unwrap_err().to_string();
        assert!(err(&[["reboot", "1 s"]]).contains("unknown action \"reboot\""));
        assert!(err(&[["failover", "soon"]]).contains("row 1"));
        assert!(err(&[["action", "after"]]).contains("names no action"));
    }
}
