//! Clients under test: `Given a client "app" with ...`.

use anyhow::anyhow;
use cucumber::gherkin::Step;
use cucumber::given;

use super::params::{parse_duration, EndpointSettingParam, ModeParam};
use super::{MaintWorld, StepResult};
use crate::client::{ClientCertificate, ClientOptions, Protocol, TrustedCa};
use crate::config::TlsVersion;

/// The most connections one client of a scenario may have.
pub const MAX_POOL: usize = 2_000;

/// What `| trusted CA | another CA |` stands for until the World makes one.
const ANOTHER_CA: &str = "<another CA>";

/// Applies a `| setting | value |` table to client options.
pub fn apply_settings(step: &Step, o: &mut ClientOptions) -> anyhow::Result<()> {
    let table = step.table.as_ref().ok_or_else(|| {
        anyhow!("this step needs a table of | setting | value |, such as | relaxed timeout | 3 s |")
    })?;
    apply_setting_rows(&table.rows, o)
}

/// `on` or `off`.
fn on_off(name: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(anyhow!("{name} is on or off, got {other:?}")),
    }
}

/// Applies `| setting | value |` rows to client options.
pub fn apply_setting_rows(rows: &[Vec<String>], o: &mut ClientOptions) -> anyhow::Result<()> {
    for row in rows {
        let [name, value] = row.as_slice() else {
            return Err(anyhow!(
                "each row needs two cells, | setting | value |; got {row:?}"
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        // An optional header row, as README writes the table's shape.
        if (name, value) == ("setting", "value") {
            continue;
        }
        let duration = || -> anyhow::Result<std::time::Duration> {
            parse_duration(value)
                .map_err(|e| anyhow!("{name}: {e}"))?
                .ok_or_else(|| anyhow!("{name} cannot be unbounded"))
        };
        match name {
            "response timeout" => {
                o.response_timeout = parse_duration(value).map_err(|e| anyhow!("{name}: {e}"))?
            }
            "relaxed timeout" => o.relaxed_timeout = duration()?,
            "relaxed window max" => o.relaxed_window_max = Some(duration()?),
            "post-handoff tail" => o.post_handoff_relaxed = Some(duration()?),
            "handoff timeout" => o.handoff_timeout = duration()?,
            "connect timeout" => o.connect_timeout = duration()?,
            "relaxation" => o.relax = on_off(name, value)?,
            "handoffs" => o.hand_off = on_off(name, value)?,
            "resubscribe" => o.resubscribe = on_off(name, value)?,
            "reconnect" => o.reconnect = on_off(name, value)?,
            "slot map refresh on MOVED" => o.refresh_on_moved = on_off(name, value)?,
            "discovery service" => o.discovery = on_off(name, value)?,
            "+switch-master" => o.follow_switch_master = on_off(name, value)?,
            "TLS verification" => o.tls.verify = on_off(name, value)?,
            "trusted CA" => {
                o.tls.ca = match value {
                    "the cluster's" => TrustedCa::Database,
                    "the system's" => TrustedCa::System,
                    "another CA" => TrustedCa::File(ANOTHER_CA.into()),
                    other => {
                        return Err(anyhow!(
                            "trusted CA is the cluster's, the system's or another CA, got {other:?}"
                        ))
                    }
                }
            }
            "TLS versions" => {
                let (min, max) = match value {
                    "1.2 only" => (TlsVersion::V12, TlsVersion::V12),
                    "1.3 only" => (TlsVersion::V13, TlsVersion::V13),
                    "1.2 and up" => (TlsVersion::V12, TlsVersion::V13),
                    other => {
                        return Err(anyhow!(
                            "TLS versions are 1.2 only, 1.3 only or 1.2 and up, got {other:?}"
                        ))
                    }
                };
                (o.tls.min_version, o.tls.max_version) = (min, max);
            }
            "client certificate" => {
                o.tls.client_certificate = match value {
                    "the cluster's" => ClientCertificate::Database,
                    "none" => ClientCertificate::Without,
                    other => {
                        return Err(anyhow!(
                            "client certificate is the cluster's or none, got {other:?}"
                        ))
                    }
                }
            }
            "password" => o.password = Some(value.to_string()),
            "handoff workers" => {
                o.handoff_workers = match value.parse() {
                    Ok(n @ 1..) => n,
                    _ => return Err(anyhow!("{name}: {value:?} is not a whole number of 1 or more")),
                }
            }
            "max handoff retries" => {
                o.max_handoff_retries = value
                    .parse()
                    .map_err(|_| anyhow!("{name}: {value:?} is not a whole number"))?
            }
            other => {
                return Err(anyhow!(
                    "unknown setting {other:?}; the settings are response timeout, relaxed timeout, relaxed window max, post-handoff tail, handoff timeout, connect timeout, max handoff retries, handoff workers, TLS verification, trusted CA, TLS versions, client certificate, password, discovery service (on or off), and (to prove a scenario can fail) relaxation, handoffs, resubscribe, slot map refresh on MOVED and +switch-master, on or off"
                ))
            }
        }
    }
    Ok(())
}

impl MaintWorld {
    /// Replaces the stand-in for another CA with a CA made for this scenario,
    /// which signed nothing the database shows.
    pub fn resolve_settings(&mut self, o: &mut ClientOptions) -> anyhow::Result<()> {
        if o.tls.ca == TrustedCa::File(ANOTHER_CA.into()) {
            let dir = tempfile::Builder::new()
                .prefix("maint-e2e-another-ca-")
                .tempdir()?;
            crate::emulator::TlsMaterial::generate(
                dir.path(),
                "another CA",
                &["localhost".into()],
            )?;
            o.tls.ca = TrustedCa::File(dir.path().join(crate::emulator::CA_FILE));
            self.resources.temp_dirs.push(dir);
        }
        Ok(())
    }

    /// Creates a client named `name` with the suite's options changed by
    /// `tweak`; failing to connect fails the step.
    pub async fn create_client(
        &mut self,
        name: &str,
        tweak: impl FnOnce(&mut ClientOptions),
    ) -> anyhow::Result<()> {
        let mut options = self.suite_options();
        tweak(&mut options);
        self.resolve_settings(&mut options)?;
        if let Some(driver) = crate::driver::selected() {
            return self.create_driven(&driver, name, options, false).await;
        }
        let client = self
            .env()?
            .factory
            .create(name, options)
            .await
            .map_err(|e| anyhow!("creating client {name:?}: {}", e.chain()))?;
        self.add_client(name, Ok(client))
    }

    /// Creates client `name` through `driver`, its own process: what the
    /// client lets the driver see goes on the timeline.
    /// With `refusal_allowed`, a client the driver could not connect is
    /// recorded as refused (its error in the driver's words), as `a client
    /// ... connects with these settings:` records one of ours.
    pub(super) async fn create_driven(
        &mut self,
        driver: &str,
        name: &str,
        options: ClientOptions,
        refusal_allowed: bool,
    ) -> anyhow::Result<()> {
        if self.clients.contains_key(name) {
            fail!("a client named {name:?} exists already in this scenario");
        }
        let env = self.env()?;
        let settings = crate::driver::settings::settings_for(
            &options,
            &self.suite_options(),
            env.factory.database(),
            env.factory.server_name(name),
        )
        .map_err(|reason| anyhow!("not applicable to {driver}: {reason}"))?;
        let process =
            std::sync::Arc::new(crate::driver::start(driver, self.tracker.clone()).await?);
        let client =
            match crate::driver::DriverClient::create(process.clone(), name, settings).await {
                Ok(c) => c,
                Err(crate::driver::DriverError::Failed { message, .. }) if refusal_allowed => {
                    process.stop().await;
                    self.clients.insert(
                        name.to_string(),
                        super::ClientUnderTest {
                            options: Some(options),
                            refusal: Some(super::record::Refusal {
                                error: message,
                                took: None,
                                accepted: None,
                            }),
                            ..super::ClientUnderTest::default()
                        },
                    );
                    return Ok(());
                }
                Err(e) => fail!("creating client {name:?}: {e}"),
            };
        self.clients.insert(
            name.to_string(),
            super::ClientUnderTest {
                driven: Some((std::sync::Arc::new(client), process)),
                options: Some(options),
                ..super::ClientUnderTest::default()
            },
        );
        Ok(())
    }
}

/// A client: `a client "app" [with N connections and] maintenance
/// notifications <mode> [and endpoint type <type>] [and these settings:]`,
/// the settings in a `| setting | value |` table.
#[given(
    regex = r#"^a client "([^"]*)" with (?:(\d+) connections and )?maintenance notifications (enabled|disabled|auto)(?: and endpoint type (internal-ip|internal-fqdn|external-ip|external-fqdn|none|auto))?( and these settings:)?$"#
)]
async fn given_client(
    w: &mut MaintWorld,
    step: &Step,
    name: String,
    connections: String,
    mode: ModeParam,
    endpoint_type: String,
    settings: String,
) -> StepResult {
    let mut o = w.suite_options();
    o.mode = mode.0;
    if !connections.is_empty() {
        o.pool_size = match connections.parse() {
            Ok(n @ 1..=MAX_POOL) => n,
            _ => fail!("{connections:?} connections: a client has between 1 and {MAX_POOL}"),
        };
    }
    if !endpoint_type.is_empty() {
        o.endpoint_type = endpoint_type
            .parse::<EndpointSettingParam>()
            .map_err(|e| anyhow!(e))?
            .0;
    }
    match (settings.is_empty(), step.table.is_some()) {
        (false, _) => apply_settings(step, &mut o)?,
        (true, true) => {
            fail!("this step has a table but does not end with `and these settings:`")
        }
        (true, false) => {}
    }
    w.create_client(&name, |opts| *opts = o).await?;
    Ok(())
}

/// A RESP2 client.
#[given(expr = "a client {string} using RESP2 with maintenance notifications {mode}")]
async fn given_resp2_client(w: &mut MaintWorld, name: String, mode: ModeParam) -> StepResult {
    w.create_client(&name, |o| {
        o.mode = mode.0;
        o.protocol = Protocol::Resp2;
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::steps::params::tests::rows;

    #[test]
    fn a_settings_table_sets_options_and_names_what_is_wrong() {
        let mut o = ClientOptions::default();
        apply_setting_rows(
            &rows(&[
                ["response timeout", "unbounded"],
                ["relaxed timeout", "3 s"],
                ["post-handoff tail", "2 min"],
                ["max handoff retries", "5"],
                ["relaxation", "off"],
            ]),
            &mut o,
        )
        .unwrap();
        assert_eq!(o.response_timeout, None);
        assert_eq!(o.relaxed_timeout, Duration::from_secs(3));
        assert_eq!(o.post_handoff_relaxed, Some(Duration::from_secs(120)));
        assert_eq!(o.max_handoff_retries, 5);
        assert!(!o.relax && o.hand_off);
        let err = |r: &[[&str; 2]]| {
            apply_setting_rows(&rows(r), &mut ClientOptions::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[["colour", "blue"]]).contains("unknown setting \"colour\""));
        // The table's shape may head it.
        let mut o = ClientOptions::default();
        let rows = vec![
            vec!["setting".to_string(), "value".to_string()],
            vec!["resubscribe".to_string(), "off".to_string()],
        ];
        apply_setting_rows(&rows, &mut o).unwrap();
        assert!(!o.resubscribe);
        assert!(err(&[["relaxed timeout", "unbounded"]]).contains("cannot be unbounded"));
        assert!(err(&[["handoff timeout", "3"]]).contains("no unit"));
        assert!(err(&[["max handoff retries", "many"]]).contains("not a whole number"));
        assert!(err(&[["handoffs", "maybe"]]).contains("on or off"));
    }
}
