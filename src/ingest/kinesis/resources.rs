//! Operations on any Kinesis resource by ARN: `TagResource`,
//! `UntagResource`, `ListTagsForResource` (streams, enhanced fan-out
//! consumers, queues and channels, at most 50 tags each), and
//! `PutResourcePolicy`, `GetResourcePolicy`, `DeleteResourcePolicy`
//! (streams, consumers and queues; a policy is stored and returned, and
//! enforced once per-key permissions exist).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Req, from_kinesis, missing, not_found, violation};
use crate::aws::{self, ACCOUNT};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::{self, KinesisError, KinesisStream};
use crate::streams::{Origin, StreamEntry};

/// What an ARN names.
enum Resource {
    Stream(Arc<KinesisStream>),
    Consumer(Arc<KinesisStream>, String),
    Queue(Arc<kinesis::queues::Queue>),
    Channel(Arc<StreamEntry>),
}

fn resource(state: &AppState, req: &Req<'_>) -> Result<Resource, ApiError> {
    let arn = req
        .str("ResourceARN")?
        .ok_or_else(|| missing("resourceARN"))?;
    let streams = &state.registry.kinesis;
    if let Some((stream, consumer, _)) = aws::consumer_from_arn(arn) {
        let s = streams.get(stream).ok_or_else(|| not_found(stream))?;
        if !s.spec().consumers.iter().any(|c| c.name == consumer) {
            return Err(ApiError::not_found(format!(
                "Consumer {consumer} under stream {stream} under account {ACCOUNT} not found."
            )));
        }
        return Ok(Resource::Consumer(s, consumer.to_string()));
    }
    if let Some(stream) = aws::kinesis_stream_from_arn(arn) {
        return streams
            .get(stream)
            .map(Resource::Stream)
            .ok_or_else(|| not_found(stream));
    }
    if let Some(channel) = aws::channel_from_arn(arn) {
        return state
            .registry
            .get(channel)
            .filter(|e| e.origin == Origin::Channel)
            .map(Resource::Channel)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Channel {channel} under account {ACCOUNT} not found."
                ))
            });
    }
    if arn.contains(":queue/") {
        return super::queues::by_arn(state, arn, "resourceARN").map(Resource::Queue);
    }
    Err(violation(
        "resourceARN",
        arn,
        "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:.*(stream|channel|queue)/\\S+",
    ))
}

/// A registered consumer's definition, to change it.
fn consumer_mut<'a>(
    spec: &'a mut kinesis::Spec,
    name: &str,
) -> Result<&'a mut kinesis::consumers::ConsumerSpec, KinesisError> {
    spec.consumers
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| KinesisError::ResourceNotFound(format!("Consumer {name} not found.")))
}

/// A channel's tags: its request's `Tags` map.
fn channel_tags(e: &StreamEntry) -> BTreeMap<String, String> {
    e.request()
        .and_then(|r| r.get("Tags").cloned())
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default()
}

/// Applies `f` to the resource's tags, refusing more than 50.
async fn change_tags(
    state: &AppState,
    r: Resource,
    f: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(), ApiError> {
    let limit = |tags: &BTreeMap<String, String>| {
        if tags.len() > kinesis::TAGS_MAX {
            return Err(KinesisError::Limit(format!(
                "A resource may have at most {} tags; this would give it {}",
                kinesis::TAGS_MAX,
                tags.len()
            )));
        }
        Ok(())
    };
    match r {
        Resource::Stream(s) => s
            .update(|spec| {
                f(&mut spec.tags);
                limit(&spec.tags)
            })
            .map_err(from_kinesis),
        Resource::Consumer(s, name) => s
            .update(|spec| {
                let c = consumer_mut(spec, &name)?;
                f(&mut c.tags);
                limit(&c.tags)
            })
            .map_err(from_kinesis),
        Resource::Queue(q) => q
            .change(|def| {
                f(&mut def.tags);
                limit(&def.tags)
            })
            .map(|_| ())
            .map_err(from_kinesis),
        Resource::Channel(e) => {
            let mut tags = channel_tags(&e);
            f(&mut tags);
            limit(&tags).map_err(from_kinesis)?;
            let mut request = e.request().unwrap_or_default();
            request["Tags"] = json!(tags);
            state
                .registry
                .retag(&e.config.name, request)
                .await
                .map_err(|err| ApiError::invalid_argument(err.to_string()))
        }
    }
}

pub(super) async fn tag(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let r = resource(state, &req)?;
    let tags = match req.0.get("Tags") {
        None | Some(Value::Null) => return Err(missing("tags")),
        Some(t) => super::tags::tag_map(t, "Tags")?,
    };
    if tags.is_empty() {
        return Err(violation(
            "tags",
            "{}",
            "Member must have length greater than or equal to 1",
        ));
    }
    change_tags(state, r, |t| t.extend(tags)).await?;
    Ok(json!({}))
}

pub(super) async fn untag(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let r = resource(state, &req)?;
    let keys: Vec<String> = match req.0.get("TagKeys") {
        Some(Value::Array(a)) if (1..=50).contains(&a.len()) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Array(a)) => {
            return Err(violation(
                "tagKeys",
                a.len(),
                "Member must have length between 1 and 50",
            ));
        }
        _ => return Err(missing("tagKeys")),
    };
    change_tags(state, r, |t| {
        for k in &keys {
            t.remove(k);
        }
    })
    .await?;
    Ok(json!({}))
}

pub(super) fn list_tags(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let tags = match resource(state, &req)? {
        Resource::Stream(s) => s.spec().tags,
        Resource::Consumer(s, name) => s
            .spec()
            .consumers
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.tags)
            .unwrap_or_default(),
        Resource::Queue(q) => q.def().tags,
        Resource::Channel(e) => channel_tags(&e),
    };
    let list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v }))
        .collect();
    Ok(json!({ "Tags": list }))
}

/// A policy document: a JSON object with a `Statement`, at most 20 KiB.
fn check_policy(p: &str) -> Result<(), ApiError> {
    if p.len() > 20 * 1024 {
        return Err(ApiError::invalid_argument("Policy is larger than 20 KiB"));
    }
    let v: Value = serde_json::from_str(p)
        .map_err(|e| ApiError::invalid_argument(format!("Policy is not valid JSON: {e}")))?;
    if !v
        .get("Statement")
        .is_some_and(|s| s.is_array() || s.is_object())
    {
        return Err(ApiError::invalid_argument(
            "Policy must be an IAM policy document with a Statement",
        ));
    }
    Ok(())
}

/// Sets (Some) or removes (None) the resource's policy.
fn set_policy(r: Resource, policy: Option<String>) -> Result<(), ApiError> {
    match r {
        Resource::Stream(s) => s
            .update(|spec| {
                spec.settings.policy = policy;
                Ok(())
            })
            .map_err(from_kinesis),
        Resource::Consumer(s, name) => s
            .update(|spec| {
                let c = consumer_mut(spec, &name)?;
                c.policy = policy;
                Ok(())
            })
            .map_err(from_kinesis),
        Resource::Queue(q) => q
            .change(|def| {
                def.policy = policy;
                Ok(())
            })
            .map(|_| ())
            .map_err(from_kinesis),
        Resource::Channel(_) => Err(ApiError::invalid_argument(
            "Resource policies apply to streams, consumers and queues, not channels",
        )),
    }
}

pub(super) fn put_policy(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let r = resource(state, &req)?;
    let policy = req.str("Policy")?.ok_or_else(|| missing("policy"))?;
    check_policy(policy)?;
    set_policy(r, Some(policy.to_string()))?;
    Ok(json!({}))
}

pub(super) fn delete_policy(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let r = resource(state, &req)?;
    set_policy(r, None)?;
    Ok(json!({}))
}

pub(super) fn get_policy(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let policy = match resource(state, &req)? {
        Resource::Stream(s) => s.spec().settings.policy,
        Resource::Consumer(s, name) => s
            .spec()
            .consumers
            .into_iter()
            .find(|c| c.name == name)
            .and_then(|c| c.policy),
        Resource::Queue(q) => q.def().policy,
        Resource::Channel(_) => None,
    };
    Ok(json!({ "Policy": policy.unwrap_or_else(|| "{}".into()) }))
}
