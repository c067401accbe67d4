//! Delivering a Kinesis stream's shards in lineage order: a shard is read
//! only once every parent it was split or merged from has been delivered to
//! its end, so the records of one partition key reach the destination in
//! the order they were put, across splits and merges.
//!
//! The supervisor follows the stream's shard map: it starts the delivery of
//! each shard whose parents are done, learns of new shards as the stream is
//! resharded, and on restart finds where it was from the checkpoints alone
//! (a closed shard checkpointed at its end is done at once).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::StreamContext;
use super::shard::{self, ShardEnd};
use crate::kinesis::shards::Layout;

/// Runs the shards of `layouts`' stream, each once its parents are done,
/// until drained or stopped.
pub(super) async fn supervise(
    ctx: Arc<StreamContext>,
    mut layouts: watch::Receiver<Arc<Layout>>,
    drain: CancellationToken,
    stop: CancellationToken,
) {
    let mut tasks: JoinSet<(u32, ShardEnd)> = JoinSet::new();
    let mut started = BTreeSet::new();
    let mut done = BTreeSet::new();
    let mut layout_open = true;
    loop {
        if !drain.is_cancelled() && !stop.is_cancelled() {
            let layout = layouts.borrow_and_update().clone();
            for s in layout.map.all() {
                if started.contains(&s.index) || !s.parents().all(|p| done.contains(&p)) {
                    continue;
                }
                started.insert(s.index);
                let (ctx, drain, stop, index) = (ctx.clone(), drain.clone(), stop.clone(), s.index);
                tasks.spawn(async move { (index, shard::run(ctx, index, drain, stop).await) });
            }
        } else if tasks.is_empty() {
            break;
        }
        tokio::select! {
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => match ended {
                Ok((index, ShardEnd::Done)) => {
                    tracing::info!(stream = ctx.config.name, shard = index, "closed shard delivered to its end");
                    done.insert(index);
                }
                Ok((_, ShardEnd::Stopped)) => {}
                Err(e) => tracing::error!(stream = ctx.config.name, error = %e, "shard delivery task failed"),
            },
            changed = layouts.changed(), if layout_open && !drain.is_cancelled() => {
                // The stream is gone when its sender is: no new shards then.
                layout_open = changed.is_ok();
            }
            _ = drain.cancelled(), if !drain.is_cancelled() => {}
            _ = stop.cancelled(), if !stop.is_cancelled() => {}
        }
    }
}
