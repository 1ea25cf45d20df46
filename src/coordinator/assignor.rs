//! Server-side assignors of KIP-848 consumer groups, by Kafka's names: `uniform` (balanced to
//! within one partition per member, sticky to the previous target) and `range` (per topic,
//! contiguous ranges over the members subscribed to it, so equally partitioned topics are
//! co-partitioned). Pure and deterministic: the same input always gives the same assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

/// One member as the assignor sees it.
pub struct AssignorMember<'a> {
    pub id: &'a str,
    /// Subscribed topics that exist.
    pub topics: BTreeSet<Uuid>,
    /// The member's previous target assignment (stickiness).
    pub previous: Option<&'a Assignment>,
}

/// Runs assignor `name` (`uniform` or `range`) over `topics` (id -> partition count).
pub fn assign(
    name: &str,
    members: &[AssignorMember],
    topics: &BTreeMap<Uuid, i32>,
) -> HashMap<String, Assignment> {
    if name == RANGE {
        range(members, topics)
    } else {
        uniform(members, topics)
    }
}

fn add(a: &mut Assignment, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn range(members: &[AssignorMember], topics: &BTreeMap<Uuid, i32>) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = members
        .iter()
        .map(|m| (m.id.to_string(), Assignment::new()))
        .collect();
    for (tid, n) in topics {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(tid))
            .map(|m| m.id)
            .collect();
        if subs.is_empty() {
            continue;
        }
        subs.sort_unstable();
        let n = (*n).max(0) as usize;
        let (quota, extra) = (n / subs.len(), n % subs.len());
        let mut next = 0usize;
        for (i, id) in subs.iter().enumerate() {
            let take = quota + usize::from(i < extra);
            for p in next..next + take {
                if let Some(a) = out.get_mut(*id) {
                    add(a, *tid, p as i32);
                }
            }
            next += take;
        }
    }
    out
}

fn uniform(
    members: &[AssignorMember],
    topics: &BTreeMap<Uuid, i32>,
) -> HashMap<String, Assignment> {
    let mut order: Vec<&AssignorMember> = members.iter().collect();
    order.sort_by(|a, b| a.id.cmp(b.id));
    let subscribers = |t: &Uuid| order.iter().filter(|m| m.topics.contains(t)).count();
    // Each member's fair share: its topics' partitions divided among their subscribers.
    let share: Vec<f64> = order
        .iter()
        .map(|m| {
            m.topics
                .iter()
                .filter_map(|t| {
                    topics
                        .get(t)
                        .map(|n| (*n).max(0) as f64 / subscribers(t) as f64)
                })
                .sum()
        })
        .collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let mut out: Vec<Assignment> = vec![Assignment::new(); order.len()];
    let valid = |m: &AssignorMember, t: &Uuid, p: i32| {
        m.topics.contains(t) && topics.get(t).is_some_and(|n| p >= 0 && p < *n)
    };
    let total: usize = topics
        .iter()
        .filter(|(t, _)| subscribers(t) > 0)
        .map(|(_, n)| (*n).max(0) as usize)
        .sum();
    // 1. Stickiness: keep previous partitions up to the floor of the share.
    let mut leftovers: Vec<Vec<(Uuid, i32)>> = vec![Vec::new(); order.len()];
    for (i, m) in order.iter().enumerate() {
        let floor = (share[i] + 1e-9).floor() as usize;
        for (t, ps) in m.previous.into_iter().flatten() {
            for p in ps {
                if !valid(m, t, *p) || taken.contains(&(*t, *p)) {
                    continue;
                }
                if count(&out[i]) < floor {
                    taken.insert((*t, *p));
                    add(&mut out[i], *t, *p);
                } else {
                    leftovers[i].push((*t, *p));
                }
            }
        }
    }
    // 2. The remainder (members that may hold one more than the floor) goes to previous owners
    // first.
    let floors: usize = share.iter().map(|s| (s + 1e-9).floor() as usize).sum();
    let mut extra = total.saturating_sub(floors);
    for (i, left) in leftovers.iter().enumerate() {
        let ceil = (share[i] - 1e-9).ceil() as usize;
        if extra == 0 {
            break;
        }
        if let Some((t, p)) = left.iter().find(|tp| !taken.contains(tp)) {
            if count(&out[i]) < ceil {
                taken.insert((*t, *p));
                add(&mut out[i], *t, *p);
                extra -= 1;
            }
        }
    }
    // 3. Everything else to the eligible member holding the fewest partitions.
    for (t, n) in topics {
        for p in 0..(*n).max(0) {
            if taken.contains(&(*t, p)) {
                continue;
            }
            let best = order
                .iter()
                .enumerate()
                .filter(|(_, m)| m.topics.contains(t))
                .min_by_key(|(i, _)| (count(&out[*i]), *i))
                .map(|(i, _)| i);
            if let Some(i) = best {
                taken.insert((*t, p));
                add(&mut out[i], *t, p);
            }
        }
    }
    order
        .iter()
        .zip(out)
        .map(|(m, a)| (m.id.to_string(), a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn members<'a>(ids: &[&'a str], topics: &[Uuid]) -> Vec<AssignorMember<'a>> {
        ids.iter()
            .map(|id| AssignorMember {
                id,
                topics: topics.iter().copied().collect(),
                previous: None,
            })
            .collect()
    }

    fn every_partition_once(out: &HashMap<String, Assignment>, topics: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        let want: usize = topics.values().map(|n| *n as usize).sum();
        assert_eq!(seen.len(), want, "every partition assigned");
    }

    #[test]
    fn uniform_balances_and_covers() {
        let topics = BTreeMap::from([(tid(1), 6), (tid(2), 7)]);
        let ms = members(&["a", "b", "c"], &[tid(1), tid(2)]);
        let out = uniform(&ms, &topics);
        every_partition_once(&out, &topics);
        let mut sizes: Vec<usize> = out.values().map(count).collect();
        sizes.sort();
        assert_eq!(sizes, vec![4, 4, 5]);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_leaves_or_joins() {
        let topics = BTreeMap::from([(tid(1), 6)]);
        let ms = members(&["a", "b", "c"], &[tid(1)]);
        let first = uniform(&ms, &topics);
        // c leaves: a and b keep what they had and split c's partitions.
        let ab = vec![
            AssignorMember {
                id: "a",
                topics: BTreeSet::from([tid(1)]),
                previous: first.get("a"),
            },
            AssignorMember {
                id: "b",
                topics: BTreeSet::from([tid(1)]),
                previous: first.get("b"),
            },
        ];
        let second = uniform(&ab, &topics);
        every_partition_once(&second, &topics);
        for id in ["a", "b"] {
            let before = &first[id][&tid(1)];
            let after = &second[id][&tid(1)];
            assert!(before.is_subset(after), "{id} kept {before:?}: {after:?}");
            assert_eq!(after.len(), 3);
        }
        // d joins: each of a, b gives up exactly one partition... to reach 2/2/2.
        let abd = vec![
            AssignorMember {
                id: "a",
                topics: BTreeSet::from([tid(1)]),
                previous: second.get("a"),
            },
            AssignorMember {
                id: "b",
                topics: BTreeSet::from([tid(1)]),
                previous: second.get("b"),
            },
            AssignorMember {
                id: "d",
                topics: BTreeSet::from([tid(1)]),
                previous: None,
            },
        ];
        let third = uniform(&abd, &topics);
        every_partition_once(&third, &topics);
        for id in ["a", "b"] {
            assert!(third[id][&tid(1)].is_subset(&second[id][&tid(1)]));
            assert_eq!(third[id][&tid(1)].len(), 2);
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let topics = BTreeMap::from([(tid(1), 4), (tid(2), 4)]);
        let ms = vec![
            AssignorMember {
                id: "a",
                topics: BTreeSet::from([tid(1)]),
                previous: None,
            },
            AssignorMember {
                id: "b",
                topics: BTreeSet::from([tid(1), tid(2)]),
                previous: None,
            },
        ];
        let out = uniform(&ms, &topics);
        every_partition_once(&out, &topics);
        assert!(
            !out["a"].contains_key(&tid(2)),
            "a is not subscribed to topic 2"
        );
    }

    #[test]
    fn range_gives_contiguous_copartitioned_ranges() {
        let topics = BTreeMap::from([(tid(1), 5), (tid(2), 5)]);
        let ms = members(&["b", "a"], &[tid(1), tid(2)]);
        let out = range(&ms, &topics);
        every_partition_once(&out, &topics);
        assert_eq!(out["a"][&tid(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&tid(1)], BTreeSet::from([3, 4]));
        assert_eq!(out["a"][&tid(2)], out["a"][&tid(1)], "co-partitioned");
    }
}
