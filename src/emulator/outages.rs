//! The nodes and proxies a fault took down (`node_failure`, `proxy_failure`),
//! and what comes back with them when they start again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// What a stopped node held, to be built again when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeDown {
    /// Databases whose proxy served on the node.
    pub proxies: Vec<u64>,
    /// Shard sets (database, set index) that lost a shard on the node: each
    /// gets a new replica there.
    pub lost_shards: Vec<(u64, usize)>,
}

/// The cluster's outages.
#[derive(Default)]
pub struct Outages {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<usize, NodeDown>,
    /// Stopped proxies: node, and the databases they served.
    proxies: BTreeMap<usize, BTreeSet<u64>>,
}

impl Outages {
    /// Whether node `n` is down.
    pub fn node_down(&self, n: usize) -> bool {
        self.inner.lock().unwrap().nodes.contains_key(&n)
    }

    /// Records that node `n` went down, holding `what`.
    pub fn node_stopped(&self, n: usize, what: NodeDown) {
        self.inner.lock().unwrap().nodes.insert(n, what);
    }

    /// Node `n` is back: what it held, or `None` when it was not down.
    pub fn node_started(&self, n: usize) -> Option<NodeDown> {
        self.inner.lock().unwrap().nodes.remove(&n)
    }

    /// Records that the proxy of database `db` on node `n` was stopped.
    pub fn proxy_stopped(&self, n: usize, db: u64) {
        let mut i = self.inner.lock().unwrap();
        i.proxies.entry(n).or_default().insert(db);
    }

    /// The databases whose proxy on node `n` was stopped (only `db`, when
    /// given), now counted as started again.
    pub fn proxies_started(&self, n: usize, db: Option<u64>) -> Vec<u64> {
        let mut i = self.inner.lock().unwrap();
        let Some(stopped) = i.proxies.get_mut(&n) else {
            return Vec::new();
        };
        let started: Vec<u64> = match db {
            Some(d) => stopped.take(&d).into_iter().collect(),
            None => std::mem::take(stopped).into_iter().collect(),
        };
        if stopped.is_empty() {
            i.proxies.remove(&n);
        }
        started
    }

    /// Forgets every outage of database `db` (it was deleted).
    pub fn forget_database(&self, db: u64) {
        let mut i = self.inner.lock().unwrap();
        for stopped in i.proxies.values_mut() {
            stopped.remove(&db);
        }
        i.proxies.retain(|_, s| !s.is_empty());
        for down in i.nodes.values_mut() {
            down.proxies.retain(|d| *d != db);
            down.lost_shards.retain(|(d, _)| *d != db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_proxy_starts_once_per_database() {
        let o = Outages::default();
        o.proxy_stopped(2, 1);
        o.proxy_stopped(2, 3);
        assert_eq!(o.proxies_started(2, Some(3)), vec![3]);
        assert_eq!(o.proxies_started(2, Some(3)), Vec::<u64>::new());
        assert_eq!(o.proxies_started(2, None), vec![1]);
        assert_eq!(o.proxies_started(2, None), Vec::<u64>::new());
    }

    #[test]
    fn a_node_comes_back_with_what_it_held_once() {
        let o = Outages::default();
        let held = NodeDown {
            proxies: vec![1],
            lost_shards: vec![(1, 0), (2, 0)],
        };
        o.node_stopped(2, held.clone());
        assert!(o.node_down(2) && !o.node_down(1));
        o.forget_database(2);
        assert_eq!(
            o.node_started(2),
            Some(NodeDown {
                proxies: vec![1],
                lost_shards: vec![(1, 0)]
            })
        );
        assert_eq!(o.node_started(2), None);
    }
}
