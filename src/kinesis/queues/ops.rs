//! What a queue does with its log and its state: start its cursors, hand
//! records out (visible ones again, then fresh ones), and settle receipt
//! handles (acknowledge, change visibility, restore). Every operation
//! journals its changes before it returns. Blocking: the API calls these
//! on a blocking thread.

use std::sync::atomic::Ordering;

use super::handle::Handle;
use super::state::{Cursor, Entry, Key, QueueState};
use super::{Inner, Queue, Start};
use crate::kinesis::KinesisStream;
use crate::log::LogError;
use crate::log::ShardLog;
use crate::record::Record;

/// A record handed out.
pub struct Received {
    pub handle: String,
    pub shard: u32,
    pub record: Record,
    pub first_ms: i64,
    pub count: u32,
}

/// What a settling request does to each record it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Visibility(u32),
    Restore,
}

/// Why one entry of a settling request failed: (error code, message).
pub type SettleError = (&'static str, String);

/// Fresh records read, and the changes that take them.
type FreshRead = (Vec<(Key, Record)>, Vec<Entry>);

/// The cursors of a new queue: each shard's tip (LATEST), oldest record
/// (TRIM_HORIZON), or first record at or after a time.
pub(super) fn start_cursors(stream: &KinesisStream, start: &Start) -> Result<Vec<Entry>, LogError> {
    let mut out = Vec::new();
    for (i, shard) in stream.log.shards().iter().enumerate() {
        let offset = match start {
            Start::Latest => shard.durable_end(),
            Start::TrimHorizon => shard.oldest_offset(),
            Start::AtTimestamp(ms) => shard.offset_at_time(*ms)?,
        };
        let hint = (offset == shard.durable_end())
            .then(|| shard.tail_position(offset))
            .flatten();
        out.push(Entry::Skip {
            shard: i as u32,
            next: Cursor { offset, hint },
        });
    }
    Ok(out)
}

/// The record at `offset` of a shard, or None once retention removed it.
fn read_one(
    shard: &ShardLog,
    offset: u64,
    hint: Option<(u64, u64)>,
) -> Result<Option<Record>, LogError> {
    if offset < shard.oldest_offset() {
        return Ok(None);
    }
    let mut reader = match hint {
        Some((base, pos)) => shard.reader_at(offset, base, pos),
        None => shard.reader(offset),
    };
    match reader.read(1, usize::MAX) {
        Ok(v) => Ok(v.into_iter().next().filter(|r| r.offset == offset)),
        Err(LogError::Trimmed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Queue {
    /// Hands out up to `limit` records, in flight for `visibility_secs`
    /// (the queue's own when None): from the dead letters, or else those
    /// visible again first, then fresh ones while fewer than the in-flight
    /// bound are tracked.
    pub fn receive(
        &self,
        limit: usize,
        visibility_secs: Option<u32>,
        dead_letters: bool,
    ) -> Result<Vec<Received>, String> {
        let def = self.def();
        let now = chrono::Utc::now().timestamp_millis();
        let visible_ms = now + i64::from(visibility_secs.unwrap_or(def.visibility_secs)) * 1000;
        let mut inner = self.inner();
        let state = &inner.state;
        let mut entries = Vec::new();
        let keys = if dead_letters {
            state.visible_dead(now, limit)
        } else {
            let (keys, dead) = state.visible(now, def.max_receive, limit);
            entries.extend(dead);
            keys
        };
        let mut out: Vec<(Key, Record)> = Vec::new();
        for key in keys {
            let t = &state.tracked[&key];
            let record = match self.stream.log.shard(key.0) {
                Some(s) => read_one(&s, key.1, t.hint).map_err(|e| e.to_string())?,
                None => None,
            };
            match record {
                Some(r) => out.push((key, r)),
                // Past the stream's retention: no longer delivered.
                None => entries.push(Entry::Ack {
                    shard: key.0,
                    offset: key.1,
                }),
            }
        }
        if !dead_letters && out.len() < limit && state.len() < self.in_flight_max {
            let room = (limit - out.len()).min(self.in_flight_max - state.len());
            let (records, taken) = self.fresh(state, room).map_err(|e| e.to_string())?;
            entries.extend(taken);
            out.extend(records);
        }
        let mut received = Vec::with_capacity(out.len());
        let queue = def.id_number();
        for (key, record) in out {
            let (serial, count, first_ms) = match inner.state.tracked.get(&key) {
                Some(t) => (t.serial + 1, t.count, t.first_ms),
                None => (1, 0, 0),
            };
            entries.push(Entry::Receive {
                shard: key.0,
                offset: key.1,
                serial,
                counted: !dead_letters,
                now_ms: now,
                visible_ms,
            });
            let handle = Handle {
                dead_letter: dead_letters,
                queue,
                shard: key.0,
                offset: key.1,
                serial,
            };
            received.push(Received {
                handle: handle.encode(),
                shard: key.0,
                record,
                first_ms: if first_ms == 0 { now } else { first_ms },
                count: if dead_letters { count } else { count + 1 },
            });
        }
        let Inner { journal, state } = &mut *inner;
        journal
            .append(state, &entries)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        if !received.is_empty() {
            // Durable, not yet answered: the records must come back.
            crate::failpoint::hit("queue-received");
        }
        Ok(received)
    }

    /// Up to `room` fresh records from the shards' cursors, and the
    /// changes that take them (and move cursors past what retention removed).
    fn fresh(&self, state: &QueueState, room: usize) -> Result<FreshRead, LogError> {
        let shards = self.stream.log.shards();
        let (mut out, mut entries) = (Vec::new(), Vec::new());
        if shards.is_empty() {
            return Ok((out, entries));
        }
        let first = self.next_shard.fetch_add(1, Ordering::Relaxed);
        for n in 0..shards.len() {
            if out.len() >= room {
                break;
            }
            let i = (first + n) % shards.len();
            let shard = &shards[i];
            // A shard made since the queue was (a reshard's child): all of it.
            let mut cur = state.cursors.get(&(i as u32)).copied().unwrap_or(Cursor {
                offset: 0,
                hint: None,
            });
            let oldest = shard.oldest_offset();
            if cur.offset < oldest {
                cur = Cursor {
                    offset: oldest,
                    hint: None,
                };
                entries.push(Entry::Skip {
                    shard: i as u32,
                    next: cur,
                });
            }
            if cur.offset >= shard.durable_end() {
                continue;
            }
            let mut reader = match cur.hint {
                Some((base, pos)) => shard.reader_at(cur.offset, base, pos),
                None => shard.reader(cur.offset),
            };
            let mut hint = cur.hint;
            while out.len() < room {
                let recs = match reader.read(1, usize::MAX) {
                    Ok(r) => r,
                    Err(LogError::Trimmed { .. }) => break,
                    Err(e) => return Err(e),
                };
                let Some(r) = recs.into_iter().next() else {
                    break;
                };
                let next_hint = reader.resume_point();
                entries.push(Entry::Take {
                    shard: i as u32,
                    offset: r.offset,
                    hint,
                    arrival_ms: r.arrival_ms,
                    next: Cursor {
                        offset: r.offset + 1,
                        hint: next_hint,
                    },
                });
                hint = next_hint;
                out.push(((i as u32, r.offset), r));
            }
        }
        Ok((out, entries))
    }

    /// Settles each receipt handle as `op` says; per handle, Ok or why not.
    pub fn settle(
        &self,
        op: Settle,
        dead_letters: bool,
        handles: &[String],
    ) -> Result<Vec<Result<(), SettleError>>, String> {
        let def = self.def();
        let now = chrono::Utc::now().timestamp_millis();
        let mut inner = self.inner();
        let mut entries = Vec::new();
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            let r = check(&inner.state, &def.id_number(), h, dead_letters, op).map(|key| {
                let (shard, offset) = key?;
                Some(match op {
                    Settle::Ack => Entry::Ack { shard, offset },
                    Settle::Visibility(secs) => Entry::Visibility {
                        shard,
                        offset,
                        visible_ms: now + i64::from(secs) * 1000,
                    },
                    Settle::Restore => Entry::Restore {
                        shard,
                        offset,
                        visible_ms: now,
                    },
                })
            });
            results.push(match r {
                Ok(Some(e)) => {
                    entries.push(e);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            });
        }
        let Inner { journal, state } = &mut *inner;
        journal
            .append(state, &entries)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        if op == Settle::Ack && !entries.is_empty() {
            // Durable, not yet answered: the records must never come back.
            crate::failpoint::hit("queue-acknowledged");
        }
        Ok(results)
    }
}

/// The record a handle names if `op` may act on it now: Some(key) to
/// change, None when there is nothing to do (an acknowledgement repeated).
fn check(
    state: &QueueState,
    queue: &u128,
    raw: &str,
    dead_letters: bool,
    op: Settle,
) -> Result<Option<Key>, SettleError> {
    let invalid = |m: String| ("InvalidArgumentException", m);
    let h = Handle::decode(raw, *queue).map_err(|why| invalid(format!("ReceiptHandle {why}")))?;
    if h.dead_letter != dead_letters {
        return Err(invalid(if h.dead_letter {
            "ReceiptHandle is a dead letter's: use the dead-letter operations".into()
        } else {
            "ReceiptHandle is not a dead letter's".into()
        }));
    }
    let key = (h.shard, h.offset);
    let Some(t) = state.tracked.get(&key) else {
        if op == Settle::Ack && state.acknowledged(key) {
            return Ok(None);
        }
        return Err(invalid(
            "ReceiptHandle has expired: the record was acknowledged or is no longer held".into(),
        ));
    };
    if t.serial != h.serial {
        return Err(invalid(
            "ReceiptHandle has expired: the record was received again since".into(),
        ));
    }
    if t.dead != dead_letters {
        return Err(invalid(if t.dead {
            "the record became a dead letter since it was received".into()
        } else {
            "the record is no longer a dead letter".into()
        }));
    }
    Ok(Some(key))
}
