//! The slot map of an OSS Cluster API database as its proxies present it:
//! which shard set owns each hash slot, on which node each set's primary
//! lives, which slots a set is importing, and the topology answers
//! (`CLUSTER SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES`) built from it. Each
//! node's proxy stands for that node: the answers name proxies, never shards.

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;

use super::keys::{self, SLOTS};
use super::node::Node;
use crate::notification::Endpoint;

/// Which shard set serves each slot, and where each set lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// The owning shard set of each slot.
    owner: Vec<u16>,
    /// The node of each shard set's primary, by set index.
    pub nodes: Vec<Node>,
    /// Slots a set is importing (a move in progress): slot -> importing set.
    pub importing: HashMap<u16, usize>,
}

impl SlotMap {
    /// The slots split evenly among the sets, in order (the split the
    /// cluster is formed with, [`keys::slot_range`]).
    pub fn even(nodes: Vec<Node>) -> SlotMap {
        let n = nodes.len();
        let owner = (0..SLOTS)
            .map(|s| keys::shard_of(s, n) as u16)
            .collect::<Vec<_>>();
        SlotMap {
            owner,
            nodes,
            importing: HashMap::new(),
        }
    }

    /// The set that owns `slot`.
    pub fn owner(&self, slot: u16) -> usize {
        self.owner[slot as usize] as usize
    }

    /// The node that serves `slot`.
    pub fn node_of(&self, slot: u16) -> Node {
        self.nodes[self.owner(slot)]
    }

    /// Gives `slots` to set `set`.
    pub fn assign(&mut self, slots: &[(u16, u16)], set: usize) {
        for &(a, b) in slots {
            for s in a..=b {
                self.owner[s as usize] = set as u16;
            }
        }
    }

    /// The sets whose primary is on `node`, in index order.
    pub fn sets_on(&self, node: Node) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i] == node)
            .collect()
    }

    /// The sets that own at least one slot.
    pub fn serving_sets(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.owner.iter().map(|&o| o as usize).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The nodes that serve at least one slot, in index order.
    pub fn serving_nodes(&self) -> Vec<Node> {
        let mut v: Vec<Node> = self
            .serving_sets()
            .into_iter()
            .map(|s| self.nodes[s])
            .collect();
        v.sort_by_key(|n| n.index);
        v.dedup();
        v
    }

    /// The slots of set `set`, as inclusive ranges.
    pub fn slots_of(&self, set: usize) -> Vec<(u16, u16)> {
        ranges(|s| self.owner(s) == set)
    }

    /// The slots of `node`, as inclusive ranges.
    pub fn slots_on(&self, node: Node) -> Vec<(u16, u16)> {
        ranges(|s| self.node_of(s) == node)
    }

    /// Contiguous runs of slots served by one node, in slot order.
    pub fn node_ranges(&self) -> Vec<(u16, u16, Node)> {
        let mut out: Vec<(u16, u16, Node)> = Vec::new();
        for s in 0..SLOTS {
            let n = self.node_of(s);
            match out.last_mut() {
                Some((_, last, node)) if *node == n && *last + 1 == s => *last = s,
                _ => out.push((s, s, n)),
            }
        }
        out
    }
}

/// The slots for which `pick` holds, as inclusive ranges.
fn ranges(pick: impl Fn(u16) -> bool) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for s in (0..SLOTS).filter(|&s| pick(s)) {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// A slot list as notifications carry it: `"0-5460,7000"`.
pub fn slot_list(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| match a == b {
            true => a.to_string(),
            false => format!("{a}-{b}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The node id the proxy of `node` goes by in topology answers: 40 hex
/// digits, as Redis Cluster's are, the same for every database.
pub fn node_id(node: Node) -> String {
    format!(
        "{:040x}",
        0x6d61_696e_7465_3265_u128 * 1_000 + node.index as u128
    )
}

fn bulk(out: &mut String, s: &str) {
    let _ = write!(out, "${}\r\n{s}\r\n", s.len());
}

/// `CLUSTER SLOTS`: one entry per run of slots, naming the proxy of the node
/// that serves it at `endpoint(node)` (no replicas: the proxies are the
/// cluster a client sees).
pub fn cluster_slots(map: &SlotMap, endpoint: impl Fn(Node) -> Endpoint) -> Bytes {
    let runs = map.node_ranges();
    let mut out = format!("*{}\r\n", runs.len());
    for (a, b, node) in runs {
        let e = endpoint(node);
        let _ = write!(out, "*3\r\n:{a}\r\n:{b}\r\n*3\r\n");
        bulk(&mut out, &e.host);
        let _ = write!(out, ":{}\r\n", e.port);
        bulk(&mut out, &node_id(node));
    }
    Bytes::from(out)
}

/// `CLUSTER SHARDS`: one shard per serving node, with its slots and its one
/// node (the proxy), as a map in RESP3 and a flat array in RESP2.
pub fn cluster_shards(map: &SlotMap, endpoint: impl Fn(Node) -> Endpoint, proto: u8) -> Bytes {
    let open_map = |out: &mut String, n: usize| {
        let _ = match proto {
            3 => write!(out, "%{n}\r\n"),
            _ => write!(out, "*{}\r\n", n * 2),
        };
    };
    let nodes = map.serving_nodes();
    let mut out = format!("*{}\r\n", nodes.len());
    for node in nodes {
        let slots = map.slots_on(node);
        let e = endpoint(node);
        open_map(&mut out, 2);
        bulk(&mut out, "slots");
        let _ = write!(out, "*{}\r\n", slots.len() * 2);
        for (a, b) in slots {
            let _ = write!(out, ":{a}\r\n:{b}\r\n");
        }
        bulk(&mut out, "nodes");
        out.push_str("*1\r\n");
        open_map(&mut out, 7);
        bulk(&mut out, "id");
        bulk(&mut out, &node_id(node));
        bulk(&mut out, "port");
        let _ = write!(out, ":{}\r\n", e.port);
        bulk(&mut out, "ip");
        bulk(&mut out, &e.host);
        bulk(&mut out, "endpoint");
        bulk(&mut out, &e.host);
        bulk(&mut out, "role");
        bulk(&mut out, "master");
        bulk(&mut out, "replication-offset");
        out.push_str(":0\r\n");
        bulk(&mut out, "health");
        bulk(&mut out, "online");
    }
    Bytes::from(out)
}

/// `CLUSTER NODES`: a line per serving node (`myself` for the proxy that
/// answers), its slots at the end.
pub fn cluster_nodes(map: &SlotMap, endpoint: impl Fn(Node) -> Endpoint, myself: Node) -> Bytes {
    let mut text = String::new();
    let mut nodes = map.serving_nodes();
    if !nodes.contains(&myself) {
        nodes.push(myself);
    }
    for node in nodes {
        let e = endpoint(node);
        let flags = match node == myself {
            true => "myself,master",
            false => "master",
        };
        let _ = write!(
            text,
            "{} {}:{}@{} {flags} - 0 0 1 connected",
            node_id(node),
            e.host,
            e.port,
            e.port as u32 + 10000
        );
        for (a, b) in map.slots_on(node) {
            let _ = match a == b {
                true => write!(text, " {a}"),
                false => write!(text, " {a}-{b}"),
            };
        }
        text.push('\n');
    }
    let mut out = String::new();
    bulk(&mut out, &text);
    Bytes::from(out)
}

/// `CLUSTER INFO` of a healthy cluster of `map`'s serving nodes.
pub fn cluster_info(map: &SlotMap) -> Bytes {
    let n = map.serving_nodes().len();
    let text = format!(
        "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:{SLOTS}\r\ncluster_slots_ok:{SLOTS}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{n}\r\ncluster_size:{n}\r\n"
    );
    let mut out = String::new();
    bulk(&mut out, &text);
    Bytes::from(out)
}

/// A `-MOVED` or `-ASK` reply of a shard, its address rewritten by
/// `rewrite` (shard address to proxy endpoint); other replies as they are.
pub fn rewrite_redirect(
    reply: &[u8],
    rewrite: impl Fn(std::net::SocketAddr) -> Option<Endpoint>,
) -> Option<Bytes> {
    let text = std::str::from_utf8(reply).ok()?.trim_end();
    let rest = text.strip_prefix('-')?;
    let mut parts = rest.split(' ');
    let kind = parts.next()?;
    if kind != "MOVED" && kind != "ASK" {
        return None;
    }
    let slot = parts.next()?;
    let addr = parts.next()?.parse().ok()?;
    let e = rewrite(addr)?;
    Some(Bytes::from(format!(
        "-{kind} {slot} {}:{}\r\n",
        e.host, e.port
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: usize) -> Node {
        Node { index: i }
    }

    fn at(node: Node) -> Endpoint {
        Endpoint::new(node.internal_ip().to_string(), 12000)
    }

    #[test]
    fn an_even_map_follows_the_formed_split_and_moves_slots() {
        let mut m = SlotMap::even(vec![n(1), n(2), n(3)]);
        assert_eq!(m.slots_of(0), vec![(0, 5461)]);
        assert_eq!(m.slots_of(2), vec![(10923, 16383)]);
        assert_eq!(m.node_of(12182), n(3));
        m.assign(&[(0, 99)], 2);
        assert_eq!(m.slots_of(2), vec![(0, 99), (10923, 16383)]);
        assert_eq!(m.slots_on(n(1)), vec![(100, 5461)]);
        assert_eq!(slot_list(&m.slots_of(2)), "0-99,10923-16383");
        assert_eq!(slot_list(&[(7, 7)]), "7");
        // A set with no slot left serves nothing.
        m.assign(&[(100, 5461)], 1);
        assert_eq!(m.serving_nodes(), vec![n(2), n(3)]);
        assert_eq!(m.sets_on(n(2)), vec![1]);
    }

    #[test]
    fn cluster_slots_name_the_proxies_in_runs() {
        let mut m = SlotMap::even(vec![n(1), n(2)]);
        m.assign(&[(0, 9)], 1);
        let text = String::from_utf8(cluster_slots(&m, at).to_vec()).unwrap();
        assert!(
            text.starts_with("*3\r\n*3\r\n:0\r\n:9\r\n*3\r\n$9\r\n127.0.2.1\r\n:12000\r\n$40\r\n"),
            "{text:?}"
        );
        assert!(
            text.contains(":10\r\n:8191\r\n*3\r\n$9\r\n127.0.1.1\r\n"),
            "{text:?}"
        );
        // Decoded by redis-rs as any client would.
        let v: redis::Value = redis::parse_redis_value(text.as_bytes()).unwrap();
        let redis::Value::Array(entries) = v else {
            panic!("{v:?}")
        };
        assert_eq!(entries.len(), 3);
    }

    #[test]
    fn cluster_nodes_and_shards_parse_and_mark_myself() {
        let m = SlotMap::even(vec![n(1), n(2), n(3)]);
        let v = redis::parse_redis_value(&cluster_nodes(&m, at, n(2))).unwrap();
        let redis::Value::BulkString(b) = v else {
            panic!()
        };
        let text = String::from_utf8(b).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].contains("127.0.2.1:12000@22000 myself,master - 0 0 1 connected 5462-10922"),
            "{text}"
        );
        for proto in [2, 3] {
            let v = redis::parse_redis_value(&cluster_shards(&m, at, proto)).unwrap();
            let redis::Value::Array(shards) = v else {
                panic!("{v:?}")
            };
            assert_eq!(shards.len(), 3);
        }
    }

    #[test]
    fn redirects_name_the_proxy_of_the_shard() {
        let shard: std::net::SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let to = |a| (a == shard).then(|| at(n(3)));
        assert_eq!(
            rewrite_redirect(b"-ASK 12182 127.0.0.1:40001\r\n", to).unwrap(),
            Bytes::from_static(b"-ASK 12182 127.0.3.1:12000\r\n")
        );
        assert_eq!(
            rewrite_redirect(b"-MOVED 1 127.0.0.1:40001\r\n", to).unwrap(),
            Bytes::from_static(b"-MOVED 1 127.0.3.1:12000\r\n")
        );
        assert_eq!(rewrite_redirect(b"-ERR no\r\n", to), None);
        assert_eq!(rewrite_redirect(b"-MOVED 1 127.0.0.1:9\r\n", to), None);
    }
}
