//! The Kinesis Video Streams APIs: REST-JSON, every operation `POST
//! /<operation>` signed as service `kinesisvideo` — the control plane
//! ([`control`]), `PutMedia` ([`put_media`]), `GetMedia` and
//! `GetMediaForFragmentList` ([`get_media`]) and `ListFragments`
//! ([`archived`]), HLS sessions and `GetClip` ([`hls`]). Errors carry `x-amzn-ErrorType` as the SDKs read it.

mod archived;
mod control;
mod get_media;
mod hls;
mod put_media;

pub use hls::serve as hls_serve;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::video::{VideoError, VideoStream, spec};

/// Every operation, by the path it is posted to, and its action name.
const OPERATIONS: &[(&str, &str)] = &[
    ("createStream", "CreateStream"),
    ("describeStream", "DescribeStream"),
    ("listStreams", "ListStreams"),
    ("deleteStream", "DeleteStream"),
    ("updateStream", "UpdateStream"),
    ("updateDataRetention", "UpdateDataRetention"),
    ("tagStream", "TagStream"),
    ("untagStream", "UntagStream"),
    ("listTagsForStream", "ListTagsForStream"),
    ("getDataEndpoint", "GetDataEndpoint"),
    ("putMedia", "PutMedia"),
    ("getMedia", "GetMedia"),
    ("getMediaForFragmentList", "GetMediaForFragmentList"),
    ("listFragments", "ListFragments"),
    ("getHLSStreamingSessionURL", "GetHLSStreamingSessionURL"),
    ("getClip", "GetClip"),
];

/// `POST /<operation>`.
pub async fn call(
    State(state): State<AppState>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let Some((_, op)) = OPERATIONS.iter().find(|(p, _)| *p == path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("POST /{path} is not an operation Hydrant implements"),
        )
        .into_response();
    };
    if *op == "PutMedia" {
        return put_media::put_media(state, req).await;
    }
    let Ok(_permit) = state.in_flight.clone().acquire_owned().await else {
        return ApiError::unavailable("shutting down").into_response();
    };
    let (parts, body) = req.into_parts();
    let body = match super::read_body(&state, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let key = match super::authenticate(&state, &parts.method, &parts.uri, &parts.headers, &body) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let req: Value = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return invalid("the request body must be a JSON object").into_response(),
            Err(e) => {
                return ApiError::serialization(format!(
                    "cannot parse the request body as JSON: {e}"
                ))
                .into_response();
            }
        }
    };
    if let Some(key) = key {
        let resource = req
            .get("StreamARN")
            .or_else(|| req.get("StreamName"))
            .and_then(Value::as_str)
            .unwrap_or("*");
        if let Err(e) =
            super::authorize::check(&state, key, &format!("kinesisvideo:{op}"), resource)
        {
            return e.into_response();
        }
    }
    let result = match *op {
        "GetMedia" => return get_media::get_media(&state, &req).await,
        "GetMediaForFragmentList" => return get_media::for_fragment_list(&state, &req).await,
        "ListFragments" => archived::list_fragments(&state, &req),
        "GetHLSStreamingSessionURL" => {
            hls::session_url(&state, &req, &endpoint(&state, &parts.headers)).await
        }
        "GetClip" => {
            return match hls::get_clip(&state, &req).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
        }
        other => control::dispatch(&state, other, &req, &endpoint(&state, &parts.headers)).await,
    };
    match result {
        Ok(v) => json(v),
        Err(e) => e.into_response(),
    }
}

/// Parses a `CreateStream` body as the API does; the stream it defines.
/// The fuzz targets' entry into the video request parsers.
pub fn parse_create_stream(body: &[u8]) -> Result<spec::Spec, ApiError> {
    let req: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::serialization(format!("cannot parse the request body as JSON: {e}"))
    })?;
    if !req.is_object() {
        return Err(invalid("the request body must be a JSON object"));
    }
    control::create_spec(&req, &crate::log::seal::Keyring::default())
}

/// This daemon's address as the client reached it (its `Host`), `https`
/// when that is the TLS listener's port.
fn endpoint(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    let config = &state.registry.config;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| config.listen.to_string());
    let port = host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let tls = config
        .listen_tls
        .as_ref()
        .is_some_and(|t| port == Some(t.address.port()));
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// A JSON answer.
fn json(v: Value) -> Response {
    let mut resp = (StatusCode::OK, v.to_string()).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

fn from_video(e: VideoError) -> ApiError {
    let message = e.to_string();
    match e {
        VideoError::Exists(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "ResourceInUseException", message)
        }
        VideoError::NotFound(_) => not_found(message),
        VideoError::Limit(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "AccountStreamLimitExceededException",
            message,
        ),
        VideoError::Invalid(_) => invalid(message),
        VideoError::Version { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "VersionMismatchException", message)
        }
        VideoError::Io { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            message,
        ),
    }
}

/// An optional string field, checked to be a string.
fn opt_str<'a>(req: &'a Value, field: &str) -> Result<Option<&'a str>, ApiError> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{field} must be a string"))),
    }
}

/// The stream a request names by `StreamName` or `StreamARN` (one of them).
fn stream_of(state: &AppState, req: &Value) -> Result<Arc<VideoStream>, ApiError> {
    let name = match (opt_str(req, "StreamName")?, opt_str(req, "StreamARN")?) {
        (Some(n), None) => n,
        (None, Some(arn)) => {
            let n = spec::name_from_arn(arn).ok_or_else(|| {
                invalid(format!("StreamARN {arn} is not a Kinesis Video stream ARN"))
            })?;
            let s = state.registry.video.get(n);
            return match s {
                Some(s) if s.spec().arn() == arn => Ok(s),
                _ => Err(not_found(format!("The stream {arn} does not exist."))),
            };
        }
        (Some(_), Some(_)) => return Err(invalid("give StreamName or StreamARN, not both")),
        (None, None) => return Err(invalid("StreamName or StreamARN is required")),
    };
    state
        .registry
        .video
        .get(name)
        .ok_or_else(|| not_found(format!("The stream {name} does not exist.")))
}

/// A timestamp field (epoch seconds, as rest-json sends them) in
/// milliseconds.
fn timestamp_ms(v: &Value, field: &str) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e11)
            .map(|f| (f * 1000.0).round() as i64)
            .ok_or_else(|| invalid(format!("{field} is not a timestamp"))),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| invalid(format!("{field} is not a timestamp"))),
        _ => Err(invalid(format!("{field} is not a timestamp"))),
    }
}

/// Epoch milliseconds as a rest-json timestamp (seconds).
fn seconds(ms: i64) -> Value {
    serde_json::json!(ms as f64 / 1000.0)
}

/// A streaming answer of MKV chunks.
fn media_response(content_type: &str, body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(content_type) {
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, v);
    }
    resp
}
