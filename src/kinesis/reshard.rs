//! Resharding a running stream: `SplitShard`, `MergeShards` and
//! `UpdateShardCount`'s uniform scaling, made of splits and merges.
//!
//! A reshard is synchronous and atomic. It takes the stream's gate alone,
//! so no put is in flight: every record acknowledged before it is durable in
//! its parent. It then seals each parent (its log takes no more records and
//! its end is the offset it reached), opens the children's logs, writes the
//! new shard map into the stream's definition (atomically: a crash before
//! that leaves the old shards, a crash after it the new ones) and only then
//! publishes the map, so the next put goes to a child. A failure between
//! the seal and the write leaves the definition as it was; the next start
//! opens the stream as that definition says and removes the children's
//! empty logs.

use std::sync::Arc;

use super::shards::{Layout, ReshardError, ShardMap, Step, next_uniform_step};
use super::{Bucket, KinesisError, KinesisStream, Streams};
use crate::aws::ACCOUNT;
use crate::kinesis::position::shard_id;

/// A change of a stream's shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reshard {
    Split {
        shard: u32,
        new_start: u128,
    },
    Merge {
        shard: u32,
        adjacent: u32,
    },
    /// `UpdateShardCount` with `UNIFORM_SCALING`.
    Uniform {
        target: u32,
    },
}

/// How long `UpdateShardCount`'s per-stream rate limit looks back.
const SCALING_WINDOW_MS: i64 = 24 * 3600 * 1000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Streams {
    /// Applies `op` to stream `s`; returns the open shards it had before.
    /// The caller serializes reshards with stream creation and deletion.
    pub async fn reshard(&self, s: &Arc<KinesisStream>, op: Reshard) -> Result<u32, KinesisError> {
        // In cluster mode one node at a time reshards a stream.
        let exclusive = super::shared::exclusive(self, s).await?;
        let done = self.reshard_alone(s, op).await;
        if let Some(lease) = exclusive
            && let Err(e) = lease.release().await
        {
            tracing::debug!(stream = s.name, error = %e, "cannot release the reshard lease; it lapses");
        }
        done
    }

    async fn reshard_alone(
        &self,
        s: &Arc<KinesisStream>,
        op: Reshard,
    ) -> Result<u32, KinesisError> {
        let before = s.layout();
        let open = before.map.open_count();
        self.check(s, &before.map, op)?;
        let _alone = s.gate.write().await;
        let now = now_ms();
        let mut map = s.layout().map.clone();
        if s.log.shard_count() != map.len() {
            return Err(KinesisError::Io {
                stream: s.name.clone(),
                message: "an earlier reshard did not complete; restart the daemon to recover the stream's shards".into(),
            });
        }
        match op {
            Reshard::Split { shard, new_start } => {
                split(s, &mut map, shard, new_start, now).await?
            }
            Reshard::Merge { shard, adjacent } => merge(s, &mut map, shard, adjacent, now).await?,
            Reshard::Uniform { target } => {
                while let Some(step) = next_uniform_step(&map, target) {
                    match step {
                        Step::Split { shard, new_start } => {
                            split(s, &mut map, shard, new_start, now).await?
                        }
                        Step::Merge { shard, adjacent } => {
                            merge(s, &mut map, shard, adjacent, now).await?
                        }
                    }
                }
            }
        }
        crate::failpoint::hit("reshard-before-persist");
        s.update(|spec| {
            spec.shard_map = Some(map.clone());
            if matches!(op, Reshard::Uniform { .. }) {
                spec.scalings_ms.retain(|t| now - t < SCALING_WINDOW_MS);
                spec.scalings_ms.push(now);
            }
            Ok(())
        })?;
        if let Some(limits) = &s.limits {
            let mut l = limits.write().unwrap_or_else(|p| p.into_inner());
            while (l.len() as u32) < map.len() {
                l.push(std::sync::Mutex::new(Bucket::full()));
            }
        }
        tracing::info!(
            stream = s.name,
            ?op,
            open_before = open,
            open_after = map.open_count(),
            "resharded"
        );
        s.layout.send_replace(Arc::new(Layout::new(map)));
        Ok(open)
    }

    /// Refuses a reshard Kinesis would refuse, before anything changes.
    fn check(&self, s: &KinesisStream, map: &ShardMap, op: Reshard) -> Result<(), KinesisError> {
        let shard_error = |e: ReshardError| reshard_error(s, map, e);
        let open = map.open_count();
        let added = match op {
            Reshard::Split { shard, new_start } => {
                map.check_split(shard, new_start).map_err(shard_error)?;
                1
            }
            Reshard::Merge { shard, adjacent } => {
                map.check_merge(shard, adjacent).map_err(shard_error)?;
                0
            }
            Reshard::Uniform { target } => {
                self.check_scaling(s, open, target)?;
                target.saturating_sub(open)
            }
        };
        let in_use = self.shards_in_use();
        if added > 0 && in_use + added > self.opts.shards_max {
            return Err(KinesisError::Limit(format!(
                "This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. Current shard count for the account: {in_use}. Limit: {}. Number of additional shards that would have resulted from this request: {added}. (kinesis.shards_max)",
                self.opts.shards_max
            )));
        }
        if added > 0 && open + added > self.opts.stream_shards_max {
            return Err(KinesisError::Limit(format!(
                "Stream {} under account {ACCOUNT} would have {} open shards, more than the {} a stream may have (kinesis.stream_shards_max)",
                s.name,
                open + added,
                self.opts.stream_shards_max
            )));
        }
        Ok(())
    }

    /// `UpdateShardCount`'s own limits: at most double, at least half the
    /// open shards, and a bounded number of scalings a day.
    fn check_scaling(&self, s: &KinesisStream, open: u32, target: u32) -> Result<(), KinesisError> {
        if target > open.saturating_mul(2) {
            return Err(KinesisError::Invalid(format!(
                "UpdateShardCount cannot scale stream {} under account {ACCOUNT} to {target} shards: at most double the current {open} open shards",
                s.name
            )));
        }
        if target < open.div_ceil(2) {
            return Err(KinesisError::Invalid(format!(
                "UpdateShardCount cannot scale stream {} under account {ACCOUNT} to {target} shards: at least half the current {open} open shards",
                s.name
            )));
        }
        let now = now_ms();
        let recent = s
            .spec()
            .scalings_ms
            .iter()
            .filter(|t| now - **t < SCALING_WINDOW_MS)
            .count();
        if recent >= self.opts.scalings_per_day_max as usize {
            return Err(KinesisError::Limit(format!(
                "Stream {} under account {ACCOUNT} was scaled {recent} times in the last 24 hours, the most allowed (kinesis.scalings_per_day_max)",
                s.name
            )));
        }
        Ok(())
    }
}

/// Kinesis's answer to a split or merge the shard map refuses.
fn reshard_error(s: &KinesisStream, map: &ShardMap, e: ReshardError) -> KinesisError {
    match e {
        ReshardError::NoShard(i) => KinesisError::ResourceNotFound(format!(
            "Could not find shard {} in stream {} under account {ACCOUNT}.",
            shard_id(i),
            s.name
        )),
        ReshardError::Closed(i) => KinesisError::Invalid(format!(
            "Shard {} in stream {} under account {ACCOUNT} has already been merged or split, and thus is not eligible for merging or splitting.",
            shard_id(i),
            s.name
        )),
        ReshardError::SplitKey(i) => {
            let (start, end) = map.get(i).map_or((0, 0), |x| (x.hash_start, x.hash_end));
            KinesisError::Invalid(format!(
                "NewStartingHashKey used in SplitShard() on shard {} in stream {} under account {ACCOUNT} is not both greater than one plus the shard's StartingHashKey {start} and less than or equal to the shard's EndingHashKey {end}.",
                shard_id(i),
                s.name
            ))
        }
        ReshardError::NotAdjacent(a, b) => KinesisError::Invalid(format!(
            "Shards {} and {} in stream {} under account {ACCOUNT} are not an adjacent pair of shards eligible for merging",
            shard_id(a),
            shard_id(b),
            s.name
        )),
    }
}

fn io(s: &KinesisStream, message: String) -> KinesisError {
    KinesisError::Io {
        stream: s.name.clone(),
        message,
    }
}

/// Seals shard `i`'s log: its end offset.
async fn seal(s: &KinesisStream, i: u32) -> Result<u64, KinesisError> {
    let log = s
        .log
        .shard(i)
        .ok_or_else(|| io(s, format!("shard {i} has no log")))?;
    log.seal().await.map_err(|e| io(s, e.to_string()))
}

/// Opens the log of the next shard, which must be the map's next index.
fn add_shard(s: &KinesisStream, expected: u32) -> Result<(), KinesisError> {
    let log = s.log.add_shard().map_err(|e| io(s, e.to_string()))?;
    if log.shard() != expected {
        return Err(io(
            s,
            format!(
                "opened shard {} where shard {expected} was due",
                log.shard()
            ),
        ));
    }
    Ok(())
}

async fn split(
    s: &KinesisStream,
    map: &mut ShardMap,
    shard: u32,
    new_start: u128,
    now: i64,
) -> Result<(), KinesisError> {
    let end = seal(s, shard).await?;
    add_shard(s, map.len())?;
    add_shard(s, map.len() + 1)?;
    map.split(shard, new_start, end, now)
        .map_err(|e| reshard_error(s, map, e))?;
    Ok(())
}

async fn merge(
    s: &KinesisStream,
    map: &mut ShardMap,
    shard: u32,
    adjacent: u32,
    now: i64,
) -> Result<(), KinesisError> {
    let a_end = seal(s, shard).await?;
    let b_end = seal(s, adjacent).await?;
    add_shard(s, map.len())?;
    map.merge((shard, a_end), (adjacent, b_end), now)
        .map_err(|e| reshard_error(s, map, e))?;
    Ok(())
}
