//! Unit tests of [`super`].

use super::*;
use redis_protocol::resp3::types::BytesFrame;

#[test]
fn the_json_elements_follow_the_wire_layout() {
    let moving = Notification::Moving {
        seq: 7,
        time_s: 15,
        endpoint: None,
    };
    assert_eq!(moving.to_json(), serde_json::json!(["MOVING", 7, 15, null]));
    let migrating = Notification::Migrating {
        seq: 3,
        time_s: Some(5),
        shards: vec!["1".into(), "2".into()],
    };
    assert_eq!(
        migrating.to_json(),
        serde_json::json!(["MIGRATING", 3, 5, "1,2"])
    );
}
use redis::Value as V;

fn bulk(s: &str) -> V {
    V::BulkString(s.as_bytes().to_vec())
}

#[test]
fn moving_encodes_byte_exact() {
    let n = Notification::Moving {
        seq: 7,
        time_s: 15,
        endpoint: Some(Endpoint::new("127.0.2.1", 12000)),
    };
    assert_eq!(
        &n.to_resp3()[..],
        b">4\r\n$6\r\nMOVING\r\n:7\r\n:15\r\n$15\r\n127.0.2.1:12000\r\n"
    );
}

#[test]
fn moving_null_encodes_resp3_null() {
    let n = Notification::Moving {
        seq: 0,
        time_s: 2,
        endpoint: None,
    };
    assert_eq!(
        &n.to_resp3()[..],
        b">4\r\n$6\r\nMOVING\r\n:0\r\n:2\r\n_\r\n"
    );
}

#[test]
fn failing_over_and_failed_over_encode_byte_exact() {
    let start = Notification::FailingOver {
        seq: 4,
        time_s: Some(2),
        shards: vec!["1".into()],
    };
    assert_eq!(
        &start.to_resp3()[..],
        b">4\r\n$12\r\nFAILING_OVER\r\n:4\r\n:2\r\n$1\r\n1\r\n"
    );
    let done = Notification::FailedOver {
        seq: 5,
        shards: vec!["1".into()],
    };
    assert_eq!(
        &done.to_resp3()[..],
        b">3\r\n$11\r\nFAILED_OVER\r\n:5\r\n$1\r\n1\r\n"
    );
}

#[test]
fn migrated_encodes_byte_exact() {
    // Exactly three elements: name, seq, shard ids (Jedis's strict layout).
    let n = Notification::Migrated {
        seq: 9,
        shards: vec!["2".into()],
    };
    assert_eq!(
        &n.to_resp3()[..],
        b">3\r\n$8\r\nMIGRATED\r\n:9\r\n$1\r\n2\r\n"
    );
}

#[test]
fn smigrating_encodes_one_string_of_slots_byte_exact() {
    // Element 2 is ONE string of slots and ranges: redis-py and Jedis read
    // only that element.
    let n = Notification::SMigrating {
        seq: 11,
        slots: "1000-2000,3000".into(),
    };
    assert_eq!(
        &n.to_resp3()[..],
        b">3\r\n$10\r\nSMIGRATING\r\n:11\r\n$14\r\n1000-2000,3000\r\n"
    );
}

#[test]
fn smigrated_encodes_triplets_byte_exact() {
    // Element 2 is an array of [source, target, slots] triplets, never pairs.
    let n = Notification::SMigrated {
        seq: 12,
        moves: vec![
            SlotMove {
                source: Endpoint::new("127.0.1.1", 12001),
                target: Endpoint::new("127.0.2.1", 12001),
                slots: "1000-2000".into(),
            },
            SlotMove {
                source: Endpoint::new("127.0.1.1", 12001),
                target: Endpoint::new("127.0.3.1", 12001),
                slots: "3000".into(),
            },
        ],
        rejected: Vec::new(),
    };
    let want: &[u8] = b">3\r\n$9\r\nSMIGRATED\r\n:12\r\n*2\r\n\
*3\r\n$15\r\n127.0.1.1:12001\r\n$15\r\n127.0.2.1:12001\r\n$9\r\n1000-2000\r\n\
*3\r\n$15\r\n127.0.1.1:12001\r\n$15\r\n127.0.3.1:12001\r\n$4\r\n3000\r\n";
    assert_eq!(
        String::from_utf8_lossy(&n.to_resp3()),
        String::from_utf8_lossy(want)
    );
}

#[test]
fn several_shard_ids_travel_as_one_element_and_split_back() {
    let n = Notification::Migrating {
        seq: 8,
        time_s: Some(3),
        shards: vec!["3".into(), "5".into()],
    };
    // Exactly four elements, as strict parsers require.
    assert_eq!(
        &n.to_resp3()[..],
        b">4\r\n$9\r\nMIGRATING\r\n:8\r\n:3\r\n$3\r\n3,5\r\n"
    );
    let back = Notification::from_push("MIGRATED", &[V::Int(9), bulk("3, 5")]).unwrap();
    assert_eq!(
        back,
        Some(Notification::Migrated {
            seq: 9,
            shards: vec!["3".into(), "5".into()]
        })
    );
}

#[test]
fn every_kind_round_trips_through_both_decoders() {
    let e = |h: &str, p| Endpoint::new(h, p);
    let all = vec![
        Notification::Moving {
            seq: 1,
            time_s: 15,
            endpoint: Some(e("::1", 12000)),
        },
        Notification::Moving {
            seq: 1,
            time_s: 0,
            endpoint: None,
        },
        Notification::Migrating {
            seq: 2,
            time_s: Some(3),
            shards: vec!["1".into(), "2".into()],
        },
        Notification::Migrated {
            seq: 3,
            shards: vec!["1".into()],
        },
        Notification::FailingOver {
            seq: 4,
            time_s: Some(0),
            shards: vec!["3".into()],
        },
        Notification::FailedOver {
            seq: 5,
            shards: vec![],
        },
        Notification::SMigrating {
            seq: 6,
            slots: "0,5-10,20".into(),
        },
        Notification::SMigrated {
            seq: 7,
            moves: vec![
                SlotMove {
                    source: e("127.0.1.1", 7001),
                    target: e("127.0.2.1", 7002),
                    slots: "0-100".into(),
                },
                SlotMove {
                    source: e("127.0.1.1", 7001),
                    target: e("127.0.3.1", 7003),
                    slots: "101,200-300".into(),
                },
            ],
            rejected: vec![],
        },
    ];
    for n in all {
        let bytes = n.to_resp3();
        assert_eq!(
            Notification::from_resp3_bytes(&bytes).unwrap(),
            Some(n.clone())
        );
        let BytesFrame::Push { data, .. } = n.to_frame() else {
            panic!("not a push")
        };
        let values: Vec<V> = data[1..].iter().map(frame_to_value).collect();
        assert_eq!(
            Notification::from_push(n.kind().as_str(), &values).unwrap(),
            Some(n)
        );
    }
}

fn frame_to_value(f: &BytesFrame) -> V {
    match f {
        BytesFrame::Number { data, .. } => V::Int(*data),
        BytesFrame::BlobString { data, .. } => V::BulkString(data.to_vec()),
        BytesFrame::Null => V::Nil,
        BytesFrame::Array { data, .. } => V::Array(data.iter().map(frame_to_value).collect()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn missing_endpoint_means_null() {
    let n = Notification::from_push("MOVING", &[V::Int(3), V::Int(15)]).unwrap();
    assert_eq!(
        n,
        Some(Notification::Moving {
            seq: 3,
            time_s: 15,
            endpoint: None
        })
    );
}

#[test]
fn placeholder_endpoints_mean_null() {
    for text in ["?:7002", ":7002", "host:0", "null"] {
        let n = Notification::from_push("MOVING", &[V::Int(3), V::Int(15), bulk(text)]).unwrap();
        assert!(
            matches!(n, Some(Notification::Moving { endpoint: None, .. })),
            "{text}: {n:?}"
        );
    }
}

#[test]
fn numeric_strings_lowercase_names_and_extra_elements_are_accepted() {
    let n = Notification::from_push(
        "moving",
        &[
            bulk("12"),
            V::SimpleString("30".into()),
            bulk("10.0.0.1:6379"),
            bulk("extra"),
            V::Int(9),
        ],
    )
    .unwrap();
    assert_eq!(
        n,
        Some(Notification::Moving {
            seq: 12,
            time_s: 30,
            endpoint: Some(Endpoint::new("10.0.0.1", 6379))
        })
    );
    let n = Notification::from_push("Failed_Over", &[V::Int(8)]).unwrap();
    assert_eq!(
        n,
        Some(Notification::FailedOver {
            seq: 8,
            shards: vec![]
        })
    );
}

#[test]
fn migrating_without_time_is_allowed() {
    let n = Notification::from_push("MIGRATING", &[V::Int(1)]).unwrap();
    assert_eq!(
        n,
        Some(Notification::Migrating {
            seq: 1,
            time_s: None,
            shards: vec![]
        })
    );
}

#[test]
fn shard_ids_may_be_integers_or_an_array() {
    let n = Notification::from_push(
        "MIGRATED",
        &[V::Int(2), V::Array(vec![V::Int(1), bulk("2")])],
    )
    .unwrap();
    assert_eq!(
        n,
        Some(Notification::Migrated {
            seq: 2,
            shards: vec!["1".into(), "2".into()]
        })
    );
}

#[test]
fn ipv6_endpoints_parse_in_both_forms() {
    for text in ["[::1]:12000", "::1:12000"] {
        assert_eq!(
            Endpoint::parse(text).unwrap(),
            Some(Endpoint::new("::1", 12000)),
            "{text}"
        );
    }
    assert_eq!(Endpoint::new("::1", 12000).to_string(), "[::1]:12000");
}

#[test]
fn smigrating_accepts_several_slot_elements() {
    let n =
        Notification::from_push("SMIGRATING", &[V::Int(4), bulk("0,5-10"), bulk("20")]).unwrap();
    assert_eq!(
        n,
        Some(Notification::SMigrating {
            seq: 4,
            slots: "0,5-10,20".into()
        })
    );
    assert_eq!(
        parse_slots("0,5-10,20").unwrap(),
        vec![(0, 0), (5, 10), (20, 20)]
    );
    assert!(parse_slots("10-5").is_err());
}

#[test]
fn smigrated_pairs_are_rejected_not_dropped() {
    let err = Notification::from_push(
        "SMIGRATED",
        &[
            V::Int(4),
            V::Array(vec![V::Array(vec![bulk("a:1"), bulk("b:2")])]),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected 3"), "{err}");
}

#[test]
fn a_bad_smigrated_entry_is_skipped_and_reported_the_rest_kept() {
    let n = Notification::from_push(
        "SMIGRATED",
        &[
            V::Int(9),
            V::Array(vec![
                V::Array(vec![bulk("127.0.1.1:7001"), bulk("127.0.2.1:7002")]),
                V::Array(vec![
                    bulk("127.0.1.1:7001"),
                    bulk("127.0.2.1:7002"),
                    bulk("0-99"),
                ]),
                V::Int(3),
            ]),
        ],
    )
    .unwrap()
    .unwrap();
    let Notification::SMigrated {
        seq,
        moves,
        rejected,
    } = &n
    else {
        panic!("{n:?}")
    };
    assert_eq!((*seq, moves.len(), moves[0].slots.as_str()), (9, 1, "0-99"));
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected[0].contains("2 elements, expected 3"),
        "{rejected:?}"
    );
    assert!(
        n.to_string().ends_with("(2 malformed entries skipped)"),
        "{n}"
    );
}

#[test]
fn malformed_frames_are_errors_with_a_reason() {
    let err = Notification::from_push("MOVING", &[]).unwrap_err();
    assert_eq!(err.to_string(), "MOVING lacks its seq");
    let err = Notification::from_push("MOVING", &[bulk("x"), V::Int(1)]).unwrap_err();
    assert!(err.to_string().contains("bad seq"), "{err}");
    let err = Notification::from_push("MOVING", &[V::Int(1), V::Int(-3)]).unwrap_err();
    assert!(err.to_string().contains("bad time_s"), "{err}");
    let err =
        Notification::from_push("MOVING", &[V::Int(1), V::Int(3), bulk("nohostport")]).unwrap_err();
    assert!(matches!(err, NotificationError::BadEndpoint(_)), "{err}");
    assert!(Notification::from_resp3_bytes(b">1\r\n:5\r\n").is_err());
    assert!(Notification::from_resp3_bytes(b"+OK\r\n").is_err());
}

#[test]
fn other_pushes_are_not_notifications() {
    assert_eq!(Notification::from_push("invalidate", &[]).unwrap(), None);
    assert_eq!(
        Notification::from_resp3_bytes(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n").unwrap(),
        None
    );
}
