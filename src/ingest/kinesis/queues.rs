//! Kinesis queues: `CreateQueue`, `DescribeQueue`, `ListQueues`,
//! `UpdateQueue`, `DeleteQueue`, `ReceiveQueueRecords` (with long polling),
//! `AcknowledgeQueueRecords`, `UpdateQueueRecordsVisibility`, and the
//! dead-letter set `ReceiveDeadLetterQueueRecords`,
//! `AcknowledgeDeadLetterQueueRecords`,
//! `UpdateDeadLetterQueueRecordsVisibility`,
//! `RestoreDeadLetterQueueRecords`. The queue itself is
//! `kinesis::queues`; this file checks requests against the model and
//! shapes the answers. A queue is named by its ARN,
//! `arn:aws:kinesis:REGION:ACCOUNT:queue/ID`, the id random.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};

use super::{
    Req, decode_token, encode_token, from_kinesis, internal, missing, not_found, seconds, sequence,
    timestamp_ms, violation,
};
use crate::aws::{self, ACCOUNT};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::queues::{Queue, QueueDef, Received, Settle, Start};
use crate::metrics::Metrics;

/// Kinesis's defaults and bounds for queues.
const VISIBILITY_DEFAULT_SECS: i64 = 30;
const VISIBILITY_MAX_SECS: i64 = 43_200;
const MAX_RECEIVE_DEFAULT: u32 = 6;
const WAIT_DEFAULT_SECS: i64 = 9;
const TAGS_MAX: usize = 50;
/// How often a waiting receive looks again.
const POLL: Duration = Duration::from_millis(100);

fn queue_arn(id: &str) -> String {
    format!("arn:aws:kinesis:{}:{ACCOUNT}:queue/{id}", aws::REGION)
}

fn queue_not_found(what: &str) -> ApiError {
    ApiError::not_found(format!("Queue {what} under account {ACCOUNT} not found."))
}

/// The queue a request's `QueueARN` names.
fn named(state: &AppState, req: &Req<'_>) -> Result<Arc<Queue>, ApiError> {
    let arn = req.str("QueueARN")?.ok_or_else(|| missing("queueARN"))?;
    by_arn(state, arn, "queueARN")
}

/// The queue an ARN names; `field` is the request's field holding it.
pub(super) fn by_arn(state: &AppState, arn: &str, field: &str) -> Result<Arc<Queue>, ApiError> {
    let id = arn
        .strip_prefix("arn:aws")
        .and_then(|r| r.split_once(":kinesis:"))
        .and_then(|(_, r)| r.split_once(":queue/"))
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            violation(
                field,
                arn,
                "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:queue/\\S+",
            )
        })?;
    state
        .registry
        .kinesis
        .queues
        .by_id(id)
        .ok_or_else(|| queue_not_found(arn))
}

fn description(def: &QueueDef) -> Value {
    let mut start = json!({ "Type": match def.start {
        Start::TrimHorizon => "TRIM_HORIZON",
        Start::Latest => "LATEST",
        Start::AtTimestamp(_) => "AT_TIMESTAMP",
    }});
    if let Start::AtTimestamp(ms) = def.start {
        start["Timestamp"] = json!(seconds(ms));
    }
    json!({
        "QueueName": def.name,
        "QueueARN": queue_arn(&def.id),
        "QueueStatus": "ACTIVE",
        "QueueCreationTimestamp": seconds(def.created_ms),
        "StreamConfigurationList": [{
            "StreamARN": aws::kinesis_stream_arn(&def.stream),
            "StartingPosition": start,
        }],
        "QueueAttributes": attributes(def),
    })
}

fn attributes(def: &QueueDef) -> Value {
    let dead = match def.max_receive {
        Some(n) => json!({ "TargetType": "BUILT_IN", "MaxReceiveCount": n }),
        None => json!({ "TargetType": "NONE" }),
    };
    json!({ "VisibilityTimeoutSeconds": def.visibility_secs, "DeadLetterConfiguration": dead })
}

/// `QueueAttributes`: (visibility timeout, dead-letter handling), each
/// None when not given.
fn parse_attributes(v: Option<&Value>) -> Result<(Option<u32>, Option<Option<u32>>), ApiError> {
    let Some(a) = v.filter(|v| !v.is_null()) else {
        return Ok((None, None));
    };
    let obj = a
        .as_object()
        .ok_or_else(|| ApiError::serialization("'QueueAttributes' must be an object"))?;
    let attrs = Req(obj);
    let visibility = match attrs.int("VisibilityTimeoutSeconds")? {
        None => None,
        Some(_) => Some(attrs.int_in(
            "VisibilityTimeoutSeconds",
            "queueAttributes.visibilityTimeoutSeconds",
            0,
            VISIBILITY_MAX_SECS,
            0,
        )? as u32),
    };
    let dead = match obj.get("DeadLetterConfiguration").filter(|v| !v.is_null()) {
        None => None,
        Some(d) => {
            let path = "queueAttributes.deadLetterConfiguration";
            let target = d.get("TargetType").and_then(Value::as_str);
            let count = d.get("MaxReceiveCount").and_then(Value::as_i64);
            match (target, count) {
                (None, _) => return Err(missing(&format!("{path}.targetType"))),
                (Some("NONE"), _) => Some(None),
                (Some("BUILT_IN"), None) => {
                    return Err(ApiError::invalid_argument(
                        "DeadLetterConfiguration.MaxReceiveCount is required when TargetType is BUILT_IN",
                    ));
                }
                (Some("BUILT_IN"), Some(n)) if (1..=1000).contains(&n) => Some(Some(n as u32)),
                (Some("BUILT_IN"), Some(n)) => {
                    return Err(violation(
                        &format!("{path}.maxReceiveCount"),
                        n,
                        "Member must have value between 1 and 1000",
                    ));
                }
                (Some(t), _) => {
                    return Err(violation(
                        &format!("{path}.targetType"),
                        t,
                        "Member must satisfy enum value set: [BUILT_IN, NONE]",
                    ));
                }
            }
        }
    };
    Ok((visibility, dead))
}

/// `StreamConfigurationList`'s one entry: the stream's name and where the
/// queue starts in it.
fn stream_config(req: &Req<'_>) -> Result<(String, Start), ApiError> {
    let list = match req.0.get("StreamConfigurationList") {
        Some(Value::Array(l)) => l,
        _ => return Err(missing("streamConfigurationList")),
    };
    let [entry] = list.as_slice() else {
        return Err(ApiError::invalid_argument(
            "StreamConfigurationList must hold exactly one stream: a queue delivers records from one stream",
        ));
    };
    let at = "streamConfigurationList.1.member";
    let arn = entry
        .get("StreamARN")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&format!("{at}.streamARN")))?;
    let name = aws::kinesis_stream_from_arn(arn).ok_or_else(|| {
        violation(
            &format!("{at}.streamARN"),
            arn,
            "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
        )
    })?;
    let pos = entry.get("StartingPosition").filter(|v| !v.is_null());
    let kind = pos.and_then(|p| p.get("Type")).and_then(Value::as_str);
    let ts = pos
        .and_then(|p| p.get("Timestamp"))
        .filter(|v| !v.is_null());
    let start = match (pos, kind, ts) {
        (None, _, _) => Start::Latest,
        (Some(_), Some("LATEST"), None) => Start::Latest,
        (Some(_), Some("TRIM_HORIZON"), None) => Start::TrimHorizon,
        (Some(_), Some("AT_TIMESTAMP"), Some(t)) => {
            Start::AtTimestamp(timestamp_ms(t).ok_or_else(|| {
                ApiError::serialization("StartingPosition.Timestamp must be a timestamp")
            })?)
        }
        (Some(_), Some("AT_TIMESTAMP"), None) => {
            return Err(missing(&format!("{at}.startingPosition.timestamp")));
        }
        (Some(_), Some("LATEST" | "TRIM_HORIZON"), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "StartingPosition.Timestamp may be given only with Type AT_TIMESTAMP",
            ));
        }
        (Some(_), t, _) => {
            return Err(violation(
                &format!("{at}.startingPosition.type"),
                t.unwrap_or("null"),
                "Member must satisfy enum value set: [TRIM_HORIZON, LATEST, AT_TIMESTAMP]",
            ));
        }
    };
    Ok((name.to_string(), start))
}

pub(super) async fn create(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let name = req.str("QueueName")?.ok_or_else(|| missing("queueName"))?;
    if !aws::valid_kinesis_stream_name(name) {
        return Err(violation(
            "queueName",
            name,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
        ));
    }
    let (stream, start) = stream_config(&req)?;
    let (visibility, dead) = parse_attributes(req.0.get("QueueAttributes"))?;
    let tags = match req.0.get("Tags").filter(|v| !v.is_null()) {
        Some(t) => super::tags::tag_map(t, "Tags")?,
        None => Default::default(),
    };
    if tags.len() > TAGS_MAX {
        return Err(ApiError::invalid_argument(format!(
            "A queue takes at most {TAGS_MAX} tags; {} were given",
            tags.len()
        )));
    }
    if state.registry.cluster.is_some() {
        return Err(ApiError::invalid_argument(
            "Queues are not available in cluster mode yet: a queue's state is kept on one node's disk",
        ));
    }
    let s = state
        .registry
        .kinesis
        .get(&stream)
        .ok_or_else(|| not_found(&stream))?;
    let def = QueueDef {
        name: name.to_string(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        stream: stream.clone(),
        incarnation: s.incarnation,
        created_ms: super::now_ms(),
        start,
        visibility_secs: visibility.unwrap_or(VISIBILITY_DEFAULT_SECS as u32),
        max_receive: dead.unwrap_or(Some(MAX_RECEIVE_DEFAULT)),
        tags,
        policy: None,
    };
    let registry = state.registry.clone();
    let q = tokio::task::spawn_blocking(move || registry.kinesis.queues.create(s, def))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(from_kinesis)?;
    tracing::info!(queue = name, stream, "queue created");
    Ok(json!({ "QueueDescription": description(&q.def()) }))
}

pub(super) fn describe(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let q = named(state, &req)?;
    Ok(json!({ "QueueDescription": description(&q.def()) }))
}

pub(super) fn list(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let limit = req
        .int_in("MaxResults", "maxResults", 1, 10_000, 100)?
        .min(100) as usize;
    let after = match req.str("NextToken")? {
        Some(t) => Some(decode_token(t, "ListQueues")?.0),
        None => None,
    };
    let filter: Option<Vec<&str>> = match req.0.get("StreamFilter") {
        Some(Value::Array(fs)) => Some(
            fs.iter()
                .filter_map(|f| f.get("StreamARN").and_then(Value::as_str))
                .filter_map(aws::kinesis_stream_from_arn)
                .collect(),
        ),
        _ => None,
    };
    let all: Vec<QueueDef> = state
        .registry
        .kinesis
        .queues
        .all()
        .iter()
        .map(|q| q.def())
        .filter(|d| after.as_ref().is_none_or(|a| &d.name > a))
        .filter(|d| {
            filter
                .as_ref()
                .is_none_or(|f| f.contains(&d.stream.as_str()))
        })
        .collect();
    let page = &all[..all.len().min(limit)];
    let summaries: Vec<Value> = page
        .iter()
        .map(|d| {
            let created = state
                .registry
                .kinesis
                .get(&d.stream)
                .map_or(0.0, |s| seconds(s.created_ms));
            json!({
                "QueueName": d.name,
                "QueueARN": queue_arn(&d.id),
                "QueueStatus": "ACTIVE",
                "QueueCreationTimestamp": seconds(d.created_ms),
                "Streams": [{ "StreamARN": aws::kinesis_stream_arn(&d.stream), "StreamCreationTimestamp": created }],
            })
        })
        .collect();
    let mut out = json!({ "QueueSummaries": summaries });
    if all.len() > page.len()
        && let Some(last) = page.last()
    {
        out["NextToken"] = Value::String(encode_token(&last.name, "ListQueues"));
    }
    Ok(out)
}

pub(super) fn update(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let q = named(state, &req)?;
    let given = req.0.get("QueueAttributes").filter(|v| !v.is_null());
    if given.is_none() {
        return Err(missing("queueAttributes"));
    }
    let (visibility, dead) = parse_attributes(given)?;
    let def = q.update(visibility, dead).map_err(from_kinesis)?;
    Ok(json!({ "QueueDescription": description(&def) }))
}

pub(super) async fn delete(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let q = named(state, &req)?;
    let name = q.def().name;
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || registry.kinesis.queues.delete(&name))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(from_kinesis)?;
    Ok(json!({}))
}

/// `ReceiveQueueRecords` and `ReceiveDeadLetterQueueRecords`: waits up to
/// `WaitTimeSeconds` for a record, within `kinesis.queue_long_polls_max`
/// waiting calls (past it, the call looks once and answers).
pub(super) async fn receive(
    state: &AppState,
    req: Req<'_>,
    dead_letters: bool,
) -> Result<Value, ApiError> {
    let q = named(state, &req)?;
    let limit = req.int_in("Limit", "limit", 1, 10, 10)? as usize;
    let wait = req.int_in(
        "WaitTimeSeconds",
        "waitTimeSeconds",
        1,
        20,
        WAIT_DEFAULT_SECS,
    )?;
    let visibility = match req.int("VisibilityTimeoutSeconds")? {
        None => None,
        Some(_) => Some(req.int_in(
            "VisibilityTimeoutSeconds",
            "visibilityTimeoutSeconds",
            0,
            VISIBILITY_MAX_SECS,
            0,
        )? as u32),
    };
    let permit = state
        .registry
        .kinesis
        .queues
        .long_polls
        .clone()
        .try_acquire_owned()
        .ok();
    let deadline = Instant::now() + Duration::from_secs(wait as u64);
    loop {
        let queue = q.clone();
        let got =
            tokio::task::spawn_blocking(move || queue.receive(limit, visibility, dead_letters))
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(internal)?;
        if !got.is_empty() || permit.is_none() || Instant::now() + POLL > deadline {
            let stream = q.stream.clone();
            state
                .registry
                .metrics
                .kinesis_queue_received_records
                .get_or_create(&Metrics::queue(&stream.name, &q.def().name))
                .inc_by(got.len() as u64);
            let records: Vec<Value> = got.iter().map(|r| record_json(&stream, r)).collect();
            return Ok(json!({ "QueueRecords": records }));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn record_json(s: &crate::kinesis::KinesisStream, r: &Received) -> Value {
    let mut v = json!({
        "ReceiptHandle": r.handle,
        "RecordId": sequence(s, r.shard, r.record.offset),
        "Data": base64::engine::general_purpose::STANDARD.encode(&r.record.data),
        "ApproximateArrivalTimestamp": seconds(r.record.arrival_ms),
        "FirstReceiveTimestamp": seconds(r.first_ms),
        "ReceiveCount": r.count,
    });
    if !r.record.key.is_empty() {
        v["PartitionKey"] = json!(String::from_utf8_lossy(&r.record.key));
    }
    v
}

/// The acknowledging and visibility operations, on the queue's records or
/// its dead letters: each entry succeeds or fails on its own.
pub(super) async fn settle(
    state: &AppState,
    req: Req<'_>,
    op: Option<Settle>,
    dead_letters: bool,
) -> Result<Value, ApiError> {
    let q = named(state, &req)?;
    let entries = match req.0.get("Entries") {
        Some(Value::Array(e)) => e.clone(),
        _ => return Err(missing("entries")),
    };
    if !(1..=10).contains(&entries.len()) {
        return Err(violation(
            "entries",
            entries.len(),
            "Member must have length between 1 and 10",
        ));
    }
    let mut handles = Vec::with_capacity(entries.len());
    let mut visibility = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = format!("entries.{}.member", i + 1);
        let h = e
            .get("ReceiptHandle")
            .and_then(Value::as_str)
            .filter(|h| (1..=1024).contains(&h.len()))
            .ok_or_else(|| missing(&format!("{at}.receiptHandle")))?;
        handles.push(h.to_string());
        if op.is_none() {
            let secs = e
                .get("VisibilityTimeoutSeconds")
                .and_then(Value::as_i64)
                .ok_or_else(|| missing(&format!("{at}.visibilityTimeoutSeconds")))?;
            if !(0..=VISIBILITY_MAX_SECS).contains(&secs) {
                return Err(violation(
                    &format!("{at}.visibilityTimeoutSeconds"),
                    secs,
                    "Member must have value between 0 and 43200",
                ));
            }
            visibility.push(secs as u32);
        }
    }
    // One settle per distinct operation: visibility changes carry their own
    // timeouts, so each is its own.
    let mut results = Vec::with_capacity(handles.len());
    let queue = q.clone();
    let hs = handles.clone();
    let done = tokio::task::spawn_blocking(move || match op {
        Some(op) => queue.settle(op, dead_letters, &hs),
        None => {
            let mut all = Vec::new();
            for (h, secs) in hs.iter().zip(visibility) {
                all.extend(queue.settle(
                    Settle::Visibility(secs),
                    dead_letters,
                    std::slice::from_ref(h),
                )?);
            }
            Ok(all)
        }
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)?;
    results.extend(done);
    if op == Some(Settle::Ack) {
        let n = results.iter().filter(|r| r.is_ok()).count();
        state
            .registry
            .metrics
            .kinesis_queue_acknowledged_records
            .get_or_create(&Metrics::queue(&q.stream.name, &q.def().name))
            .inc_by(n as u64);
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (h, r) in handles.into_iter().zip(results) {
        match r {
            Ok(()) => ok.push(json!({ "ReceiptHandle": h })),
            Err((code, message)) => failed
                .push(json!({ "ReceiptHandle": h, "ErrorCode": code, "ErrorMessage": message })),
        }
    }
    Ok(json!({ "Successful": ok, "Failed": failed }))
}
