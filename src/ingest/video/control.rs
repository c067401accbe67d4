//! The Kinesis Video control plane: streams created, described, listed,
//! changed (with Kinesis Video's version check), tagged and deleted, and
//! `GetDataEndpoint`, which answers Hydrant's own address for every API.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{from_video, invalid, not_found, opt_str, seconds, stream_of};
use crate::config::at_rest;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::log::seal::Keyring;
use crate::video::{Spec, VideoError, VideoStream, spec};

/// The APIs `GetDataEndpoint` answers for.
const API_NAMES: &[&str] = &[
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
];

pub(super) async fn dispatch(
    state: &AppState,
    op: &str,
    req: &Value,
    endpoint: &str,
) -> Result<Value, ApiError> {
    // Definitions are small files written with fsync: off the runtime.
    let blocking = |f: fn(&AppState, &Value) -> Result<Value, ApiError>| {
        tokio::task::block_in_place(|| f(state, req))
    };
    match op {
        "CreateStream" => blocking(create),
        "DescribeStream" => describe(state, req),
        "ListStreams" => list(state, req),
        "DeleteStream" => blocking(delete),
        "UpdateStream" => blocking(update),
        "UpdateDataRetention" => blocking(retention),
        "TagStream" => blocking(tag),
        "UntagStream" => blocking(untag),
        "ListTagsForStream" => list_tags(state, req),
        "GetDataEndpoint" => data_endpoint(state, req, endpoint),
        other => Err(invalid(format!("{other} is not a control plane operation"))),
    }
}

fn info(s: &VideoStream) -> Value {
    let spec = s.spec();
    let mut v = json!({
        "StreamName": spec.name,
        "StreamARN": spec.arn(),
        "Status": "ACTIVE",
        "Version": spec.version,
        "CreationTime": seconds(spec.created_ms),
        "DataRetentionInHours": spec.retention_hours,
    });
    if let Some(o) = v.as_object_mut() {
        for (k, val) in [
            ("DeviceName", &spec.device_name),
            ("MediaType", &spec.media_type),
            ("KmsKeyId", &spec.kms_key_id),
        ] {
            if let Some(val) = val {
                o.insert(k.into(), json!(val));
            }
        }
    }
    v
}

fn checked_name<'a>(req: &'a Value, field: &str, max: usize) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = opt_str(req, field)? else {
        return Ok(None);
    };
    if v.is_empty() || v.len() > max || !spec::valid_name(v) {
        return Err(invalid(format!(
            "{field} `{v}` must be 1 to {max} characters of letters, digits, `_`, `.` and `-`"
        )));
    }
    Ok(Some(v))
}

fn media_type(req: &Value) -> Result<Option<String>, ApiError> {
    let Some(m) = opt_str(req, "MediaType")? else {
        return Ok(None);
    };
    let ok = (1..=128).contains(&m.len())
        && m.split(',').all(|t| {
            t.split_once('/').is_some_and(|(a, b)| {
                let part = |p: &str| {
                    !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "_-.+".contains(c))
                };
                part(a) && part(b)
            })
        });
    if !ok {
        return Err(invalid(format!(
            "MediaType `{m}` must be TYPE/SUBTYPE, comma-separated (video/h264,audio/aac)"
        )));
    }
    Ok(Some(m.to_string()))
}

fn tags_of(v: Option<&Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let Some(o) = v.as_object() else {
        return Err(invalid("Tags must be a map of strings"));
    };
    let mut out = BTreeMap::new();
    for (k, val) in o {
        let Some(val) = val.as_str() else {
            return Err(invalid(format!("the value of tag {k} must be a string")));
        };
        if k.is_empty() || k.chars().count() > 128 || val.chars().count() > 256 {
            return Err(invalid(format!(
                "tag `{k}`: keys are 1 to 128 characters, values at most 256"
            )));
        }
        if k.starts_with("aws:") {
            return Err(invalid(format!("tag `{k}`: the aws: prefix is reserved")));
        }
        out.insert(k.clone(), val.to_string());
    }
    Ok(out)
}

fn too_many_tags(n: usize) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "TagsPerResourceExceededLimitException",
        format!(
            "a stream takes at most {} tags; this would make {n}",
            spec::TAGS_MAX
        ),
    )
}

fn create(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    if state.registry.cluster.is_some() {
        return Err(invalid(
            "video streams keep their fragments on one node's disk; they are not available in cluster mode",
        ));
    }
    let spec = create_spec(req, &state.registry.config.log.keys)?;
    let (name, retention) = (spec.name.clone(), spec.retention_hours);
    let s = state.registry.create_video(spec).map_err(from_video)?;
    tracing::info!(
        stream = name,
        retention_hours = retention,
        "video stream created"
    );
    Ok(json!({ "StreamARN": s.spec().arn() }))
}

/// The definition a `CreateStream` request asks for, every field checked
/// as the model constrains it; `keys` resolve its `KmsKeyId`.
pub(super) fn create_spec(req: &Value, keys: &Keyring) -> Result<Spec, ApiError> {
    let name =
        checked_name(req, "StreamName", 256)?.ok_or_else(|| invalid("StreamName is required"))?;
    let device = checked_name(req, "DeviceName", 128)?.map(str::to_string);
    let retention = match req.get("DataRetentionInHours") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .filter(|h| *h <= u64::from(spec::RETENTION_HOURS_MAX))
            .ok_or_else(|| {
                invalid(format!(
                    "DataRetentionInHours must be 0 to {}",
                    spec::RETENTION_HOURS_MAX
                ))
            })? as u32,
    };
    let tags = tags_of(req.get("Tags"))?;
    if tags.len() > spec::TAGS_MAX {
        return Err(too_many_tags(tags.len()));
    }
    let kms = opt_str(req, "KmsKeyId")?.map(str::to_string);
    let log_key = match &kms {
        None => None,
        Some(k) => {
            Some(at_rest::resolve(keys, false, Some(at_rest::key_id_of_kms(k))).map_err(invalid)?)
        }
    };
    Ok(Spec {
        name: name.to_string(),
        device_name: device,
        media_type: media_type(req)?,
        kms_key_id: kms,
        log_key,
        retention_hours: retention,
        created_ms: chrono::Utc::now().timestamp_millis(),
        version: spec::new_version(),
        tags,
    })
}

fn describe(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    Ok(json!({ "StreamInfo": info(&s) }))
}

fn list(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => 10_000,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid("MaxResults must be 1 to 10000"))? as usize,
    };
    let prefix = match req.get("StreamNameCondition").filter(|v| !v.is_null()) {
        None => "",
        Some(c) => {
            match c.get("ComparisonOperator").and_then(Value::as_str) {
                None | Some("BEGINS_WITH") => {}
                Some(op) => {
                    return Err(invalid(format!(
                        "ComparisonOperator {op} is not BEGINS_WITH"
                    )));
                }
            }
            c.get("ComparisonValue")
                .and_then(Value::as_str)
                .unwrap_or("")
        }
    };
    // The token is the last name of the page before, base64 (the model's
    // token alphabet).
    let after = match opt_str(req, "NextToken")? {
        None | Some("") => String::new(),
        Some(t) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid("NextToken is not one ListStreams gave"))?
        }
    };
    let all: Vec<_> = state
        .registry
        .video
        .all()
        .into_iter()
        .filter(|s| s.name.starts_with(prefix) && s.name > after)
        .collect();
    let page: Vec<Value> = all.iter().take(max).map(|s| info(s)).collect();
    let mut out = json!({ "StreamInfoList": page });
    if all.len() > max
        && let (Some(o), Some(last)) = (out.as_object_mut(), all.get(max - 1))
    {
        use base64::Engine;
        o.insert(
            "NextToken".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&last.name)),
        );
    }
    Ok(out)
}

fn check_version(s: &VideoStream, req: &Value, required: bool) -> Result<(), ApiError> {
    let current = s.spec().version;
    match opt_str(req, "CurrentVersion")? {
        None if required => Err(invalid("CurrentVersion is required")),
        Some(v) if v != current => Err(from_video(VideoError::Version {
            given: v.to_string(),
            current,
        })),
        _ => Ok(()),
    }
}

fn delete(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let arn = opt_str(req, "StreamARN")?.ok_or_else(|| invalid("StreamARN is required"))?;
    let s = stream_of(state, &json!({ "StreamARN": arn }))?;
    check_version(&s, req, false)?;
    state.registry.video.delete(&s.name).map_err(from_video)?;
    tracing::info!(stream = s.name, "video stream deleted");
    Ok(json!({}))
}

fn update(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    check_version(&s, req, true)?;
    let device = checked_name(req, "DeviceName", 128)?.map(str::to_string);
    let media = media_type(req)?;
    s.update(|spec| {
        if device.is_some() {
            spec.device_name = device;
        }
        if media.is_some() {
            spec.media_type = media;
        }
        Ok(())
    })
    .map_err(from_video)?;
    Ok(json!({}))
}

fn retention(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    check_version(&s, req, true)?;
    let change = req
        .get("DataRetentionChangeInHours")
        .and_then(Value::as_u64)
        .filter(|h| *h >= 1)
        .ok_or_else(|| invalid("DataRetentionChangeInHours must be at least 1"))?;
    let increase = match opt_str(req, "Operation")? {
        Some("INCREASE_DATA_RETENTION") => true,
        Some("DECREASE_DATA_RETENTION") => false,
        _ => {
            return Err(invalid(
                "Operation must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION",
            ));
        }
    };
    s.update(|spec| {
        let now = u64::from(spec.retention_hours);
        let next = if increase {
            now + change
        } else {
            now.checked_sub(change).ok_or_else(|| {
                VideoError::Invalid(format!(
                    "the retention of {now} hours cannot decrease by {change}"
                ))
            })?
        };
        if next > u64::from(spec::RETENTION_HOURS_MAX) {
            return Err(VideoError::Invalid(format!(
                "the retention would be {next} hours, more than {}",
                spec::RETENTION_HOURS_MAX
            )));
        }
        spec.retention_hours = next as u32;
        Ok(())
    })
    .map_err(from_video)?;
    // A shorter retention deletes what it no longer keeps now.
    s.trim(chrono::Utc::now().timestamp_millis());
    Ok(json!({}))
}

fn tag(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    let tags = tags_of(req.get("Tags"))?;
    if tags.is_empty() {
        return Err(invalid("Tags must hold at least one tag"));
    }
    s.update(|spec| {
        let mut next = spec.tags.clone();
        next.extend(tags);
        if next.len() > spec::TAGS_MAX {
            return Err(VideoError::Limit(next.len().to_string()));
        }
        spec.tags = next;
        Ok(())
    })
    .map_err(|e| match e {
        VideoError::Limit(n) => too_many_tags(n.parse().unwrap_or(0)),
        other => from_video(other),
    })?;
    Ok(json!({}))
}

fn untag(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    let keys: Vec<String> = req
        .get("TagKeyList")
        .and_then(Value::as_array)
        .filter(|a| (1..=spec::TAGS_MAX).contains(&a.len()))
        .ok_or_else(|| invalid("TagKeyList must list 1 to 50 keys"))?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid("tag keys are strings"))
        })
        .collect::<Result<_, _>>()?;
    s.update(|spec| {
        spec.tags.retain(|k, _| !keys.contains(k));
        Ok(())
    })
    .map_err(from_video)?;
    Ok(json!({}))
}

fn list_tags(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    Ok(json!({ "Tags": s.spec().tags }))
}

fn data_endpoint(state: &AppState, req: &Value, endpoint: &str) -> Result<Value, ApiError> {
    match opt_str(req, "APIName")? {
        Some(n) if API_NAMES.contains(&n) => {}
        Some(n) => {
            return Err(invalid(format!(
                "APIName {n} is not one of {}",
                API_NAMES.join(", ")
            )));
        }
        None => return Err(invalid("APIName is required")),
    }
    stream_of(state, req).map_err(|e| {
        if e.kind == "InvalidArgumentException" {
            e
        } else {
            not_found(e.message)
        }
    })?;
    Ok(json!({ "DataEndpoint": endpoint }))
}
