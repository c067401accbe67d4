//! Reading a shard's durable records and preparing them for batching:
//! the transform and the partitioner run here, beside the read, off the
//! async runtime. A read never moves the checkpoint; a read error reopens
//! the log where it stopped (or at the oldest record, if the log was
//! trimmed under it) and never skips records the log still has.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;

use super::ShardLoop;
use crate::delivery::StreamContext;
use crate::log::{LogError, ShardLog, ShardReader};
use crate::metrics::Metrics;
use crate::record::Record;
use crate::route::partition::{Partitioner, RouteScratch};
use crate::transform::Transform;

/// Records and bytes taken from the log in one blocking read.
pub(super) const READ_RECORDS_MAX: usize = 10_000;
pub(super) const READ_BYTES_MAX: usize = 4 << 20;

/// What happens next to a record read from the log.
enum Step {
    /// Batch it, under this partition's prefix (None: the stream's).
    Deliver(Option<String>),
    /// The transform dropped it.
    Dropped,
    /// The transform failed it (the frame is the original record).
    TransformFailed(String),
    /// It cannot be partitioned (the frame is the transformed record).
    PartitionFailed(String),
}

/// The vectors a shard's reads go through, kept from one read to the next.
#[derive(Default)]
pub(super) struct ReadBuffers {
    frames: Vec<Record>,
    prepared: Vec<(Record, Step)>,
}

impl ShardLoop<'_> {
    /// Reads the next chunk of durable records, prepares them off the
    /// runtime, and batches them. After a read error, waits a second and
    /// reads again. Break: delivery of this shard stops (a hard stop, or the
    /// read task failed).
    pub(super) async fn read(&mut self) -> ControlFlow<()> {
        let Some(mut rd) = self.reader.take() else {
            return ControlFlow::Break(());
        };
        let mut bufs = std::mem::take(&mut self.read_bufs);
        let part = self.partitioner.clone();
        let transform = self.ctx.transform.clone();
        let backs_up_sources = self.backs_up_sources;
        let res = crate::delivery::background(move || {
            // Transforming and partitioning are CPU work on every record:
            // done here, off the runtime, beside the read.
            let r = read_and_prepare(
                &mut rd,
                &mut bufs,
                transform.as_deref(),
                part.as_deref(),
                backs_up_sources,
            );
            (rd, bufs, r)
        })
        .await;
        let shard = self.shard;
        let (rd, mut bufs, result) = match res {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(stream = self.stream, shard, error = %e, "log read task failed; delivery of this shard stops");
                self.ctx
                    .set_error(format!("shard {shard}: log read task failed: {e}"));
                return ControlFlow::Break(());
            }
        };
        self.reader = Some(rd);
        match result {
            Ok((sources, took)) => self.batch(sources, took, &mut bufs.prepared),
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
        self.read_bufs = bufs;
        ControlFlow::Continue(())
    }

    /// Hands records just read and prepared to the batcher: to their
    /// partition's open batch, or, failed by the transform or the
    /// partitioner, toward the error output; `sources` to the backup.
    fn batch(&mut self, sources: Vec<Record>, took: Duration, prepared: &mut Vec<(Record, Step)>) {
        let now = Instant::now();
        self.batcher.push_backup(sources);
        if self.ctx.transform.is_some() && !prepared.is_empty() {
            self.ctx
                .metrics
                .transform_seconds
                .get_or_create(&Metrics::stream(&self.stream))
                .observe(took.as_secs_f64());
        }
        let (mut unpartitioned, mut untransformed) = (Vec::new(), Vec::new());
        let (mut ok, mut dropped) = (0u64, 0u64);
        for (f, step) in prepared.drain(..) {
            self.read_pos = f.offset + 1;
            match step {
                Step::Deliver(None) => {
                    ok += 1;
                    self.batcher.push(f, now)
                }
                Step::Deliver(Some(prefix)) => {
                    ok += 1;
                    self.batcher.push_to(Some(prefix.into()), f, now)
                }
                Step::PartitionFailed(why) => unpartitioned.push((f, why)),
                Step::TransformFailed(why) => untransformed.push((f, why)),
                Step::Dropped => dropped += 1,
            }
        }
        if self.ctx.transform.is_some() {
            let m = &self.ctx.metrics.transform_records;
            let stream = &self.stream;
            m.get_or_create(&Metrics::outcome(stream, "ok")).inc_by(ok);
            m.get_or_create(&Metrics::outcome(stream, "dropped"))
                .inc_by(dropped);
            m.get_or_create(&Metrics::outcome(stream, "failed"))
                .inc_by(untransformed.len() as u64);
        }
        self.batcher.push_failed("processing-failed", untransformed);
        self.batcher
            .push_failed("partitioning-failed", unpartitioned);
        if self.partitioner.is_some() {
            self.ctx
                .metrics
                .open_partitions
                .get_or_create(&self.shard_label)
                .set(self.batcher.open_partitions() as i64);
            self.ctx
                .metrics
                .partition_evictions
                .get_or_create(&self.shard_label)
                .set(self.batcher.evictions() as i64);
        }
    }
}

/// Reads the next chunk into `bufs` and prepares it (see [`prepare`]).
/// Blocking. Returns the records as read, for a backup of source data (else
/// empty), and how long preparing took.
fn read_and_prepare(
    rd: &mut ShardReader,
    bufs: &mut ReadBuffers,
    transform: Option<&Transform>,
    part: Option<&Partitioner>,
    backs_up_sources: bool,
) -> Result<(Vec<Record>, Duration), LogError> {
    rd.read_into(&mut bufs.frames, READ_RECORDS_MAX, READ_BYTES_MAX)
        .map(|()| {
            let started = std::time::Instant::now();
            // The transform replaces the records' data: a backup of
            // all source data keeps them as read (sharing their bytes).
            let sources = if backs_up_sources {
                bufs.frames.clone()
            } else {
                Vec::new()
            };
            prepare(&mut bufs.frames, transform, part, &mut bufs.prepared);
            (sources, started.elapsed())
        })
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
