//! ON_DEMAND streams scale themselves: a shard whose writes stay over
//! Kinesis's per-shard limit (1 MiB/s or 1,000 records/s) for
//! `kinesis.on_demand_split_secs` is split at the middle of its hash-key
//! range, as long as the stream and the daemon have shards to spare.
//!
//! Puts note what they wrote per shard ([`KinesisStream::note_write`]);
//! every [`WINDOW`] the daemon asks [`Streams::hot_shards`] which shards
//! were over the limit for long enough, and reshards those through the
//! same path as `SplitShard`.

use std::sync::Arc;
use std::time::Duration;

use super::reshard::Reshard;
use super::{KinesisStream, SHARD_WRITE_BYTES_PER_SEC, SHARD_WRITE_RECORDS_PER_SEC, Streams};

/// How often write rates are looked at.
pub const WINDOW: Duration = Duration::from_secs(5);

impl KinesisStream {
    /// Notes `records` of `bytes` written to `shard` (ON_DEMAND streams).
    pub fn note_write(&self, shard: u32, records: u64, bytes: u64) {
        if !self.on_demand() {
            return;
        }
        let mut w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let e = w.entry(shard).or_default();
        e.0 += records;
        e.1 += bytes;
    }

    /// Ends a window: which open shards were over their write limit in it,
    /// and for how many windows in a row.
    fn close_window(&self, window: Duration) -> Vec<(u32, u32)> {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|p| p.into_inner()));
        let secs = window.as_secs_f64().max(0.001);
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        let layout = self.layout();
        hot.retain(|shard, _| layout.map.get(*shard).is_some_and(|s| s.is_open()));
        for s in layout.map.open() {
            let (records, bytes) = writes.get(&s.index).copied().unwrap_or_default();
            let over = records as f64 / secs > SHARD_WRITE_RECORDS_PER_SEC
                || bytes as f64 / secs > SHARD_WRITE_BYTES_PER_SEC;
            if over {
                *hot.entry(s.index).or_default() += 1;
            } else {
                hot.remove(&s.index);
            }
        }
        hot.iter().map(|(s, n)| (*s, *n)).collect()
    }
}

impl Streams {
    /// The splits due now: ON_DEMAND streams' shards over their write limit
    /// for `kinesis.on_demand_split_secs`, each at the middle of its range.
    pub fn hot_shards(&self) -> Vec<(Arc<KinesisStream>, Reshard)> {
        let windows_needed = (self.opts.on_demand_split_after.as_secs_f64() / WINDOW.as_secs_f64())
            .ceil()
            .max(1.0) as u32;
        let mut due = Vec::new();
        for s in self.all() {
            if !s.on_demand() {
                continue;
            }
            let layout = s.layout();
            for (shard, windows) in s.close_window(WINDOW) {
                let Some(info) = layout.map.get(shard) else {
                    continue;
                };
                let new_start = info.hash_start + (info.hash_end - info.hash_start) / 2 + 1;
                if windows >= windows_needed && layout.map.check_split(shard, new_start).is_ok() {
                    due.push((s.clone(), Reshard::Split { shard, new_start }));
                }
            }
        }
        due
    }
}
