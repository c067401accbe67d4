//! The puts: `PutRecord` and `PutRecords`. Every record is checked before
//! any is appended; records go to the shard their hash key falls in, each
//! shard's group in one append, and the answer waits until they are durable.
//! In `PutRecords` a record over its shard's write limit fails alone.
//!
//! A put holds its stream's gate (shared) from routing its records to their
//! open shards until they are durable, so a reshard, which takes the gate
//! alone, never closes a shard under a put in flight.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    PARTITION_KEY_CHARS_MAX, PUT_RECORDS_BYTES_MAX, PUT_RECORDS_MAX, Req, internal, missing,
    now_ms, sequence, stream_name_of, throughput, violation,
};
use crate::aws::ACCOUNT;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::ingest::fast::{DataBytes, Digits20};
use crate::kinesis::KinesisStream;
use crate::kinesis::position::{SequenceNumber, hash_key, parse_hash_key, shard_id};
use crate::log::AppendRecord;
use crate::metrics::Metrics;

/// A record to put, checked.
#[derive(Debug, PartialEq)]
pub(super) struct PutIn {
    pub(super) data: Bytes,
    pub(super) key: Bytes,
    hash: u128,
}

fn record_in(r: &Map<String, Value>, at: &str, max: usize) -> Result<PutIn, ApiError> {
    let field = |f: &str| format!("{at}{f}");
    let data = match r.get("Data") {
        None | Some(Value::Null) => return Err(missing(&field("data"))),
        Some(Value::String(s)) => {
            let mut data = Vec::with_capacity(s.len() / 4 * 3);
            crate::ingest::decode_base64_onto(s.as_bytes(), &mut data).map_err(|e| {
                ApiError::serialization(format!("'{}' is not valid base64: {e}", field("data")))
            })?;
            data
        }
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "'{}' must be a base64 string",
                field("data")
            )));
        }
    };
    if data.len() > max {
        return Err(violation(
            &field("data"),
            format!(
                "java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]",
                n = data.len()
            ),
            &format!("Member must have length less than or equal to {max}"),
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
    let explicit = match r.get("ExplicitHashKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(h)) => Some(h.as_str()),
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "'{}' must be a string",
                field("explicitHashKey")
            )));
        }
    };
    let hash = key_hash(key, explicit, at)?;
    Ok(PutIn {
        data: Bytes::from(data),
        key: Bytes::copy_from_slice(key.as_bytes()),
        hash,
    })
}

/// Checks a record's partition key and explicit hash key; the hash key
/// the record is routed by.
fn key_hash(key: &str, explicit: Option<&str>, at: &str) -> Result<u128, ApiError> {
    let chars = key.chars().count();
    if chars == 0 || chars > PARTITION_KEY_CHARS_MAX {
        return Err(violation(
            &format!("{at}partitionKey"),
            key,
            &format!("Member must have length between 1 and {PARTITION_KEY_CHARS_MAX}"),
        ));
    }
    match explicit {
        None => Ok(hash_key(key.as_bytes())),
        Some(h) => parse_hash_key(h).ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
            ))
        }),
    }
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
            s.note_write(shard, n, bytes);
            m.kinesis_incoming_records.get_or_create(&label).inc_by(n);
            m.kinesis_incoming_bytes.get_or_create(&label).inc_by(bytes);
            if s.shard_metrics() {
                let shard_label = Metrics::shard(&s.name, shard);
                m.kinesis_shard_incoming_records
                    .get_or_create(&shard_label)
                    .inc_by(n);
                m.kinesis_shard_incoming_bytes
                    .get_or_create(&shard_label)
                    .inc_by(bytes);
            }
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

/// Refuses a put to a stream a SQL application writes its results to.
fn not_an_output(state: &AppState, s: &KinesisStream) -> Result<(), ApiError> {
    let out = crate::analytics::runner::io::StreamRef::Kinesis(s.name.clone());
    match state.analytics.owner_of(&out) {
        Some(app) => Err(ApiError::invalid_argument(format!(
            "Stream {} is the output of application {app}; only the application writes to it.",
            s.name
        ))),
        None => Ok(()),
    }
}

pub(super) async fn put_record(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    not_an_output(state, &s)?;
    let record = record_in(req.0, "", s.max_record_bytes())?;
    if let Some(o) = req.str("SequenceNumberForOrdering")?
        && !o.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(violation(
            "sequenceNumberForOrdering",
            o,
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
        ));
    }
    let _gate = s.gate.read().await;
    let shard = s.layout().router.route(record.hash);
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
        "EncryptionType": super::encryption::encryption_of(&s).0,
    }))
}

pub(super) async fn put_records(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    not_an_output(state, &s)?;
    let parsed = records_in(&req, s.max_record_bytes())?;
    let results = put_checked(state, &s, parsed).await;
    Ok(put_records_reply(&s, results))
}

/// Each record's shard and offset, or its error, in request order.
type PutResults = Vec<Option<Result<(u32, u64), ApiError>>>;

/// Puts checked records: grouped by shard, keeping request order within
/// each shard, one append per shard; a record over its shard's write limit
/// fails alone, as Kinesis reports it.
async fn put_checked(state: &AppState, s: &KinesisStream, parsed: Vec<PutIn>) -> PutResults {
    let n = parsed.len();
    let mut results: PutResults = (0..n).map(|_| None).collect();
    let mut groups: BTreeMap<u32, (Vec<usize>, Vec<PutIn>)> = BTreeMap::new();
    let mut throttled = 0u64;
    let _gate = s.gate.read().await;
    let layout = s.layout();
    for (i, r) in parsed.into_iter().enumerate() {
        let shard = layout.router.route(r.hash);
        if s.admit(shard, (r.data.len() + r.key.len()) as u64) {
            let g = groups.entry(shard).or_default();
            g.0.push(i);
            g.1.push(r);
        } else {
            throttled += 1;
            results[i] = Some(Err(throughput(over_limit(s, shard))));
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
    let appends = groups.into_iter().map(|(shard, (idx, recs))| async move {
        (shard, idx, append(state, s, shard, recs).await)
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
    results
}

/// The records of a `PutRecords` request, each checked, within the
/// request's count and size limits.
pub(super) fn records_in(req: &Req<'_>, max: usize) -> Result<Vec<PutIn>, ApiError> {
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
        parsed.push(record_in(r, &format!("records.{}.member.", i + 1), max)?);
    }
    // A stream taking larger records takes a request of one of them.
    let total: usize = parsed.iter().map(|r| r.data.len() + r.key.len()).sum();
    let total_max = PUT_RECORDS_BYTES_MAX.max(max + PARTITION_KEY_CHARS_MAX * 4);
    if total > total_max {
        return Err(ApiError::invalid_argument(format!(
            "Records size exceeds the {total_max}-byte limit ({total} bytes of data and partition keys)"
        )));
    }
    Ok(parsed)
}

/// The `PutRecords` answer: each record's shard and sequence number or its
/// error, in request order.
fn put_records_reply(s: &KinesisStream, results: PutResults) -> Value {
    let mut failed = 0;
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Some(Ok((shard, off))) => json!({
                "ShardId": shard_id(shard),
                "SequenceNumber": sequence(s, shard, off),
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
    let encryption = super::encryption::encryption_of(s).0;
    json!({ "FailedRecordCount": failed, "Records": out, "EncryptionType": encryption })
}

/// A record of a `PutRecords` JSON body as the fast path reads it. A member
/// it does not know sends the body to the full path: skipping it would
/// not check its text (serde_json skips strings without validating their
/// UTF-8), which the full path refuses.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ValidRecordIn<'a> {
    #[serde(borrow)]
    data: DataBytes<'a>,
    #[serde(borrow)]
    partition_key: Cow<'a, str>,
    #[serde(borrow)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ValidPutRecordsIn<'a> {
    #[serde(borrow)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    records: Vec<ValidRecordIn<'a>>,
}

/// `PutRecords` from a JSON body by the fast path: the body read once into
/// borrowed fields (no JSON value per record, no UTF-8 pass over `Data`),
/// the records decoded into one buffer, the answer written straight into
/// its text. None at the first thing amiss, before anything is appended:
/// then the full path parses again, accepts exactly what it always accepted
/// and words the error.
pub(super) async fn put_records_json(
    state: &AppState,
    body: &[u8],
) -> Option<Result<String, ApiError>> {
    if let Some(sc) = super::scan::scan_put_records(body) {
        let (s, results) = put_valid(state, sc.name, sc.arn, |max| {
            scanned_records(&sc.records, max)
        })
        .await?;
        return Some(Ok(put_records_text(&s, results)));
    }
    let req: ValidPutRecordsIn = serde_json::from_slice(body).ok()?;
    let (name, arn) = (req.stream_name.as_deref(), req.stream_arn.as_deref());
    let (s, results) = put_valid(state, name, arn, |max| valid_records(&req.records, max)).await?;
    Some(Ok(put_records_text(&s, results)))
}

/// `PutRecords` from a CBOR body by the fast path: a body of the shape the
/// AWS SDK for Java sends, its `Data` byte strings taken as they are (no
/// base64 round trip, no JSON value), the answer written straight into the
/// body. None for anything else, before anything is appended.
pub(super) async fn put_records_cbor(
    state: &AppState,
    body: &[u8],
) -> Option<Result<Vec<u8>, ApiError>> {
    let (name, arn, records) = cbor_put_records(body)?;
    let (s, results) = put_valid(state, name.as_deref(), arn.as_deref(), |max| {
        valid_cbor_records(&records, max)
    })
    .await?;
    Some(Ok(put_records_cbor_reply(&s, results)))
}

/// The fast paths' put: the stream named, not an application's output,
/// and the records `valid` reads at the stream's record size, put; None
/// if any of that is not so.
async fn put_valid(
    state: &AppState,
    name: Option<&str>,
    arn: Option<&str>,
    valid: impl FnOnce(usize) -> Option<Vec<PutIn>>,
) -> Option<(Arc<KinesisStream>, PutResults)> {
    let name = stream_name_of(name, arn).ok()?;
    let s = state.registry.kinesis.get(&name)?;
    not_an_output(state, &s).ok()?;
    let records = valid(s.max_record_bytes())?;
    let results = put_checked(state, &s, records).await;
    Some((s, results))
}

/// The records of a JSON fast-path body, if every one passes the checks
/// [`records_in`] makes (`Data` base64-decoded).
fn valid_records(rs: &[ValidRecordIn], max: usize) -> Option<Vec<PutIn>> {
    let parts = rs.iter().map(|r| {
        let key: &str = &r.partition_key;
        (&r.data.0[..], key, r.explicit_hash_key.as_deref())
    });
    let data_bytes = rs.iter().map(|r| r.data.0.len() / 4 * 3).sum();
    checked(parts, data_bytes, max, |text, out| {
        crate::ingest::decode_base64_onto(text, out).ok()
    })
}

/// The records of a body the one-pass scan read, if every one passes the
/// checks [`records_in`] makes (`Data` base64-decoded).
fn scanned_records(rs: &[super::scan::Part], max: usize) -> Option<Vec<PutIn>> {
    let data_bytes = rs.iter().map(|r| r.0.len() / 4 * 3).sum();
    checked(rs.iter().copied(), data_bytes, max, |text, out| {
        crate::ingest::decode_base64_onto(text, out).ok()
    })
}

/// The records of a CBOR fast-path body, if every one passes the checks
/// [`records_in`] makes (`Data` as it came).
fn valid_cbor_records(rs: &[(Vec<u8>, String, Option<String>)], max: usize) -> Option<Vec<PutIn>> {
    let parts = rs
        .iter()
        .map(|(d, k, h)| (&d[..], k.as_str(), h.as_deref()));
    let data_bytes = rs.iter().map(|r| r.0.len()).sum();
    checked(parts, data_bytes, max, |d, out| {
        out.extend_from_slice(d);
        Some(())
    })
}

/// Records as a fast path read them (data as sent, partition key, hash
/// key), checked as [`records_in`] checks them: their count, each one's
/// data (put onto the buffer by `data`) and keys, and the total. The
/// records are slices of one buffer of data and one of keys.
fn checked<'r>(
    parts: impl ExactSizeIterator<Item = (&'r [u8], &'r str, Option<&'r str>)> + Clone,
    data_bytes: usize,
    max: usize,
    data: impl Fn(&[u8], &mut Vec<u8>) -> Option<()>,
) -> Option<Vec<PutIn>> {
    let n = parts.len();
    if n == 0 || n > PUT_RECORDS_MAX {
        return None;
    }
    let key_bytes = parts.clone().map(|(_, key, _)| key.len()).sum();
    let (mut datas, mut keys) = (
        Vec::with_capacity(data_bytes),
        Vec::with_capacity(key_bytes),
    );
    let mut spans = Vec::with_capacity(n);
    for (sent, key, explicit) in parts {
        let (d, k) = (datas.len(), keys.len());
        data(sent, &mut datas)?;
        if datas.len() - d > max {
            return None;
        }
        let hash = key_hash(key, explicit, "").ok()?;
        keys.extend_from_slice(key.as_bytes());
        spans.push((d..datas.len(), k..keys.len(), hash));
    }
    let total_max = PUT_RECORDS_BYTES_MAX.max(max + PARTITION_KEY_CHARS_MAX * 4);
    if datas.len() + keys.len() > total_max {
        return None;
    }
    let (datas, keys) = (Bytes::from(datas), Bytes::from(keys));
    Some(
        spans
            .into_iter()
            .map(|(d, k, hash)| PutIn {
                data: datas.slice(d),
                key: keys.slice(k),
                hash,
            })
            .collect(),
    )
}

/// The parts of a CBOR `PutRecords` body the fast path reads: the stream's
/// name and ARN, and each record's data, partition key and hash key.
type CborPut = (
    Option<String>,
    Option<String>,
    Vec<(Vec<u8>, String, Option<String>)>,
);

/// A CBOR `PutRecords` body of the one shape the AWS SDK for Java sends
/// (a map of text keys: `StreamName` and `StreamARN` as text, `Records` an
/// array of maps of `Data` as a byte string, `PartitionKey` and
/// `ExplicitHashKey` as text), none repeated and nothing else; None for
/// anything else, which the full path (the body as the JSON value it would
/// be) then reads.
fn cbor_put_records(body: &[u8]) -> Option<CborPut> {
    use ciborium::Value as Cbor;
    let text = |v: Cbor| match v {
        Cbor::Text(t) => Some(t),
        _ => None,
    };
    let Cbor::Map(top) = ciborium::from_reader::<Cbor, _>(body).ok()? else {
        return None;
    };
    let (mut name, mut arn, mut records) = (None, None, None);
    for (k, v) in top {
        match text(k)?.as_str() {
            "StreamName" if name.is_none() => name = Some(text(v)?),
            "StreamARN" if arn.is_none() => arn = Some(text(v)?),
            "Records" if records.is_none() => match v {
                Cbor::Array(a) => records = Some(a),
                _ => return None,
            },
            _ => return None,
        }
    }
    let mut out = Vec::new();
    for r in records? {
        let Cbor::Map(fields) = r else { return None };
        let (mut data, mut key, mut hash) = (None, None, None);
        for (k, v) in fields {
            match text(k)?.as_str() {
                "Data" if data.is_none() => match v {
                    Cbor::Bytes(b) => data = Some(b),
                    _ => return None,
                },
                "PartitionKey" if key.is_none() => key = Some(text(v)?),
                "ExplicitHashKey" if hash.is_none() => hash = Some(text(v)?),
                _ => return None,
            }
        }
        out.push((data?, key?, hash));
    }
    Some((name, arn, out))
}

/// [`put_records_reply`] as text, written directly when every record was
/// put (a sequence number is its shard's 16-digit head and 20 digits of
/// offset); else through the value, as a refusal is rare.
fn put_records_text(s: &KinesisStream, results: PutResults) -> String {
    if results.iter().any(|r| !matches!(r, Some(Ok(_)))) {
        return put_records_reply(s, results).to_string();
    }
    let mut heads: BTreeMap<u32, (String, String)> = BTreeMap::new();
    let mut out = String::with_capacity(64 + results.len() * 90);
    out.push_str(r#"{"FailedRecordCount":0,"Records":["#);
    for (i, (shard, offset)) in results.into_iter().flatten().flatten().enumerate() {
        let (id, head) = heads
            .entry(shard)
            .or_insert_with(|| sequence_head(s, shard));
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"ShardId":""#);
        out.push_str(id);
        out.push_str(r#"","SequenceNumber":""#);
        out.push_str(head);
        out.push_str(Digits20::new(offset).as_str());
        out.push_str("\"}");
    }
    out.push_str(r#"],"EncryptionType":""#);
    out.push_str(super::encryption::encryption_of(s).0);
    out.push_str("\"}");
    out
}

/// [`put_records_reply`] in CBOR, written directly when every record was
/// put (members in the order the value's CBOR has them); else through the
/// value.
fn put_records_cbor_reply(s: &KinesisStream, results: PutResults) -> Vec<u8> {
    use crate::ingest::cbor::{reply_from_json, write};
    if results.iter().any(|r| !matches!(r, Some(Ok(_)))) {
        return reply_from_json(&put_records_reply(s, results));
    }
    let mut heads: BTreeMap<u32, (String, String)> = BTreeMap::new();
    let mut out = Vec::with_capacity(64 + results.len() * 80);
    write::map(&mut out, 3);
    write::text(&mut out, "EncryptionType");
    write::text(&mut out, super::encryption::encryption_of(s).0);
    write::text(&mut out, "FailedRecordCount");
    write::int(&mut out, 0);
    write::text(&mut out, "Records");
    write::array(&mut out, results.len());
    let mut seq = String::with_capacity(36);
    for (shard, offset) in results.into_iter().flatten().flatten() {
        let (id, head) = heads
            .entry(shard)
            .or_insert_with(|| sequence_head(s, shard));
        seq.clear();
        seq.push_str(head);
        seq.push_str(Digits20::new(offset).as_str());
        write::map(&mut out, 2);
        write::text(&mut out, "SequenceNumber");
        write::text(&mut out, &seq);
        write::text(&mut out, "ShardId");
        write::text(&mut out, id);
    }
    out
}

/// A shard's id and the 16 digits every sequence number of it starts with.
fn sequence_head(s: &KinesisStream, shard: u32) -> (String, String) {
    (shard_id(shard), SequenceNumber::head(s.incarnation, shard))
}

/// [`put_records_json`]'s parse and checks alone, for tests and the fuzz
/// targets: the records' (partition key, data, hash key) as the fast path
/// reads them.
fn parse_valid_put_records(body: &[u8], max: usize) -> Option<Vec<PutIn>> {
    let req: ValidPutRecordsIn = serde_json::from_slice(body).ok()?;
    stream_name_of(req.stream_name.as_deref(), req.stream_arn.as_deref()).ok()?;
    valid_records(&req.records, max)
}

/// [`put_records_cbor`]'s parse and checks alone, for tests and the fuzz
/// targets.
fn parse_valid_put_records_cbor(body: &[u8], max: usize) -> Option<Vec<PutIn>> {
    let (name, arn, records) = cbor_put_records(body)?;
    stream_name_of(name.as_deref(), arn.as_deref()).ok()?;
    valid_cbor_records(&records, max)
}

/// The full path's parse and checks of a body (JSON, or CBOR when `cbor`:
/// the JSON value it would be), as the router and `put_records` make them
/// before it appends.
fn parse_full_put_records(body: &[u8], cbor: bool, max: usize) -> Result<Vec<PutIn>, ApiError> {
    let v = super::request_value(body, cbor)?;
    let empty = Map::new();
    let req = super::as_req(&v, &empty)?;
    req.stream_name()?;
    records_in(&req, max)
}

/// Whether the `PutRecords` fast path (JSON, or CBOR when `cbor`) holds to
/// the full path on `body`: whatever it accepts, the full path accepts and
/// reads alike (and for JSON, whatever the one-pass scan accepts, the serde
/// fast path accepts and reads alike). The fuzz targets' check; the reason
/// when it does not.
pub(super) fn fast_path_agrees(body: &[u8], cbor: bool, max: usize) -> Result<(), String> {
    let fast = if cbor {
        parse_valid_put_records_cbor(body, max)
    } else {
        let fast = parse_valid_put_records(body, max);
        let scanned = super::scan::scan_put_records(body).and_then(|sc| {
            stream_name_of(sc.name, sc.arn).ok()?;
            scanned_records(&sc.records, max)
        });
        match (scanned, &fast) {
            (Some(s), Some(f)) if s == *f => {}
            (Some(s), f) => {
                return Err(format!(
                    "the scan reads differently: scan {s:?}, serde {f:?}"
                ));
            }
            (None, _) => {}
        }
        fast
    };
    let Some(fast) = fast else {
        return Ok(());
    };
    match parse_full_put_records(body, cbor, max) {
        Ok(full) if full == fast => Ok(()),
        Ok(full) => Err(format!("read differently: fast {fast:?}, full {full:?}")),
        Err(e) => Err(format!("the full path refuses it: {}", e.message)),
    }
}

#[cfg(test)]
mod tests;
