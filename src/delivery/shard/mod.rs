//! The delivery loop of one shard: read durable records from the log, batch
//! them, upload batches (a bounded number at once), and move the checkpoint
//! past a batch only once the destination confirmed it (or, after the retry
//! window, the error output did).
//!
//! Memory is bounded: one read chunk, one open batch, at most
//! `uploads_in_flight_max` batches uploading; the loop stops reading while
//! every upload slot is busy, and the log absorbs the backlog.

mod checkpoint;
mod read;
mod upload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::StreamContext;
use super::batcher::{Batcher, PartitionLimits};
use crate::config::Destination;
use crate::log::checkpoint as log_checkpoint;
use crate::metrics::Metrics;
use checkpoint::{commit, complete};
use read::{READ_BYTES_MAX, READ_RECORDS_MAX, ReadBuffers, Step, handle_read_error, prepare};
use upload::{Uploading, upload};

pub(crate) async fn run(
    ctx: Arc<StreamContext>,
    shard: u32,
    drain: CancellationToken,
    stop: CancellationToken,
) {
    let stream = ctx.config.name.clone();
    let Some(log) = ctx.log.shard(shard) else {
        tracing::error!(stream, shard, "no such shard in the log");
        return;
    };
    let ckpt_path = log_checkpoint::checkpoint_path(ctx.log.dir(), &ctx.consumer, shard);
    let start = {
        let p = ckpt_path.clone();
        match tokio::task::spawn_blocking(move || log_checkpoint::read(&p)).await {
            Ok(Ok(Some(o))) => o,
            Ok(Ok(None)) => log.oldest_offset(),
            Ok(Err(e)) => {
                tracing::error!(stream, shard, error = %e, "checkpoint unreadable; redelivering from the oldest record in the log");
                log.oldest_offset()
            }
            Err(e) => {
                tracing::error!(stream, shard, error = %e, "checkpoint read task failed");
                return;
            }
        }
    };
    let start = start.max(log.oldest_offset());
    let mut reader = Some(log.reader(start));
    let mut read_pos = start;
    let mut committed = start;
    let mut durable = log.subscribe();
    let per_record = match &ctx.config.encoding {
        crate::config::Encoding::JsonLines { delimiter } => delimiter.len() as u64,
        crate::config::Encoding::Parquet(_) => 0,
    };
    let partitioner = ctx.config.partitioning.clone();
    let limits = partitioner
        .as_ref()
        .map_or(PartitionLimits::SINGLE, |p| PartitionLimits {
            open_max: p.open_partitions_max,
            open_bytes_max: p.open_bytes_max,
            copy_records: true,
        });
    let mut batcher = Batcher::with_limits(
        ctx.config.buffer_bytes,
        per_record,
        ctx.config.buffer_interval,
        limits,
    );
    let mut inflight: JoinSet<(Uploading, bool)> = JoinSet::new();
    // Each uploading batch, with its oldest arrival.
    let mut inflight_firsts: BTreeMap<Uploading, i64> = BTreeMap::new();
    let mut uploads_started = 0u64;
    let uploads_max = ctx.config.uploads_in_flight_max;
    let mut draining = false;
    let shard_label = Metrics::shard(&stream, shard);

    // Object destinations encode each batch: a batch leaves the batcher only
    // with one of the daemon's encoding slots, so at most `encoders_max`
    // batches are being encoded (and held whole in memory for it) at once.
    let encodes = matches!(ctx.config.destination, Destination::Object(_));
    // Firehose's backup of all source data, with a transform: the records
    // as read from the log, before the transform changed or dropped them.
    let backs_up_sources = ctx.backs_up_sources();
    let mut read_bufs = ReadBuffers::default();
    let mut slot: Option<OwnedSemaphorePermit> = None;

    loop {
        while inflight.len() < uploads_max && batcher.has_ready() {
            if encodes && slot.is_none() {
                slot = ctx.encoders.clone().try_acquire_owned().ok();
                if slot.is_none() {
                    break;
                }
            }
            let Some(ready) = batcher.pop_ready() else {
                break;
            };
            if let Some(first) = ready.first_offset() {
                let id = Uploading {
                    first,
                    seq: uploads_started,
                };
                uploads_started += 1;
                inflight_firsts.insert(id, ready.oldest_arrival().unwrap_or(i64::MAX));
                let task = upload(ctx.clone(), shard, ready, slot.take(), stop.clone());
                inflight.spawn(async move { (id, task.await) });
            }
        }
        let waiting_for_slot =
            encodes && slot.is_none() && batcher.has_ready() && inflight.len() < uploads_max;
        let mut finished = false;
        while let Some(res) = inflight.try_join_next() {
            finished |= complete(&stream, shard, res, &mut inflight_firsts);
        }
        if finished {
            commit(
                &ctx,
                shard,
                &ckpt_path,
                &batcher,
                &inflight_firsts,
                read_pos,
                &mut committed,
            )
            .await;
        }
        let oldest = inflight_firsts
            .values()
            .copied()
            .chain(batcher.oldest_arrival())
            .min();
        ctx.set_oldest_pending(shard, oldest);
        if stop.is_cancelled() {
            break;
        }
        if drain.is_cancelled() {
            draining = true;
        }
        let end = *durable.borrow_and_update();
        ctx.metrics
            .backlog_records
            .get_or_create(&shard_label)
            .set(end.saturating_sub(committed) as i64);
        ctx.metrics
            .log_bytes
            .get_or_create(&shard_label)
            .set(log.disk_bytes() as i64);

        if read_pos < end && !batcher.has_ready() && inflight.len() < uploads_max {
            let Some(mut rd) = reader.take() else { break };
            let mut bufs = std::mem::take(&mut read_bufs);
            let part = partitioner.clone();
            let transform = ctx.transform.clone();
            let res = super::background(move || {
                // Transforming and partitioning are CPU work on every record:
                // done here, off the runtime, beside the read.
                let r = rd
                    .read_into(&mut bufs.frames, READ_RECORDS_MAX, READ_BYTES_MAX)
                    .map(|()| {
                        let started = std::time::Instant::now();
                        // The transform replaces the records' data: a backup of
                        // all source data keeps them as read (sharing their bytes).
                        let sources = if backs_up_sources {
                            bufs.frames.clone()
                        } else {
                            Vec::new()
                        };
                        prepare(
                            &mut bufs.frames,
                            transform.as_deref(),
                            part.as_deref(),
                            &mut bufs.prepared,
                        );
                        (sources, started.elapsed())
                    });
                (rd, bufs, r)
            })
            .await;
            let (rd, mut bufs, result) = match res {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(stream, shard, error = %e, "log read task failed; delivery of this shard stops");
                    ctx.set_error(format!("shard {shard}: log read task failed: {e}"));
                    break;
                }
            };
            reader = Some(rd);
            match result {
                Ok((sources, took)) => {
                    let now = Instant::now();
                    batcher.push_backup(sources);
                    if ctx.transform.is_some() && !bufs.prepared.is_empty() {
                        ctx.metrics
                            .transform_seconds
                            .get_or_create(&Metrics::stream(&stream))
                            .observe(took.as_secs_f64());
                    }
                    let (mut unpartitioned, mut untransformed) = (Vec::new(), Vec::new());
                    let (mut ok, mut dropped) = (0u64, 0u64);
                    for (f, step) in bufs.prepared.drain(..) {
                        read_pos = f.offset + 1;
                        match step {
                            Step::Deliver(None) => {
                                ok += 1;
                                batcher.push(f, now)
                            }
                            Step::Deliver(Some(prefix)) => {
                                ok += 1;
                                batcher.push_to(Some(prefix.into()), f, now)
                            }
                            Step::PartitionFailed(why) => unpartitioned.push((f, why)),
                            Step::TransformFailed(why) => untransformed.push((f, why)),
                            Step::Dropped => dropped += 1,
                        }
                    }
                    if ctx.transform.is_some() {
                        let m = &ctx.metrics.transform_records;
                        m.get_or_create(&Metrics::outcome(&stream, "ok")).inc_by(ok);
                        m.get_or_create(&Metrics::outcome(&stream, "dropped"))
                            .inc_by(dropped);
                        m.get_or_create(&Metrics::outcome(&stream, "failed"))
                            .inc_by(untransformed.len() as u64);
                    }
                    batcher.push_failed("processing-failed", untransformed);
                    batcher.push_failed("partitioning-failed", unpartitioned);
                    if partitioner.is_some() {
                        ctx.metrics
                            .open_partitions
                            .get_or_create(&shard_label)
                            .set(batcher.open_partitions() as i64);
                        ctx.metrics
                            .partition_evictions
                            .get_or_create(&shard_label)
                            .set(batcher.evictions() as i64);
                    }
                }
                Err(e) => {
                    reader = handle_read_error(&ctx, log, shard, e, &mut read_pos, reader);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
            read_bufs = bufs;
            continue;
        }
        if draining && read_pos >= end {
            batcher.close();
            if batcher.is_empty() && inflight.is_empty() {
                break;
            }
            if batcher.has_ready() && inflight.len() < uploads_max && !waiting_for_slot {
                continue;
            }
        }
        let deadline = batcher.deadline();
        tokio::select! {
            _ = stop.cancelled() => break,
            s = ctx.encoders.clone().acquire_owned(), if waiting_for_slot => slot = s.ok(),
            Some(res) = inflight.join_next(), if !inflight.is_empty() => {
                if complete(&stream, shard, res, &mut inflight_firsts) {
                    commit(&ctx, shard, &ckpt_path, &batcher, &inflight_firsts, read_pos, &mut committed).await;
                }
            }
            _ = drain.cancelled(), if !draining => draining = true,
            _ = sleep_until_opt(deadline), if deadline.is_some() => batcher.tick(Instant::now()),
            r = durable.changed(), if !draining && read_pos >= end => {
                if r.is_err() {
                    tracing::debug!(stream, shard, "log closed");
                    draining = true;
                }
            }
        }
    }
    tracing::debug!(stream, shard, committed, "shard delivery stopped");
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
