//! `StartStreamEncryption` and `StopStreamEncryption`: a stream's records
//! sealed at rest from now on, or stored in clear again. Records already in
//! the log stay as they were written; every configured key opens them.
//! `KeyId` may be `alias/aws/kinesis` (the built-in key), or a key of
//! `log.keys` by id, `alias/ID` or KMS key ARN.

use serde_json::{Value, json};

use super::{Req, from_kinesis, missing};
use crate::config::at_rest;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::KinesisStream;
use crate::log::seal::BUILTIN_KEY;

/// Longest `KeyId` the model allows.
const KEY_ID_CHARS_MAX: usize = 2048;

/// What `DescribeStream` and `PutRecord(s)` say of a stream's encryption:
/// (`EncryptionType`, `KeyId`).
pub(super) fn encryption_of(s: &KinesisStream) -> (&'static str, Option<String>) {
    match s.log.sealing_key() {
        None => ("NONE", None),
        Some(id) if id == BUILTIN_KEY => ("KMS", Some("alias/aws/kinesis".to_string())),
        Some(id) => ("KMS", Some(id)),
    }
}

/// The encryption fields of a stream description.
pub(super) fn describe(s: &KinesisStream, into: &mut Value) {
    let (kind, key) = encryption_of(s);
    if let Some(o) = into.as_object_mut() {
        o.insert("EncryptionType".into(), json!(kind));
        if let Some(k) = key {
            o.insert("KeyId".into(), json!(k));
        }
    }
}

fn key_of_request<'a>(req: &Req<'a>) -> Result<&'a str, ApiError> {
    match req.str("EncryptionType")? {
        Some("KMS") => {}
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "EncryptionType {other} is not valid here; the only valid value is KMS"
            )));
        }
        None => return Err(missing("encryptionType")),
    }
    let key = req.str("KeyId")?.ok_or_else(|| missing("keyId"))?;
    if key.is_empty() || key.chars().count() > KEY_ID_CHARS_MAX {
        return Err(ApiError::invalid_argument(format!(
            "KeyId must have length between 1 and {KEY_ID_CHARS_MAX}"
        )));
    }
    Ok(key)
}

pub(super) fn start(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    let requested = at_rest::key_id_of_kms(key_of_request(&req)?);
    let config = &state.registry.config;
    let id = at_rest::resolve(&config.log.keys, config.cluster.is_some(), Some(requested))
        .map_err(|m| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "KMSNotFoundException",
                m,
            )
        })?;
    s.update(|spec| {
        spec.log_key = Some(id.clone());
        Ok(())
    })
    .map_err(from_kinesis)?;
    tracing::info!(stream = s.name, key = id, "encryption at rest started");
    Ok(json!({}))
}

pub(super) fn stop(state: &AppState, req: Req<'_>) -> Result<Value, ApiError> {
    let s = req.stream(state)?;
    key_of_request(&req)?;
    s.update(|spec| {
        spec.log_key = None;
        Ok(())
    })
    .map_err(from_kinesis)?;
    tracing::info!(stream = s.name, "encryption at rest stopped");
    Ok(json!({}))
}
