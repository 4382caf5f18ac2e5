//! Which node serves each hash slot, as a cluster client believes: read
//! from `CLUSTER SLOTS`, changed a range at a time by SMIGRATED and MOVED.

use std::collections::HashSet;

use redis::Value;

use crate::notification::Endpoint;
use crate::slots::SLOTS;

/// Which node serves each slot, as the client believes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotTable {
    /// Index into `endpoints` per slot (`None`: not served).
    owner: Vec<Option<u16>>,
    endpoints: Vec<Endpoint>,
}

impl SlotTable {
    /// Reads a `CLUSTER SLOTS` reply: `[[first, last, [host, port, ...], ...], ...]`.
    pub fn from_cluster_slots(reply: &Value) -> Result<SlotTable, String> {
        let Value::Array(entries) = reply else {
            return Err(format!("CLUSTER SLOTS answered {reply:?}, not an array"));
        };
        let mut t = SlotTable {
            owner: vec![None; SLOTS as usize],
            endpoints: Vec::new(),
        };
        for e in entries {
            let bad =
                || format!("a CLUSTER SLOTS entry is not [first, last, [host, port, ...]]: {e:?}");
            let Value::Array(fields) = e else {
                return Err(bad());
            };
            let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(node))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad());
            };
            let host = match node.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => return Err(bad()),
            };
            let Some(Value::Int(port)) = node.get(1) else {
                return Err(bad());
            };
            let (a, b) = (
                u16::try_from(*a).map_err(|_| bad())?,
                u16::try_from(*b).map_err(|_| bad())?,
            );
            if a > b || b >= SLOTS {
                return Err(bad());
            }
            let port = u16::try_from(*port).map_err(|_| bad())?;
            t.set(&[(a, b)], &Endpoint::new(host, port));
        }
        Ok(t)
    }

    /// The node that serves `slot`.
    pub fn get(&self, slot: u16) -> Option<&Endpoint> {
        self.owner
            .get(slot as usize)
            .copied()
            .flatten()
            .map(|i| &self.endpoints[i as usize])
    }

    /// Gives `ranges` to `node`; returns how many slots changed node.
    pub fn set(&mut self, ranges: &[(u16, u16)], node: &Endpoint) -> usize {
        if self.owner.is_empty() {
            self.owner = vec![None; SLOTS as usize];
        }
        let i = match self.endpoints.iter().position(|e| e == node) {
            Some(i) => i,
            None => {
                self.endpoints.push(node.clone());
                self.endpoints.len() - 1
            }
        } as u16;
        let mut changed = 0;
        for &(a, b) in ranges {
            for s in a..=b {
                let o = &mut self.owner[s as usize];
                changed += usize::from(*o != Some(i));
                *o = Some(i);
            }
        }
        changed
    }

    /// Runs of slots served by one node, in slot order, as `(first, last,
    /// "host:port")`.
    pub fn ranges(&self) -> Vec<(u16, u16, String)> {
        let mut out: Vec<(u16, u16, String)> = Vec::new();
        for (s, o) in self.owner.iter().enumerate() {
            let Some(o) = o else { continue };
            let e = self.endpoints[*o as usize].to_string();
            match out.last_mut() {
                Some((_, last, node)) if *node == e && *last as usize + 1 == s => *last = s as u16,
                _ => out.push((s as u16, s as u16, e)),
            }
        }
        out
    }

    /// The nodes that serve at least one slot.
    pub fn nodes(&self) -> Vec<Endpoint> {
        let used: HashSet<u16> = self.owner.iter().flatten().copied().collect();
        (0..self.endpoints.len())
            .filter(|i| used.contains(&(*i as u16)))
            .map(|i| self.endpoints[i].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_slots_reply_becomes_runs_of_slots_per_node() {
        let node = |host: &str| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(12000),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(8191), node("127.0.1.1")]),
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node("127.0.2.1")]),
        ]);
        let mut t = SlotTable::from_cluster_slots(&reply).unwrap();
        assert_eq!(t.get(5).unwrap().to_string(), "127.0.1.1:12000");
        assert_eq!(
            t.set(&[(4096, 8191)], &Endpoint::new("127.0.2.1", 12000)),
            4096
        );
        assert_eq!(
            t.ranges(),
            vec![
                (0, 4095, "127.0.1.1:12000".to_string()),
                (4096, 16383, "127.0.2.1:12000".to_string())
            ]
        );
        assert!(SlotTable::from_cluster_slots(&Value::Int(1)).is_err());
    }
}
