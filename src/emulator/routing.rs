//! Where each command of a client goes among a database's shards, and how
//! replies from several shards become one. One shard: everything goes to it.
//! Several: by the hash slot of the command's keys; the session and the
//! commands about every key to every shard; a transaction stays on the shard it
//! started on.

use bytes::{Bytes, BytesMut};

use super::framing::Command;
use super::keys::{self, KeySpecs};

/// How the replies of a command sent to several shards become one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Merge {
    /// The first shard's reply (the others must not be errors).
    First,
    /// The sum of integer replies (`DBSIZE`).
    Sum,
    /// The elements of every array reply, in shard order (`KEYS`).
    Concat,
}

/// A transaction of a database of several shards: it runs on one shard, the
/// one its first key (or WATCH) names. MULTI is held back until then.
#[derive(Default)]
pub(super) struct ShardedTx {
    pub(super) shard: Option<usize>,
    /// MULTI, answered by the proxy and not sent yet.
    pub(super) deferred_multi: Option<Bytes>,
    /// A queued command named a key of another shard: EXEC aborts.
    pub(super) aborted: bool,
}

pub(super) const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
pub(super) const EXECABORT: &[u8] =
    b"-EXECABORT Transaction discarded because of previous errors.\r\n";

/// Where a command goes.
pub(super) enum Plan {
    /// To these shards (one, or several); with several, their replies merge.
    Send(Vec<usize>, Merge),
    /// Answered by the proxy.
    Answer(Bytes),
}

/// Where `c` goes among `shards` shards behind one endpoint: by the hash
/// slot of its keys; the session and the commands about every key to every
/// shard; the rest to the first shard. A transaction stays on the shard it
/// started on.
pub(super) fn plan(
    c: &Command,
    shards: usize,
    specs: Option<&KeySpecs>,
    in_multi: bool,
    tx: &ShardedTx,
) -> Plan {
    if shards == 1 {
        return Plan::Send(vec![0], Merge::First);
    }
    let place = |slot| Ok(keys::shard_of(slot, shards));
    plan_among(
        c,
        &(0..shards).collect::<Vec<_>>(),
        place,
        specs,
        in_multi,
        tx,
    )
}

/// Where `c` goes among the shard sets `here` (those the proxy fronts), a
/// keyed command to the set `place` gives its slot, or answered by the
/// proxy with what `place` says instead (a redirect).
pub(super) fn plan_among(
    c: &Command,
    here: &[usize],
    place: impl Fn(u16) -> Result<usize, Bytes>,
    specs: Option<&KeySpecs>,
    in_multi: bool,
    tx: &ShardedTx,
) -> Plan {
    // A node that serves no slot now still redirects a keyed request.
    let first_here = here.first().copied();
    let every = || here.to_vec();
    let name = c.name();
    let keyed = specs.and_then(|specs| {
        let slots: Vec<u16> = specs
            .keys(&c.args)
            .iter()
            .map(|&i| keys::slot(&c.args[i]))
            .collect();
        let first = *slots.first()?;
        Some(match slots.iter().all(|s| *s == first) {
            true => place(first).map_err(Some),
            false => Err(None),
        })
    });
    let crossslot = || Plan::Answer(Bytes::from_static(CROSSSLOT));
    let down = || Plan::Answer(Bytes::from_static(CLUSTERDOWN));
    if in_multi {
        let target = match keyed {
            Some(Ok(s)) => Ok(s),
            Some(Err(None)) => return crossslot(),
            Some(Err(Some(redirect))) => Err(redirect),
            None => match tx.shard.or(first_here) {
                Some(s) => Ok(s),
                None => return down(),
            },
        };
        return match name {
            "EXEC" | "DISCARD" => match tx.shard {
                None if name == "EXEC" && tx.aborted => Plan::Answer(Bytes::from_static(EXECABORT)),
                None if name == "EXEC" => Plan::Answer(Bytes::from_static(b"*0\r\n")),
                None => Plan::Answer(Bytes::from_static(b"+OK\r\n")),
                Some(s) => Plan::Send(vec![s], Merge::First),
            },
            _ => match (target, tx.shard) {
                (Ok(t), None) => Plan::Send(vec![t], Merge::First),
                (Ok(t), Some(s)) if t == s => Plan::Send(vec![s], Merge::First),
                (Err(redirect), _) => Plan::Answer(redirect),
                _ => crossslot(),
            },
        };
    }
    match name {
        _ if keyed.is_none() && first_here.is_none() => down(),
        "MULTI" => match tx.shard {
            Some(s) => Plan::Send(vec![s], Merge::First),
            None => Plan::Answer(Bytes::from_static(b"+OK\r\n")),
        },
        _ if c.is_session() => Plan::Send(every(), Merge::First),
        "FLUSHALL" | "FLUSHDB" | "SCRIPT" | "FUNCTION" => Plan::Send(every(), Merge::First),
        "DBSIZE" => Plan::Send(every(), Merge::Sum),
        "KEYS" => Plan::Send(every(), Merge::Concat),
        _ => match keyed {
            Some(Ok(s)) => Plan::Send(vec![s], Merge::First),
            Some(Err(Some(redirect))) => Plan::Answer(redirect),
            Some(Err(None)) => crossslot(),
            None => match tx.shard.or(first_here) {
                Some(s) => Plan::Send(vec![s], Merge::First),
                None => down(),
            },
        },
    }
}

/// A proxy of an OSS Cluster API database that fronts no shard set.
pub(super) const CLUSTERDOWN: &[u8] = b"-CLUSTERDOWN this node serves no hash slot\r\n";

/// Merges the replies of one command from several shards (raw frames, in
/// shard order) into one.
pub(super) fn merge(parts: &[Bytes], how: Merge) -> Bytes {
    if let Some(err) = parts.iter().find(|p| p.first() == Some(&b'-')) {
        return err.clone();
    }
    let header = |p: &Bytes| -> Option<(i64, usize)> {
        let end = p.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&p[1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    };
    match how {
        Merge::First => parts.first().cloned().unwrap_or_default(),
        Merge::Sum => {
            let total: i64 = parts.iter().filter_map(header).map(|(n, _)| n).sum();
            Bytes::from(format!(":{total}\r\n"))
        }
        Merge::Concat => {
            let mut count = 0;
            let mut body = BytesMut::new();
            for p in parts {
                if let Some((n, at)) = header(p) {
                    count += n.max(0);
                    body.extend_from_slice(&p[at..]);
                }
            }
            let kind = parts
                .first()
                .and_then(|p| p.first())
                .copied()
                .unwrap_or(b'*');
            let mut out = BytesMut::from(format!("{}{count}\r\n", kind as char).as_bytes());
            out.extend_from_slice(&body);
            out.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    fn cmd(args: &[&str]) -> Command {
        Command::new(Bytes::new(), args.iter().map(|a| b(a)).collect())
    }

    fn specs() -> KeySpecs {
        keys::command_table(&[("get", 1, 1, 1), ("mget", 1, -1, 1), ("incr", 1, 1, 1)])
    }

    fn targets(p: Plan) -> Result<(Vec<usize>, Merge), Vec<u8>> {
        match p {
            Plan::Send(t, m) => Ok((t, m)),
            Plan::Answer(a) => Err(a.to_vec()),
        }
    }

    #[test]
    fn commands_go_to_the_shard_of_their_slot_or_to_every_shard() {
        let (k, tx) = (specs(), ShardedTx::default());
        let go = |args: &[&str], shards| targets(plan(&cmd(args), shards, Some(&k), false, &tx));
        // One shard: everything there, even keys of different slots.
        assert_eq!(go(&["MGET", "foo", "bar"], 1), Ok((vec![0], Merge::First)));
        // "bar" is slot 5061 (first half), "foo" 12182 (second half).
        assert_eq!(go(&["GET", "bar"], 2), Ok((vec![0], Merge::First)));
        assert_eq!(go(&["GET", "foo"], 2), Ok((vec![1], Merge::First)));
        assert_eq!(go(&["MGET", "foo", "bar"], 2), Err(CROSSSLOT.to_vec()));
        assert_eq!(
            go(&["MGET", "foo", "{foo}2"], 2),
            Ok((vec![1], Merge::First))
        );
        assert_eq!(go(&["HELLO", "3"], 3), Ok((vec![0, 1, 2], Merge::First)));
        assert_eq!(go(&["DBSIZE"], 2), Ok((vec![0, 1], Merge::Sum)));
        assert_eq!(go(&["KEYS", "*"], 2), Ok((vec![0, 1], Merge::Concat)));
        assert_eq!(go(&["PING"], 2), Ok((vec![0], Merge::First)));
    }

    #[test]
    fn a_transaction_stays_on_one_shard() {
        let k = specs();
        let mut tx = ShardedTx::default();
        // MULTI is answered by the proxy until a key names the shard.
        assert_eq!(
            targets(plan(&cmd(&["MULTI"]), 2, Some(&k), false, &tx)),
            Err(b"+OK\r\n".to_vec())
        );
        assert_eq!(
            targets(plan(&cmd(&["INCR", "foo"]), 2, Some(&k), true, &tx)),
            Ok((vec![1], Merge::First))
        );
        tx.shard = Some(1);
        assert_eq!(
            targets(plan(&cmd(&["INCR", "bar"]), 2, Some(&k), true, &tx)),
            Err(CROSSSLOT.to_vec())
        );
        assert_eq!(
            targets(plan(&cmd(&["EXEC"]), 2, Some(&k), true, &tx)),
            Ok((vec![1], Merge::First))
        );
        // Nothing queued: EXEC and DISCARD are answered by the proxy.
        let empty = ShardedTx::default();
        assert_eq!(
            targets(plan(&cmd(&["EXEC"]), 2, Some(&k), true, &empty)),
            Err(b"*0\r\n".to_vec())
        );
        let aborted = ShardedTx {
            aborted: true,
            ..ShardedTx::default()
        };
        assert_eq!(
            targets(plan(&cmd(&["EXEC"]), 2, Some(&k), true, &aborted)),
            Err(EXECABORT.to_vec())
        );
    }

    #[test]
    fn replies_of_several_shards_merge() {
        assert_eq!(merge(&[b(":2\r\n"), b(":3\r\n")], Merge::Sum), b(":5\r\n"));
        assert_eq!(
            merge(
                &[b("*1\r\n$1\r\na\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nb\r\n")],
                Merge::Concat
            ),
            b("*2\r\n$1\r\na\r\n$1\r\nb\r\n")
        );
        assert_eq!(
            merge(&[b("+OK\r\n"), b("+OK\r\n")], Merge::First),
            b("+OK\r\n")
        );
        assert_eq!(
            merge(&[b("+OK\r\n"), b("-ERR no\r\n")], Merge::First),
            b("-ERR no\r\n")
        );
    }
}
