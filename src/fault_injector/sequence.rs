//! One step of `sequence_of_actions` as callers send it (either key for the
//! parameters, its delay as seconds or a duration); `action` reads the steps
//! into typed actions.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BadRequest;

/// One step of `sequence_of_actions` (note the inner key `params`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SequenceStep {
    /// Action type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its parameters (also read from `parameters`); `bdb_id` defaults to
    /// the sequence's.
    #[serde(default, alias = "parameters")]
    pub params: Value,
    /// How long to wait before it: seconds, or a duration such as `"1500ms"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Value>,
}

impl SequenceStep {
    /// The delay before this step, checked.
    pub fn delay(&self) -> Result<Duration, BadRequest> {
        let bad = |v: &Value| {
            BadRequest(format!(
                "delay is a number of seconds between 0 and 3600 or a duration such as \"1500ms\", got {v}"
            ))
        };
        let d = match &self.delay {
            None | Some(Value::Null) => return Ok(Duration::ZERO),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|s| (0.0..=3600.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad(self.delay.as_ref().unwrap()))?,
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(secs) if (0.0..=3600.0).contains(&secs) => Duration::from_secs_f64(secs),
                Ok(_) => return Err(bad(self.delay.as_ref().unwrap())),
                Err(_) => humantime::parse_duration(s.trim())
                    .map_err(|_| bad(self.delay.as_ref().unwrap()))?,
            },
            Some(other) => return Err(bad(other)),
        };
        if d > Duration::from_secs(3600) {
            return Err(bad(self.delay.as_ref().unwrap()));
        }
        Ok(d)
    }
}
