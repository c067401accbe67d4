//! Changing a delivery stream made through the API: `UpdateDestination`
//! (optimistic concurrency on the version id) and its tags
//! (`TagDeliveryStream`, `UntagDeliveryStream`, `ListTagsForDeliveryStream`).
//!
//! Both change the request the stream was created with, which is what is
//! persisted: an update merges the `…DestinationUpdate` into the
//! destination's configuration, bumps `VersionId`, makes the stream's config
//! from the result through the same checks as a create, and restarts the
//! delivery on the same log (drained first, so nothing acknowledged is lost
//! or delivered twice). Tags only rewrite the request. Streams of the
//! configuration file are changed there, not through the API.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{check_name, lookup};
use crate::aws::ACCOUNT;
use crate::config::firehose::{RequestError, destination_config, stream_from_request};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::streams::{Origin, RegistryError, StreamEntry};

/// Tags a delivery stream may have (Firehose's limit).
pub const TAGS_MAX: usize = 50;
/// The one destination id a stream's destination has.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// The version id of a stream's request (1 until updated).
pub fn version(request: Option<&Value>) -> u64 {
    request
        .and_then(|r| r.get("VersionId"))
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// When the stream's destination was last updated, if ever (epoch ms).
pub fn last_update_ms(request: Option<&Value>) -> Option<i64> {
    request?.get("LastUpdateMs")?.as_i64()
}

/// The stream named by the request, if the API may change it.
pub(super) fn changeable(
    state: &AppState,
    body: &Value,
) -> Result<std::sync::Arc<StreamEntry>, ApiError> {
    let mut v = Vec::new();
    let name = check_name(body.get("DeliveryStreamName"), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let entry = lookup(state, &name)?;
    if entry.origin == Origin::Yaml {
        return Err(ApiError::in_use(format!(
            "Firehose {name} is defined in the configuration file; change it there"
        )));
    }
    Ok(entry)
}

pub(super) fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(n) => {
            ApiError::not_found(format!("Firehose {n} under account {ACCOUNT} not found."))
        }
        RegistryError::Request(RequestError::Validation(v)) => ApiError::validation(&v),
        other => ApiError::invalid_argument(other.to_string()),
    }
}

/// The update configurations `UpdateDestination` takes, and the
/// configuration each merges into.
const UPDATES: &[(&str, &[&str])] = &[
    (
        "ExtendedS3DestinationUpdate",
        &[
            "ExtendedS3DestinationConfiguration",
            "S3DestinationConfiguration",
        ],
    ),
    (
        "S3DestinationUpdate",
        &[
            "S3DestinationConfiguration",
            "ExtendedS3DestinationConfiguration",
        ],
    ),
    (
        "IcebergDestinationUpdate",
        &["IcebergDestinationConfiguration"],
    ),
    (
        "HttpEndpointDestinationUpdate",
        &["HttpEndpointDestinationConfiguration"],
    ),
    (
        "RedshiftDestinationUpdate",
        &["RedshiftDestinationConfiguration"],
    ),
];

pub(super) async fn update_destination(state: &AppState, body: &Value) -> Result<Value, ApiError> {
    let entry = changeable(state, body)?;
    let name = entry.config.name.clone();
    let current = entry.request().unwrap_or_default();
    let given = body
        .get("CurrentDeliveryStreamVersionId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation(&["Value null at 'currentDeliveryStreamVersionId' failed to satisfy constraint: Member must not be null".into()]))?;
    match body.get("DestinationId").and_then(Value::as_str) {
        Some(DESTINATION_ID) => {}
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "Destination {other} of Firehose {name} not found; its destination is {DESTINATION_ID}"
            )));
        }
        None => {
            return Err(ApiError::validation(&["Value null at 'destinationId' failed to satisfy constraint: Member must not be null".into()]));
        }
    }
    let version = version(Some(&current));
    if given != version.to_string() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ConcurrentModificationException",
            format!(
                "Firehose {name} is at version {version}, not {given}: describe it again and retry"
            ),
        ));
    }
    let present: Vec<&str> = body
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| k.ends_with("DestinationUpdate"))
        .map(String::as_str)
        .collect();
    let [update_key] = present.as_slice() else {
        return Err(ApiError::invalid_argument(
            "Exactly one destination update is required",
        ));
    };
    let Some((_, targets)) = UPDATES.iter().find(|(k, _)| k == update_key) else {
        return Err(ApiError::invalid_argument(format!(
            "{update_key} is not supported by Hydrant (ExtendedS3DestinationUpdate, S3DestinationUpdate, HttpEndpointDestinationUpdate, IcebergDestinationUpdate, RedshiftDestinationUpdate)"
        )));
    };
    let (dest_key, _) = destination_config(&current).ok_or_else(|| {
        ApiError::invalid_argument(format!("Firehose {name} has no destination to update"))
    })?;
    if !targets.contains(&dest_key) {
        return Err(ApiError::invalid_argument(format!(
            "{update_key} cannot update Firehose {name}, whose destination is {dest_key}"
        )));
    }
    let mut next = current.clone();
    if let (Some(dest), Some(Value::Object(u))) = (
        next.get_mut(dest_key).and_then(Value::as_object_mut),
        body.get(*update_key),
    ) {
        merge(dest, u);
    }
    if let Some(o) = next.as_object_mut() {
        o.insert("VersionId".into(), json!((version + 1).to_string()));
        o.insert(
            "LastUpdateMs".into(),
            json!(chrono::Utc::now().timestamp_millis()),
        );
    }
    let cfg =
        stream_from_request(&name, &next, &state.registry.config).map_err(super::request_error)?;
    state
        .registry
        .update(cfg, next)
        .await
        .map_err(registry_error)?;
    tracing::info!(stream = name, version = version + 1, "destination updated");
    Ok(json!({}))
}

/// An update's fields over the configuration's: each given field replaces
/// the configuration's whole (as Firehose's updates do), except the nested
/// `S3Update` and `S3BackupUpdate`, whose fields replace those of the
/// `S3Configuration` and `S3BackupConfiguration` they update.
fn merge(dest: &mut Map<String, Value>, update: &Map<String, Value>) {
    for (k, v) in update {
        if v.is_null() {
            continue;
        }
        let nested = match k.as_str() {
            "S3Update" => "S3Configuration",
            "S3BackupUpdate" => "S3BackupConfiguration",
            _ => {
                dest.insert(k.clone(), v.clone());
                continue;
            }
        };
        match (dest.get_mut(nested), v) {
            (Some(Value::Object(d)), Value::Object(u)) => merge(d, u),
            _ => {
                dest.insert(nested.into(), v.clone());
            }
        }
    }
}

/// The stream's tags as Firehose lists them: `[{Key, Value}]`.
fn tags_of(request: &Value) -> Vec<(String, String)> {
    request
        .get("Tags")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            let k = t.get("Key")?.as_str()?.to_string();
            let v = t
                .get("Value")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some((k, v))
        })
        .collect()
}

fn tag_list(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect(),
    )
}

/// A tag's key and value, checked as Firehose's model checks them.
fn check_tag(t: &Value, i: usize) -> Result<(String, String), ApiError> {
    let key = t.get("Key").and_then(Value::as_str).ok_or_else(|| {
        ApiError::validation(&[format!(
            "Value null at 'tags.{i}.member.key' failed to satisfy constraint: Member must not be null"
        )])
    })?;
    let value = t.get("Value").and_then(Value::as_str).unwrap_or("");
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@%".contains(c);
    if key.is_empty()
        || key.chars().count() > 128
        || key.starts_with("aws:")
        || !key.chars().all(allowed)
    {
        return Err(ApiError::validation(&[format!(
            "Value '{key}' at 'tags.{i}.member.key' failed to satisfy constraint: Member must have length between 1 and 128 and satisfy regular expression pattern: ^(?!aws:)[\\p{{L}}\\p{{Z}}\\p{{N}}_.:\\/=+\\-@%]*$"
        )]));
    }
    if value.chars().count() > 256 || !value.chars().all(allowed) {
        return Err(ApiError::validation(&[format!(
            "Value '{value}' at 'tags.{i}.member.value' failed to satisfy constraint: Member must have length less than or equal to 256 and satisfy regular expression pattern: ^[\\p{{L}}\\p{{Z}}\\p{{N}}_.:\\/=+\\-@%]*$"
        )]));
    }
    Ok((key.to_string(), value.to_string()))
}

/// A `CreateDeliveryStream` request's `Tags`, checked.
pub(super) fn check_create_tags(req: &Value) -> Result<(), ApiError> {
    let Some(tags) = req.get("Tags").filter(|t| !t.is_null()) else {
        return Ok(());
    };
    let list = tags.as_array().map(Vec::as_slice).unwrap_or_default();
    if !(1..=TAGS_MAX).contains(&list.len()) {
        return Err(ApiError::validation(&[format!(
            "Value at 'tags' failed to satisfy constraint: Member must have length between 1 and {TAGS_MAX}"
        )]));
    }
    for (i, t) in list.iter().enumerate() {
        check_tag(t, i + 1)?;
    }
    Ok(())
}

pub(super) async fn tag(state: &AppState, body: &Value) -> Result<Value, ApiError> {
    let entry = changeable(state, body)?;
    let given = body
        .get("Tags")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !(1..=TAGS_MAX).contains(&given.len()) {
        return Err(ApiError::validation(&[format!(
            "Value at 'tags' failed to satisfy constraint: Member must have length between 1 and {TAGS_MAX}"
        )]));
    }
    let mut tags = tags_of(&entry.request().unwrap_or_default());
    for (i, t) in given.iter().enumerate() {
        let (k, v) = check_tag(t, i + 1)?;
        match tags.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => tags.push((k, v)),
        }
    }
    if tags.len() > TAGS_MAX {
        return Err(ApiError::limit_exceeded(format!(
            "Firehose {} would have {} tags; at most {TAGS_MAX} are allowed",
            entry.config.name,
            tags.len()
        )));
    }
    set_tags(state, &entry, &tags).await
}

pub(super) async fn untag(state: &AppState, body: &Value) -> Result<Value, ApiError> {
    let entry = changeable(state, body)?;
    let keys: Vec<&str> = body
        .get("TagKeys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !(1..=TAGS_MAX).contains(&keys.len()) {
        return Err(ApiError::validation(&[format!(
            "Value at 'tagKeys' failed to satisfy constraint: Member must have length between 1 and {TAGS_MAX}"
        )]));
    }
    let mut tags = tags_of(&entry.request().unwrap_or_default());
    tags.retain(|(k, _)| !keys.contains(&k.as_str()));
    set_tags(state, &entry, &tags).await
}

async fn set_tags(
    state: &AppState,
    entry: &StreamEntry,
    tags: &[(String, String)],
) -> Result<Value, ApiError> {
    let mut request = entry.request().unwrap_or_default();
    if let Some(o) = request.as_object_mut() {
        o.insert("Tags".into(), tag_list(tags));
    }
    state
        .registry
        .retag(&entry.config.name, request)
        .await
        .map_err(registry_error)?;
    Ok(json!({}))
}

pub(super) fn list_tags(state: &AppState, body: &Value) -> Result<Value, ApiError> {
    let mut v = Vec::new();
    let name = check_name(body.get("DeliveryStreamName"), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let entry = lookup(state, &name)?;
    let limit = match body.get("Limit").filter(|l| !l.is_null()) {
        None => TAGS_MAX,
        Some(l) => match l.as_u64() {
            Some(n) if (1..=TAGS_MAX as u64).contains(&n) => n as usize,
            _ => {
                return Err(ApiError::validation(&[format!(
                    "Value '{l}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {TAGS_MAX}"
                )]));
            }
        },
    };
    let tags = tags_of(&entry.request().unwrap_or_default());
    let start = body.get("ExclusiveStartTagKey").and_then(Value::as_str);
    let from = match start {
        Some(k) => tags
            .iter()
            .position(|(key, _)| key == k)
            .map_or(tags.len(), |i| i + 1),
        None => 0,
    };
    let rest = &tags[from.min(tags.len())..];
    let page = &rest[..rest.len().min(limit)];
    Ok(json!({ "Tags": tag_list(page), "HasMoreTags": rest.len() > page.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_s3_updates_change_only_their_fields_and_other_fields_replace_whole() {
        let mut dest = json!({
            "S3Configuration": { "BucketARN": "arn:aws:s3:::a", "ErrorOutputPrefix": "e/" },
            "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 60 },
        });
        let update = json!({
            "S3Update": { "ErrorOutputPrefix": "e2/" },
            "S3BackupUpdate": { "BucketARN": "arn:aws:s3:::b" },
            "BufferingHints": { "SizeInMBs": 2 },
            "Prefix": null,
        });
        if let (Some(d), Some(u)) = (dest.as_object_mut(), update.as_object()) {
            merge(d, u);
        }
        assert_eq!(
            dest,
            json!({
                "S3Configuration": { "BucketARN": "arn:aws:s3:::a", "ErrorOutputPrefix": "e2/" },
                "S3BackupConfiguration": { "BucketARN": "arn:aws:s3:::b" },
                "BufferingHints": { "SizeInMBs": 2 },
            })
        );
    }
}
