//! The client under test against a server without maintenance notifications
//! (a bare redis-server, as open-source Redis answers them).
#![forbid(unsafe_code)]

use std::sync::Arc;

use maint_e2e::client::{
    ClientError, ClientFactory, ClientOptions, MaintState, Mode, NoEvents, Protocol,
};
use maint_e2e::config::{DatabaseConfig, DatabaseEndpoint};
use maint_e2e::emulator::{redis_server_bin, Shard, ShardSpec};

/// An emulator with one database made from `spec`, and that database's entry
/// of the endpoints file.
async fn emulated(
    spec: maint_e2e::DatabaseSpec,
) -> (
    Arc<maint_e2e::emulator::Emulator>,
    Arc<maint_e2e::emulator::Database>,
    DatabaseConfig,
) {
    use maint_e2e::emulator::{Emulator, EmulatorConfig, Timings};
    let emu = Emulator::new(EmulatorConfig {
        nodes: 2,
        timings: Timings::fast(std::time::Duration::from_secs(1)),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let db = emu.create_database(spec).await.unwrap();
    let config = emu.endpoints_file().database(db.name()).unwrap().clone();
    (emu, db, config)
}

async fn bare_server(dir: &std::path::Path) -> Shard {
    let bin = redis_server_bin().expect("redis-server must be installed for these tests");
    Shard::start(
        &bin,
        dir,
        ShardSpec {
            id: 1,
            node: 1,
            replica_of: None,
            password: None,
            args: Vec::new(),
            cluster: false,
        },
    )
    .await
    .unwrap()
}

/// A factory for a database on 127.0.0.1:`port`.
fn factory_for(port: u16, tls: bool) -> ClientFactory {
    ClientFactory::new(
        DatabaseConfig {
            name: "bare".into(),
            bdb_id: None,
            username: None,
            password: None,
            tls,
            certificates_location: None,
            endpoints: vec![DatabaseEndpoint {
                tls,
                host: "127.0.0.1".into(),
                port,
            }],
            raw_endpoints: None,
            discovery_endpoints: Vec::new(),
        },
        Arc::new(NoEvents),
    )
}

fn factory_at(port: u16) -> ClientFactory {
    factory_for(port, false)
}

fn factory(shard: &Shard) -> ClientFactory {
    factory_at(shard.addr.port())
}

#[tokio::test]
async fn enabled_mode_fails_clearly_against_a_server_without_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let shard = bare_server(dir.path()).await;
    let f = factory(&shard);
    let err = f
        .create(
            "strict",
            ClientOptions {
                mode: Mode::Enabled,
                ..ClientOptions::default()
            },
        )
        .await
        .err()
        .expect("enabled mode must refuse a server without maintenance notifications");
    let ClientError::Handshake { context: msg, .. } = &err else {
        panic!("expected a handshake error, got {err}")
    };
    assert!(
        msg.contains("does not support maintenance notifications"),
        "{msg}"
    );
    assert!(msg.contains("use mode auto or disabled"), "{msg}");
    shard.stop().await;
}

#[tokio::test]
async fn auto_mode_turns_the_feature_off_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let shard = bare_server(dir.path()).await;
    let f = factory(&shard);
    let c = f.create("lenient", ClientOptions::default()).await.unwrap();
    assert!(matches!(
        c.connections()[0].maint_state(),
        Some(MaintState::Refused(ref why)) if why.contains("unknown subcommand")
    ));
    let pong: String = c.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    f.destroy_all().await;
    shard.stop().await;
}

#[tokio::test]
async fn resp2_with_enabled_mode_is_refused_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let shard = bare_server(dir.path()).await;
    let f = factory(&shard);
    let err = f
        .create(
            "resp2-strict",
            ClientOptions {
                mode: Mode::Enabled,
                protocol: Protocol::Resp2,
                ..ClientOptions::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("need RESP3"), "{err}");
    let c = f
        .create(
            "resp2-auto",
            ClientOptions {
                protocol: Protocol::Resp2,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.connections()[0].maint_state(), Some(MaintState::Off));
    let pong: String = c.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    f.destroy_all().await;
    shard.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let port = maint_e2e::emulator::free_port().unwrap();
    let f = factory_at(port);
    let err = f.create("c", ClientOptions::default()).await.err().unwrap();
    assert_eq!(err.class(), "connection", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_handshake_error_and_the_right_one_survives_failover() {
    use maint_e2e::Action;
    use maint_e2e::DatabaseSpec;
    let (emu, db, good) = emulated(DatabaseSpec {
        password: Some("s3cret".into()),
        ..DatabaseSpec::default()
    })
    .await;
    assert_eq!(good.password.as_deref(), Some("s3cret"));
    let mut bad = good.clone();
    bad.password = Some("wrong".into());
    let err = ClientFactory::new(bad, Arc::new(NoEvents))
        .create("intruder", ClientOptions::default())
        .await
        .err()
        .expect("a wrong password must be refused");
    assert_eq!(err.class(), "handshake", "{err}");
    // The server's refusal is the cause, kept under the error.
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    assert!(err.chain().to_lowercase().contains("wrongpass"), "{err}");

    let f = ClientFactory::new(good, Arc::new(NoEvents));
    let c = f.create("owner", ClientOptions::default()).await.unwrap();
    let _: () = c.query(redis::cmd("SET").arg("k").arg("v")).await.unwrap();
    emu.run(
        &Action::parse(&serde_json::json!({"type": "failover", "parameters": {"bdb_id": db.id()}}))
            .unwrap(),
    )
    .await
    .unwrap();
    // The proxy replays the credentials on the new primary.
    let v: String = c.query(redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(v, "v");
    f.destroy_all().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_database_is_verified_against_its_ca_and_a_bad_ca_is_a_clear_error() {
    use maint_e2e::emulator::TlsMaterial;
    use maint_e2e::DatabaseSpec;
    let (emu, _db, good) = emulated(DatabaseSpec {
        tls: Some(true),
        replication: Some(false),
        ..DatabaseSpec::default()
    })
    .await;
    assert!(good.tls && good.endpoints[0].tls);
    assert!(good.endpoints[0].to_string().starts_with("rediss://"));
    let f = ClientFactory::new(good.clone(), Arc::new(NoEvents));
    let c = f.create("ok", ClientOptions::default()).await.unwrap();
    let _: () = c.query(redis::cmd("SET").arg("k").arg("v")).await.unwrap();
    let v: String = c.query(redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(v, "v");

    // Another CA: the server is not trusted.
    let other = tempfile::tempdir().unwrap();
    TlsMaterial::generate(other.path(), "another CA", &["127.0.0.1".into()]).unwrap();
    let mut impostor = good.clone();
    impostor.certificates_location = Some(other.path().to_path_buf());
    let err = ClientFactory::new(impostor, Arc::new(NoEvents))
        .create("wrong-ca", ClientOptions::default())
        .await
        .err()
        .expect("a server signed by another CA must be refused");
    assert!(err.chain().to_lowercase().contains("certificate"), "{err}");

    // No CA file where the endpoints file says.
    let mut missing = good.clone();
    missing.certificates_location = Some("/nonexistent/certs".into());
    let err = ClientFactory::new(missing, Arc::new(NoEvents))
        .create("no-ca", ClientOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.class(), "options", "{err}");
    assert!(
        err.to_string().contains("/nonexistent/certs") && err.to_string().contains("ca.crt"),
        "{err}"
    );

    // Plain RESP to a TLS endpoint gets nowhere.
    let mut plain = good;
    plain.tls = false;
    plain.endpoints[0].tls = false;
    assert!(ClientFactory::new(plain, Arc::new(NoEvents))
        .create("plain", ClientOptions::default())
        .await
        .is_err());
    f.destroy_all().await;
    emu.shutdown().await;
}

/// Creates a client of `db` with `tls` settings; the error's chain on failure.
async fn tls_client(
    db: &DatabaseConfig,
    tls: maint_e2e::client::TlsOptions,
) -> Result<Arc<maint_e2e::client::Client>, ClientError> {
    let options = ClientOptions {
        tls,
        ..ClientOptions::default()
    };
    ClientFactory::new(db.clone(), Arc::new(NoEvents))
        .create("tls", options)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_mutual_tls_and_verification_are_each_enforced_with_a_clear_error() {
    use maint_e2e::client::{ClientCertificate, TlsOptions, TrustedCa};
    use maint_e2e::config::TlsVersion;
    use maint_e2e::DatabaseSpec;
    let (emu, db, strict) = emulated(DatabaseSpec {
        tls: Some(true),
        tls_min_version: Some("1.3".into()),
        enforce_client_authentication: Some(true),
        replication: Some(false),
        ..DatabaseSpec::default()
    })
    .await;
    assert_eq!(
        db.tls_policy().map(|p| (p.min_version, p.client_auth)),
        Some((TlsVersion::V13, true))
    );
    // The certificates the endpoints file points at: the client certificate
    // beside the CA is shown by default.
    let c = tls_client(&strict, TlsOptions::default()).await.unwrap();
    let v: String = c.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(v, "PONG");
    // The server's record says which version each connection negotiated.
    let record = db.record(None, &emu.nodes()).await;
    let versions: Vec<_> = record
        .connections
        .iter()
        .filter(|c| c.is_open())
        .map(|c| c.tls.clone())
        .collect();
    assert_eq!(versions, [Some("1.3".to_string())]);
    c.close().await;

    let refused = |o: TlsOptions| {
        let strict = strict.clone();
        async move {
            tls_client(&strict, o)
                .await
                .err()
                .expect("this client must be refused")
        }
    };
    // Capped at 1.2 against a 1.3-only endpoint.
    let e = refused(TlsOptions {
        max_version: TlsVersion::V12,
        ..TlsOptions::default()
    })
    .await;
    assert_eq!(e.class(), "handshake", "{}", e.chain());
    assert!(
        e.to_string().contains("share no TLS version") && e.to_string().contains("TLS 1.2 only"),
        "{}",
        e.chain()
    );
    // No client certificate where one is required.
    let e = refused(TlsOptions {
        client_certificate: ClientCertificate::Without,
        ..TlsOptions::default()
    })
    .await;
    assert!(
        e.to_string().contains("requires a client certificate"),
        "{}",
        e.chain()
    );
    // Verification on with the system's roots: the emulator's CA is unknown.
    let e = refused(TlsOptions {
        ca: TrustedCa::System,
        ..TlsOptions::default()
    })
    .await;
    assert!(
        e.to_string()
            .contains("not signed by a CA the client trusts"),
        "{}",
        e.chain()
    );
    // ...and off: accepted.
    let c = tls_client(
        &strict,
        TlsOptions {
            ca: TrustedCa::System,
            verify: false,
            ..TlsOptions::default()
        },
    )
    .await
    .unwrap();
    let v: String = c.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(v, "PONG");
    c.close().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_is_checked_by_the_shards_and_a_wrong_password_fails_at_once() {
    use maint_e2e::fault_injector::AclUser;
    use maint_e2e::DatabaseSpec;
    let (emu, _db, config) = emulated(DatabaseSpec {
        password: Some("admin-pw".into()),
        acl_users: vec![AclUser {
            name: "limited".into(),
            password: "limited-pw".into(),
            rules: Some(maint_e2e::emulator::LIMITED_ACL_RULES.into()),
        }],
        replication: Some(false),
        ..DatabaseSpec::default()
    })
    .await;
    assert_eq!(config.username.as_deref(), Some("limited"));
    let f = ClientFactory::new(config.clone(), Arc::new(NoEvents));
    let c = f.create("acl", ClientOptions::default()).await.unwrap();
    let who: String = c.query(redis::cmd("ACL").arg("WHOAMI")).await.unwrap();
    assert_eq!(who, "limited");
    let _: () = c
        .query(redis::cmd("SET").arg("maint-e2e:k").arg("v"))
        .await
        .unwrap();
    let e = c
        .query::<()>(redis::cmd("SET").arg("elsewhere").arg("v"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("NOPERM"), "{e}");
    let e = c.query::<()>(&redis::cmd("FLUSHALL")).await.unwrap_err();
    assert!(e.to_string().contains("NOPERM"), "{e}");

    let mut wrong = config.clone();
    wrong.password = Some("not-it".into());
    let t = std::time::Instant::now();
    let e = ClientFactory::new(wrong, Arc::new(NoEvents))
        .create("wrong", ClientOptions::default())
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(e.class(), "handshake", "{}", e.chain());
    assert!(e.chain().contains("WRONGPASS"), "{}", e.chain());
    f.destroy_all().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_naming_the_name_dialled() {
    use maint_e2e::client::TlsOptions;
    use maint_e2e::emulator::{TlsMaterial, TlsPolicy};
    // A TLS server on 127.0.0.1 whose certificate, from a CA the client
    // trusts, is for another name only.
    let dir = tempfile::tempdir().unwrap();
    let material = TlsMaterial::generate(dir.path(), "test CA", &["other.example".into()]).unwrap();
    let acceptor = material.acceptor(TlsPolicy::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = acceptor.accept(s).await;
        }
    });
    let mut db = DatabaseConfig::at("renamed", DatabaseEndpoint::plain(addr));
    db.tls = true;
    db.endpoints[0].tls = true;
    db.certificates_location = Some(dir.path().to_path_buf());
    let e = tls_client(&db, TlsOptions::default()).await.err().unwrap();
    assert_eq!(e.class(), "handshake", "{}", e.chain());
    assert!(
        e.to_string()
            .contains(&format!("not valid for the name {addr} dialled")),
        "{}",
        e.chain()
    );
    server.abort();
}

/// The client counts its sockets: one per connection of its pool, and they
/// are no longer counted once closed (ST1's pool bound reads the peak).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_counts_its_open_sockets_and_their_peak() {
    let dir = tempfile::tempdir().unwrap();
    let shard = bare_server(dir.path()).await;
    let f = factory(&shard);
    let c = f
        .create(
            "counted",
            ClientOptions {
                pool_size: 3,
                mode: Mode::Disabled,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((c.sockets().open(), c.sockets().peak()), (3, 3));
    c.close().await;
    // The drivers end once the last handle is gone.
    let closed = maint_e2e::wait::poll(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(5),
        || async {
            Ok::<_, ()>(match c.sockets().open() {
                0 => maint_e2e::wait::Look::Ready(()),
                n => maint_e2e::wait::Look::NotYet(n),
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(closed, Ok(()), "sockets still counted open after close");
    assert_eq!(c.sockets().peak(), 3);
    f.destroy_all().await;
    shard.stop().await;
}
