//! The delivery loop of one shard: read durable records from the log, batch
//! them, upload batches (a bounded number at once), and move the checkpoint
//! past a batch only once the destination confirmed it (or, after the retry
//! window, the error output did).
//!
//! Memory is bounded: one read chunk, one open batch, at most
//! `uploads_in_flight_max` batches uploading; the loop stops reading while
//! every upload slot is busy, and the log absorbs the backlog.
//!
//! This module holds the loop and its state; its steps live by concern:
//! [`read`] takes records from the log and prepares them (on the
//! partitioned Parquet path, [`decoded`] parses each record's JSON once),
//! [`upload`] delivers closed batches (keeping their records as [`held`]
//! says, and writing what is not delivered through [`side`]), [`checkpoint`]
//! decides how far the checkpoint moves and writes it. The loop never moves the checkpoint but through [`checkpoint`],
//! and it blocks in one place only, [`ShardLoop::wait`] (and a read's pause
//! after an error), where a hard stop always ends it.

mod checkpoint;
mod decoded;
mod held;
mod leased;
mod read;
mod side;
mod upload;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::StreamContext;
use super::batcher::{Batcher, PartitionLimits};
use crate::config::{Destination, StreamConfig};
use crate::log::jetstream::Lease;
use crate::log::{ShardLog, ShardReader};
use crate::metrics::{Metrics, ShardLabel};
use crate::route::partition::{Partitioner, ReadGather};
use checkpoint::complete;
use read::ReadBuffers;
use upload::{Uploading, Waiting};

/// How a shard's delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShardEnd {
    /// A closed (sealed) shard, delivered and checkpointed to its end: its
    /// children may be delivered now.
    Done,
    /// Drained or stopped; what is not checkpointed stays in the log.
    Stopped,
}

/// Delivers one shard of the stream until it is drained (`drain`: every
/// durable record delivered, then stop), stopped (`stop`: at once; what is
/// still uploading is abandoned and stays in the log), or, for a closed
/// shard, delivered to its end. In cluster mode the shard is delivered by
/// whichever node holds its lease ([`leased`]).
pub(crate) async fn run(
    ctx: Arc<StreamContext>,
    shard: u32,
    drain: CancellationToken,
    stop: CancellationToken,
) -> ShardEnd {
    if let Some((leases, key)) = ctx.log.lease(&ctx.consumer, shard) {
        return leased::run(ctx, shard, drain, stop, leases, key).await;
    }
    run_with(&ctx, shard, drain, stop, None).await
}

/// Runs the loop of `shard`, its checkpoint in `lease` if given, else in
/// its file.
async fn run_with(
    ctx: &Arc<StreamContext>,
    shard: u32,
    drain: CancellationToken,
    stop: CancellationToken,
    lease: Option<Arc<Lease>>,
) -> ShardEnd {
    match ShardLoop::open(ctx, shard, drain, stop, lease).await {
        Some(shard_loop) => shard_loop.run().await,
        None => ShardEnd::Stopped,
    }
}

/// Where a shard's checkpoint is kept.
pub(super) enum Ckpt {
    /// A file beside the local log (or the Kinesis stream's).
    File(PathBuf),
    /// The shard's delivery lease in JetStream: a write is refused once
    /// another node took the lease.
    Lease(Arc<Lease>),
}

/// The state of one shard's delivery loop, carried from one step to the next.
struct ShardLoop<'a> {
    ctx: &'a Arc<StreamContext>,
    shard: u32,
    stream: String,
    log: Arc<ShardLog>,
    ckpt: Ckpt,
    drain: CancellationToken,
    stop: CancellationToken,
    /// None only while a read has it, or after a read task failed.
    reader: Option<ShardReader>,
    /// The offset after the last record read.
    read_pos: u64,
    /// The offset the checkpoint holds.
    committed: u64,
    /// The end of the shard's durable records.
    durable: watch::Receiver<u64>,
    partitioner: Option<Arc<Partitioner>>,
    /// Set where the stream's chunks are decoded once ([`decoded`]).
    decode_once: Option<Arc<decoded::DecodeOnce>>,
    /// Since when records are durable and not read, while a read waits for
    /// a chunk worth decoding ([`ShardLoop::worth_reading`]).
    unread_since: Option<Instant>,
    batcher: Batcher,
    inflight: JoinSet<(Uploading, bool)>,
    /// Each uploading batch, with its oldest arrival.
    inflight_firsts: BTreeMap<Uploading, i64>,
    uploads_started: u64,
    uploads_max: usize,
    /// Uploads written and waiting for their destination's commit
    /// (Iceberg): they hold no upload slot, at most `awaiting_max` of them.
    waiting: Waiting,
    awaiting_max: usize,
    draining: bool,
    shard_label: ShardLabel,
    /// Object destinations encode each batch: a batch leaves the batcher
    /// only with one of the daemon's encoding slots, so at most
    /// `encoders_max` batches are being encoded (and held whole in memory
    /// for it) at once.
    encodes: bool,
    /// Firehose's backup of all source data, with a transform: the records
    /// as read from the log, before the transform changed or dropped them.
    backs_up_sources: bool,
    read_bufs: ReadBuffers,
    /// The encoding slot taken for the next batch.
    slot: Option<OwnedSemaphorePermit>,
}

impl<'a> ShardLoop<'a> {
    /// The loop of shard `shard`, from its checkpoint; None if there is no
    /// such shard or the checkpoint's read task failed (logged).
    async fn open(
        ctx: &'a Arc<StreamContext>,
        shard: u32,
        drain: CancellationToken,
        stop: CancellationToken,
        lease: Option<Arc<Lease>>,
    ) -> Option<ShardLoop<'a>> {
        let stream = ctx.config.name.clone();
        let Some(log) = ctx.log.shard(shard) else {
            tracing::error!(stream, shard, "no such shard in the log");
            return None;
        };
        let ckpt = match lease {
            Some(l) => Ckpt::Lease(l),
            None => Ckpt::File(crate::log::checkpoint::checkpoint_path(
                ctx.log.dir(),
                &ctx.consumer,
                shard,
            )),
        };
        let start = checkpoint::start(&stream, shard, &log, &ckpt).await?;
        Some(ShardLoop {
            reader: Some(log.reader(start)),
            read_pos: start,
            committed: start,
            durable: log.subscribe(),
            partitioner: ctx.config.partitioning.clone(),
            decode_once: decoded::DecodeOnce::for_stream(ctx, ctx.config.partitioning.as_deref())
                .map(|d| {
                    tracing::info!(stream, shard, "partition keys are read from the decoded Parquet columns: each record's JSON is parsed once");
                    Arc::new(d)
                }),
            unread_since: None,
            batcher: batcher(&ctx.config),
            inflight: JoinSet::new(),
            inflight_firsts: BTreeMap::new(),
            uploads_started: 0,
            uploads_max: ctx.config.uploads_in_flight_max,
            waiting: Waiting::default(),
            awaiting_max: match &ctx.config.destination {
                Destination::Iceberg(i) => i.awaiting_commit_max,
                _ => 0,
            },
            draining: false,
            shard_label: Metrics::shard(&stream, shard),
            encodes: matches!(ctx.config.destination, Destination::Object(_)),
            backs_up_sources: ctx.backs_up_sources(),
            read_bufs: ReadBuffers::default(),
            slot: None,
            ctx,
            shard,
            stream,
            log,
            ckpt,
            drain,
            stop,
        })
    }

    /// Runs the loop until the shard is drained or stopped: start uploads,
    /// note the ones that ended, read while there is room, else wait. A
    /// sealed shard read to its end flushes as a drain does, and is done
    /// once everything is checkpointed.
    async fn run(mut self) -> ShardEnd {
        loop {
            self.start_uploads();
            let waiting_for_slot = self.encodes
                && self.slot.is_none()
                && self.batcher.has_ready()
                && self.has_upload_room();
            self.collect_finished().await;
            self.report_oldest_pending();
            if self.stop.is_cancelled() {
                break;
            }
            if self.drain.is_cancelled() {
                self.draining = true;
            }
            let end = self.durable_end();
            if self.log.is_sealed() && self.read_pos >= end {
                self.draining = true;
            }

            if self.read_pos < end
                && !self.batcher.has_ready()
                && self.has_upload_room()
                && self.worth_reading(end)
            {
                self.unread_since = None;
                if self.read().await.is_break() {
                    break;
                }
                continue;
            }
            if self.draining && self.read_pos >= end {
                self.batcher.close();
                if self.batcher.is_empty() && self.inflight.is_empty() {
                    break;
                }
                if self.batcher.has_ready() && self.has_upload_room() && !waiting_for_slot {
                    continue;
                }
            }
            if self.wait(waiting_for_slot, end).await.is_break() {
                break;
            }
        }
        let done = self.log.is_sealed()
            && self.committed >= self.log.durable_end()
            && !self.stop.is_cancelled();
        tracing::debug!(
            stream = self.stream,
            shard = self.shard,
            committed = self.committed,
            done,
            "shard delivery stopped"
        );
        if done {
            ShardEnd::Done
        } else {
            ShardEnd::Stopped
        }
    }

    /// Whether another upload may start: fewer than `uploads_max` are
    /// uploading, not counting those waiting for a commit, which are
    /// bounded on their own.
    fn has_upload_room(&self) -> bool {
        let waiting = self.waiting.count().min(self.awaiting_max);
        self.inflight.len().saturating_sub(waiting) < self.uploads_max
            && self.inflight.len() < self.uploads_max + self.awaiting_max
    }

    /// Publishes the arrival of the oldest record read but not yet delivered
    /// (for DataFreshness).
    fn report_oldest_pending(&self) {
        let oldest = self
            .inflight_firsts
            .values()
            .copied()
            .chain(self.batcher.oldest_arrival())
            .min();
        self.ctx.set_oldest_pending(self.shard, oldest);
    }

    /// The end of the shard's durable records; updates the backlog and log
    /// size gauges.
    fn durable_end(&mut self) -> u64 {
        let end = *self.durable.borrow_and_update();
        self.ctx
            .metrics
            .backlog_records
            .get_or_create(&self.shard_label)
            .set(end.saturating_sub(self.committed) as i64);
        self.ctx
            .metrics
            .log_bytes
            .get_or_create(&self.shard_label)
            .set(self.log.disk_bytes() as i64);
        end
    }

    /// Waits for the first of: a hard stop (Break), an encoding slot, an
    /// upload's end, a drain, the batcher's deadline, new durable records.
    async fn wait(&mut self, waiting_for_slot: bool, end: u64) -> ControlFlow<()> {
        let deadline = self.batcher.deadline();
        // Unread records waiting to make a chunk worth decoding.
        let accumulating = self.read_pos < end && self.unread_since.is_some();
        let read_due = self.unread_since.map(|t| t + self.read_gather().wait);
        tokio::select! {
            _ = self.stop.cancelled() => return ControlFlow::Break(()),
            s = self.ctx.encoders.clone().acquire_owned(), if waiting_for_slot => self.slot = s.ok(),
            Some(res) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                if complete(&self.stream, self.shard, res, &mut self.inflight_firsts) {
                    self.commit().await;
                }
            }
            _ = self.drain.cancelled(), if !self.draining => self.draining = true,
            _ = self.waiting.started(), if self.awaiting_max > 0 => {}
            _ = sleep_until_opt(deadline), if deadline.is_some() => self.batcher.tick(Instant::now()),
            _ = sleep_until_opt(read_due), if accumulating => {}
            r = self.durable.changed(), if !self.draining && (self.read_pos >= end || accumulating) => {
                if r.is_err() {
                    tracing::debug!(stream = self.stream, shard = self.shard, "log closed");
                    self.draining = true;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl ShardLoop<'_> {
    /// Whether to read the durable records up to `end` now: always, but
    /// where chunks are decoded once, only when enough have gathered or the
    /// first of them has waited long enough (or the shard drains or is
    /// sealed).
    fn worth_reading(&mut self, end: u64) -> bool {
        let gather = self.read_gather();
        if self.decode_once.is_none()
            || self.draining
            || self.log.is_sealed()
            || end.saturating_sub(self.read_pos) >= gather.records_min
        {
            return true;
        }
        let now = Instant::now();
        let since = *self.unread_since.get_or_insert(now);
        now >= since + gather.wait
    }

    /// The stream's [`ReadGather`] (`dynamic_partitioning.read_*`), for
    /// where chunks are decoded once.
    fn read_gather(&self) -> ReadGather {
        self.partitioner
            .as_ref()
            .map_or(ReadGather::DEFAULT, |p| p.read_gather)
    }
}

/// The stream's batcher: its buffering hints, and with dynamic partitioning
/// its partitions' bounds.
fn batcher(config: &StreamConfig) -> Batcher {
    let per_record = match &config.encoding {
        crate::encode::Encoding::JsonLines { delimiter } => delimiter.len() as u64,
        crate::encode::Encoding::Parquet(_) => 0,
    };
    let limits = config
        .partitioning
        .as_ref()
        .map_or(PartitionLimits::SINGLE, |p| PartitionLimits {
            open_max: p.open_partitions_max,
            open_bytes_max: p.open_bytes_max,
            copy_records: true,
        });
    Batcher::with_limits(
        config.buffer_bytes,
        per_record,
        config.buffer_interval,
        limits,
    )
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
