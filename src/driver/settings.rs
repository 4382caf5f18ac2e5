//! A scenario's client options as a driver's `create` settings: the
//! database's address and credentials, the name the server sees, and each
//! option the scenario set that protocol 1 carries. An option the scenario
//! changed that the protocol does not carry makes it not applicable.

use crate::client::{ClientOptions, EndpointTypeSetting, Mode, Protocol};
use crate::config::DatabaseConfig;

use super::DriverSettings;

/// The `| setting | value |` rows of a client step a driver can be given,
/// and the `create` setting each one is.
pub const TABLE_SETTINGS: [(&str, &str); 8] = [
    ("response timeout", "response_timeout"),
    ("relaxed timeout", "relaxed_timeout"),
    ("connect timeout", "connect_timeout"),
    ("handoffs", "hand_off"),
    ("password", "password"),
    ("trusted CA", "tls"),
    ("TLS verification", "tls"),
    ("client certificate", "tls"),
];

/// `o` as settings of `create` for `db` (the server sees the client as
/// `name`); `defaults` are the suite's own options, which a driver's client
/// replaces with its own behaviour. `Err`: what the protocol cannot carry.
pub fn settings_for(
    o: &ClientOptions,
    defaults: &ClientOptions,
    db: &DatabaseConfig,
    name: Option<String>,
) -> Result<DriverSettings, String> {
    let endpoint = db
        .endpoints
        .first()
        .ok_or_else(|| format!("database {} lists no endpoint", db.name))?;
    let unsupported = [
        (
            "post-handoff tail",
            o.post_handoff_relaxed != defaults.post_handoff_relaxed,
        ),
        (
            "relaxed window max",
            o.relaxed_window_max != defaults.relaxed_window_max,
        ),
        (
            "handoff timeout",
            o.handoff_timeout != defaults.handoff_timeout,
        ),
        (
            "max handoff retries",
            o.max_handoff_retries != defaults.max_handoff_retries,
        ),
        (
            "handoff workers",
            o.handoff_workers != defaults.handoff_workers,
        ),
        ("relaxation", o.relax != defaults.relax),
        ("resubscribe", o.resubscribe != defaults.resubscribe),
        ("reconnect", o.reconnect != defaults.reconnect),
        (
            "slot map refresh on MOVED",
            o.refresh_on_moved != defaults.refresh_on_moved,
        ),
        ("discovery service", o.discovery != defaults.discovery),
        (
            "+switch-master",
            o.follow_switch_master != defaults.follow_switch_master,
        ),
        ("a user name", o.username.is_some()),
        (
            "TLS versions",
            (o.tls.min_version, o.tls.max_version)
                != (defaults.tls.min_version, defaults.tls.max_version),
        ),
    ];
    if let Some((setting, _)) = unsupported.iter().find(|(_, changed)| *changed) {
        return Err(format!(
            "the setting {setting:?} has no counterpart in the driver protocol"
        ));
    }
    let mut s = DriverSettings::default()
        .set("host", endpoint.host.clone())
        .set("port", endpoint.port)
        .set(
            "maint",
            match o.mode {
                Mode::Enabled => "enabled",
                Mode::Disabled => "disabled",
                Mode::Auto => "auto",
            },
        )
        .duration("response_timeout", o.response_timeout)
        .duration("relaxed_timeout", Some(o.relaxed_timeout))
        .duration("connect_timeout", Some(o.connect_timeout))
        // The suite's own client tries a failed request once: so is every
        // client judged, its maintenance handling and not a blind retry
        // keeping the traffic clean.
        .set("retries", 0);
    if let Some(n) = name {
        s = s.set("name", n);
    }
    if let EndpointTypeSetting::Fixed(t) = o.endpoint_type {
        s = s.set("endpoint_type", t.as_str());
    }
    if o.pool_size != 1 {
        s = s.set("pool_size", o.pool_size);
    }
    if !o.hand_off {
        s = s.set("hand_off", false);
    }
    if o.protocol == Protocol::Resp2 {
        s = s.set("protocol", 2);
    }
    if let Some(p) = o.password.clone().or_else(|| db.password.clone()) {
        s = s.set("password", p);
    }
    if let Some(u) = db.username.clone() {
        s = s.set("username", u);
    }
    if db.tls || endpoint.tls {
        let mut tls = serde_json::Map::new();
        if let Some(ca) = o.tls.ca_file(db) {
            tls.insert("ca_file".into(), ca.display().to_string().into());
        }
        if let Some((cert, key)) = o.tls.client_files(db) {
            tls.insert("cert_file".into(), cert.display().to_string().into());
            tls.insert("key_file".into(), key.display().to_string().into());
        }
        tls.insert("verify".into(), o.tls.verify.into());
        s = s.set("tls", serde_json::Value::Object(tls));
    }
    Ok(s)
}
