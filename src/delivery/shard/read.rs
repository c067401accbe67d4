//! Reading a shard's durable records and preparing them for batching:
//! KPL aggregates read from a Kinesis stream are taken apart into their
//! user records, then the transform and the partitioner run, all beside the
//! read, off the async runtime. A read never moves the checkpoint; a read
//! error reopens the log where it stopped (or at the oldest record, if the
//! log was trimmed under it) and never skips records the log still has.
//!
//! The user records of one aggregate share its offset. Each partition gets
//! them in one batch ([`Batcher::push_group_to`]), so no two batches of a
//! partition share an offset, and the checkpoint, which never passes the
//! first offset of a batch still held, stays at the aggregate until every
//! batch holding its user records is confirmed.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use super::ShardLoop;
use super::decoded::{DecodeOnce, Decoded};
use crate::delivery::StreamContext;
use crate::delivery::batcher::{Batcher, PartitionKey};
use crate::kinesis::kpl;
use crate::log::{LogError, ShardLog, ShardReader};
use crate::metrics::{Metrics, ShardLabel};
use crate::record::Record;
use crate::route::partition::{Partitioner, RouteScratch};
use crate::transform::Transform;

/// Records and bytes taken from the log in one blocking read.
pub(super) const READ_RECORDS_MAX: usize = 10_000;
pub(super) const READ_BYTES_MAX: usize = 4 << 20;
/// Records a read's vectors may keep room for between reads. A chunk of
/// small user records taken out of KPL aggregates can grow them far past a
/// chunk of ordinary records (at most [`READ_RECORDS_MAX`]); past this they
/// give back all but an ordinary chunk's room.
const KEPT_RECORDS_MAX: usize = 4 * READ_RECORDS_MAX;

/// What happens next to a record read from the log.
#[derive(Debug, PartialEq)]
enum Step {
    /// Batch it, under this partition's prefix (None: the stream's).
    Deliver(PartitionKey),
    /// The transform dropped it.
    Dropped,
    /// The transform failed it (the frame is the original record).
    TransformFailed(String),
    /// It cannot be partitioned (the frame is the transformed record).
    PartitionFailed(String),
    /// A KPL aggregate that cannot be taken apart (the frame is the
    /// aggregate as read).
    Corrupt(String),
}

/// The vectors a shard's reads go through, kept from one read to the next.
#[derive(Default)]
pub(super) struct ReadBuffers {
    frames: Vec<Record>,
    /// Where aggregates are taken apart into, then swapped with `frames`.
    spare: Vec<Record>,
    prepared: Vec<(Record, Step)>,
}

impl ReadBuffers {
    /// Gives back the room that a chunk of many user records took (the
    /// vectors are empty between reads).
    fn trim(&mut self) {
        for v in [&mut self.frames, &mut self.spare] {
            if v.capacity() > KEPT_RECORDS_MAX {
                v.shrink_to(READ_RECORDS_MAX);
            }
        }
        if self.prepared.capacity() > KEPT_RECORDS_MAX {
            self.prepared.shrink_to(READ_RECORDS_MAX);
        }
    }
}

/// How the records of one chunk went, for the metrics and the error output.
#[derive(Default)]
struct Tally {
    ok: u64,
    dropped: u64,
    corrupt: u64,
    untransformed: Vec<(Record, String)>,
    unpartitioned: Vec<(Record, String)>,
}

impl Tally {
    /// Notes what became of a record; the record and its partition if it
    /// is to be batched.
    fn note(&mut self, f: Record, step: Step) -> Option<(PartitionKey, Record)> {
        match step {
            Step::Deliver(prefix) => {
                self.ok += 1;
                return Some((prefix, f));
            }
            Step::PartitionFailed(why) => self.unpartitioned.push((f, why)),
            Step::TransformFailed(why) => self.untransformed.push((f, why)),
            Step::Corrupt(why) => {
                self.corrupt += 1;
                self.untransformed.push((f, why));
            }
            Step::Dropped => self.dropped += 1,
        }
        None
    }
}

impl ShardLoop<'_> {
    /// Reads the next chunk of durable records, prepares them and batches
    /// them, all off the runtime. After a read error, waits a second and
    /// reads again. Break: delivery of this shard stops (a hard stop, or the
    /// read task failed).
    pub(super) async fn read(&mut self) -> ControlFlow<()> {
        let Some(mut rd) = self.reader.take() else {
            return ControlFlow::Break(());
        };
        let mut bufs = std::mem::take(&mut self.read_bufs);
        // The batcher goes with the read and comes back with it (the loop
        // awaits the read and touches no batch meanwhile); an empty one
        // holds its place.
        let mut batcher = std::mem::replace(&mut self.batcher, Batcher::new(0, 0, Duration::ZERO));
        let part = self.partitioner.clone();
        let transform = self.ctx.transform.clone();
        let backs_up_sources = self.backs_up_sources;
        let deaggregates = self.ctx.deaggregates();
        let decode_once = self.decode_once.clone();
        let batching = Batching {
            ctx: self.ctx.clone(),
            shard_label: self.shard_label.clone(),
            partitioned: self.partitioner.is_some(),
        };
        let now = Instant::now();
        let res = crate::delivery::background(move || {
            // Taking aggregates apart, transforming, partitioning and
            // batching are CPU work on every record: done here, off the
            // runtime (whose threads answer producers), beside the read.
            let r = rd
                .read_into(&mut bufs.frames, READ_RECORDS_MAX, READ_BYTES_MAX)
                .map(|()| {
                    if let (Some(d), Some(p)) = (decode_once.as_deref(), part.as_deref())
                        && let Some(decoded) = decode(d, p, &bufs.frames, &batching)
                    {
                        let read_to = bufs.frames.last().map(|f| f.offset + 1);
                        bufs.frames.clear();
                        return batching.batch_decoded(&mut batcher, decoded, read_to, now);
                    }
                    let (sources, took, user_records) = prepare_read(
                        &mut bufs,
                        deaggregates,
                        transform.as_deref(),
                        part.as_deref(),
                        backs_up_sources,
                    );
                    batching.count_user_records(user_records);
                    batching.batch(&mut batcher, sources, took, &mut bufs.prepared, now)
                });
            (rd, bufs, batcher, r)
        })
        .await;
        let shard = self.shard;
        let (rd, mut bufs, batcher, result) = match res {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(stream = self.stream, shard, error = %e, "log read task failed; delivery of this shard stops");
                self.ctx
                    .set_error(format!("shard {shard}: log read task failed: {e}"));
                return ControlFlow::Break(());
            }
        };
        self.reader = Some(rd);
        self.batcher = batcher;
        match result {
            Ok(read_to) => {
                if let Some(pos) = read_to {
                    self.read_pos = pos;
                }
            }
            Err(e) => {
                self.reader = handle_read_error(
                    self.ctx,
                    &self.log,
                    shard,
                    e,
                    &mut self.read_pos,
                    self.reader.take(),
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = self.stop.cancelled() => return ControlFlow::Break(()),
                }
            }
        }
        bufs.trim();
        self.read_bufs = bufs;
        ControlFlow::Continue(())
    }
}

/// What batching a chunk needs of its shard's loop, taken along to the
/// blocking thread that reads.
struct Batching {
    ctx: std::sync::Arc<StreamContext>,
    shard_label: ShardLabel,
    partitioned: bool,
}

impl Batching {
    /// Hands records just read and prepared to the batcher: to their
    /// partition's open batch, or, failed by the transform or the
    /// partitioner (or corrupt aggregates), toward the error output;
    /// `sources` to the backup. Returns the offset after the last record,
    /// if there was one.
    fn batch(
        &self,
        batcher: &mut Batcher,
        sources: Vec<Record>,
        took: Duration,
        prepared: &mut Vec<(Record, Step)>,
        now: Instant,
    ) -> Option<u64> {
        let stream = &self.ctx.config.name;
        batcher.push_backup(sources);
        if self.ctx.transform.is_some() && !prepared.is_empty() {
            self.ctx
                .metrics
                .transform_seconds
                .get_or_create(&Metrics::stream(stream))
                .observe(took.as_secs_f64());
        }
        let mut read_to = None;
        let mut tally = Tally::default();
        let mut steps = prepared.drain(..).peekable();
        while let Some((f, step)) = steps.next() {
            read_to = Some(f.offset + 1);
            let offset = f.offset;
            if steps.peek().is_none_or(|(next, _)| next.offset != offset) {
                if let Some((key, f)) = tally.note(f, step) {
                    batcher.push_to(key, f, now);
                }
                continue;
            }
            // The user records of one aggregate: each partition's go to
            // one batch.
            let mut groups = Groups::default();
            let mut next = Some((f, step));
            while let Some((f, step)) = next {
                if let Some((key, f)) = tally.note(f, step) {
                    groups.add(key, f);
                }
                next = steps.next_if(|(n, _)| n.offset == offset);
            }
            groups.push_into(batcher, now);
        }
        self.count(&tally);
        batcher.push_failed("processing-failed", tally.untransformed);
        batcher.push_failed("partitioning-failed", tally.unpartitioned);
        self.count_partitions(batcher);
        read_to
    }

    /// Hands a chunk decoded once ([`DecodeOnce`]) to the batcher: each
    /// partition's rows to its open batch, what could not be partitioned or
    /// does not fit the schema toward the error output. Returns `read_to`.
    fn batch_decoded(
        &self,
        batcher: &mut Batcher,
        decoded: Decoded,
        read_to: Option<u64>,
        now: Instant,
    ) -> Option<u64> {
        for (prefix, piece) in decoded.parts {
            batcher.push_rows_to(Some(prefix), piece, now);
        }
        batcher.push_failed("partitioning-failed", decoded.unpartitioned);
        batcher.push_failed("format-conversion-failed", decoded.unfit);
        self.count_partitions(batcher);
        read_to
    }

    /// Sets the open partitions' gauges.
    fn count_partitions(&self, batcher: &Batcher) {
        if self.partitioned {
            self.ctx
                .metrics
                .open_partitions
                .get_or_create(&self.shard_label)
                .set(batcher.open_partitions() as i64);
            self.ctx
                .metrics
                .partition_evictions
                .get_or_create(&self.shard_label)
                .set(batcher.evictions() as i64);
        }
    }

    /// Counts a chunk's outcomes: the transform's, and corrupt aggregates.
    fn count(&self, tally: &Tally) {
        let stream = &self.ctx.config.name;
        if self.ctx.transform.is_some() {
            let m = &self.ctx.metrics.transform_records;
            m.get_or_create(&Metrics::outcome(stream, "ok"))
                .inc_by(tally.ok);
            m.get_or_create(&Metrics::outcome(stream, "dropped"))
                .inc_by(tally.dropped);
            let failed = tally.untransformed.len() as u64 - tally.corrupt;
            m.get_or_create(&Metrics::outcome(stream, "failed"))
                .inc_by(failed);
        }
        if self.ctx.deaggregates() {
            self.ctx
                .metrics
                .kpl_corrupt_aggregates
                .get_or_create(&Metrics::stream(stream))
                .inc_by(tally.corrupt);
        }
    }

    /// Counts the user records taken out of aggregates in a chunk.
    fn count_user_records(&self, n: u64) {
        if self.ctx.deaggregates() {
            self.ctx
                .metrics
                .kpl_user_records
                .get_or_create(&Metrics::stream(&self.ctx.config.name))
                .inc_by(n);
        }
    }
}

/// The user records of one aggregate bound for the batcher, by partition,
/// in the order their partitions first came.
#[derive(Default)]
struct Groups {
    groups: Vec<(PartitionKey, Vec<Record>)>,
    index: HashMap<PartitionKey, usize>,
}

impl Groups {
    fn add(&mut self, key: PartitionKey, f: Record) {
        let i = *self.index.entry(key.clone()).or_insert_with(|| {
            self.groups.push((key, Vec::new()));
            self.groups.len() - 1
        });
        if let Some((_, records)) = self.groups.get_mut(i) {
            records.push(f);
        }
    }

    fn push_into(self, batcher: &mut Batcher, now: Instant) {
        for (key, records) in self.groups {
            batcher.push_group_to(key, records, now);
        }
    }
}

/// Decodes a chunk just read once ([`DecodeOnce`]); None, logged, when it
/// goes the way of every chunk instead.
fn decode(d: &DecodeOnce, part: &Partitioner, frames: &[Record], b: &Batching) -> Option<Decoded> {
    let mut scratch = RouteScratch::default();
    match d.decode(frames, part, &mut scratch) {
        Ok(decoded) => Some(decoded),
        Err(why) => {
            tracing::debug!(stream = b.ctx.config.name, reason = %why, "a chunk is not decoded once; routing its records one by one");
            None
        }
    }
}

/// Prepares the chunk just read into `bufs` (see [`prepare`]). Blocking.
/// Returns the records as read, for a backup of source data (else empty),
/// how long preparing took, and how many user records came out of
/// aggregates.
fn prepare_read(
    bufs: &mut ReadBuffers,
    deaggregates: bool,
    transform: Option<&Transform>,
    part: Option<&Partitioner>,
    backs_up_sources: bool,
) -> (Vec<Record>, Duration, u64) {
    let started = std::time::Instant::now();
    // The transform replaces the records' data: a backup of all source
    // data keeps them as read (sharing their bytes), aggregates whole.
    let sources = if backs_up_sources {
        bufs.frames.clone()
    } else {
        Vec::new()
    };
    let user_records = prepare_chunk(
        (&mut bufs.frames, &mut bufs.spare),
        deaggregates,
        transform,
        part,
        &mut bufs.prepared,
    );
    (sources, started.elapsed(), user_records)
}

/// Prepares a chunk just read (taking it out of `frames`) into `out`, in
/// offset order: takes its KPL aggregates apart first if `deaggregates`
/// (reading a Kinesis stream), then runs [`prepare`] over the records. A
/// corrupt aggregate is not transformed or partitioned. Returns the number
/// of user records taken out of aggregates. Blocking.
fn prepare_chunk(
    (frames, spare): (&mut Vec<Record>, &mut Vec<Record>),
    deaggregates: bool,
    transform: Option<&Transform>,
    part: Option<&Partitioner>,
    out: &mut Vec<(Record, Step)>,
) -> u64 {
    let (corrupt, user_records) = if deaggregates {
        deaggregate(frames, spare)
    } else {
        (Vec::new(), 0)
    };
    prepare(frames, transform, part, out);
    if !corrupt.is_empty() {
        // In offset order, as the error output's batches and the read
        // position take them (stable: user records keep theirs).
        out.extend(corrupt.into_iter().map(|(f, why)| (f, Step::Corrupt(why))));
        out.sort_by_key(|(f, _)| f.offset);
    }
    user_records
}

/// Takes the KPL aggregates among records just read apart, in place (into
/// `spare`, then swapped), each into its user records. Returns the corrupt
/// ones, each with its reason, and the number of user records. Costs a
/// four-byte comparison per record when there are none.
fn deaggregate(frames: &mut Vec<Record>, spare: &mut Vec<Record>) -> (Vec<(Record, String)>, u64) {
    let mut corrupt = Vec::new();
    if !frames.iter().any(|f| kpl::is_aggregate(&f.data)) {
        return (corrupt, 0);
    }
    spare.clear();
    let mut user_records = 0;
    for f in frames.drain(..) {
        if !kpl::is_aggregate(&f.data) {
            spare.push(f);
            continue;
        }
        match kpl::deaggregate_into(&f, spare) {
            Ok(n) => user_records += n as u64,
            Err(e) => corrupt.push((f, e.to_string())),
        }
    }
    std::mem::swap(frames, spare);
    (corrupt, user_records)
}

/// Runs the transform and the partitioner over records just read (taking
/// them out of `frames`), into `out`. Blocking.
fn prepare(
    frames: &mut Vec<Record>,
    transform: Option<&Transform>,
    part: Option<&Partitioner>,
    out: &mut Vec<(Record, Step)>,
) {
    use crate::transform::Outcome;
    out.clear();
    let mut scratch = RouteScratch::default();
    let route = |f: Record, keys: &[(String, String)], scratch: &mut RouteScratch| match part {
        None => (f, Step::Deliver(None)),
        Some(p) => match p.route(&f, keys, scratch) {
            Ok(prefix) => (f, Step::Deliver(Some(prefix))),
            Err(why) => (f, Step::PartitionFailed(why)),
        },
    };
    let Some(t) = transform else {
        out.extend(frames.drain(..).map(|f| route(f, &[], &mut scratch)));
        return;
    };
    let outcomes = t.run(frames);
    out.extend(frames.drain(..).zip(outcomes).map(|(f, o)| match o {
        Outcome::Ok { data, keys } => {
            let out = Record { data, ..f };
            route(out, &keys, &mut scratch)
        }
        Outcome::Dropped => (f, Step::Dropped),
        Outcome::Failed(why) => (f, Step::TransformFailed(why)),
    }));
}

/// Logs a read error and reopens the log: at the oldest record if the log
/// was trimmed past the read position, else where the read stopped.
fn handle_read_error(
    ctx: &StreamContext,
    log: &ShardLog,
    shard: u32,
    e: LogError,
    read_pos: &mut u64,
    reader: Option<ShardReader>,
) -> Option<ShardReader> {
    let stream = &ctx.config.name;
    match e {
        LogError::Trimmed { oldest, .. } => {
            tracing::error!(
                stream,
                shard,
                offset = *read_pos,
                oldest,
                "records were removed from the log before delivery; continuing from the oldest"
            );
            *read_pos = oldest;
            Some(log.reader(oldest))
        }
        other => {
            tracing::error!(stream, shard, offset = *read_pos, error = %other, "cannot read the log; retrying");
            ctx.set_error(other.to_string());
            // Reopen at the same place: the reader may hold a broken file.
            Some(
                reader
                    .map(|_| log.reader(*read_pos))
                    .unwrap_or_else(|| log.reader(*read_pos)),
            )
        }
    }
}

#[cfg(test)]
mod tests;
