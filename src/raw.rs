//! A raw RESP connection that records every byte-level frame it receives: used to
//! check what the server sends, independent of any client library.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::notification::{EndpointType, Notification};
use crate::timing::{RAW_PIPELINE_WITHIN, RAW_REPLY_WITHIN};

/// One frame the raw connection received.
#[derive(Clone, Debug)]
pub enum Frame {
    /// A `>` push; `notification` when it parsed as one.
    Push {
        /// When.
        at: Instant,
        /// Parsed, or why not.
        notification: Result<Option<Notification>, String>,
    },
    /// Anything else (a reply).
    Reply {
        /// When.
        at: Instant,
        /// The raw bytes.
        raw: Vec<u8>,
    },
}

#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    closed_at: Option<Instant>,
}

/// A raw connection to a database endpoint.
pub struct RawConnection {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    reader: tokio::task::JoinHandle<()>,
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

impl RawConnection {
    /// Connects to `addr`. With `resp3`, sends `HELLO 3`; with `opt_in`, then
    /// `CLIENT MAINT_NOTIFICATIONS ON` (with the type, when given). Returns once
    /// every reply of that set-up arrived.
    pub async fn connect(
        addr: &str,
        resp3: bool,
        opt_in: Option<Option<EndpointType>>,
    ) -> Result<RawConnection> {
        let stream = tokio::time::timeout(RAW_REPLY_WITHIN, TcpStream::connect(addr))
            .await
            .with_context(|| format!("raw connection to {addr} timed out"))?
            .with_context(|| format!("raw connection to {addr}"))?;
        stream.set_nodelay(true)?;
        let (mut r, w) = stream.into_split();
        let state = Arc::new(Mutex::new(State::default()));
        let changed = Arc::new(Notify::new());
        let reader = {
            let (state, changed) = (state.clone(), changed.clone());
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                loop {
                    match r.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => {
                            state.lock().unwrap().closed_at = Some(Instant::now());
                            changed.notify_waiters();
                            return;
                        }
                        Ok(_) => {}
                    }
                    loop {
                        let is_push = buf.first() == Some(&b'>');
                        let decoded = if resp3 || is_push {
                            redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf)
                                .map(|o| o.map(|(f, _, raw)| (Some(f), raw)))
                        } else {
                            redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
                                .map(|o| o.map(|(_, _, raw)| (None, raw)))
                        };
                        let at = Instant::now();
                        match decoded {
                            Ok(Some((frame, raw))) => {
                                let f = match (is_push, frame) {
                                    (true, Some(f)) => Frame::Push {
                                        at,
                                        notification: Notification::from_resp3_frame(&f)
                                            .map_err(|e| e.to_string()),
                                    },
                                    _ => Frame::Reply {
                                        at,
                                        raw: raw.to_vec(),
                                    },
                                };
                                state.lock().unwrap().frames.push(f);
                                changed.notify_waiters();
                            }
                            Ok(None) => break,
                            Err(e) => {
                                state.lock().unwrap().frames.push(Frame::Push {
                                    at,
                                    notification: Err(format!("undecodable bytes: {e}")),
                                });
                                state.lock().unwrap().closed_at = Some(at);
                                changed.notify_waiters();
                                return;
                            }
                        }
                    }
                }
            })
        };
        let probe = RawConnection {
            state,
            changed,
            writer: tokio::sync::Mutex::new(w),
            reader,
        };
        let mut setup = Vec::new();
        let mut replies = 0;
        if resp3 {
            setup.extend(encode(&["HELLO", "3"]));
            replies += 1;
        }
        if let Some(ty) = opt_in {
            match ty {
                Some(t) => setup.extend(encode(&[
                    "CLIENT",
                    "MAINT_NOTIFICATIONS",
                    "ON",
                    "moving-endpoint-type",
                    t.as_str(),
                ])),
                None => setup.extend(encode(&["CLIENT", "MAINT_NOTIFICATIONS", "ON"])),
            }
            replies += 1;
        }
        probe.send(&setup).await?;
        probe.wait_replies(replies, RAW_REPLY_WITHIN).await?;
        if let Some(Frame::Reply { raw, .. }) = probe.replies().last() {
            if raw.starts_with(b"-") {
                bail!(
                    "set-up of the raw connection to {addr} was refused: {}",
                    String::from_utf8_lossy(raw).trim()
                );
            }
        }
        Ok(probe)
    }

    async fn send(&self, bytes: &[u8]) -> Result<()> {
        self.writer
            .lock()
            .await
            .write_all(bytes)
            .await
            .context("writing to the raw connection")
    }

    fn replies(&self) -> Vec<Frame> {
        self.state
            .lock()
            .unwrap()
            .frames
            .iter()
            .filter(|f| matches!(f, Frame::Reply { .. }))
            .cloned()
            .collect()
    }

    async fn wait_until<T>(
        &self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Result<T> {
        let what = format!("the raw connection to see {what}");
        Ok(crate::wait::until(&self.changed, within, &what, || {
            f(&self.state.lock().unwrap())
        })
        .await?)
    }

    async fn wait_replies(&self, count: usize, within: Duration) -> Result<()> {
        self.wait_until(within, &format!("{count} replies"), |s| {
            (s.frames
                .iter()
                .filter(|f| matches!(f, Frame::Reply { .. }))
                .count()
                >= count)
                .then_some(())
        })
        .await
    }

    /// Sends PING and waits for its reply: proves the connection is in sync.
    pub async fn ping(&self) -> Result<()> {
        let before = self.replies().len();
        self.send(&encode(&["PING"])).await?;
        self.wait_replies(before + 1, RAW_REPLY_WITHIN).await?;
        match self.replies().last() {
            Some(Frame::Reply { raw, .. }) if raw == b"+PONG\r\n" => Ok(()),
            other => bail!("PING answered with {other:?}"),
        }
    }

    /// Sends a command and returns its raw reply.
    pub async fn command(&self, args: &[&str]) -> Result<Vec<u8>> {
        let before = self.replies().len();
        self.send(&encode(args)).await?;
        self.wait_replies(before + 1, RAW_REPLY_WITHIN).await?;
        match self.replies().into_iter().nth(before) {
            Some(Frame::Reply { raw, .. }) => Ok(raw),
            _ => bail!("no reply to {}", args.join(" ")),
        }
    }

    /// Sends several commands in one write and returns their raw replies.
    pub async fn pipeline(&self, commands: &[Vec<String>]) -> Result<Vec<Vec<u8>>> {
        let before = self.replies().len();
        let mut bytes = Vec::new();
        for c in commands {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            bytes.extend(encode(&args));
        }
        self.send(&bytes).await?;
        self.wait_replies(before + commands.len(), RAW_PIPELINE_WITHIN)
            .await?;
        Ok(self
            .replies()
            .into_iter()
            .skip(before)
            .filter_map(|f| match f {
                Frame::Reply { raw, .. } => Some(raw),
                Frame::Push { .. } => None,
            })
            .collect())
    }

    /// Every frame received, in order.
    pub fn frames(&self) -> Vec<Frame> {
        self.state.lock().unwrap().frames.clone()
    }

    /// Every push received, parsed or not.
    pub fn pushes(&self) -> Vec<(Instant, Result<Option<Notification>, String>)> {
        self.state
            .lock()
            .unwrap()
            .frames
            .iter()
            .filter_map(|f| match f {
                Frame::Push { at, notification } => Some((*at, notification.clone())),
                _ => None,
            })
            .collect()
    }

    /// Waits for a notification matching `f`.
    pub async fn wait_notification(
        &self,
        within: Duration,
        what: &str,
        f: impl Fn(&Notification) -> bool,
    ) -> Result<(Instant, Notification)> {
        self.wait_until(within, what, |s| {
            s.frames.iter().find_map(|fr| match fr {
                Frame::Push {
                    at,
                    notification: Ok(Some(n)),
                } if f(n) => Some((*at, n.clone())),
                _ => None,
            })
        })
        .await
    }

    /// Waits until `count` notifications of `kind` arrived; returns when the
    /// last of them did.
    pub async fn wait_until_count(
        &self,
        within: Duration,
        kind: crate::notification::Kind,
        count: usize,
    ) -> Result<Instant> {
        self.wait_until(within, &format!("{count} x {kind}"), |s| {
            let at: Vec<Instant> = s
                .frames
                .iter()
                .filter_map(|fr| match fr {
                    Frame::Push {
                        at,
                        notification: Ok(Some(n)),
                    } if n.kind() == kind => Some(*at),
                    _ => None,
                })
                .collect();
            at.get(count.saturating_sub(1)).copied()
        })
        .await
    }

    /// Waits until the server closes the connection; returns when.
    pub async fn wait_closed(&self, within: Duration) -> Result<Instant> {
        self.wait_until(within, "the server to close the connection", |s| {
            s.closed_at
        })
        .await
    }

    /// When the server closed it, if it did.
    pub fn closed_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().closed_at
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
