//! A queue's delivery state and the changes that make it, as pure data:
//! where each shard's fresh records start (the cursor), and every record
//! received and not yet acknowledged (in flight until its visibility
//! deadline, visible again after it, or a dead letter). A record behind
//! its shard's cursor and not tracked is acknowledged.
//!
//! Every change is an [`Entry`], journaled before it is applied, so the
//! state after a crash is the state the last answered request left.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A record: (shard, offset).
pub type Key = (u32, u64);

/// Where a shard's next fresh record is: its offset and, in a local log,
/// a position hint for reading it without a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub offset: u64,
    pub hint: Option<(u64, u64)>,
}

/// A record received and not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// Where it is in its shard's log (a hint, local logs only).
    pub hint: Option<(u64, u64)>,
    pub arrival_ms: i64,
    /// Receives since it was taken or last restored.
    pub count: u32,
    pub first_ms: i64,
    /// Not visible (in flight) until then, epoch milliseconds.
    pub visible_ms: i64,
    /// A dead letter: received `MaxReceiveCount` times without an ack.
    pub dead: bool,
    /// Bumped by every receive: a receipt handle names the receive it came
    /// from, and only the latest is valid.
    pub serial: u32,
}

/// One change of the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Entry {
    /// A fresh record enters the queue, and its shard's cursor moves past it.
    Take {
        shard: u32,
        offset: u64,
        hint: Option<(u64, u64)>,
        arrival_ms: i64,
        next: Cursor,
    },
    /// Received (from the queue or the dead letters): in flight until
    /// `visible_ms`. `counted` is false for a dead letter's receive.
    Receive {
        shard: u32,
        offset: u64,
        serial: u32,
        counted: bool,
        now_ms: i64,
        visible_ms: i64,
    },
    /// Received `MaxReceiveCount` times and visible again: a dead letter.
    Dead { shard: u32, offset: u64 },
    Visibility {
        shard: u32,
        offset: u64,
        visible_ms: i64,
    },
    /// Acknowledged (or gone with the log's retention): never again.
    Ack { shard: u32, offset: u64 },
    /// A dead letter back in the queue, its receive count reset.
    Restore {
        shard: u32,
        offset: u64,
        visible_ms: i64,
    },
    /// A shard's cursor moved without taking records (retention passed it).
    Skip { shard: u32, next: Cursor },
}

/// The whole state, as a snapshot holds it (`seq`: the last entry in it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub seq: u64,
    pub cursors: BTreeMap<u32, Cursor>,
    #[serde(with = "tracked_list")]
    pub tracked: BTreeMap<Key, Tracked>,
}

impl QueueState {
    /// Applies one change. A change to a record no longer tracked does
    /// nothing.
    pub fn apply(&mut self, e: &Entry) {
        match *e {
            Entry::Take {
                shard,
                offset,
                hint,
                arrival_ms,
                next,
            } => {
                self.tracked.insert(
                    (shard, offset),
                    Tracked {
                        hint,
                        arrival_ms,
                        count: 0,
                        first_ms: 0,
                        visible_ms: 0,
                        dead: false,
                        serial: 0,
                    },
                );
                self.cursors.insert(shard, next);
            }
            Entry::Receive {
                shard,
                offset,
                serial,
                counted,
                now_ms,
                visible_ms,
            } => {
                if let Some(t) = self.tracked.get_mut(&(shard, offset)) {
                    t.serial = serial;
                    t.visible_ms = visible_ms;
                    if counted {
                        t.count += 1;
                        if t.first_ms == 0 {
                            t.first_ms = now_ms;
                        }
                    }
                }
            }
            Entry::Dead { shard, offset } => {
                if let Some(t) = self.tracked.get_mut(&(shard, offset)) {
                    t.dead = true;
                }
            }
            Entry::Visibility {
                shard,
                offset,
                visible_ms,
            } => {
                if let Some(t) = self.tracked.get_mut(&(shard, offset)) {
                    t.visible_ms = visible_ms;
                }
            }
            Entry::Ack { shard, offset } => {
                self.tracked.remove(&(shard, offset));
            }
            Entry::Restore {
                shard,
                offset,
                visible_ms,
            } => {
                if let Some(t) = self.tracked.get_mut(&(shard, offset)) {
                    t.dead = false;
                    t.count = 0;
                    t.visible_ms = visible_ms;
                }
            }
            Entry::Skip { shard, next } => {
                self.cursors.insert(shard, next);
            }
        }
    }

    /// Whether `(shard, offset)` was acknowledged: behind its shard's
    /// cursor and no longer tracked.
    pub fn acknowledged(&self, key: Key) -> bool {
        !self.tracked.contains_key(&key)
            && self.cursors.get(&key.0).is_some_and(|c| key.1 < c.offset)
    }

    /// Live records visible at `now_ms`, oldest deadline first, at most
    /// `limit`; and the dead-letter changes for those that have been
    /// received `max_receive` times (none without dead-letter handling).
    pub fn visible(
        &self,
        now_ms: i64,
        max_receive: Option<u32>,
        limit: usize,
    ) -> (Vec<Key>, Vec<Entry>) {
        let mut ready: Vec<(i64, Key)> = Vec::new();
        let mut dead = Vec::new();
        for (k, t) in &self.tracked {
            if t.dead || t.visible_ms > now_ms {
                continue;
            }
            if max_receive.is_some_and(|m| t.count >= m) {
                dead.push(Entry::Dead {
                    shard: k.0,
                    offset: k.1,
                });
            } else {
                ready.push((t.visible_ms, *k));
            }
        }
        ready.sort_unstable();
        (
            ready.into_iter().take(limit).map(|(_, k)| k).collect(),
            dead,
        )
    }

    /// Dead letters visible at `now_ms`, at most `limit`.
    pub fn visible_dead(&self, now_ms: i64, limit: usize) -> Vec<Key> {
        self.tracked
            .iter()
            .filter(|(_, t)| t.dead && t.visible_ms <= now_ms)
            .map(|(k, _)| *k)
            .take(limit)
            .collect()
    }

    /// Records tracked (in flight, visible again, dead letters).
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// (in flight, dead letters) at `now_ms`.
    pub fn counts(&self, now_ms: i64) -> (usize, usize) {
        let dead = self.tracked.values().filter(|t| t.dead).count();
        let in_flight = self
            .tracked
            .values()
            .filter(|t| !t.dead && t.visible_ms > now_ms)
            .count();
        (in_flight, dead)
    }
}

/// JSON maps need string keys: the tracked records as a list.
mod tracked_list {
    use super::{Key, Tracked};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<Key, Tracked>, s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<(&Key, &Tracked)> = m.iter().collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Key, Tracked>, D::Error> {
        let v: Vec<(Key, Tracked)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(s: &mut QueueState, shard: u32, offset: u64) {
        s.apply(&Entry::Take {
            shard,
            offset,
            hint: None,
            arrival_ms: 1,
            next: Cursor {
                offset: offset + 1,
                hint: None,
            },
        });
    }

    fn receive(s: &mut QueueState, key: Key, now: i64, vis: i64) {
        let serial = s.tracked[&key].serial + 1;
        s.apply(&Entry::Receive {
            shard: key.0,
            offset: key.1,
            serial,
            counted: true,
            now_ms: now,
            visible_ms: now + vis,
        });
    }

    #[test]
    fn a_record_is_redelivered_until_acknowledged_then_never() {
        let mut s = QueueState::default();
        take(&mut s, 0, 0);
        take(&mut s, 0, 1);
        receive(&mut s, (0, 0), 1000, 30_000);
        receive(&mut s, (0, 1), 1000, 30_000);
        assert_eq!(s.visible(2000, Some(6), 10).0, Vec::<Key>::new());
        // The deadline passes: visible again, the oldest deadline first.
        assert_eq!(s.visible(31_000, Some(6), 10).0, vec![(0, 0), (0, 1)]);
        s.apply(&Entry::Ack {
            shard: 0,
            offset: 0,
        });
        assert!(s.acknowledged((0, 0)));
        assert!(!s.acknowledged((0, 1)));
        assert!(!s.acknowledged((0, 2)), "not taken yet");
        assert_eq!(s.visible(31_000, Some(6), 10).0, vec![(0, 1)]);
        assert_eq!(s.tracked[&(0, 1)].first_ms, 1000);
        assert_eq!(s.counts(2000), (1, 0));
    }

    #[test]
    fn max_receives_make_a_dead_letter_and_a_restore_revives_it() {
        let mut s = QueueState::default();
        take(&mut s, 3, 7);
        for i in 0..2 {
            receive(&mut s, (3, 7), i * 10, 5);
        }
        let (ready, dead) = s.visible(100, Some(2), 10);
        assert!(ready.is_empty());
        assert_eq!(
            dead,
            vec![Entry::Dead {
                shard: 3,
                offset: 7
            }]
        );
        // Without dead-letter handling it goes on being delivered.
        assert_eq!(s.visible(100, None, 10).0, vec![(3, 7)]);
        for e in &dead {
            s.apply(e);
        }
        assert_eq!(s.visible_dead(100, 10), vec![(3, 7)]);
        assert_eq!(s.counts(100), (0, 1));
        s.apply(&Entry::Restore {
            shard: 3,
            offset: 7,
            visible_ms: 100,
        });
        assert_eq!(s.tracked[&(3, 7)].count, 0);
        assert_eq!(s.visible(100, Some(2), 10).0, vec![(3, 7)]);
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let mut s = QueueState::default();
        take(&mut s, 1, 5);
        receive(&mut s, (1, 5), 10, 10);
        s.seq = 9;
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<QueueState>(&text).unwrap(), s);
    }
}
