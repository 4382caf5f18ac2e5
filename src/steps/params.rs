//! Typed step parameters.

use std::str::FromStr;

use cucumber::Parameter;

use crate::client::Mode;
use crate::notification::{Endpoint, EndpointType, Kind};

/// `enabled`, `disabled` or `auto`.
#[derive(Clone, Copy, Debug, Parameter)]
#[param(name = "mode", regex = "enabled|disabled|auto")]
pub struct ModeParam(pub Mode);

impl FromStr for ModeParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::parse(s).map(ModeParam).map_err(|e| e.to_string())
    }
}

/// `internal-ip`, `internal-fqdn`, `external-ip`, `external-fqdn` or `none`.
#[derive(Clone, Copy, Debug, Parameter)]
#[param(
    name = "endpoint_type",
    regex = "internal-ip|internal-fqdn|external-ip|external-fqdn|none"
)]
pub struct EndpointTypeParam(pub EndpointType);

impl FromStr for EndpointTypeParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EndpointType::parse(s)
            .map(EndpointTypeParam)
            .map_err(|e| e.to_string())
    }
}

/// A notification name.
#[derive(Clone, Copy, Debug, Parameter)]
#[param(
    name = "kind",
    regex = "MOVING|MIGRATING|MIGRATED|FAILING_OVER|FAILED_OVER|SMIGRATING|SMIGRATED"
)]
pub struct KindParam(pub Kind);

impl FromStr for KindParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::parse(s)
            .map(KindParam)
            .ok_or_else(|| format!("unknown notification {s:?}"))
    }
}

/// The shape of a MOVING endpoint: `an IP address`, `a host name` or `no address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Parameter)]
#[param(name = "endpoint_form", regex = "an IP address|a host name|no address")]
pub enum EndpointForm {
    /// `host:port` with an IP.
    Ip,
    /// `host:port` with a name.
    HostName,
    /// Null.
    Null,
}

impl FromStr for EndpointForm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "an IP address" => Ok(EndpointForm::Ip),
            "a host name" => Ok(EndpointForm::HostName),
            "no address" => Ok(EndpointForm::Null),
            other => Err(format!("unknown endpoint form {other:?}")),
        }
    }
}

impl EndpointForm {
    /// The form an endpoint type asks for.
    pub fn of_type(t: EndpointType) -> EndpointForm {
        match t {
            EndpointType::InternalIp | EndpointType::ExternalIp => EndpointForm::Ip,
            EndpointType::InternalFqdn | EndpointType::ExternalFqdn => EndpointForm::HostName,
            EndpointType::None => EndpointForm::Null,
        }
    }

    /// True when `e`, as the server's record writes it (`host:port`, or
    /// none), has this form.
    pub fn matches_text(self, e: Option<&str>) -> bool {
        let ip = |e: &str| {
            e.rsplit_once(':').is_some_and(|(h, _)| {
                h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok()
            })
        };
        match (self, e) {
            (EndpointForm::Null, None) => true,
            (EndpointForm::Ip, Some(e)) => ip(e),
            (EndpointForm::HostName, Some(e)) => !ip(e),
            _ => false,
        }
    }

    /// True when `e` has this form.
    pub fn matches(self, e: Option<&Endpoint>) -> bool {
        match (self, e) {
            (EndpointForm::Null, None) => true,
            (EndpointForm::Ip, Some(e)) => e.ip().is_some(),
            (EndpointForm::HostName, Some(e)) => e.ip().is_none(),
            _ => false,
        }
    }
}

/// A duration as scenarios write it: `500 ms`, `3 s`, `1.5 s`, `2 min`, or
/// `unbounded` (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Parameter)]
#[param(name = "duration", regex = r"\d+(?:\.\d+)? ?(?:ms|s|min)|unbounded")]
pub struct DurationParam(pub Option<std::time::Duration>);

impl DurationParam {
    /// The duration, or an error for `unbounded` where a step needs a bound.
    pub fn bounded(self, what: &str) -> anyhow::Result<std::time::Duration> {
        self.0.ok_or_else(|| {
            anyhow::anyhow!("{what} cannot be unbounded; write it as 500 ms, 3 s or 2 min")
        })
    }
}

impl FromStr for DurationParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(DurationParam)
    }
}

/// Parses `500 ms`, `3 s`, `1.5 s`, `2 min` or `unbounded`.
pub fn parse_duration(s: &str) -> Result<Option<std::time::Duration>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("unbounded") {
        return Ok(None);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit; write it as 500 ms, 3 s or 2 min"))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{num:?} in {s:?} is not a number"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "s" => v,
        "min" => v * 60.0,
        other => return Err(format!("unknown unit {other:?} in {s:?}; use ms, s or min")),
    };
    Ok(Some(std::time::Duration::from_secs_f64(secs)))
}

/// An endpoint type a client is configured with: one of the five, or `auto`.
#[derive(Clone, Copy, Debug, Parameter)]
#[param(
    name = "endpoint_setting",
    regex = "internal-ip|internal-fqdn|external-ip|external-fqdn|none|auto"
)]
pub struct EndpointSettingParam(pub crate::client::EndpointTypeSetting);

impl FromStr for EndpointSettingParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use crate::client::EndpointTypeSetting;
        if s == "auto" {
            return Ok(EndpointSettingParam(EndpointTypeSetting::Auto));
        }
        EndpointType::parse(s)
            .map(|t| EndpointSettingParam(EndpointTypeSetting::Fixed(t)))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A step table's rows from string cells, for tests of table steps.
    pub(crate) fn rows(r: &[[&str; 2]]) -> Vec<Vec<String>> {
        r.iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn durations_read_as_scenarios_write_them() {
        assert_eq!(
            parse_duration("500 ms"),
            Ok(Some(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_duration("1.5 s"),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(parse_duration("2 min"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(parse_duration("3s"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(parse_duration("unbounded"), Ok(None));
        assert!(parse_duration("3").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 h").unwrap_err().contains("unknown unit"));
    }
}
