//! Buffering of one shard's records into batches by size or time, Firehose's
//! buffering hints, one open batch per partition. Pure logic on tokio's
//! clock, so it is tested with paused time; it does no I/O and never decides
//! when the checkpoint moves.
//!
//! Without dynamic partitioning there is a single partition (`None`). With
//! it, each rendered prefix has its own open batch; two bounds keep memory
//! in check, and reaching either closes the oldest open partition (the one
//! whose first record came first): the number of open partitions and the
//! bytes they hold together.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::log::frame::{read_u32, read_u64};
use crate::record::Record;

mod rows;
pub use rows::{RowOf, Rows, RowsPiece};

/// A partition: the prefix its records go under, or `None` for a stream
/// without dynamic partitioning.
pub type PartitionKey = Option<Arc<str>>;

/// What a closed batch is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Deliver under the partition's prefix (or the stream's, for `None`).
    Deliver(PartitionKey),
    /// Records bound for the error output as `error_type` (they could not
    /// be transformed or partitioned), each with its reason.
    Failed {
        error_type: &'static str,
        reasons: Vec<String>,
    },
    /// Source records, as read before the transform, for a backup of all
    /// source data.
    Backup,
}

/// A closed batch, waiting for upload. A partition's packed records stay
/// packed until the batch is taken for upload: every partition of a shard
/// closes at the same tick, and the batches wait their turn to be encoded.
#[derive(Debug)]
pub struct Ready {
    records: OpenRecords,
    pub route: Route,
    oldest_arrival: Option<i64>,
}

impl Ready {
    fn new(records: Vec<Record>, route: Route) -> Ready {
        Ready {
            oldest_arrival: records.iter().map(|f| f.arrival_ms).min(),
            records: OpenRecords::Frames(records),
            route,
        }
    }

    pub fn first_offset(&self) -> Option<u64> {
        self.records.first_offset()
    }

    /// The earliest arrival (epoch ms) among its records.
    pub fn oldest_arrival(&self) -> Option<i64> {
        self.oldest_arrival
    }

    /// Whether its records were copied and packed: taking them out
    /// ([`Ready::into_parts`]) is then work on every record.
    pub fn is_packed(&self) -> bool {
        matches!(self.records, OpenRecords::Packed(_))
    }

    /// The records (or their rows, already decoded), in the order they
    /// came, and what they are for.
    pub fn into_contents(self) -> (Contents, Route) {
        let contents = match self.records {
            OpenRecords::Rows(rows) => Contents::Rows(rows),
            records => Contents::Records(records.into_frames()),
        };
        (contents, self.route)
    }

    /// The records, in the order they came, and what they are for; a batch
    /// of rows has none.
    #[cfg(test)]
    pub fn into_parts(self) -> (Vec<Record>, Route) {
        match self.into_contents() {
            (Contents::Records(records), route) => (records, route),
            (Contents::Rows(_), route) => (Vec::new(), route),
        }
    }
}

/// What a closed batch holds.
#[derive(Debug)]
pub enum Contents {
    Records(Vec<Record>),
    /// Rows decoded into the stream's Parquet schema, with their records'
    /// offsets ([`Batcher::push_rows_to`]).
    Rows(Rows),
}

/// Records waiting to form one object.
#[derive(Debug)]
struct OpenBatch {
    records: OpenRecords,
    /// What its records take in memory, counted against
    /// `PartitionLimits::open_bytes_max`: packed, their bytes and headers.
    held: u64,
    bytes: u64,
    /// When the first record was added.
    started: Instant,
    /// Opening order, the key of `Batcher::order`.
    seq: u64,
    /// The earliest arrival among `records` (epoch ms).
    oldest_arrival: i64,
}

/// A batch's records, while it is open and, closed, until upload takes them.
#[derive(Debug)]
enum OpenRecords {
    /// Where they were read: a single partition's records lie together in
    /// the read buffers, so holding them there costs nothing.
    Frames(Vec<Record>),
    /// Copied ([`PartitionLimits::copy_records`]) and packed.
    Packed(Packed),
    /// Decoded rows ([`Batcher::push_rows_to`]).
    Rows(Rows),
}

impl OpenRecords {
    fn len(&self) -> usize {
        match self {
            OpenRecords::Frames(v) => v.len(),
            OpenRecords::Packed(p) => p.count,
            OpenRecords::Rows(r) => r.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn first_offset(&self) -> Option<u64> {
        match self {
            OpenRecords::Frames(v) => v.first().map(|f| f.offset),
            OpenRecords::Packed(p) => p.first_offset,
            OpenRecords::Rows(r) => r.first_offset(),
        }
    }

    fn into_frames(self) -> Vec<Record> {
        match self {
            OpenRecords::Frames(mut v) => {
                // A closed batch is held until delivered: give back what its
                // vector grew past it (glibc shrinks large blocks in place).
                if v.capacity() > v.len() + v.len() / 8 {
                    v.shrink_to_fit();
                }
                v
            }
            OpenRecords::Packed(p) => p.into_frames(),
            // Rows are taken whole (`Ready::into_contents`), never as frames.
            OpenRecords::Rows(_) => Vec::new(),
        }
    }
}

/// Bytes before each packed record's key: offset, arrival, key and data
/// lengths.
const PACKED_HEADER: usize = 8 + 8 + 4 + 4;
/// A partition holding less than this packs into the heap, in blocks that
/// grow with it (4 KiB to 16 KiB)...
const HEAP_HELD_MAX: u64 = 64 << 10;
/// ...and beyond it into blocks of their own pages.
const MAPPED_BLOCK: usize = 1 << 20;

/// An open partition's own copies of its records, one after another in
/// blocks, each behind a small header. A partition holds its records for up
/// to the buffering interval and many are open at once, so what each record
/// costs while held counts: here its bytes and 24 more, where a [`Record`] of
/// its own would be 80 more and a vector of them grows by doubling. The
/// frames are made when the batch closes, pointing into the same blocks.
#[derive(Debug, Default)]
struct Packed {
    blocks: Vec<Block>,
    count: usize,
    first_offset: Option<u64>,
}

impl Packed {
    /// Copies the record in; `held` is the batch's bytes so far, which
    /// sizes the next block. Returns the bytes it took.
    fn push(&mut self, f: &Record, held: u64) -> u64 {
        let need = PACKED_HEADER + f.key.len() + f.data.len();
        let fits = self.blocks.last().is_some_and(|b| b.room() >= need);
        if !fits {
            self.blocks.push(Block::new(need, held));
        }
        if let Some(b) = self.blocks.last_mut() {
            // Frames bound both lengths far below u32::MAX (`frame::BODY_BYTES_MAX`).
            b.put(&[
                &f.offset.to_le_bytes(),
                &f.arrival_ms.to_le_bytes(),
                &(f.key.len() as u32).to_le_bytes(),
                &(f.data.len() as u32).to_le_bytes(),
                &f.key,
                &f.data,
            ]);
        }
        self.count += 1;
        self.first_offset.get_or_insert(f.offset);
        need as u64
    }

    /// The records as frames, in the order they were pushed.
    fn into_frames(self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.count);
        for block in self.blocks {
            let block = block.freeze();
            let mut at = 0;
            while let (Some(offset), Some(arrival_ms), Some(key_len), Some(data_len)) = (
                read_u64(&block, at),
                read_u64(&block, at + 8),
                read_u32(&block, at + 16),
                read_u32(&block, at + 20),
            ) {
                let (arrival_ms, key_len, data_len) =
                    (arrival_ms as i64, key_len as usize, data_len as usize);
                let key_at = at + PACKED_HEADER;
                let data_at = key_at + key_len;
                at = data_at + data_len;
                out.push(Record {
                    offset,
                    arrival_ms,
                    key: block.slice(key_at..data_at),
                    data: block.slice(data_at..at),
                });
            }
        }
        out
    }
}

/// One block of a [`Packed`] partition.
///
/// Open partitions' blocks live for up to the buffering interval, closing
/// in no order, between the read buffers and encoded objects that come and
/// go around them. From the heap, freed blocks leave holes that the
/// allocator keeps (a run of W2 measured a third of the daemon's memory as
/// free heap). A large partition's blocks are therefore pages of their own,
/// given back to the system whole when the batch is delivered, and only
/// the pages written are ever resident, so a block can be large.
#[derive(Debug)]
enum Block {
    Heap(Vec<u8>),
    Mapped { map: memmap2::MmapMut, len: usize },
}

impl Block {
    fn new(need: usize, held: u64) -> Block {
        if held >= HEAP_HELD_MAX {
            // Without a mapping (the system's limit on them reached), the heap.
            if let Ok(map) = memmap2::MmapMut::map_anon(need.max(MAPPED_BLOCK)) {
                return Block::Mapped { map, len: 0 };
            }
        }
        let size = (held as usize / 4).clamp(4 << 10, 16 << 10);
        Block::Heap(Vec::with_capacity(need.max(size)))
    }

    fn room(&self) -> usize {
        match self {
            Block::Heap(v) => v.capacity() - v.len(),
            Block::Mapped { map, len } => map.len() - len,
        }
    }

    /// Appends `parts`, which [`Block::room`] has checked fit.
    fn put(&mut self, parts: &[&[u8]]) {
        match self {
            Block::Heap(v) => parts.iter().for_each(|p| v.extend_from_slice(p)),
            Block::Mapped { map, len } => {
                for p in parts {
                    if let Some(dst) = map.get_mut(*len..*len + p.len()) {
                        dst.copy_from_slice(p);
                        *len += p.len();
                    }
                }
            }
        }
    }

    /// The block's bytes, shared by the frames that point into it.
    fn freeze(self) -> Bytes {
        match self {
            Block::Heap(mut v) => {
                if v.capacity() > v.len() + v.len() / 8 {
                    v.shrink_to_fit();
                }
                Bytes::from(v)
            }
            Block::Mapped { map, len } => Bytes::from_owner(map).slice(..len),
        }
    }
}

/// Bounds on a shard's open partitions.
#[derive(Debug, Clone, Copy)]
pub struct PartitionLimits {
    pub open_max: usize,
    pub open_bytes_max: u64,
    /// Copy each record into its partition's own memory. A record read from
    /// the log shares a 1 MiB read buffer with its neighbours; when they go
    /// to other partitions, that buffer lives until the last of them is
    /// flushed, so partitions would hold many times `open_bytes_max`.
    pub copy_records: bool,
}

impl PartitionLimits {
    /// A single partition: only the size hint bounds it, and its records
    /// are contiguous in the read buffers, so it keeps them there.
    pub const SINGLE: PartitionLimits = PartitionLimits {
        open_max: 1,
        open_bytes_max: u64::MAX,
        copy_records: false,
    };
}

/// One shard's batcher: the open batches and the closed ones waiting for upload.
#[derive(Debug)]
pub struct Batcher {
    bytes_max: u64,
    /// Bytes the encoding adds per record (a delimiter), counted so that the
    /// uncompressed object, not just the record data, stays within the hint.
    per_record_bytes: u64,
    interval: Duration,
    limits: PartitionLimits,
    /// Keyed with foldhash, not SipHash: looked up once or twice per record,
    /// and the open partitions are bounded, so a flood of colliding keys can
    /// cost no more than a few thousand entries' worth.
    open: foldhash::HashMap<PartitionKey, OpenBatch>,
    /// Open partitions by opening order; the first is the oldest.
    order: BTreeMap<u64, PartitionKey>,
    next_seq: u64,
    open_bytes: u64,
    ready: VecDeque<Ready>,
    /// Partitions closed early because a bound was reached.
    evictions: u64,
    /// Records in the last batch closed by size: a single partition's next
    /// batch reserves about as many, instead of doubling its way there (a
    /// batch of small records is a vector of tens of thousands, and doubling
    /// leaves up to half of it unused while the batch is held).
    last_full_count: usize,
}

impl Batcher {
    pub fn new(bytes_max: u64, per_record_bytes: u64, interval: Duration) -> Self {
        Self::with_limits(
            bytes_max,
            per_record_bytes,
            interval,
            PartitionLimits::SINGLE,
        )
    }

    pub fn with_limits(
        bytes_max: u64,
        per_record_bytes: u64,
        interval: Duration,
        limits: PartitionLimits,
    ) -> Self {
        Batcher {
            bytes_max,
            per_record_bytes,
            interval,
            limits: PartitionLimits {
                open_max: limits.open_max.max(1),
                open_bytes_max: limits.open_bytes_max.max(1),
                copy_records: limits.copy_records,
            },
            open: foldhash::HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            open_bytes: 0,
            ready: VecDeque::new(),
            evictions: 0,
            last_full_count: 0,
        }
    }

    /// Adds a record to the stream's only partition.
    pub fn push(&mut self, frame: Record, now: Instant) {
        self.push_to(None, frame, now);
    }

    /// Adds a record to its partition, closing that partition's batch first
    /// if the record would make it pass the size hint. A record larger than
    /// the hint forms a batch alone.
    pub fn push_to(&mut self, key: PartitionKey, frame: Record, now: Instant) {
        let len = self.record_bytes(&frame);
        self.open_for(&key, len, now, false);
        let full = self.append(&key, frame, len);
        self.settle(&key, full);
    }

    /// Adds records that must stay in one batch (the user records of one KPL
    /// aggregate bound for one partition, which share an offset), as
    /// [`Batcher::push_to`] adds one: the hint closes the batch before them
    /// or after them, never between them, so no two batches of a partition
    /// hold records of the same offset.
    pub fn push_group_to(&mut self, key: PartitionKey, frames: Vec<Record>, now: Instant) {
        let len = frames.iter().map(|f| self.record_bytes(f)).sum();
        self.open_for(&key, len, now, false);
        let mut full = false;
        for f in frames {
            let len = self.record_bytes(&f);
            full = self.append(&key, f, len);
        }
        self.settle(&key, full);
    }

    /// What a record counts toward the size hint: its data and what the
    /// encoding adds to it.
    fn record_bytes(&self, frame: &Record) -> u64 {
        frame.data.len() as u64 + self.per_record_bytes
    }

    /// Makes room in `key`'s partition for `len` more bytes: closes its
    /// batch if they would pass the hint (or it holds records where `rows`
    /// are to come, or the other way round), and opens one if it has none
    /// (closing the oldest partitions while too many are open).
    fn open_for(&mut self, key: &PartitionKey, len: u64, now: Instant, rows: bool) {
        match self.open.get(key) {
            Some(b) if b.bytes + len > self.bytes_max => self.close_one(key),
            Some(b) if matches!(b.records, OpenRecords::Rows(_)) != rows => self.close_one(key),
            Some(_) => return,
            None => {}
        }
        while self.open.len() >= self.limits.open_max {
            if !self.close_oldest() {
                break;
            }
            self.evictions += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        let expected = if self.limits.open_max == 1 {
            self.last_full_count + self.last_full_count / 16
        } else {
            0
        };
        self.open.insert(
            key.clone(),
            OpenBatch {
                records: if rows {
                    OpenRecords::Rows(Rows::default())
                } else if self.limits.copy_records {
                    OpenRecords::Packed(Packed::default())
                } else {
                    OpenRecords::Frames(Vec::with_capacity(expected))
                },
                bytes: 0,
                held: 0,
                started: now,
                seq,
                oldest_arrival: i64::MAX,
            },
        );
    }

    /// Adds a record of `len` bytes to `key`'s open batch; true when the
    /// batch reached the hint with it.
    fn append(&mut self, key: &PartitionKey, frame: Record, len: u64) -> bool {
        let Some(b) = self.open.get_mut(key) else {
            return false;
        };
        b.oldest_arrival = b.oldest_arrival.min(frame.arrival_ms);
        let held = match &mut b.records {
            OpenRecords::Frames(v) => {
                v.push(frame);
                len
            }
            OpenRecords::Packed(p) => p.push(&frame, b.bytes),
            // Never: `open_for` opened the batch for records.
            OpenRecords::Rows(_) => return false,
        };
        b.bytes += len;
        b.held += held;
        self.open_bytes += held;
        b.bytes >= self.bytes_max
    }

    /// Adds a partition's rows from one read chunk, as [`Batcher::push_to`]
    /// adds their records one by one: the size hint closes the batch before
    /// a row that would pass it or after the row that reaches it. What the
    /// rows hold in memory counts toward the open partitions' bound, and
    /// never less than their records would packed.
    pub fn push_rows_to(&mut self, key: PartitionKey, piece: RowsPiece, now: Instant) {
        let held_per_row = piece.held_per_row();
        let n = piece.records.len().min(piece.batch.num_rows());
        // The piece whole where it all goes to one batch, as it usually does:
        // a slice would make new arrays of the same buffers, and the piece's
        // own be freed at once.
        let whole = n == piece.batch.num_rows();
        let mut batch = Some(piece.batch);
        let per_record = self.per_record_bytes;
        let len_of = |i: usize| {
            piece
                .records
                .get(i)
                .map_or(0, |r| u64::from(r.bytes) + per_record)
        };
        let mut start = 0;
        while start < n {
            self.open_for(&key, len_of(start), now, true);
            let Some(b) = self.open.get_mut(&key) else {
                return;
            };
            // Rows up to the one that reaches the hint, or before the one
            // that would pass it.
            let (mut end, mut bytes, mut full) = (start, b.bytes, false);
            while end < n {
                let len = len_of(end);
                if end > start && bytes + len > self.bytes_max {
                    break;
                }
                bytes += len;
                end += 1;
                if bytes >= self.bytes_max {
                    full = true;
                    break;
                }
            }
            let records = piece.records.get(start..end).unwrap_or_default();
            // What the rows take, but never less than their records would
            // packed: the bound holds as many records either way.
            let packed: u64 = records
                .iter()
                .map(|r| u64::from(r.bytes) + PACKED_HEADER as u64)
                .sum();
            let held = (held_per_row * (end - start) as u64).max(packed);
            let rows_of = if whole && start == 0 && end == n {
                batch.take()
            } else {
                batch.as_ref().map(|all| all.slice(start, end - start))
            };
            if let (OpenRecords::Rows(rows), Some(rows_of)) = (&mut b.records, rows_of) {
                rows.push(rows_of, records);
            }
            if let Some(oldest) = records.iter().map(|r| r.arrival_ms).min() {
                b.oldest_arrival = b.oldest_arrival.min(oldest);
            }
            b.held += held;
            self.open_bytes += held;
            b.bytes = bytes;
            self.settle(&key, full);
            start = end;
        }
    }

    /// Closes `key`'s batch if it reached the hint (`full`, as
    /// [`Batcher::append`] said), then the oldest partitions while the open
    /// ones hold too much.
    fn settle(&mut self, key: &PartitionKey, full: bool) {
        if full && let Some(b) = self.open.get(key) {
            self.last_full_count = b.records.len();
            self.close_one(key);
        }
        while self.open_bytes > self.limits.open_bytes_max {
            if !self.close_oldest() {
                break;
            }
            self.evictions += 1;
        }
    }

    /// Queues records that go to the error output, already closed.
    pub fn push_failed(&mut self, error_type: &'static str, failed: Vec<(Record, String)>) {
        if failed.is_empty() {
            return;
        }
        let (records, reasons) = failed.into_iter().unzip();
        self.ready.push_back(Ready::new(
            records,
            Route::Failed {
                error_type,
                reasons,
            },
        ));
    }

    /// Queues source records for the backup, already closed.
    pub fn push_backup(&mut self, records: Vec<Record>) {
        if !records.is_empty() {
            self.ready.push_back(Ready::new(records, Route::Backup));
        }
    }

    /// When the oldest open batch must be closed by time, if any is open.
    pub fn deadline(&self) -> Option<Instant> {
        let (_, key) = self.order.first_key_value()?;
        self.open.get(key).map(|b| b.started + self.interval)
    }

    /// Closes every open batch whose interval has passed.
    pub fn tick(&mut self, now: Instant) {
        while self.deadline().is_some_and(|d| d <= now) {
            if !self.close_oldest() {
                break;
            }
        }
    }

    /// Closes every open batch now, whatever its size (shutdown, drain).
    pub fn close(&mut self) {
        while self.close_oldest() {}
    }

    fn close_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        if let Some(b) = self.open.remove(&key) {
            self.finish(key, b);
        }
        true
    }

    fn close_one(&mut self, key: &PartitionKey) {
        if let Some(b) = self.open.remove(key) {
            self.order.remove(&b.seq);
            self.finish(key.clone(), b);
        }
    }

    fn finish(&mut self, key: PartitionKey, b: OpenBatch) {
        self.open_bytes = self.open_bytes.saturating_sub(b.held);
        if !b.records.is_empty() {
            self.ready.push_back(Ready {
                records: b.records,
                route: Route::Deliver(key),
                oldest_arrival: Some(b.oldest_arrival),
            });
        }
    }

    /// The next closed batch, oldest first.
    pub fn pop_ready(&mut self) -> Option<Ready> {
        self.ready.pop_front()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.open.is_empty()
    }

    /// Partitions open now.
    pub fn open_partitions(&self) -> usize {
        self.open.len()
    }

    /// Partitions closed before their time or size because a bound was
    /// reached, since the start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The earliest arrival (epoch ms) among the records held.
    pub fn oldest_arrival(&self) -> Option<i64> {
        let ready = self.ready.iter().filter_map(Ready::oldest_arrival);
        let open = self
            .open
            .values()
            .filter(|b| !b.records.is_empty())
            .map(|b| b.oldest_arrival);
        ready.chain(open).min()
    }

    /// The lowest offset held (open or closed), which the checkpoint must not
    /// pass. Partitions interleave, so every batch's first record counts.
    pub fn lowest_offset(&self) -> Option<u64> {
        let ready = self.ready.iter().filter_map(Ready::first_offset);
        let open = self.open.values().filter_map(|b| b.records.first_offset());
        ready.chain(open).min()
    }
}

#[cfg(test)]
mod tests;
