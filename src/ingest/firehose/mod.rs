//! The Firehose API (AWS JSON 1.1, `X-Amz-Target: Firehose_20150804.<Op>`):
//! dispatch of each operation to its handler, and what the handlers share:
//! body parsing, the stream-name check, stream lookup, Firehose's limits.
//! Put operations answer only after the log made every record of the request
//! durable.
//!
//! The operations live next to this file: `put` (the hot path, with
//! `scan`, its one-pass reading of the common body),
//! `control` (list, describe, create, delete) and `manage` (update, tags). A `CreateDeliveryStream`
//! request is made into a stream's config by `config::firehose`.

mod control;
mod encryption;
mod manage;
mod put;
mod scan;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::aws::{self, ACCOUNT};
use crate::streams::{Origin, StreamEntry};

pub use put::{
    PutRecordBatchRequest, PutRecordRequest, parse_put_record, parse_put_record_batch,
    put_record_batch_fast_path_agrees,
};

/// Firehose's limits.
pub const RECORD_BYTES_MAX: usize = 1_024_000;
pub const BATCH_RECORDS_MAX: usize = 500;
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// An operation's answer: a value, or JSON already written (the hot path,
/// `PutRecordBatch`, writes its 500 record ids straight into the body).
pub enum Reply {
    Value(Value),
    Json(String),
    /// A CBOR body written directly (Kinesis `GetRecords` and `PutRecords`
    /// for a CBOR client).
    Cbor(Vec<u8>),
}

/// Dispatches one operation.
pub async fn dispatch(state: &AppState, op: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let value = match op {
        "PutRecord" => put::put_record(state, parse_put_record(body)?).await,
        "PutRecordBatch" => {
            return put::put_record_batch(state, parse_put_record_batch(body)?)
                .await
                .map(Reply::Json);
        }
        "ListDeliveryStreams" => control::list(state, parse(body)?),
        "DescribeDeliveryStream" => control::describe(state, parse(body)?),
        "CreateDeliveryStream" => control::create(state, body).await,
        "DeleteDeliveryStream" => control::delete(state, parse(body)?).await,
        "UpdateDestination" => manage::update_destination(state, &parse(body)?).await,
        "TagDeliveryStream" => manage::tag(state, &parse(body)?).await,
        "UntagDeliveryStream" => manage::untag(state, &parse(body)?).await,
        "ListTagsForDeliveryStream" => manage::list_tags(state, &parse(body)?),
        "StartDeliveryStreamEncryption" => encryption::start(state, &parse(body)?).await,
        "StopDeliveryStreamEncryption" => encryption::stop(state, &parse(body)?).await,
        other => Err(ApiError::unknown_operation(format!(
            "Firehose_20150804.{other} is not an operation Hydrant implements"
        ))),
    };
    value.map(Reply::Value)
}

/// How Firehose answers a request that cannot become a stream (a refused
/// `CreateDeliveryStream`, `UpdateDestination` or encryption change).
fn request_error(e: crate::config::firehose::RequestError) -> ApiError {
    match e {
        crate::config::firehose::RequestError::Validation(v) => ApiError::validation(&v),
        crate::config::firehose::RequestError::Invalid(m) => ApiError::invalid_argument(m),
        crate::config::firehose::RequestError::Kms(m) => ApiError::invalid_kms(m),
    }
}

/// Parses a request body (empty is `{}`); `T` may borrow from it. The whole
/// body must be UTF-8, as JSON is: serde_json skips a member `T` does not
/// know without looking at its bytes.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError::serialization(format!(
            "cannot parse the request body as JSON: it is not UTF-8 (byte {})",
            e.valid_up_to()
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("cannot parse the request body as JSON: {e}")))
}

/// Checks a stream name as the model does, adding violations to `v`.
fn check_name(name: Option<&Value>, v: &mut Vec<String>) -> String {
    match name {
        None | Some(Value::Null) => {
            v.push("Value null at 'deliveryStreamName' failed to satisfy constraint: Member must not be null".into());
            String::new()
        }
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > aws::DELIVERY_STREAM_NAME_CHARS_MAX {
                v.push(format!("Value '{s}' at 'deliveryStreamName' failed to satisfy constraint: Member must have length between 1 and 64"));
            } else if !aws::valid_delivery_stream_name(s) {
                v.push(format!("Value '{s}' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"));
            }
            s.clone()
        }
        Some(other) => {
            v.push(format!("Value '{other}' at 'deliveryStreamName' failed to satisfy constraint: Member must be a string"));
            String::new()
        }
    }
}

/// A delivery stream by name (a channel is not one to the Firehose API).
fn lookup(state: &AppState, name: &str) -> Result<Arc<StreamEntry>, ApiError> {
    let found = state.registry.get(name);
    found
        .filter(|e| e.origin != Origin::Channel)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Firehose {name} under account {ACCOUNT} not found."
            ))
        })
}

#[cfg(test)]
mod tests;
