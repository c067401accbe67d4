//! What a table already holds, by log offsets: the exactly-once ledger.
//!
//! Every commit Hydrant makes carries, in its snapshot's summary, the log
//! offsets its data files hold (`hydrant.ranges`: for each source, a
//! stream's shard of one log, the inclusive offset ranges). Read back from
//! the table's snapshots, they say which records are in the table whatever
//! happened to this process: a batch delivered again after a crash (cut
//! differently, perhaps) writes only offsets no snapshot holds, and a
//! commit whose outcome was unknown is found or not by its marker.

use std::collections::{BTreeMap, HashMap};

/// The snapshot summary property holding the offsets a commit added.
pub const RANGES_PROP: &str = "hydrant.ranges";
/// The snapshot summary property naming the writer (the node).
pub const WRITER_PROP: &str = "hydrant.writer";
/// The snapshot summary property holding the commit's own id.
pub const COMMIT_PROP: &str = "hydrant.commit";

/// The source of records: a stream's shard of one log.
pub fn source_key(stream: &str, log_id: &str, shard: u32) -> String {
    format!("{stream}/{log_id}/{shard}")
}

/// Offset ranges by source, each list sorted, disjoint and merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    ranges: BTreeMap<String, Vec<(u64, u64)>>,
}

/// How much of a set of ranges a ledger holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    All,
    None,
    Part,
}

impl Ledger {
    /// The ledger of a table's snapshot summaries. A summary whose
    /// `hydrant.ranges` does not parse is skipped (not Hydrant's).
    pub fn from_summaries<'a>(
        summaries: impl IntoIterator<Item = &'a HashMap<String, String>>,
    ) -> Ledger {
        let mut l = Ledger::default();
        for s in summaries {
            if let Some(r) = s.get(RANGES_PROP).and_then(|v| decode(v).ok()) {
                l.merge(&r);
            }
        }
        l
    }

    /// Every source's ranges.
    pub fn sources(&self) -> &BTreeMap<String, Vec<(u64, u64)>> {
        &self.ranges
    }

    /// Adds `ranges` (by source).
    pub fn merge(&mut self, ranges: &BTreeMap<String, Vec<(u64, u64)>>) {
        for (k, rs) in ranges {
            for &r in rs {
                self.add(k, r);
            }
        }
    }

    /// Adds one inclusive range of `source`.
    pub fn add(&mut self, source: &str, (first, last): (u64, u64)) {
        let list = self.ranges.entry(source.to_string()).or_default();
        list.push((first, last));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(a, b) in list.iter() {
            match merged.last_mut() {
                Some((_, e)) if a <= e.saturating_add(1) => *e = (*e).max(b),
                _ => merged.push((a, b)),
            }
        }
        *list = merged;
    }

    /// The parts of `first..=last` of `source` the ledger does not hold.
    pub fn uncovered(&self, source: &str, (first, last): (u64, u64)) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = first;
        for &(a, b) in self
            .ranges
            .get(source)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if b < next {
                continue;
            }
            if a > last {
                break;
            }
            if a > next {
                out.push((next, a - 1));
            }
            next = b.saturating_add(1);
            if next > last || b == u64::MAX {
                return out;
            }
        }
        if next <= last {
            out.push((next, last));
        }
        out
    }

    /// How much of `ranges` the ledger holds.
    pub fn holds(&self, ranges: &BTreeMap<String, Vec<(u64, u64)>>) -> Held {
        let (mut some, mut all) = (false, true);
        for (k, rs) in ranges {
            for &r in rs {
                let missing: u64 = self.uncovered(k, r).iter().map(|(a, b)| b - a + 1).sum();
                let len = r.1 - r.0 + 1;
                some |= missing < len;
                all &= missing == 0;
            }
        }
        match (all, some) {
            (true, _) => Held::All,
            (false, false) => Held::None,
            (false, true) => Held::Part,
        }
    }
}

/// `hydrant.ranges` as written: `{"source": [[first, last], ...], ...}`.
pub fn encode(ranges: &BTreeMap<String, Vec<(u64, u64)>>) -> String {
    serde_json::to_string(ranges).unwrap_or_default()
}

pub fn decode(s: &str) -> Result<BTreeMap<String, Vec<(u64, u64)>>, serde_json::Error> {
    serde_json::from_str(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_leave_gaps_uncovered() {
        let mut l = Ledger::default();
        l.add("s", (10, 19));
        l.add("s", (30, 39));
        l.add("s", (20, 25));
        assert_eq!(l.uncovered("s", (0, 50)), vec![(0, 9), (26, 29), (40, 50)]);
        assert_eq!(l.uncovered("s", (12, 18)), Vec::<(u64, u64)>::new());
        assert_eq!(l.uncovered("s", (24, 31)), vec![(26, 29)]);
        assert_eq!(l.uncovered("other", (1, 2)), vec![(1, 2)]);
        l.add("s", (26, 29));
        assert_eq!(l.uncovered("s", (0, 50)), vec![(0, 9), (40, 50)]);
    }

    #[test]
    fn holds_tells_all_none_and_part() {
        let mut l = Ledger::default();
        l.add("a", (0, 99));
        let r = |k: &str, x: (u64, u64)| BTreeMap::from([(k.to_string(), vec![x])]);
        assert_eq!(l.holds(&r("a", (10, 20))), Held::All);
        assert_eq!(l.holds(&r("a", (100, 120))), Held::None);
        assert_eq!(l.holds(&r("a", (90, 120))), Held::Part);
        assert_eq!(l.holds(&r("b", (0, 1))), Held::None);
    }

    #[test]
    fn summaries_round_trip_and_foreign_ones_are_skipped() {
        let ranges = BTreeMap::from([("s/log/0".to_string(), vec![(0, 9), (20, 29)])]);
        let mine = HashMap::from([(RANGES_PROP.to_string(), encode(&ranges))]);
        let foreign = HashMap::from([(RANGES_PROP.to_string(), "not json".to_string())]);
        let l = Ledger::from_summaries([&mine, &foreign, &HashMap::new()]);
        assert_eq!(l.uncovered("s/log/0", (0, 30)), vec![(10, 19), (30, 30)]);
    }
}
