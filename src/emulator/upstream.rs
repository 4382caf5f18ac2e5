//! A proxied connection's connection to one shard: opened with the client's
//! session and subscriptions replayed on it, read into a buffer with room for
//! a whole read, and cut into frames by the `redis-protocol` codec (only the
//! boundary and kind of each: the bytes go on as they are).

use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use anyhow::{bail, Context, Result};
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
            if decode(&mut buf, proto)?.is_some() {
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
    let (kind, len) = if proto == 3 {
        use redis_protocol::resp3::types::RangeFrame as F;
        let Some((f, len)) = redis_protocol::resp3::decode::complete::decode_range(buf)? else {
            return Ok(None);
        };
        let kind = match f {
            F::Push { .. } => None,
            F::SimpleError { .. } | F::BlobError { .. } => Some(true),
            _ => Some(false),
        };
        (kind, len)
    } else {
        use redis_protocol::resp2::types::RangeFrame as F;
        let Some((f, len)) = redis_protocol::resp2::decode::decode_range(buf)? else {
            return Ok(None);
        };
        (Some(matches!(f, F::Error(_))), len)
    };
    let raw = buf.split_to(len).freeze();
    Ok(Some(match kind {
        None => Decoded::Push(raw),
        Some(error) => Decoded::Reply { raw, error },
    }))
}
