//! `GetMedia` (a stream's fragments from a start selector on, then live as
//! they are persisted) and `GetMediaForFragmentList` (the fragments
//! named). Each fragment goes out as one small MKV of its own, as Kinesis
//! Video sends it: the upload's header, `AWS_KINESISVIDEO_*` tags with its
//! number and timestamps, the cluster, then tags with how far it is behind
//! now and the continuation token to resume after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::put_media::receiver_stream;
use super::{invalid, media_response, not_found, opt_str, stream_of, timestamp_ms};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::metrics::Metrics;
use crate::video::index::{Clock, Entry};
use crate::video::{VideoStream, fragment, mkv};

/// Chunks a slow reader may have queued.
const CHUNKS_QUEUED_MAX: usize = 4;

/// Where a `GetMedia` starts: the first offset it sends.
fn start_offset(s: &VideoStream, sel: &Value) -> Result<u64, ApiError> {
    let end = s.log.shard(0).map_or(0, |l| l.durable_end());
    let after = |number: &str, field: &str| {
        s.index
            .numbering
            .offset(number)
            .filter(|o| s.index.get(*o).is_some())
            .map(|o| o + 1)
            .ok_or_else(|| {
                not_found(format!(
                    "{field} {number} names no fragment of stream {}",
                    s.name
                ))
            })
    };
    match opt_str(sel, "StartSelectorType")? {
        Some("NOW") => Ok(end),
        Some("EARLIEST") => Ok(s.index.first().map_or(end, |e| e.offset)),
        Some("FRAGMENT_NUMBER") => {
            let n = opt_str(sel, "AfterFragmentNumber")?.ok_or_else(|| {
                invalid("StartSelector.AfterFragmentNumber is required with FRAGMENT_NUMBER")
            })?;
            after(n, "AfterFragmentNumber")
        }
        Some("CONTINUATION_TOKEN") => {
            let t = opt_str(sel, "ContinuationToken")?.ok_or_else(|| {
                invalid("StartSelector.ContinuationToken is required with CONTINUATION_TOKEN")
            })?;
            after(t, "ContinuationToken")
        }
        Some(kind @ ("SERVER_TIMESTAMP" | "PRODUCER_TIMESTAMP")) => {
            let clock = if kind == "SERVER_TIMESTAMP" {
                Clock::Server
            } else {
                Clock::Producer
            };
            let at = sel.get("StartTimestamp").ok_or_else(|| {
                invalid(format!(
                    "StartSelector.StartTimestamp is required with {kind}"
                ))
            })?;
            let ms = timestamp_ms(at, "StartSelector.StartTimestamp")?;
            Ok(containing(s, clock, ms).map_or(end, |e| e.offset))
        }
        Some(other) => Err(invalid(format!(
            "StartSelector.StartSelectorType {other} is not one of NOW, EARLIEST, FRAGMENT_NUMBER, SERVER_TIMESTAMP, PRODUCER_TIMESTAMP, CONTINUATION_TOKEN"
        ))),
        None => Err(invalid("StartSelector.StartSelectorType is required")),
    }
}

/// The fragment holding the moment `ms`, else the first after it.
fn containing(s: &VideoStream, clock: Clock, ms: i64) -> Option<Entry> {
    s.index
        .holding(clock, ms)
        .or_else(|| s.index.first_from(clock, ms))
}

/// Frees a reader slot when the response ends.
struct ReaderSlot(Arc<VideoStream>);

impl Drop for ReaderSlot {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::AcqRel);
    }
}

fn reader_slot(state: &AppState, s: &Arc<VideoStream>) -> Result<ReaderSlot, ApiError> {
    let n = s.readers.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = ReaderSlot(s.clone());
    let max = state.registry.video.opts.readers_per_stream_max;
    if n > max {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "ConnectionLimitExceededException",
            format!(
                "stream {} already has {max} media readers (video.readers_per_stream_max)",
                s.name
            ),
        ));
    }
    Ok(slot)
}

pub(super) async fn get_media(state: &AppState, req: &Value) -> Response {
    let started = (|| {
        let s = stream_of(state, req)?;
        let sel = req
            .get("StartSelector")
            .filter(|v| v.is_object())
            .ok_or_else(|| invalid("StartSelector is required"))?;
        let from = start_offset(&s, sel)?;
        let slot = reader_slot(state, &s)?;
        Ok::<_, ApiError>((s, from, slot))
    })();
    let (s, from, slot) = match started {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_QUEUED_MAX);
    let idle = state.registry.video.opts.session_idle;
    let metrics = state.registry.metrics.clone();
    let content_type = content_type(&s);
    tokio::spawn(async move {
        let _slot = slot;
        follow(s, from, tx, idle, metrics).await;
    });
    media_response(&content_type, Body::from_stream(receiver_stream(rx)))
}

fn content_type(s: &VideoStream) -> String {
    s.spec()
        .media_type
        .unwrap_or_else(|| "video/x-matroska".to_string())
}

/// Sends every fragment from `from` on, then each one persisted later,
/// until the reader goes away or nothing new comes for `idle`.
async fn follow(
    s: Arc<VideoStream>,
    mut from: u64,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    idle: Duration,
    metrics: Arc<Metrics>,
) {
    let Some(shard) = s.log.shard(0) else { return };
    let mut durable = shard.subscribe();
    loop {
        let batch = {
            let shard = shard.clone();
            tokio::task::spawn_blocking(move || {
                shard
                    .reader(from.max(shard.oldest_offset()))
                    .read(8, 64 << 20)
            })
            .await
        };
        let records = match batch {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(stream = s.name, error = %e, "GetMedia cannot read the log");
                return;
            }
            Err(_) => return,
        };
        if records.is_empty() {
            match tokio::time::timeout(idle, durable.changed()).await {
                Ok(Ok(())) => continue,
                _ => return,
            }
        }
        for r in records {
            from = r.offset + 1;
            let Some(chunk) = chunk_of(&s, r.offset, &r.data, true) else {
                continue;
            };
            if !send(&tx, &metrics, &s.name, chunk).await {
                return;
            }
        }
    }
}

/// Sends a chunk to the reader and counts it; false once the reader is
/// gone.
async fn send(
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    metrics: &Metrics,
    stream: &str,
    chunk: Bytes,
) -> bool {
    metrics
        .video
        .get_media_bytes
        .get_or_create(&Metrics::stream(stream))
        .inc_by(chunk.len() as u64);
    tx.send(Ok(chunk)).await.is_ok()
}

/// The MKV chunk of the fragment stored at `offset`; None if the record is
/// not a fragment.
fn chunk_of(s: &VideoStream, offset: u64, data: &Bytes, resumable: bool) -> Option<Bytes> {
    let f = fragment::decode(data)?;
    let number = s.index.numbering.number(offset);
    let secs = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let mut before = vec![
        (
            "AWS_KINESISVIDEO_FRAGMENT_NUMBER".to_string(),
            number.clone(),
        ),
        (
            "AWS_KINESISVIDEO_SERVER_TIMESTAMP".to_string(),
            secs(f.meta.server_ms),
        ),
        (
            "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP".to_string(),
            secs(f.meta.producer_ms),
        ),
    ];
    before.extend(f.meta.tags.iter().cloned());
    let mut after = Vec::new();
    if resumable {
        let now = chrono::Utc::now().timestamp_millis();
        let behind = (now - f.meta.server_ms - f.meta.duration_ms as i64).max(0);
        after.push((
            "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW".to_string(),
            behind.to_string(),
        ));
        after.push(("AWS_KINESISVIDEO_CONTINUATION_TOKEN".to_string(), number));
    }
    let header = mkv::StreamHeader {
        tracks: f.meta.tracks,
        timecode_scale_ns: f.meta.timecode_scale_ns,
        bytes: f.header,
    };
    Some(Bytes::from(mkv::fragment_chunk(
        &header, &f.cluster, &before, &after,
    )))
}

pub(super) async fn for_fragment_list(state: &AppState, req: &Value) -> Response {
    let listed = (|| {
        let s = stream_of(state, req)?;
        let numbers = req
            .get("Fragments")
            .and_then(Value::as_array)
            .filter(|a| (1..=1000).contains(&a.len()))
            .ok_or_else(|| invalid("Fragments must list 1 to 1000 fragment numbers"))?;
        let mut offsets = Vec::with_capacity(numbers.len());
        for n in numbers {
            let n = n
                .as_str()
                .ok_or_else(|| invalid("fragment numbers are strings"))?;
            let o = s
                .index
                .numbering
                .offset(n)
                .filter(|o| s.index.get(*o).is_some())
                .ok_or_else(|| not_found(format!("fragment {n} is not in stream {}", s.name)))?;
            offsets.push(o);
        }
        let slot = reader_slot(state, &s)?;
        Ok::<_, ApiError>((s, offsets, slot))
    })();
    let (s, offsets, slot) = match listed {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_QUEUED_MAX);
    let metrics = state.registry.metrics.clone();
    let content_type = content_type(&s);
    tokio::spawn(async move {
        let _slot = slot;
        let Some(shard) = s.log.shard(0) else { return };
        for o in offsets {
            let sh = shard.clone();
            let read = tokio::task::spawn_blocking(move || sh.reader(o).read(1, 64 << 20)).await;
            let Ok(Ok(records)) = read else {
                let _ = tx
                    .send(Err(std::io::Error::other("cannot read a fragment")))
                    .await;
                return;
            };
            let Some(chunk) = records
                .first()
                .filter(|r| r.offset == o)
                .and_then(|r| chunk_of(&s, o, &r.data, false))
            else {
                // Deleted by retention since the request was checked.
                continue;
            };
            if !send(&tx, &metrics, &s.name, chunk).await {
                return;
            }
        }
    });
    media_response(&content_type, Body::from_stream(receiver_stream(rx)))
}
