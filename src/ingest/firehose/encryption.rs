//! `StartDeliveryStreamEncryption` and `StopDeliveryStreamEncryption`: a
//! delivery stream's log sealed at rest from now on, or in clear again, and
//! how `DescribeDeliveryStream` reports it. The change takes effect at once
//! (the status is `ENABLED` or `DISABLED` when the call returns); records
//! already in the log stay as they were written and are delivered as usual.

use serde_json::{Value, json};

use super::manage::{changeable, registry_error};
use crate::config::{Source, at_rest, firehose};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::log::seal::BUILTIN_KEY;
use crate::streams::StreamEntry;

const INPUT: &str = "DeliveryStreamEncryptionConfigurationInput";

/// `DeliveryStreamEncryptionConfiguration` of a description.
pub(super) fn description(entry: &StreamEntry) -> Value {
    let key = match entry.config.source {
        Source::DirectPut => entry.log.sealing_key(),
        // Its records are the Kinesis stream's, encrypted (or not) there.
        Source::Kinesis { .. } => None,
    };
    match key {
        None => json!({ "Status": "DISABLED" }),
        Some(id) if id == BUILTIN_KEY => json!({ "KeyType": "AWS_OWNED_CMK", "Status": "ENABLED" }),
        Some(id) => json!({
            "KeyARN": at_rest::kms_key_arn(&id),
            "KeyType": "CUSTOMER_MANAGED_CMK",
            "Status": "ENABLED",
        }),
    }
}

pub(super) async fn start(state: &AppState, body: &Value) -> Result<Value, ApiError> {
    let entry = changeable(state, body)?;
    let input = match body.get(INPUT) {
        None | Some(Value::Null) => json!({ "KeyType": "AWS_OWNED_CMK" }),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(ApiError::serialization(format!(
                "{INPUT} must be an object"
            )));
        }
    };
    let mut next = entry.request().unwrap_or_default();
    if let Some(o) = next.as_object_mut() {
        o.insert(INPUT.into(), input);
    }
    let key = firehose::log_key(&next, &entry.config.source, &state.registry.config)
        .map_err(super::request_error)?;
    let name = entry.config.name.clone();
    state
        .registry
        .reseal(&name, next, key.clone())
        .await
        .map_err(registry_error)?;
    tracing::info!(stream = name, key = ?key, "encryption at rest started");
    Ok(json!({}))
}

pub(super) async fn stop(state: &AppState, body: &Value) -> Result<Value, ApiError> {
    let entry = changeable(state, body)?;
    let mut next = entry.request().unwrap_or_default();
    if let Some(o) = next.as_object_mut() {
        o.remove(INPUT);
    }
    let name = entry.config.name.clone();
    state
        .registry
        .reseal(&name, next, None)
        .await
        .map_err(registry_error)?;
    tracing::info!(stream = name, "encryption at rest stopped");
    Ok(json!({}))
}
