//! The pub/sub subscriptions of one proxied connection, per shard: what the
//! proxy subscribes to again on a shard's new primary, so that a subscriber,
//! which sends nothing, keeps receiving across a failover or a migration as it
//! does through a real cluster's proxy.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

use super::framing::{self, Command};

/// The three kinds of subscription, by the command that makes one.
const KINDS: [(&str, &str); 3] = [
    ("SUBSCRIBE", "UNSUBSCRIBE"),
    ("PSUBSCRIBE", "PUNSUBSCRIBE"),
    ("SSUBSCRIBE", "SUNSUBSCRIBE"),
];

/// What one shard connection is subscribed to, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OnShard([BTreeSet<Bytes>; 3]);

/// A connection's subscriptions on each shard.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    shards: Vec<OnShard>,
}

impl Subscriptions {
    /// Follows `c`, sent to `shards`: a (un)subscribe changes what they hold.
    /// Returns true when `c` was one.
    pub(super) fn track(&mut self, c: &Command, shards: impl IntoIterator<Item = usize>) -> bool {
        let Some((kind, subscribe)) = kind_of(c) else {
            return false;
        };
        for shard in shards {
            if self.shards.len() <= shard {
                self.shards.resize_with(shard + 1, OnShard::default);
            }
            let set = &mut self.shards[shard].0[kind];
            match (subscribe, c.args.len()) {
                (true, _) => set.extend(c.args[1..].iter().cloned()),
                (false, 1) => set.clear(),
                (false, _) => {
                    for a in &c.args[1..] {
                        set.remove(a);
                    }
                }
            }
        }
        true
    }

    /// How many confirmations shard `shard` answers `c` with (asked before
    /// [`Self::track`] follows it): one per channel or pattern named, or, for
    /// an unsubscribe from all, one per subscription held there (at least
    /// one); `None` for a command that is no (un)subscribe.
    pub(super) fn confirmations(&self, c: &Command, shard: usize) -> Option<usize> {
        let (kind, subscribe) = kind_of(c)?;
        let named = c.args.len() - 1;
        Some(
            match (subscribe, named) {
                (false, 0) => self.shards.get(shard).map_or(0, |s| s.0[kind].len()),
                _ => named,
            }
            .max(1),
        )
    }

    /// Follows a push from `shard`: an unsolicited `sunsubscribe` (a shard
    /// that lost the channel's slot unsubscribes its subscribers) ends the
    /// subscription there, as the client is told, so that it is not replayed
    /// on the shard's new primary behind the client's back (the client
    /// subscribes again itself). A confirmation of the client's own
    /// SUNSUBSCRIBE changes nothing more.
    pub(super) fn on_push(&mut self, raw: &[u8], shard: usize) {
        let Some(channel) = sunsubscribed(raw) else {
            return;
        };
        let c = Command::new(
            Bytes::new(),
            vec![Bytes::from_static(b"SUNSUBSCRIBE"), channel],
        );
        self.track(&c, [shard]);
    }

    /// True when some shard connection is subscribed to something.
    pub(super) fn any(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.0.iter().any(|k| !k.is_empty()))
    }

    /// True when the connection to `shard` is subscribed to something.
    pub(super) fn on(&self, shard: usize) -> bool {
        self.shards
            .get(shard)
            .is_some_and(|s| s.0.iter().any(|k| !k.is_empty()))
    }

    /// The commands that subscribe a new connection to `shard` to the same,
    /// and how many confirmations they are answered with (one per channel or
    /// pattern, before any message).
    pub(super) fn replay(&self, shard: usize) -> (BytesMut, usize) {
        let mut out = BytesMut::new();
        let mut confirmations = 0;
        let Some(on) = self.shards.get(shard) else {
            return (out, 0);
        };
        for ((command, _), set) in KINDS.iter().zip(&on.0) {
            if set.is_empty() {
                continue;
            }
            // A shard in cluster mode takes a sharded subscription's
            // channels in one command only when they share a slot (else
            // CROSSSLOT): one command per channel.
            let groups: Vec<Vec<&Bytes>> = match *command {
                "SSUBSCRIBE" => set.iter().map(|c| vec![c]).collect(),
                _ => vec![set.iter().collect()],
            };
            for group in groups {
                let args: Vec<&[u8]> = std::iter::once(command.as_bytes())
                    .chain(group.iter().map(|b| &b[..]))
                    .collect();
                out.extend_from_slice(&framing::encode(&args));
            }
            confirmations += set.len();
        }
        (out, confirmations)
    }
}

/// The kind of (un)subscribe `c` is (an index of [`KINDS`]), and whether it
/// subscribes; `None` for any other command.
fn kind_of(c: &Command) -> Option<(usize, bool)> {
    let name = c.name();
    KINDS.iter().enumerate().find_map(|(i, (s, u))| {
        (name == *s)
            .then_some((i, true))
            .or((name == *u).then_some((i, false)))
    })
}

/// The channel of a RESP3 `sunsubscribe` push (`>3`, the kind, the
/// channel, the count left).
fn sunsubscribed(raw: &[u8]) -> Option<Bytes> {
    let rest = raw.strip_prefix(b">3\r\n$12\r\n")?;
    let (kind, rest) = rest.split_at_checked(12)?;
    if !kind.eq_ignore_ascii_case(b"sunsubscribe") {
        return None;
    }
    let rest = rest.strip_prefix(b"\r\n$")?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let channel = rest.get(end + 2..end + 2 + len)?;
    Some(Bytes::copy_from_slice(channel))
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

    #[test]
    fn subscriptions_follow_subscribe_and_unsubscribe_per_shard_and_kind() {
        let mut s = Subscriptions::default();
        assert!(!s.track(&cmd(&["GET", "k"]), [0]));
        assert!(s.track(&cmd(&["subscribe", "a", "b"]), [0]));
        assert!(s.track(&cmd(&["SSUBSCRIBE", "s"]), [1]));
        assert!(s.track(&cmd(&["SSUBSCRIBE", "t"]), [1]));
        assert!(s.on(0) && s.on(1) && !s.on(2));
        let (raw, n) = s.replay(0);
        assert_eq!(&raw[..], b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n");
        assert_eq!(n, 2);
        let (raw, n) = s.replay(1);
        // One command per sharded channel: channels of several slots in
        // one SSUBSCRIBE are refused (CROSSSLOT).
        assert_eq!(
            &raw[..],
            b"*2\r\n$10\r\nSSUBSCRIBE\r\n$1\r\ns\r\n*2\r\n$10\r\nSSUBSCRIBE\r\n$1\r\nt\r\n"
        );
        assert_eq!(n, 2);
        assert_eq!(s.confirmations(&cmd(&["GET", "k"]), 0), None);
        assert_eq!(s.confirmations(&cmd(&["UNSUBSCRIBE"]), 0), Some(2));
        assert_eq!(s.confirmations(&cmd(&["UNSUBSCRIBE", "a"]), 0), Some(1));
        assert_eq!(s.confirmations(&cmd(&["PUNSUBSCRIBE"]), 0), Some(1));
        s.track(&cmd(&["UNSUBSCRIBE", "a"]), [0]);
        assert_eq!(s.replay(0).1, 1);
        s.track(&cmd(&["UNSUBSCRIBE"]), [0]);
        assert!(!s.on(0));
        s.track(&cmd(&["SUNSUBSCRIBE", "s", "t"]), [1]);
        assert!(!s.any());
        assert_eq!(s.replay(5).1, 0);
    }

    #[test]
    fn a_shard_that_unsubscribes_a_sharded_channel_ends_its_replay() {
        let mut s = Subscriptions::default();
        s.track(&cmd(&["SSUBSCRIBE", "news"]), [1]);
        s.track(&cmd(&["SSUBSCRIBE", "sport"]), [1]);
        // A message, a confirmation, and another shard's unsubscribe,
        // change nothing.
        s.on_push(b">3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$1\r\nx\r\n", 1);
        s.on_push(b">3\r\n$10\r\nssubscribe\r\n$4\r\nnews\r\n:1\r\n", 1);
        assert_eq!(s.replay(1).1, 2);
        s.on_push(b">3\r\n$12\r\nsunsubscribe\r\n$4\r\nnews\r\n:1\r\n", 0);
        assert_eq!(s.replay(1).1, 2);
        s.on_push(b">3\r\n$12\r\nSUNSUBSCRIBE\r\n$4\r\nnews\r\n:1\r\n", 1);
        let (raw, n) = s.replay(1);
        assert_eq!(n, 1);
        assert_eq!(&raw[..], b"*2\r\n$10\r\nSSUBSCRIBE\r\n$5\r\nsport\r\n");
        s.on_push(b">3\r\n$12\r\nsunsubscribe\r\n$5\r\nsport\r\n:0\r\n", 1);
        assert!(!s.any());
    }
}
