//! The stream operations: `CreateStream`, `DeleteStream`, `ListStreams`,
//! `DescribeStream`, `DescribeStreamSummary`, `ListShards`, and
//! `IncreaseStreamRetentionPeriod` / `DecreaseStreamRetentionPeriod`. They
//! change or describe a stream's spec; no record passes through here.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Req, check_name, decode_token, encode_token, from_kinesis, missing, not_found, now_ms, seconds,
    tags, timestamp_ms, violation,
};
use crate::aws::kinesis_stream_arn;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::position::{SequenceNumber, parse_shard_id, shard_id};
use crate::kinesis::shards::{ShardInfo, ShardMap};
use crate::kinesis::{self, KinesisError, KinesisStream};

pub(super) async fn create_stream(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let name = req.required_str("StreamName", "streamName")?;
    check_name(name)?;
    let mode = req
        .0
        .get("StreamModeDetails")
        .and_then(|m| m.get("StreamMode"))
        .and_then(Value::as_str)
        .unwrap_or("PROVISIONED");
    let on_demand = match mode {
        "PROVISIONED" => false,
        "ON_DEMAND" => true,
        other => {
            return Err(violation(
                "streamModeDetails.streamMode",
                other,
                "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
            ));
        }
    };
    let shards = match (req.int("ShardCount")?, on_demand) {
        (Some(n), _) if n < 1 => {
            return Err(violation(
                "shardCount",
                n,
                "Member must have value greater than or equal to 1",
            ));
        }
        (Some(n), false) => u32::try_from(n).map_err(|_| {
            violation(
                "shardCount",
                n,
                "Member must have value less than or equal to 100000",
            )
        })?,
        (Some(_), true) => {
            return Err(ApiError::invalid_argument(
                "ShardCount cannot be given for a stream in ON_DEMAND mode",
            ));
        }
        (None, false) => {
            return Err(ApiError::invalid_argument(
                "ShardCount is required for a stream in PROVISIONED mode",
            ));
        }
        (None, true) => kinesis::ON_DEMAND_SHARDS,
    };
    let tags = match req.0.get("Tags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(t) => tags::tag_map(t, "tags")?,
    };
    if tags.len() > kinesis::TAGS_MAX {
        return Err(ApiError::limit_exceeded(format!(
            "a stream has at most {} tags; {} were given",
            kinesis::TAGS_MAX,
            tags.len()
        )));
    }
    state
        .registry
        .create_kinesis(name, shards, on_demand, tags)
        .await
        .map_err(from_kinesis)?;
    Ok(json!({}))
}

pub(super) async fn delete_stream(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let name = req.stream_name()?;
    state
        .registry
        .delete_kinesis(&name)
        .await
        .map_err(from_kinesis)?;
    Ok(json!({}))
}

fn mode_details(s: &KinesisStream) -> Value {
    json!({ "StreamMode": if s.on_demand() { "ON_DEMAND" } else { "PROVISIONED" } })
}

pub(super) fn list_streams(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let limit = req.int_in("Limit", "limit", 1, 10_000, 100)? as usize;
    let start = match (req.str("ExclusiveStartStreamName")?, req.str("NextToken")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_argument(
                "ExclusiveStartStreamName and NextToken cannot both be given",
            ));
        }
        (Some(s), None) => Some(s.to_string()),
        (None, Some(t)) => Some(decode_token(t, "ListStreams")?.0),
        (None, None) => None,
    };
    let streams: Vec<Arc<KinesisStream>> = state
        .registry
        .kinesis
        .all()
        .into_iter()
        .filter(|s| start.as_ref().is_none_or(|x| &s.name > x))
        .collect();
    let more = streams.len() > limit;
    let page = &streams[..streams.len().min(limit)];
    let mut out = json!({
        "StreamNames": page.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": more,
        "StreamSummaries": page.iter().map(|s| json!({
            "StreamName": s.name,
            "StreamARN": kinesis_stream_arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(s),
            "StreamCreationTimestamp": seconds(s.created_ms),
        })).collect::<Vec<_>>(),
    });
    if more && let (Some(last), Some(o)) = (page.last(), out.as_object_mut()) {
        o.insert(
            "NextToken".into(),
            Value::String(encode_token(&last.name, "ListStreams")),
        );
    }
    Ok(out)
}

/// A shard as `DescribeStream` and `ListShards` show it: a closed shard
/// with its ending sequence number, a child with its parents.
pub(super) fn shard_json(s: &KinesisStream, shard: &ShardInfo) -> Value {
    let seq = |offset: u64| {
        SequenceNumber {
            incarnation: s.incarnation,
            shard: shard.index,
            offset,
        }
        .encode()
    };
    let mut range = json!({ "StartingSequenceNumber": seq(0) });
    if let (Some(c), Some(o)) = (shard.closed, range.as_object_mut()) {
        o.insert(
            "EndingSequenceNumber".into(),
            Value::String(seq(c.end_offset.saturating_sub(1))),
        );
    }
    let mut out = json!({
        "ShardId": shard_id(shard.index),
        "HashKeyRange": hash_key_range(shard),
        "SequenceNumberRange": range,
    });
    if let Some(o) = out.as_object_mut() {
        if let Some(p) = shard.parent {
            o.insert("ParentShardId".into(), Value::String(shard_id(p)));
        }
        if let Some(p) = shard.adjacent_parent {
            o.insert("AdjacentParentShardId".into(), Value::String(shard_id(p)));
        }
    }
    out
}

pub(super) fn hash_key_range(shard: &ShardInfo) -> Value {
    json!({
        "StartingHashKey": shard.hash_start.to_string(),
        "EndingHashKey": shard.hash_end.to_string(),
    })
}

/// The shards still listed: the open ones and those closed within the
/// retention period (Kinesis drops a closed shard from its lists once its
/// records have all expired).
fn listed<'a>(s: &KinesisStream, map: &'a ShardMap, now: i64) -> Vec<&'a ShardInfo> {
    let retention_ms = i64::from(s.retention_hours()) * 3_600_000;
    map.all()
        .iter()
        .filter(|x| x.closed.is_none_or(|c| c.at_ms + retention_ms > now))
        .collect()
}

/// `ExclusiveStartShardId`: list the shards after it.
fn exclusive_start_shard(req: &Req<'_>) -> Result<Option<u32>, ApiError> {
    let Some(id) = req.str("ExclusiveStartShardId")? else {
        return Ok(None);
    };
    parse_shard_id(id).map(Some).ok_or_else(|| {
        violation(
            "exclusiveStartShardId",
            id,
            "Member must satisfy regular expression pattern: shardId-[0-9]{12}",
        )
    })
}

pub(super) fn describe_stream(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let limit = req.int_in("Limit", "limit", 1, 10_000, 100)? as u32;
    let after = exclusive_start_shard(&req)?;
    let layout = s.layout();
    let shards: Vec<&ShardInfo> = listed(&s, &layout.map, now_ms())
        .into_iter()
        .filter(|x| after.is_none_or(|a| x.index > a))
        .collect();
    let page = &shards[..shards.len().min(limit as usize)];
    let spec = s.spec();
    let mut d = json!({
            "StreamName": s.name,
            "StreamARN": kinesis_stream_arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(&s),
            "Shards": page.iter().map(|x| shard_json(&s, x)).collect::<Vec<_>>(),
            "HasMoreShards": shards.len() > page.len(),
            "RetentionPeriodHours": spec.retention_hours,
            "StreamCreationTimestamp": seconds(s.created_ms),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": spec.settings.shard_metrics }],
    });
    super::encryption::describe(&s, &mut d);
    Ok(json!({ "StreamDescription": d }))
}

pub(super) fn describe_stream_summary(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let spec = s.spec();
    let mut d = json!({
            "StreamName": s.name,
            "StreamARN": kinesis_stream_arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(&s),
            "RetentionPeriodHours": spec.retention_hours,
            "StreamCreationTimestamp": seconds(s.created_ms),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": spec.settings.shard_metrics }],
            "OpenShardCount": s.open_shards(),
            "ConsumerCount": spec.consumers.len(),
            "MaxRecordSizeInKiB": s.max_record_bytes() / 1024,
            "RecordDistributionStrategy": "USER_PARTITION_KEY",
            "QueueCount": state.registry.kinesis.queues.on_stream(&s.name).len(),
            "ChannelCount": state.registry.all().iter().filter(|e| {
                e.origin == crate::streams::Origin::Channel
                    && matches!(&e.config.source, crate::config::Source::Kinesis { stream } if *stream == s.name)
            }).count(),
    });
    super::encryption::describe(&s, &mut d);
    Ok(json!({ "StreamDescriptionSummary": d }))
}

pub(super) fn list_shards(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let limit = req.int_in("MaxResults", "maxResults", 1, 10_000, 1000)? as usize;
    let (s, after) = match req.str("NextToken")? {
        Some(token) => {
            if req.str("StreamName")?.is_some() || req.str("ExclusiveStartShardId")?.is_some() {
                return Err(ApiError::invalid_argument(
                    "NextToken cannot be given with StreamName or ExclusiveStartShardId",
                ));
            }
            let (after, _) = decode_token(token, "ListShards")?;
            let (name, next) = after
                .rsplit_once('/')
                .and_then(|(n, i)| Some((n.to_string(), i.parse::<u32>().ok()?)))
                .ok_or_else(|| ApiError::invalid_argument("NextToken is not valid"))?;
            let s = state
                .registry
                .kinesis
                .get(&name)
                .ok_or_else(|| not_found(&name))?;
            (s, next.checked_sub(1))
        }
        None => {
            let s = req.stream(state)?;
            (s, exclusive_start_shard(&req)?)
        }
    };
    let filter = shard_filter(&req)?;
    let layout = s.layout();
    let now = now_ms();
    let trim_horizon = (now - i64::from(s.retention_hours()) * 3_600_000).max(s.created_ms);
    let shards: Vec<&ShardInfo> = listed(&s, &layout.map, now)
        .into_iter()
        .filter(|x| after.is_none_or(|a| x.index > a))
        .filter(|x| filter.admits(x, trim_horizon))
        .collect();
    let page = &shards[..shards.len().min(limit)];
    let mut out = json!({
        "Shards": page.iter().map(|x| shard_json(&s, x)).collect::<Vec<_>>(),
    });
    if shards.len() > page.len()
        && let (Some(last), Some(o)) = (page.last(), out.as_object_mut())
    {
        let next = last.index + 1;
        o.insert(
            "NextToken".into(),
            Value::String(encode_token(&format!("{}/{next}", s.name), "ListShards")),
        );
    }
    Ok(out)
}

/// `ListShards`'s `ShardFilter`, checked.
enum ShardFilter {
    /// No filter: every listed shard (Kinesis's default, `FROM_TRIM_HORIZON`).
    All,
    AfterShard(u32),
    AtTrimHorizon,
    AtLatest,
    /// Shards open at this time, epoch milliseconds.
    AtTimestamp(i64),
    /// Shards open at this time or opened since.
    FromTimestamp(i64),
}

impl ShardFilter {
    fn admits(&self, x: &ShardInfo, trim_horizon: i64) -> bool {
        let open_at = |t: i64| x.created_ms <= t && x.closed.is_none_or(|c| c.at_ms >= t);
        match *self {
            ShardFilter::All => true,
            ShardFilter::AfterShard(a) => x.index > a,
            ShardFilter::AtTrimHorizon => open_at(trim_horizon),
            ShardFilter::AtLatest => x.is_open(),
            ShardFilter::AtTimestamp(t) => open_at(t),
            ShardFilter::FromTimestamp(t) => {
                x.closed.is_none_or(|c| c.at_ms >= t.max(trim_horizon))
            }
        }
    }
}

fn shard_filter(req: &Req<'_>) -> Result<ShardFilter, ApiError> {
    let Some(filter) = req.0.get("ShardFilter").filter(|f| !f.is_null()) else {
        return Ok(ShardFilter::All);
    };
    let kind = filter.get("Type").and_then(Value::as_str);
    let timestamp = || {
        let ts = filter
            .get("Timestamp")
            .filter(|t| !t.is_null())
            .ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "ShardFilter type {} needs a Timestamp",
                    kind.unwrap_or_default()
                ))
            })?;
        timestamp_ms(ts)
            .ok_or_else(|| ApiError::serialization(format!("Timestamp {ts} is not a timestamp")))
    };
    Ok(match kind {
        Some("AFTER_SHARD_ID") => {
            let id = filter
                .get("ShardId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_argument("ShardFilter AFTER_SHARD_ID needs a ShardId")
                })?;
            ShardFilter::AfterShard(parse_shard_id(id).ok_or_else(|| {
                ApiError::invalid_argument(format!("ShardFilter.ShardId {id} is not a shard id"))
            })?)
        }
        Some("AT_TRIM_HORIZON") => ShardFilter::AtTrimHorizon,
        Some("FROM_TRIM_HORIZON") => ShardFilter::All,
        Some("AT_LATEST") => ShardFilter::AtLatest,
        Some("AT_TIMESTAMP") => ShardFilter::AtTimestamp(timestamp()?),
        Some("FROM_TIMESTAMP") => ShardFilter::FromTimestamp(timestamp()?),
        other => {
            return Err(violation(
                "shardFilter.type",
                other.unwrap_or("null"),
                "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
            ));
        }
    })
}

pub(super) fn retention(req: Req<'_>, state: &AppState, increase: bool) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let hours = req
        .int("RetentionPeriodHours")?
        .ok_or_else(|| missing("retentionPeriodHours"))?;
    if hours < i64::from(kinesis::RETENTION_HOURS_MIN) {
        return Err(ApiError::invalid_argument(format!(
            "Minimum allowed retention period is {} hours. Requested retention period ({hours} hours) is too short.",
            kinesis::RETENTION_HOURS_MIN
        )));
    }
    if hours > i64::from(kinesis::RETENTION_HOURS_MAX) {
        return Err(ApiError::invalid_argument(format!(
            "Maximum allowed retention period is {} hours. Requested retention period ({hours} hours) is too long.",
            kinesis::RETENTION_HOURS_MAX
        )));
    }
    let hours = hours as u32;
    s.update(|spec| {
        let current = spec.retention_hours;
        if increase && hours < current {
            return Err(KinesisError::Invalid(format!(
                "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                spec.name
            )));
        }
        if !increase && hours > current {
            return Err(KinesisError::Invalid(format!(
                "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                spec.name
            )));
        }
        spec.retention_hours = hours;
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}
