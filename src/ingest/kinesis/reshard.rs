//! The resharding operations: `SplitShard`, `MergeShards`,
//! `UpdateShardCount` (`UNIFORM_SCALING`) and `UpdateStreamMode`. They are
//! synchronous: when one answers, the stream's shards have changed and the
//! stream is `ACTIVE` again, so `UPDATING` is never seen (see
//! `kinesis::reshard` for how a reshard closes its parents atomically).

use serde_json::{Value, json};

use super::{Req, from_kinesis, violation};
use crate::aws::{ACCOUNT, kinesis_stream_arn};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::KinesisStream;
use crate::kinesis::position::{parse_hash_key, parse_shard_id};
use crate::kinesis::reshard::Reshard;
use crate::metrics::Metrics;

/// Counts a reshard that was made.
fn count(state: &AppState, s: &KinesisStream) {
    state
        .registry
        .metrics
        .kinesis_reshards
        .get_or_create(&Metrics::stream(&s.name))
        .inc();
}

/// A `ShardId` field: well formed, or Kinesis's "not found" for the stream.
fn shard_field(
    req: &Req<'_>,
    s: &KinesisStream,
    field: &str,
    model: &str,
) -> Result<u32, ApiError> {
    let id = req.required_str(field, model)?;
    if id.is_empty() || id.len() > 128 {
        return Err(violation(
            model,
            id,
            "Member must have length between 1 and 128",
        ));
    }
    parse_shard_id(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "Could not find shard {id} in stream {} under account {ACCOUNT}.",
            s.name
        ))
    })
}

/// Splits, merges and `UpdateShardCount` are for provisioned streams.
fn provisioned(s: &KinesisStream, op: &str) -> Result<(), ApiError> {
    if s.on_demand() {
        return Err(ApiError::invalid_argument(format!(
            "{op} is not supported for stream {} under account {ACCOUNT}: it is in ON_DEMAND mode, whose shards Hydrant splits itself",
            s.name
        )));
    }
    Ok(())
}

pub(super) async fn split_shard(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let shard = shard_field(&req, &s, "ShardToSplit", "shardToSplit")?;
    let key = req.required_str("NewStartingHashKey", "newStartingHashKey")?;
    let new_start = parse_hash_key(key).ok_or_else(|| {
        violation(
            "newStartingHashKey",
            key,
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        )
    })?;
    provisioned(&s, "SplitShard")?;
    state
        .registry
        .reshard_kinesis(&s, Reshard::Split { shard, new_start })
        .await
        .map_err(from_kinesis)?;
    count(state, &s);
    Ok(json!({}))
}

pub(super) async fn merge_shards(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let shard = shard_field(&req, &s, "ShardToMerge", "shardToMerge")?;
    let adjacent = shard_field(&req, &s, "AdjacentShardToMerge", "adjacentShardToMerge")?;
    provisioned(&s, "MergeShards")?;
    state
        .registry
        .reshard_kinesis(&s, Reshard::Merge { shard, adjacent })
        .await
        .map_err(from_kinesis)?;
    count(state, &s);
    Ok(json!({}))
}

pub(super) async fn update_shard_count(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let target = req
        .int("TargetShardCount")?
        .ok_or_else(|| super::missing("targetShardCount"))?;
    if target < 1 {
        return Err(violation(
            "targetShardCount",
            target,
            "Member must have value greater than or equal to 1",
        ));
    }
    match req.required_str("ScalingType", "scalingType")? {
        "UNIFORM_SCALING" => {}
        other => {
            return Err(violation(
                "scalingType",
                other,
                "Member must satisfy enum value set: [UNIFORM_SCALING]",
            ));
        }
    }
    provisioned(&s, "UpdateShardCount")?;
    let target = u32::try_from(target).unwrap_or(u32::MAX);
    let current = state
        .registry
        .reshard_kinesis(&s, Reshard::Uniform { target })
        .await
        .map_err(from_kinesis)?;
    count(state, &s);
    Ok(json!({
        "StreamName": s.name,
        "StreamARN": kinesis_stream_arn(&s.name),
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }))
}

pub(super) async fn update_stream_mode(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    if req.str("StreamARN")?.is_none() {
        return Err(super::missing("streamARN"));
    }
    let s = req.stream(state)?;
    let mode = req
        .0
        .get("StreamModeDetails")
        .filter(|m| !m.is_null())
        .ok_or_else(|| super::missing("streamModeDetails"))?
        .get("StreamMode")
        .and_then(Value::as_str);
    let on_demand = match mode {
        Some("PROVISIONED") => false,
        Some("ON_DEMAND") => true,
        other => {
            return Err(violation(
                "streamModeDetails.streamMode",
                other.unwrap_or("null"),
                "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
            ));
        }
    };
    if s.on_demand() == on_demand {
        return Err(ApiError::invalid_argument(format!(
            "Stream {} under account {ACCOUNT} is already in {} mode",
            s.name,
            mode.unwrap_or_default()
        )));
    }
    s.update(|spec| {
        spec.on_demand = on_demand;
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}
