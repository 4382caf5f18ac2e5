//! Claims the requests decide: how each request of the traffic ended and how
//! long it took, set against the maintenance windows the server opened (the
//! pushes its record says it wrote). A client's relaxed timeout is a
//! promise about its requests: one the server holds longer than the
//! configured timeout while a window is open is answered, not timed out.
//! That is judged here from outside the client; what the client says of its
//! own timeouts only explains a failure.

use std::time::{Duration, SystemTime};

use super::{Claim, Unmet};
use crate::client::ClientError;
use crate::duration_text::show;
use crate::timing::BAND_SLACK;
use crate::workload::Report;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server's reply reached the caller.
    Answered,
    /// The client gave up waiting.
    TimedOut,
    /// Any other failure.
    Failed,
}

/// One request of the traffic, on the wall clock (the server's record's).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// When the caller sent it.
    pub sent: SystemTime,
    /// From sending to its end.
    pub took: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// Every request of a traffic report (held `BLPOP`s answered are not in it:
/// the client adds their block time to their timeout).
pub fn requests(report: &Report) -> Vec<Request> {
    let answered = report.latencies.iter().map(|(done, took)| Request {
        sent: report.clock.wall(*done - *took),
        took: *took,
        outcome: Outcome::Answered,
    });
    let failed = report
        .errors
        .iter()
        .filter(|e| !e.op.starts_with("BLPOP"))
        .map(|e| Request {
            sent: report.clock.wall(e.sent),
            took: e.at.saturating_duration_since(e.sent),
            outcome: match e.error {
                ClientError::Timeout { .. } => Outcome::TimedOut,
                _ => Outcome::Failed,
            },
        });
    answered.chain(failed).collect()
}

/// A span during which the server had a maintenance window open on the
/// client's connections: from the start notification it wrote to the
/// completion it wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// When the start was written (the last one, where several
    /// connections had it).
    pub from: SystemTime,
    /// When the completion was written (the first one).
    pub to: SystemTime,
}

impl Window {
    fn length(&self) -> Duration {
        self.to.duration_since(self.from).unwrap_or_default()
    }
}

/// Windows open on every connection at once: spans that overlap are
/// narrowed to what they share (a window is open when all had it).
pub fn shared_windows(mut spans: Vec<Window>) -> Vec<Window> {
    spans.sort_by_key(|w| w.from);
    let mut out: Vec<Window> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(last) if s.from < last.to => {
                last.from = last.from.max(s.from);
                last.to = last.to.min(s.to);
            }
            _ => out.push(s),
        }
    }
    out.retain(|w| w.from < w.to);
    out
}

/// What a claim of relaxation expects of the requests inside a window.
#[derive(Clone, Copy, Debug)]
pub struct Relaxed {
    /// A request the server held longer than this inside the window must
    /// have been answered (the configured timeout, or the relaxed one where
    /// the claim is that a longer configured timeout was kept).
    pub beyond: Duration,
    /// The timeout inside the window, when the claim names it (`Some(None)`:
    /// unbounded): no request times out well before it, none is answered
    /// well after it.
    pub to: Option<Option<Duration>>,
}

/// Relaxation, judged by the requests: in every window, a request whose
/// `beyond` ran out while the window was open was answered anyway, no
/// request timed out sooner than the window's timeout, and (where the claim
/// names the timeout) none was answered well after it. Returns, per window,
/// the longest wait that was answered.
pub fn relaxed_by_requests(
    windows: &[Window],
    reqs: &[Request],
    expect: Relaxed,
) -> Claim<Vec<Duration>> {
    if windows.is_empty() {
        return Err(Unmet(
            "the server's record shows no maintenance window on the client's connections".into(),
        ));
    }
    let mut evidence = Vec::new();
    for w in windows {
        let inside: Vec<&Request> = reqs
            .iter()
            .filter(|r| r.sent >= w.from && r.sent + expect.beyond.min(r.took) <= w.to)
            .collect();
        let what = format!(
            "the window the server held open for {}",
            show(Some(w.length()))
        );
        let early = |r: &&&Request| match expect.to {
            None => r.took < expect.beyond + BAND_SLACK,
            Some(None) => true,
            Some(Some(t)) => r.took + BAND_SLACK < t,
        };
        if let Some(r) = inside
            .iter()
            .find(|r| r.outcome == Outcome::TimedOut && early(r))
        {
            return Err(Unmet(format!(
                "a request sent inside {what} timed out after {}, {}",
                show(Some(r.took)),
                match expect.to {
                    Some(Some(t)) =>
                        format!("well before the window's timeout of {}", show(Some(t))),
                    Some(None) => "though its timeout is unbounded".into(),
                    None => format!(
                        "not later than the configured {}: it was not relaxed",
                        show(Some(expect.beyond))
                    ),
                }
            )));
        }
        if let Some(Some(t)) = expect.to {
            if let Some(r) = inside
                .iter()
                .filter(|r| r.outcome != Outcome::Failed)
                .find(|r| r.took > t + BAND_SLACK)
            {
                return Err(Unmet(format!(
                    "a request sent inside {what} {} after {}, well beyond the window's timeout of {}",
                    if r.outcome == Outcome::Answered { "was answered" } else { "timed out" },
                    show(Some(r.took)),
                    show(Some(t))
                )));
            }
        }
        let held: Vec<&&Request> = inside.iter().filter(|r| r.took > expect.beyond).collect();
        let longest = held
            .iter()
            .filter(|r| r.outcome == Outcome::Answered)
            .map(|r| r.took)
            .max();
        match longest {
            Some(took) => evidence.push(took),
            None => {
                let slow: Vec<String> = reqs
                    .iter()
                    .filter(|r| r.took > expect.beyond / 2)
                    .map(|r| {
                        format!(
                            "sent {} the window opened, {:?} after {}",
                            offset(w.from, r.sent),
                            r.outcome,
                            show(Some(r.took))
                        )
                    })
                    .collect();
                return Err(Unmet(format!(
                    "no request held longer than {} inside {what} was answered ({} sent inside it, {} held that long, {} timed out): nothing shows a longer timeout; the slow requests: {}",
                    show(Some(expect.beyond)),
                    inside.len(),
                    held.len(),
                    inside.iter().filter(|r| r.outcome == Outcome::TimedOut).count(),
                    if slow.is_empty() { "none".to_string() } else { slow.join("; ") }
                )));
            }
        }
    }
    Ok(evidence)
}

/// `t` relative to `origin`, in words ("1.2 s after", "300 ms before").
fn offset(origin: SystemTime, t: SystemTime) -> String {
    match t.duration_since(origin) {
        Ok(d) => format!("{} after", show(Some(d))),
        Err(e) => format!("{} before", show(Some(e.duration()))),
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
