//! The endpoint proxy over real sockets, byte for byte: replies in order
//! with the proxy's own answers between them, pushes never inside a reply,
//! what a client may send (inline commands, malformed input in the server's
//! words, half a command), a client that never reads, and shards that answer
//! nothing without the database's password.
#![forbid(unsafe_code)]

mod common;

use std::time::Duration;

use common::{database, emulator, exchange, spawn_action};
use maint_e2e::notification::Kind;
use maint_e2e::raw::RawConnection;
use maint_e2e::server_record::CloseCause;
use maint_e2e::wait::{poll, Look};
use maint_e2e::Action;
use maint_e2e::DatabaseSpec;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_and_resp3_connections_get_byte_exact_replies() {
    let emu = emulator(Duration::from_millis(100));
    let (_, addr) = database(&emu, false).await;
    let mut resp2 = TcpStream::connect(&addr).await.unwrap();
    exchange(&mut resp2, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n").await;
    exchange(
        &mut resp2,
        b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n",
        b"$-1\r\n",
    )
    .await;

    let p = RawConnection::connect(&addr, true, None).await.unwrap();
    assert_eq!(p.command(&["GET", "missing"]).await.unwrap(), b"_\r\n");
    assert_eq!(p.command(&["SET", "k", "v"]).await.unwrap(), b"+OK\r\n");
    exchange(
        &mut resp2,
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"$1\r\nv\r\n",
    )
    .await;
    emu.shutdown().await;
}

/// A RESP2 subscriber of several channels gets a confirmation per channel,
/// on subscribing and on unsubscribing (each a reply the proxy passes on,
/// none dropped as unowed), and is back in step after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resp2_subscriber_gets_every_confirmation() {
    let emu = emulator(Duration::from_millis(100));
    let (_, addr) = database(&emu, false).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    exchange(
        &mut s,
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
    )
    .await;
    exchange(
        &mut s,
        b"*3\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n",
    )
    .await;
    exchange(&mut s, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n").await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_notifications_are_answered_by_the_proxy_in_reply_order() {
    let emu = emulator(Duration::from_millis(100));
    let (_, addr) = database(&emu, false).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    // RESP2: refused, and the connection stays usable.
    exchange(
        &mut s,
        b"*3\r\n$6\r\nCLIENT\r\n$19\r\nMAINT_NOTIFICATIONS\r\n$2\r\nON\r\n*1\r\n$4\r\nPING\r\n",
        b"-ERR CLIENT MAINT_NOTIFICATIONS needs RESP3: send HELLO 3 first\r\n+PONG\r\n",
    )
    .await;
    let p = RawConnection::connect(&addr, true, None).await.unwrap();
    let reply = |args: &'static [&'static str]| {
        let p = &p;
        async move { String::from_utf8(p.command(args).await.unwrap()).unwrap() }
    };
    assert_eq!(
        reply(&["CLIENT", "MAINT_NOTIFICATIONS", "ON"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        reply(&[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "internal-ip"
        ])
        .await,
        "+OK\r\n"
    );
    let bad = reply(&[
        "CLIENT",
        "MAINT_NOTIFICATIONS",
        "ON",
        "moving-endpoint-type",
        "bogus",
    ])
    .await;
    assert!(
        bad.starts_with("-ERR unknown endpoint type \"bogus\""),
        "{bad}"
    );
    let bad = reply(&["CLIENT", "MAINT_NOTIFICATIONS", "MAYBE"]).await;
    assert!(bad.starts_with("-ERR syntax"), "{bad}");
    assert_eq!(
        reply(&["CLIENT", "MAINT_NOTIFICATIONS", "OFF"]).await,
        "+OK\r\n"
    );

    // Pipelined: the local answer keeps its place between the shard's replies.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    // HELLO's map is long: read through the PONG that follows it.
    s.write_all(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n")
        .await
        .unwrap();
    let mut hello = Vec::new();
    while !hello.ends_with(b"+PONG\r\n") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after HELLO");
        hello.extend_from_slice(&chunk[..n]);
    }
    assert!(hello.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
    exchange(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*3\r\n$6\r\nCLIENT\r\n$19\r\nMAINT_NOTIFICATIONS\r\n$2\r\nON\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
        b"+OK\r\n+OK\r\n$1\r\n1\r\n",
    )
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_input_closes_only_that_connection() {
    let emu = emulator(Duration::from_millis(100));
    let (_, addr) = database(&emu, false).await;
    let healthy = RawConnection::connect(&addr, true, None).await.unwrap();
    for (input, says) in [
        (
            &b"*1\r\n:notanumber\r\n"[..],
            "-ERR Protocol error: expected '$', got ':'",
        ),
        (
            b"*1\r\n*1\r\n$1\r\na\r\n",
            "-ERR Protocol error: expected '$', got '*'",
        ),
        (b"*1\r\n$-7\r\n", "-ERR Protocol error: invalid bulk length"),
        // Refused at the header: the 93 GB are never waited for.
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\nabc",
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            b"*99999999999\r\n",
            "-ERR Protocol error: invalid multibulk length",
        ),
        (
            b"SET k \"unbalanced\r\n",
            "-ERR Protocol error: unbalanced quotes in request",
        ),
    ] {
        let mut bad = TcpStream::connect(&addr).await.unwrap();
        bad.write_all(input).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with(says), "{input:?}: {got}");
        healthy.ping().await.unwrap();
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_are_served_as_the_server_serves_them() {
    let emu = emulator(Duration::from_millis(100));
    let (_, addr) = database(&emu, false).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    exchange(
        &mut s,
        b"PING\r\nSET greeting \"hello world\"\n\r\nGET greeting\r\n*1\r\n$4\r\nPING\r\n",
        b"+PONG\r\n+OK\r\n$11\r\nhello world\r\n+PONG\r\n",
    )
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_never_split_a_reply_even_a_large_one() {
    let emu = emulator(Duration::from_millis(50));
    let (id, addr) = database(&emu, true).await;
    let big = "x".repeat(512 * 1024);
    let probe = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    assert_eq!(
        probe.command(&["SET", "big", &big]).await.unwrap(),
        b"+OK\r\n"
    );
    let gets: Vec<Vec<String>> = (0..40).map(|_| vec!["GET".into(), "big".into()]).collect();
    let failover = spawn_action(
        &emu,
        json!({"type": "failover", "parameters": {"bdb_id": id}}),
    );
    // Replies of 512 KiB stream while the notifications go out.
    let mut replies = Vec::new();
    while !failover.is_finished() || replies.len() < 80 {
        replies.extend(probe.pipeline(&gets).await.unwrap());
    }
    failover.await.unwrap().unwrap();
    let want = format!("${}\r\n{big}\r\n", big.len());
    assert!(
        replies.iter().all(|r| r == want.as_bytes()),
        "a reply was cut or changed"
    );
    let pushes = probe.pushes();
    let kinds: Vec<_> = pushes
        .iter()
        .map(|(_, n)| n.clone().map(|n| n.map(|n| n.kind())))
        .collect();
    assert_eq!(
        kinds,
        vec![Ok(Some(Kind::FailingOver)), Ok(Some(Kind::FailedOver))]
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_closes_and_reset_drops_the_opt_in() {
    let emu = emulator(Duration::from_millis(50));
    let (_, addr) = database(&emu, false).await;
    let p = RawConnection::connect(&addr, true, Some(None))
        .await
        .unwrap();
    assert_eq!(p.command(&["RESET"]).await.unwrap(), b"+RESET\r\n");
    // Back to RESP2: opting in again is refused until HELLO 3.
    let again = p
        .command(&["CLIENT", "MAINT_NOTIFICATIONS", "ON"])
        .await
        .unwrap();
    assert!(again.starts_with(b"-ERR CLIENT MAINT_NOTIFICATIONS needs RESP3"));
    assert_eq!(p.command(&["QUIT"]).await.unwrap(), b"+OK\r\n");
    p.wait_closed(Duration::from_secs(5)).await.unwrap();
    emu.shutdown().await;
}

/// A field of a shard's `INFO` (asked through `conn`), as a number (a
/// command's calls for `cmdstat_*`, 0 before its first).
async fn info_field(conn: &RawConnection, section: &str, field: &str) -> u64 {
    let info = conn.command(&["INFO", section]).await.unwrap();
    let info = String::from_utf8_lossy(&info).into_owned();
    let value = info
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim_start_matches("calls=").parse().ok());
    match value {
        Some(v) => v,
        None if field.starts_with("cmdstat_") => 0,
        None => panic!("no {field} in INFO {section}: {info}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_replies_is_held_back_and_harms_no_one() {
    let emu = emulator(Duration::from_millis(100));
    let (id, addr) = database(&emu, false).await;
    let healthy = RawConnection::connect(&addr, false, None).await.unwrap();
    let value = "v".repeat(100 * 1024);
    healthy.command(&["SET", "big", &value]).await.unwrap();
    let clients_before = info_field(&healthy, "clients", "connected_clients").await;

    // 4,000 GETs of 100 KB: 400 MB of replies, none of them read.
    let mut hog = TcpStream::connect(&addr).await.unwrap();
    hog.write_all(&b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(4000))
        .await
        .unwrap();

    // For two seconds the shard runs only what the proxy lets through (256
    // in flight, plus what the sockets' buffers hold), and holds little for it;
    // the other connection is served all along.
    let most = std::cell::Cell::new((0, 0));
    let seen = poll(Duration::from_millis(100), Duration::from_secs(2), || {
        let (most, healthy) = (&most, &healthy);
        async move {
            let gets = info_field(healthy, "commandstats", "cmdstat_get").await;
            let held = info_field(healthy, "memory", "mem_clients_normal").await;
            let (g, h) = most.get();
            most.set((g.max(gets), h.max(held)));
            let got = healthy.command(&["GET", "big"]).await.unwrap();
            assert!(got.len() > 100 * 1024, "the other connection is served");
            anyhow::Ok(Look::<(), ()>::NotYet(()))
        }
    })
    .await
    .unwrap();
    assert!(seen.is_err());
    let (gets, held) = most.get();
    println!("the shard ran {gets} GETs and held at most {held} bytes of client output");
    assert!(
        gets < 1000,
        "the shard ran {gets} GETs for a client that reads nothing"
    );
    assert!(
        held < 64 << 20,
        "the shard held {} MiB of output for its clients",
        held >> 20
    );

    // A proxy restart closes even a connection whose writes are stalled: its
    // shard connection goes too.
    emu.run(&Action::parse(&json!({"type": "dmc_restart", "parameters": {"bdb_id": id}})).unwrap())
        .await
        .unwrap();
    let probe = RawConnection::connect(&addr, false, None).await.unwrap();
    let gone = poll(
        Duration::from_millis(50),
        Duration::from_secs(5),
        || async {
            let now = info_field(&probe, "clients", "connected_clients").await;
            // The admin connection and the probe's, as before the hog came.
            anyhow::Ok(match now <= clients_before {
                true => Look::Ready(()),
                false => Look::NotYet(now),
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(
        gone,
        Ok(()),
        "the stalled connection's shard connection stayed open"
    );
    drop(hog);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_a_database_with_a_password_answer_nothing_without_it() {
    let emu = emulator(Duration::from_millis(100));
    let db = emu
        .create_database(DatabaseSpec {
            replication: Some(true),
            password: Some("shard-secret".into()),
            ..DatabaseSpec::default()
        })
        .await
        .unwrap();
    let sets = db.shard_sets().await;
    let set = &sets[0];
    for (role, addr) in [("primary", set.primary), ("replica", set.replica.unwrap())] {
        for command in [
            &["GET", "k"][..],
            &["CONFIG", "GET", "requirepass"],
            &["KEYS", "*"],
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let wire = command
                .iter()
                .fold(format!("*{}\r\n", command.len()), |w, a| {
                    w + &format!("${}\r\n{a}\r\n", a.len())
                });
            s.write_all(wire.as_bytes()).await.unwrap();
            let mut got = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
                .await
                .unwrap()
                .unwrap();
            let got = String::from_utf8_lossy(&got[..n]);
            assert!(
                got.starts_with("-NOAUTH Authentication required"),
                "{role} {addr} answered {command:?} without the password: {got}"
            );
        }
    }
    // Through the endpoint, with the password, the same database serves.
    let mut s = TcpStream::connect(format!("127.0.0.1:{}", db.port()))
        .await
        .unwrap();
    exchange(
        &mut s,
        b"*2\r\n$4\r\nAUTH\r\n$12\r\nshard-secret\r\n*1\r\n$4\r\nPING\r\n",
        b"+OK\r\n+PONG\r\n",
    )
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_command_waits_for_the_rest_and_holds_up_no_one_else() {
    let emu = emulator(Duration::from_millis(100));
    let (_, addr) = database(&emu, false).await;
    let healthy = RawConnection::connect(&addr, false, None).await.unwrap();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    // Half a SET: the header, then the value cut short.
    slow.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nhello")
        .await
        .unwrap();
    // Others are served while it is stuck; the key is not set yet.
    healthy.ping().await.unwrap();
    assert_eq!(
        healthy.command(&["EXISTS", "half"]).await.unwrap(),
        b":0\r\n"
    );
    // The rest arrives: the command runs, whole.
    exchange(&mut slow, b"world\r\n", b"+OK\r\n").await;
    assert_eq!(
        healthy.command(&["GET", "half"]).await.unwrap(),
        b"$10\r\nhelloworld\r\n"
    );
    emu.shutdown().await;
}

/// `dns_resolution_change` moves the endpoint unannounced, and the old node
/// lets each connection go at its next pause after a reply (as clients'
/// suites that send without retries expect): a request in flight is
/// answered, so is one sent just after the change, and the end of the
/// stream follows the reply. A connection that sends nothing is let go
/// within `DRAIN_WITHIN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_change_lets_each_connection_go_after_a_reply() {
    let emu = emulator(Duration::from_millis(100));
    let (id, addr) = database(&emu, true).await;
    let db = emu.database(id).unwrap();
    let from = db.active_node();
    let old = format!("{}:{}", from.internal_ip(), db.port());
    let [busy, late, idle] = [(); 3].map(|_| RawConnection::connect(&addr, true, None));
    let (busy, late, idle) = (
        busy.await.unwrap(),
        late.await.unwrap(),
        idle.await.unwrap(),
    );
    for c in [&busy, &late, &idle] {
        c.command(&["CLIENT", "SETNAME", "drained"]).await.unwrap();
    }
    let action = spawn_action(
        &emu,
        json!({"type": "topology_change_standalone", "parameters": {
            "bdb_id": id, "effect": "dns_resolution_change"}}),
    );
    // In flight when the grace (3 s) ends and the old node lets go.
    let busy = tokio::spawn(async move {
        let reply = busy.command(&["BLPOP", "nothing", "3.5"]).await;
        (reply, busy)
    });
    // The old node stops taking connections when it starts letting go.
    let refused = poll(
        Duration::from_millis(20),
        Duration::from_secs(6),
        || async {
            anyhow::Ok(match TcpStream::connect(&old).await {
                Err(_) => Look::Ready(()),
                Ok(_) => Look::NotYet(()),
            })
        },
    )
    .await
    .unwrap();
    assert!(refused.is_ok(), "the old node still takes connections");
    assert_eq!(late.command(&["PING"]).await.unwrap(), b"+PONG\r\n");
    late.wait_closed(Duration::from_secs(1)).await.unwrap();
    idle.wait_closed(maint_e2e::timing::DRAIN_WITHIN + Duration::from_secs(1))
        .await
        .unwrap();
    let (reply, busy) = busy.await.unwrap();
    assert_eq!(
        reply.unwrap(),
        b"_\r\n",
        "the request in flight was cut off"
    );
    busy.wait_closed(Duration::from_secs(1)).await.unwrap();
    action.await.unwrap().unwrap();

    let record = db.record(None, &emu.nodes()).await;
    let ours: Vec<_> = record.named("drained").collect();
    assert_eq!(ours.len(), 3, "{record:?}");
    for c in ours {
        assert_eq!(c.closed_by, Some(CloseCause::AddressChange), "{c:?}");
    }
    for c in [&late, &idle] {
        assert!(c.pushes().is_empty(), "an address change is not announced");
    }
    emu.shutdown().await;
}
