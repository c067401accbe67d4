//! What an uploading batch keeps of its records: the records themselves, or,
//! once encoded, only where they are in the log, read again from it should
//! the batch go to the error output. Records are held by their place in the
//! log only where the log keeps the same records until the checkpoint passes
//! the batch; a read again returns every record of the batch or an error,
//! never fewer.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::read::{READ_BYTES_MAX, READ_RECORDS_MAX};
use crate::delivery::StreamContext;
use crate::record::Record;
use crate::sink::SinkError;
use crate::sink::retry::{Outcome, retry_forever};

/// A batch's records while its encoded body is delivered.
pub(super) enum Held {
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
    /// A Kinesis stream's log is never the stream's own, and it holds KPL
    /// aggregates where the batch holds their user records, so its batches
    /// are always held whole.
    pub(super) fn after_encoding(ctx: &StreamContext, records: Vec<Record>) -> Held {
        if !ctx.offsets_suffice() {
            return Held::Frames(records);
        }
        Held::InLog {
            runs: offset_runs(&records),
            count: records.len(),
        }
    }

    /// A batch held by its records' offsets (ascending), which the log
    /// keeps until the checkpoint passes the batch.
    pub(super) fn in_log(offsets: &[u64]) -> Held {
        Held::InLog {
            runs: runs_of(offsets.iter().copied()),
            count: offsets.len(),
        }
    }

    /// What to keep of a batch once delivered but not yet confirmed (its
    /// commit awaited): as after encoding.
    pub(super) fn shrink(self, ctx: &StreamContext) -> Held {
        match self {
            Held::Frames(f) => Held::after_encoding(ctx, f),
            held => held,
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Held::Frames(f) => f.len(),
            Held::InLog { count, .. } => *count,
        }
    }

    /// The records, read again from the log if need be (through the retry
    /// loop until read, as the error output is; a hard stop: `None`).
    pub(super) async fn frames(
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
                    let message = match crate::delivery::background(move || reread(&log, shard, &runs, count)).await {
                        Ok(Ok(frames)) => return Ok(frames),
                        Ok(Err(e)) => e,
                        Err(e) => format!("log read task failed: {e}"),
                    };
                    Err(SinkError {
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
pub(super) fn offset_runs(records: &[Record]) -> Vec<(u64, u64)> {
    runs_of(records.iter().map(|f| f.offset))
}

/// Ascending offsets as runs (first, last) of consecutive ones.
fn runs_of(offsets: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for o in offsets {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == o => *last = o,
            _ => runs.push((o, o)),
        }
    }
    runs
}

/// Reads the records at `runs` (sorted, inclusive) from a shard's log.
pub(super) fn reread(
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
