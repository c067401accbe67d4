//! Reading a shard's durable records and preparing them for batching:
//! the transform and the partitioner run here, beside the read, off the
//! async runtime. A read never moves the checkpoint; a read error reopens
//! the log where it stopped (or at the oldest record, if the log was
//! trimmed under it) and never skips records the log still has.

use crate::delivery::StreamContext;
use crate::log::{LogError, ShardReader};
use crate::record::Record;
use crate::route::partition::RouteScratch;

/// Records and bytes taken from the log in one blocking read.
pub(super) const READ_RECORDS_MAX: usize = 10_000;
pub(super) const READ_BYTES_MAX: usize = 4 << 20;

/// What happens next to a record read from the log.
pub(super) enum Step {
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
    pub(super) frames: Vec<Record>,
    pub(super) prepared: Vec<(Record, Step)>,
}

/// Runs the transform and the partitioner over records just read (taking
/// them out of `frames`), into `out`. Blocking.
pub(super) fn prepare(
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

pub(super) fn handle_read_error(
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
