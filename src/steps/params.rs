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
        Mode::parse(s).map(ModeParam)
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
        EndpointType::parse(s).map(EndpointTypeParam)
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
