//! The fragments of a video stream by offset and time, in memory: rebuilt
//! from the log at start, extended as fragments are persisted, cut as
//! retention deletes segments. `ListFragments` and the timestamp selectors
//! of `GetMedia`, `GetClip` and HLS read it; the bytes stay in the log.

use std::collections::VecDeque;
use std::sync::RwLock;

use super::fragment::{self, Numbering};
use crate::log::{LogError, StreamLog};

/// One fragment, as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub timecode: i64,
    pub producer_ms: i64,
    pub server_ms: i64,
    pub duration_ms: u64,
    /// Bytes of its MKV cluster.
    pub size: u64,
}

/// Which clock a time selector is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Clock {
    Producer,
    Server,
}

impl Entry {
    pub fn at(&self, clock: Clock) -> i64 {
        match clock {
            Clock::Producer => self.producer_ms,
            Clock::Server => self.server_ms,
        }
    }
}

/// A stream's fragments, sorted by offset.
pub struct Index {
    entries: RwLock<VecDeque<Entry>>,
    pub numbering: Numbering,
}

impl Index {
    /// Reads every fragment's description from `log`. Blocking.
    pub fn rebuild(log: &StreamLog) -> Result<Index, LogError> {
        let mut entries = VecDeque::new();
        if let Some(shard) = log.shard(0) {
            let mut reader = shard.reader(shard.oldest_offset());
            loop {
                let batch = reader.read(256, 64 << 20)?;
                if batch.is_empty() {
                    break;
                }
                for r in batch {
                    match fragment::decode(&r.data) {
                        Some(f) => entries.push_back(entry(r.offset, &f.meta, f.cluster.len())),
                        None => {
                            tracing::warn!(
                                offset = r.offset,
                                "a video log record is not a fragment; skipped"
                            )
                        }
                    }
                }
            }
        }
        Ok(Index {
            entries: RwLock::new(entries),
            numbering: Numbering::of_log(log.id()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, VecDeque<Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, VecDeque<Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a persisted fragment (appends are serialized, so offsets grow).
    pub fn push(&self, e: Entry) {
        self.write().push_back(e);
    }

    /// Forgets fragments below `offset` (deleted by retention).
    pub fn forget_before(&self, offset: u64) {
        let mut g = self.write();
        while g.front().is_some_and(|e| e.offset < offset) {
            g.pop_front();
        }
    }

    pub fn get(&self, offset: u64) -> Option<Entry> {
        let g = self.read();
        let i = g.binary_search_by_key(&offset, |e| e.offset).ok()?;
        g.get(i).copied()
    }

    pub fn first(&self) -> Option<Entry> {
        self.read().front().copied()
    }

    pub fn last(&self) -> Option<Entry> {
        self.read().back().copied()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Fragments that start within `[start_ms, end_ms]` on `clock`, in
    /// ingestion order, from the `skip`th on, at most `max`.
    pub fn in_range(
        &self,
        clock: Clock,
        start_ms: i64,
        end_ms: i64,
        skip: usize,
        max: usize,
    ) -> Vec<Entry> {
        self.read()
            .iter()
            .filter(|e| (start_ms..=end_ms).contains(&e.at(clock)))
            .skip(skip)
            .take(max)
            .copied()
            .collect()
    }

    /// The first fragment that starts at or after `ms` on `clock`.
    pub fn first_from(&self, clock: Clock, ms: i64) -> Option<Entry> {
        self.read().iter().find(|e| e.at(clock) >= ms).copied()
    }

    /// The fragment that holds the moment `ms` on `clock`: the newest one
    /// starting at or before it, if it has not ended by then. Fragments
    /// that start on the same millisecond (server clocks stamp a fast
    /// upload's fragments alike) all hold it, and the first of them is
    /// the one returned, so a start at that moment misses none.
    pub fn holding(&self, clock: Clock, ms: i64) -> Option<Entry> {
        let g = self.read();
        let i = g.iter().rposition(|e| e.at(clock) <= ms)?;
        let at = g
            .get(i)
            .filter(|e| e.at(clock) + e.duration_ms as i64 > ms)?
            .at(clock);
        // Back from it over the fragments stamped alike, not the whole index.
        g.range(..=i)
            .rev()
            .take_while(|e| e.at(clock) == at)
            .last()
            .copied()
    }

    /// The fragment after `offset`, if any yet.
    pub fn after(&self, offset: u64) -> Option<Entry> {
        self.read().iter().find(|e| e.offset > offset).copied()
    }
}

/// The index entry of a fragment stored at `offset`.
pub fn entry(offset: u64, meta: &fragment::Meta, cluster_bytes: usize) -> Entry {
    Entry {
        offset,
        timecode: meta.timecode,
        producer_ms: meta.producer_ms,
        server_ms: meta.server_ms,
        duration_ms: meta.duration_ms,
        size: cluster_bytes as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(server_ms: &[i64]) -> Index {
        let entries = server_ms
            .iter()
            .enumerate()
            .map(|(i, &ms)| Entry {
                offset: i as u64,
                timecode: i as i64 * 1000,
                producer_ms: 1_000_000 + i as i64 * 1000,
                server_ms: ms,
                duration_ms: 1000,
                size: 1,
            })
            .collect();
        Index {
            entries: RwLock::new(entries),
            numbering: Numbering::of_log("log-a"),
        }
    }

    #[test]
    fn fragments_stamped_on_one_server_millisecond_are_all_held_from_the_first() {
        // A fast upload: fragments 0-2 arrive on one millisecond, 3 later.
        let ix = index(&[500, 500, 500, 503]);
        let held = |ms| ix.holding(Clock::Server, ms).map(|e| e.offset);
        assert_eq!(held(500), Some(0));
        assert_eq!(held(502), Some(0));
        assert_eq!(held(503), Some(3));
        assert_eq!(held(1502), Some(3));
        assert_eq!(held(1503), None);
        assert_eq!(held(499), None);
        // On the producer clock each fragment holds its own second.
        let p = |ms| ix.holding(Clock::Producer, ms).map(|e| e.offset);
        assert_eq!(p(1_002_500), Some(2));
        assert_eq!(p(1_000_000), Some(0));
    }
}
