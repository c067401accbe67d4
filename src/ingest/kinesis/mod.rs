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
//!
//! This file holds dispatch and what every operation shares: the `Req`
//! field accessor, the error helpers, the limits, paging tokens and sequence
//! numbers. The operations live in a file per group: `streams` (create,
//! delete, list, describe, shards, retention), `tags`, `records` (puts),
//! `iterators` (reads), `reshard`, `consumers`, `subscribe`, `channels`,
//! `queues`, `resources` (tags and policies by ARN) and `account` (limits,
//! settings, monitoring, record size).

mod account;
mod channels;
mod consumers;
mod encryption;
mod iterators;
mod queues;
mod records;
mod reshard;
mod resources;
mod scan;
mod streams;
pub mod subscribe;
mod tags;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Map, Value};

use super::AppState;
use super::error::ApiError;
use crate::aws::{ACCOUNT, kinesis_stream_from_arn, valid_kinesis_stream_name};
use crate::kinesis::position::SequenceNumber;
use crate::kinesis::queues::Settle;
use crate::kinesis::{KinesisError, KinesisStream};

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
        KinesisError::ResourceNotFound(m) => ApiError::not_found(m),
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
        stream_name_of(self.str("StreamName")?, self.str("StreamARN")?)
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

/// The stream named by a request's `StreamName` or `StreamARN` (if both,
/// they must agree).
fn stream_name_of(name: Option<&str>, arn: Option<&str>) -> Result<String, ApiError> {
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

/// A request body as its fields: an object, or none (an empty body).
fn as_req<'a>(body: &'a Value, empty: &'a Map<String, Value>) -> Result<Req<'a>, ApiError> {
    match body {
        Value::Object(m) => Ok(Req(m)),
        Value::Null => Ok(Req(empty)),
        _ => Err(ApiError::serialization(
            "the request body must be a JSON object",
        )),
    }
}

/// A Kinesis request's body (JSON, or CBOR when `cbor`) as the JSON value
/// every operation's full path reads; an empty JSON body is `null`.
pub fn request_value(body: &[u8], cbor: bool) -> Result<Value, ApiError> {
    if cbor {
        super::cbor::request_to_json(body)
            .map_err(|e| ApiError::serialization(format!("cannot parse the request body: {e}")))
    } else if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::serialization(format!("cannot parse the request body as JSON: {e}"))
        })
    }
}

/// Parses a `PutRecords` body (JSON, or CBOR when `cbor`) as the API does,
/// with records of up to `max` bytes; the records' (partition key, data)
/// sizes. The fuzz targets' entry into the Kinesis request parsers.
pub fn parse_put_records(
    body: &[u8],
    cbor: bool,
    max: usize,
) -> Result<Vec<(usize, usize)>, ApiError> {
    let v = request_value(body, cbor)?;
    let empty = Map::new();
    let req = as_req(&v, &empty)?;
    let records = records::records_in(&req, max)?;
    Ok(records
        .iter()
        .map(|r| (r.key.len(), r.data.len()))
        .collect())
}

/// Whether the `PutRecords` fast path (JSON, or CBOR when `cbor`) holds to
/// the full path on `body`, with records of up to `max` bytes: whatever it
/// accepts, the full path accepts and reads alike. The fuzz targets' entry
/// into the fast paths; the reason when it does not hold.
pub fn put_records_fast_path_agrees(body: &[u8], cbor: bool, max: usize) -> Result<(), String> {
    records::fast_path_agrees(body, cbor, max)
}

/// Dispatches one operation on a request already parsed to a JSON value.
pub async fn dispatch(state: &AppState, op: &str, body: &Value) -> Result<Value, ApiError> {
    let empty = Map::new();
    let req = as_req(body, &empty)?;
    // One arm per operation, so this grows with the API; the handlers live
    // in a file per operation group.
    match op {
        "CreateStream" => streams::create_stream(state, req).await,
        "DeleteStream" => streams::delete_stream(state, req).await,
        "ListStreams" => streams::list_streams(state, req),
        "DescribeStream" => streams::describe_stream(state, req),
        "DescribeStreamSummary" => streams::describe_stream_summary(state, req),
        "ListShards" => streams::list_shards(state, req),
        "PutRecord" => records::put_record(state, req).await,
        "PutRecords" => records::put_records(state, req).await,
        "GetShardIterator" => iterators::get_shard_iterator(state, req).await,
        "GetRecords" => iterators::get_records(state, req).await,
        "IncreaseStreamRetentionPeriod" => streams::retention(req, state, true),
        "DecreaseStreamRetentionPeriod" => streams::retention(req, state, false),
        "StartStreamEncryption" => encryption::start(state, req),
        "StopStreamEncryption" => encryption::stop(state, req),
        "AddTagsToStream" => tags::add_tags(state, req),
        "RemoveTagsFromStream" => tags::remove_tags(state, req),
        "ListTagsForStream" => tags::list_tags(state, req),
        "SplitShard" => reshard::split_shard(state, req).await,
        "MergeShards" => reshard::merge_shards(state, req).await,
        "UpdateShardCount" => reshard::update_shard_count(state, req).await,
        "UpdateStreamMode" => reshard::update_stream_mode(state, req).await,
        "RegisterStreamConsumer" => consumers::register(state, req),
        "DescribeStreamConsumer" => consumers::describe(state, req),
        "ListStreamConsumers" => consumers::list(state, req),
        "DeregisterStreamConsumer" => consumers::deregister(state, req),
        "CreateChannel" => channels::create(state, req).await,
        "DescribeChannel" => channels::describe(state, req),
        "ListChannels" => channels::list(state, req),
        "UpdateChannel" => channels::update(state, req).await,
        "DeleteChannel" => channels::delete(state, req).await,
        "TagResource" => resources::tag(state, req).await,
        "UntagResource" => resources::untag(state, req).await,
        "ListTagsForResource" => resources::list_tags(state, req),
        "PutResourcePolicy" => resources::put_policy(state, req),
        "GetResourcePolicy" => resources::get_policy(state, req),
        "DeleteResourcePolicy" => resources::delete_policy(state, req),
        "DescribeLimits" => account::describe_limits(state),
        "DescribeAccountSettings" => account::describe_account(state),
        "UpdateAccountSettings" => account::update_account(state, req),
        "EnableEnhancedMonitoring" => account::monitoring(state, req, true),
        "DisableEnhancedMonitoring" => account::monitoring(state, req, false),
        "UpdateMaxRecordSize" => account::max_record_size(state, req),
        "UpdateStreamWarmThroughput" => account::warm_throughput(state, req),
        "UpdateStreamRecordDistributionStrategy" => account::distribution(state, req),
        "CreateQueue" => queues::create(state, req).await,
        "DescribeQueue" => queues::describe(state, req),
        "ListQueues" => queues::list(state, req),
        "UpdateQueue" => queues::update(state, req),
        "DeleteQueue" => queues::delete(state, req).await,
        "ReceiveQueueRecords" => queues::receive(state, req, false).await,
        "ReceiveDeadLetterQueueRecords" => queues::receive(state, req, true).await,
        "AcknowledgeQueueRecords" => queues::settle(state, req, Some(Settle::Ack), false).await,
        "AcknowledgeDeadLetterQueueRecords" => {
            queues::settle(state, req, Some(Settle::Ack), true).await
        }
        "UpdateQueueRecordsVisibility" => queues::settle(state, req, None, false).await,
        "UpdateDeadLetterQueueRecordsVisibility" => queues::settle(state, req, None, true).await,
        "RestoreDeadLetterQueueRecords" => {
            queues::settle(state, req, Some(Settle::Restore), true).await
        }
        other => Err(ApiError::unknown_operation(format!(
            "Kinesis_20131202.{other} is not an operation Hydrant implements"
        ))),
    }
}

/// `GetRecords` for a JSON client: its answer written straight into the
/// body (records base64-encoded in place, no JSON value per record).
pub async fn get_records_json(state: &AppState, body: &Value) -> Result<String, ApiError> {
    let empty = Map::new();
    let req = as_req(body, &empty)?;
    iterators::get_records_json(state, req).await
}

/// `GetRecords` for a CBOR client: its answer written straight into the
/// body (records' data as byte strings, no JSON value per record).
pub async fn get_records_cbor(state: &AppState, body: &Value) -> Result<Vec<u8>, ApiError> {
    let empty = Map::new();
    let req = as_req(body, &empty)?;
    iterators::get_records_cbor(state, req).await
}

/// `PutRecords` for a JSON client by its fast path, which reads a valid
/// body once and writes the answer directly; None: the body is not
/// certainly valid, and [`dispatch`] must answer it.
pub async fn put_records_json(state: &AppState, body: &[u8]) -> Option<Result<String, ApiError>> {
    records::put_records_json(state, body).await
}

/// `PutRecords` for a CBOR client by its fast path (a body of the shape the
/// AWS SDK for Java sends, read without the JSON value); None: [`dispatch`]
/// must answer it.
pub async fn put_records_cbor(state: &AppState, body: &[u8]) -> Option<Result<Vec<u8>, ApiError>> {
    records::put_records_cbor(state, body).await
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

fn sequence(s: &KinesisStream, shard: u32, offset: u64) -> String {
    SequenceNumber {
        incarnation: s.incarnation,
        shard,
        offset,
    }
    .encode()
}

/// Epoch milliseconds from a `Timestamp`: seconds as a number (JSON, and
/// CBOR after conversion) or an ISO 8601 string.
pub(super) fn timestamp_ms(v: &Value) -> Option<i64> {
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
