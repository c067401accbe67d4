//! Plain NDJSON ingest: `POST /v1/streams/{name}/records`, one JSON value per
//! line. The whole request is validated before anything is written: a line
//! that is not JSON (or is too large) makes it a 400 naming the line, and
//! nothing from that request reaches the log.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::firehose::RECORD_BYTES_MAX;
use crate::log::AppendRecord;
use crate::metrics::Metrics;

/// Most records one NDJSON request may carry.
pub const RECORDS_MAX: usize = 100_000;

pub fn error(status: StatusCode, message: &str, line: Option<usize>) -> Response {
    let body = match line {
        Some(l) => json!({ "error": message, "line": l }),
        None => json!({ "error": message }),
    };
    (status, axum::Json(body)).into_response()
}

/// Splits `body` into records (one per non-blank line, without its newline),
/// checking each is JSON. Errors carry the 1-based line number.
pub fn split_lines(body: &Bytes) -> Result<Vec<Bytes>, (usize, String)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line_no = 0;
    while start < body.len() {
        line_no += 1;
        let end = memchr_newline(&body[start..])
            .map(|i| start + i)
            .unwrap_or(body.len());
        let mut line = &body[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let trimmed = line.iter().all(|b| b.is_ascii_whitespace());
        if !trimmed {
            if line.len() > RECORD_BYTES_MAX {
                return Err((
                    line_no,
                    format!(
                        "line is {} bytes; the limit is {RECORD_BYTES_MAX}",
                        line.len()
                    ),
                ));
            }
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                return Err((line_no, format!("not valid JSON: {e}")));
            }
            if out.len() == RECORDS_MAX {
                return Err((
                    line_no,
                    format!("more than {RECORDS_MAX} records in one request"),
                ));
            }
            let off = line.as_ptr() as usize - body.as_ptr() as usize;
            out.push(body.slice(off..off + line.len()));
        }
        start = end + 1;
    }
    Ok(out)
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

pub async fn put(state: &AppState, name: &str, body: Bytes) -> Response {
    let records = match split_lines(&body) {
        Ok(r) => r,
        Err((line, msg)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("line {line}: {msg}"),
                Some(line),
            );
        }
    };
    let Some(entry) = state.registry.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("stream {name} not found"),
            None,
        );
    };
    if entry.config.source != crate::config::Source::DirectPut {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("stream {name} reads a Kinesis stream; put records to that stream"),
            None,
        );
    }
    let out = crate::analytics::runner::io::StreamRef::Delivery(name.to_string());
    if let Some(app) = state.analytics.owner_of(&out) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("stream {name} is the output of application {app}; only it writes there"),
            None,
        );
    }
    if records.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "accepted": 0 }))).into_response();
    }
    let n = records.len() as u64;
    let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
    let arrival_ms = chrono::Utc::now().timestamp_millis();
    let shard_no = entry.pick_shard(bytes);
    let Some(shard) = entry.log.shard(shard_no) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shard is not open", None);
    };
    let label = Metrics::stream(name);
    let m = &state.registry.metrics;
    let append = records
        .into_iter()
        .map(|data| AppendRecord {
            key: Bytes::new(),
            data,
            arrival_ms,
        })
        .collect();
    match shard.append(append).await {
        Ok(range) => {
            m.incoming_records.get_or_create(&label).inc_by(n);
            m.incoming_bytes.get_or_create(&label).inc_by(bytes);
            m.incoming_put_requests.get_or_create(&label).inc();
            (
                StatusCode::OK,
                axum::Json(
                    json!({ "accepted": n, "shard": shard_no, "first_offset": range.start }),
                ),
            )
                .into_response()
        }
        Err(e) => {
            m.throttled_records.get_or_create(&label).inc_by(n);
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None)
        }
    }
}

#[cfg(test)]
mod tests;
