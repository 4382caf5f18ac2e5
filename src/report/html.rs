//! The report as one self-contained page: askama renders `templates/report.html`
//! (styles and script inline, the report's JSON inline); each timeline is SVG
//! the template draws from the positions [`TimelineView`] computes here.

use anyhow::Result;
use askama::Template;

use super::{Band, Lane, LaneKind, Mark, Outcome, Run, Scenario, Timeline};

/// Width of a timeline, in SVG units.
pub const WIDTH: f64 = 1200.0;
/// Width of the lane labels.
pub const LABEL_WIDTH: f64 = 250.0;
/// Height of one lane.
pub const LANE_HEIGHT: f64 = 20.0;
/// Height of the time axis.
pub const AXIS_HEIGHT: f64 = 22.0;

const STYLE: &str = include_str!("../../templates/report.css");
const SCRIPT: &str = include_str!("../../templates/report.js");

#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    run: &'a Run,
    data: String,
    style: &'static str,
    script: &'static str,
    totals: Totals,
    tags: Vec<String>,
    features: Vec<FeatureView<'a>>,
}

struct Totals {
    scenarios: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
    /// Scenarios with a claim left unchecked on this target.
    not_checked: usize,
    /// Scenarios the client under test cannot run.
    not_applicable: usize,
    duration: String,
}

struct FeatureView<'a> {
    name: &'a str,
    path: &'a str,
    paragraphs: Vec<&'a str>,
    scenarios: Vec<ScenarioView<'a>>,
}

struct ScenarioView<'a> {
    s: &'a Scenario,
    outcome: &'static str,
    tags: String,
    duration: String,
    steps: Vec<StepView<'a>>,
    timeline: Option<TimelineView>,
    marks: usize,
    bands: usize,
}

struct StepView<'a> {
    keyword: &'a str,
    text: &'a str,
    outcome: &'static str,
    at: String,
    took: String,
    error: Option<&'a str>,
    table: &'a [Vec<String>],
    background: bool,
}

/// A timeline laid out for drawing.
pub struct TimelineView {
    /// SVG height.
    pub height: f64,
    /// Lanes, top to bottom.
    pub lanes: Vec<LaneView>,
    /// Axis ticks: x and label.
    pub ticks: Vec<(f64, String)>,
    /// The failed step's x, and its tooltip.
    pub failure: Option<(f64, String)>,
    /// Lane by lane at the failure: lane, last mark, band in force.
    pub at_failure: Vec<(String, String, String)>,
}

/// A lane laid out.
pub struct LaneView {
    /// Top.
    pub y: f64,
    /// Middle.
    pub mid: f64,
    /// Label.
    pub label: String,
    /// `steps`, `injector`, `traffic`, `connection`, `connections`.
    pub kind: &'static str,
    /// Bands: x, width, class, tooltip, and the text written in it (steps
    /// and actions, when there is room).
    pub bands: Vec<(f64, f64, String, String, String)>,
    /// Marks: x, y, class, tooltip. Notifications sit a little above the
    /// middle and handoff steps a little below, so that a MOVING and the
    /// handoff it started at once are both seen.
    pub marks: Vec<(f64, f64, String, String)>,
    /// Throughput as SVG polyline points, empty when none.
    pub throughput: String,
}

fn secs(ms: f64) -> String {
    format!("+{:.3} s", ms / 1e3)
}

fn lane_kind(k: LaneKind) -> &'static str {
    match k {
        LaneKind::Steps => "steps",
        LaneKind::Injector => "injector",
        LaneKind::Traffic => "traffic",
        LaneKind::Connection => "connection",
        LaneKind::Connections => "connections",
    }
}

/// A tick step that gives at most about ten ticks over `span_ms`.
fn tick_step(span_ms: f64) -> f64 {
    const STEPS: [f64; 14] = [
        10.0, 20.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 3e4, 6e4,
    ];
    STEPS
        .into_iter()
        .find(|s| span_ms / s <= 10.0)
        .unwrap_or(6e4 * (span_ms / 6e5).ceil().max(1.0))
}

impl TimelineView {
    /// Lays `t` out.
    pub fn new(t: &Timeline) -> Self {
        let span = t.span_ms.max(1.0);
        let x = |ms: f64| LABEL_WIDTH + (ms.clamp(0.0, span) / span) * (WIDTH - LABEL_WIDTH - 10.0);
        let lanes: Vec<LaneView> = t
            .lanes
            .iter()
            .enumerate()
            .map(|(i, l)| Self::lane(l, AXIS_HEIGHT + i as f64 * LANE_HEIGHT, &x))
            .collect();
        let step = tick_step(span);
        let ticks = (0..)
            .map(|i| i as f64 * step)
            .take_while(|ms| *ms <= span)
            .map(|ms| (x(ms), format!("{:.1} s", ms / 1e3)))
            .collect();
        TimelineView {
            height: AXIS_HEIGHT + t.lanes.len() as f64 * LANE_HEIGHT + 4.0,
            lanes,
            ticks,
            failure: t.failure.as_ref().map(|f| {
                (
                    x(f.at_ms),
                    format!("{} {} failed: {}", secs(f.at_ms), f.step, f.error),
                )
            }),
            at_failure: t
                .failure
                .iter()
                .flat_map(|f| &f.lanes)
                .map(|l| {
                    (
                        l.lane.clone(),
                        l.last
                            .as_ref()
                            .map(|m| format!("{} {}", secs(m.at_ms), m.label))
                            .unwrap_or_default(),
                        l.within.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    fn lane(l: &Lane, y: f64, x: &impl Fn(f64) -> f64) -> LaneView {
        let labelled = matches!(l.kind, LaneKind::Steps | LaneKind::Injector);
        let band = |b: &Band| {
            let (x0, x1) = (x(b.from_ms), x(b.to_ms));
            let w = (x1 - x0).max(1.5);
            (
                x0,
                w,
                b.class.clone(),
                format!("{} to {}: {}", secs(b.from_ms), secs(b.to_ms), b.label),
                if labelled {
                    fit(&b.label, w)
                } else {
                    String::new()
                },
            )
        };
        let mid = y + LANE_HEIGHT / 2.0;
        let mark = |m: &Mark| {
            let dy = match m.class.as_str() {
                "notification" | "malformed" | "moving-ignored" => -3.5,
                c if c.starts_with("handoff") => 3.5,
                _ => 0.0,
            };
            (
                x(m.at_ms),
                mid + dy,
                m.class.clone(),
                format!("{} {}", secs(m.at_ms), m.label),
            )
        };
        let peak = l.throughput.iter().map(|p| p.1).fold(0.0, f64::max);
        let throughput = if peak > 0.0 {
            l.throughput
                .iter()
                .map(|(ms, v)| {
                    format!(
                        "{:.1},{:.1}",
                        x(*ms),
                        y + LANE_HEIGHT - 2.0 - v / peak * (LANE_HEIGHT - 4.0)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            String::new()
        };
        LaneView {
            y,
            mid,
            label: if peak > 0.0 {
                format!("{} (peak {peak:.0} op/s)", l.label)
            } else {
                l.label.clone()
            },
            kind: lane_kind(l.kind),
            bands: l.bands.iter().map(band).collect(),
            marks: l.marks.iter().map(mark).collect(),
            throughput,
        }
    }
}

/// As much of `text` as fits in `width` SVG units (about 6 per character),
/// with an ellipsis when cut; nothing when not even a word fits.
fn fit(text: &str, width: f64) -> String {
    let room = ((width - 6.0) / 6.0).floor().max(0.0) as usize;
    if text.chars().count() <= room {
        return text.to_string();
    }
    if room < 8 {
        return String::new();
    }
    let cut: String = text.chars().take(room - 1).collect();
    format!("{}\u{2026}", cut.trim_end())
}

fn scenario_view(s: &Scenario) -> ScenarioView<'_> {
    let (marks, bands) = s.timeline.as_ref().map_or((0, 0), |t| {
        t.lanes
            .iter()
            .fold((0, 0), |(m, b), l| (m + l.marks.len(), b + l.bands.len()))
    });
    ScenarioView {
        s,
        outcome: s.outcome.as_str(),
        tags: s.tags.join(" "),
        duration: format!("{:.2} s", s.duration_ms / 1e3),
        steps: s
            .steps
            .iter()
            .map(|st| StepView {
                keyword: &st.keyword,
                text: &st.text,
                outcome: if st.at_ms.is_none() && st.outcome == Outcome::Skipped {
                    "not-run"
                } else {
                    st.outcome.as_str()
                },
                at: st.at_ms.map(secs).unwrap_or_default(),
                took: st
                    .duration_ms
                    .map(|d| format!("{:.0} ms", d))
                    .unwrap_or_default(),
                error: st.error.as_deref(),
                table: &st.table,
                background: st.background,
            })
            .collect(),
        timeline: s.timeline.as_ref().map(TimelineView::new),
        marks,
        bands,
    }
}

/// The page for `run`, carrying `data` (the run's JSON) inline.
pub fn render(run: &Run, data: &str) -> Result<String> {
    let mut tags: Vec<String> = run
        .scenarios()
        .flat_map(|(_, s)| s.tags.iter().cloned())
        .collect();
    tags.sort();
    tags.dedup();
    let count = |o: Outcome| run.scenarios().filter(|(_, s)| s.outcome == o).count();
    let page = Page {
        run,
        // Inline in a <script> element: nothing in it may close the element.
        data: data.replace("</", "<\\/"),
        style: STYLE,
        script: SCRIPT,
        totals: Totals {
            scenarios: run.scenarios().count(),
            passed: count(Outcome::Passed),
            failed: count(Outcome::Failed),
            skipped: count(Outcome::Skipped),
            not_checked: run
                .scenarios()
                .filter(|(_, s)| !s.not_checked.is_empty())
                .count(),
            not_applicable: run.not_applicable.len(),
            duration: format!("{:.1} s", run.duration_ms / 1e3),
        },
        tags,
        features: run
            .features
            .iter()
            .map(|f| FeatureView {
                name: &f.name,
                path: &f.path,
                paragraphs: f.description.split("\n\n").collect(),
                scenarios: f.scenarios.iter().map(scenario_view).collect(),
            })
            .collect(),
    };
    Ok(page.render()?)
}

/// The height in CSS pixels a screenshot of scenario `anchor` alone needs.
pub fn focus_height(run: &Run, anchor: &str) -> Option<u32> {
    let (_, s) = run.scenarios().find(|(_, s)| s.anchor == anchor)?;
    let t = s.timeline.as_ref()?;
    let lanes = t.lanes.len() as f64;
    let table = t
        .failure
        .as_ref()
        .map_or(0.0, |f| 60.0 + f.lanes.len() as f64 * 24.0);
    Some((110.0 + (AXIS_HEIGHT + lanes * LANE_HEIGHT) * 1.1 + table) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_cut_to_its_band() {
        assert_eq!(fit("When a failover", 200.0), "When a failover");
        assert_eq!(
            fit("When the database endpoint is rebound", 100.0),
            "When the datab\u{2026}"
        );
        assert_eq!(fit("When the database endpoint is rebound", 40.0), "");
    }

    #[test]
    fn ticks_stay_about_ten() {
        assert_eq!(tick_step(1000.0), 100.0);
        assert_eq!(tick_step(4200.0), 500.0);
        assert_eq!(tick_step(95_000.0), 10_000.0);
        assert_eq!(tick_step(1_000_000.0), 120_000.0);
    }
}
