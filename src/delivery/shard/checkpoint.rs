//! The shard's checkpoint: which uploads finished, how far the checkpoint
//! may move, and writing it. The checkpoint moves only past records the
//! destination (or the error output) confirmed: never past a batch still
//! open, uploading, or abandoned at a hard stop, nor past what was read.
//! On the stream's own log, the segments below it are deleted first.

use std::collections::BTreeMap;

use super::upload::Uploading;
use crate::delivery::StreamContext;
use crate::delivery::batcher::Batcher;
use crate::log::checkpoint;

/// Records an upload's end; true if it finished (delivered or in the error
/// output) so the checkpoint may move.
pub(super) fn complete(
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
pub(super) async fn commit(
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
    let done = crate::delivery::background(move || {
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
