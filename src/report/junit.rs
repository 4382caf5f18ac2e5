//! The JUnit file, completed: cucumber's own JUnit writer knows only steps,
//! so the claims a scenario could not check against its target (the
//! [`Run`]'s `not_checked`) are added to its test case afterwards, as
//! properties named `not checked` and as lines of its standard output, the
//! parts of a test case every JUnit reader shows.

use super::Run;

/// `xml` (cucumber's JUnit output) with each test case of a scenario that
/// left claims unchecked carrying them. A test case is cucumber's
/// `<testcase name="Scenario: ...: <feature path>:<line>:<column>">`.
pub fn mark_not_checked(xml: &str, run: &Run) -> String {
    let mut out = xml.to_string();
    for (f, s) in run.scenarios().filter(|(_, s)| !s.not_checked.is_empty()) {
        let needle = format!(": {}:{}:", f.path, s.line);
        let Some(at) = find_testcase(&out, &needle) else {
            continue;
        };
        let Some(open_end) = out[at..].find('>').map(|i| at + i + 1) else {
            continue;
        };
        let properties: String = s
            .not_checked
            .iter()
            .map(|n| format!(r#"<property name="not checked" value="{}"/>"#, escape(n)))
            .collect();
        let lines: String = s
            .not_checked
            .iter()
            .map(|n| format!("NOT CHECKED on this target: {n}\n"))
            .collect();
        // Lines at the end of its standard output, or an output of their
        // own when it has none.
        let close = out[open_end..].find("</testcase>").map(|i| open_end + i);
        let cdata_end = close.and_then(|c| {
            out[open_end..c]
                .rfind("]]></system-out>")
                .map(|i| open_end + i)
        });
        match (cdata_end, close) {
            (Some(i), _) => out.insert_str(i, &lines.replace("]]>", "]] >")),
            (None, Some(c)) => out.insert_str(
                c,
                &format!(
                    "<system-out><![CDATA[{}]]></system-out>",
                    lines.replace("]]>", "]] >")
                ),
            ),
            (None, None) => {}
        }
        out.insert_str(open_end, &format!("<properties>{properties}</properties>"));
    }
    out
}

/// Where the test case whose name contains `needle` begins.
fn find_testcase(xml: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = xml[from..].find("<testcase ").map(|i| from + i) {
        let tag_end = xml[i..].find('>').map(|e| i + e)?;
        if xml[i..tag_end].contains(&escape(needle)) {
            return Some(i);
        }
        from = tag_end;
    }
    None
}

/// `s` as an XML attribute value.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Adds a test suite of the scenarios not applicable to the client under
/// test (`(classname, name, reason)` each), every one skipped with its
/// reason: counted, never passed.
pub fn add_not_applicable(xml: &str, cases: &[(String, String, String)]) -> String {
    if cases.is_empty() {
        return xml.to_string();
    }
    let mut suite = format!(
        r#"<testsuite name="not applicable" tests="{n}" skipped="{n}" failures="0" errors="0">"#,
        n = cases.len()
    );
    for (class, name, reason) in cases {
        suite += &format!(
            r#"<testcase classname="{}" name="{}"><skipped message="{}"/></testcase>"#,
            escape(class),
            escape(name),
            escape(reason)
        );
    }
    suite += "</testsuite>";
    match xml.rfind("</testsuites>") {
        Some(at) => format!("{}{suite}{}", &xml[..at], &xml[at..]),
        None => format!("{xml}{suite}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Feature, Scenario};

    const XML: &str = concat!(
        r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="Feature: x">"#,
        r#"<testcase name="Scenario: CH1 a: features/a.feature:11:3" time="1"><system-out><![CDATA[  Scenario: CH1 a"#,
        "\n",
        r#"]]></system-out></testcase>"#,
        r#"<testcase name="Scenario: CH2 b: features/a.feature:21:3" time="1"></testcase>"#,
        r#"<testcase name="Scenario: CH3 c: features/a.feature:31:3" time="1"></testcase>"#,
        r#"</testsuite></testsuites>"#
    );

    fn run() -> Run {
        let scenario = |line, not_checked: &[&str]| Scenario {
            line,
            not_checked: not_checked.iter().map(|s| s.to_string()).collect(),
            ..Scenario::default()
        };
        Run {
            features: vec![Feature {
                path: "features/a.feature".into(),
                scenarios: vec![
                    scenario(11, &["what the server pushed <to \"app\">"]),
                    scenario(21, &["one", "two"]),
                    scenario(31, &[]),
                ],
                ..Feature::default()
            }],
            ..Run::default()
        }
    }

    #[test]
    fn a_scenario_that_left_claims_unchecked_carries_them_in_its_test_case() {
        let xml = mark_not_checked(XML, &run());
        // As properties, escaped, and at the end of its output.
        assert!(xml.contains(r#"features/a.feature:11:3" time="1"><properties><property name="not checked" value="what the server pushed &lt;to &quot;app&quot;&gt;"/></properties><system-out><![CDATA[  Scenario: CH1 a
NOT CHECKED on this target: what the server pushed <to "app">
]]></system-out>"#), "{xml}");
        // One without an output gets one.
        assert!(xml.contains(r#"features/a.feature:21:3" time="1"><properties><property name="not checked" value="one"/><property name="not checked" value="two"/></properties><system-out><![CDATA[NOT CHECKED on this target: one
NOT CHECKED on this target: two
]]></system-out></testcase>"#), "{xml}");
        // Everything else as it was.
        assert!(xml.contains(
            r#"<testcase name="Scenario: CH3 c: features/a.feature:31:3" time="1"></testcase>"#
        ));
        assert_eq!(mark_not_checked(XML, &Run::default()), XML);
    }

    #[test]
    fn scenarios_not_applicable_are_skipped_with_their_reason() {
        let xml = "<testsuites><testsuite name=\"f\"></testsuite></testsuites>";
        assert_eq!(add_not_applicable(xml, &[]), xml);
        let out = add_not_applicable(
            xml,
            &[(
                "features/a.feature:3".into(),
                "CH1 <a>".into(),
                "not applicable to redis-py: `Then x` is not expressible".into(),
            )],
        );
        assert!(out.ends_with(r#"<testsuite name="not applicable" tests="1" skipped="1" failures="0" errors="0"><testcase classname="features/a.feature:3" name="CH1 &lt;a&gt;"><skipped message="not applicable to redis-py: `Then x` is not expressible"/></testcase></testsuite></testsuites>"#), "{out}");
    }
}
