//! Per-key permissions: the action and resource a request is for, checked
//! against the signing key's policy. A key without a policy may do
//! everything. A refusal is `AccessDeniedException` naming the key, the
//! action and the resource, as AWS words it, and is counted in
//! `hydrant_access_denied_requests`.

use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::aws;
use crate::config::AccessKey;
use crate::kinesis::position::ShardIterator;
use crate::metrics::Metrics;

/// Refuses the request unless `key`'s policy allows `action` on `resource`.
pub fn check(
    state: &AppState,
    key: &AccessKey,
    action: &str,
    resource: &str,
) -> Result<(), ApiError> {
    let Some(policy) = &key.policy else {
        return Ok(());
    };
    if policy.allows(action, resource) {
        return Ok(());
    }
    state
        .registry
        .metrics
        .access_denied_requests
        .get_or_create(&Metrics::operation(action))
        .inc();
    Err(ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "AccessDeniedException",
        format!(
            "User: arn:aws:iam::{}:user/{} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action",
            aws::ACCOUNT,
            key.access_key_id
        ),
    ))
}

/// Checks an API request (operation `op` of the service whose IAM prefix
/// is `service`: `kinesis`, `firehose`, `kinesisanalytics`) against `key`'s
/// policy; the body is read for its resource only when the key has a
/// policy.
pub fn request(
    state: &AppState,
    key: &AccessKey,
    service: &str,
    op: &str,
    body: &[u8],
    cbor: bool,
) -> Result<(), ApiError> {
    if key.policy.is_none() {
        return Ok(());
    }
    let resource = match service {
        "kinesis" => {
            let req = if cbor {
                super::cbor::request_to_json(body).unwrap_or_default()
            } else {
                serde_json::from_slice(body).unwrap_or_default()
            };
            kinesis_resource(&req)
        }
        "kinesisanalytics" => analytics_resource(body),
        _ => firehose_resource(body),
    };
    check(state, key, &format!("{service}:{op}"), &resource)
}

/// The resource a KinesisAnalytics request is for: its application, or `*`.
pub fn analytics_resource(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(rename = "ApplicationName")]
        name: Option<String>,
    }
    match serde_json::from_slice::<Named>(body) {
        Ok(Named { name: Some(n) }) => aws::analytics_application_arn(&n),
        _ => "*".into(),
    }
}

/// The resource a Firehose request is for: its delivery stream, or `*`.
pub fn firehose_resource(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(rename = "DeliveryStreamName")]
        name: Option<String>,
    }
    match serde_json::from_slice::<Named>(body) {
        Ok(Named { name: Some(n) }) => aws::delivery_stream_arn(&n),
        _ => "*".into(),
    }
}

/// The resource a Kinesis request is for: the consumer, queue, channel or
/// resource ARN it names, else its stream (by ARN, name or shard
/// iterator), else `*`.
pub fn kinesis_resource(req: &Value) -> String {
    let field = |k: &str| req.get(k).and_then(Value::as_str);
    for k in [
        "ConsumerARN",
        "QueueARN",
        "ChannelARN",
        "ResourceARN",
        "StreamARN",
    ] {
        if let Some(arn) = field(k) {
            return arn.to_string();
        }
    }
    if let Some(name) = field("StreamName") {
        return aws::kinesis_stream_arn(name);
    }
    if let Some(it) = field("ShardIterator").and_then(ShardIterator::decode) {
        return aws::kinesis_stream_arn(&it.stream);
    }
    // CreateQueue and CreateChannel name their stream in a list.
    if let Some(arn) = req
        .get("StreamConfigurationList")
        .and_then(|l| l.get(0))
        .and_then(|s| s.get("StreamARN"))
        .and_then(Value::as_str)
    {
        return arn.to_string();
    }
    "*".into()
}
