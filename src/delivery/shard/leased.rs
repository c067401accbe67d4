//! A shard's delivery in cluster mode: only the node holding the shard's
//! lease delivers it, and it stops the moment it loses the lease.
//!
//! Every node runs this for every shard. It waits until the lease is free
//! or expired, takes it, renews it every third of its ttl, and runs the
//! delivery loop with the lease as its checkpoint. If a renewal or a
//! checkpoint write is refused (another node took the lease: this node was
//! paused or cut off past the ttl), the loop stops at once without writing
//! anything more, and the node goes back to waiting. A drained shard gives
//! its lease up so another node takes over without waiting out the ttl. A
//! closed shard whose lease records its end is done, whoever delivered it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{ShardEnd, run_with};
use crate::delivery::StreamContext;
use crate::log::jetstream::{Lease, LeaseError, Leases};

pub(super) async fn run(
    ctx: Arc<StreamContext>,
    shard: u32,
    drain: CancellationToken,
    stop: CancellationToken,
    leases: Arc<Leases>,
    key: String,
) -> ShardEnd {
    let stream = ctx.config.name.clone();
    let Some(log) = ctx.log.shard(shard) else {
        tracing::error!(stream, shard, "no such shard in the log");
        return ShardEnd::Stopped;
    };
    let poll = leases.ttl() / 3;
    loop {
        if drain.is_cancelled() || stop.is_cancelled() {
            return ShardEnd::Stopped;
        }
        if let Ok(Some((s, _))) = leases.peek(&key).await
            && log.is_sealed()
            && s.offset.is_some_and(|o| o >= log.durable_end())
        {
            return ShardEnd::Done;
        }
        match leases.try_acquire(&key).await {
            Ok(Some(lease)) => {
                tracing::info!(
                    stream,
                    shard,
                    node = leases.node(),
                    "took the shard's delivery lease"
                );
                let lease = Arc::new(lease);
                let held = stop.child_token();
                let renewer = tokio::spawn(renew(lease.clone(), held.clone(), poll, leases.ttl()));
                let end = run_with(
                    &ctx,
                    shard,
                    drain.clone(),
                    held.clone(),
                    Some(lease.clone()),
                )
                .await;
                renewer.abort();
                let lost = held.is_cancelled() && !stop.is_cancelled();
                if !lost {
                    if let Err(e) = lease.release().await {
                        tracing::debug!(stream, shard, error = %e, "cannot give the lease up; it lapses");
                    }
                    return end;
                }
                tracing::warn!(
                    stream,
                    shard,
                    node = leases.node(),
                    "lost the shard's delivery lease to another node"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(stream, shard, error = %e, "cannot read the shard's lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = drain.cancelled() => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Renews `lease` every `every` until it is refused (cancels `held`), or
/// until renewals have failed for so long that another node may already
/// hold it (also cancels `held`: better to pause delivery than to deliver
/// twice).
async fn renew(lease: Arc<Lease>, held: CancellationToken, every: Duration, ttl: Duration) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = held.cancelled() => return,
        }
        match lease.renew().await {
            Ok(()) => last_ok = Instant::now(),
            Err(LeaseError::Fenced(key)) => {
                tracing::warn!(key, "lease renewal refused: another node holds it");
                held.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew a delivery lease");
                if last_ok.elapsed() > ttl * 2 / 3 {
                    held.cancel();
                    return;
                }
            }
        }
    }
}
