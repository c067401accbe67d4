//! A Kinesis stream's shards and their lineage: which shard owns which
//! hash keys, which shards are closed and where, and which shards came from
//! which.
//!
//! A stream starts with `n` shards tiling the 128-bit hash-key space in
//! equal ranges. A split closes one shard and opens two children that share
//! its range; a merge closes two adjacent shards and opens one child over
//! both ranges. A closed shard keeps its records (readable until retention)
//! and its end: the offset its log had reached when it closed, which no
//! record will ever pass. At any moment the open shards tile the space with
//! no gap and no overlap; every put goes to the open shard whose range holds
//! its hash key.
//!
//! This module is the arithmetic only: it changes a map in memory and never
//! touches a log or a file. The stream ([`super::KinesisStream`]) closes the
//! logs, persists the map and serializes changes.

use serde::{Deserialize, Serialize};

use super::position::hash_range;

/// Where a closed shard ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    /// The shard's offsets end here: its last record is `end_offset - 1`.
    pub end_offset: u64,
    /// When it closed, epoch milliseconds.
    pub at_ms: i64,
}

/// One shard of a stream, open or closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The shard's number: `shardId-<index>` and its log's `shard-<index>`.
    pub index: u32,
    /// First and last hash key the shard owns (inclusive), as decimal
    /// strings in JSON: a u128 does not fit JSON's numbers.
    #[serde(with = "decimal")]
    pub hash_start: u128,
    #[serde(with = "decimal")]
    pub hash_end: u128,
    /// The shard this one was split from, or the first of the two merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// The second shard of a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjacent_parent: Option<u32>,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closed>,
}

impl ShardInfo {
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// Its parents: none for a shard the stream started with, one after a
    /// split, two after a merge.
    pub fn parents(&self) -> impl Iterator<Item = u32> + '_ {
        self.parent.into_iter().chain(self.adjacent_parent)
    }

    fn holds(&self, hash: u128) -> bool {
        self.hash_start <= hash && hash <= self.hash_end
    }
}

/// Why a reshard cannot be done, in Kinesis's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshardError {
    /// No shard of that index (`ResourceNotFoundException`).
    #[error("shard {0} does not exist")]
    NoShard(u32),
    /// A closed shard cannot be split or merged (`InvalidArgumentException`).
    #[error("shard {0} has already been merged or split")]
    Closed(u32),
    /// The split key is not strictly inside the shard's range.
    #[error("the new starting hash key is not inside shard {0}'s range")]
    SplitKey(u32),
    /// The two shards do not form one contiguous range.
    #[error("shards {0} and {1} are not adjacent")]
    NotAdjacent(u32, u32),
}

/// Every shard of a stream, by index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    shards: Vec<ShardInfo>,
}

impl ShardMap {
    /// `n` open shards in equal ranges, as Kinesis starts a stream.
    pub fn uniform(n: u32, created_ms: i64) -> ShardMap {
        let shards = (0..n)
            .map(|i| {
                let (hash_start, hash_end) = hash_range(i, n);
                ShardInfo {
                    index: i,
                    hash_start,
                    hash_end,
                    parent: None,
                    adjacent_parent: None,
                    created_ms,
                    closed: None,
                }
            })
            .collect();
        ShardMap { shards }
    }

    /// A map read back from a file, checked: indexes in order, open shards
    /// tiling the hash-key space, parents before their children.
    pub fn checked(self) -> Result<ShardMap, String> {
        for (i, s) in self.shards.iter().enumerate() {
            if s.index as usize != i {
                return Err(format!("shard {} is listed at position {i}", s.index));
            }
            if s.hash_start > s.hash_end {
                return Err(format!("shard {i}'s hash-key range is empty"));
            }
            if let Some(p) = s.parents().find(|p| *p >= s.index) {
                return Err(format!("shard {i} names a later shard {p} as its parent"));
            }
        }
        self.tiling_gap().map_or(Ok(self), |at| {
            Err(format!(
                "the open shards leave hash key {at} without a shard or give it two"
            ))
        })
    }

    /// The first hash key the open shards do not cover exactly once, if any.
    fn tiling_gap(&self) -> Option<u128> {
        let mut next: Option<u128> = Some(0);
        for s in self.open() {
            match next {
                Some(n) if n == s.hash_start => next = s.hash_end.checked_add(1),
                Some(n) => return Some(n),
                None => return Some(s.hash_start),
            }
        }
        next
    }

    /// How many shards the stream has had (the next shard's index).
    pub fn len(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    pub fn get(&self, index: u32) -> Option<&ShardInfo> {
        self.shards.get(index as usize)
    }

    /// Every shard, by index.
    pub fn all(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// The open shards, in hash-key order.
    pub fn open(&self) -> Vec<&ShardInfo> {
        let mut open: Vec<&ShardInfo> = self.shards.iter().filter(|s| s.is_open()).collect();
        open.sort_by_key(|s| s.hash_start);
        open
    }

    pub fn open_count(&self) -> u32 {
        self.shards.iter().filter(|s| s.is_open()).count() as u32
    }

    /// Whether the map is still the one the stream started with.
    pub fn is_initial(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.is_open() && s.parent.is_none())
    }

    /// The shards a shard was split or merged into.
    pub fn children(&self, index: u32) -> Vec<&ShardInfo> {
        self.shards
            .iter()
            .filter(|s| s.parents().any(|p| p == index))
            .collect()
    }

    /// A router for puts: the open shards' ranges, searchable by hash key.
    pub fn router(&self) -> Router {
        Router {
            open: self
                .open()
                .into_iter()
                .map(|s| (s.hash_start, s.index))
                .collect(),
        }
    }

    fn open_shard(&self, index: u32) -> Result<&ShardInfo, ReshardError> {
        let s = self.get(index).ok_or(ReshardError::NoShard(index))?;
        if !s.is_open() {
            return Err(ReshardError::Closed(index));
        }
        Ok(s)
    }

    /// Checks a split of `index` at `new_start` (the first hash key of the
    /// upper child) without making it: Kinesis requires the key to be more
    /// than one past the shard's first key and at most its last.
    pub fn check_split(&self, index: u32, new_start: u128) -> Result<(), ReshardError> {
        let s = self.open_shard(index)?;
        if new_start <= s.hash_start.saturating_add(1) || new_start > s.hash_end {
            return Err(ReshardError::SplitKey(index));
        }
        Ok(())
    }

    /// Splits `index` at `new_start`, closing it at `end_offset`; returns the
    /// two children's indexes (lower range first). Each child must get at
    /// least one key; [`Self::check_split`] is the API's stricter rule,
    /// which uniform scaling need not follow.
    pub fn split(
        &mut self,
        index: u32,
        new_start: u128,
        end_offset: u64,
        now_ms: i64,
    ) -> Result<(u32, u32), ReshardError> {
        let (start, end) = {
            let s = self.open_shard(index)?;
            (s.hash_start, s.hash_end)
        };
        if new_start <= start || new_start > end {
            return Err(ReshardError::SplitKey(index));
        }
        self.close(index, end_offset, now_ms);
        let low = self.push(start, new_start - 1, Some(index), None, now_ms);
        let high = self.push(new_start, end, Some(index), None, now_ms);
        Ok((low, high))
    }

    /// Checks a merge of two open shards whose ranges are contiguous (in
    /// either order) without making it.
    pub fn check_merge(&self, a: u32, b: u32) -> Result<(u128, u128), ReshardError> {
        let (sa, sb) = (self.open_shard(a)?, self.open_shard(b)?);
        if a != b && sa.hash_end.checked_add(1) == Some(sb.hash_start) {
            Ok((sa.hash_start, sb.hash_end))
        } else if a != b && sb.hash_end.checked_add(1) == Some(sa.hash_start) {
            Ok((sb.hash_start, sa.hash_end))
        } else {
            Err(ReshardError::NotAdjacent(a, b))
        }
    }

    /// Merges `a` and `b`, closing them at their end offsets; returns the
    /// child's index. `a` is the child's parent, `b` its adjacent parent.
    pub fn merge(
        &mut self,
        (a, a_end): (u32, u64),
        (b, b_end): (u32, u64),
        now_ms: i64,
    ) -> Result<u32, ReshardError> {
        let (start, end) = self.check_merge(a, b)?;
        self.close(a, a_end, now_ms);
        self.close(b, b_end, now_ms);
        Ok(self.push(start, end, Some(a), Some(b), now_ms))
    }

    fn close(&mut self, index: u32, end_offset: u64, at_ms: i64) {
        if let Some(s) = self.shards.get_mut(index as usize) {
            s.closed = Some(Closed { end_offset, at_ms });
        }
    }

    fn push(
        &mut self,
        hash_start: u128,
        hash_end: u128,
        parent: Option<u32>,
        adjacent_parent: Option<u32>,
        created_ms: i64,
    ) -> u32 {
        let index = self.len();
        self.shards.push(ShardInfo {
            index,
            hash_start,
            hash_end,
            parent,
            adjacent_parent,
            created_ms,
            closed: None,
        });
        index
    }
}

/// One step of a uniform scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Split { shard: u32, new_start: u128 },
    Merge { shard: u32, adjacent: u32 },
}

/// The next split or merge that moves the open shards towards `target`
/// shards of equal ranges (as a new stream of `target` shards has), or None
/// once they are there. Splits come first, at every target boundary inside
/// an open shard; then merges of neighbours within one target range. Applied
/// one by one, the steps end with exactly the target ranges, every shard
/// made by a split or merge of its parents, as Kinesis's `UNIFORM_SCALING`.
pub fn next_uniform_step(map: &ShardMap, target: u32) -> Option<Step> {
    let target = target.max(1);
    let open = map.open();
    // The target ranges' first keys, after the first range's.
    let boundaries: Vec<u128> = (1..target).map(|i| hash_range(i, target).0).collect();
    for s in &open {
        if let Some(&b) = boundaries
            .iter()
            .find(|&&b| b > s.hash_start && b <= s.hash_end)
        {
            return Some(Step::Split {
                shard: s.index,
                new_start: b,
            });
        }
    }
    // No open shard straddles a boundary: each lies within one target
    // range. Merge the first two neighbours that share a range.
    let range_of = |h: u128| boundaries.partition_point(|&b| b <= h);
    open.windows(2).find_map(|w| {
        (range_of(w[0].hash_start) == range_of(w[1].hash_start)).then_some(Step::Merge {
            shard: w[0].index,
            adjacent: w[1].index,
        })
    })
}

/// A stream's shards with the router built from them, replaced whole on
/// every reshard.
#[derive(Debug)]
pub struct Layout {
    pub map: ShardMap,
    pub router: Router,
}

impl Layout {
    pub fn new(map: ShardMap) -> Layout {
        let router = map.router();
        Layout { map, router }
    }
}

/// The shard a put goes to: the open shards' first keys, sorted.
#[derive(Clone, Debug, Default)]
pub struct Router {
    open: Vec<(u128, u32)>,
}

impl Router {
    /// The open shard whose range holds `hash`.
    pub fn route(&self, hash: u128) -> u32 {
        let i = self.open.partition_point(|(start, _)| *start <= hash);
        self.open.get(i.saturating_sub(1)).map_or(0, |(_, s)| *s)
    }
}

impl ShardMap {
    /// The open shard whose range holds `hash`.
    pub fn route(&self, hash: u128) -> Option<u32> {
        self.shards
            .iter()
            .find(|s| s.is_open() && s.holds(hash))
            .map(|s| s.index)
    }
}

/// u128 as a decimal string in JSON.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
