//! The Kinesis Data Streams API (`X-Amz-Target: Kinesis_20131202.<Op>`) over
//! the shard log. Requests arrive as JSON values (CBOR requests are turned
//! into the same values by [`super::cbor`]); field checks follow the Kinesis
//! model and answer with Kinesis's exception types: `ValidationException`
//! for a value outside the model's constraints, `InvalidArgumentException`
//! for a request that is well formed but cannot be done, and
//! `ResourceNotFoundException`, `ResourceInUseException`,
//! `LimitExceededException`, `ExpiredIteratorException`,
//! `ExpiredNextTokenException`, `ProvisionedThroughputExceededException`.
//!
//! Puts answer only once their records are durable, as on the Firehose path.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use crate::aws::{ACCOUNT, kinesis_stream_arn, kinesis_stream_from_arn, valid_kinesis_stream_name};
use crate::kinesis::position::{
    SequenceNumber, ShardIterator, hash_key, hash_range, parse_hash_key, parse_shard_id,
    shard_for_hash, shard_id,
};
use crate::kinesis::{self, KinesisError, KinesisStream};
use crate::log::{AppendRecord, LogError};
use crate::metrics::Metrics;

/// Kinesis's limits.
pub const RECORD_BYTES_MAX: usize = 1 << 20;
pub const PUT_RECORDS_MAX: usize = 500;
pub const PUT_RECORDS_BYTES_MAX: usize = 5 << 20;
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
pub const GET_RECORDS_LIMIT_MAX: u64 = 10_000;
pub const GET_RECORDS_BYTES_MAX: usize = 10 << 20;
/// `ListShards` and `ListStreams` tokens expire after 300 s, as Kinesis's.
const NEXT_TOKEN_TTL_MS: i64 = 300_000;

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn violation(field: &str, value: impl std::fmt::Display, constraint: &str) -> ApiError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn missing(field: &str) -> ApiError {
    violation(field, "null", "Member must not be null")
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailureException",
        message,
    )
}

fn throughput(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ProvisionedThroughputExceededException",
        message,
    )
}

fn from_kinesis(e: KinesisError) -> ApiError {
    match e {
        KinesisError::Exists(_) => ApiError::in_use(e.to_string()),
        KinesisError::NotFound(_) => ApiError::not_found(e.to_string()),
        KinesisError::InUse(m) => ApiError::in_use(m),
        KinesisError::Limit(m) => ApiError::limit_exceeded(m),
        KinesisError::Invalid(m) => ApiError::invalid_argument(m),
        KinesisError::Io { .. } => internal(e.to_string()),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Stream {name} under account {ACCOUNT} not found."))
}

/// The fields of a request; every accessor names the field it refuses.
struct Req<'a>(&'a Map<String, Value>);

impl<'a> Req<'a> {
    fn str(&self, field: &str) -> Result<Option<&'a str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ApiError::serialization(format!(
                "'{field}' must be a string, not {other}"
            ))),
        }
    }

    fn required_str(&self, field: &str, model: &str) -> Result<&'a str, ApiError> {
        self.str(field)?.ok_or_else(|| missing(model))
    }

    fn int(&self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                ApiError::serialization(format!("'{field}' must be an integer, not {n}"))
            }),
            Some(other) => Err(ApiError::serialization(format!(
                "'{field}' must be an integer, not {other}"
            ))),
        }
    }

    /// An integer within `lo..=hi`, or `default` when absent.
    fn int_in(
        &self,
        field: &str,
        model: &str,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> Result<i64, ApiError> {
        match self.int(field)? {
            None => Ok(default),
            Some(v) if v < lo => Err(violation(
                model,
                v,
                &format!("Member must have value greater than or equal to {lo}"),
            )),
            Some(v) if v > hi => Err(violation(
                model,
                v,
                &format!("Member must have value less than or equal to {hi}"),
            )),
            Some(v) => Ok(v),
        }
    }

    /// The stream a request names by `StreamName` or `StreamARN`.
    fn stream_name(&self) -> Result<String, ApiError> {
        let name = self.str("StreamName")?;
        let arn = self.str("StreamARN")?;
        match (name, arn) {
            (Some(n), _) => {
                check_name(n)?;
                if let Some(a) = arn
                    && kinesis_stream_from_arn(a) != Some(n)
                {
                    return Err(ApiError::invalid_argument(format!(
                        "StreamARN {a} does not name stream {n}"
                    )));
                }
                Ok(n.to_string())
            }
            (None, Some(a)) => kinesis_stream_from_arn(a).map(str::to_string).ok_or_else(|| {
                violation(
                    "streamARN",
                    a,
                    "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                )
            }),
            (None, None) => Err(ApiError::invalid_argument(
                "Either StreamName or StreamARN should be provided.",
            )),
        }
    }

    fn stream(&self, state: &AppState) -> Result<Arc<KinesisStream>, ApiError> {
        let name = self.stream_name()?;
        state
            .registry
            .kinesis
            .get(&name)
            .ok_or_else(|| not_found(&name))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 128 {
        return Err(violation(
            "streamName",
            name,
            "Member must have length between 1 and 128",
        ));
    }
    if !valid_kinesis_stream_name(name) {
        return Err(violation(
            "streamName",
            name,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Dispatches one operation on a request already parsed to a JSON value.
pub async fn dispatch(state: &AppState, op: &str, body: &Value) -> Result<Value, ApiError> {
    let empty = Map::new();
    let req = match body {
        Value::Object(m) => Req(m),
        Value::Null => Req(&empty),
        _ => {
            return Err(ApiError::serialization(
                "the request body must be a JSON object",
            ));
        }
    };
    match op {
        "CreateStream" => create_stream(state, req).await,
        "DeleteStream" => delete_stream(state, req).await,
        "ListStreams" => list_streams(state, req),
        "DescribeStream" => describe_stream(state, req),
        "DescribeStreamSummary" => describe_stream_summary(state, req),
        "ListShards" => list_shards(state, req),
        "PutRecord" => put_record(state, req).await,
        "PutRecords" => put_records(state, req).await,
        "GetShardIterator" => get_shard_iterator(state, req).await,
        "GetRecords" => get_records(state, req).await,
        "IncreaseStreamRetentionPeriod" => retention(req, state, true),
        "DecreaseStreamRetentionPeriod" => retention(req, state, false),
        "AddTagsToStream" => add_tags(state, req),
        "RemoveTagsFromStream" => remove_tags(state, req),
        "ListTagsForStream" => list_tags(state, req),
        other => Err(ApiError::unknown_operation(format!(
            "Kinesis_20131202.{other} is not an operation Hydrant implements"
        ))),
    }
}

async fn create_stream(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
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
        Some(t) => tag_map(t, "tags")?,
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

async fn delete_stream(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let name = req.stream_name()?;
    state
        .registry
        .delete_kinesis(&name)
        .await
        .map_err(from_kinesis)?;
    Ok(json!({}))
}

fn mode_details(s: &KinesisStream) -> Value {
    json!({ "StreamMode": if s.on_demand { "ON_DEMAND" } else { "PROVISIONED" } })
}

fn list_streams(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
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

/// A paging token: where the page ended, for which operation, and when.
fn encode_token(after: &str, op: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{op}\n{}\n{after}", now_ms()))
}

fn decode_token(token: &str, op: &str) -> Result<(String, i64), ApiError> {
    let bad = || ApiError::invalid_argument(format!("NextToken {token} is not valid for {op}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.as_bytes())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    let (Some(o), Some(ms), Some(after)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    if o != op {
        return Err(bad());
    }
    if now_ms() - ms > NEXT_TOKEN_TTL_MS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ExpiredNextTokenException",
            format!("The timestamp of the NextToken {token} is too old. Request a new one."),
        ));
    }
    Ok((after.to_string(), ms))
}

fn shard_json(s: &KinesisStream, i: u32) -> Value {
    let (start, end) = hash_range(i, s.shards);
    let first = SequenceNumber {
        incarnation: s.incarnation,
        shard: i,
        offset: 0,
    };
    json!({
        "ShardId": shard_id(i),
        "HashKeyRange": { "StartingHashKey": start.to_string(), "EndingHashKey": end.to_string() },
        "SequenceNumberRange": { "StartingSequenceNumber": first.encode() },
    })
}

fn describe_stream(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let limit = req.int_in("Limit", "limit", 1, 10_000, 100)? as u32;
    let after = match req.str("ExclusiveStartShardId")? {
        None => None,
        Some(id) => Some(parse_shard_id(id).ok_or_else(|| {
            violation(
                "exclusiveStartShardId",
                id,
                "Member must satisfy regular expression pattern: shardId-[0-9]{12}",
            )
        })?),
    };
    let first = after.map_or(0, |a| a.saturating_add(1));
    let last = first.saturating_add(limit).min(s.shards);
    let spec = s.spec();
    Ok(json!({
        "StreamDescription": {
            "StreamName": s.name,
            "StreamARN": kinesis_stream_arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(&s),
            "Shards": (first..last).map(|i| shard_json(&s, i)).collect::<Vec<_>>(),
            "HasMoreShards": last < s.shards,
            "RetentionPeriodHours": spec.retention_hours,
            "StreamCreationTimestamp": seconds(s.created_ms),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
        }
    }))
}

fn describe_stream_summary(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let spec = s.spec();
    Ok(json!({
        "StreamDescriptionSummary": {
            "StreamName": s.name,
            "StreamARN": kinesis_stream_arn(&s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(&s),
            "RetentionPeriodHours": spec.retention_hours,
            "StreamCreationTimestamp": seconds(s.created_ms),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
            "OpenShardCount": s.shards,
            "ConsumerCount": 0,
        }
    }))
}

fn list_shards(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let limit = req.int_in("MaxResults", "maxResults", 1, 10_000, 1000)? as u32;
    let (s, mut first) = match req.str("NextToken")? {
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
            (s, next)
        }
        None => {
            let s = req.stream(state)?;
            let first = match req.str("ExclusiveStartShardId")? {
                None => 0,
                Some(id) => parse_shard_id(id)
                    .ok_or_else(|| {
                        violation(
                            "exclusiveStartShardId",
                            id,
                            "Member must satisfy regular expression pattern: shardId-[0-9]{12}",
                        )
                    })?
                    .saturating_add(1),
            };
            (s, first)
        }
    };
    // Every shard is open and has always been: each filter type but
    // AFTER_SHARD_ID selects them all.
    if let Some(filter) = req.0.get("ShardFilter").filter(|f| !f.is_null()) {
        match filter.get("Type").and_then(Value::as_str) {
            Some("AFTER_SHARD_ID") => {
                let id = filter
                    .get("ShardId")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::invalid_argument("ShardFilter AFTER_SHARD_ID needs a ShardId")
                    })?;
                let after = parse_shard_id(id).ok_or_else(|| {
                    ApiError::invalid_argument(format!(
                        "ShardFilter.ShardId {id} is not a shard id"
                    ))
                })?;
                first = first.max(after.saturating_add(1));
            }
            Some(
                "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_LATEST" | "AT_TIMESTAMP"
                | "FROM_TIMESTAMP",
            ) => {}
            other => {
                return Err(violation(
                    "shardFilter.type",
                    other.unwrap_or("null"),
                    "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ));
            }
        }
    }
    let last = first.saturating_add(limit).min(s.shards);
    let mut out = json!({
        "Shards": (first.min(last)..last).map(|i| shard_json(&s, i)).collect::<Vec<_>>(),
    });
    if last < s.shards
        && let Some(o) = out.as_object_mut()
    {
        o.insert(
            "NextToken".into(),
            Value::String(encode_token(&format!("{}/{last}", s.name), "ListShards")),
        );
    }
    Ok(out)
}

/// A record to put, checked.
struct PutIn {
    data: Bytes,
    key: Bytes,
    hash: u128,
}

fn record_in(r: &Map<String, Value>, at: &str) -> Result<PutIn, ApiError> {
    let field = |f: &str| format!("{at}{f}");
    let data = match r.get("Data") {
        None | Some(Value::Null) => return Err(missing(&field("data"))),
        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| {
                ApiError::serialization(format!("'{}' is not valid base64: {e}", field("data")))
            })?,
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "'{}' must be a base64 string",
                field("data")
            )));
        }
    };
    if data.len() > RECORD_BYTES_MAX {
        return Err(violation(
            &field("data"),
            format!(
                "java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]",
                n = data.len()
            ),
            &format!("Member must have length less than or equal to {RECORD_BYTES_MAX}"),
        ));
    }
    let key = match r.get("PartitionKey") {
        None | Some(Value::Null) => return Err(missing(&field("partitionKey"))),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "'{}' must be a string",
                field("partitionKey")
            )));
        }
    };
    let chars = key.chars().count();
    if chars == 0 || chars > PARTITION_KEY_CHARS_MAX {
        return Err(violation(
            &field("partitionKey"),
            key,
            &format!("Member must have length between 1 and {PARTITION_KEY_CHARS_MAX}"),
        ));
    }
    let hash = match r.get("ExplicitHashKey") {
        None | Some(Value::Null) => hash_key(key.as_bytes()),
        Some(Value::String(h)) => parse_hash_key(h).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
            ))
        })?,
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "'{}' must be a string",
                field("explicitHashKey")
            )));
        }
    };
    Ok(PutIn {
        data: Bytes::from(data),
        key: Bytes::copy_from_slice(key.as_bytes()),
        hash,
    })
}

fn over_limit(s: &KinesisStream, shard: u32) -> String {
    format!(
        "Rate exceeded for shard {} in stream {} under account {ACCOUNT}.",
        shard_id(shard),
        s.name
    )
}

/// Appends records to one shard; Ok once durable, with their offsets.
async fn append(
    state: &AppState,
    s: &KinesisStream,
    shard: u32,
    records: Vec<PutIn>,
) -> Result<std::ops::Range<u64>, ApiError> {
    let log = s
        .log
        .shard(shard)
        .ok_or_else(|| internal(format!("shard {shard} is not open")))?;
    let n = records.len() as u64;
    let bytes: u64 = records.iter().map(|r| r.data.len() as u64).sum();
    let arrival_ms = now_ms();
    let label = Metrics::stream(&s.name);
    let m = &state.registry.metrics;
    let append = records
        .into_iter()
        .map(|r| AppendRecord {
            key: r.key,
            data: r.data,
            arrival_ms,
        })
        .collect();
    match log.append(append).await {
        Ok(range) => {
            m.kinesis_incoming_records.get_or_create(&label).inc_by(n);
            m.kinesis_incoming_bytes.get_or_create(&label).inc_by(bytes);
            Ok(range)
        }
        Err(e) => {
            m.kinesis_throttled_records.get_or_create(&label).inc_by(n);
            tracing::warn!(stream = s.name, shard, error = %e, "Kinesis append refused");
            // The SDKs back off and retry a throughput error on their own.
            Err(if e.is_unavailable() {
                throughput(format!("Slow down. {e}"))
            } else {
                internal(e.to_string())
            })
        }
    }
}

fn sequence(s: &KinesisStream, shard: u32, offset: u64) -> String {
    SequenceNumber {
        incarnation: s.incarnation,
        shard,
        offset,
    }
    .encode()
}

async fn put_record(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let record = record_in(req.0, "")?;
    if let Some(o) = req.str("SequenceNumberForOrdering")?
        && !o.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(violation(
            "sequenceNumberForOrdering",
            o,
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
        ));
    }
    let shard = shard_for_hash(record.hash, s.shards);
    if !s.admit(shard, (record.data.len() + record.key.len()) as u64) {
        let label = Metrics::stream(&s.name);
        state
            .registry
            .metrics
            .kinesis_throttled_records
            .get_or_create(&label)
            .inc();
        return Err(throughput(over_limit(&s, shard)));
    }
    let range = append(state, &s, shard, vec![record]).await?;
    Ok(json!({
        "ShardId": shard_id(shard),
        "SequenceNumber": sequence(&s, shard, range.start),
        "EncryptionType": "NONE",
    }))
}

async fn put_records(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let records = match req.0.get("Records") {
        None | Some(Value::Null) => return Err(missing("records")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::serialization("'Records' must be a list")),
    };
    if records.is_empty() {
        return Err(violation(
            "records",
            "[]",
            "Member must have length greater than or equal to 1",
        ));
    }
    if records.len() > PUT_RECORDS_MAX {
        return Err(violation(
            "records",
            format!("[...{} records]", records.len()),
            &format!("Member must have length less than or equal to {PUT_RECORDS_MAX}"),
        ));
    }
    let mut parsed = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let r = r
            .as_object()
            .ok_or_else(|| ApiError::serialization(format!("'Records[{i}]' must be an object")))?;
        parsed.push(record_in(r, &format!("records.{}.member.", i + 1))?);
    }
    let total: usize = parsed.iter().map(|r| r.data.len() + r.key.len()).sum();
    if total > PUT_RECORDS_BYTES_MAX {
        return Err(ApiError::invalid_argument(format!(
            "Records size exceeds 5 MB limit ({total} bytes of data and partition keys)"
        )));
    }
    // Group by shard, keeping request order within each shard; a record over
    // its shard's write limit fails alone, as Kinesis reports it.
    let n = parsed.len();
    let mut results: Vec<Option<Result<(u32, u64), ApiError>>> = (0..n).map(|_| None).collect();
    let mut groups: BTreeMap<u32, (Vec<usize>, Vec<PutIn>)> = BTreeMap::new();
    let mut throttled = 0u64;
    for (i, r) in parsed.into_iter().enumerate() {
        let shard = shard_for_hash(r.hash, s.shards);
        if s.admit(shard, (r.data.len() + r.key.len()) as u64) {
            let g = groups.entry(shard).or_default();
            g.0.push(i);
            g.1.push(r);
        } else {
            throttled += 1;
            results[i] = Some(Err(throughput(over_limit(&s, shard))));
        }
    }
    if throttled > 0 {
        state
            .registry
            .metrics
            .kinesis_throttled_records
            .get_or_create(&Metrics::stream(&s.name))
            .inc_by(throttled);
    }
    let appends = groups.into_iter().map(|(shard, (idx, recs))| {
        let s = &s;
        async move { (shard, idx, append(state, s, shard, recs).await) }
    });
    for (shard, idx, res) in futures::future::join_all(appends).await {
        match res {
            Ok(range) => {
                for (i, off) in idx.into_iter().zip(range) {
                    results[i] = Some(Ok((shard, off)));
                }
            }
            Err(e) => {
                for i in idx {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    let mut failed = 0;
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Some(Ok((shard, off))) => json!({
                "ShardId": shard_id(shard),
                "SequenceNumber": sequence(&s, shard, off),
            }),
            Some(Err(e)) => {
                failed += 1;
                let code = if e.kind == "ProvisionedThroughputExceededException" {
                    e.kind
                } else {
                    "InternalFailure"
                };
                json!({ "ErrorCode": code, "ErrorMessage": e.message })
            }
            None => {
                failed += 1;
                json!({ "ErrorCode": "InternalFailure", "ErrorMessage": "not written" })
            }
        })
        .collect();
    Ok(json!({ "FailedRecordCount": failed, "Records": out, "EncryptionType": "NONE" }))
}

/// Epoch milliseconds from a `Timestamp`: seconds as a number (JSON, and
/// CBOR after conversion) or an ISO 8601 string.
fn timestamp_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0).round() as i64),
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .map(|x| (x * 1000.0).round() as i64)
            .or_else(|| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }),
        _ => None,
    }
}

async fn get_shard_iterator(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let id = req.required_str("ShardId", "shardId")?;
    let kind = req.required_str("ShardIteratorType", "shardIteratorType")?;
    let no_shard = || {
        ApiError::not_found(format!(
            "Shard {id} in stream {} under account {ACCOUNT} does not exist",
            s.name
        ))
    };
    let shard = parse_shard_id(id)
        .filter(|i| *i < s.shards)
        .ok_or_else(no_shard)?;
    let log = s.log.shard(shard).ok_or_else(no_shard)?;
    let end = log.durable_end();
    let oldest = log.oldest_offset();
    let at_sequence = |after: bool| -> Result<u64, ApiError> {
        let raw = req.str("StartingSequenceNumber")?.ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "StartingSequenceNumber must be given for ShardIteratorType {kind}"
            ))
        })?;
        let invalid = || {
            ApiError::invalid_argument(format!(
                "StartingSequenceNumber {raw} used in GetShardIterator on shard {id} in stream {} under account {ACCOUNT} is invalid.",
                s.name
            ))
        };
        let seq = SequenceNumber::decode(raw).ok_or_else(invalid)?;
        if seq.incarnation != s.incarnation {
            return Err(invalid());
        }
        if seq.shard != shard {
            return Err(ApiError::invalid_argument(format!(
                "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {id}",
                shard_id(seq.shard)
            )));
        }
        if seq.offset >= end {
            return Err(ApiError::invalid_argument(format!(
                "StartingSequenceNumber {raw} used in GetShardIterator on shard {id} in stream {} under account {ACCOUNT} has not been issued yet.",
                s.name
            )));
        }
        Ok(if after { seq.offset + 1 } else { seq.offset })
    };
    let (offset, position) = match kind {
        "TRIM_HORIZON" => (oldest, Some((oldest, 0))),
        "LATEST" => (end, log.tail_position(end)),
        "AT_SEQUENCE_NUMBER" => (at_sequence(false)?, None),
        "AFTER_SEQUENCE_NUMBER" => (at_sequence(true)?, None),
        "AT_TIMESTAMP" => {
            let ts = req
                .0
                .get("Timestamp")
                .filter(|t| !t.is_null())
                .ok_or_else(|| {
                    ApiError::invalid_argument(
                        "Timestamp must be given for ShardIteratorType AT_TIMESTAMP",
                    )
                })?;
            let ms = timestamp_ms(ts).ok_or_else(|| {
                ApiError::serialization(format!("Timestamp {ts} is not a timestamp"))
            })?;
            let s2 = s.clone();
            let offset = tokio::task::spawn_blocking(move || match s2.log.shard(shard) {
                Some(l) => l.offset_at_time(ms),
                None => Ok(0),
            })
            .await
            .map_err(|e| internal(e.to_string()))?
            .map_err(|e| internal(e.to_string()))?;
            (offset, None)
        }
        other => {
            return Err(violation(
                "shardIteratorType",
                other,
                "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
            ));
        }
    };
    let it = ShardIterator {
        stream: s.name.clone(),
        incarnation: s.incarnation,
        shard,
        offset: offset.max(oldest),
        position: position.filter(|_| offset >= oldest),
        issued_ms: now_ms(),
    };
    Ok(json!({ "ShardIterator": it.encode() }))
}

async fn get_records(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let raw = req.required_str("ShardIterator", "shardIterator")?;
    if raw.is_empty() || raw.len() > 512 {
        return Err(violation(
            "shardIterator",
            raw,
            "Member must have length between 1 and 512",
        ));
    }
    let limit = req.int_in(
        "Limit",
        "limit",
        1,
        GET_RECORDS_LIMIT_MAX as i64,
        GET_RECORDS_LIMIT_MAX as i64,
    )? as usize;
    let it = ShardIterator::decode(raw)
        .ok_or_else(|| ApiError::invalid_argument("Invalid ShardIterator."))?;
    let now = now_ms();
    let ttl = state.registry.kinesis.options().iterator_ttl.as_millis() as i64;
    if now - it.issued_ms > ttl {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ExpiredIteratorException",
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ttl} milliseconds.",
                chrono::DateTime::from_timestamp_millis(it.issued_ms)
                    .map(|t| t.to_rfc2822())
                    .unwrap_or_default(),
                chrono::DateTime::from_timestamp_millis(now)
                    .map(|t| t.to_rfc2822())
                    .unwrap_or_default(),
            ),
        ));
    }
    let s = state
        .registry
        .kinesis
        .get(&it.stream)
        .filter(|s| s.incarnation == it.incarnation)
        .ok_or_else(|| not_found(&it.stream))?;
    if let Some(arn) = req.str("StreamARN")?
        && kinesis_stream_from_arn(arn) != Some(s.name.as_str())
    {
        return Err(ApiError::invalid_argument(format!(
            "StreamARN {arn} is not the stream of this iterator"
        )));
    }
    let shard = it.shard;
    let s2 = s.clone();
    let read = tokio::task::spawn_blocking(move || {
        let log = s2
            .log
            .shard(shard)
            .ok_or_else(|| format!("shard {shard} is not open"))?;
        let mut from = it.offset.max(log.oldest_offset());
        let mut reader = match it.position {
            Some((base, pos)) if from == it.offset => log.reader_at(from, base, pos),
            _ => log.reader(from),
        };
        // Less than a record under Kinesis's 10 MiB, so the reply stays within it.
        let bytes_max = GET_RECORDS_BYTES_MAX - RECORD_BYTES_MAX;
        let frames = match reader.read(limit, bytes_max) {
            Err(LogError::Trimmed { oldest, .. }) => {
                // Retention removed the segment since: go on from the oldest.
                from = oldest;
                reader = log.reader(from);
                reader.read(limit, bytes_max)
            }
            other => other,
        }
        .map_err(|e| e.to_string())?;
        let next = reader.position();
        // Where the next call starts reading: known from this read, or, when
        // nothing was read, the iterator's own hint or the log's tail.
        let resume = reader
            .resume_point()
            .or_else(|| it.position.filter(|_| next == it.offset))
            .or_else(|| log.tail_position(next));
        Ok::<_, String>((frames, next, resume, log.durable_end()))
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)?;
    let (frames, next, resume, end) = read;
    let behind = match frames.last() {
        Some(f) if next < end => (now - f.arrival_ms).max(0),
        _ => 0,
    };
    let bytes: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
    let label = Metrics::stream(&s.name);
    let m = &state.registry.metrics;
    m.kinesis_outgoing_records
        .get_or_create(&label)
        .inc_by(frames.len() as u64);
    m.kinesis_outgoing_bytes.get_or_create(&label).inc_by(bytes);
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = frames
        .iter()
        .map(|f| {
            json!({
                "SequenceNumber": sequence(&s, shard, f.offset),
                "ApproximateArrivalTimestamp": seconds(f.arrival_ms),
                "Data": b64.encode(&f.data),
                "PartitionKey": String::from_utf8_lossy(&f.key),
            })
        })
        .collect();
    let next_it = ShardIterator {
        stream: s.name.clone(),
        incarnation: s.incarnation,
        shard,
        offset: next,
        position: resume,
        issued_ms: now_ms(),
    };
    Ok(json!({
        "Records": records,
        "NextShardIterator": next_it.encode(),
        "MillisBehindLatest": behind,
    }))
}

fn retention(req: Req<'_>, state: &AppState, increase: bool) -> Result<Value, ApiError> {
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

/// Tags as Kinesis takes them: a map of key to value.
fn tag_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::serialization(format!(
            "'{field}' must be a map of tag keys to values"
        )));
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        check_tag_key(k)?;
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => {
                return Err(ApiError::serialization(format!(
                    "the value of tag {k} must be a string, not {other}"
                )));
            }
        };
        if v.chars().count() > 256 {
            return Err(ApiError::invalid_argument(format!(
                "the value of tag {k} is longer than 256 characters"
            )));
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

fn check_tag_key(k: &str) -> Result<(), ApiError> {
    if k.is_empty() || k.chars().count() > 128 {
        return Err(ApiError::invalid_argument(format!(
            "tag key '{k}' must be 1 to 128 characters"
        )));
    }
    if k.starts_with("aws:") {
        return Err(ApiError::invalid_argument(format!(
            "tag key '{k}' uses the reserved prefix aws:"
        )));
    }
    Ok(())
}

fn add_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let tags = match req.0.get("Tags") {
        None | Some(Value::Null) => return Err(missing("tags")),
        Some(t) => tag_map(t, "Tags")?,
    };
    if tags.is_empty() {
        return Err(violation(
            "tags",
            "{}",
            "Member must have length greater than or equal to 1",
        ));
    }
    s.update(|spec| {
        let mut next = spec.tags.clone();
        next.extend(tags);
        if next.len() > kinesis::TAGS_MAX {
            return Err(KinesisError::Limit(format!(
                "Failed to add tags to stream {} under account {ACCOUNT} because a given stream cannot have more than {} tags.",
                spec.name,
                kinesis::TAGS_MAX
            )));
        }
        spec.tags = next;
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}

fn remove_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let keys: Vec<String> = match req.0.get("TagKeys") {
        None | Some(Value::Null) => return Err(missing("tagKeys")),
        Some(Value::Array(a)) => a
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::serialization("'TagKeys' must be a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::serialization("'TagKeys' must be a list")),
    };
    s.update(|spec| {
        for k in &keys {
            spec.tags.remove(k);
        }
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}

fn list_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let limit = req.int_in("Limit", "limit", 1, 50, 50)? as usize;
    let start = req.str("ExclusiveStartTagKey")?;
    let tags: Vec<(String, String)> = s
        .spec()
        .tags
        .into_iter()
        .filter(|(k, _)| start.is_none_or(|st| k.as_str() > st))
        .collect();
    let more = tags.len() > limit;
    Ok(json!({
        "Tags": tags.iter().take(limit).map(|(k, v)| json!({ "Key": k, "Value": v })).collect::<Vec<_>>(),
        "HasMoreTags": more,
    }))
}
