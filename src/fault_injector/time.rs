//! Times on the wire: RFC 3339 strings, as typed clients decode them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A point in time as the API writes it: an RFC 3339 string in UTC with
/// microseconds (`"2026-11-28T23:10:04.123456Z"`), which typed clients decode as
/// a timestamp. Read liberally: an RFC 3339 string with any precision or
/// offset-free form, or a number of seconds since the epoch (what older
/// services wrote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    /// Seconds since the epoch.
    pub fn epoch_seconds(&self) -> f64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_micros(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
                .map(Timestamp)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "a time is an RFC 3339 string such as \"2026-11-28T23:10:04.123456Z\"; {s:?}: {e}"
                    ))
                }),
            Value::Number(n) if n.as_f64().is_some_and(|v| v >= 0.0) => Ok(Timestamp(
                UNIX_EPOCH + Duration::from_secs_f64(n.as_f64().unwrap_or(0.0)),
            )),
            other => Err(serde::de::Error::custom(format!(
                "a time is an RFC 3339 string or seconds since the epoch, got {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_rfc_3339_and_read_in_either_form() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456));
        let text = serde_json::to_value(t).unwrap();
        assert_eq!(text, "2026-11-18T11:06:40.123456Z");
        assert_eq!(serde_json::from_value::<Timestamp>(text).unwrap(), t);
        let number: Timestamp = serde_json::from_value(serde_json::json!(1_795_000_000.5)).unwrap();
        assert_eq!(number.epoch_seconds(), 1_795_000_000.5);
        let err = serde_json::from_value::<Timestamp>(serde_json::json!("yesterday"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RFC 3339") && err.contains("yesterday"),
            "{err}"
        );
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!(true)).is_err());
    }
}
