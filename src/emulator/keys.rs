//! Where a command goes in a database of several shards behind one endpoint:
//! the hash slot of each key (CRC16 with hash tags, as Redis Cluster and Redis
//! Enterprise compute it) and which arguments are keys.
//!
//! Key positions come from the shards' own `COMMAND` table (first key, last
//! key, step), read once from a real `redis-server`; the few commands whose
//! keys move (`EVAL`, `ZUNIONSTORE`, `XREAD`, ...) are read by their documented
//! layout.

use std::collections::HashMap;

pub use crate::slots::{slot, SLOTS};

/// The shard that owns `slot` when `shards` shards split the slots evenly, in
/// order (shard i owns `i * SLOTS / shards ..= (i + 1) * SLOTS / shards - 1`).
pub fn shard_of(slot: u16, shards: usize) -> usize {
    (slot as usize * shards) / SLOTS as usize
}

/// The first and last slot shard `index` of `shards` owns.
pub fn slot_range(index: usize, shards: usize) -> (u16, u16) {
    let first = (index * SLOTS as usize).div_ceil(shards);
    let next = ((index + 1) * SLOTS as usize).div_ceil(shards);
    (first as u16, (next - 1) as u16)
}

/// Key positions of one command, as `COMMAND` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Spec {
    first: i64,
    last: i64,
    step: i64,
}

/// Which arguments of each command are keys.
#[derive(Clone, Debug, Default)]
pub struct KeySpecs {
    specs: HashMap<String, Spec>,
}

/// A command's keys, as indexes into its arguments (0 is the name).
pub type KeyIndexes = Vec<usize>;

impl KeySpecs {
    /// Reads a `COMMAND` reply: one entry per command,
    /// `[name, arity, flags, first, last, step, ...]`.
    pub fn from_command_reply(reply: &redis::Value) -> Self {
        let mut specs = HashMap::new();
        if let redis::Value::Array(entries) = reply {
            for e in entries {
                let redis::Value::Array(fields) = e else {
                    continue;
                };
                let text = |v: &redis::Value| match v {
                    redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    redis::Value::SimpleString(s) => Some(s.clone()),
                    _ => None,
                };
                let int = |v: Option<&redis::Value>| match v {
                    Some(redis::Value::Int(n)) => Some(*n),
                    _ => None,
                };
                let (Some(name), Some(first), Some(last), Some(step)) = (
                    fields.first().and_then(text),
                    int(fields.get(3)),
                    int(fields.get(4)),
                    int(fields.get(5)),
                ) else {
                    continue;
                };
                specs.insert(name.to_ascii_uppercase(), Spec { first, last, step });
            }
        }
        KeySpecs { specs }
    }

    /// Number of commands known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when no command is known.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The indexes of the key arguments of `args` (name first).
    pub fn keys(&self, args: &[bytes::Bytes]) -> KeyIndexes {
        let Some(name) = args.first() else {
            return Vec::new();
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let n = args.len();
        let num = |i: usize| -> Option<usize> {
            args.get(i)
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|s| s.parse::<usize>().ok())
        };
        let counted = |at: usize| -> KeyIndexes {
            num(at)
                .map(|k| (at + 1..(at + 1 + k).min(n)).collect())
                .unwrap_or_default()
        };
        match name.as_str() {
            "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => counted(2),
            "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => {
                let mut k = vec![1];
                k.extend(counted(2));
                k.retain(|&i| i < n);
                k
            }
            "ZUNION" | "ZINTER" | "ZDIFF" | "ZINTERCARD" | "SINTERCARD" | "LMPOP" | "ZMPOP" => {
                counted(1)
            }
            "BLMPOP" | "BZMPOP" => counted(2),
            "XREAD" | "XREADGROUP" => {
                let streams = args.iter().position(|a| a.eq_ignore_ascii_case(b"STREAMS"));
                match streams {
                    Some(at) => {
                        let rest = n - at - 1;
                        (at + 1..at + 1 + rest / 2).collect()
                    }
                    None => Vec::new(),
                }
            }
            "SORT" | "SORT_RO" if n > 1 => vec![1],
            _ => match self.specs.get(&name) {
                Some(s) if s.first > 0 => {
                    let first = s.first as usize;
                    let last = if s.last < 0 {
                        (n as i64 + s.last) as usize
                    } else {
                        (s.last as usize).min(n.saturating_sub(1))
                    };
                    let step = s.step.max(1) as usize;
                    (first..=last).step_by(step).filter(|&i| i < n).collect()
                }
                _ => Vec::new(),
            },
        }
    }
}

/// A `COMMAND` table of `(name, first key, last key, step)` rows, as a
/// shard would answer, for tests.
#[cfg(test)]
pub(crate) fn command_table(rows: &[(&str, i64, i64, i64)]) -> KeySpecs {
    use redis::Value as V;
    KeySpecs::from_command_reply(&V::Array(
        rows.iter()
            .map(|(name, first, last, step)| {
                V::Array(vec![
                    V::BulkString(name.as_bytes().to_vec()),
                    V::Int(-2),
                    V::Array(vec![]),
                    V::Int(*first),
                    V::Int(*last),
                    V::Int(*step),
                ])
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::from(a.to_string())).collect()
    }

    #[test]
    fn slot_ranges_cover_every_slot_once() {
        for shards in 1..=7 {
            let mut next = 0u32;
            for i in 0..shards {
                let (first, last) = slot_range(i, shards);
                assert_eq!(first as u32, next, "{shards} shards, shard {i}");
                for s in [first, last] {
                    assert_eq!(shard_of(s, shards), i, "slot {s} of {shards} shards");
                }
                next = last as u32 + 1;
            }
            assert_eq!(next, SLOTS as u32);
        }
    }

    #[test]
    fn keys_follow_the_command_table_and_the_movable_layouts() {
        let specs = command_table(&[
            ("get", 1, 1, 1),
            ("mset", 1, -1, 2),
            ("del", 1, -1, 1),
            ("ping", 0, 0, 0),
        ]);
        assert_eq!(specs.len(), 4);
        assert_eq!(specs.keys(&args(&["GET", "k"])), vec![1]);
        assert_eq!(specs.keys(&args(&["mset", "a", "1", "b", "2"])), vec![1, 3]);
        assert_eq!(specs.keys(&args(&["DEL", "a", "b", "c"])), vec![1, 2, 3]);
        assert!(specs.keys(&args(&["PING"])).is_empty());
        assert!(specs.keys(&args(&["NOSUCH", "x"])).is_empty());
        assert_eq!(
            specs.keys(&args(&["EVAL", "return 1", "2", "a", "b", "x"])),
            vec![3, 4]
        );
        assert_eq!(
            specs.keys(&args(&[
                "XREAD", "COUNT", "1", "STREAMS", "s1", "s2", "0", "0"
            ])),
            vec![4, 5]
        );
        assert_eq!(
            specs.keys(&args(&[
                "ZUNIONSTORE",
                "d",
                "2",
                "a",
                "b",
                "WEIGHTS",
                "1",
                "2"
            ])),
            vec![1, 3, 4]
        );
    }
}
