//! How the endpoint proxy reads a client's bytes as commands, as
//! `redis-server` does: arrays of bulk strings (framed by the `redis-protocol`
//! codec), and inline commands (a line of words, as typed into telnet), which
//! the codec does not know. Before the codec waits for a frame, its headers are
//! held to the server's limits, so a declared length beyond them is refused
//! before any of it is buffered, and malformed input gets the server's own
//! words (`Protocol error: invalid bulk length`); the connection is closed.

use std::collections::VecDeque;

use anyhow::{anyhow, bail, Result};
use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::RangeFrame;

/// The longest argument accepted: `redis-server`'s default
/// `proto-max-bulk-len` (512 MiB).
pub(super) const MAX_BULK: i64 = 512 * 1024 * 1024;
/// The most arguments one command may declare (`redis-server`: `INT_MAX`).
const MAX_MULTIBULK: i64 = i32::MAX as i64;
/// The longest inline command, or count line, accepted without its end
/// (`redis-server`'s `PROTO_INLINE_MAX_SIZE`).
pub(super) const MAX_INLINE: usize = 64 * 1024;

/// One command of a client: its raw bytes (forwarded as they are) and its
/// arguments.
pub(super) struct Command {
    pub(super) raw: Bytes,
    pub(super) args: Vec<Bytes>,
    /// The command's name, upper-cased once.
    name: String,
    /// `CLIENT MAINT_NOTIFICATIONS ...` and `CLIENT MAINT_NOTIFICATIONS_INFO`,
    /// answered by the proxy.
    maint: bool,
}

impl Command {
    /// A command of these arguments (at least one), sent as `raw`.
    pub(super) fn new(raw: Bytes, args: Vec<Bytes>) -> Command {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let maint = name == "CLIENT"
            && args.get(1).is_some_and(|a| {
                a.eq_ignore_ascii_case(b"MAINT_NOTIFICATIONS")
                    || a.eq_ignore_ascii_case(b"MAINT_NOTIFICATIONS_INFO")
            });
        Command {
            raw,
            args,
            name,
            maint,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn arg(&self, i: usize) -> std::borrow::Cow<'_, str> {
        self.args
            .get(i)
            .map(|a| String::from_utf8_lossy(a))
            .unwrap_or_default()
    }

    pub(super) fn is_maint(&self) -> bool {
        self.maint
    }

    /// A command that may wait on the server for data (`BLPOP`, `XREAD
    /// BLOCK`, `WAIT`...). It must not hold a switch-over back: a real
    /// cluster goes ahead, and the demoted primary answers the blocked client
    /// with `-UNBLOCKED`.
    pub(super) fn blocks(&self) -> bool {
        match self.name() {
            "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BZPOPMIN" | "BZPOPMAX" | "BLMPOP"
            | "BZMPOP" | "WAIT" | "WAITAOF" => true,
            "XREAD" | "XREADGROUP" => self.args.iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK")),
            _ => false,
        }
    }

    /// Connection state every shard must share (replayed on a new shard too).
    pub(super) fn is_session(&self) -> bool {
        match self.name() {
            "HELLO" | "AUTH" | "SELECT" | "RESET" => true,
            "CLIENT" => self.arg(1).eq_ignore_ascii_case("SETNAME"),
            _ => false,
        }
    }
}

/// Takes every whole command off `buf` (a client's bytes) into `out`, leaving
/// a partial one for the next read. An error says what was malformed, in
/// `redis-server`'s words; the caller answers it and closes the connection.
pub(super) fn take_commands(buf: &mut BytesMut, out: &mut VecDeque<Command>) -> Result<()> {
    loop {
        match buf.first() {
            None => return Ok(()),
            Some(b'*') => {
                if !whole_within_limits(buf)? {
                    return Ok(());
                }
                match redis_protocol::resp2::decode::decode_range(buf) {
                    Ok(Some((frame, len))) => {
                        let raw = buf.split_to(len).freeze();
                        // `*0` and `*-1` are skipped, as the server does.
                        if let Some(c) = command(frame, raw)? {
                            out.push_back(c);
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => bail!("Protocol error: {e}"),
                }
            }
            Some(_) => {
                let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                    if buf.len() > MAX_INLINE {
                        bail!("Protocol error: too big inline request");
                    }
                    return Ok(());
                };
                let line = buf.split_to(end + 1);
                let text = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
                let args = split_args(text)?;
                // An empty line is skipped, as the server does.
                if !args.is_empty() {
                    out.push_back(Command::new(encode(&args), args));
                }
            }
        }
    }
}

/// Whether the array at the start of `buf` has all arrived, its headers
/// checked as the server checks them (an error in its words otherwise): a
/// count of at most `INT_MAX`, each element a bulk string of 0 to
/// [`MAX_BULK`] bytes followed by CRLF.
fn whole_within_limits(buf: &[u8]) -> Result<bool> {
    let Some((line, mut at)) = line_at(buf, 0, "mbulk count")? else {
        return Ok(false);
    };
    let count = number(&line[1..])
        .filter(|n| *n <= MAX_MULTIBULK)
        .ok_or_else(|| anyhow!("Protocol error: invalid multibulk length"))?;
    for _ in 0..count.max(0) {
        let Some((line, next)) = line_at(buf, at, "bulk count")? else {
            return Ok(false);
        };
        match line.first() {
            Some(b'$') => {}
            other => bail!(
                "Protocol error: expected '$', got '{}'",
                other.map_or('\r', |b| *b as char)
            ),
        }
        let len = number(&line[1..])
            .filter(|n| (0..=MAX_BULK).contains(n))
            .ok_or_else(|| anyhow!("Protocol error: invalid bulk length"))?
            as usize;
        let end = next + len;
        if buf.len() < end + 2 {
            return Ok(false);
        }
        if &buf[end..end + 2] != b"\r\n" {
            bail!("Protocol error: a bulk string of {len} bytes is not followed by CRLF");
        }
        at = end + 2;
    }
    Ok(true)
}

/// The codec's frame (ranges into `raw`, its bytes) as a command; `None` for
/// an empty or null array.
fn command(frame: RangeFrame, raw: Bytes) -> Result<Option<Command>> {
    let items = match frame {
        RangeFrame::Array(items) => items,
        RangeFrame::Null => return Ok(None),
        _ => bail!("Protocol error: commands are arrays of bulk strings"),
    };
    let mut args = Vec::with_capacity(items.len());
    for i in items {
        match i {
            RangeFrame::BulkString((start, end)) => args.push(raw.slice(start..end)),
            _ => bail!("Protocol error: expected '$'"),
        }
    }
    Ok((!args.is_empty()).then(|| Command::new(raw, args)))
}

/// The line starting at `from` (without its CRLF) and where the next begins;
/// `None` while it is incomplete. A line longer than the server accepts is an
/// error naming `what` it should have been.
fn line_at<'a>(buf: &'a [u8], from: usize, what: &str) -> Result<Option<(&'a [u8], usize)>> {
    let rest = &buf[from..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], from + i + 2))),
        None if rest.len() > MAX_INLINE => bail!("Protocol error: too big {what} string"),
        None => Ok(None),
    }
}

fn number(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Splits an inline command into its arguments as `redis-server` does
/// (`sdssplitargs`): words separated by spaces; `"..."` with backslash
/// escapes (`\n`, `\r`, `\t`, `\b`, `\a`, `\xHH`, any other character
/// as itself); `'...'` with only `\'` escaped. A closing quote must be followed
/// by a space or the end.
fn split_args(line: &[u8]) -> Result<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        let Some(&first) = line.get(i) else {
            return Ok(args);
        };
        let arg = match first {
            b'"' | b'\'' => {
                let (arg, next) = quoted(line, i + 1, first)?;
                i = next;
                arg
            }
            _ => {
                let start = i;
                while line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    i += 1;
                }
                line[start..i].to_vec()
            }
        };
        args.push(Bytes::from(arg));
    }
}

/// The argument quoted by `quote` whose text starts at `i`, and where the
/// rest of the line starts. Inside `"`, backslash escapes (`\xHH`, `\n`,
/// `\r`, `\t`, `\b`, `\a`, any other character as itself); inside `'`, only
/// `\'`.
fn quoted(line: &[u8], mut i: usize, quote: u8) -> Result<(Vec<u8>, usize)> {
    let unbalanced = || anyhow!("Protocol error: unbalanced quotes in request");
    let hex = |at: usize| {
        let digits = line.get(at..at + 2)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut arg = Vec::new();
    loop {
        match (line.get(i), line.get(i + 1)) {
            (None, _) => return Err(unbalanced()),
            (Some(b'\\'), Some(&c)) if quote == b'"' => {
                match (c, hex(i + 2)) {
                    (b'x', Some(byte)) => {
                        arg.push(byte);
                        i += 4;
                        continue;
                    }
                    (b'n', _) => arg.push(b'\n'),
                    (b'r', _) => arg.push(b'\r'),
                    (b't', _) => arg.push(b'\t'),
                    (b'b', _) => arg.push(0x08),
                    (b'a', _) => arg.push(0x07),
                    (other, _) => arg.push(other),
                }
                i += 2;
            }
            (Some(b'\\'), Some(b'\'')) => {
                arg.push(b'\'');
                i += 2;
            }
            (Some(&q), next) if q == quote => {
                // A closing quote must end the argument.
                if next.is_some_and(|c| !c.is_ascii_whitespace()) {
                    return Err(unbalanced());
                }
                return Ok((arg, i + 1));
            }
            (Some(&c), _) => {
                arg.push(c);
                i += 1;
            }
        }
    }
}

/// `args` as the array of bulk strings a shard is sent.
pub(super) fn encode<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Command {
        Command::new(
            Bytes::new(),
            args.iter().map(|a| Bytes::from(a.to_string())).collect(),
        )
    }

    /// The commands `input` holds, or the error it gets.
    fn take(input: &[u8]) -> Result<Vec<Vec<String>>, String> {
        let mut buf = BytesMut::from(input);
        let mut out = VecDeque::new();
        take_commands(&mut buf, &mut out).map_err(|e| e.to_string())?;
        Ok(out
            .iter()
            .map(|c| {
                c.args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .collect())
    }

    #[test]
    fn blocking_commands_are_known_by_name_and_xread_by_its_block_option() {
        for blocking in [
            &["BLPOP", "k", "0"][..],
            &["brpop", "k", "1"],
            &["BZMPOP", "0", "1", "z", "MIN"],
            &["WAIT", "1", "0"],
            &["XREAD", "block", "0", "STREAMS", "s", "$"],
        ] {
            assert!(cmd(blocking).blocks(), "{blocking:?}");
        }
        for other in [
            &["LPOP", "k"][..],
            &["XREAD", "STREAMS", "s", "$"],
            &["GET", "BLOCK"],
        ] {
            assert!(!cmd(other).blocks(), "{other:?}");
        }
    }

    #[test]
    fn inline_commands_are_read_as_the_server_reads_them() {
        assert_eq!(take(b"PING\r\n"), Ok(vec![vec!["PING".to_string()]]));
        assert_eq!(
            take(b"set  k \"a b\\x41\\n\"  'it\\'s'\nGET k\r\n\r\n"),
            Ok(vec![
                vec!["set".into(), "k".into(), "a bA\n".into(), "it's".into()],
                vec!["GET".into(), "k".into()],
            ])
        );
        // Forwarded as an array of bulk strings.
        let mut buf = BytesMut::from(&b"GET k\n"[..]);
        let mut out = VecDeque::new();
        take_commands(&mut buf, &mut out).unwrap();
        assert_eq!(&out[0].raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        // Half a line waits for the rest.
        assert_eq!(take(b"PIN"), Ok(vec![]));
    }

    #[test]
    fn malformed_input_gets_the_servers_words() {
        for (input, says) in [
            (
                &b"*1\r\n:1\r\n"[..],
                "Protocol error: expected '$', got ':'",
            ),
            (
                b"*1\r\n*1\r\n$1\r\na\r\n",
                "Protocol error: expected '$', got '*'",
            ),
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (
                b"*9999999999999\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (b"*1\r\n$-7\r\n", "Protocol error: invalid bulk length"),
            (
                b"*3\r\n$99999999999\r\nabc",
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$536870913\r\n",
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$1\r\nabc\r\n",
                "Protocol error: a bulk string of 1 bytes is not followed by CRLF",
            ),
            (b"GET \"k\n", "Protocol error: unbalanced quotes in request"),
            (
                b"GET \"k\"x\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ] {
            assert_eq!(take(input), Err(says.to_string()), "{input:?}");
        }
        let endless = vec![b'a'; MAX_INLINE + 1];
        assert_eq!(
            take(&endless),
            Err("Protocol error: too big inline request".into())
        );
        let mut count = b"*".to_vec();
        count.extend(vec![b'1'; MAX_INLINE + 1]);
        assert_eq!(
            take(&count),
            Err("Protocol error: too big mbulk count string".into())
        );
    }

    #[test]
    fn empty_arrays_and_lines_are_skipped_and_a_declared_length_waits_for_its_bytes() {
        assert_eq!(
            take(b"*0\r\n*-1\r\n\r\n*1\r\n$4\r\nPING\r\n"),
            Ok(vec![vec!["PING".to_string()]])
        );
        // The largest argument accepted waits for its bytes: nothing is
        // allocated for what has not arrived.
        assert_eq!(take(b"*2\r\n$3\r\nSET\r\n$536870912\r\nab"), Ok(vec![]));
    }
}
