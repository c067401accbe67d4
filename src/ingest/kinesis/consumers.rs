//! Enhanced fan-out's consumer operations: `RegisterStreamConsumer`,
//! `DescribeStreamConsumer`, `ListStreamConsumers` and
//! `DeregisterStreamConsumer`. A consumer is named by its ARN, or by its
//! stream's ARN and its name (both may be given if they agree).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Req, decode_token, encode_token, from_kinesis, missing, not_found, seconds, violation,
};
use crate::aws::{self, ACCOUNT};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::KinesisStream;
use crate::kinesis::consumers::Consumer;

fn consumer_json(c: &Consumer) -> Value {
    json!({
        "ConsumerName": c.name,
        "ConsumerARN": c.arn,
        "ConsumerStatus": c.status.as_str(),
        "ConsumerCreationTimestamp": seconds(c.created_ms),
    })
}

fn check_consumer_name(name: &str) -> Result<(), ApiError> {
    if !aws::valid_consumer_name(name) {
        return Err(violation(
            "consumerName",
            name,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
        ));
    }
    Ok(())
}

/// The stream a `StreamARN` field names (required here).
fn stream_by_arn(state: &AppState, req: &Req<'_>) -> Result<Arc<KinesisStream>, ApiError> {
    let arn = req.str("StreamARN")?.ok_or_else(|| missing("streamARN"))?;
    let name = aws::kinesis_stream_from_arn(arn).ok_or_else(|| {
        violation(
            "streamARN",
            arn,
            "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
        )
    })?;
    state
        .registry
        .kinesis
        .get(name)
        .ok_or_else(|| not_found(name))
}

fn consumer_not_found(stream: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "Consumer {name} under stream {stream} under account {ACCOUNT} not found."
    ))
}

/// The consumer a request names: by `ConsumerARN`, or by `StreamARN` and
/// `ConsumerName`; with its stream.
pub(super) fn named_consumer(
    state: &AppState,
    req: &Req<'_>,
) -> Result<(Arc<KinesisStream>, Consumer), ApiError> {
    let activation = state.registry.kinesis.fan_out_limits().activation;
    if let Some(arn) = req.str("ConsumerARN")? {
        let (stream, name, secs) = aws::consumer_from_arn(arn).ok_or_else(|| {
            violation(
                "consumerARN",
                arn,
                "Member must satisfy regular expression pattern: ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+",
            )
        })?;
        let given_stream = req.str("StreamARN")?.map(aws::kinesis_stream_from_arn);
        let given_name = req.str("ConsumerName")?;
        if given_stream.is_some_and(|g| g != Some(stream)) || given_name.is_some_and(|g| g != name)
        {
            return Err(ApiError::invalid_argument(
                "ConsumerARN names another consumer than StreamARN and ConsumerName",
            ));
        }
        let s = state
            .registry
            .kinesis
            .get(stream)
            .ok_or_else(|| not_found(stream))?;
        // A consumer registered again under the same name is another one.
        let c = s
            .consumer(name, activation)
            .filter(|c| c.created_ms / 1000 == secs)
            .ok_or_else(|| consumer_not_found(stream, name))?;
        return Ok((s, c));
    }
    let name = req.str("ConsumerName")?.ok_or_else(|| {
        ApiError::invalid_argument(
            "Either ConsumerARN or StreamARN and ConsumerName must be given.",
        )
    })?;
    let s = stream_by_arn(state, req)?;
    let c = s
        .consumer(name, activation)
        .ok_or_else(|| consumer_not_found(&s.name, name))?;
    Ok((s, c))
}

pub(super) fn register(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = stream_by_arn(state, &req)?;
    let name = req.required_str("ConsumerName", "consumerName")?;
    check_consumer_name(name)?;
    let c = s
        .register_consumer(name, state.registry.kinesis.fan_out_limits())
        .map_err(from_kinesis)?;
    tracing::info!(stream = s.name, consumer = name, "consumer registered");
    Ok(json!({ "Consumer": consumer_json(&c) }))
}

pub(super) fn describe(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let (s, c) = named_consumer(state, &req)?;
    let mut d = consumer_json(&c);
    if let Some(o) = d.as_object_mut() {
        o.insert(
            "StreamARN".into(),
            Value::String(aws::kinesis_stream_arn(&s.name)),
        );
    }
    Ok(json!({ "ConsumerDescription": d }))
}

pub(super) fn list(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = stream_by_arn(state, &req)?;
    let limit = req.int_in("MaxResults", "maxResults", 1, 10_000, 100)? as usize;
    let after = match req.str("NextToken")? {
        Some(t) => Some(decode_token(t, "ListStreamConsumers")?.0),
        None => None,
    };
    let all: Vec<Consumer> = s
        .consumers(state.registry.kinesis.fan_out_limits().activation)
        .into_iter()
        .filter(|c| after.as_ref().is_none_or(|a| &c.name > a))
        .collect();
    let page = &all[..all.len().min(limit)];
    let mut out = json!({ "Consumers": page.iter().map(consumer_json).collect::<Vec<_>>() });
    if all.len() > page.len()
        && let (Some(last), Some(o)) = (page.last(), out.as_object_mut())
    {
        o.insert(
            "NextToken".into(),
            Value::String(encode_token(&last.name, "ListStreamConsumers")),
        );
    }
    Ok(out)
}

pub(super) fn deregister(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let (s, c) = named_consumer(state, &req)?;
    s.deregister_consumer(&c.name).map_err(from_kinesis)?;
    tracing::info!(stream = s.name, consumer = c.name, "consumer deregistered");
    Ok(json!({}))
}
