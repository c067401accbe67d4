//! The reads: `GetShardIterator` turns a position (trim horizon, latest, a
//! sequence number or a time) into an iterator; `GetRecords` reads from the
//! shard log at an iterator and hands out the next one. Reads never change
//! the log. At the end of a closed shard `GetRecords` answers its children
//! and no next iterator, so a reader walks on to them.

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::streams::hash_key_range;
use super::{
    GET_RECORDS_BYTES_MAX, GET_RECORDS_LIMIT_MAX, RECORD_BYTES_MAX, Req, internal, not_found,
    now_ms, seconds, timestamp_ms, violation,
};
use crate::aws::{ACCOUNT, kinesis_stream_from_arn};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::KinesisStream;
use crate::kinesis::position::{ShardIterator, decode_position, parse_shard_id, shard_id};
use crate::kinesis::shards::ShardMap;
use crate::log::LogError;
use crate::metrics::Metrics;
use crate::record::Record;

pub(super) async fn get_shard_iterator(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let id = req.required_str("ShardId", "shardId")?;
    let kind = req.required_str("ShardIteratorType", "shardIteratorType")?;
    let shard = shard_of(&s, id)?;
    let start = start_at(
        &s,
        shard,
        id,
        Position {
            op: "GetShardIterator",
            kind,
            kind_field: "shardIteratorType",
            sequence: req.str("StartingSequenceNumber")?,
            sequence_field: "StartingSequenceNumber",
            timestamp: req.0.get("Timestamp").filter(|t| !t.is_null()),
        },
    )
    .await?;
    let it = ShardIterator {
        stream: s.name.clone(),
        incarnation: s.incarnation,
        shard,
        offset: start.offset,
        position: start.position,
        issued_ms: now_ms(),
    };
    Ok(json!({ "ShardIterator": it.encode() }))
}

/// The shard a `ShardId` names in `s`, or Kinesis's not-found answer.
pub(super) fn shard_of(s: &KinesisStream, id: &str) -> Result<u32, ApiError> {
    parse_shard_id(id)
        .filter(|i| s.layout().map.get(*i).is_some())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Shard {id} in stream {} under account {ACCOUNT} does not exist",
                s.name
            ))
        })
}

/// A starting position as a request gives it (`GetShardIterator`'s fields,
/// or `SubscribeToShard`'s `StartingPosition`).
pub(super) struct Position<'a> {
    pub op: &'a str,
    pub kind: &'a str,
    pub kind_field: &'a str,
    pub sequence: Option<&'a str>,
    pub sequence_field: &'a str,
    pub timestamp: Option<&'a Value>,
}

/// Where a reader starts: the offset, and where it is in the log if known.
pub(super) struct Start {
    pub offset: u64,
    pub position: Option<(u64, u64)>,
}

/// Resolves a starting position in shard `shard` of `s` (never below the
/// oldest record the log still holds).
pub(super) async fn start_at(
    s: &Arc<KinesisStream>,
    shard: u32,
    id: &str,
    p: Position<'_>,
) -> Result<Start, ApiError> {
    let log = s
        .log
        .shard(shard)
        .ok_or_else(|| internal(format!("shard {shard} has no log")))?;
    let mut end = log.durable_end();
    if matches!(p.kind, "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER")
        && let Some((seq, _)) = p.sequence.and_then(decode_position)
        && seq.offset >= end
    {
        end = caught_up(&log, seq.offset).await;
    }
    let oldest = log.oldest_offset();
    let (offset, position) = match p.kind {
        "TRIM_HORIZON" => (oldest, Some((oldest, 0))),
        "LATEST" => (end, log.tail_position(end)),
        "AT_SEQUENCE_NUMBER" => (at_sequence(s, shard, id, end, &p, false)?, None),
        "AFTER_SEQUENCE_NUMBER" => (at_sequence(s, shard, id, end, &p, true)?, None),
        "AT_TIMESTAMP" => {
            let ts = p.timestamp.ok_or_else(|| {
                ApiError::invalid_argument(
                    "Timestamp must be given for ShardIteratorType AT_TIMESTAMP",
                )
            })?;
            let ms = timestamp_ms(ts).ok_or_else(|| {
                ApiError::serialization(format!("Timestamp {ts} is not a timestamp"))
            })?;
            let offset = tokio::task::spawn_blocking(move || log.offset_at_time(ms))
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(|e| internal(e.to_string()))?;
            (offset, None)
        }
        other => {
            return Err(violation(
                p.kind_field,
                other,
                "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
            ));
        }
    };
    Ok(Start {
        offset: offset.max(oldest),
        position: position.filter(|_| offset >= oldest),
    })
}

/// How long a sequence number beyond the shard's end as this node knows it
/// is waited for: in cluster mode another node may have issued it, and this
/// node learns the shard's new end a moment later.
const ISSUED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The shard's durable end once it passed `offset`, or as it is after
/// [`ISSUED_WAIT`].
async fn caught_up(log: &crate::log::ShardLog, offset: u64) -> u64 {
    let mut rx = log.subscribe();
    let _ = tokio::time::timeout(ISSUED_WAIT, rx.wait_for(|e| *e > offset)).await;
    log.durable_end()
}

/// The offset at (or after) a position's sequence number, which must be one
/// this stream issued on this shard, or the marker before its first record.
fn at_sequence(
    s: &KinesisStream,
    shard: u32,
    id: &str,
    end: u64,
    p: &Position<'_>,
    after: bool,
) -> Result<u64, ApiError> {
    let (op, kind, field) = (p.op, p.kind, p.sequence_field);
    let raw = p.sequence.ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "{field} must be given for ShardIteratorType {kind}"
        ))
    })?;
    let invalid = || {
        ApiError::invalid_argument(format!(
            "{field} {raw} used in {op} on shard {id} in stream {} under account {ACCOUNT} is invalid.",
            s.name
        ))
    };
    let (seq, before_first) = decode_position(raw).ok_or_else(invalid)?;
    if seq.incarnation != s.incarnation {
        return Err(invalid());
    }
    if seq.shard != shard {
        return Err(ApiError::invalid_argument(format!(
            "Invalid {field}. It encodes {}, while it was used in a call to a shard with {id}",
            shard_id(seq.shard)
        )));
    }
    if before_first {
        return Ok(0);
    }
    if seq.offset >= end {
        return Err(ApiError::invalid_argument(format!(
            "{field} {raw} used in {op} on shard {id} in stream {} under account {ACCOUNT} has not been issued yet.",
            s.name
        )));
    }
    Ok(if after { seq.offset + 1 } else { seq.offset })
}

pub(super) async fn get_records(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let (s, shard, out) = read_records(state, req).await?;
    Ok(out.into_value(s.incarnation, shard))
}

/// `GetRecords` for a CBOR client: the answer written straight into the body.
pub(super) async fn get_records_cbor(state: &AppState, req: Req<'_>) -> Result<Vec<u8>, ApiError> {
    let (s, shard, out) = read_records(state, req).await?;
    Ok(out.into_cbor(s.incarnation, shard))
}

/// `GetRecords` for a JSON client: the answer written straight into the body.
pub(super) async fn get_records_json(state: &AppState, req: Req<'_>) -> Result<String, ApiError> {
    let (s, shard, out) = read_records(state, req).await?;
    Ok(out.into_json(s.incarnation, shard))
}

async fn read_records(
    state: &AppState,
    req: Req<'_>,
) -> Result<(Arc<KinesisStream>, u32, RecordsOut), ApiError> {
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
    check_expiry(state, &it, now)?;
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
    // Less than a record under Kinesis's 10 MiB, so the reply stays within
    // it (a stream of records up to 10 MiB still gets one record a call).
    let bytes_max = GET_RECORDS_BYTES_MAX
        .saturating_sub(s.max_record_bytes().max(RECORD_BYTES_MAX))
        .max(1);
    let read = read_shard(s.clone(), shard, it.offset, it.position, limit, bytes_max).await?;
    let out = records_reply(state, &s, shard, read, now);
    Ok((s, shard, out))
}

/// Refuses an iterator issued longer ago than the configured lifetime.
fn check_expiry(state: &AppState, it: &ShardIterator, now: i64) -> Result<(), ApiError> {
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
    Ok(())
}

/// What one `GetRecords` read found.
pub(super) struct ShardRead {
    pub frames: Vec<Record>,
    /// The offset the next read starts at.
    pub next: u64,
    /// Where in the log that offset is, when known.
    pub resume: Option<(u64, u64)>,
    /// The shard's durable end after the read.
    pub end: u64,
}

/// Reads up to `limit` records from the iterator's shard at its offset, on a
/// blocking thread (reads are blocking file I/O).
pub(super) async fn read_shard(
    s: Arc<KinesisStream>,
    shard: u32,
    offset: u64,
    position: Option<(u64, u64)>,
    limit: usize,
    bytes_max: usize,
) -> Result<ShardRead, ApiError> {
    tokio::task::spawn_blocking(move || {
        let log = s
            .log
            .shard(shard)
            .ok_or_else(|| format!("shard {shard} is not open"))?;
        let mut from = offset.max(log.oldest_offset());
        let mut reader = match position {
            Some((base, pos)) if from == offset => log.reader_at(from, base, pos),
            _ => log.reader(from),
        };
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
            .or_else(|| position.filter(|_| next == offset))
            .or_else(|| log.tail_position(next));
        Ok::<_, String>(ShardRead {
            frames,
            next,
            resume,
            end: log.durable_end(),
        })
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)
}

fn sequence_of(incarnation: u32, shard: u32, offset: u64) -> String {
    crate::kinesis::position::SequenceNumber {
        incarnation,
        shard,
        offset,
    }
    .encode()
}

/// A record as `GetRecords` hands it to CBOR clients.
fn record_value(incarnation: u32, shard: u32, f: &Record) -> Value {
    json!({
        "SequenceNumber": sequence_of(incarnation, shard, f.offset),
        "ApproximateArrivalTimestamp": seconds(f.arrival_ms),
        "Data": base64::engine::general_purpose::STANDARD.encode(&f.data),
        "PartitionKey": String::from_utf8_lossy(&f.key),
    })
}

/// A closed shard's children, as the end of its reading names them.
pub(super) fn child_shards(map: &ShardMap, shard: u32) -> Vec<Value> {
    map.children(shard)
        .into_iter()
        .map(|c| {
            json!({
                "ShardId": shard_id(c.index),
                "ParentShards": c.parents().map(shard_id).collect::<Vec<_>>(),
                "HashKeyRange": hash_key_range(c),
            })
        })
        .collect()
}

/// The `GetRecords` answer for what was read, with the next iterator; counts
/// what it hands out.
/// A `GetRecords` answer before it is written: the records, the next
/// iterator (None once a closed shard is read to its end, with its
/// children instead), and how far behind the tip the read ended.
pub(super) struct RecordsOut {
    frames: Vec<crate::record::Record>,
    next_iterator: Option<String>,
    children: Option<Value>,
    behind: i64,
}

fn records_reply(
    state: &AppState,
    s: &KinesisStream,
    shard: u32,
    read: ShardRead,
    now: i64,
) -> RecordsOut {
    let ShardRead {
        frames,
        next,
        resume,
        end,
    } = read;
    let layout = s.layout();
    // A closed shard read to its end: its children, and no next iterator.
    let ended = layout
        .map
        .get(shard)
        .and_then(|x| x.closed)
        .is_some_and(|c| next >= c.end_offset);
    let behind = match frames.last() {
        Some(f) if next < end && !ended => (now - f.arrival_ms).max(0),
        _ => 0,
    };
    count_outgoing(state, s, shard, &frames, behind);
    if ended {
        return RecordsOut {
            frames,
            next_iterator: None,
            children: Some(Value::Array(child_shards(&layout.map, shard))),
            behind: 0,
        };
    }
    let next_it = ShardIterator {
        stream: s.name.clone(),
        incarnation: s.incarnation,
        shard,
        offset: next,
        position: resume,
        issued_ms: now_ms(),
    };
    RecordsOut {
        frames,
        next_iterator: Some(next_it.encode()),
        children: None,
        behind,
    }
}

fn count_outgoing(
    state: &AppState,
    s: &KinesisStream,
    shard: u32,
    frames: &[crate::record::Record],
    behind: i64,
) {
    let bytes: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
    let label = Metrics::stream(&s.name);
    let m = &state.registry.metrics;
    m.kinesis_outgoing_records
        .get_or_create(&label)
        .inc_by(frames.len() as u64);
    m.kinesis_outgoing_bytes.get_or_create(&label).inc_by(bytes);
    if s.shard_metrics() {
        let shard_label = Metrics::shard(&s.name, shard);
        m.kinesis_shard_outgoing_records
            .get_or_create(&shard_label)
            .inc_by(frames.len() as u64);
        m.kinesis_shard_outgoing_bytes
            .get_or_create(&shard_label)
            .inc_by(bytes);
        m.kinesis_shard_iterator_age_ms
            .get_or_create(&shard_label)
            .set(behind);
    }
}

/// Room for [`write_records`]' output: base64 of the data, and the rest
/// of each record's fields.
pub(super) fn records_json_len(frames: &[Record]) -> usize {
    let data: usize = frames.iter().map(|f| f.data.len()).sum();
    data / 3 * 4 + frames.len() * 160
}

/// A JSON array of records as `GetRecords` and `SubscribeToShard` answer
/// them, written straight into `out`: each record's data base64-encoded in
/// place, no JSON value per record.
pub(super) fn write_records(out: &mut String, incarnation: u32, shard: u32, frames: &[Record]) {
    out.push('[');
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"SequenceNumber\":\"");
        out.push_str(&sequence_of(incarnation, shard, f.offset));
        out.push_str("\",\"ApproximateArrivalTimestamp\":");
        out.push_str(&Value::from(seconds(f.arrival_ms)).to_string());
        out.push_str(",\"Data\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(&f.data, out);
        out.push_str("\",\"PartitionKey\":");
        out.push_str(&Value::String(String::from_utf8_lossy(&f.key).into_owned()).to_string());
        out.push('}');
    }
    out.push(']');
}

impl RecordsOut {
    /// As a JSON value (the answers above are held alike to it).
    pub(super) fn into_value(self, incarnation: u32, shard: u32) -> Value {
        let records: Vec<Value> = self
            .frames
            .iter()
            .map(|f| record_value(incarnation, shard, f))
            .collect();
        let mut out = json!({ "Records": records, "MillisBehindLatest": self.behind });
        if let Some(it) = self.next_iterator {
            out["NextShardIterator"] = Value::String(it);
        }
        if let Some(c) = self.children {
            out["ChildShards"] = c;
        }
        out
    }

    /// Written straight into the body: each record's data base64-encoded
    /// in place, no JSON value per record.
    pub(super) fn into_json(self, incarnation: u32, shard: u32) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(records_json_len(&self.frames) + 1024);
        out.push_str("{\"Records\":");
        write_records(&mut out, incarnation, shard, &self.frames);
        let _ = write!(out, ",\"MillisBehindLatest\":{}", self.behind);
        if let Some(it) = &self.next_iterator {
            out.push_str(",\"NextShardIterator\":");
            out.push_str(&Value::String(it.clone()).to_string());
        }
        if let Some(c) = &self.children {
            out.push_str(",\"ChildShards\":");
            out.push_str(&c.to_string());
        }
        out.push('}');
        out
    }

    /// The CBOR answer written straight into the body: each record's data a
    /// byte string copied in place, its arrival tag 1 around epoch
    /// milliseconds; byte for byte what [`into_value`](Self::into_value)
    /// turned into CBOR gives (members in the same order).
    pub(super) fn into_cbor(self, incarnation: u32, shard: u32) -> Vec<u8> {
        use crate::ingest::cbor::{reply_from_json, write};
        let data: usize = self.frames.iter().map(|f| f.data.len()).sum();
        let mut out = Vec::with_capacity(data + self.frames.len() * 128 + 1024);
        let members =
            2 + usize::from(self.children.is_some()) + usize::from(self.next_iterator.is_some());
        write::map(&mut out, members);
        if let Some(c) = &self.children {
            write::text(&mut out, "ChildShards");
            out.extend_from_slice(&reply_from_json(c));
        }
        write::text(&mut out, "MillisBehindLatest");
        write::int(&mut out, self.behind);
        if let Some(it) = &self.next_iterator {
            write::text(&mut out, "NextShardIterator");
            write::text(&mut out, it);
        }
        write::text(&mut out, "Records");
        write::array(&mut out, self.frames.len());
        for f in &self.frames {
            write::map(&mut out, 4);
            write::text(&mut out, "ApproximateArrivalTimestamp");
            write::epoch_ms(&mut out, f.arrival_ms);
            write::text(&mut out, "Data");
            write::bytes(&mut out, &f.data);
            write::text(&mut out, "PartitionKey");
            write::text(&mut out, &String::from_utf8_lossy(&f.key));
            write::text(&mut out, "SequenceNumber");
            write::text(&mut out, &sequence_of(incarnation, shard, f.offset));
        }
        out
    }
}

#[cfg(test)]
mod reply_tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_written_answer_is_the_json_value_answer() {
        let frames: Vec<Record> = [
            (b"k\"1".as_slice(), b"\x00\xffdata".as_slice()),
            (b"\xc3\x28", b""),
            (b"", b"x"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (k, d))| Record {
            offset: i as u64 * 7,
            arrival_ms: 1_780_000_000_123 + i as i64,
            key: Bytes::copy_from_slice(k),
            data: Bytes::copy_from_slice(d),
        })
        .collect();
        for (next, children) in [
            (Some("it".to_string()), None),
            (None, Some(json!([{ "ShardId": "shardId-000000000003" }]))),
        ] {
            let out = || RecordsOut {
                frames: frames.clone(),
                next_iterator: next.clone(),
                children: children.clone(),
                behind: 42,
            };
            let written: Value = serde_json::from_str(&out().into_json(9, 2)).unwrap();
            assert_eq!(written, out().into_value(9, 2));
            let from_value = crate::ingest::cbor::reply_from_json(&out().into_value(9, 2));
            assert_eq!(out().into_cbor(9, 2), from_value);
        }
    }
}
