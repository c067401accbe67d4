//! `PutRecord` and `PutRecordBatch`: parsing and validation of the request
//! (pure, so it can be fuzzed), then one append to one shard. An answer is
//! sent only once the log made every record durable; a request that fails
//! validation appends nothing.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_BYTES_MAX, check_name, lookup, parse};
use crate::config;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::ingest::fast::{DataBytes, Digits20};
use crate::log::AppendRecord;
use crate::metrics::Metrics;
use crate::streams::StreamEntry;

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

/// Decodes a record's base64 data onto the end of `out` and checks its
/// size; returns where in `out` it is.
pub(super) fn decode_data(
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
    crate::ingest::decode_base64_onto(text.as_bytes(), out)
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

/// A stream producers may put to: not one that reads a Kinesis stream.
fn lookup_for_put(state: &AppState, name: &str) -> Result<Arc<StreamEntry>, ApiError> {
    let entry = lookup(state, name)?;
    if entry.config.source != config::Source::DirectPut {
        return Err(ApiError::invalid_argument(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
        ));
    }
    let out = crate::analytics::runner::io::StreamRef::Delivery(name.to_string());
    if let Some(app) = state.analytics.owner_of(&out) {
        return Err(ApiError::invalid_argument(format!(
            "Delivery stream {name} is the output of application {app}; only the application writes to it."
        )));
    }
    Ok(entry)
}

/// A record's id: its stream's creation time (20 digits), its shard (4) and
/// its offset (20). Opaque to clients; unique across shards and across
/// streams re-created under the same name.
fn record_id(entry: &StreamEntry, shard: u32, offset: u64) -> String {
    let mut id = record_id_head(entry, shard);
    id.push_str(Digits20::new(offset).as_str());
    id
}

/// The first 24 digits of [`record_id`], shared by every record a put
/// appends to one shard.
fn record_id_head(entry: &StreamEntry, shard: u32) -> String {
    format!("{:020}{shard:04}", entry.created_ms.max(0))
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
    let n = data.len() as u64;
    let bytes: u64 = data.iter().map(|d| d.len() as u64).sum();
    let shard_no = entry.pick_shard(bytes);
    let Some(shard) = entry.log.shard(shard_no) else {
        return Err(ApiError::unavailable("shard is not open"));
    };
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

impl PutRecordBatchRequest {
    /// The records as slices of the one buffer they were decoded into.
    fn sliced(stream: String, buf: Vec<u8>, ranges: Vec<std::ops::Range<usize>>) -> Self {
        let buf = Bytes::from(buf);
        PutRecordBatchRequest {
            stream,
            records: ranges.into_iter().map(|r| buf.slice(r)).collect(),
        }
    }
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

pub(super) async fn put_record(state: &AppState, req: PutRecordRequest) -> Result<Value, ApiError> {
    let entry = lookup_for_put(state, &req.stream)?;
    let (shard, range) = append(state, &entry, vec![req.data]).await?;
    Ok(json!({ "RecordId": record_id(&entry, shard, range.start), "Encrypted": false }))
}

/// Parses and validates a `PutRecordBatch` body: JSON, base64, 500 records,
/// 1,000 KiB per record, 4 MiB in all. Pure, so it can be fuzzed.
pub fn parse_put_record_batch(body: &[u8]) -> Result<PutRecordBatchRequest, ApiError> {
    if let Some(s) = super::scan::scan_batch(body) {
        return Ok(PutRecordBatchRequest::sliced(s.stream, s.buf, s.ranges));
    }
    match parse_valid_batch(body) {
        Some(req) => Ok(req),
        None => parse_checked_batch(body),
    }
}

// A member the fast path does not know goes to the full parse, which
// checks the body's UTF-8: serde_json would skip it unchecked.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ValidRecordIn<'a> {
    #[serde(borrow)]
    data: Option<DataBytes<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ValidBatchIn<'a> {
    delivery_stream_name: Option<Value>,
    #[serde(borrow)]
    records: Option<Vec<ValidRecordIn<'a>>>,
}

/// The common case, a valid batch, read without serde_json's UTF-8 pass
/// over every `Data` string (in a W2 profile, 4.5% of the samples of the
/// threads that answer producers). None at the first thing amiss: then
/// [`parse_checked_batch`] parses again, accepts exactly what it always
/// accepted and words the error. Whatever this accepts, that accepts alike:
/// the strings skipped are then valid base64, hence ASCII.
pub(super) fn parse_valid_batch(body: &[u8]) -> Option<PutRecordBatchRequest> {
    let req: ValidBatchIn = serde_json::from_slice(body).ok()?;
    let mut v = Vec::new();
    let stream = check_name(req.delivery_stream_name.as_ref(), &mut v);
    let rs = req.records?;
    if !v.is_empty() || rs.is_empty() || rs.len() > BATCH_RECORDS_MAX {
        return None;
    }
    let mut buf = Vec::with_capacity(body.len() / 4 * 3);
    let mut ranges = Vec::with_capacity(rs.len());
    for r in &rs {
        let start = buf.len();
        crate::ingest::decode_base64_onto(&r.data.as_ref()?.0, &mut buf).ok()?;
        if buf.len() - start > RECORD_BYTES_MAX {
            return None;
        }
        ranges.push(start..buf.len());
    }
    if buf.len() > BATCH_BYTES_MAX {
        return None;
    }
    Some(PutRecordBatchRequest::sliced(stream, buf, ranges))
}

/// Whether the fast paths for valid batches hold to the full parse on
/// `body`: whatever the one-pass scan accepts, the serde fast path accepts
/// and reads alike; whatever that accepts, the full parse accepts and reads alike, and
/// the full parse accepts nothing it leaves to it but bodies with members
/// it does not know. The fuzz targets' entry; the reason when it does not
/// hold.
pub fn put_record_batch_fast_path_agrees(body: &[u8]) -> Result<(), String> {
    let valid = parse_valid_batch(body);
    let scanned = super::scan::scan_batch(body)
        .map(|s| PutRecordBatchRequest::sliced(s.stream, s.buf, s.ranges));
    match (scanned, &valid) {
        (Some(s), Some(v)) if s.stream == v.stream && s.records == v.records => {}
        (Some(s), Some(v)) => {
            return Err(format!(
                "the scan reads differently: scan {s:?}, serde {v:?}"
            ));
        }
        (Some(_), None) => return Err("the scan accepts what the serde fast path does not".into()),
        (None, _) => {}
    }
    match (valid, parse_checked_batch(body)) {
        (Some(f), Ok(c)) if f.stream == c.stream && f.records == c.records => Ok(()),
        (None, Err(_)) => Ok(()),
        (None, Ok(_)) if has_unknown_member(body) => Ok(()),
        (Some(f), Ok(c)) => Err(format!("read differently: fast {f:?}, full {c:?}")),
        (Some(_), Err(e)) => Err(format!("the full parse refuses it: {}", e.message)),
        (None, Ok(_)) => Err("the fast path left a batch the full parse accepts".into()),
    }
}

/// Whether a `PutRecordBatch` body has a member, at the top or in a record,
/// that the fast path does not know (and so leaves to the full parse).
fn has_unknown_member(body: &[u8]) -> bool {
    let Ok(Value::Object(top)) = serde_json::from_slice(body) else {
        return false;
    };
    let unknown = |m: &serde_json::Map<String, Value>, known: &[&str]| {
        m.keys().any(|k| !known.contains(&k.as_str()))
    };
    unknown(&top, &["DeliveryStreamName", "Records"])
        || top
            .get("Records")
            .and_then(Value::as_array)
            .is_some_and(|rs| {
                rs.iter()
                    .filter_map(Value::as_object)
                    .any(|r| unknown(r, &["Data"]))
            })
}

/// [`parse_put_record_batch`] with every check and its message.
pub(super) fn parse_checked_batch(body: &[u8]) -> Result<PutRecordBatchRequest, ApiError> {
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
    if buf.len() > BATCH_BYTES_MAX {
        return Err(ApiError::invalid_argument(
            "Records size exceeds 4 MB limit",
        ));
    }
    Ok(PutRecordBatchRequest::sliced(name, buf, ranges))
}

pub(super) async fn put_record_batch(
    state: &AppState,
    req: PutRecordBatchRequest,
) -> Result<String, ApiError> {
    let (name, data) = (req.stream, req.records);
    let entry = lookup_for_put(state, &name)?;
    let n = data.len();
    match append(state, &entry, data).await {
        Ok((shard, range)) => {
            // Written directly: a value per record costs more than the rest
            // of the answer. Every id shares record_id's first 24 digits,
            // and the offsets are consecutive: their digits are counted up
            // in place instead of formatted.
            let head = record_id_head(&entry, shard);
            let mut out = String::with_capacity(70 + n * (head.len() + 37));
            out.push_str(r#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":["#);
            let mut digits = Digits20::new(range.start);
            for i in 0..range.end.saturating_sub(range.start) {
                if i > 0 {
                    out.push(',');
                    digits.increment();
                }
                out.push_str(r#"{"RecordId":""#);
                out.push_str(&head);
                out.push_str(digits.as_str());
                out.push_str("\"}");
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
