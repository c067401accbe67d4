//! Buffering of one shard's records into batches by size or time, Firehose's
//! buffering hints. Pure logic on tokio's clock, so it is tested with paused
//! time; it does no I/O and never decides when the checkpoint moves.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::log::frame::Frame;

/// Records waiting to form one object.
#[derive(Debug, Default)]
pub struct OpenBatch {
    pub records: Vec<Frame>,
    pub bytes: u64,
    /// When the first record was added.
    pub started: Option<Instant>,
}

/// One shard's batcher: an open batch and the closed ones waiting for upload.
#[derive(Debug)]
pub struct Batcher {
    bytes_max: u64,
    /// Bytes the encoding adds per record (a delimiter), counted so that the
    /// uncompressed object, not just the record data, stays within the hint.
    per_record_bytes: u64,
    interval: Duration,
    open: OpenBatch,
    ready: VecDeque<Vec<Frame>>,
}

impl Batcher {
    pub fn new(bytes_max: u64, per_record_bytes: u64, interval: Duration) -> Self {
        Batcher {
            bytes_max,
            per_record_bytes,
            interval,
            open: OpenBatch::default(),
            ready: VecDeque::new(),
        }
    }

    /// Adds a record, closing the open batch first if the record would make it
    /// pass the size hint. A record larger than the hint forms a batch alone.
    pub fn push(&mut self, frame: Frame, now: Instant) {
        let len = frame.data.len() as u64 + self.per_record_bytes;
        if !self.open.records.is_empty() && self.open.bytes + len > self.bytes_max {
            self.close();
        }
        if self.open.records.is_empty() {
            self.open.started = Some(now);
        }
        self.open.bytes += len;
        self.open.records.push(frame);
        if self.open.bytes >= self.bytes_max {
            self.close();
        }
    }

    /// When the open batch must be closed by time, if it holds anything.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.started.map(|s| s + self.interval)
    }

    /// Closes the open batch if its interval has passed.
    pub fn tick(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.close();
        }
    }

    /// Closes the open batch now, whatever its size (shutdown, drain).
    pub fn close(&mut self) {
        let open = std::mem::take(&mut self.open);
        if !open.records.is_empty() {
            self.ready.push_back(open.records);
        }
    }

    /// The next closed batch, oldest first.
    pub fn pop_ready(&mut self) -> Option<Vec<Frame>> {
        self.ready.pop_front()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.open.records.is_empty()
    }

    /// The lowest offset held (open or closed), which the checkpoint must not pass.
    pub fn lowest_offset(&self) -> Option<u64> {
        self.ready
            .front()
            .and_then(|b| b.first())
            .or_else(|| self.open.records.first())
            .map(|f| f.offset)
    }
}

#[cfg(test)]
mod tests;
