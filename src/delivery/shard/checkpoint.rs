//! The shard's checkpoint: which uploads finished, how far the checkpoint
//! may move, and writing it. The checkpoint moves only past records the
//! destination (or the error output) confirmed: never past a batch still
//! open, uploading, or abandoned at a hard stop, nor past what was read.
//! On the stream's own log, the segments below it are deleted first.

use std::collections::BTreeMap;

use super::upload::Uploading;
use super::{Ckpt, ShardLoop};
use crate::log::jetstream::{Lease, LeaseError};
use crate::log::{ShardLog, checkpoint};

/// Where the shard's delivery starts: its checkpoint, or the oldest record
/// in the log when there is none or it is unreadable, and never below the
/// oldest record the log still has. None if the read task failed (logged).
pub(super) async fn start(stream: &str, shard: u32, log: &ShardLog, ckpt: &Ckpt) -> Option<u64> {
    let path = match ckpt {
        Ckpt::File(p) => p,
        Ckpt::Lease(l) => {
            return Some(
                l.offset()
                    .await
                    .unwrap_or_else(|| log.oldest_offset())
                    .max(log.oldest_offset()),
            );
        }
    };
    let start = {
        let p = path.to_path_buf();
        match tokio::task::spawn_blocking(move || checkpoint::read(&p)).await {
            Ok(Ok(Some(o))) => o,
            Ok(Ok(None)) => log.oldest_offset(),
            Ok(Err(e)) => {
                tracing::error!(stream, shard, error = %e, "checkpoint unreadable; redelivering from the oldest record in the log");
                log.oldest_offset()
            }
            Err(e) => {
                tracing::error!(stream, shard, error = %e, "checkpoint read task failed");
                return None;
            }
        }
    };
    Some(start.max(log.oldest_offset()))
}

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

impl ShardLoop<'_> {
    /// Notes the uploads that ended since the last step, and commits if any
    /// of them finished.
    pub(super) async fn collect_finished(&mut self) {
        let mut finished = false;
        while let Some(res) = self.inflight.try_join_next() {
            finished |= complete(&self.stream, self.shard, res, &mut self.inflight_firsts);
        }
        if finished {
            self.commit().await;
        }
    }

    /// Moves the checkpoint to the lowest offset not yet confirmed: the
    /// first of the oldest upload, of the batcher's records, or the read
    /// position.
    pub(super) async fn commit(&mut self) {
        let (ctx, shard, read_pos) = (self.ctx, self.shard, self.read_pos);
        let safe = [
            self.inflight_firsts.keys().next().map(|u| u.first),
            self.batcher.lowest_offset(),
            Some(read_pos),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(read_pos);
        if safe <= self.committed {
            return;
        }
        // Delete first: everything below `safe` is confirmed, so the segments can
        // go before the checkpoint says so (on restart delivery starts at the
        // later of checkpoint and oldest segment). On a full disk this frees the
        // space the checkpoint's temp file needs; the other order could never
        // free anything. Retention is 0 for a delivery stream; a Kinesis
        // stream's log, shared with other readers, is trimmed by its retention.
        let file = match &self.ckpt {
            Ckpt::File(p) => Some(p.clone()),
            Ckpt::Lease(_) => None,
        };
        let stream_log = ctx.log.clone();
        let owns_log = ctx.owns_log;
        let consumer = ctx.consumer.clone();
        let done = crate::delivery::background(move || {
            // Another reader of the log (a SQL application) holds what it
            // has not read yet.
            let keep = checkpoint::lowest_of_others(stream_log.dir(), shard, &consumer)
                .map_or(safe, |o| o.min(safe));
            let deleted = owns_log
                .then(|| stream_log.shard(shard).map(|l| l.delete_before(keep)))
                .flatten();
            let written = file.map(|p| checkpoint::write(&p, safe).map_err(|e| e.to_string()));
            (deleted, written)
        })
        .await;
        let (deleted, file_written) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(stream = ctx.config.name, shard, error = %e, "checkpoint task failed");
                return;
            }
        };
        if let Some(Err(e)) = deleted {
            tracing::warn!(stream = ctx.config.name, shard, error = %e, "cannot delete delivered segments");
        }
        let written = match &self.ckpt {
            Ckpt::File(_) => file_written.unwrap_or(Ok(())),
            Ckpt::Lease(lease) => {
                let lease = lease.clone();
                self.write_lease(&lease, safe).await
            }
        };
        match written {
            Ok(()) => self.committed = safe,
            Err(e) => {
                tracing::error!(stream = ctx.config.name, shard, error = %e, "cannot write checkpoint");
                ctx.set_error(format!("shard {shard}: cannot write checkpoint: {e}"));
            }
        }
    }

    /// Moves the checkpoint in the shard's lease. Refused once another node
    /// took the lease: the loop then stops at once, leaving what is in
    /// flight to that node.
    async fn write_lease(&self, lease: &Lease, safe: u64) -> Result<(), String> {
        let written = lease.checkpoint(safe).await;
        if let Err(LeaseError::Fenced(_)) = &written {
            tracing::warn!(
                stream = self.ctx.config.name,
                shard = self.shard,
                "lost the shard's lease; its checkpoint write was refused; stopping"
            );
            self.stop.cancel();
        }
        written.map_err(|e| e.to_string())
    }
}
