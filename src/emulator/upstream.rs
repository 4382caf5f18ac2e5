//! A proxied connection's connection to one shard: opened with the client's
//! session and subscriptions replayed on it, read into a buffer with room for
//! a whole read, and cut into frames by the `redis-protocol` codec (only the
//! boundary and kind of each: the bytes go on as they are).

use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How long connecting to a shard, and replaying a session on it, may take.
const SHARD_WITHIN: Duration = Duration::from_secs(5);

/// A connection to one shard.
pub(super) struct Upstream {
    /// The shard's address.
    pub(super) addr: SocketAddr,
    pub(super) r: OwnedReadHalf,
    pub(super) w: OwnedWriteHalf,
    /// What was read and not yet taken as frames.
    pub(super) buf: BytesMut,
}

impl Upstream {
    /// Connects to `addr` and sends `session` (the commands that set the
    /// client's connection state) and `subscribe` (commands, and the
    /// confirmations they are answered with: one per channel, a push in
    /// RESP3, a reply in RESP2, before any message), discarding every answer;
    /// replies come in protocol `proto`.
    pub(super) async fn connect(
        addr: SocketAddr,
        session: &[Bytes],
        subscribe: (BytesMut, usize),
        proto: u8,
    ) -> Result<Upstream> {
        let s = tokio::time::timeout(SHARD_WITHIN, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to shard {addr} timed out"))?
            .with_context(|| format!("connecting to shard {addr}"))?;
        s.set_nodelay(true)?;
        let (mut r, mut w) = s.into_split();
        for raw in session {
            w.write_all(raw).await?;
        }
        let (subscribe, confirmations) = subscribe;
        w.write_all(&subscribe).await?;
        let mut left = session.len() + confirmations;
        let mut buf = BytesMut::new();
        while left > 0 {
            if let Some(d) = decode(&mut buf, proto)? {
                // The session's answers go unread; a subscription refused
                // is lost, and says why at once.
                if let (Decoded::Reply { raw, error: true }, true) = (&d, left <= confirmations) {
                    bail!(
                        "new shard {addr} refused a subscription replayed on it: {}",
                        String::from_utf8_lossy(raw).trim_end()
                    );
                }
                left -= 1;
                continue;
            }
            let n = tokio::time::timeout(SHARD_WITHIN, r.read_buf(&mut buf))
                .await
                .context("replaying the session on the new shard timed out")??;
            if n == 0 {
                bail!("new shard {addr} closed the connection during session replay");
            }
        }
        Ok(Upstream { addr, r, w, buf })
    }

    /// Reads what has already arrived, without waiting.
    pub(super) fn read_ready(&mut self) {
        loop {
            reserve(&mut self.buf);
            match self.r.try_read_buf(&mut self.buf) {
                Ok(n) if n > 0 => continue,
                _ => return,
            }
        }
    }
}

/// Reads from whichever shard connection has data; returns its index and what
/// the read gave. Pending forever while none is open.
pub(super) async fn read_upstreams(
    ups: &mut [Option<Upstream>],
) -> (usize, std::io::Result<usize>) {
    if ups.iter().all(Option::is_none) {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for (i, u) in ups.iter_mut().enumerate() {
            if let Some(u) = u {
                reserve(&mut u.buf);
                if let Poll::Ready(r) =
                    tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut u.r), cx, &mut u.buf)
                {
                    return Poll::Ready((i, r));
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// Room for a whole read in `buf`: a `BytesMut` left full grows by only 64
/// bytes per read otherwise, and a pipeline's replies would take many reads
/// (and as many writes to the client). The room doubles with what is
/// buffered, so that a large reply takes few reads; an idle connection holds
/// little.
pub(super) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK.max(buf.len()));
    }
}

/// The least one read of a socket can take.
const READ_CHUNK: usize = 4 * 1024;

/// One frame a shard sent: a push, or a reply (an error or not).
pub(super) enum Decoded {
    /// A push (RESP3), passed on as it is.
    Push(Bytes),
    /// A reply to the oldest command owed.
    Reply {
        /// Its bytes.
        raw: Bytes,
        /// An error reply.
        error: bool,
    },
}

/// Takes the next whole frame off `buf`, if there is one. Only the frame's
/// boundary and kind are read (no frame is built): the bytes go on as they are.
pub(super) fn decode(buf: &mut BytesMut, proto: u8) -> Result<Option<Decoded>> {
    let Some((kind, len)) = frame_bounds(buf, proto)? else {
        return Ok(None);
    };
    let raw = buf.split_to(len).freeze();
    Ok(Some(match kind {
        FrameKind::Push => Decoded::Push(raw),
        FrameKind::Error => Decoded::Reply { raw, error: true },
        FrameKind::Reply => Decoded::Reply { raw, error: false },
    }))
}

/// What a frame from a shard is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    Push,
    Error,
    Reply,
}

/// The kind and length of the first whole frame of `buf` (`None`: not all
/// of it arrived yet). A scan of headers only: a RESP3 set or map may hold
/// any frame (`COMMAND`'s reply holds maps in sets), which frame builders
/// that hash set members refuse; a shard's reply is never refused here.
fn frame_bounds(buf: &[u8], proto: u8) -> Result<Option<(FrameKind, usize)>> {
    let mut pos = 0;
    let mut need: u64 = 1;
    let mut kind = None;
    while need > 0 {
        let Some(end) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[pos..pos + end];
        let Some((&t, rest)) = line.split_first() else {
            bail!("an empty line where a frame header belongs");
        };
        let number = || -> Result<i64> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    anyhow!(
                        "bad length {:?} in a frame header",
                        String::from_utf8_lossy(rest)
                    )
                })
        };
        if !b"+-:,#_($!=*~>%|".contains(&t) || (proto == 2 && !b"+-:$*".contains(&t)) {
            bail!("{:?} does not start a RESP{proto} frame", t as char);
        }
        kind.get_or_insert(match t {
            b'>' => FrameKind::Push,
            b'-' | b'!' => FrameKind::Error,
            _ => FrameKind::Reply,
        });
        pos += end + 2;
        need -= 1;
        match t {
            b'$' | b'!' | b'=' => {
                let n = number()?;
                if n >= 0 {
                    let body = n as usize + 2;
                    if buf.len() < pos + body {
                        return Ok(None);
                    }
                    pos += body;
                }
            }
            b'*' | b'~' | b'>' => need += number()?.max(0) as u64,
            b'%' => need += 2 * number()?.max(0) as u64,
            // Attributes come before the frame they describe.
            b'|' => need += 2 * number()?.max(0) as u64 + 1,
            _ => {}
        }
    }
    Ok(kind.map(|k| (k, pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(b: &[u8], proto: u8) -> Option<(FrameKind, usize)> {
        frame_bounds(b, proto).unwrap()
    }

    #[test]
    fn frame_bounds_cover_any_nesting_and_wait_for_the_rest() {
        // A set holding a map: COMMAND's reply in RESP3 has such frames.
        let nested = b"*1\r\n~2\r\n%1\r\n+a\r\n:1\r\n$3\r\nfoo\r\n";
        assert_eq!(bounds(nested, 3), Some((FrameKind::Reply, nested.len())));
        let mut more = nested.to_vec();
        more.extend_from_slice(b"+OK\r\n");
        assert_eq!(bounds(&more, 3), Some((FrameKind::Reply, nested.len())));
        for cut in 1..nested.len() {
            assert_eq!(bounds(&nested[..cut], 3), None, "cut at {cut}");
        }
        assert_eq!(
            bounds(b">2\r\n+a\r\n+b\r\n", 3),
            Some((FrameKind::Push, 12))
        );
        assert_eq!(bounds(b"-ERR x\r\n", 2), Some((FrameKind::Error, 8)));
        assert_eq!(bounds(b"!3\r\nbad\r\n", 3), Some((FrameKind::Error, 9)));
        assert_eq!(
            bounds(b"*2\r\n$-1\r\n*-1\r\n", 2),
            Some((FrameKind::Reply, 14))
        );
        // An attribute goes with the frame after it.
        assert_eq!(
            bounds(b"|1\r\n+k\r\n+v\r\n:7\r\n", 3),
            Some((FrameKind::Reply, 16))
        );
        assert!(frame_bounds(b"?x\r\n", 3).is_err());
        assert!(
            frame_bounds(b"%1\r\n+a\r\n+b\r\n", 2).is_err(),
            "no maps in RESP2"
        );
        assert!(frame_bounds(b"$x\r\n", 2).is_err());
    }
}
