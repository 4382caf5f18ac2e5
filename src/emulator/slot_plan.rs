//! What each `slot_migrate` effect does to an OSS Cluster API database's
//! slot map, as a plan: `slot-shuffle` (half of one shard's slots to a shard
//! on another node), `add` (a node that held none takes a share from every
//! shard), `remove` (a node gives its slots to the others and leaves),
//! `remove-add` (a node's slots go to a node that held none, and it leaves);
//! by migration (slots move between shards) or by failover (a shard's replica
//! on another node takes over). Pure: [`super::operations::slot_migrate`]
//! carries a plan out.

use super::node::Node;
use super::slot_map::SlotMap;

/// The effects `slot_migrate` emulates.
pub const EFFECTS: &[&str] = &["slot-shuffle", "add", "remove", "remove-add"];

/// The triggers it emulates: `migrate` moves keys slot by slot; `failover`
/// promotes a shard's replica on another node, whose node then serves the
/// shard's slots.
pub const TRIGGERS: &[&str] = &["migrate", "failover"];

/// Slots going from one shard set to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    /// Set the slots leave.
    pub from: usize,
    /// Set they go to.
    pub to: usize,
    /// The slots, as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
}

/// What an effect does: the moves, a node that joins first (its new set's
/// index is the next one), a node that leaves after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The moves, in order.
    pub moves: Vec<Move>,
    /// Shard sets whose replica takes over (trigger `failover`), in order.
    pub failovers: Vec<usize>,
    /// A node that holds no slot and gets a new primary shard first.
    pub joins: Option<Node>,
    /// A node whose proxy stops once its slots are gone.
    pub leaves: Option<Node>,
}

/// Consecutive slots as inclusive ranges.
pub(crate) fn runs(slots: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &s in slots {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// The slots of `ranges` split into `parts` runs of (nearly) equal size, in
/// order.
fn split(ranges: &[(u16, u16)], parts: usize) -> Vec<Vec<(u16, u16)>> {
    let slots: Vec<u16> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
    let per = slots.len().div_ceil(parts.max(1)).max(1);
    slots.chunks(per).map(runs).collect()
}

/// The last `1/parts` of `ranges`' slots.
fn tail(ranges: &[(u16, u16)], parts: usize) -> Vec<(u16, u16)> {
    let slots: Vec<u16> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();
    let take = (slots.len() / parts.max(1)).max(1).min(slots.len());
    runs(&slots[slots.len() - take..])
}

/// What `effect` does to `map`; `spare` is a node that holds no slot (for
/// the effects that add one); `source` / `target` are the caller's picks.
pub fn plan(
    map: &SlotMap,
    effect: &str,
    source: Option<Node>,
    target: Option<Node>,
    spare: Node,
) -> Result<Plan, String> {
    let serving = map.serving_nodes();
    let busiest = |on: Node| {
        map.sets_on(on)
            .into_iter()
            .filter(|&s| !map.slots_of(s).is_empty())
            .max_by_key(|&s| {
                map.slots_of(s)
                    .iter()
                    .map(|(a, b)| (b - a) as usize + 1)
                    .sum::<usize>()
            })
    };
    let serving_sets = map.serving_sets();
    let new_set = map.nodes.len();
    let not_enough = |what: &str| format!("not enough nodes: {what}");
    match effect {
        "slot-shuffle" => {
            let from_node = source
                .or_else(|| serving.first().copied())
                .ok_or("no node serves slots")?;
            let from = busiest(from_node)
                .ok_or_else(|| format!("node {} serves no slot", from_node.index))?;
            let to_node = match target {
                Some(t) if t == from_node => return Err("source_node and target_node are the same node".into()),
                Some(t) => t,
                None => *serving
                    .iter()
                    .find(|n| **n != from_node)
                    .ok_or_else(|| not_enough("slot-shuffle needs slots on two nodes; create the database with more shards than one"))?,
            };
            let to =
                busiest(to_node).ok_or_else(|| format!("node {} serves no slot", to_node.index))?;
            Ok(Plan {
                moves: vec![Move {
                    from,
                    to,
                    slots: tail(&map.slots_of(from), 2),
                }],
                failovers: Vec::new(),
                joins: None,
                leaves: None,
            })
        }
        "add" => {
            let joins = target.unwrap_or(spare);
            if serving.contains(&joins) {
                return Err(format!(
                    "node {} serves slots already; add gives slots to a node that has none",
                    joins.index
                ));
            }
            let parts = serving_sets.len() + 1;
            Ok(Plan {
                moves: serving_sets
                    .iter()
                    .map(|&from| Move {
                        from,
                        to: new_set,
                        slots: tail(&map.slots_of(from), parts),
                    })
                    .collect(),
                failovers: Vec::new(),
                joins: Some(joins),
                leaves: None,
            })
        }
        "remove" | "remove-add" => {
            let leaves = source
                .or_else(|| serving.last().copied())
                .ok_or("no node serves slots")?;
            if !serving.contains(&leaves) {
                return Err(format!("node {} serves no slot", leaves.index));
            }
            let gone = map.sets_on(leaves);
            let mut moves = Vec::new();
            if effect == "remove-add" {
                let joins = target.unwrap_or(spare);
                if serving.contains(&joins) {
                    return Err(format!("node {} serves slots already; remove-add gives slots to a node that has none", joins.index));
                }
                for &from in &gone {
                    let slots = map.slots_of(from);
                    if !slots.is_empty() {
                        moves.push(Move {
                            from,
                            to: new_set,
                            slots,
                        });
                    }
                }
                return Ok(Plan {
                    moves,
                    failovers: Vec::new(),
                    joins: Some(joins),
                    leaves: Some(leaves),
                });
            }
            let stay: Vec<usize> = serving_sets
                .iter()
                .copied()
                .filter(|s| !gone.contains(s))
                .collect();
            if stay.is_empty() {
                return Err(not_enough(
                    "remove needs slots on another node to give them to",
                ));
            }
            for &from in &gone {
                for (part, to) in split(&map.slots_of(from), stay.len())
                    .into_iter()
                    .zip(&stay)
                {
                    moves.push(Move {
                        from,
                        to: *to,
                        slots: part,
                    });
                }
            }
            Ok(Plan {
                moves,
                failovers: Vec::new(),
                joins: None,
                leaves: Some(leaves),
            })
        }
        other => Err(format!(
            "unknown effect {other:?}; one of {}",
            EFFECTS.join(", ")
        )),
    }
}

/// What `effect` does to `map` by failover: which shard sets' replicas
/// (`replicas[set]`: the node of each set's replica) take over, a node that
/// starts serving slots, one that stops.
pub fn plan_failover(
    map: &SlotMap,
    replicas: &[Option<Node>],
    effect: &str,
    source: Option<Node>,
    target: Option<Node>,
) -> Result<Plan, String> {
    let serving = map.serving_nodes();
    let replica_of = |set: usize| replicas.get(set).copied().flatten();
    // Serving sets whose replica lives on another node, and where.
    let candidates: Vec<(usize, Node, Node)> = map
        .serving_sets()
        .into_iter()
        .filter_map(|set| {
            let r = replica_of(set)?;
            (r != map.nodes[set]).then_some((set, map.nodes[set], r))
        })
        .filter(|(_, from, to)| {
            source.is_none_or(|n| n == *from) && target.is_none_or(|n| n == *to)
        })
        .collect();
    let none = |what: &str| {
        format!(
            "not enough nodes: {what}; create the database with replication: true and fewer shards than nodes, or use trigger migrate"
        )
    };
    let one = |pick: &dyn Fn(&(usize, Node, Node)) -> bool, what: &str| {
        candidates
            .iter()
            .find(|c| pick(c))
            .map(|&(set, _, to)| (set, to))
            .ok_or_else(|| none(what))
    };
    match effect {
        "slot-shuffle" => {
            let (set, _) = one(
                &|c| serving.contains(&c.2),
                "no shard has its replica on another node that serves slots",
            )?;
            Ok(Plan {
                moves: Vec::new(),
                failovers: vec![set],
                joins: None,
                leaves: None,
            })
        }
        "add" => {
            // A node is added and none leaves when the set that fails over
            // shares its node with another (a dense database).
            let sets = map.serving_sets();
            let keeps_serving = |n: Node| sets.iter().filter(|&&s| map.nodes[s] == n).count() > 1;
            let (set, to) = one(
                &|c| !serving.contains(&c.2) && keeps_serving(c.1),
                "no shard shares its node and has its replica on a node that serves no slot",
            )
            .or_else(|_| {
                one(
                    &|c| !serving.contains(&c.2),
                    "no shard has its replica on a node that serves no slot",
                )
            })?;
            Ok(Plan {
                moves: Vec::new(),
                failovers: vec![set],
                joins: Some(to),
                leaves: None,
            })
        }
        "remove" | "remove-add" => {
            let fresh = effect == "remove-add";
            // A node all of whose serving sets can hand over to replicas
            // elsewhere (on nodes that serve nothing, for remove-add).
            let fits = |n: Node| {
                let sets: Vec<usize> = map
                    .sets_on(n)
                    .into_iter()
                    .filter(|s| !map.slots_of(*s).is_empty())
                    .collect();
                let ok = !sets.is_empty()
                    && sets.iter().all(|s| {
                        candidates
                            .iter()
                            .any(|c| c.0 == *s && (!fresh || !serving.contains(&c.2)))
                    });
                ok.then_some(sets)
            };
            let (leaves, sets) = serving
                .iter()
                .rev()
                .filter(|n| source.is_none_or(|s| s == **n))
                .find_map(|n| fits(*n).map(|sets| (*n, sets)))
                .ok_or_else(|| none("no node has a replica elsewhere for each of its shards"))?;
            let joins = fresh.then(|| replica_of(sets[0])).flatten();
            Ok(Plan {
                moves: Vec::new(),
                failovers: sets,
                joins,
                leaves: Some(leaves),
            })
        }
        other => Err(format!(
            "unknown effect {other:?}; one of {}",
            EFFECTS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: usize) -> Node {
        Node { index: i }
    }

    fn count(r: &[(u16, u16)]) -> usize {
        r.iter().map(|(a, b)| (b - a) as usize + 1).sum()
    }

    #[test]
    fn each_effect_moves_what_it_says() {
        let map = SlotMap::even(vec![n(1), n(2)]);
        let shuffle = plan(&map, "slot-shuffle", None, None, n(3)).unwrap();
        assert_eq!(
            shuffle.moves,
            vec![Move {
                from: 0,
                to: 1,
                slots: vec![(4096, 8191)]
            }]
        );

        let add = plan(&map, "add", None, None, n(3)).unwrap();
        assert_eq!(add.joins, Some(n(3)));
        assert_eq!(add.moves.len(), 2);
        assert!(
            add.moves
                .iter()
                .all(|m| m.to == 2 && count(&m.slots) == 2730),
            "{add:?}"
        );

        let remove = plan(&map, "remove", None, None, n(3)).unwrap();
        assert_eq!(remove.leaves, Some(n(2)));
        assert_eq!(
            remove.moves,
            vec![Move {
                from: 1,
                to: 0,
                slots: vec![(8192, 16383)]
            }]
        );

        let swap = plan(&map, "remove-add", Some(n(1)), None, n(3)).unwrap();
        assert_eq!((swap.leaves, swap.joins), (Some(n(1)), Some(n(3))));
        assert_eq!(
            swap.moves,
            vec![Move {
                from: 0,
                to: 2,
                slots: vec![(0, 8191)]
            }]
        );
    }

    #[test]
    fn effects_that_cannot_run_say_why() {
        let one = SlotMap::even(vec![n(1)]);
        assert!(plan(&one, "slot-shuffle", None, None, n(2))
            .unwrap_err()
            .starts_with("not enough nodes"));
        assert!(plan(&one, "remove", None, None, n(2))
            .unwrap_err()
            .starts_with("not enough nodes"));
        assert!(plan(&one, "add", None, Some(n(1)), n(2))
            .unwrap_err()
            .contains("serves slots already"));
        assert!(plan(&one, "shuffle", None, None, n(2))
            .unwrap_err()
            .contains("slot-shuffle, add, remove, remove-add"));
    }

    #[test]
    fn failover_picks_a_replica_where_the_effect_needs_it() {
        // Sets on nodes 1 and 2, replicas on the next node: 2 and 3.
        let map = SlotMap::even(vec![n(1), n(2)]);
        let replicas = [Some(n(2)), Some(n(3))];
        let f = |effect| plan_failover(&map, &replicas, effect, None, None);
        let shuffle = f("slot-shuffle").unwrap();
        assert_eq!((shuffle.failovers, shuffle.joins), (vec![0], None));
        let add = f("add").unwrap();
        assert_eq!((add.failovers, add.joins), (vec![1], Some(n(3))));
        let remove = f("remove").unwrap();
        assert_eq!((remove.failovers, remove.leaves), (vec![1], Some(n(2))));
        let swap = f("remove-add").unwrap();
        assert_eq!(
            (swap.failovers, swap.joins, swap.leaves),
            (vec![1], Some(n(3)), Some(n(2)))
        );
        // A dense database (both sets on node 1, replicas on node 2): an
        // add keeps node 1 serving, one master more.
        let dense = SlotMap::even(vec![n(1), n(1)]);
        let add = plan_failover(&dense, &[Some(n(2)), Some(n(2))], "add", None, None).unwrap();
        assert_eq!(add.joins, Some(n(2)));
        assert_eq!(add.failovers.len(), 1, "{add:?}");
        // No replica: nothing can fail over, and the error says what to do.
        let e = plan_failover(&map, &[None, None], "slot-shuffle", None, None).unwrap_err();
        assert!(
            e.starts_with("not enough nodes") && e.contains("replication: true"),
            "{e}"
        );
    }
}
