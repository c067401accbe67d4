//! A stream's tags: `AddTagsToStream`, `RemoveTagsFromStream`,
//! `ListTagsForStream`, and the check of a tag map that `CreateStream` also
//! uses.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Req, from_kinesis, missing, violation};
use crate::aws::ACCOUNT;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::{self, KinesisError};

/// Tags as Kinesis takes them: a map of key to value.
pub(super) fn tag_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Value::Object(m) = v else {
        return Err(ApiError::serialization(format!(
            "'{field}' must be a map of tag keys to values"
        )));
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        check_tag_key(k)?;
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => {
                return Err(ApiError::serialization(format!(
                    "the value of tag {k} must be a string, not {other}"
                )));
            }
        };
        if v.chars().count() > 256 {
            return Err(ApiError::invalid_argument(format!(
                "the value of tag {k} is longer than 256 characters"
            )));
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

fn check_tag_key(k: &str) -> Result<(), ApiError> {
    if k.is_empty() || k.chars().count() > 128 {
        return Err(ApiError::invalid_argument(format!(
            "tag key '{k}' must be 1 to 128 characters"
        )));
    }
    if k.starts_with("aws:") {
        return Err(ApiError::invalid_argument(format!(
            "tag key '{k}' uses the reserved prefix aws:"
        )));
    }
    Ok(())
}

pub(super) fn add_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let tags = match req.0.get("Tags") {
        None | Some(Value::Null) => return Err(missing("tags")),
        Some(t) => tag_map(t, "Tags")?,
    };
    if tags.is_empty() {
        return Err(violation(
            "tags",
            "{}",
            "Member must have length greater than or equal to 1",
        ));
    }
    s.update(|spec| {
        let mut next = spec.tags.clone();
        next.extend(tags);
        if next.len() > kinesis::TAGS_MAX {
            return Err(KinesisError::Limit(format!(
                "Failed to add tags to stream {} under account {ACCOUNT} because a given stream cannot have more than {} tags.",
                spec.name,
                kinesis::TAGS_MAX
            )));
        }
        spec.tags = next;
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}

pub(super) fn remove_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let keys: Vec<String> = match req.0.get("TagKeys") {
        None | Some(Value::Null) => return Err(missing("tagKeys")),
        Some(Value::Array(a)) => a
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::serialization("'TagKeys' must be a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::serialization("'TagKeys' must be a list")),
    };
    s.update(|spec| {
        for k in &keys {
            spec.tags.remove(k);
        }
        Ok(())
    })
    .map_err(from_kinesis)?;
    Ok(json!({}))
}

pub(super) fn list_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let limit = req.int_in("Limit", "limit", 1, 50, 50)? as usize;
    let start = req.str("ExclusiveStartTagKey")?;
    let tags: Vec<(String, String)> = s
        .spec()
        .tags
        .into_iter()
        .filter(|(k, _)| start.is_none_or(|st| k.as_str() > st))
        .collect();
    let more = tags.len() > limit;
    Ok(json!({
        "Tags": tags.iter().take(limit).map(|(k, v)| json!({ "Key": k, "Value": v })).collect::<Vec<_>>(),
        "HasMoreTags": more,
    }))
}
