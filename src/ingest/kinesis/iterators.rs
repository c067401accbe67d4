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
    now_ms, seconds, sequence, timestamp_ms, violation,
};
use crate::aws::{ACCOUNT, kinesis_stream_from_arn};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::KinesisStream;
use crate::kinesis::position::{SequenceNumber, ShardIterator, parse_shard_id, shard_id};
use crate::log::LogError;
use crate::metrics::Metrics;
use crate::record::Record;

pub(super) async fn get_shard_iterator(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
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
        .filter(|i| s.layout().map.get(*i).is_some())
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

pub(super) async fn get_records(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
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
    let read = read_shard(s.clone(), it, limit).await?;
    Ok(records_reply(state, &s, shard, read, now))
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
struct ShardRead {
    frames: Vec<Record>,
    /// The offset the next read starts at.
    next: u64,
    /// Where in the log that offset is, when known.
    resume: Option<(u64, u64)>,
    /// The shard's durable end after the read.
    end: u64,
}

/// Reads up to `limit` records from the iterator's shard at its offset, on a
/// blocking thread (reads are blocking file I/O).
async fn read_shard(
    s: Arc<KinesisStream>,
    it: ShardIterator,
    limit: usize,
) -> Result<ShardRead, ApiError> {
    let shard = it.shard;
    tokio::task::spawn_blocking(move || {
        let log = s
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

/// The `GetRecords` answer for what was read, with the next iterator; counts
/// what it hands out.
fn records_reply(
    state: &AppState,
    s: &KinesisStream,
    shard: u32,
    read: ShardRead,
    now: i64,
) -> Value {
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
                "SequenceNumber": sequence(s, shard, f.offset),
                "ApproximateArrivalTimestamp": seconds(f.arrival_ms),
                "Data": b64.encode(&f.data),
                "PartitionKey": String::from_utf8_lossy(&f.key),
            })
        })
        .collect();
    if ended {
        let children: Vec<Value> = layout
            .map
            .children(shard)
            .into_iter()
            .map(|c| {
                json!({
                    "ShardId": shard_id(c.index),
                    "ParentShards": c.parents().map(shard_id).collect::<Vec<_>>(),
                    "HashKeyRange": hash_key_range(c),
                })
            })
            .collect();
        return json!({
            "Records": records,
            "MillisBehindLatest": 0,
            "ChildShards": children,
        });
    }
    let next_it = ShardIterator {
        stream: s.name.clone(),
        incarnation: s.incarnation,
        shard,
        offset: next,
        position: resume,
        issued_ms: now_ms(),
    };
    json!({
        "Records": records,
        "NextShardIterator": next_it.encode(),
        "MillisBehindLatest": behind,
    })
}
