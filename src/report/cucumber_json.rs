//! The run in the cucumber JSON format, the one report tools (Allure,
//! cucumber-reporting, Xray, ...) read: features, their scenarios
//! (`elements`) and steps with a `result`. Each scenario's timeline rides
//! along as an `application/json` embedding of an `after` hook, and its
//! summary counts as a `text/plain` one.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Outcome, Run};

/// One feature.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonFeature {
    /// The feature file.
    pub uri: String,
    /// Slug of the name.
    pub id: String,
    /// `Feature`.
    pub keyword: String,
    /// Name.
    pub name: String,
    /// Narrative.
    pub description: String,
    /// Line of the keyword.
    pub line: usize,
    /// Tags, with their `@`.
    pub tags: Vec<JsonTag>,
    /// Scenarios.
    pub elements: Vec<JsonElement>,
}

/// A tag.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonTag {
    /// `@name`.
    pub name: String,
    /// Line.
    pub line: usize,
}

/// One scenario.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonElement {
    /// `feature-id;scenario-slug`.
    pub id: String,
    /// `Scenario`.
    pub keyword: String,
    /// `scenario`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Line.
    pub line: usize,
    /// Tags, with their `@`.
    pub tags: Vec<JsonTag>,
    /// Steps.
    pub steps: Vec<JsonStep>,
    /// The timeline, as an embedding.
    pub after: Vec<JsonHook>,
}

/// One step.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonStep {
    /// `Given `, with its trailing space as the format has it.
    pub keyword: String,
    /// The step's text.
    pub name: String,
    /// Line.
    pub line: usize,
    /// What happened.
    pub result: JsonResult,
    /// Its data table.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub rows: Vec<JsonRow>,
}

/// A data table row.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonRow {
    /// Cells.
    pub cells: Vec<String>,
}

/// A result.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonResult {
    /// `passed`, `failed`, `skipped`, `undefined`.
    pub status: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// A hook with embeddings.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonHook {
    /// Where it comes from.
    #[serde(rename = "match")]
    pub matched: JsonMatch,
    /// Its result.
    pub result: JsonResult,
    /// What it attached.
    pub embeddings: Vec<JsonEmbedding>,
}

/// Where a hook comes from.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonMatch {
    /// A name.
    pub location: String,
}

/// An attachment.
#[derive(Debug, Serialize, Deserialize)]
pub struct JsonEmbedding {
    /// MIME type.
    pub mime_type: String,
    /// Base64 of the content.
    pub data: String,
    /// What it is.
    pub name: String,
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn tags(tags: &[String], line: usize) -> Vec<JsonTag> {
    tags.iter()
        .map(|t| JsonTag {
            name: format!("@{}", t.trim_start_matches('@')),
            line,
        })
        .collect()
}

fn embed(mime_type: &str, name: &str, bytes: &[u8]) -> JsonEmbedding {
    JsonEmbedding {
        mime_type: mime_type.into(),
        data: base64::engine::general_purpose::STANDARD.encode(bytes),
        name: name.into(),
    }
}

/// The run as cucumber JSON.
pub fn from_run(run: &Run) -> Vec<JsonFeature> {
    let mut features = ran(run);
    // Scenarios the client under test cannot run: each one skipped step
    // saying why, under its feature file.
    for n in &run.not_applicable {
        let element = JsonElement {
            id: format!("{};{}", slug(&n.feature), slug(&n.scenario)),
            keyword: "Scenario".into(),
            kind: "scenario".into(),
            name: n.scenario.clone(),
            description: String::new(),
            line: n.line,
            tags: Vec::new(),
            steps: vec![JsonStep {
                keyword: "Given ".into(),
                name: format!("a client under test that can run it ({})", n.client),
                line: n.line,
                result: JsonResult {
                    status: "skipped".into(),
                    duration: None,
                    error_message: Some(format!("not applicable to {}: {}", n.client, n.reason)),
                },
                rows: Vec::new(),
            }],
            after: Vec::new(),
        };
        match features.iter_mut().find(|f| f.uri == n.feature) {
            Some(f) => f.elements.push(element),
            None => features.push(JsonFeature {
                uri: n.feature.clone(),
                id: slug(&n.feature),
                keyword: "Feature".into(),
                name: n.feature.clone(),
                description: String::new(),
                line: 1,
                tags: Vec::new(),
                elements: vec![element],
            }),
        }
    }
    features
}

/// The features that ran.
fn ran(run: &Run) -> Vec<JsonFeature> {
    run.features
        .iter()
        .map(|f| {
            let fid = slug(&f.name);
            JsonFeature {
                uri: f.path.clone(),
                id: fid.clone(),
                keyword: "Feature".into(),
                name: f.name.clone(),
                description: f.description.clone(),
                line: 1,
                tags: tags(&f.tags, 1),
                elements: f
                    .scenarios
                    .iter()
                    .map(|s| JsonElement {
                        id: format!("{fid};{}", slug(&s.name)),
                        keyword: "Scenario".into(),
                        kind: "scenario".into(),
                        name: s.name.clone(),
                        description: String::new(),
                        line: s.line,
                        tags: tags(&s.tags, s.line),
                        steps: s
                            .steps
                            .iter()
                            .map(|st| JsonStep {
                                keyword: format!("{} ", st.keyword),
                                name: st.text.clone(),
                                line: st.line,
                                result: JsonResult {
                                    status: match st.outcome {
                                        Outcome::Skipped if st.at_ms.is_some() => "undefined",
                                        o => o.as_str(),
                                    }
                                    .into(),
                                    duration: st.duration_ms.map(|d| (d * 1e6) as u64),
                                    error_message: st.error.clone(),
                                },
                                rows: st
                                    .table
                                    .iter()
                                    .map(|r| JsonRow { cells: r.clone() })
                                    .collect(),
                            })
                            .collect(),
                        after: s
                            .timeline
                            .iter()
                            .map(|t| JsonHook {
                                matched: JsonMatch {
                                    location: "maint-e2e living documentation".into(),
                                },
                                result: JsonResult {
                                    status: "passed".into(),
                                    duration: Some(0),
                                    error_message: None,
                                },
                                embeddings: s
                                    .not_checked
                                    .iter()
                                    .map(|w| embed("text/plain", "not checked", w.as_bytes()))
                                    .chain([
                                        embed(
                                            "text/plain",
                                            "counts",
                                            serde_json::to_string(&s.counts)
                                                .unwrap_or_default()
                                                .as_bytes(),
                                        ),
                                        embed(
                                            "application/json",
                                            "timeline",
                                            serde_json::to_string(t).unwrap_or_default().as_bytes(),
                                        ),
                                    ])
                                    .collect(),
                            })
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect()
}
