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
//!
//! The leases even out over the live nodes: a node that holds its share
//! (the leases over the nodes, rounded up) leaves a free lease to the
//! others for two ttls, and a node over its share drains one shard at a
//! time and gives its lease up.

use std::sync::Arc;
use std::time::Instant;

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
    // Since when this node, holding its share, has left the lease free.
    let mut free_since: Option<Instant> = None;
    loop {
        if drain.is_cancelled() || stop.is_cancelled() {
            return ShardEnd::Stopped;
        }
        let taken = match leases.peek(&key).await {
            Ok(current) => {
                if let Some((s, _)) = &current {
                    if log.is_sealed() && s.offset.is_some_and(|o| o >= log.durable_end()) {
                        return ShardEnd::Done;
                    }
                    if s.held_by_other(leases.node()) {
                        // Held elsewhere: nothing to take, nor to defer.
                        free_since = None;
                    }
                }
                let defer = leases.at_share()
                    && free_since.get_or_insert_with(Instant::now).elapsed() < leases.ttl() * 2;
                if defer {
                    Ok(None)
                } else {
                    leases.try_take(&key, current).await
                }
            }
            Err(e) => Err(e),
        };
        match taken {
            Ok(Some(lease)) => {
                free_since = None;
                tracing::info!(
                    stream,
                    shard,
                    node = leases.node(),
                    "took the shard's delivery lease"
                );
                match hold(&ctx, shard, &drain, &stop, &leases, lease).await {
                    Held::Ended(end) => return end,
                    Held::Lost => {
                        tracing::warn!(
                            stream,
                            shard,
                            node = leases.node(),
                            "lost the shard's delivery lease to another node"
                        )
                    }
                    Held::Shed => {
                        tracing::info!(
                            stream,
                            shard,
                            node = leases.node(),
                            "gave the shard's lease up to even the load out"
                        );
                        // Leave it to the others first.
                        tokio::select! {
                            _ = tokio::time::sleep(leases.ttl()) => {}
                            _ = drain.cancelled() => {}
                            _ = stop.cancelled() => {}
                        }
                        continue;
                    }
                }
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

/// How holding a lease ended.
enum Held {
    /// The shard's delivery ended (drained, stopped, or done): return this.
    Ended(ShardEnd),
    /// Another node took the lease.
    Lost,
    /// This node gave the lease up to even the load out.
    Shed,
}

/// Delivers the shard while holding `lease`.
async fn hold(
    ctx: &Arc<StreamContext>,
    shard: u32,
    drain: &CancellationToken,
    stop: &CancellationToken,
    leases: &Arc<Leases>,
    lease: Lease,
) -> Held {
    let lease = Arc::new(lease);
    let held = stop.child_token();
    let shed = drain.child_token();
    let renewer = tokio::spawn(renew(
        lease.clone(),
        leases.clone(),
        held.clone(),
        shed.clone(),
    ));
    let end = run_with(ctx, shard, shed.clone(), held.clone(), Some(lease.clone())).await;
    renewer.abort();
    if held.is_cancelled() && !stop.is_cancelled() {
        return Held::Lost;
    }
    if let Err(e) = lease.release().await {
        tracing::debug!(shard, error = %e, "cannot give the lease up; it lapses");
    }
    let shedding = shed.is_cancelled() && !drain.is_cancelled() && end != ShardEnd::Done;
    if shed.is_cancelled() && !drain.is_cancelled() {
        leases.done_shedding();
    }
    if shedding {
        Held::Shed
    } else {
        Held::Ended(end)
    }
}

/// Renews `lease` every third of its ttl until it is refused (cancels
/// `held`), or until renewals have failed for so long that another node may
/// already hold it (also cancels `held`: better to pause delivery than to
/// deliver twice). Cancels `shed` when this node holds more than its share.
async fn renew(
    lease: Arc<Lease>,
    leases: Arc<Leases>,
    held: CancellationToken,
    shed: CancellationToken,
) {
    let ttl = leases.ttl();
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
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
        if !shed.is_cancelled() && leases.start_shedding() {
            shed.cancel();
        }
    }
}
