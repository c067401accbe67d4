//! Channels: `CreateChannel`, `DescribeChannel`, `ListChannels`,
//! `UpdateChannel` and `DeleteChannel`. A channel is a delivery stream that
//! reads a Kinesis stream (its own checkpoints, holding the stream's
//! retention like any reader) and writes to an S3 bucket or an Iceberg
//! table; the request becomes its config in `config::channel`, and the
//! registry persists, restores and runs it as it does a Firehose stream.
//! Channels share the names of delivery streams (each is one) but are not
//! seen through the Firehose API.
//!
//! A channel is `ACTIVE` once `CreateChannel` answers: its delivery has
//! started. `UpdateChannel` drains and restarts it with the new freshness.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Req, decode_token, encode_token, missing, seconds, violation};
use crate::aws::{self, ACCOUNT};
use crate::config::channel::{self, DATA_FRESHNESS_SECS, DEFAULT_ERROR_PREFIX, S3, TABLES};
use crate::config::firehose::RequestError;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::streams::{Origin, RegistryError, StreamEntry};

/// `ListChannels` answers at most this many per page, as Kinesis does.
const LIST_PAGE_MAX: i64 = 100;

fn request_error(e: RequestError) -> ApiError {
    match e {
        RequestError::Validation(v) => {
            let n = v.len();
            let noun = if n == 1 { "error" } else { "errors" };
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                format!("{n} validation {noun} detected: {}", v.join("; ")),
            )
        }
        RequestError::Invalid(m) => ApiError::invalid_argument(m),
        RequestError::Kms(m) => ApiError::invalid_kms(m),
    }
}

fn channel_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Channel {name} under account {ACCOUNT} not found."))
}

/// The channel a request's `ChannelARN` names.
fn named(state: &AppState, req: &Req<'_>) -> Result<std::sync::Arc<StreamEntry>, ApiError> {
    let arn = req
        .str("ChannelARN")?
        .ok_or_else(|| missing("channelARN"))?;
    let name = aws::channel_from_arn(arn).ok_or_else(|| {
        violation(
            "channelARN",
            arn,
            "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:channel/\\S+",
        )
    })?;
    state
        .registry
        .get(name)
        .filter(|e| e.origin == Origin::Channel)
        .ok_or_else(|| channel_not_found(name))
}

pub(super) async fn create(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let name = req
        .str("ChannelName")?
        .ok_or_else(|| missing("channelName"))?;
    if !aws::valid_channel_name(name) {
        return Err(violation(
            "channelName",
            name,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
        ));
    }
    let mut request = Value::Object(req.0.clone());
    let cfg = channel::stream_from_channel(name, &request, &state.registry.config)
        .map_err(request_error)?;
    if let crate::config::Source::Kinesis { stream } = &cfg.source
        && state.registry.kinesis.get(stream).is_none()
    {
        return Err(ApiError::not_found(format!(
            "Stream {stream} under account {ACCOUNT} not found."
        )));
    }
    if let Some(e) = state.registry.get(name) {
        return Err(in_use(name, e.origin));
    }
    if let Some(o) = request.as_object_mut() {
        o.insert(
            "ChannelId".into(),
            Value::String(uuid::Uuid::new_v4().simple().to_string()),
        );
    }
    match state.registry.create(cfg, request, Origin::Channel).await {
        Ok(e) => Ok(json!({ "ChannelDescription": description(state, &e) })),
        Err(RegistryError::Exists(_)) => Err(in_use(name, Origin::Channel)),
        Err(RegistryError::Limit(n)) => Err(ApiError::limit_exceeded(format!(
            "The limit of {n} channels and delivery streams created through the API is reached"
        ))),
        Err(e) => Err(ApiError::invalid_argument(e.to_string())),
    }
}

fn in_use(name: &str, origin: Origin) -> ApiError {
    let what = match origin {
        Origin::Channel => "Channel",
        _ => "A delivery stream of this name (channels and delivery streams share names): it",
    };
    ApiError::in_use(format!(
        "{what} {name} under account {ACCOUNT} already exists."
    ))
}

pub(super) fn describe(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let e = named(state, &req)?;
    Ok(json!({ "ChannelDescription": description(state, &e) }))
}

pub(super) fn list(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let limit = req.int_in("MaxResults", "maxResults", 1, 10_000, LIST_PAGE_MAX)?;
    let limit = limit.min(LIST_PAGE_MAX) as usize;
    let after = match req.str("NextToken")? {
        Some(t) => Some(decode_token(t, "ListChannels")?.0),
        None => None,
    };
    let filter: Option<Vec<String>> = match req.0.get("StreamFilter") {
        None | Some(Value::Null) => None,
        Some(Value::Array(fs)) => {
            let mut names = Vec::new();
            for (i, f) in fs.iter().enumerate() {
                let arn = f.get("StreamARN").and_then(Value::as_str);
                let at = format!("streamFilter.{}.member.streamARN", i + 1);
                let arn = arn.ok_or_else(|| missing(&at))?;
                let n = aws::kinesis_stream_from_arn(arn).ok_or_else(|| {
                    violation(
                        &at,
                        arn,
                        "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                    )
                })?;
                names.push(n.to_string());
            }
            Some(names)
        }
        Some(other) => {
            return Err(ApiError::serialization(format!(
                "'StreamFilter' must be a list, not {other}"
            )));
        }
    };
    let channels: Vec<_> = state
        .registry
        .all()
        .into_iter()
        .filter(|e| e.origin == Origin::Channel)
        .filter(|e| after.as_ref().is_none_or(|a| &e.config.name > a))
        .filter(|e| {
            let request = e.request();
            let source = request.as_ref().and_then(channel::source_stream);
            filter
                .as_ref()
                .is_none_or(|f| source.is_some_and(|s| f.iter().any(|n| n == s)))
        })
        .collect();
    let page = &channels[..channels.len().min(limit)];
    let mut out = json!({
        "ChannelSummaries": page.iter().map(|e| summary(state, e)).collect::<Vec<_>>(),
    });
    if channels.len() > limit
        && let Some(last) = page.last()
    {
        out["NextToken"] = Value::String(encode_token(&last.config.name, "ListChannels"));
    }
    Ok(out)
}

pub(super) async fn update(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let e = named(state, &req)?;
    let current = e.request().unwrap_or_default();
    let next =
        channel::updated_request(&current, &Value::Object(req.0.clone())).map_err(request_error)?;
    let cfg = channel::stream_from_channel(&e.config.name, &next, &state.registry.config)
        .map_err(request_error)?;
    match state.registry.update(cfg, next).await {
        Ok(e) => Ok(json!({ "ChannelDescription": description(state, &e) })),
        Err(RegistryError::NotFound(n)) => Err(channel_not_found(&n)),
        Err(err) => Err(ApiError::invalid_argument(err.to_string())),
    }
}

pub(super) async fn delete(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let e = named(state, &req)?;
    match state.registry.delete(&e.config.name).await {
        Ok(()) => Ok(json!({})),
        Err(RegistryError::NotFound(n)) => Err(channel_not_found(&n)),
        Err(err) => Err(ApiError::in_use(err.to_string())),
    }
}

/// The request's `StreamConfigurationList`, each entry with its stream's
/// creation time.
fn streams(state: &AppState, request: &Value) -> Vec<Value> {
    let list = request
        .get("StreamConfigurationList")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .map(|mut s| {
            let created = s
                .get("StreamARN")
                .and_then(Value::as_str)
                .and_then(aws::kinesis_stream_from_arn)
                .and_then(|n| state.registry.kinesis.get(n))
                .map_or(0.0, |k| seconds(k.created_ms));
            if let Some(o) = s.as_object_mut() {
                o.insert("StreamCreationTimestamp".into(), json!(created));
            }
            s
        })
        .collect()
}

fn summary(state: &AppState, e: &StreamEntry) -> Value {
    let request = e.request().unwrap_or_default();
    let ids: Vec<Value> = streams(state, &request)
        .into_iter()
        .map(|s| {
            json!({ "StreamARN": s["StreamARN"], "StreamCreationTimestamp": s["StreamCreationTimestamp"] })
        })
        .collect();
    json!({
        "ChannelName": e.config.name,
        "ChannelARN": aws::channel_arn(&e.config.name),
        "ChannelId": request.get("ChannelId").cloned().unwrap_or_default(),
        "ChannelStatus": "ACTIVE",
        "ChannelCreationTimestamp": seconds(e.created_ms),
        "ChannelDestinationType": channel::destination_type(&request),
        "Streams": ids,
    })
}

/// A channel as `DescribeChannel` gives it: the request it was made with,
/// the defaults filled in.
fn description(state: &AppState, e: &StreamEntry) -> Value {
    let request = e.request().unwrap_or_default();
    let mut d = Map::new();
    d.insert("ChannelName".into(), json!(e.config.name));
    d.insert("ChannelARN".into(), json!(aws::channel_arn(&e.config.name)));
    for k in ["ChannelId", "ServiceExecutionRoleARN"] {
        d.insert(k.into(), request.get(k).cloned().unwrap_or_default());
    }
    d.insert("ChannelStatus".into(), json!("ACTIVE"));
    if let Some(err) = e.ctx.last_error() {
        d.insert("ChannelStatusReason".into(), json!(err));
    }
    d.insert(
        "ChannelCreationTimestamp".into(),
        json!(seconds(e.created_ms)),
    );
    d.insert(
        "StreamConfigurationList".into(),
        Value::Array(streams(state, &request)),
    );
    for k in [S3, TABLES] {
        if let Some(dest) = request.get(k).filter(|v| !v.is_null()) {
            d.insert(k.into(), destination(k, dest));
        }
    }
    if let Some(enc) = request.get("EncryptionConfiguration") {
        d.insert("EncryptionConfiguration".into(), enc.clone());
    }
    let logging = request
        .get("LoggingConfiguration")
        .cloned()
        .unwrap_or_else(|| json!({ "CloudWatchLogs": { "Enabled": false } }));
    d.insert("LoggingConfiguration".into(), logging);
    Value::Object(d)
}

/// A destination's description: its freshness and dead-letter bucket,
/// given or the defaults.
fn destination(kind: &str, given: &Value) -> Value {
    let mut out = given.clone();
    let Some(o) = out.as_object_mut() else {
        return out;
    };
    o.entry("DataFreshnessInSeconds")
        .or_insert(json!(DATA_FRESHNESS_SECS));
    if kind == S3 && !o.contains_key("DeadLetterQueueS3Configuration") {
        let storage = given.get("StorageConfiguration");
        let field = |k: &str| storage.and_then(|s| s.get(k)).cloned().unwrap_or_default();
        o.insert(
            "DeadLetterQueueS3Configuration".into(),
            json!({
                "BucketARN": field("BucketARN"),
                "ExpectedBucketOwner": field("ExpectedBucketOwner"),
                "ErrorOutputPrefix": DEFAULT_ERROR_PREFIX,
            }),
        );
    }
    out
}
