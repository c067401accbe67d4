//! The Firehose API (AWS JSON 1.1, `X-Amz-Target: Firehose_20150804.<Op>`):
//! request parsing and validation with Firehose's limits and error types, and
//! the operations themselves. Put operations answer only after the log made
//! every record of the request durable.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::aws::{self, ACCOUNT};
use crate::config::firehose::RequestError;
use crate::config::{self, Destination, ObjectDestination, StoreConfig};
use crate::encode::Compression;
use crate::log::AppendRecord;
use crate::metrics::Metrics;
use crate::streams::{Origin, RegistryError, StreamEntry};

/// Firehose's limits.
pub const RECORD_BYTES_MAX: usize = 1_024_000;
pub const BATCH_RECORDS_MAX: usize = 500;
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// An operation's answer: a value, or JSON already written (the hot path,
/// `PutRecordBatch`, writes its 500 record ids straight into the body).
pub enum Reply {
    Value(Value),
    Json(String),
}

/// Dispatches one operation.
pub async fn dispatch(state: &AppState, op: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let value = match op {
        "PutRecord" => put_record(state, parse_put_record(body)?).await,
        "PutRecordBatch" => {
            return put_record_batch(state, parse_put_record_batch(body)?)
                .await
                .map(Reply::Json);
        }
        "ListDeliveryStreams" => list(state, parse(body)?),
        "DescribeDeliveryStream" => describe(state, parse(body)?),
        "CreateDeliveryStream" => create(state, body).await,
        "DeleteDeliveryStream" => delete(state, parse(body)?).await,
        other => Err(ApiError::unknown_operation(format!(
            "Firehose_20150804.{other} is not an operation Hydrant implements"
        ))),
    };
    value.map(Reply::Value)
}

/// Parses a request body (empty is `{}`); `T` may borrow from it.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("cannot parse the request body as JSON: {e}")))
}

/// A record as sent: its `Data` left unparsed (borrowed from the body), so
/// the base64 is decoded straight into the request's one buffer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordIn<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordIn<'a> {
    delivery_stream_name: Option<Value>,
    #[serde(borrow)]
    record: Option<RecordIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchIn<'a> {
    delivery_stream_name: Option<Value>,
    #[serde(borrow)]
    records: Option<Vec<RecordIn<'a>>>,
}

/// Checks a stream name as the model does, adding violations to `v`.
fn check_name(name: Option<&Value>, v: &mut Vec<String>) -> String {
    match name {
        None | Some(Value::Null) => {
            v.push("Value null at 'deliveryStreamName' failed to satisfy constraint: Member must not be null".into());
            String::new()
        }
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > aws::DELIVERY_STREAM_NAME_CHARS_MAX {
                v.push(format!("Value '{s}' at 'deliveryStreamName' failed to satisfy constraint: Member must have length between 1 and 64"));
            } else if !aws::valid_delivery_stream_name(s) {
                v.push(format!("Value '{s}' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"));
            }
            s.clone()
        }
        Some(other) => {
            v.push(format!("Value '{other}' at 'deliveryStreamName' failed to satisfy constraint: Member must be a string"));
            String::new()
        }
    }
}

/// Decodes a record's base64 data onto the end of `out` and checks its
/// size; returns where in `out` it is.
fn decode_data(
    data: Option<&RawValue>,
    at: impl Fn() -> String,
    v: &mut Vec<String>,
    out: &mut Vec<u8>,
) -> Result<Option<std::ops::Range<usize>>, ApiError> {
    let raw = data.map_or("null", |r| r.get());
    if raw == "null" {
        v.push(format!(
            "Value null at '{}' failed to satisfy constraint: Member must not be null",
            at()
        ));
        return Ok(None);
    }
    let not_string = || ApiError::serialization(format!("'{}' must be a base64 string", at()));
    let escaped;
    let text = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        // Base64 has no characters JSON must escape; a sender may still
        // escape some (`\/`), so only then is the string unescaped.
        Some(inner) if !inner.contains('\\') => inner,
        Some(_) => {
            escaped = serde_json::from_str::<String>(raw).map_err(|_| not_string())?;
            escaped.as_str()
        }
        None => return Err(not_string()),
    };
    let start = out.len();
    base64::engine::general_purpose::STANDARD
        .decode_vec(text.as_bytes(), out)
        .map_err(|e| ApiError::serialization(format!("'{}' is not valid base64: {e}", at())))?;
    let n = out.len() - start;
    if n > RECORD_BYTES_MAX {
        out.truncate(start);
        v.push(format!(
            "Value 'java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]' at '{}' failed to satisfy constraint: Member must have length less than or equal to {RECORD_BYTES_MAX}",
            at()
        ));
        return Ok(None);
    }
    Ok(Some(start..out.len()))
}

fn lookup(state: &AppState, name: &str) -> Result<Arc<StreamEntry>, ApiError> {
    state.registry.get(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "Firehose {name} under account {ACCOUNT} not found."
        ))
    })
}

/// A stream producers may put to: not one that reads a Kinesis stream.
fn lookup_for_put(state: &AppState, name: &str) -> Result<Arc<StreamEntry>, ApiError> {
    let entry = lookup(state, name)?;
    if entry.config.source != config::Source::DirectPut {
        return Err(ApiError::invalid_argument(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
        ));
    }
    Ok(entry)
}

fn record_id(entry: &StreamEntry, shard: u32, offset: u64) -> String {
    // Opaque to clients; unique across shards and across streams re-created
    // under the same name. `put_record_batch` writes the same layout.
    format!("{:020}{:04}{:020}", entry.created_ms.max(0), shard, offset)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Appends the records to one shard; Ok once they are durable.
async fn append(
    state: &AppState,
    entry: &StreamEntry,
    data: Vec<Bytes>,
) -> Result<(u32, std::ops::Range<u64>), ApiError> {
    let shard_no = entry.pick_shard();
    let Some(shard) = entry.log.shard(shard_no) else {
        return Err(ApiError::unavailable("shard is not open"));
    };
    let n = data.len() as u64;
    let bytes: u64 = data.iter().map(|d| d.len() as u64).sum();
    let arrival_ms = now_ms();
    let records = data
        .into_iter()
        .map(|d| AppendRecord {
            key: Bytes::new(),
            data: d,
            arrival_ms,
        })
        .collect();
    let label = Metrics::stream(&entry.config.name);
    match shard.append(records).await {
        Ok(range) => {
            let m = &state.registry.metrics;
            m.incoming_records.get_or_create(&label).inc_by(n);
            m.incoming_bytes.get_or_create(&label).inc_by(bytes);
            m.incoming_put_requests.get_or_create(&label).inc();
            Ok((shard_no, range))
        }
        Err(e) => {
            state
                .registry
                .metrics
                .throttled_records
                .get_or_create(&label)
                .inc_by(n);
            tracing::warn!(stream = entry.config.name, shard = shard_no, error = %e, "append refused");
            Err(ApiError::unavailable(if e.is_unavailable() {
                format!("Slow down. {e}")
            } else {
                e.to_string()
            }))
        }
    }
}

/// A validated `PutRecord` request.
#[derive(Debug)]
pub struct PutRecordRequest {
    pub stream: String,
    pub data: Bytes,
}

/// A validated `PutRecordBatch` request.
#[derive(Debug)]
pub struct PutRecordBatchRequest {
    pub stream: String,
    pub records: Vec<Bytes>,
}

/// Parses and validates a `PutRecord` body: JSON, base64, Firehose's limits.
/// Pure, so it can be fuzzed.
pub fn parse_put_record(body: &[u8]) -> Result<PutRecordRequest, ApiError> {
    let req: PutRecordIn = parse(body)?;
    let mut v = Vec::new();
    let stream = check_name(req.delivery_stream_name.as_ref(), &mut v);
    let mut buf = Vec::new();
    let data = match &req.record {
        None => {
            v.push(
                "Value null at 'record' failed to satisfy constraint: Member must not be null"
                    .into(),
            );
            None
        }
        Some(r) => decode_data(r.data, || "record.data".into(), &mut v, &mut buf)?,
    };
    match data {
        Some(_) if v.is_empty() => Ok(PutRecordRequest {
            stream,
            data: Bytes::from(buf),
        }),
        _ => Err(ApiError::validation(&v)),
    }
}

async fn put_record(state: &AppState, req: PutRecordRequest) -> Result<Value, ApiError> {
    let entry = lookup_for_put(state, &req.stream)?;
    let (shard, range) = append(state, &entry, vec![req.data]).await?;
    Ok(json!({ "RecordId": record_id(&entry, shard, range.start), "Encrypted": false }))
}

/// Parses and validates a `PutRecordBatch` body: JSON, base64, 500 records,
/// 1,000 KiB per record, 4 MiB in all. Pure, so it can be fuzzed.
pub fn parse_put_record_batch(body: &[u8]) -> Result<PutRecordBatchRequest, ApiError> {
    let req: PutRecordBatchIn = parse(body)?;
    let mut v = Vec::new();
    let name = check_name(req.delivery_stream_name.as_ref(), &mut v);
    // Every record decoded into one buffer; records are slices of it.
    let mut buf = Vec::with_capacity(body.len() / 4 * 3);
    let mut ranges = Vec::new();
    match &req.records {
        None => v.push("Value null at 'records' failed to satisfy constraint: Member must not be null".into()),
        Some(rs) if rs.is_empty() => v.push("Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1".into()),
        Some(rs) if rs.len() > BATCH_RECORDS_MAX => v.push(format!(
            "Value '[...{} records]' at 'records' failed to satisfy constraint: Member must have length less than or equal to {BATCH_RECORDS_MAX}",
            rs.len()
        )),
        Some(rs) => {
            ranges.reserve(rs.len());
            for (i, r) in rs.iter().enumerate() {
                if let Some(d) = decode_data(r.data, || format!("records.{}.member.data", i + 1), &mut v, &mut buf)? {
                    ranges.push(d);
                }
            }
        }
    }
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let total = buf.len();
    let buf = Bytes::from(buf);
    let data: Vec<Bytes> = ranges.into_iter().map(|r| buf.slice(r)).collect();
    if total > BATCH_BYTES_MAX {
        return Err(ApiError::invalid_argument(
            "Records size exceeds 4 MB limit",
        ));
    }
    Ok(PutRecordBatchRequest {
        stream: name,
        records: data,
    })
}

async fn put_record_batch(
    state: &AppState,
    req: PutRecordBatchRequest,
) -> Result<String, ApiError> {
    use std::fmt::Write;
    let (name, data) = (req.stream, req.records);
    let entry = lookup_for_put(state, &name)?;
    let n = data.len();
    match append(state, &entry, data).await {
        Ok((shard, range)) => {
            // Written directly: a value per record costs more than the rest
            // of the answer.
            let mut out = String::with_capacity(70 + n * 60);
            out.push_str(r#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":["#);
            for (i, o) in range.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // record_id's layout, without a String per record.
                let _ = write!(
                    out,
                    r#"{{"RecordId":"{:020}{shard:04}{o:020}"}}"#,
                    entry.created_ms.max(0)
                );
            }
            out.push_str("]}");
            Ok(out)
        }
        // Firehose reports a refused batch per record with HTTP 200, so that
        // clients re-send only what failed.
        Err(e) if e.kind == "ServiceUnavailableException" => {
            let responses: Vec<Value> = (0..n)
                .map(|_| json!({ "ErrorCode": "ServiceUnavailableException", "ErrorMessage": e.message }))
                .collect();
            Ok(
                json!({ "FailedPutCount": n, "Encrypted": false, "RequestResponses": responses })
                    .to_string(),
            )
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    limit: Option<i64>,
    delivery_stream_type: Option<String>,
    exclusive_start_delivery_stream_name: Option<String>,
}

fn list(state: &AppState, req: ListIn) -> Result<Value, ApiError> {
    let limit = req.limit.unwrap_or(10);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::validation(&[format!(
            "Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
        )]));
    }
    let names: Vec<String> = state
        .registry
        .all()
        .into_iter()
        .filter(|e| {
            req.delivery_stream_type
                .as_deref()
                .is_none_or(|t| t == stream_type(e))
        })
        .map(|e| e.config.name.clone())
        .filter(|n| {
            req.exclusive_start_delivery_stream_name
                .as_ref()
                .is_none_or(|s| n > s)
        })
        .collect();
    let more = names.len() > limit as usize;
    let page: Vec<String> = names.into_iter().take(limit as usize).collect();
    Ok(json!({ "DeliveryStreamNames": page, "HasMoreDeliveryStreams": more }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameIn {
    delivery_stream_name: Option<Value>,
    #[allow(dead_code)]
    allow_force_delete: Option<bool>,
    #[allow(dead_code)]
    limit: Option<i64>,
    #[allow(dead_code)]
    exclusive_start_destination_id: Option<String>,
}

fn describe(state: &AppState, req: NameIn) -> Result<Value, ApiError> {
    let mut v = Vec::new();
    let name = check_name(req.delivery_stream_name.as_ref(), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let entry = lookup(state, &name)?;
    Ok(json!({ "DeliveryStreamDescription": description(&entry) }))
}

fn stream_type(entry: &StreamEntry) -> &'static str {
    match entry.config.source {
        config::Source::DirectPut => "DirectPut",
        config::Source::Kinesis { .. } => "KinesisStreamAsSource",
    }
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "UNCOMPRESSED",
        Compression::Gzip => "GZIP",
        Compression::Zstd => "ZSTD",
        Compression::Snappy => "Snappy",
    }
}

fn description(entry: &StreamEntry) -> Value {
    let c = &entry.config;
    let created = entry.created_ms as f64 / 1000.0;
    let destination = match &c.destination {
        Destination::Object(d) => object_description(entry, d),
        Destination::Http(h) => json!({
            "HttpEndpointDestinationDescription": {
                "EndpointConfiguration": { "Url": h.url },
                "BufferingHints": { "SizeInMBs": c.buffer_bytes >> 20, "IntervalInSeconds": c.buffer_interval.as_secs() },
                "RetryOptions": { "DurationInSeconds": c.retry_duration.as_secs() },
                "RequestConfiguration": { "ContentEncoding": if h.gzip { "GZIP" } else { "NONE" } },
            }
        }),
        // Firehose has no PostgreSQL destination; say what it is.
        Destination::Postgres(p) => {
            json!({ "HydrantPostgresDestinationDescription": { "Table": p.table } })
        }
    };
    let mut dest = json!({ "DestinationId": "destinationId-000000000001" });
    if let (Some(o), Some(extra)) = (dest.as_object_mut(), destination.as_object()) {
        o.extend(extra.clone());
    }
    let source = match &c.source {
        config::Source::DirectPut => json!({}),
        config::Source::Kinesis { stream } => json!({
            "KinesisStreamSourceDescription": {
                "KinesisStreamARN": aws::kinesis_stream_arn(stream),
                "RoleARN": entry
                    .api_request
                    .as_ref()
                    .and_then(|r| r.get("KinesisStreamSourceConfiguration"))
                    .and_then(|k| k.get("RoleARN").cloned())
                    .unwrap_or(Value::String(aws::default_role_arn())),
                "DeliveryStartTimestamp": created,
            }
        }),
    };
    json!({
        "DeliveryStreamName": c.name,
        "DeliveryStreamARN": aws::delivery_stream_arn(&c.name),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": stream_type(entry),
        "VersionId": "1",
        "CreateTimestamp": created,
        "LastUpdateTimestamp": created,
        "Source": source,
        "Destinations": [dest],
        "HasMoreDestinations": false,
    })
}

fn object_description(entry: &StreamEntry, d: &ObjectDestination) -> Value {
    let c = &entry.config;
    let bucket_arn = match &d.store {
        StoreConfig::S3(_) => format!("arn:aws:s3:::{}", d.bucket),
        StoreConfig::File { root } => format!("file://{}", root.join(&d.bucket).display()),
    };
    // What the CreateDeliveryStream request gave, for a stream made through the API.
    let requested = entry
        .api_request
        .as_ref()
        .and_then(|r| config::firehose::destination_config(r).map(|(_, d)| d));
    let error_prefix = requested
        .and_then(|r| r.get("ErrorOutputPrefix").cloned())
        .unwrap_or_else(|| Value::String(d.error_output_prefix.source().to_string()));
    let s3 = json!({
        "RoleARN": requested.and_then(|r| r.get("RoleARN").cloned()).unwrap_or(Value::String(aws::default_role_arn())),
        "BucketARN": bucket_arn,
        "Prefix": d.prefix.source(),
        "ErrorOutputPrefix": error_prefix,
        "BufferingHints": {
            "SizeInMBs": c.buffer_bytes >> 20,
            "IntervalInSeconds": c.buffer_interval.as_secs(),
        },
        "CompressionFormat": compression_name(c.compression),
        "EncryptionConfiguration": { "NoEncryptionConfig": "NoEncryption" },
    });
    let mut extended = s3.clone();
    if let (Some(obj), Some(req)) = (extended.as_object_mut(), requested) {
        for k in [
            "DynamicPartitioningConfiguration",
            "ProcessingConfiguration",
        ] {
            if let Some(v) = req.get(k) {
                obj.insert(k.to_string(), v.clone());
            }
        }
    }
    json!({ "ExtendedS3DestinationDescription": extended, "S3DestinationDescription": s3 })
}

/// A refused `CreateDeliveryStream`, as Firehose answers it.
fn request_error(e: RequestError) -> ApiError {
    match e {
        RequestError::Validation(v) => ApiError::validation(&v),
        RequestError::Invalid(m) => ApiError::invalid_argument(m),
    }
}

async fn create(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    let req: Value = parse(body)?;
    let mut v = Vec::new();
    let name = check_name(req.get("DeliveryStreamName"), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    if state.registry.get(&name).is_some() {
        return Err(ApiError::in_use(format!(
            "Firehose {name} under accountId {ACCOUNT} already exists"
        )));
    }
    let cfg = config::firehose::stream_from_request(&name, &req, &state.registry.config)
        .map_err(request_error)?;
    if let config::Source::Kinesis { stream } = &cfg.source
        && state.registry.kinesis.get(stream).is_none()
    {
        return Err(ApiError::invalid_argument(format!(
            "Kinesis stream {stream} under account {ACCOUNT} does not exist"
        )));
    }
    match state.registry.create(cfg, req).await {
        Ok(_) => Ok(json!({ "DeliveryStreamARN": aws::delivery_stream_arn(&name) })),
        Err(RegistryError::Exists(_)) => Err(ApiError::in_use(format!(
            "Firehose {name} under accountId {ACCOUNT} already exists"
        ))),
        Err(RegistryError::Limit(n)) => Err(ApiError::limit_exceeded(format!(
            "You have already consumed your firehose quota of {n} hoses. Firehose names: …"
        ))),
        Err(e) => Err(ApiError::invalid_argument(e.to_string())),
    }
}

async fn delete(state: &AppState, req: NameIn) -> Result<Value, ApiError> {
    let mut v = Vec::new();
    let name = check_name(req.delivery_stream_name.as_ref(), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let entry = lookup(state, &name)?;
    if entry.origin == Origin::Yaml {
        return Err(ApiError::in_use(format!(
            "Firehose {name} is defined in the configuration file and cannot be deleted through the API"
        )));
    }
    match state.registry.delete(&name).await {
        Ok(()) => Ok(json!({})),
        Err(RegistryError::NotFound(_)) => Err(ApiError::not_found(format!(
            "Firehose {name} under account {ACCOUNT} not found."
        ))),
        Err(e) => Err(ApiError::in_use(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
