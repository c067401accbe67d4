//! `PutMedia`: one long chunked POST of MKV, answered at once with 200 and
//! then a line of JSON per acknowledgement while the upload goes on:
//! `BUFFERING` when a fragment's cluster starts, `RECEIVED` when it is
//! whole and valid, `PERSISTED` once it is durable in the stream's log
//! (streams with retention; as Kinesis Video does), `ERROR` with Kinesis
//! Video's code for what was refused, `IDLE` every second the producer sends
//! nothing.
//!
//! The body is parsed as it arrives ([`crate::video::mkv`]): a session
//! holds at most one fragment. A producer that never reads its
//! acknowledgements (ffmpeg) loses acknowledgements, never media: they go
//! to a bounded queue and are dropped when it is full. SigV4 signs PutMedia
//! over an empty payload (the producer SDK's streaming signature), so the
//! body is never buffered to be hashed. A session reads at most
//! `video.session_bytes_per_sec`, ends after `video.session_idle` without
//! data, and a stream takes `video.sessions_per_stream_max` at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{invalid, stream_of};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::log::AppendRecord;
use crate::metrics::{Metrics, VideoErrorLabel};
use crate::video::mkv::{Fragment, KvsError, MkvReader, ReadEvent, ReaderLimits, StreamHeader};
use crate::video::{VideoStream, fragment, index};

/// Acknowledgements queued for a producer that reads them slowly; more are
/// dropped (the media is not).
const ACKS_QUEUED_MAX: usize = 256;
/// How often an idle session is acknowledged with `IDLE`.
const IDLE_EVERY: Duration = Duration::from_secs(1);

/// An error acknowledgement's code: the reader's, or the service's own
/// 5001 when the log cannot take a fragment.
#[derive(Clone, Copy, Debug)]
enum Code {
    Kvs(KvsError),
    ArchivalError,
}

impl Code {
    fn id(self) -> u32 {
        match self {
            Code::Kvs(e) => e.id(),
            Code::ArchivalError => 5001,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Code::Kvs(e) => e.name(),
            Code::ArchivalError => "ARCHIVAL_ERROR",
        }
    }
}

/// How a producer's cluster timecodes map to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timecodes {
    /// Epoch milliseconds (in TimecodeScale units) themselves.
    Absolute,
    /// Offsets from `x-amzn-producer-start-timestamp`.
    Relative { start_ms: i64 },
}

fn header<'h>(h: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn timecodes(h: &axum::http::HeaderMap) -> Result<Timecodes, ApiError> {
    let start = match header(h, "x-amzn-producer-start-timestamp") {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e11)
                .map(|f| (f * 1000.0).round() as i64)
                .ok_or_else(|| {
                    invalid(format!(
                        "x-amzn-producer-start-timestamp `{s}` is not epoch seconds (1700000000.123)"
                    ))
                })?,
        ),
    };
    match header(h, "x-amzn-fragment-timecode-type") {
        Some("ABSOLUTE") => Ok(Timecodes::Absolute),
        Some("RELATIVE") => Ok(Timecodes::Relative {
            start_ms: start.ok_or_else(|| {
                invalid("x-amzn-producer-start-timestamp is required with RELATIVE timecodes")
            })?,
        }),
        Some(other) => Err(invalid(format!(
            "x-amzn-fragment-timecode-type `{other}` is not ABSOLUTE or RELATIVE"
        ))),
        None => Err(invalid("x-amzn-fragment-timecode-type is required")),
    }
}

/// Frees its stream's session slot when the session ends, however it ends.
struct Slot {
    stream: Arc<VideoStream>,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.stream.sessions.fetch_sub(1, Ordering::AcqRel) - 1;
        self.metrics
            .video
            .put_media_sessions
            .get_or_create(&Metrics::stream(&self.stream.name))
            .set(open as i64);
    }
}

pub(super) async fn put_media(state: AppState, req: Request) -> Response {
    match open(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn open(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let key = crate::ingest::authenticate(state, &parts.method, &parts.uri, &parts.headers, b"")?;
    let named = json!({
        "StreamName": header(&parts.headers, "x-amzn-stream-name"),
        "StreamARN": header(&parts.headers, "x-amzn-stream-arn"),
    });
    let stream = stream_of(state, &named)?;
    if let Some(key) = key {
        crate::ingest::authorize::check(state, key, "kinesisvideo:PutMedia", &stream.name)?;
    }
    if !state.accepting.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("Hydrant is shutting down"));
    }
    let timecodes = timecodes(&parts.headers)?;
    let opts = state.registry.video.opts.clone();
    let open = stream.sessions.fetch_add(1, Ordering::AcqRel) + 1;
    let metrics = state.registry.metrics.clone();
    let slot = Slot {
        stream: stream.clone(),
        metrics: metrics.clone(),
    };
    if open > opts.sessions_per_stream_max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ConnectionLimitExceededException",
            format!(
                "stream {} already has {} PutMedia sessions (video.sessions_per_stream_max)",
                stream.name, opts.sessions_per_stream_max
            ),
        ));
    }
    metrics
        .video
        .put_media_sessions
        .get_or_create(&Metrics::stream(&stream.name))
        .set(open as i64);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(ACKS_QUEUED_MAX);
    let session = Session {
        stream,
        timecodes,
        opts,
        metrics,
        acks: tx,
        header: None,
        started_ms: None,
        _slot: slot,
    };
    tokio::spawn(session.run(body));
    let mut resp = (StatusCode::OK, Body::from_stream(receiver_stream(rx))).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// One upload in progress.
struct Session {
    stream: Arc<VideoStream>,
    timecodes: Timecodes,
    opts: crate::config::VideoOptions,
    metrics: Arc<Metrics>,
    acks: mpsc::Sender<Result<Bytes, Infallible>>,
    header: Option<StreamHeader>,
    /// When the fragment being received started arriving (epoch ms).
    started_ms: Option<i64>,
    _slot: Slot,
}

impl Session {
    async fn run(mut self, body: Body) {
        let mut body = body.into_data_stream();
        let mut reader = MkvReader::new(ReaderLimits {
            fragment_bytes_max: self.opts.fragment_bytes_max,
            fragment_duration_max: self.opts.fragment_duration,
            ..ReaderLimits::default()
        });
        let (began, mut received) = (Instant::now(), 0u64);
        let mut last_data = Instant::now();
        let label = Metrics::stream(&self.stream.name);
        loop {
            let next = tokio::time::timeout(IDLE_EVERY, body.next()).await;
            let done = matches!(next, Ok(None));
            let events = match next {
                Err(_) => {
                    if last_data.elapsed() >= self.opts.session_idle {
                        break;
                    }
                    self.ack(json!({ "EventType": "IDLE" }));
                    continue;
                }
                Ok(None) => reader.finish(),
                Ok(Some(Err(e))) => {
                    self.error(Code::Kvs(KvsError::StreamReadError), None, &e.to_string());
                    break;
                }
                Ok(Some(Ok(chunk))) => {
                    last_data = Instant::now();
                    received += chunk.len() as u64;
                    self.metrics
                        .video
                        .incoming_bytes
                        .get_or_create(&label)
                        .inc_by(chunk.len() as u64);
                    pace(began, received, self.opts.session_bytes_per_sec).await;
                    reader.push(&chunk)
                }
            };
            if !self.handle(events).await || done {
                break;
            }
        }
    }

    /// Acts on the reader's events; false once the session must end.
    async fn handle(&mut self, events: Vec<ReadEvent>) -> bool {
        for e in events {
            match e {
                ReadEvent::Header(h) => self.header = Some(h),
                ReadEvent::FragmentStarted { timecode } => {
                    self.started_ms = Some(chrono::Utc::now().timestamp_millis());
                    self.ack(json!({ "EventType": "BUFFERING", "FragmentTimecode": timecode }));
                }
                ReadEvent::Fragment(f) => {
                    self.ack(json!({ "EventType": "RECEIVED", "FragmentTimecode": f.timecode }));
                    if !self.persist(f).await {
                        return false;
                    }
                }
                ReadEvent::Error {
                    error,
                    timecode,
                    message,
                    fatal,
                } => {
                    self.error(Code::Kvs(error), timecode, &message);
                    if fatal {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Appends a fragment to the log and acknowledges it once durable; false
    /// if the log cannot take it (the session ends).
    async fn persist(&mut self, f: Fragment) -> bool {
        let Some(h) = &self.header else {
            self.error(
                Code::Kvs(KvsError::InvalidMkvData),
                Some(f.timecode),
                "a cluster came before the tracks",
            );
            return false;
        };
        let server_ms = self
            .started_ms
            .take()
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let scale = h.timecode_scale_ns.max(1) as i128;
        let at_ms = (i128::from(f.timecode) * scale / 1_000_000) as i64;
        let producer_ms = match self.timecodes {
            Timecodes::Absolute => at_ms,
            Timecodes::Relative { start_ms } => start_ms.saturating_add(at_ms),
        };
        let meta = fragment::Meta {
            timecode: f.timecode,
            producer_ms,
            server_ms,
            duration_ms: f.duration_ns / 1_000_000,
            tags: f.tags.clone(),
            timecode_scale_ns: h.timecode_scale_ns,
            tracks: h.tracks.clone(),
        };
        let data = fragment::encode(&meta, &h.bytes, &f.cluster);
        let Some(shard) = self.stream.log.shard(0) else {
            return false;
        };
        let appended = {
            let _order = self.stream.appending.lock().await;
            let r = shard
                .append(vec![AppendRecord {
                    key: Bytes::new(),
                    data: Bytes::from(data),
                    arrival_ms: server_ms,
                }])
                .await;
            if let Ok(range) = &r {
                self.stream
                    .index
                    .push(index::entry(range.start, &meta, f.cluster.len()));
            }
            r
        };
        match appended {
            Ok(range) => {
                self.metrics
                    .video
                    .incoming_fragments
                    .get_or_create(&Metrics::stream(&self.stream.name))
                    .inc();
                if self.stream.spec().retention_hours > 0 {
                    let number = self.stream.index.numbering.number(range.start);
                    self.ack(json!({
                        "EventType": "PERSISTED",
                        "FragmentTimecode": f.timecode,
                        "FragmentNumber": number,
                    }));
                }
                true
            }
            Err(e) => {
                tracing::error!(stream = self.stream.name, error = %e, "cannot persist a fragment");
                self.error(Code::ArchivalError, Some(f.timecode), &e.to_string());
                false
            }
        }
    }

    fn error(&self, error: Code, timecode: Option<i64>, message: &str) {
        self.metrics
            .video
            .errors
            .get_or_create(&VideoErrorLabel {
                stream: self.stream.name.clone(),
                code: error.id().to_string(),
            })
            .inc();
        tracing::info!(
            stream = self.stream.name,
            code = error.id(),
            error = error.name(),
            message,
            "PutMedia error"
        );
        let mut ack = json!({
            "EventType": "ERROR",
            "ErrorId": error.id(),
            "ErrorCode": error.name(),
        });
        if let (Some(o), Some(t)) = (ack.as_object_mut(), timecode) {
            o.insert("FragmentTimecode".into(), json!(t));
        }
        self.ack(ack);
    }

    /// Queues an acknowledgement line; dropped if the producer is not
    /// reading them.
    fn ack(&self, v: Value) {
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        let _ = self.acks.try_send(Ok(Bytes::from(line)));
    }
}

/// The lines `rx` receives, as a response body.
pub(super) fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// Sleeps as long as it takes for `received` bytes since `began` to stay
/// within `per_sec`.
async fn pace(began: Instant, received: u64, per_sec: u64) {
    let due = Duration::from_secs_f64(received as f64 / per_sec.max(1) as f64);
    if let Some(wait) = due.checked_sub(began.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}
