//! Uploading one closed batch: encoding it (object destinations, from its
//! records or from its rows already decoded), delivering it through the
//! retry loop, and sending what cannot be delivered to the error output
//! (and, as configured, the backup; both written by [`super::side`]). An upload reports only
//! whether its batch is finished with; it never moves the checkpoint, and it
//! never drops a record: what the destination refused or gave up on is
//! written to the error output, retried until stored.

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::ShardLoop;
use super::held::Held;
use super::side::{Origin, write_backup, write_error_output};
use crate::config::{BackupMode, Destination, ObjectDestination};
use crate::delivery::StreamContext;
use crate::delivery::batcher::{Contents, PartitionKey, Ready, Route, Rows};
use crate::encode;
use crate::metrics::{DestinationLabel, Metrics};
use crate::record::Record;
use crate::route::keys::{finish_partition, object_name};
use crate::sink::retry::{Outcome, RetryPolicy, retry};
use crate::sink::{Batch, Delivered, PendingError, SinkError};

/// An uploading batch: its first offset, and the order uploads started in,
/// since two batches can share a first offset (a backup of source records
/// and the batch the same records went to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Uploading {
    pub(super) first: u64,
    pub(super) seq: u64,
}

impl ShardLoop<'_> {
    /// Starts uploading closed batches while an upload slot is free (and,
    /// for a destination that encodes, an encoding slot can be had at once).
    pub(super) fn start_uploads(&mut self) {
        while self.has_upload_room() && self.batcher.has_ready() {
            if self.encodes && self.slot.is_none() {
                self.slot = self.ctx.encoders.clone().try_acquire_owned().ok();
                if self.slot.is_none() {
                    break;
                }
            }
            let Some(ready) = self.batcher.pop_ready() else {
                break;
            };
            if let Some(first) = ready.first_offset() {
                let id = Uploading {
                    first,
                    seq: self.uploads_started,
                };
                self.uploads_started += 1;
                self.inflight_firsts
                    .insert(id, ready.oldest_arrival().unwrap_or(i64::MAX));
                let task = upload(
                    self.ctx.clone(),
                    self.shard,
                    ready,
                    self.slot.take(),
                    (self.stop.clone(), self.waiting.clone()),
                );
                self.inflight.spawn(async move { (id, task.await) });
            }
        }
    }
}

/// A closed batch's records, route, and first and last offsets. Unpacking
/// packed records is work on every record, so it is done off the runtime,
/// whose threads answer producers. Err: what [`upload`] returns instead,
/// true for a batch with no records, false if the unpacking task failed
/// (logged; the records stay in the log).
async fn unpack(
    ready: Ready,
    stream: &str,
    shard: u32,
) -> Result<(Contents, Route, u64, u64), bool> {
    let (contents, route) = if ready.is_packed() {
        match crate::delivery::background(move || ready.into_contents()).await {
            Ok(parts) => parts,
            Err(e) => {
                tracing::error!(stream, shard, error = %e, "unpacking a batch failed; its records stay in the log");
                return Err(false);
            }
        }
    } else {
        ready.into_contents()
    };
    let ends = match &contents {
        Contents::Records(r) => r.first().zip(r.last()).map(|(a, b)| (a.offset, b.offset)),
        Contents::Rows(r) => r
            .offsets()
            .first()
            .copied()
            .zip(r.offsets().last().copied()),
    };
    match ends {
        Some((first, last)) => Ok((contents, route, first, last)),
        None => Err(true),
    }
}

/// A batch of decoded rows anywhere but on its way to an object
/// destination, which never happens (only streams delivering objects decode
/// rows, and the error output and the backup are given records): logged,
/// and left in the log, unfinished.
fn rows_astray(stream: &str, shard: u32, first: u64, last: u64) -> bool {
    tracing::error!(
        stream,
        shard,
        first,
        last,
        "decoded rows outside an object delivery; they stay in the log"
    );
    false
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
    (stop, waiting): (CancellationToken, Waiting),
) -> bool {
    let cfg = &ctx.config;
    let (contents, route, first, last) = match unpack(ready, &cfg.name, shard).await {
        Ok(unpacked) => unpacked,
        Err(finished) => return finished,
    };
    let partition = match route {
        Route::Deliver(p) => p,
        Route::Failed {
            error_type,
            reasons,
        } => {
            let Contents::Records(records) = contents else {
                return rows_astray(&cfg.name, shard, first, last);
            };
            tracing::warn!(stream = cfg.name, shard, first, last, records = records.len(), error_type, reason = %reasons.first().map_or("", |r| r.as_str()), "records go to the error output");
            let failed: Vec<(&Record, String)> = records.iter().zip(reasons).collect();
            let origin = Origin::chunk(shard);
            return write_error_output(&ctx, origin, &failed, error_type, 1, &stop).await;
        }
        Route::Backup => {
            let Contents::Records(records) = contents else {
                return rows_astray(&cfg.name, shard, first, last);
            };
            let records = records.iter().collect::<Vec<_>>();
            return write_backup(&ctx, Origin::chunk(shard), &records, &stop).await;
        }
    };
    let up = Upload {
        ctx: &ctx,
        shard,
        partition: partition.clone(),
        first,
        last,
        stop: &stop,
    };
    let records = match (contents, &cfg.destination) {
        (Contents::Records(records), _) => records,
        (Contents::Rows(rows), Destination::Object(o)) => {
            return match up.encode_rows(rows, partition, encoder, o).await {
                ControlFlow::Continue(out) => up.send(out, &waiting).await,
                ControlFlow::Break(finished) => finished,
            };
        }
        (Contents::Rows(_), _) => return rows_astray(&cfg.name, shard, first, last),
    };
    let out = match &cfg.destination {
        Destination::Object(o) => match up.encode(records, partition, encoder, o).await {
            ControlFlow::Continue(out) => out,
            ControlFlow::Break(finished) => return finished,
        },
        // HTTP, PostgreSQL and Iceberg take the records themselves; a
        // routed Iceberg stream's partition names the batch's table.
        _ => Outgoing {
            records: Held::Frames(records),
            body: bytes::Bytes::new(),
            key: partition.as_deref().unwrap_or_default().to_string(),
            format_refused: Vec::new(),
        },
    };
    up.send(out, &waiting).await
}

impl Upload<'_> {
    /// Delivers an encoded batch until it is finished with: delivered and
    /// committed, or given up on and in the error output. False: a hard
    /// stop came first, or the error output could not be written.
    async fn send(&self, out: Outgoing, waiting: &Waiting) -> bool {
        let (ctx, cfg, shard, first, last, stop) = (
            self.ctx,
            &self.ctx.config,
            self.shard,
            self.first,
            self.last,
            self.stop,
        );
        let up = self;
        let kind = cfg.destination.kind();
        let label = Metrics::destination(&cfg.name, kind);
        // Firehose's name where it has one.
        let failed_type = match kind {
            "http" => "http-endpoint-failed".to_string(),
            k => format!("{k}-failed"),
        };
        let mut out = out;
        loop {
            let (attempts, mut value) = match up.deliver(&out, &label).await {
                Outcome::Delivered { attempts, value } => (attempts, value),
                Outcome::GaveUp { attempts, error } => {
                    return up.gave_up(out, attempts, error, &failed_type, &label).await;
                }
                Outcome::Cancelled => return false,
            };
            let Some(pending) = value.pending.take() else {
                return up
                    .delivered(out, attempts, value, &failed_type, &label)
                    .await;
            };
            // Written; only the commit is awaited, holding as little as can be.
            out.records = out.records.shrink(ctx);
            let committed = tokio::select! {
                _ = stop.cancelled() => return false,
                r = waiting.wait(pending.0) => r,
            };
            match committed {
                Ok(()) => {
                    return up
                        .delivered(out, attempts, value, &failed_type, &label)
                        .await;
                }
                Err(PendingError::Failed(error)) => {
                    return up.gave_up(out, attempts, error, &failed_type, &label).await;
                }
                Err(PendingError::Replay(why)) => {
                    tracing::info!(stream = cfg.name, shard, first, last, reason = %why, "delivering the batch again");
                    let Some(records) = out.records.frames(ctx, shard, stop).await else {
                        return false;
                    };
                    out.records = Held::Frames(records);
                }
            }
        }
    }
}

/// The uploads of a shard that are written and wait for their commit.
#[derive(Clone, Default)]
pub(super) struct Waiting {
    count: Arc<std::sync::atomic::AtomicUsize>,
    started: Arc<tokio::sync::Notify>,
}

impl Waiting {
    pub(super) fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves when an upload started waiting (its slot is free).
    pub(super) async fn started(&self) {
        self.started.notified().await
    }

    /// Awaits `commit`, counted as waiting meanwhile.
    async fn wait<T>(&self, commit: impl std::future::Future<Output = T>) -> T {
        struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _counted = Counted(&self.count);
        self.started.notify_one();
        commit.await
    }
}

/// One batch's upload: what its steps share.
struct Upload<'a> {
    ctx: &'a StreamContext,
    shard: u32,
    partition: PartitionKey,
    /// The offsets of the batch's first and last records.
    first: u64,
    last: u64,
    stop: &'a CancellationToken,
}

/// A batch as it goes to the destination.
struct Outgoing {
    records: Held,
    /// The encoded object (object destinations; else empty).
    body: bytes::Bytes,
    /// The object's key (object destinations; else empty).
    key: String,
    /// Indices (ascending) of records the format refused: already in the
    /// error output, so not sent there again if the object later gives up.
    format_refused: Vec<usize>,
}

impl Upload<'_> {
    /// Where the batch's records come from, for the error output and the
    /// backup.
    fn origin(&self) -> Origin<'_> {
        Origin {
            shard: self.shard,
            partition: self.partition.as_deref(),
        }
    }

    /// Encodes the batch into an object, off the runtime, giving the
    /// encoding slot back once encoded; names the object. Records the
    /// format refuses go to the error output, and a batch that cannot be
    /// encoded at all goes there whole. Break: the upload ends, finished
    /// with or not.
    async fn encode(
        &self,
        records: Vec<Record>,
        partition: PartitionKey,
        encoder: Option<OwnedSemaphorePermit>,
        o: &ObjectDestination,
    ) -> ControlFlow<bool, Outgoing> {
        let (ctx, cfg, shard, first) = (self.ctx, &self.ctx.config, self.shard, self.first);
        let oldest_ms = records.iter().map(|f| f.arrival_ms).min().unwrap_or(0);
        let at = DateTime::<Utc>::from_timestamp_millis(oldest_ms).unwrap_or_else(Utc::now);
        let mut format_refused: Vec<usize> = Vec::new();
        let opts = cfg.encode_options();
        let ext = opts.extension();
        let encoded = crate::delivery::background(move || {
            let body = encode::encode_batch(&records, &opts);
            (records, body)
        })
        .await;
        drop(encoder);
        let (records, body) = match encoded {
            Ok((records, Ok(encoded))) if !encoded.rejected.is_empty() => {
                format_refused = self.refused_by_format(&records, &encoded.rejected).await?;
                (records, encoded.body)
            }
            Ok((records, Ok(encoded))) => (records, encoded.body),
            Ok((records, Err(e))) => {
                return ControlFlow::Break(self.encoding_failed(&records, &e).await);
            }
            Err(e) => {
                tracing::error!(stream = cfg.name, shard, first, error = %e, "encoding task failed");
                return ControlFlow::Break(false);
            }
        };
        ControlFlow::Continue(Outgoing {
            records: Held::after_encoding(ctx, records),
            body,
            key: self.object_key(&partition, at, o, &ext),
            format_refused,
        })
    }

    /// The object's key: under its partition's prefix, or the stream's
    /// rendered at `at`.
    fn object_key(
        &self,
        partition: &PartitionKey,
        at: DateTime<Utc>,
        o: &ObjectDestination,
        ext: &str,
    ) -> String {
        let prefix = match partition {
            Some(p) => finish_partition(p),
            None => o.prefix.render(at, None),
        };
        let name = object_name(
            &self.ctx.config.name,
            self.shard,
            self.first,
            self.last,
            ext,
        );
        format!("{prefix}{name}")
    }

    /// A batch that could not be encoded at all goes to the error output
    /// whole; whether it was written there.
    async fn encoding_failed(&self, records: &[Record], e: &std::io::Error) -> bool {
        let reason = format!("encoding failed: {e}");
        let failed: Vec<(&Record, String)> = records.iter().map(|r| (r, reason.clone())).collect();
        write_error_output(
            self.ctx,
            self.origin(),
            &failed,
            "format-conversion-failed",
            1,
            self.stop,
        )
        .await
    }

    /// Writes a batch of decoded rows into an object, off the runtime,
    /// giving the encoding slot back once written; names the object as
    /// [`Upload::encode`] does. The batch then holds only its records'
    /// offsets: the log keeps the records for the error output. Break: the
    /// encoding failed, and the records, read again from the log, went to
    /// the error output (true), or did not (false).
    async fn encode_rows(
        &self,
        rows: Rows,
        partition: PartitionKey,
        encoder: Option<OwnedSemaphorePermit>,
        o: &ObjectDestination,
    ) -> ControlFlow<bool, Outgoing> {
        let (ctx, cfg) = (self.ctx, &self.ctx.config);
        let opts = cfg.encode_options();
        let ext = opts.extension();
        // The rows are dropped where they were encoded: freeing their
        // arrays is delivery's work, not the producer-answering runtime's.
        let encoded = crate::delivery::background(move || {
            let body = encode::encode_rows(rows.batches(), &opts);
            (body, Held::in_log(rows.offsets()))
        })
        .await;
        drop(encoder);
        let (body, held) = match encoded {
            Ok((Ok(body), held)) => (body, held),
            Ok((Err(e), held)) => {
                let Some(records) = held.frames(ctx, self.shard, self.stop).await else {
                    return ControlFlow::Break(false);
                };
                return ControlFlow::Break(self.encoding_failed(&records, &e).await);
            }
            Err(e) => {
                tracing::error!(stream = cfg.name, shard = self.shard, first = self.first, error = %e, "encoding task failed");
                return ControlFlow::Break(false);
            }
        };
        ControlFlow::Continue(Outgoing {
            records: held,
            body,
            key: self.object_key(&partition, Utc::now(), o, &ext),
            format_refused: Vec::new(),
        })
    }

    /// Records the format refused (not fitting the Parquet schema) go to the
    /// error output; the rest are written. Their indices, sorted. Break: the
    /// upload ends (the error output was not written, or nothing is left).
    async fn refused_by_format(
        &self,
        records: &[Record],
        rejected: &[(usize, String)],
    ) -> ControlFlow<bool, Vec<usize>> {
        let (cfg, shard, first, last) = (&self.ctx.config, self.shard, self.first, self.last);
        let refused: Vec<(&Record, String)> = rejected
            .iter()
            .filter_map(|(i, why)| records.get(*i).map(|r| (r, why.clone())))
            .collect();
        tracing::warn!(stream = cfg.name, shard, first, last, refused = refused.len(), reason = %refused.first().map_or("", |r| r.1.as_str()), "records do not fit the format; sending them to the error output");
        if !write_error_output(
            self.ctx,
            self.origin(),
            &refused,
            "format-conversion-failed",
            1,
            self.stop,
        )
        .await
        {
            return ControlFlow::Break(false);
        }
        if refused.len() == records.len() {
            return ControlFlow::Break(true);
        }
        let mut format_refused: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        format_refused.sort_unstable();
        ControlFlow::Continue(format_refused)
    }

    /// Delivers the batch through the retry loop (until the stream's retry
    /// window closes or a hard stop comes), counting each retry.
    async fn deliver(&self, out: &Outgoing, label: &DestinationLabel) -> Outcome<Delivered> {
        let (ctx, cfg, shard, first, last) = (
            self.ctx,
            &self.ctx.config,
            self.shard,
            self.first,
            self.last,
        );
        let batch = Batch {
            stream: &cfg.name,
            log_id: ctx.log.id(),
            shard,
            first_offset: first,
            last_offset: last,
            key: &out.key,
            body: &out.body,
            records: match &out.records {
                Held::Frames(f) => f,
                Held::InLog { .. } => &[],
            },
        };
        let policy = RetryPolicy::new(cfg.retry_duration);
        retry(
            &policy,
            self.stop,
            |attempt, e| {
                tracing::warn!(stream = cfg.name, shard, first, last, attempt, destination = %ctx.sink.describe(), error = %e, "delivery failed; retrying");
                ctx.metrics.delivery_retries.get_or_create(label).inc();
                ctx.metrics
                    .delivery_last_error_timestamp_seconds
                    .get_or_create(label)
                    .set(Utc::now().timestamp());
                ctx.set_error(e.message.clone());
            },
            || ctx.sink.deliver(&batch),
        )
        .await
    }

    /// The destination took the batch: counts it, and writes the records it
    /// refused to the error output and, as configured, the batch to the
    /// backup.
    async fn delivered(
        &self,
        out: Outgoing,
        attempts: u32,
        value: Delivered,
        failed_type: &str,
        label: &DestinationLabel,
    ) -> bool {
        let (ctx, cfg, shard, first, last, stop) = (
            self.ctx,
            &self.ctx.config,
            self.shard,
            self.first,
            self.last,
            self.stop,
        );
        let Outgoing {
            records,
            body,
            key,
            format_refused,
        } = out;
        let failed_type = value.rejected_type.unwrap_or(failed_type);
        let m = &ctx.metrics;
        let accepted = records.len() - value.rejected.len() - format_refused.len();
        m.delivery_success.get_or_create(label).inc();
        m.delivery_records
            .get_or_create(label)
            .inc_by(accepted as u64);
        let bytes = match &records {
            Held::Frames(f) if body.is_empty() => f.iter().map(|r| r.data.len()).sum(),
            _ => body.len(),
        };
        m.delivery_bytes.get_or_create(label).inc_by(bytes as u64);
        ctx.delivered();
        tracing::debug!(stream = cfg.name, shard, first, last, key, bytes, rejected = value.rejected.len(), destination = %ctx.sink.describe(), "delivered");
        // The delivered records are the source records unless a
        // transform made them; then the sources were backed up as read.
        let backup_all = ctx.backup_mode() == Some(BackupMode::All) && !ctx.backs_up_sources();
        if value.rejected.is_empty() && !backup_all {
            return true;
        }
        let Some(records) = records.frames(ctx, shard, stop).await else {
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
            ok &= write_error_output(ctx, self.origin(), &rejected, failed_type, attempts, stop)
                .await;
        }
        ok &= match ctx.backup_mode() {
            Some(BackupMode::All) if backup_all => {
                write_backup(
                    ctx,
                    self.origin(),
                    &records.iter().collect::<Vec<_>>(),
                    stop,
                )
                .await
            }
            Some(BackupMode::FailedOnly) if !rejected.is_empty() => {
                write_backup(
                    ctx,
                    self.origin(),
                    &rejected.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
                    stop,
                )
                .await
            }
            _ => true,
        };
        ok
    }

    /// The retry window closed: the batch goes to the error output (less
    /// what the format refused, already there) and, with a backup of
    /// failed data, to the backup.
    async fn gave_up(
        &self,
        out: Outgoing,
        attempts: u32,
        error: SinkError,
        failed_type: &str,
        label: &DestinationLabel,
    ) -> bool {
        let (ctx, cfg, shard, first, last, stop) = (
            self.ctx,
            &self.ctx.config,
            self.shard,
            self.first,
            self.last,
            self.stop,
        );
        ctx.metrics.delivery_failure.get_or_create(label).inc();
        tracing::error!(stream = cfg.name, shard, first, last, attempts, destination = %ctx.sink.describe(), error = %error, "retry window closed; sending the batch to the error output");
        let Some(records) = out.records.frames(ctx, shard, stop).await else {
            return false;
        };
        let failed: Vec<(&Record, String)> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| out.format_refused.binary_search(i).is_err())
            .map(|(_, r)| (r, error.message.clone()))
            .collect();
        let origin = self.origin();
        let mut ok = write_error_output(ctx, origin, &failed, failed_type, attempts, stop).await;
        if ctx.backup_mode().is_some() && !ctx.backs_up_sources() {
            ok &= write_backup(ctx, origin, &records.iter().collect::<Vec<_>>(), stop).await;
        }
        ok
    }
}
