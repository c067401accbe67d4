//! A video stream's definition, persisted as `stream.json` beside its log,
//! and the errors of the video stream model.

use std::collections::BTreeMap;
use std::path::Path;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::aws;
use crate::log::files::write_atomic;

/// How long fragments of a stream with no retention (`DataRetentionInHours`
/// 0) stay readable: Kinesis Video keeps such media in a short buffer only.
pub const UNRETAINED_KEEP_MS: i64 = 5 * 60 * 1000;
/// Longest retention Kinesis Video allows (ten years), in hours.
pub const RETENTION_HOURS_MAX: u32 = 87_600;
/// Tags per stream.
pub const TAGS_MAX: usize = 50;

/// What defines a video stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// As given; Hydrant's own encryption at rest is `log_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The key the log is sealed with at rest, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_key: Option<String>,
    pub retention_hours: u32,
    pub created_ms: i64,
    /// Changes with every update; updates may name the one they expect.
    pub version: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Spec {
    /// `arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME/CREATED_MS`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:kinesisvideo:{}:{}:stream/{}/{}",
            aws::REGION,
            aws::ACCOUNT,
            self.name,
            self.created_ms
        )
    }
}

/// The stream name an ARN names, if it is a video stream's.
pub fn name_from_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service) = (parts.next()?, parts.next()?);
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if service != "kinesisvideo" {
        return None;
    }
    let (name, created) = resource.strip_prefix("stream/")?.rsplit_once('/')?;
    (valid_name(name) && created.chars().all(|c| c.is_ascii_digit())).then_some(name)
}

/// Kinesis Video's stream name rule: 1-256 of `[a-zA-Z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A fresh version: 20 random letters and digits.
pub fn new_version() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Why a video stream could not be created, found, changed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("The stream {0} already exists.")]
    Exists(String),
    #[error("The stream {0} does not exist.")]
    NotFound(String),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Invalid(String),
    #[error("The stream version {given} does not match the current version {current}.")]
    Version { given: String, current: String },
    #[error("video stream {stream}: {message}")]
    Io { stream: String, message: String },
}

pub(super) fn save(path: &Path, spec: &Spec) -> Result<(), VideoError> {
    let io = |message: String| VideoError::Io {
        stream: spec.name.clone(),
        message,
    };
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| io(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|e| io(format!("cannot write {}: {e}", path.display())))
}

pub(super) fn read(path: &Path) -> Result<Option<Spec>, VideoError> {
    let io = |message: String| VideoError::Io {
        stream: path.display().to_string(),
        message,
    };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io(format!("its definition is not readable: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_stream() {
        let s = Spec {
            name: "cam-1".into(),
            device_name: None,
            media_type: None,
            kms_key_id: None,
            log_key: None,
            retention_hours: 24,
            created_ms: 1_700_000_000_000,
            version: new_version(),
            tags: BTreeMap::new(),
        };
        assert_eq!(name_from_arn(&s.arn()), Some("cam-1"));
        assert_eq!(
            name_from_arn("arn:aws:kinesis:us-east-1:1:stream/cam-1"),
            None
        );
        assert_eq!(
            name_from_arn("arn:aws:kinesisvideo:us-east-1:1:stream/cam-1/x"),
            None
        );
        assert_eq!(s.version.len(), 20);
        assert_ne!(s.version, new_version());
    }
}
