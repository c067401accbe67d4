//! Ingest: the HTTP front door. One listener serves the Firehose and Kinesis
//! Data Streams APIs (`POST /` with `X-Amz-Target`; Kinesis also in CBOR),
//! NDJSON (`POST /v1/streams/{name}/records`), and `/health`, `/ready`,
//! `/metrics`.
//!
//! A put is answered only after the log made all of its records durable; a
//! request that fails validation writes nothing. Ingest never talks to a
//! destination.

pub mod analytics;
mod authorize;
pub mod cbor;
pub mod error;
mod fast;
pub mod firehose;
pub mod kinesis;
pub mod ndjson;
pub mod sigv4;
pub mod video;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::streams::Registry;
use error::ApiError;

/// Decodes a record's standard (padded) base64 onto the end of `out`. The
/// SIMD decoder first (base64 decoding was the largest single item of
/// ingest's CPU); it says only that a text is not base64, so then the scalar
/// one decodes it again, to accept what it accepts and to say where the text
/// is wrong. On an error `out` is as it was.
pub(crate) fn decode_base64_onto(
    text: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), base64::DecodeError> {
    let start = out.len();
    if base64_simd::STANDARD.decode_append(text, out).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    let decoded = base64::Engine::decode_vec(&base64::engine::general_purpose::STANDARD, text, out);
    if decoded.is_err() {
        out.truncate(start);
    }
    decoded
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The SQL applications.
    pub analytics: Arc<crate::analytics::Applications>,
    /// Requests being served at once; more wait for a permit.
    pub in_flight: Arc<Semaphore>,
    /// False once shutdown began: new puts are refused.
    pub accepting: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, analytics: Arc<crate::analytics::Applications>) -> Self {
        let n = registry.config.limits.requests_in_flight_max;
        AppState {
            registry,
            analytics,
            in_flight: Arc::new(Semaphore::new(n)),
            accepting: Arc::new(AtomicBool::new(true)),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", post(aws_json))
        .route("/{operation}", post(video::call))
        .route("/hls/v1/{file}", get(video::hls_serve))
        .route("/v1/streams/{name}/records", post(ndjson_put))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .with_state(state)
}

/// Reads the body up to the configured limit.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    use axum::body::HttpBody;
    use futures::StreamExt;
    // A stream taking records over 1 MiB (`UpdateMaxRecordSize`) takes a
    // request of one, base64 in JSON, whatever the configured bound.
    let record = state.registry.kinesis.record_bytes_max();
    let max = if record > 1 << 20 {
        state
            .registry
            .config
            .limits
            .request_bytes_max
            .max(record / 3 * 4 + (1 << 20))
    } else {
        state.registry.config.limits.request_bytes_max
    };
    let hint = body.size_hint().exact().unwrap_or(0);
    let capacity = usize::try_from(hint).unwrap_or(max).min(max);
    // A body that arrives in one chunk (the common case over a fast link:
    // the whole request in one read) is that chunk, not a copy of it.
    let mut first: Option<Bytes> = None;
    let mut buf = Vec::new();
    let mut over = 0usize;
    let mut stream = body.into_data_stream();
    let deadline = tokio::time::Instant::now() + state.registry.config.limits.body_read_timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let Ok(next) = next else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                "the request body was not received within limits.body_read_timeout_secs",
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| ApiError::serialization(format!("cannot read the request body: {e}")))?;
        let held = first.as_ref().map_or(buf.len(), Bytes::len);
        if over == 0 && held + chunk.len() <= max {
            if held == 0 {
                first = Some(chunk);
                continue;
            }
            if let Some(f) = first.take() {
                buf.reserve_exact(capacity.max(f.len() + chunk.len()));
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&chunk);
            continue;
        }
        // Too large: read on and discard, up to the limit once more, so a
        // client still sending gets the answer instead of a reset connection.
        over += chunk.len();
        if over > max {
            break;
        }
    }
    if over > 0 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidArgumentException",
            format!("request body exceeds the limit of {max} bytes (limits.request_bytes_max)"),
        ));
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}

/// A Kinesis operation: the body parsed (JSON or CBOR) and dispatched;
/// `GetRecords` written straight into the body (JSON or CBOR), and
/// `PutRecords` from a valid body read by its fast path (JSON or CBOR).
async fn kinesis_call(
    state: &AppState,
    op: &str,
    body: &[u8],
    cbor: bool,
) -> Result<firehose::Reply, ApiError> {
    if op == "PutRecords" {
        let answer = if cbor {
            kinesis::put_records_cbor(state, body)
                .await
                .map(|a| a.map(firehose::Reply::Cbor))
        } else {
            kinesis::put_records_json(state, body)
                .await
                .map(|a| a.map(firehose::Reply::Json))
        };
        if let Some(answer) = answer {
            return answer;
        }
    }
    let req = kinesis::request_value(body, cbor)?;
    if op == "GetRecords" {
        return if cbor {
            kinesis::get_records_cbor(state, &req)
                .await
                .map(firehose::Reply::Cbor)
        } else {
            kinesis::get_records_json(state, &req)
                .await
                .map(firehose::Reply::Json)
        };
    }
    kinesis::dispatch(state, op, &req)
        .await
        .map(firehose::Reply::Value)
}

/// The key that signed the request (None when Hydrant runs without keys).
fn authenticate<'s>(
    state: &'s AppState,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<&'s crate::config::AccessKey>, ApiError> {
    let keys = &state.registry.config.access_keys;
    if keys.is_empty() {
        return Ok(None);
    }
    sigv4::verify(
        method,
        uri.path(),
        uri.query().unwrap_or(""),
        headers,
        body,
        keys,
        chrono::Utc::now(),
    )
    .map(Some)
}

fn json_response(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-RequestId", v);
    }
    resp
}

async fn aws_json(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let Ok(_permit) = state.in_flight.clone().acquire_owned().await else {
        return ApiError::unavailable("shutting down").into_response();
    };
    let (parts, body) = req.into_parts();
    let cbor = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(cbor::CONTENT_TYPE));
    let body = match read_body(&state, body).await {
        Ok(b) => b,
        Err(e) => return reply(Err(e), cbor),
    };
    let key = match authenticate(&state, &parts.method, &parts.uri, &parts.headers, &body) {
        Ok(k) => k,
        Err(e) => return reply(Err(e), cbor),
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (service, op) = if let Some(op) = target.strip_prefix("Firehose_20150804.") {
        (Service::Firehose, op)
    } else if let Some(op) = target.strip_prefix("Kinesis_20131202.") {
        (Service::Kinesis, op)
    } else if let Some(op) = target.strip_prefix("KinesisAnalytics_20150814.") {
        (Service::Analytics, op)
    } else {
        return reply(
            Err(ApiError::unknown_operation(if target.is_empty() {
                "the X-Amz-Target header is missing".to_string()
            } else {
                format!("{target} is not an operation Hydrant implements")
            })),
            cbor,
        );
    };
    if let Some(key) = key
        && let Err(e) = authorize::request(&state, key, service.prefix(), op, &body, cbor)
    {
        return reply(Err(e), cbor);
    }
    if op.starts_with("Put") && !state.accepting.load(Ordering::Acquire) {
        return reply(
            Err(ApiError::unavailable(
                "Hydrant is shutting down; retry against another instance or after restart",
            )),
            cbor,
        );
    }
    if matches!(service, Service::Kinesis) && op == "SubscribeToShard" {
        return subscribe(&state, &body, cbor).await;
    }
    let result = match service {
        Service::Firehose if cbor => Err(ApiError::serialization(
            "the Firehose API takes application/x-amz-json-1.1",
        )),
        Service::Firehose => firehose::dispatch(&state, op, &body).await,
        Service::Kinesis => kinesis_call(&state, op, &body, cbor).await,
        Service::Analytics if cbor => Err(ApiError::serialization(
            "the KinesisAnalytics API takes application/x-amz-json-1.1",
        )),
        Service::Analytics => analytics::call(&state, op, &body)
            .await
            .map(firehose::Reply::Value),
    };
    if op.starts_with("Put") {
        let label = match service {
            Service::Firehose | Service::Analytics => op.to_string(),
            Service::Kinesis => format!("Kinesis.{op}"),
        };
        state
            .registry
            .metrics
            .put_latency_seconds
            .get_or_create(&Metrics::operation(&label))
            .observe(started.elapsed().as_secs_f64());
    }
    reply(result, cbor)
}

/// `SubscribeToShard`: an event stream, not a JSON reply. The request's
/// permit is given back when the stream starts; the subscription is
/// bounded on its own (`kinesis.subscriptions_max`).
async fn subscribe(state: &AppState, body: &[u8], cbor: bool) -> Response {
    if cbor {
        return reply(
            Err(ApiError::serialization(
                "SubscribeToShard takes application/x-amz-json-1.1 (CBOR event streams are not supported)",
            )),
            true,
        );
    }
    let req: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                Err(ApiError::serialization(format!(
                    "cannot parse the request body as JSON: {e}"
                ))),
                false,
            );
        }
    };
    match kinesis::subscribe::subscribe_to_shard(state, &req).await {
        Ok(r) => r,
        Err(e) => reply(Err(e), false),
    }
}

#[derive(Clone, Copy)]
enum Service {
    Firehose,
    Kinesis,
    Analytics,
}

impl Service {
    /// The IAM action prefix of its operations.
    fn prefix(self) -> &'static str {
        match self {
            Service::Firehose => "firehose",
            Service::Kinesis => "kinesis",
            Service::Analytics => "kinesisanalytics",
        }
    }
}

/// The reply in the request's encoding: AWS JSON 1.1 or CBOR.
fn reply(result: Result<firehose::Reply, ApiError>, cbor: bool) -> Response {
    use firehose::Reply;
    match (result, cbor) {
        (Ok(Reply::Value(v)), false) => json_response(v.to_string()),
        (Ok(Reply::Json(s)), false) => json_response(s),
        (Err(e), false) => e.into_response(),
        (Ok(Reply::Cbor(b)), true) => cbor_bytes_response(StatusCode::OK, b, None),
        (Ok(Reply::Cbor(_)), false) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailureException",
            "a CBOR answer was made for a JSON request",
        )
        .into_response(),
        (Ok(Reply::Value(v)), true) => cbor_response(StatusCode::OK, &v, None),
        (Ok(Reply::Json(s)), true) => match serde_json::from_str(&s) {
            Ok(v) => cbor_response(StatusCode::OK, &v, None),
            Err(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
                e.to_string(),
            )
            .into_response(),
        },
        (Err(e), true) => cbor_response(
            e.status,
            &json!({ "__type": e.kind, "message": e.message }),
            Some(e.kind),
        ),
    }
}

fn cbor_response(
    status: StatusCode,
    v: &serde_json::Value,
    error: Option<&'static str>,
) -> Response {
    cbor_bytes_response(status, cbor::reply_from_json(v), error)
}

fn cbor_bytes_response(status: StatusCode, body: Vec<u8>, error: Option<&'static str>) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(cbor::CONTENT_TYPE),
    );
    if let Some(kind) = error {
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-RequestId", v);
    }
    resp
}

async fn ndjson_put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let Ok(_permit) = state.in_flight.clone().acquire_owned().await else {
        return ndjson::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(&state, body).await {
        Ok(b) => b,
        Err(e) => return ndjson::error(e.status, &e.message, None),
    };
    let key = match authenticate(&state, &parts.method, &parts.uri, &parts.headers, &body) {
        Ok(k) => k,
        Err(e) => {
            return ndjson::error(
                StatusCode::FORBIDDEN,
                &format!("{}: {}", e.kind, e.message),
                None,
            );
        }
    };
    // An NDJSON put is a batch put into the delivery stream.
    if let Some(key) = key
        && let Err(e) = authorize::check(
            &state,
            key,
            "firehose:PutRecordBatch",
            &crate::aws::delivery_stream_arn(&name),
        )
    {
        return ndjson::error(
            StatusCode::FORBIDDEN,
            &format!("{}: {}", e.kind, e.message),
            None,
        );
    }
    if !state.accepting.load(Ordering::Acquire) {
        return ndjson::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None);
    }
    let resp = ndjson::put(&state, &name, body).await;
    state
        .registry
        .metrics
        .put_latency_seconds
        .get_or_create(&Metrics::operation("NdjsonPut"))
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn health(State(state): State<AppState>) -> Response {
    let accepting = state.accepting.load(Ordering::Acquire);
    let status = if accepting {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "status": if accepting { "ok" } else { "shutting down" } })),
    )
        .into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    let q = state.registry.quota();
    if q.used() >= q.limit() {
        problems.push(format!(
            "log disk quota reached ({} of {} bytes)",
            q.used(),
            q.limit()
        ));
    }
    // The log's directory takes writes (a full or read-only disk shows here).
    let probe = state.registry.config.data_dir.join(".ready-probe");
    let writable = tokio::task::spawn_blocking(move || {
        std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe))
    })
    .await;
    match writable {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("the log directory is not writable: {e}")),
        Err(e) => problems.push(format!("cannot check the log directory: {e}")),
    }
    for e in state.registry.all() {
        if let Some(err) = e.ctx.last_error() {
            problems.push(format!("stream {}: {err}", e.config.name));
        }
    }
    if let Some(c) = &state.registry.cluster
        && !c.connected()
    {
        problems.push("not connected to NATS (cluster.nats.servers)".into());
    }
    if !state.accepting.load(Ordering::Acquire) {
        problems.push("shutting down".into());
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "ready": problems.is_empty(), "problems": problems })),
    )
        .into_response()
}

/// Every stream's state, for `hydrant status` and people.
async fn status(State(state): State<AppState>) -> Response {
    use crate::metrics::Metrics;
    let m = &state.registry.metrics;
    let streams: Vec<serde_json::Value> = state
        .registry
        .all()
        .iter()
        .map(|e| {
            let name = &e.config.name;
            let label = Metrics::stream(name);
            let backlog: i64 = (0..e.config.shards)
                .map(|s| {
                    m.backlog_records
                        .get_or_create(&Metrics::shard(name, s))
                        .get()
                })
                .sum();
            let last = e.ctx.last_delivery_ms();
            json!({
                "name": name,
                "origin": format!("{:?}", e.origin).to_lowercase(),
                "shards": e.config.shards,
                "destination": e.ctx.sink.describe(),
                "incoming_records": m.incoming_records.get_or_create(&label).get(),
                "incoming_bytes": m.incoming_bytes.get_or_create(&label).get(),
                "backlog_records": backlog,
                "data_freshness_seconds": e.ctx.data_freshness_secs(),
                "error_output_records": m.error_output_records.get_or_create(&label).get(),
                "last_delivery_ms": (last > 0).then_some(last),
                "last_error": e.ctx.last_error(),
            })
        })
        .collect();
    let cluster = match &state.registry.cluster {
        Some(c) => Some(c.status().await),
        None => None,
    };
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "accepting": state.accepting.load(Ordering::Acquire),
        "streams": streams,
        "applications": state.analytics.status_json(),
        "cluster": cluster,
    }))
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.analytics.note_metrics();
    // Freshness is an age: computed now, not when the last batch went out.
    for e in state.registry.all() {
        state
            .registry
            .metrics
            .data_freshness_seconds
            .get_or_create(&crate::metrics::Metrics::stream(&e.config.name))
            .set(e.ctx.data_freshness_secs());
    }
    for k in state.registry.kinesis.all() {
        state
            .registry
            .metrics
            .kinesis_open_shards
            .get_or_create(&crate::metrics::Metrics::stream(&k.name))
            .set(i64::from(k.open_shards()));
    }
    for q in state.registry.kinesis.queues.all() {
        let (in_flight, dead) = q.counts();
        let label = crate::metrics::Metrics::queue(&q.stream.name, &q.def().name);
        let m = &state.registry.metrics;
        m.kinesis_queue_in_flight
            .get_or_create(&label)
            .set(in_flight as i64);
        m.kinesis_queue_dead_letters
            .get_or_create(&label)
            .set(dead as i64);
    }
    let mut resp = state.registry.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
