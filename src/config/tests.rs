//! Endpoints files as each framework writes them, and what a broken one says.

use super::*;

#[test]
fn tls_versions_parse_with_a_helpful_error() {
    assert_eq!(TlsVersion::parse("1.3"), Ok(TlsVersion::V13));
    assert_eq!(TlsVersion::parse("TLSv1.2"), Ok(TlsVersion::V12));
    assert!(TlsVersion::parse("1.1")
        .unwrap_err()
        .contains("\"1.2\" or \"1.3\""));
    assert!(TlsVersion::V12 < TlsVersion::V13);
}
use serde_json::json;

#[test]
fn reads_the_go_framework_format() {
    let v = json!({
        "standalone": {"bdb_id": "3", "username": "u", "password": "p", "tls": true,
            "certificatesLocation": "/certs",
            "endpoints": ["rediss://redis-12000.example.com:12000"],
            "raw_endpoints": [{"addr": ["10.0.0.1"], "port": 12000}]},
        "oss": {"endpoints": ["redis://localhost:7001", "redis://[::1]:7002"]}
    });
    let f = EndpointsFile::from_value("x.json", &v).unwrap();
    let s = f.database("standalone").unwrap();
    assert_eq!(s.bdb_id, Some(3));
    assert!(s.tls && s.endpoints[0].tls);
    assert_eq!(s.endpoints[0].address(), "redis-12000.example.com:12000");
    assert_eq!(s.certificates_location, Some(PathBuf::from("/certs")));
    assert!(s.raw_endpoints.is_some());
    let o = f.database("oss").unwrap();
    assert_eq!(o.bdb_id, None);
    assert_eq!(o.endpoints[1].address(), "[::1]:7002");
    let round = EndpointsFile::from_value("again", &f.to_json()).unwrap();
    assert_eq!(round.databases, f.databases);
}

#[test]
fn errors_name_file_database_field_and_expectation() {
    let cases = [
        (
            json!({"db": {"endpoints": []}}),
            "field \"endpoints\": is empty",
        ),
        (
            json!({"db": {"bdb_id": "one", "endpoints": ["redis://a:1"]}}),
            "bdb_id",
        ),
        (json!({"db": {"endpoints": ["http://a:1"]}}), "endpoints[0]"),
        (
            json!({"db": {"tls": "yes", "endpoints": ["redis://a:1"]}}),
            "expected true or false",
        ),
        (json!({"db": {}}), "is missing"),
        (
            json!({"db": {"endpoints": ["redis://a:1"], "discovery_endpoints": [8001]}}),
            "discovery_endpoints[0]",
        ),
        (
            json!({"db": {"endpoints": ["redis://a:1"], "discovery_endpoints": "a:1"}}),
            "list of host:port strings",
        ),
        (json!([1]), "JSON object of named databases"),
    ];
    for (v, want) in cases {
        let err = EndpointsFile::from_value("f.json", &v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.json") && err.contains(want), "{err}");
    }
}

#[test]
fn discovery_endpoints_are_read_and_written_back() {
    let v = json!({"db": {"tls": false, "endpoints": ["redis://a:1"],
        "discovery_endpoints": ["127.0.1.1:8001", "127.0.2.1:8001"]}});
    let f = EndpointsFile::from_value("f.json", &v).unwrap();
    let db = f.database("db").unwrap();
    assert_eq!(db.discovery_endpoints, ["127.0.1.1:8001", "127.0.2.1:8001"]);
    assert_eq!(
        db.to_json()["discovery_endpoints"],
        v["db"]["discovery_endpoints"]
    );
}

#[test]
fn unknown_database_lists_the_known_ones() {
    let v = json!({"a": {"endpoints": ["redis://h:1"]}});
    let f = EndpointsFile::from_value("f.json", &v).unwrap();
    let err = f.database("b").unwrap_err().to_string();
    assert!(
        err.contains("no database named \"b\"") && err.contains("a"),
        "{err}"
    );
}

#[test]
fn broken_file_says_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("e.json");
    std::fs::write(&p, "{ not json").unwrap();
    let err = EndpointsFile::load(&p).unwrap_err().to_string();
    assert!(
        err.contains("e.json") && err.contains("not valid JSON"),
        "{err}"
    );
    let err = EndpointsFile::load(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn the_written_file_lists_databases_in_bdb_id_order_and_reads_back() {
    let v = json!({
        "a-cluster": {"bdb_id": 2, "endpoints": ["redis://127.0.0.1:7001"]},
        "standalone": {"bdb_id": 1, "endpoints": ["redis://127.0.0.1:12000"]},
        "no-id": {"endpoints": ["redis://127.0.0.1:7002"]}
    });
    let f = EndpointsFile::from_value("x.json", &v).unwrap();
    let text = f.to_text();
    let order: Vec<usize> = ["\"standalone\"", "\"a-cluster\"", "\"no-id\""]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(EndpointsFile::from_value("x.json", &back).unwrap(), f);
}
