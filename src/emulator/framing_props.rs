//! Property tests of how the endpoint proxy frames a client's bytes into
//! commands: whole commands come out as they went in however the bytes are
//! split across reads, and no bytes make it panic. Failing cases proptest
//! finds are kept under `proptest-regressions/` and replayed first.

use std::collections::VecDeque;

use bytes::BytesMut;
use proptest::prelude::*;

use super::framing::{take_commands, Command};

/// A command as a client encodes it: an array of bulk strings.
fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).as_bytes());
        out.extend(a);
        out.extend(b"\r\n");
    }
    out
}

/// Feeds `bytes` in reads cut at `cuts` (positions), as a socket would.
fn feed(bytes: &[u8], cuts: &[usize]) -> anyhow::Result<(Vec<Command>, usize)> {
    let mut positions: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    positions.push(bytes.len());
    positions.sort_unstable();
    let (mut buf, mut out, mut from) = (BytesMut::new(), VecDeque::new(), 0);
    for to in positions {
        buf.extend_from_slice(&bytes[from..to]);
        from = to;
        take_commands(&mut buf, &mut out)?;
    }
    Ok((out.into_iter().collect(), buf.len()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn commands_come_out_whole_however_the_reads_fall(
        commands in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
            1..8,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
        let (got, left) = feed(&wire, &cuts).expect("well-formed commands are taken");
        prop_assert_eq!(left, 0, "nothing is left over");
        prop_assert_eq!(got.len(), commands.len());
        for (c, args) in got.iter().zip(&commands) {
            let got_args: Vec<&[u8]> = c.args.iter().map(|a| a.as_ref()).collect();
            let want: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            prop_assert_eq!(got_args, want);
            let raw = encode(args);
            prop_assert_eq!(c.raw.as_ref(), raw.as_slice(), "the bytes go on as they came");
        }
    }

    #[test]
    fn no_bytes_make_the_framing_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        // An error (a malformed command) or commands: never a panic.
        let _ = feed(&bytes, &cuts);
    }

    #[test]
    fn a_malformed_command_is_an_error_that_says_what(
        prefix in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..10), 1..3),
        bad in prop_oneof![
            Just(b"*1\r\n:notanumber\r\n".to_vec()),
            Just(b"*1\r\n*1\r\n$1\r\na\r\n".to_vec()),
            Just(b"*1\r\n$-3\r\n".to_vec()),
            Just(b"*2\r\n$99999999999\r\n".to_vec()),
            Just(b"SET \"unbalanced\r\n".to_vec()),
        ],
    ) {
        let mut wire = encode(&prefix);
        wire.extend(&bad);
        let Err(err) = feed(&wire, &[]) else {
            return Err(TestCaseError::fail("a malformed command was taken"));
        };
        let text = err.to_string();
        prop_assert!(!text.is_empty() && !text.contains('\n'), "{}", text);
    }
}
