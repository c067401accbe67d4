//! Hash-range splitting and merging, lineage, routing and uniform scaling:
//! the open shards always tile the hash-key space.

use proptest::prelude::*;

use super::*;
use crate::kinesis::position::HASH_KEY_MAX;

fn tiles(map: &ShardMap) -> bool {
    map.clone().checked().is_ok()
}

#[test]
fn a_split_closes_the_parent_and_its_children_share_its_range() {
    let mut m = ShardMap::uniform(2, 1);
    let (s0, e0) = (m.all()[0].hash_start, m.all()[0].hash_end);
    let mid = e0 / 2;
    let (lo, hi) = m.split(0, mid, 42, 7).unwrap();
    assert_eq!((lo, hi), (2, 3));
    assert_eq!(
        m.get(0).unwrap().closed,
        Some(Closed {
            end_offset: 42,
            at_ms: 7
        })
    );
    let (l, h) = (m.get(lo).unwrap(), m.get(hi).unwrap());
    assert_eq!((l.hash_start, l.hash_end), (s0, mid - 1));
    assert_eq!((h.hash_start, h.hash_end), (mid, e0));
    assert_eq!(
        (l.parent, h.parent, l.adjacent_parent),
        (Some(0), Some(0), None)
    );
    assert_eq!(m.open_count(), 3);
    assert!(tiles(&m));
    assert_eq!(m.children(0).len(), 2);
    // A closed shard cannot be split again, nor a key at its edge used.
    assert_eq!(m.split(0, mid, 0, 0), Err(ReshardError::Closed(0)));
    assert_eq!(
        m.check_split(1, m.get(1).unwrap().hash_start),
        Err(ReshardError::SplitKey(1))
    );
    assert_eq!(
        m.check_split(1, m.get(1).unwrap().hash_start + 1),
        Err(ReshardError::SplitKey(1))
    );
    assert!(m.check_split(1, m.get(1).unwrap().hash_end).is_ok());
    assert_eq!(m.check_split(9, 5), Err(ReshardError::NoShard(9)));
}

#[test]
fn a_merge_takes_two_adjacent_shards_in_either_order() {
    let mut m = ShardMap::uniform(3, 1);
    assert_eq!(m.check_merge(0, 2), Err(ReshardError::NotAdjacent(0, 2)));
    assert_eq!(m.check_merge(1, 1), Err(ReshardError::NotAdjacent(1, 1)));
    let child = m.merge((2, 5), (1, 9), 3).unwrap();
    let c = m.get(child).unwrap();
    assert_eq!((c.parent, c.adjacent_parent), (Some(2), Some(1)));
    assert_eq!(c.hash_start, m.get(1).unwrap().hash_start);
    assert_eq!(c.hash_end, HASH_KEY_MAX);
    assert_eq!(m.get(1).unwrap().closed.map(|c| c.end_offset), Some(9));
    assert_eq!(m.get(2).unwrap().closed.map(|c| c.end_offset), Some(5));
    assert!(tiles(&m));
    assert_eq!(m.merge((1, 0), (0, 0), 0), Err(ReshardError::Closed(1)));
}

#[test]
fn a_map_survives_json_with_its_u128_keys() {
    let mut m = ShardMap::uniform(1, 1);
    m.split(0, HASH_KEY_MAX, 3, 4).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains(&format!("\"{HASH_KEY_MAX}\"")), "{json}");
    let back: ShardMap = serde_json::from_str(&json).unwrap();
    assert_eq!(back.checked().unwrap(), m);
}

#[test]
fn a_map_with_a_gap_or_a_forward_parent_is_refused() {
    let mut m = ShardMap::uniform(2, 1);
    m.shards[1].hash_start += 1;
    assert!(m.clone().checked().is_err());
    let mut m = ShardMap::uniform(2, 1);
    m.shards[0].parent = Some(1);
    assert!(m.checked().is_err());
}

#[test]
fn scaling_three_to_five_ends_in_five_equal_ranges() {
    let mut m = ShardMap::uniform(3, 1);
    let mut steps = 0;
    while let Some(step) = next_uniform_step(&m, 5) {
        apply(&mut m, step);
        steps += 1;
        assert!(tiles(&m));
    }
    assert_eq!(m.open_count(), 5);
    let want = ShardMap::uniform(5, 1);
    let got: Vec<(u128, u128)> = m
        .open()
        .iter()
        .map(|s| (s.hash_start, s.hash_end))
        .collect();
    let exp: Vec<(u128, u128)> = want
        .open()
        .iter()
        .map(|s| (s.hash_start, s.hash_end))
        .collect();
    assert_eq!(got, exp);
    // Four splits at the new boundaries, then two merges.
    assert_eq!(steps, 6);
}

fn apply(m: &mut ShardMap, step: Step) {
    match step {
        Step::Split { shard, new_start } => {
            m.split(shard, new_start, 0, 0).unwrap();
        }
        Step::Merge { shard, adjacent } => {
            m.merge((shard, 0), (adjacent, 0), 0).unwrap();
        }
    }
}

/// A random reshard: split a shard at a random key, or merge a random pair
/// of neighbours.
fn random_step(m: &mut ShardMap, pick: usize, key: u128, split: bool) {
    let open: Vec<(u32, u128, u128)> = m
        .open()
        .iter()
        .map(|s| (s.index, s.hash_start, s.hash_end))
        .collect();
    let (i, start, end) = open[pick % open.len()];
    if split || open.len() == 1 {
        let width = end - start;
        if width >= 3 {
            let new_start = start + 2 + key % (width - 1);
            m.split(i, new_start, 0, 0).unwrap();
        }
    } else {
        let j = pick % (open.len() - 1);
        m.merge((open[j].0, 0), (open[j + 1].0, 0), 0).unwrap();
    }
}

proptest! {
    #[test]
    fn the_open_shards_always_tile_and_the_router_agrees(
        n in 1u32..9,
        steps in proptest::collection::vec((any::<usize>(), any::<u128>(), any::<bool>()), 0..40),
        probes in proptest::collection::vec(any::<u128>(), 1..50),
    ) {
        let mut m = ShardMap::uniform(n, 0);
        for (pick, key, split) in steps {
            random_step(&mut m, pick, key, split);
            prop_assert!(tiles(&m));
            // Lineage: every child's range is within its parents' union.
            let last = m.get(m.len() - 1).unwrap();
            let lo = last.parents().map(|p| m.get(p).unwrap().hash_start).min();
            let hi = last.parents().map(|p| m.get(p).unwrap().hash_end).max();
            if let (Some(lo), Some(hi)) = (lo, hi) {
                prop_assert!(lo <= last.hash_start && last.hash_end <= hi);
            }
        }
        let router = m.router();
        for h in probes.into_iter().chain([0, HASH_KEY_MAX]) {
            prop_assert_eq!(Some(router.route(h)), m.route(h));
        }
    }

    #[test]
    fn uniform_scaling_reaches_equal_ranges_from_any_map(
        n in 1u32..9,
        steps in proptest::collection::vec((any::<usize>(), any::<u128>(), any::<bool>()), 0..12),
        factor in 0usize..4,
    ) {
        let mut m = ShardMap::uniform(n, 0);
        for (pick, key, split) in steps {
            random_step(&mut m, pick, key, split);
        }
        let open = m.open_count();
        // Anything from half to double the open count, as Kinesis allows.
        let target = [open.div_ceil(2), open, open + 1, open * 2][factor].max(1);
        let mut guard = 0;
        while let Some(step) = next_uniform_step(&m, target) {
            apply(&mut m, step);
            prop_assert!(tiles(&m));
            guard += 1;
            prop_assert!(guard < 200, "scaling does not end");
        }
        let want: Vec<(u128, u128)> = ShardMap::uniform(target, 0)
            .open().iter().map(|s| (s.hash_start, s.hash_end)).collect();
        let got: Vec<(u128, u128)> = m.open().iter().map(|s| (s.hash_start, s.hash_end)).collect();
        prop_assert_eq!(got, want);
    }
}
