//! What a scenario's World hands over when it ends ([`Capture`]), and the
//! timeline drawn from it: pure functions over the events, so a hand-made
//! capture gives a known timeline.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    Band, Counts, FailureMark, Lane, LaneAtFailure, LaneKind, Mark, Outcome, Setting, Step,
    Timeline,
};
use crate::client::{ClientEvent, EventKind, MaintState};

/// Connections of one client drawn one per lane; the rest share one lane.
pub const MAX_CONNECTION_LANES: usize = 24;

/// Buckets the throughput line is drawn from (at least 50 ms each).
const THROUGHPUT_BUCKETS: f64 = 120.0;

/// One moment read on the monotonic clock and on the wall clock, so that
/// event times ([`Instant`]) and the runner's times ([`SystemTime`]) meet.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Monotonic.
    pub instant: Instant,
    /// Wall.
    pub wall: SystemTime,
}

impl Clock {
    /// Now, on both clocks.
    pub fn now() -> Self {
        Clock {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `at` on the wall clock.
    pub fn wall(&self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.wall + (at - self.instant)
        } else {
            self.wall - (self.instant - at)
        }
    }
}

/// A fault injector action as the scenario ran it.
#[derive(Clone, Debug)]
pub struct ActionSpan {
    /// Its type (`failover`).
    pub kind: String,
    /// Its id.
    pub id: String,
    /// When it was posted.
    pub posted: Instant,
    /// When the scenario saw it end.
    pub ended: Option<Instant>,
    /// Its terminal status, once known.
    pub status: Option<String>,
}

/// A client's background traffic.
#[derive(Clone, Debug, Default)]
pub struct TrafficCapture {
    /// The client.
    pub client: String,
    /// When each operation succeeded.
    pub successes: Vec<Instant>,
    /// Each failed operation: when, its class, the operation, the error.
    pub errors: Vec<(Instant, String, String, String)>,
}

/// What a scenario leaves for the report.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The scenario's clocks, read together.
    pub clock: Clock,
    /// Every client event, in order.
    pub events: Vec<ClientEvent>,
    /// The actions it ran, in order.
    pub actions: Vec<ActionSpan>,
    /// The background traffic of each client that had some.
    pub traffic: Vec<TrafficCapture>,
    /// The clients, in the order they were made, with their settings.
    pub clients: Vec<(String, Vec<Setting>)>,
    /// Acknowledged writes read back intact.
    pub writes_checked: usize,
    /// What its steps could not check against this target, and why.
    pub not_checked: Vec<String>,
}

/// Captures of the run, by feature file and scenario line: the suite's
/// after-hook puts, the report's writer takes.
#[derive(Clone, Default)]
pub struct Captures(Arc<Mutex<HashMap<(PathBuf, usize), Capture>>>);

impl Captures {
    /// Keeps the capture of the scenario at `line` of `feature`.
    pub fn put(&self, feature: PathBuf, line: usize, capture: Capture) {
        self.0.lock().unwrap().insert((feature, line), capture);
    }

    /// Takes the capture of the scenario at `line` of `feature`.
    pub fn take(&self, feature: &std::path::Path, line: usize) -> Option<Capture> {
        self.0
            .lock()
            .unwrap()
            .remove(&(feature.to_path_buf(), line))
    }
}

/// Milliseconds from `zero` to `at` (negative before it).
pub fn ms_between(zero: SystemTime, at: SystemTime) -> f64 {
    match at.duration_since(zero) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// What the capture counted.
pub fn counts(c: &Capture) -> Counts {
    let mut n = Counts {
        writes_checked: c.writes_checked,
        ..Counts::default()
    };
    for e in &c.events {
        match e.kind {
            EventKind::Notification { .. } => n.notifications += 1,
            EventKind::HandoffSucceeded { .. } => n.handoffs += 1,
            EventKind::HandoffFailed { .. } => n.handoff_failures += 1,
            _ => {}
        }
    }
    for t in &c.traffic {
        n.operations += t.successes.len() as u64;
        n.errors += t.errors.len();
    }
    n
}

/// The timeline of a scenario that started at `zero` and took `span_ms`,
/// whose steps are `steps` (times already relative to `zero`).
pub fn timeline(c: &Capture, zero: SystemTime, span_ms: f64, steps: &[Step]) -> Timeline {
    let ms = |at: Instant| ms_between(zero, c.clock.wall(at)).clamp(0.0, span_ms);
    let mut lanes = vec![steps_lane(steps), injector_lane(c, &ms, span_ms)];
    for (client, _) in &c.clients {
        if let Some(t) = c.traffic.iter().find(|t| &t.client == client) {
            lanes.push(traffic_lane(t, &ms, span_ms));
        }
        lanes.extend(connection_lanes(c, client, &ms, span_ms));
    }
    // Events of a client the capture does not list (made outside the steps).
    let listed: Vec<&String> = c.clients.iter().map(|(n, _)| n).collect();
    let mut others: Vec<&String> = c
        .events
        .iter()
        .map(|e| &e.client)
        .filter(|n| !listed.contains(n))
        .collect();
    others.dedup();
    others.sort();
    others.dedup();
    for client in others {
        lanes.extend(connection_lanes(c, client, &ms, span_ms));
    }
    let failure = steps
        .iter()
        .find(|s| s.outcome == Outcome::Failed)
        .map(|s| {
            let at_ms = s.at_ms.unwrap_or(0.0) + s.duration_ms.unwrap_or(0.0);
            FailureMark {
                at_ms,
                step: format!("{} {}", s.keyword.trim(), s.text),
                error: s.error.clone().unwrap_or_default(),
                lanes: at_failure(&lanes, at_ms),
            }
        });
    Timeline {
        span_ms,
        lanes,
        failure,
    }
}

fn steps_lane(steps: &[Step]) -> Lane {
    Lane {
        kind: LaneKind::Steps,
        label: "steps".into(),
        bands: steps
            .iter()
            .filter_map(|s| {
                let from = s.at_ms?;
                Some(Band {
                    class: format!("step-{}", s.outcome.as_str()),
                    from_ms: from,
                    to_ms: from + s.duration_ms.unwrap_or(0.0),
                    label: format!("{} {}", s.keyword.trim(), s.text),
                })
            })
            .collect(),
        ..Lane::default()
    }
}

fn injector_lane(c: &Capture, ms: &impl Fn(Instant) -> f64, span_ms: f64) -> Lane {
    let mut lane = Lane {
        kind: LaneKind::Injector,
        label: "fault injector".into(),
        ..Lane::default()
    };
    for a in &c.actions {
        let status = a.status.as_deref().unwrap_or("still running at the end");
        lane.bands.push(Band {
            class: "action".into(),
            from_ms: ms(a.posted),
            to_ms: a.ended.map_or(span_ms, ms),
            label: format!("{} {}: {status}", a.kind, a.id),
        });
        lane.marks.push(Mark {
            class: "action-posted".into(),
            at_ms: ms(a.posted),
            label: format!("{} posted ({})", a.kind, a.id),
            conn: None,
        });
        if let Some(end) = a.ended {
            lane.marks.push(Mark {
                class: "action-ended".into(),
                at_ms: ms(end),
                label: format!("{} ended: {status}", a.kind),
                conn: None,
            });
        }
    }
    lane
}

fn traffic_lane(t: &TrafficCapture, ms: &impl Fn(Instant) -> f64, span_ms: f64) -> Lane {
    let width = (span_ms / THROUGHPUT_BUCKETS).max(50.0);
    let buckets = (span_ms / width).ceil().max(1.0) as usize;
    let mut per = vec![0u64; buckets];
    for &at in &t.successes {
        let i = ((ms(at) / width) as usize).min(buckets - 1);
        per[i] += 1;
    }
    Lane {
        kind: LaneKind::Traffic,
        label: format!("{} traffic", t.client),
        client: Some(t.client.clone()),
        marks: t
            .errors
            .iter()
            .map(|(at, class, op, error)| Mark {
                class: "error".into(),
                at_ms: ms(*at),
                label: format!("{op}: {class} error: {error}"),
                conn: None,
            })
            .collect(),
        throughput: per
            .iter()
            .enumerate()
            .map(|(i, &n)| ((i as f64 + 0.5) * width, n as f64 * 1e3 / width))
            .collect(),
        ..Lane::default()
    }
}

/// One lane per connection of `client`, in the order they appeared, up to
/// [`MAX_CONNECTION_LANES`]; the rest share one more.
fn connection_lanes(
    c: &Capture,
    client: &str,
    ms: &impl Fn(Instant) -> f64,
    span_ms: f64,
) -> Vec<Lane> {
    let mut order: Vec<u64> = Vec::new();
    let mut by_conn: BTreeMap<u64, Vec<&ClientEvent>> = BTreeMap::new();
    for e in c.events.iter().filter(|e| e.client == client) {
        if !by_conn.contains_key(&e.conn) {
            order.push(e.conn);
        }
        by_conn.entry(e.conn).or_default().push(e);
    }
    let mut lanes: Vec<Lane> = Vec::new();
    for (i, conn) in order.iter().enumerate() {
        let (bands, marks, endpoint) = connection_story(&by_conn[conn], ms, span_ms);
        if i < MAX_CONNECTION_LANES {
            lanes.push(Lane {
                kind: LaneKind::Connection,
                label: match endpoint {
                    Some(ep) => format!("{client} #{conn} ({ep})"),
                    None => format!("{client} #{conn}"),
                },
                client: Some(client.into()),
                conns: vec![*conn],
                bands,
                marks,
                throughput: Vec::new(),
            });
            continue;
        }
        if i == MAX_CONNECTION_LANES {
            lanes.push(Lane {
                kind: LaneKind::Connections,
                client: Some(client.into()),
                ..Lane::default()
            });
        }
        let rest = lanes.last_mut().expect("pushed above");
        rest.conns.push(*conn);
        rest.bands.extend(bands);
        rest.marks.extend(marks);
    }
    if let Some(rest) = lanes.last_mut().filter(|l| l.kind == LaneKind::Connections) {
        rest.label = format!("{client}: {} more connections", rest.conns.len());
        rest.marks.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        rest.bands.sort_by(|a, b| a.from_ms.total_cmp(&b.from_ms));
    }
    lanes
}

/// The bands and marks of one connection, and the endpoint it first used.
fn connection_story(
    events: &[&ClientEvent],
    ms: &impl Fn(Instant) -> f64,
    span_ms: f64,
) -> (Vec<Band>, Vec<Mark>, Option<String>) {
    let mut bands = Vec::new();
    let mut marks = Vec::new();
    let mut first_endpoint = None;
    let mut relaxed: Option<(f64, Option<Duration>)> = None;
    let mut handoff: Option<(f64, i64, String)> = None;
    for e in events {
        let at = ms(e.at);
        let mut mark = |class: &str, label: String| {
            marks.push(Mark {
                class: class.into(),
                at_ms: at,
                label,
                conn: Some(e.conn),
            })
        };
        match &e.kind {
            EventKind::Connected { endpoint, maint } => {
                let again = first_endpoint.is_some();
                first_endpoint.get_or_insert_with(|| endpoint.clone());
                let how = match maint {
                    MaintState::On(Some(t)) => format!("notifications on, MOVING as {t}"),
                    MaintState::On(None) => "notifications on".into(),
                    MaintState::Off => "notifications off".into(),
                    MaintState::Refused(why) => format!("notifications refused: {why}"),
                };
                if again {
                    mark("connected", format!("reconnected to {endpoint} ({how})"));
                } else {
                    mark("connected", format!("connected to {endpoint} ({how})"));
                }
            }
            EventKind::Notification {
                notification,
                at_setup,
            } => mark(
                "notification",
                if *at_setup {
                    format!("{notification} (replayed at set-up)")
                } else {
                    notification.to_string()
                },
            ),
            EventKind::MalformedPush { name, error } => {
                mark("malformed", format!("malformed {name} dropped: {error}"))
            }
            EventKind::PushIgnored { name } => {
                mark("push-ignored", format!("{name} push left alone"))
            }
            EventKind::Relaxed { timeout } => {
                if relaxed.is_none() {
                    relaxed = Some((at, *timeout));
                } else if let Some(r) = relaxed.as_mut() {
                    r.1 = *timeout;
                }
            }
            EventKind::Unrelaxed { timeout } => {
                if let Some((from, during)) = relaxed.take() {
                    bands.push(Band {
                        class: "relaxed".into(),
                        from_ms: from,
                        to_ms: at,
                        label: format!(
                            "relaxed: timeout {}, back to {}",
                            crate::timeline::show(during),
                            crate::timeline::show(*timeout)
                        ),
                    });
                }
            }
            EventKind::HandoffStarted { seq, endpoint } => {
                handoff = Some((at, *seq, endpoint.clone()));
                mark(
                    "handoff-started",
                    format!("handoff to {endpoint} (MOVING {seq})"),
                );
            }
            EventKind::HandoffAttemptFailed {
                seq,
                endpoint,
                reason,
            } => mark(
                "handoff-attempt-failed",
                format!("handoff attempt to {endpoint} (MOVING {seq}) failed: {reason}"),
            ),
            EventKind::HandoffSucceeded { seq, endpoint } => {
                if let Some((from, _, _)) = handoff.take() {
                    bands.push(Band {
                        class: "handoff".into(),
                        from_ms: from,
                        to_ms: at,
                        label: format!("handoff to {endpoint} (MOVING {seq})"),
                    });
                }
                mark(
                    "handoff-succeeded",
                    format!("handed off to {endpoint} (MOVING {seq})"),
                );
            }
            EventKind::HandoffFailed {
                seq,
                endpoint,
                reason,
            } => {
                handoff = None;
                mark(
                    "handoff-failed",
                    format!("handoff to {endpoint} (MOVING {seq}) given up: {reason}"),
                );
            }
            EventKind::MovingIgnored { seq } => mark(
                "moving-ignored",
                format!("MOVING {seq} ignored: already handled"),
            ),
            EventKind::Disconnected { endpoint } => {
                mark("disconnected", format!("{endpoint} closed the connection"))
            }
            EventKind::Resubscribed { endpoint, channels } => mark(
                "resubscribed",
                format!("subscribed again to {channels} channel(s) on {endpoint}"),
            ),
            EventKind::SlotMapUpdated { seq, moves, slots } => mark(
                "slot-map-updated",
                format!("slot map updated by SMIGRATED {seq}: {slots} slot(s) in {moves} move(s)"),
            ),
            EventKind::SlotMovesKnown { seq } => mark(
                "slot-moves-known",
                format!("SMIGRATED {seq} changed nothing: its moves were applied already"),
            ),
            EventKind::Redirected {
                kind,
                slot,
                endpoint,
            } => mark(
                "redirected",
                format!("{kind} slot {slot}: followed to {endpoint}"),
            ),
            EventKind::Observed { what } => mark("observed", format!("the driver saw: {what}")),
        }
    }
    if let Some((from, during)) = relaxed {
        bands.push(Band {
            class: "relaxed".into(),
            from_ms: from,
            to_ms: span_ms,
            label: format!(
                "relaxed: timeout {} until the end",
                crate::timeline::show(during)
            ),
        });
    }
    if let Some((from, seq, endpoint)) = handoff {
        bands.push(Band {
            class: "handoff".into(),
            from_ms: from,
            to_ms: span_ms,
            label: format!("handoff to {endpoint} (MOVING {seq}) unfinished at the end"),
        });
    }
    (bands, marks, first_endpoint)
}

/// Lane by lane, the last mark at or before `at_ms` and the band in force
/// then (the steps lane is left out: the failure names its step).
pub fn at_failure(lanes: &[Lane], at_ms: f64) -> Vec<LaneAtFailure> {
    lanes
        .iter()
        .filter(|l| l.kind != LaneKind::Steps)
        .map(|l| LaneAtFailure {
            lane: l.label.clone(),
            last: l.marks.iter().rfind(|m| m.at_ms <= at_ms).cloned(),
            within: l
                .bands
                .iter()
                .rfind(|b| b.from_ms <= at_ms && at_ms <= b.to_ms)
                .map(|b| b.label.clone()),
        })
        .filter(|s| s.last.is_some() || s.within.is_some())
        .collect()
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
