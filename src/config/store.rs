//! Object stores: `object_store` (where the buckets of API-created streams
//! live) and the store each `s3` or `file` destination resolves to, with its
//! endpoint, region and credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawDestination, RawStore};
use super::{ConfigError, err, range_check};

/// An object store with the settings needed to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// A local directory; buckets are folders below `root`.
    File {
        root: PathBuf,
    },
    S3(S3Store),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Store {
    /// None: AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    /// None: from the standard AWS environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub path_style: bool,
    pub allow_http: bool,
    /// One request, from connecting to the last byte of the answer; a
    /// request that takes longer fails and is retried. Default 120 s.
    pub timeout: Duration,
    /// Connecting alone. Default 5 s.
    pub connect_timeout: Duration,
}

/// `timeout_secs` when none is given: long enough for a 128 MiB object at
/// about 1 MiB/s, short enough that a stalled connection holds a shard's
/// delivery for two minutes at most.
const TIMEOUT_SECS: u64 = 120;
const CONNECT_TIMEOUT_SECS: u64 = 5;

/// `path.field` in seconds, checked against 1..=`max`, if given.
fn seconds(
    errors: &mut Vec<ConfigError>,
    path: &str,
    field: &str,
    max: u64,
    secs: Option<u64>,
) -> Option<Duration> {
    secs.map(|v| Duration::from_secs(range_check(errors, &format!("{path}.{field}"), v, 1, max)))
}

fn timeout(errors: &mut Vec<ConfigError>, path: &str, secs: Option<u64>) -> Option<Duration> {
    seconds(errors, path, "timeout_secs", 3_600, secs)
}

fn connect_timeout(
    errors: &mut Vec<ConfigError>,
    path: &str,
    secs: Option<u64>,
) -> Option<Duration> {
    seconds(errors, path, "connect_timeout_secs", 300, secs)
}

pub(super) fn store_config(
    errors: &mut Vec<ConfigError>,
    path: &str,
    s: &RawStore,
    data_dir: &Path,
) -> StoreConfig {
    match s.kind.as_deref().unwrap_or("file") {
        "file" => {
            for (field, set) in [
                ("endpoint", s.endpoint.is_some()),
                ("region", s.region.is_some()),
                ("access_key_id", s.access_key_id.is_some()),
                ("timeout_secs", s.timeout_secs.is_some()),
                ("connect_timeout_secs", s.connect_timeout_secs.is_some()),
            ] {
                if set {
                    errors.push(err(format!("{path}.{field}"), "applies only to `type: s3`"));
                }
            }
            StoreConfig::File {
                root: s
                    .root
                    .as_deref()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| data_dir.join("buckets")),
            }
        }
        "s3" => {
            if s.root.is_some() {
                errors.push(err(format!("{path}.root"), "applies only to `type: file`"));
            }
            StoreConfig::S3(s3_store(errors, path, s))
        }
        other => {
            errors.push(err(
                format!("{path}.type"),
                format!("`{other}` is not a store type (s3, file)"),
            ));
            StoreConfig::File {
                root: data_dir.join("buckets"),
            }
        }
    }
}

pub(super) fn s3_store(errors: &mut Vec<ConfigError>, path: &str, s: &RawStore) -> S3Store {
    if let Some(ep) = &s.endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        errors.push(err(
            format!("{path}.endpoint"),
            format!("`{ep}` must start with http:// or https://"),
        ));
    }
    if s.access_key_id.is_some() != s.secret_access_key.is_some() {
        errors.push(err(
            path,
            "access_key_id and secret_access_key must be given together",
        ));
    }
    S3Store {
        endpoint: s.endpoint.clone(),
        region: s.region.clone().unwrap_or_else(|| "us-east-1".into()),
        access_key_id: s.access_key_id.clone(),
        secret_access_key: s.secret_access_key.clone(),
        session_token: s.session_token.clone(),
        path_style: s.path_style.unwrap_or(s.endpoint.is_some()),
        allow_http: s.allow_http.unwrap_or_else(|| {
            s.endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
        }),
        timeout: timeout(errors, path, s.timeout_secs).unwrap_or(Duration::from_secs(TIMEOUT_SECS)),
        connect_timeout: connect_timeout(errors, path, s.connect_timeout_secs)
            .unwrap_or(Duration::from_secs(CONNECT_TIMEOUT_SECS)),
    }
}

/// The store of an `s3` destination: the default store when it is S3 and
/// the destination overrides nothing, else the default with the
/// destination's endpoint, region, credentials or timeouts in place of its
/// own.
pub(super) fn s3_destination_store(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
    default_store: &StoreConfig,
) -> StoreConfig {
    let overrides = RawStore {
        kind: Some("s3".into()),
        root: None,
        endpoint: d.endpoint.clone(),
        region: d.region.clone(),
        access_key_id: d.access_key_id.clone(),
        secret_access_key: d.secret_access_key.clone(),
        session_token: d.session_token.clone(),
        path_style: d.path_style,
        allow_http: d.allow_http,
        timeout_secs: None,
        connect_timeout_secs: None,
    };
    let any_override = d.endpoint.is_some() || d.region.is_some() || d.access_key_id.is_some();
    let mut store = match (default_store, any_override) {
        (StoreConfig::S3(base), false) => base.clone(),
        (StoreConfig::S3(base), true) => {
            let mut s = s3_store(errors, path, &overrides);
            if d.endpoint.is_none() {
                s.endpoint = base.endpoint.clone();
                s.path_style = d.path_style.unwrap_or(base.path_style);
                s.allow_http = d.allow_http.unwrap_or(base.allow_http);
            }
            if d.access_key_id.is_none() {
                s.access_key_id = base.access_key_id.clone();
                s.secret_access_key = base.secret_access_key.clone();
                s.session_token = base.session_token.clone();
            }
            if d.region.is_none() {
                s.region = base.region.clone();
            }
            s.timeout = base.timeout;
            s.connect_timeout = base.connect_timeout;
            s
        }
        (StoreConfig::File { .. }, _) => s3_store(errors, path, &overrides),
    };
    if let Some(t) = timeout(errors, path, d.timeout_secs) {
        store.timeout = t;
    }
    if let Some(t) = connect_timeout(errors, path, d.connect_timeout_secs) {
        store.connect_timeout = t;
    }
    StoreConfig::S3(store)
}
