//! Property tests of the notification wire form: every notification reads
//! back as itself, and no push frame, however odd, makes the decoder panic.
//! Failing cases proptest finds are kept under `proptest-regressions/` and
//! replayed first on every run.

use proptest::prelude::*;
use redis_protocol::resp3::types::BytesFrame;

use super::*;

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let host = prop_oneof![
        "[a-z][a-z0-9-]{0,12}(\\.[a-z0-9-]{1,8}){0,3}",
        (0u8.., 0u8.., 0u8.., 1u8..).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
    ];
    (host, 1u16..).prop_map(|(h, p)| Endpoint::new(h, p))
}

fn shards() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[0-9]{1,4}", 0..4)
}

fn slots() -> impl Strategy<Value = String> {
    prop::collection::vec((0u16..16384, 0u16..100), 1..4).prop_map(|ranges| {
        ranges
            .iter()
            .map(|&(a, len)| {
                let b = (a + len).min(16383);
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn notification() -> impl Strategy<Value = Notification> {
    let seq = 0i64..i64::MAX;
    let time = 0u64..1_000_000;
    prop_oneof![
        (seq.clone(), time.clone(), prop::option::of(endpoint())).prop_map(
            |(seq, time_s, endpoint)| Notification::Moving {
                seq,
                time_s,
                endpoint
            }
        ),
        (seq.clone(), prop::option::of(time.clone()), shards()).prop_map(
            |(seq, time_s, shards)| Notification::Migrating {
                seq,
                time_s,
                shards
            }
        ),
        (seq.clone(), shards()).prop_map(|(seq, shards)| Notification::Migrated { seq, shards }),
        (seq.clone(), prop::option::of(time), shards()).prop_map(|(seq, time_s, shards)| {
            Notification::FailingOver {
                seq,
                time_s,
                shards,
            }
        }),
        (seq.clone(), shards()).prop_map(|(seq, shards)| Notification::FailedOver { seq, shards }),
        (seq.clone(), slots()).prop_map(|(seq, slots)| Notification::SMigrating { seq, slots }),
        (
            seq,
            prop::collection::vec(
                (endpoint(), endpoint(), slots()).prop_map(|(source, target, slots)| SlotMove {
                    source,
                    target,
                    slots
                }),
                1..4
            )
        )
            .prop_map(|(seq, moves)| Notification::SMigrated {
                seq,
                moves,
                rejected: vec![],
            }),
    ]
}

/// Any RESP3 element a server could put in a push.
fn element() -> impl Strategy<Value = BytesFrame> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|i| BytesFrame::Number {
            data: i,
            attributes: None
        }),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| BytesFrame::BlobString {
            data: b.into(),
            attributes: None
        }),
        "[ -~]{0,16}".prop_map(|s| BytesFrame::SimpleString {
            data: s.into_bytes().into(),
            attributes: None
        }),
        Just(BytesFrame::Null),
        any::<f64>().prop_map(|d| BytesFrame::Double {
            data: d,
            attributes: None
        }),
        any::<bool>().prop_map(|b| BytesFrame::Boolean {
            data: b,
            attributes: None
        }),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(|data| BytesFrame::Array {
            data,
            attributes: None,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_notification_reads_back_as_itself(n in notification()) {
        let bytes = n.to_resp3();
        // A start without a duration goes out as 0: strict parsers take a
        // fixed number of elements, so the place cannot be left empty.
        let sent = match n {
            Notification::Migrating { seq, time_s, shards } => {
                Notification::Migrating { seq, time_s: Some(time_s.unwrap_or(0)), shards }
            }
            Notification::FailingOver { seq, time_s, shards } => {
                Notification::FailingOver { seq, time_s: Some(time_s.unwrap_or(0)), shards }
            }
            other => other,
        };
        prop_assert_eq!(Notification::from_resp3_bytes(&bytes), Ok(Some(sent)));
    }

    #[test]
    fn no_push_frame_makes_the_decoder_panic(
        name in prop_oneof![
            Just("MOVING"), Just("MIGRATING"), Just("MIGRATED"), Just("FAILING_OVER"),
            Just("FAILED_OVER"), Just("SMIGRATING"), Just("SMIGRATED"), Just("message"),
        ],
        items in prop::collection::vec(element(), 0..6),
    ) {
        let mut data = vec![BytesFrame::BlobString { data: name.as_bytes().to_vec().into(), attributes: None }];
        data.extend(items);
        let frame = BytesFrame::Push { data, attributes: None };
        // Any answer will do, as long as it is one.
        let _ = Notification::from_resp3_frame(&frame);
    }

    #[test]
    fn no_bytes_make_the_decoder_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Notification::from_resp3_bytes(&bytes);
        let mut framed = b">3\r\n$6\r\nMOVING\r\n".to_vec();
        framed.extend(&bytes);
        let _ = Notification::from_resp3_bytes(&framed);
    }
}
