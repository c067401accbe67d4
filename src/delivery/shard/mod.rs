//! The delivery loop of one shard: read durable records from the log, batch
//! them, upload batches (a bounded number at once), and move the checkpoint
//! past a batch only once the destination confirmed it (or, after the retry
//! window, the error output did).
//!
//! Memory is bounded: one read chunk, one open batch, at most
//! `uploads_in_flight_max` batches uploading; the loop stops reading while
//! every upload slot is busy, and the log absorbs the backlog.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::StreamContext;
use super::batcher::{Batcher, PartitionLimits, Ready, Route};
use crate::config::{BackupMode, Destination};
use crate::encode;
use crate::log::{LogError, ShardReader, checkpoint};
use crate::metrics::Metrics;
use crate::record::Record;
use crate::route::keys::{finish_partition, object_name};
use crate::route::partition::RouteScratch;
use crate::sink::Batch;
use crate::sink::retry::{Outcome, RetryPolicy, retry, retry_forever};

/// Records and bytes taken from the log in one blocking read.
const READ_RECORDS_MAX: usize = 10_000;
const READ_BYTES_MAX: usize = 4 << 20;

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
    let ckpt_path = checkpoint::checkpoint_path(ctx.log.dir(), &ctx.consumer, shard);
    let start = {
        let p = ckpt_path.clone();
        match tokio::task::spawn_blocking(move || checkpoint::read(&p)).await {
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
struct ReadBuffers {
    frames: Vec<Record>,
    prepared: Vec<(Record, Step)>,
}

/// Runs the transform and the partitioner over records just read (taking
/// them out of `frames`), into `out`. Blocking.
fn prepare(
    frames: &mut Vec<Record>,
    transform: Option<&crate::transform::Transform>,
    part: Option<&crate::route::partition::Partitioner>,
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn handle_read_error(
    ctx: &StreamContext,
    log: &crate::log::ShardLog,
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

/// An uploading batch: its first offset, and the order uploads started in,
/// since two batches can share a first offset (a backup of source records
/// and the batch the same records went to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Uploading {
    first: u64,
    seq: u64,
}

/// Records an upload's end; true if it finished (delivered or in the error
/// output) so the checkpoint may move.
fn complete(
    stream: &str,
    shard: u32,
    res: Result<(Uploading, bool), tokio::task::JoinError>,
    firsts: &mut BTreeMap<Uploading, i64>,
) -> bool {
    match res {
        Ok((id, true)) => {
            firsts.remove(&id);
            true
        }
        // Abandoned at a hard stop: the checkpoint stays below it.
        Ok((_, false)) => false,
        Err(e) => {
            tracing::error!(stream, shard, error = %e, "upload task failed; its records stay in the log");
            false
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn commit(
    ctx: &StreamContext,
    shard: u32,
    path: &std::path::Path,
    batcher: &Batcher,
    inflight_firsts: &BTreeMap<Uploading, i64>,
    read_pos: u64,
    committed: &mut u64,
) {
    let safe = [
        inflight_firsts.keys().next().map(|u| u.first),
        batcher.lowest_offset(),
        Some(read_pos),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(read_pos);
    if safe <= *committed {
        return;
    }
    // Delete first: everything below `safe` is confirmed, so the segments can
    // go before the checkpoint says so (on restart delivery starts at the
    // later of checkpoint and oldest segment). On a full disk this frees the
    // space the checkpoint's temp file needs; the other order could never
    // free anything. Retention is 0 for a delivery stream; a Kinesis
    // stream's log, shared with other readers, is trimmed by its retention.
    let p = path.to_path_buf();
    let stream_log = ctx.log.clone();
    let owns_log = ctx.owns_log;
    let done = super::background(move || {
        let deleted = owns_log
            .then(|| stream_log.shard(shard).map(|l| l.delete_before(safe)))
            .flatten();
        (deleted, checkpoint::write(&p, safe))
    })
    .await;
    match done {
        Ok((deleted, written)) => {
            if let Some(Err(e)) = deleted {
                tracing::warn!(stream = ctx.config.name, shard, error = %e, "cannot delete delivered segments");
            }
            match written {
                Ok(()) => *committed = safe,
                Err(e) => {
                    tracing::error!(stream = ctx.config.name, shard, error = %e, "cannot write checkpoint");
                    ctx.set_error(format!("shard {shard}: cannot write checkpoint: {e}"));
                }
            }
        }
        Err(e) => {
            tracing::error!(stream = ctx.config.name, shard, error = %e, "checkpoint task failed")
        }
    }
}

/// Encodes (for object destinations) and delivers one batch (or writes it to
/// the error output or the backup, as its route says); returns whether it is
/// finished with: delivered, or what the destination refused written to the
/// error output (and backup).
async fn upload(
    ctx: Arc<StreamContext>,
    shard: u32,
    ready: Ready,
    encoder: Option<OwnedSemaphorePermit>,
    stop: CancellationToken,
) -> bool {
    let cfg = &ctx.config;
    let (records, route) = ready.into_parts();
    let (Some(first), Some(last)) = (
        records.first().map(|f| f.offset),
        records.last().map(|f| f.offset),
    ) else {
        return true;
    };
    let partition = match route {
        Route::Deliver(p) => p,
        Route::Failed {
            error_type,
            reasons,
        } => {
            tracing::warn!(stream = cfg.name, shard, first, last, records = records.len(), error_type, reason = %reasons.first().map_or("", |r| r.as_str()), "records go to the error output");
            let failed: Vec<(&Record, String)> = records.iter().zip(reasons).collect();
            let ok = write_error_output(&ctx, shard, &failed, error_type, 1, &stop).await;
            return ok;
        }
        Route::Backup => {
            return write_backup(&ctx, shard, &records.iter().collect::<Vec<_>>(), &stop).await;
        }
    };
    let oldest_ms = records.iter().map(|f| f.arrival_ms).min().unwrap_or(0);
    let at = DateTime::<Utc>::from_timestamp_millis(oldest_ms).unwrap_or_else(Utc::now);
    // Indices (ascending) of records the format refused: already in the
    // error output, so not sent there again if the object later gives up.
    let mut format_refused: Vec<usize> = Vec::new();
    let (records, body, key) = match &cfg.destination {
        Destination::Object(o) => {
            let opts = encode::EncodeOptions::of(cfg);
            let ext = opts.extension();
            let encoded = super::background(move || {
                let body = encode::encode_batch(&records, &opts);
                (records, body)
            })
            .await;
            drop(encoder);
            let (records, body) = match encoded {
                Ok((records, Ok(encoded))) if !encoded.rejected.is_empty() => {
                    // Records the format refused (not fitting the Parquet
                    // schema) go to the error output; the rest are written.
                    let refused: Vec<(&Record, String)> = encoded
                        .rejected
                        .iter()
                        .filter_map(|(i, why)| records.get(*i).map(|r| (r, why.clone())))
                        .collect();
                    tracing::warn!(stream = cfg.name, shard, first, last, refused = refused.len(), reason = %refused[0].1, "records do not fit the format; sending them to the error output");
                    if !write_error_output(
                        &ctx,
                        shard,
                        &refused,
                        "format-conversion-failed",
                        1,
                        &stop,
                    )
                    .await
                    {
                        return false;
                    }
                    if refused.len() == records.len() {
                        return true;
                    }
                    format_refused = encoded.rejected.iter().map(|(i, _)| *i).collect();
                    format_refused.sort_unstable();
                    (records, encoded.body)
                }
                Ok((records, Ok(encoded))) => (records, encoded.body),
                Ok((records, Err(e))) => {
                    let reason = format!("encoding failed: {e}");
                    let failed: Vec<(&Record, String)> =
                        records.iter().map(|r| (r, reason.clone())).collect();
                    let ok = write_error_output(
                        &ctx,
                        shard,
                        &failed,
                        "format-conversion-failed",
                        1,
                        &stop,
                    )
                    .await;
                    return ok;
                }
                Err(e) => {
                    tracing::error!(stream = cfg.name, shard, first, error = %e, "encoding task failed");
                    return false;
                }
            };
            let prefix = match &partition {
                Some(p) => finish_partition(p),
                None => o.prefix.render(at, None),
            };
            let key = format!(
                "{prefix}{}",
                object_name(&cfg.name, shard, first, last, &ext)
            );
            (Held::after_encoding(&ctx, records), body, key)
        }
        // HTTP and PostgreSQL take the records themselves.
        _ => (Held::Frames(records), bytes::Bytes::new(), String::new()),
    };
    let batch = Batch {
        stream: &cfg.name,
        log_id: ctx.log.id(),
        shard,
        first_offset: first,
        last_offset: last,
        key: &key,
        body: &body,
        records: match &records {
            Held::Frames(f) => f,
            Held::InLog { .. } => &[],
        },
    };
    let kind = cfg.destination.kind();
    let label = Metrics::destination(&cfg.name, kind);
    let policy = RetryPolicy::new(cfg.retry_duration);
    let outcome = retry(
        &policy,
        &stop,
        |attempt, e| {
            tracing::warn!(stream = cfg.name, shard, first, last, attempt, destination = %ctx.sink.describe(), error = %e, "delivery failed; retrying");
            ctx.metrics.delivery_retries.get_or_create(&label).inc();
            ctx.metrics
                .delivery_last_error_timestamp_seconds
                .get_or_create(&label)
                .set(Utc::now().timestamp());
            ctx.set_error(e.message.clone());
        },
        || ctx.sink.deliver(&batch),
    )
    .await;
    // Firehose's name where it has one.
    let failed_type = match kind {
        "http" => "http-endpoint-failed".to_string(),
        k => format!("{k}-failed"),
    };
    match outcome {
        Outcome::Delivered { attempts, value } => {
            let m = &ctx.metrics;
            let accepted = records.len() - value.rejected.len() - format_refused.len();
            m.delivery_success.get_or_create(&label).inc();
            m.delivery_records
                .get_or_create(&label)
                .inc_by(accepted as u64);
            let bytes = match &records {
                Held::Frames(f) if body.is_empty() => f.iter().map(|r| r.data.len()).sum(),
                _ => body.len(),
            };
            m.delivery_bytes.get_or_create(&label).inc_by(bytes as u64);
            ctx.delivered();
            tracing::debug!(stream = cfg.name, shard, first, last, key, bytes, rejected = value.rejected.len(), destination = %ctx.sink.describe(), "delivered");
            // The delivered records are the source records unless a
            // transform made them; then the sources were backed up as read.
            let backup_all = ctx.backup_mode() == Some(BackupMode::All) && !ctx.backs_up_sources();
            if value.rejected.is_empty() && !backup_all {
                return true;
            }
            let Some(records) = records.frames(&ctx, shard, &stop).await else {
                return false;
            };
            let rejected: Vec<(&Record, String)> = value
                .rejected
                .iter()
                .filter_map(|(i, why)| records.get(*i).map(|r| (r, why.clone())))
                .collect();
            let mut ok = true;
            if !rejected.is_empty() {
                tracing::warn!(stream = cfg.name, shard, first, last, rejected = rejected.len(), destination = %ctx.sink.describe(), reason = %rejected[0].1, "records refused by the destination go to the error output");
                ok &=
                    write_error_output(&ctx, shard, &rejected, &failed_type, attempts, &stop).await;
            }
            ok &= match ctx.backup_mode() {
                Some(BackupMode::All) if backup_all => {
                    write_backup(&ctx, shard, &records.iter().collect::<Vec<_>>(), &stop).await
                }
                Some(BackupMode::FailedOnly) if !rejected.is_empty() => {
                    write_backup(
                        &ctx,
                        shard,
                        &rejected.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
                        &stop,
                    )
                    .await
                }
                _ => true,
            };
            ok
        }
        Outcome::GaveUp { attempts, error } => {
            ctx.metrics.delivery_failure.get_or_create(&label).inc();
            tracing::error!(stream = cfg.name, shard, first, last, attempts, destination = %ctx.sink.describe(), error = %error, "retry window closed; sending the batch to the error output");
            let Some(records) = records.frames(&ctx, shard, &stop).await else {
                return false;
            };
            let failed: Vec<(&Record, String)> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| format_refused.binary_search(i).is_err())
                .map(|(_, r)| (r, error.message.clone()))
                .collect();
            let mut ok =
                write_error_output(&ctx, shard, &failed, &failed_type, attempts, &stop).await;
            if ctx.backup_mode().is_some() && !ctx.backs_up_sources() {
                ok &= write_backup(&ctx, shard, &records.iter().collect::<Vec<_>>(), &stop).await;
            }
            ok
        }
        Outcome::Cancelled => false,
    }
}

/// A batch's records while its encoded body is delivered.
enum Held {
    /// The records themselves.
    Frames(Vec<Record>),
    /// Only where they are in the log, as runs of offsets (first, last):
    /// once encoded, an object's records are needed again only if it goes
    /// to the error output, and then they are read again from the log, which
    /// keeps them until the checkpoint passes the batch. A record costs 80
    /// bytes of `Record` plus its data while held, an offset run 16 bytes.
    InLog { runs: Vec<(u64, u64)>, count: usize },
}

impl Held {
    /// What to hold of an encoded batch: its place in the log where the log
    /// has the same records for as long as the batch is in flight (the
    /// stream's own log, no transform, which changes records, and no backup
    /// of every batch, which needs them after delivery); else the records.
    fn after_encoding(ctx: &StreamContext, records: Vec<Record>) -> Held {
        if !ctx.owns_log || ctx.transform.is_some() || ctx.backup_mode() == Some(BackupMode::All) {
            return Held::Frames(records);
        }
        Held::InLog {
            runs: offset_runs(&records),
            count: records.len(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Held::Frames(f) => f.len(),
            Held::InLog { count, .. } => *count,
        }
    }

    /// The records, read again from the log if need be (through the retry
    /// loop until read, as the error output is; a hard stop: `None`).
    async fn frames(
        self,
        ctx: &StreamContext,
        shard: u32,
        stop: &CancellationToken,
    ) -> Option<Vec<Record>> {
        let (runs, count) = match self {
            Held::Frames(f) => return Some(f),
            Held::InLog { runs, count } => (Arc::new(runs), count),
        };
        let outcome = retry_forever(
            stop,
            |attempt, e| {
                tracing::error!(stream = ctx.config.name, shard, attempt, error = %e, "cannot read a failed batch's records again from the log; retrying");
                ctx.set_error(format!("shard {shard}: {}", e.message));
            },
            || {
                let (log, runs) = (ctx.log.clone(), runs.clone());
                async move {
                    let message = match super::background(move || reread(&log, shard, &runs, count)).await {
                        Ok(Ok(frames)) => return Ok(frames),
                        Ok(Err(e)) => e,
                        Err(e) => format!("log read task failed: {e}"),
                    };
                    Err(crate::sink::SinkError {
                        message,
                        retryable: true,
                    })
                }
            },
        )
        .await;
        match outcome {
            Outcome::Delivered { value, .. } => Some(value),
            Outcome::GaveUp { .. } | Outcome::Cancelled => None,
        }
    }
}

/// The offsets of `records` (ascending) as runs of consecutive ones.
fn offset_runs(records: &[Record]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for f in records {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == f.offset => *last = f.offset,
            _ => runs.push((f.offset, f.offset)),
        }
    }
    runs
}

/// Reads the records at `runs` (sorted, inclusive) from a shard's log.
fn reread(
    log: &crate::log::StreamLog,
    shard: u32,
    runs: &[(u64, u64)],
    count: usize,
) -> Result<Vec<Record>, String> {
    let (Some(&(first, _)), Some(&(_, last))) = (runs.first(), runs.last()) else {
        return Ok(Vec::new());
    };
    let shard_log = log.shard(shard).ok_or("the shard's log is closed")?;
    let mut reader = shard_log.reader(first);
    let mut out = Vec::with_capacity(count);
    let mut run = 0;
    let mut next = first;
    while next <= last {
        let frames = reader
            .read(READ_RECORDS_MAX, READ_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        if frames.is_empty() {
            return Err(format!(
                "records {next} to {last} of the batch are not in the log"
            ));
        }
        for f in frames {
            next = f.offset + 1;
            while run < runs.len() && runs[run].1 < f.offset {
                run += 1;
            }
            if run < runs.len() && runs[run].0 <= f.offset && f.offset <= last {
                out.push(f);
            }
        }
    }
    if out.len() != count {
        return Err(format!(
            "read {} of the batch's {count} records again from the log",
            out.len()
        ));
    }
    Ok(out)
}

/// Writes one JSON line per record to the error output, with its reason,
/// retrying until it is stored or a hard stop comes: never dropped.
async fn write_error_output(
    ctx: &StreamContext,
    shard: u32,
    records: &[(&Record, String)],
    output_type: &str,
    attempts: u32,
    stop: &CancellationToken,
) -> bool {
    let cfg = &ctx.config;
    let (Some((first, _)), Some((last, _))) = (records.first(), records.last()) else {
        return true;
    };
    let now_ms = Utc::now().timestamp_millis();
    let mut body = Vec::new();
    for (r, reason) in records {
        let line = serde_json::json!({
            "attemptsMade": attempts,
            "arrivalTimestamp": r.arrival_ms,
            "errorCode": output_type,
            "errorMessage": reason,
            "attemptEndingTimestamp": now_ms,
            "rawData": base64::engine::general_purpose::STANDARD.encode(&r.data),
            "deliveryStreamName": cfg.name,
            "shard": shard,
            "offset": r.offset,
        });
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    let at = DateTime::<Utc>::from_timestamp_millis(first.arrival_ms).unwrap_or_else(Utc::now);
    let key = format!(
        "{}{}",
        cfg.error_output
            .error_output_prefix
            .render(at, Some(output_type)),
        object_name(&cfg.name, shard, first.offset, last.offset, "")
    );
    let stored = put_until_stored(
        &ctx.errors,
        &key,
        bytes::Bytes::from(body),
        stop,
        &cfg.name,
        shard,
    )
    .await;
    if stored {
        ctx.metrics
            .error_output_records
            .get_or_create(&Metrics::stream(&cfg.name))
            .inc_by(records.len() as u64);
    }
    stored
}

/// Writes the source records, as JSON lines, to the backup store.
async fn write_backup(
    ctx: &StreamContext,
    shard: u32,
    records: &[&Record],
    stop: &CancellationToken,
) -> bool {
    let cfg = &ctx.config;
    let (Some(backup), Some(sink)) = (&cfg.backup, &ctx.backup) else {
        return true;
    };
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return true;
    };
    let mut body = Vec::new();
    for r in records {
        body.extend_from_slice(&r.data);
        if !r.data.ends_with(b"\n") {
            body.push(b'\n');
        }
    }
    let at = DateTime::<Utc>::from_timestamp_millis(first.arrival_ms).unwrap_or_else(Utc::now);
    let key = format!(
        "{}{}",
        backup.target.prefix.render(at, None),
        object_name(&cfg.name, shard, first.offset, last.offset, "")
    );
    put_until_stored(sink, &key, bytes::Bytes::from(body), stop, &cfg.name, shard).await
}

async fn put_until_stored(
    sink: &crate::sink::object::ObjectSink,
    key: &str,
    body: bytes::Bytes,
    stop: &CancellationToken,
    stream: &str,
    shard: u32,
) -> bool {
    let outcome = retry_forever(
        stop,
        |attempt, e| tracing::error!(stream, shard, key, attempt, error = %e, "cannot write to the error output or backup; retrying"),
        || sink.put(key, body.clone()),
    )
    .await;
    matches!(outcome, Outcome::Delivered { .. })
}

#[cfg(test)]
mod tests;
