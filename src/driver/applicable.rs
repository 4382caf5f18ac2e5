//! Which scenarios a client under test through a driver can run: those
//! whose every step is one the suite expresses through a driver (it makes
//! the client through `create`, sends the traffic through `command`, and
//! decides by the requests and the server's record), each setting of its
//! client steps one the driver maps. Any other scenario is **not
//! applicable** to that client, with the first step that makes it so as the
//! reason: listed and counted, never run, never passed.

use std::sync::OnceLock;

use cucumber::gherkin::Step;
use regex::Regex;

use super::settings::TABLE_SETTINGS;

/// The steps expressible through a driver, as patterns of their text.
/// A step joins once it is decided without reading the suite's own client
/// from inside.
const EXPRESSIBLE: [&str; 52] = [
    r"^a standalone database$",
    r#"^a client "[^"]*" with (?:\d+ connections and )?maintenance notifications (?:enabled|disabled|auto)(?: and endpoint type (?:internal-ip|internal-fqdn|external-ip|external-fqdn|none|auto))?(?: and these settings:)?$"#,
    r#"^steady traffic from "[^"]*"$"#,
    r"^steady traffic (?:of \d+ concurrent requests )?from every client$",
    r"^the database's shard migrates to another node$",
    r"^the database fails over$",
    r"^the database endpoint is rebound to another node$",
    r"^the traffic saw no errors$",
    r"^every acknowledged write is readable$",
    r#"^every connection of "[^"]*" hands off exactly once$"#,
    r"^every connection of every client hands off exactly once$",
    r#"^the server cut off no connection of "[^"]*"$"#,
    r"^the traffic saw timeouts during the maintenance, and no other error$",
    r#"^the timeouts of "[^"]*" are back to their configured values$"#,
    r#"^every connection of "[^"]*" now uses the endpoint MOVING named$"#,
    r#"^"[^"]*" received no notification$"#,
    r#"^"[^"]*" received no (?:MOVING|MIGRATING|MIGRATED|FAILING_OVER|FAILED_OVER|SMIGRATING|SMIGRATED)$"#,
    r"^the database endpoint is rebound to another node without MOVING$",
    r"^the database's proxy restarts$",
    r"^the database's proxy stops for .+$",
    r"^the database is cut off from its clients for .+$",
    r"^a primary shard of the database dies$",
    r#"^every connection of "[^"]*" was dropped and connected again$"#,
    r"^the traffic saw at most \d+ \w+(?: or \w+)? errors, and recovered$",
    r"^the traffic saw only \w+(?: or \w+)? errors, all while the fault lasted, and recovered$",
    r"^at most \d+ acknowledged writes were lost$",
    r#"^"[^"]*" receives (?:MOVING|MIGRATING|MIGRATED|FAILING_OVER|FAILED_OVER|SMIGRATING|SMIGRATED)$"#,
    r#"^"[^"]*" receives [A-Z_]+ then [A-Z_]+ with consecutive sequence numbers on the same connection$"#,
    r#"^"[^"]*" was relaxed between [A-Z_]+ and [A-Z_]+$"#,
    r#"^"[^"]*" was relaxed to .+ between [A-Z_]+ and [A-Z_]+$"#,
    r#"^the timeout of "[^"]*" was .+ throughout$"#,
    r"^the database's shard migrates to another node, holding requests for .+$",
    r#"^"[^"]*" can still write and read$"#,
    r"^the database's user is an ACL user limited to the suite's keys and a command set$",
    r#"^the command "[^"]*" from "[^"]*" is refused with an error that says "[^"]*"$"#,
    r#"^the server has maintenance notifications on for every connection of "[^"]*", with endpoint type (?:internal-ip|internal-fqdn|external-ip|external-fqdn|none)$"#,
    r#"^"[^"]*" receives MOVING in the form (?:internal-ip|internal-fqdn|external-ip|external-fqdn|none) asks for$"#,
    r#"^the server sent no MOVING to a connection of "[^"]*" that arrived on the node the endpoint moved to$"#,
    r#"^every connection of "[^"]*" handed off promptly after its MOVING$"#,
    r"^the database endpoint is rebound to another node with MOVING sent twice$",
    r#"^"[^"]*" ignored every repeated MOVING$"#,
    r#"^"[^"]*" receives MOVING with (?:an IP address|a host name|no address)$"#,
    r#"^"[^"]*" reconnects to its configured address half the grace period after MOVING$"#,
    r#"^every connection of "[^"]*" (?:uses TLS 1\.[23]|is unencrypted)$"#,
    r"^the database uses TLS with certificates from the cluster's CA$",
    r"^the database requires a password$",
    r"^the database requires client certificates$",
    r#"^every connection of "[^"]*" is authenticated as the database's user$"#,
    r#"^"[^"]*" asked for the endpoint type its TLS setting and address class call for, by this table:$"#,
    r#"^a client "[^"]*" with maintenance notifications (?:enabled|disabled|auto) connects with these settings:$"#,
    // Redis's own words only: the others are this suite's client's.
    r#"^connecting "[^"]*" fails with an error that says "(?:WRONGPASS|NOAUTH|NOPERM)[^"]*"$"#,
    r#"^connecting "[^"]*" failed within .+ after a single connection attempt$"#,
];

/// Steps whose database a driver's client reaches only with these
/// `create` settings.
const NEEDS: [(&str, &[&str]); 5] = [
    (
        "the database uses TLS with certificates from the cluster's CA",
        &["tls"],
    ),
    ("the database requires a password", &["tls", "password"]),
    ("the database requires client certificates", &["tls"]),
    ("the database accepts TLS 1.3 only", &["tls"]),
    (
        "the database's user is an ACL user limited to the suite's keys and a command set",
        &["username", "password"],
    ),
];

fn patterns() -> &'static [Regex] {
    static P: OnceLock<Vec<Regex>> = OnceLock::new();
    P.get_or_init(|| {
        EXPRESSIBLE
            .iter()
            .map(|p| Regex::new(p).expect("a valid pattern"))
            .collect()
    })
}

/// Why `steps` (a scenario's, its background's first) cannot run against
/// `client`, whose driver maps the `create` settings `settings`; `None`
/// when they can.
pub fn not_applicable<'a>(
    steps: impl IntoIterator<Item = &'a Step>,
    client: &str,
    settings: &[String],
) -> Option<String> {
    for step in steps {
        let text = step.value.trim();
        // `When "app" receives MIGRATING` waits on what the client read
        // (nobody sees that of a driver's client); the Then step asks the
        // server what it wrote.
        let waits_on_the_client =
            step.ty == cucumber::gherkin::StepType::When && text.contains(" receives ");
        if waits_on_the_client || !patterns().iter().any(|p| p.is_match(text)) {
            return Some(format!(
                "`{}{text}` is not expressible through a driver yet",
                step.keyword
            ));
        }
        let needs = NEEDS
            .iter()
            .filter(|(t, _)| *t == text)
            .flat_map(|(_, n)| n.iter());
        if let Some(missing) = needs
            .into_iter()
            .find(|n| !settings.iter().any(|s| s == *n))
        {
            return Some(format!(
                "{client}'s driver has no setting {missing} (`{}{text}`)",
                step.keyword
            ));
        }
        // A client step's table holds its settings; other tables are data.
        let rows = step
            .table
            .as_ref()
            .filter(|_| text.ends_with("these settings:"))
            .map(|t| t.rows.as_slice())
            .unwrap_or_default();
        for row in rows {
            let Some(name) = row.first().map(|n| n.trim()) else {
                continue;
            };
            if name == "setting" {
                continue;
            }
            match TABLE_SETTINGS.iter().find(|(n, _)| *n == name) {
                None => {
                    return Some(format!(
                        "the client setting {name:?} has no counterpart in the driver protocol"
                    ))
                }
                Some((_, key)) if !settings.iter().any(|s| s == key) => {
                    return Some(format!("{client}'s driver has no setting {key} ({name})"))
                }
                Some(_) => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        let feature = format!("Feature: f\n  Scenario: s\n{text}");
        let f =
            cucumber::gherkin::Feature::parse(feature, cucumber::gherkin::GherkinEnv::default())
                .unwrap();
        f.scenarios[0].steps.clone()
    }

    #[test]
    fn a_scenario_runs_through_a_driver_only_when_every_step_and_setting_can() {
        let all = |t| not_applicable(&steps(t), "redis-py", &["response_timeout".to_string()]);
        assert_eq!(
            all("    Given a standalone database\n    And a client \"app\" with 2 connections and maintenance notifications enabled\n    And steady traffic from \"app\"\n    When the database fails over\n    Then the traffic saw no errors\n"),
            None
        );
        assert_eq!(
            all("    Given a standalone database\n    Then every connection of \"app\" was relaxed from its MOVING until its handoff\n").unwrap(),
            "`Then every connection of \"app\" was relaxed from its MOVING until its handoff` is not expressible through a driver yet"
        );
        assert_eq!(
            all("    Given a client \"app\" with maintenance notifications enabled and these settings:\n      | response timeout | 1 s |\n"),
            None
        );
        assert_eq!(
            all("    Given a client \"app\" with maintenance notifications enabled and these settings:\n      | relaxed timeout | 3 s |\n").unwrap(),
            "redis-py's driver has no setting relaxed_timeout (relaxed timeout)"
        );
        assert!(all("    When \"app\" receives MIGRATING\n").is_some());
        assert_eq!(all("    Then \"app\" receives MIGRATING\n"), None);
        assert_eq!(
            all("    Given the database uses TLS with certificates from the cluster's CA\n").unwrap(),
            "redis-py's driver has no setting tls (`Given the database uses TLS with certificates from the cluster's CA`)"
        );
        assert!(all("    Given a client \"app\" with maintenance notifications enabled and these settings:\n      | handoff workers | 4 |\n")
            .unwrap()
            .contains("\"handoff workers\" has no counterpart"));
    }
}
