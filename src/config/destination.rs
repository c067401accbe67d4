//! Where a stream's records go: the `destination` (an `s3` or `file` bucket
//! with key templates, or an `http` or `postgres` endpoint, see [`super::http`]
//! and [`super::postgres`]), the `error_output` and the `backup`.

use std::path::PathBuf;

use super::raw::RawDestination;
use super::store::{StoreConfig, s3_destination_store};
use super::{ConfigError, HttpDestination, IcebergDestination, PostgresDestination, err};
use crate::aws;
use crate::route::keys::{self, KeyContext, KeyTemplate, PrefixKind};

/// Where a stream delivers.
#[derive(Clone, Debug)]
pub enum Destination {
    Object(Box<ObjectDestination>),
    Http(HttpDestination),
    Postgres(PostgresDestination),
    Iceberg(Box<IcebergDestination>),
}

impl Destination {
    /// The configured `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Object(o) => o.kind,
            Destination::Http(_) => "http",
            Destination::Postgres(_) => "postgres",
            Destination::Iceberg(_) => "iceberg",
        }
    }
}

/// Where a stream's objects go: a bucket on a store, with key templates.
#[derive(Clone, Debug)]
pub struct ObjectDestination {
    /// `s3` or `file`, as configured.
    pub kind: &'static str,
    pub store: StoreConfig,
    /// The bucket (s3) or the directory (file).
    pub bucket: String,
    pub prefix: KeyTemplate,
    pub error_output_prefix: KeyTemplate,
}

/// Firehose's S3 backup of source records.
#[derive(Clone, Debug)]
pub struct Backup {
    pub mode: BackupMode,
    pub target: ObjectDestination,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupMode {
    /// Every source record (Firehose's AllData).
    All,
    /// Only records that failed delivery (Firehose's FailedDataOnly).
    FailedOnly,
}

/// Reports each field that is set but means nothing for a `type: kind`.
pub(super) fn reject_fields(
    errors: &mut Vec<ConfigError>,
    path: &str,
    kind: &str,
    fields: &[(&str, bool)],
) {
    for (field, set) in fields {
        if *set {
            errors.push(err(
                format!("{path}.{field}"),
                format!("does not apply to `type: {kind}`"),
            ));
        }
    }
}

/// The key templates of an object destination: its `prefix`, parsed with
/// the partition keys it may use, and its `error_output_prefix`, required
/// when the prefix uses expressions and else Firehose's default after the
/// prefix. Errors are named by the two fields' paths. YAML and the
/// `CreateDeliveryStream` API both check their prefixes here.
pub(crate) fn object_keys(
    errors: &mut Vec<ConfigError>,
    (prefix_path, error_prefix_path): (&str, &str),
    prefix_src: &str,
    error_prefix_src: Option<&str>,
    key_ctx: KeyContext<'_>,
) -> Option<(KeyTemplate, KeyTemplate)> {
    let prefix = match KeyTemplate::parse_with(prefix_src, PrefixKind::Prefix, key_ctx) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(err(prefix_path, e));
            None
        }
    };
    let error_output_prefix = match error_prefix_src {
        Some(src) => match KeyTemplate::parse(src, PrefixKind::ErrorOutputPrefix) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(err(error_prefix_path, e));
                None
            }
        },
        None if prefix_src.contains("!{") => {
            errors.push(err(
                error_prefix_path,
                "is required when prefix uses expressions",
            ));
            None
        }
        None => Some(keys::default_error_prefix(prefix_src)),
    };
    Some((prefix?, error_output_prefix?))
}

/// An `s3` or `file` destination.
pub(super) fn object_destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: RawDestination,
    default_store: &StoreConfig,
    key_ctx: KeyContext<'_>,
) -> Option<ObjectDestination> {
    let keys = object_keys(
        errors,
        (
            &format!("{path}.prefix"),
            &format!("{path}.error_output_prefix"),
        ),
        d.prefix.as_deref().unwrap_or_default(),
        d.error_output_prefix.as_deref(),
        key_ctx,
    );
    let (kind, store, bucket): (&'static str, StoreConfig, String) = match d.kind.as_str() {
        "s3" => {
            if d.path.is_some() {
                errors.push(err(
                    format!("{path}.path"),
                    "applies only to `type: file` (s3 takes `bucket`)",
                ));
            }
            let Some(bucket) = d.bucket.clone() else {
                errors.push(err(
                    format!("{path}.bucket"),
                    "missing: an s3 destination needs a bucket",
                ));
                return None;
            };
            if !aws::valid_bucket_name(&bucket) {
                errors.push(err(
                    format!("{path}.bucket"),
                    format!("`{bucket}` is not a valid bucket name (3-63 of a-z 0-9 . -)"),
                ));
            }
            (
                "s3",
                s3_destination_store(errors, path, &d, default_store),
                bucket,
            )
        }
        "file" => {
            for (field, set) in [
                ("bucket", d.bucket.is_some()),
                ("endpoint", d.endpoint.is_some()),
                ("region", d.region.is_some()),
                ("access_key_id", d.access_key_id.is_some()),
                ("timeout_secs", d.timeout_secs.is_some()),
                ("connect_timeout_secs", d.connect_timeout_secs.is_some()),
            ] {
                if set {
                    errors.push(err(format!("{path}.{field}"), "applies only to `type: s3`"));
                }
            }
            let Some(dir) = d.path.clone() else {
                errors.push(err(
                    format!("{path}.path"),
                    "missing: a file destination needs a directory",
                ));
                return None;
            };
            (
                "file",
                StoreConfig::File {
                    root: PathBuf::from(dir),
                },
                String::new(),
            )
        }
        other => {
            errors.push(err(
                format!("{path}.type"),
                format!("`{other}` is not a destination type (s3, file)"),
            ));
            return None;
        }
    };
    let (prefix, error_output_prefix) = keys?;
    Some(ObjectDestination {
        kind,
        store,
        bucket,
        prefix,
        error_output_prefix,
    })
}

/// An object destination where only s3 and file make sense (error output, backup).
pub(super) fn destination_for_objects(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: RawDestination,
    default_store: &StoreConfig,
) -> Option<ObjectDestination> {
    if d.kind != "s3" && d.kind != "file" {
        errors.push(err(
            format!("{path}.type"),
            format!("`{}` cannot hold objects here (s3, file)", d.kind),
        ));
        return None;
    }
    object_destination(errors, path, d, default_store, KeyContext::default())
}

/// A separate place for the error output: a destination whose `prefix` is an
/// error prefix (it may use `!{firehose:error-output-type}`).
pub(super) fn error_output(
    errors: &mut Vec<ConfigError>,
    path: &str,
    mut d: RawDestination,
    default_store: &StoreConfig,
) -> Option<ObjectDestination> {
    if d.error_output_prefix.is_some() {
        errors.push(err(
            format!("{path}.error_output_prefix"),
            "does not apply here: the error output's own `prefix` is its error prefix",
        ));
    }
    let prefix_src = d
        .prefix
        .take()
        .unwrap_or_else(|| "!{firehose:error-output-type}/".into());
    let prefix = match KeyTemplate::parse(&prefix_src, PrefixKind::ErrorOutputPrefix) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(err(format!("{path}.prefix"), e));
            None
        }
    };
    let mut out = object_destination(errors, path, d, default_store, KeyContext::default())?;
    out.error_output_prefix = prefix?;
    Some(out)
}
