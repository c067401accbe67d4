//! `streams.NAME`: one delivery stream, validated section by section into a
//! [`StreamConfig`]: its source and shards, buffering, encoding, where it
//! delivers (destination, error output, backup), partitioning and transform.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::destination::{
    Backup, BackupMode, Destination, ObjectDestination, destination_for_objects, error_output,
    object_destination,
};
use super::raw::{RawBackup, RawBuffering, RawDestination, RawPartitioning, RawStream};
use super::store::StoreConfig;
use super::{
    ConfigError, IcebergCatalog, encoding, err, http, iceberg, partitioning, postgres, range_check,
    transform,
};
use crate::aws;
use crate::encode::encrypt::Encryption;
use crate::encode::{Compression, EncodeOptions, Encoding};
use crate::route::keys::{self, KeyContext};
use crate::route::partition::Partitioner;
use crate::transform::TransformConfig;
use std::collections::BTreeMap;

/// Where a delivery stream's records come from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Source {
    /// Producers put records to the delivery stream's own log.
    #[default]
    DirectPut,
    /// A Kinesis stream's log, read with the delivery stream's own
    /// checkpoints (Firehose's `KinesisStreamAsSource`).
    Kinesis { stream: String },
}

/// A validated delivery stream.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub name: String,
    pub source: Source,
    /// For a Kinesis source, set from the Kinesis stream when it starts.
    pub shards: u32,
    pub buffer_bytes: u64,
    pub buffer_interval: Duration,
    pub encoding: Encoding,
    pub compression: Compression,
    /// gzip 0-9 (default 6), zstd 1-22 (default 3); snappy has no levels.
    pub compression_level: Option<i32>,
    /// AES-256-GCM for object destinations.
    pub encryption: Option<Encryption>,
    pub retry_duration: Duration,
    pub uploads_in_flight_max: usize,
    pub destination: Destination,
    /// Where records that cannot be delivered go; its `error_output_prefix`
    /// is the prefix used. For an object destination without a separate
    /// `error_output`, the destination itself.
    pub error_output: ObjectDestination,
    /// A copy of the source records, for http and postgres destinations.
    pub backup: Option<Backup>,
    /// Prefixes from record content, for object destinations.
    pub partitioning: Option<Arc<Partitioner>>,
    /// The user's WebAssembly transform.
    pub transform: Option<TransformConfig>,
    /// The key the stream's own log is sealed with at rest (None: records
    /// stored in clear); a key id of the log's keyring.
    pub log_key: Option<String>,
    /// Hash of everything that defines the stream (its YAML, the store it
    /// resolved to, the transform's bytes, the encryption keys): a reload
    /// restarts the stream only if this changed.
    pub fingerprint: String,
}

impl StreamConfig {
    /// How this stream turns records into an object.
    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            encoding: self.encoding.clone(),
            compression: self.compression,
            level: self.compression_level,
            encryption: self.encryption.clone(),
        }
    }
}

/// Largest batch, in MiB, of a stream (Firehose's `SizeInMBs`: 1 to 128).
pub(crate) const BUFFER_SIZE_MB: (u64, u64) = (1, 128);
/// Longest a batch stays open, in seconds (Firehose's `IntervalInSeconds`).
pub(crate) const BUFFER_INTERVAL_SECS: (u64, u64) = (0, 900);
/// How long a failing batch is retried before it goes to the error output
/// (Firehose's `DurationInSeconds`).
pub(crate) const RETRY_DURATION_SECS: (u64, u64) = (0, 7200);

/// What a stream falls back on: the default object store, the data
/// directory, the Iceberg catalogs.
pub(crate) struct Defaults<'a> {
    pub store: &'a StoreConfig,
    pub data_dir: &'a Path,
    pub catalogs: &'a BTreeMap<String, IcebergCatalog>,
    pub log_keys: &'a crate::log::seal::Keyring,
    pub clustered: bool,
}

/// The key a stream's own log is sealed with (`log_encryption`).
fn log_key(
    errors: &mut Vec<ConfigError>,
    path: &str,
    raw: Option<super::raw::RawLogEncryption>,
    source: &Source,
    defaults: &Defaults<'_>,
) -> Option<String> {
    if raw.is_some() && matches!(source, Source::Kinesis { .. }) {
        errors.push(err(
            format!("{path}.log_encryption"),
            "a stream reading a Kinesis stream has no log of its own: encrypt the Kinesis stream (kinesis.streams.NAME.log_encryption)",
        ));
    }
    super::at_rest::stream_key(errors, path, raw, defaults.log_keys, defaults.clustered)
}

/// Validates one stream of the `streams` map.
pub(super) fn stream_config(
    errors: &mut Vec<ConfigError>,
    path: &str,
    name: &str,
    mut s: RawStream,
    defaults: &Defaults<'_>,
) -> Option<StreamConfig> {
    let (default_store, data_dir) = (defaults.store, defaults.data_dir);
    let source = source(errors, path, &s);
    let shards = range_check(
        errors,
        &format!("{path}.shards"),
        s.shards.unwrap_or(4),
        1,
        256,
    );
    let (size_mb, interval) = buffering(errors, path, s.buffering.take().unwrap_or_default());
    let format = object_format(errors, path, &mut s);
    let retry = range_check(
        errors,
        &format!("{path}.retry_duration_secs"),
        s.retry_duration_secs.unwrap_or(3600),
        RETRY_DURATION_SECS.0,
        RETRY_DURATION_SECS.1,
    );
    let uploads = range_check(
        errors,
        &format!("{path}.uploads_in_flight_max"),
        s.uploads_in_flight_max.unwrap_or(4),
        1,
        64,
    );
    let Some(d) = s.destination else {
        errors.push(err(
            format!("{path}.destination"),
            "missing: every stream needs a destination",
        ));
        return None;
    };
    let partition_keys: Option<Vec<String>> = s
        .dynamic_partitioning
        .as_ref()
        .map(|p| p.keys.keys().cloned().collect());
    let transform = s
        .transform
        .and_then(|t| transform::transform(errors, &format!("{path}.transform"), t, shards));
    let key_ctx = KeyContext {
        query_keys: partition_keys.as_deref(),
        transform: transform.is_some(),
    };
    let destination = match d.kind.as_str() {
        "iceberg" => Destination::Iceberg(Box::new(iceberg::iceberg_destination(
            errors,
            &format!("{path}.destination"),
            name,
            &d,
            &format.encoding,
            defaults.catalogs,
        )?)),
        _ => destination(errors, path, d, size_mb, default_store, key_ctx)?,
    };
    format.check_destination(errors, path, &destination);
    let error_output = match (s.error_output, &destination) {
        (Some(e), _) => error_output(errors, &format!("{path}.error_output"), e, default_store)?,
        (None, Destination::Object(o)) => (**o).clone(),
        // Nothing is dropped even when no error output is configured: it goes
        // to a local directory under data_dir.
        (None, _) => local_error_output(data_dir, name),
    };
    let partitioning = match &destination {
        Destination::Iceberg(i) if i.route.is_some() && s.dynamic_partitioning.is_none() => {
            i.route.clone()
        }
        _ => stream_partitioning(errors, path, s.dynamic_partitioning, &destination, size_mb),
    };
    let backup = match s.backup {
        None => None,
        Some(b) => Some(backup(errors, path, b, &destination, default_store)?),
    };
    Some(StreamConfig {
        log_key: log_key(errors, path, s.log_encryption, &source, defaults),
        source,
        name: name.to_string(),
        shards,
        buffer_bytes: size_mb << 20,
        buffer_interval: Duration::from_secs(interval),
        encoding: format.encoding,
        compression: format.compression,
        compression_level: format.compression_level,
        encryption: format.encryption,
        retry_duration: Duration::from_secs(retry),
        uploads_in_flight_max: uploads,
        destination,
        error_output,
        backup,
        partitioning,
        transform,
        fingerprint: String::new(),
    })
}

/// How the stream's objects are written.
struct ObjectFormat {
    encoding: Encoding,
    compression: Compression,
    compression_level: Option<i32>,
    encryption: Option<Encryption>,
}

/// `encoding`, `compression`, `compression_level` and `encryption`.
fn object_format(errors: &mut Vec<ConfigError>, path: &str, s: &mut RawStream) -> ObjectFormat {
    let encoding = encoding::encoding(errors, path, s.encoding.take().unwrap_or_default());
    let compression = encoding::compression(errors, path, s.compression.as_deref());
    let compression_level = if matches!(encoding, Encoding::Parquet(_))
        && compression == Compression::None
        && s.compression_level.is_some()
    {
        errors.push(err(
            format!("{path}.compression_level"),
            "parquet compresses inside the file: set encoding.compression_level",
        ));
        None
    } else {
        encoding::compression_level(errors, path, s.compression_level, compression)
    };
    let encryption = s
        .encryption
        .take()
        .and_then(|e| encoding::encryption(errors, &format!("{path}.encryption"), e));
    if matches!(encoding, Encoding::Parquet(_)) && compression != Compression::None {
        errors.push(err(
            format!("{path}.compression"),
            "must be none with parquet, which compresses inside the file (set encoding.compression)",
        ));
    }
    ObjectFormat {
        encoding,
        compression,
        compression_level,
        encryption,
    }
}

impl ObjectFormat {
    /// Parquet and encryption are for objects: refused for http and postgres.
    fn check_destination(&self, errors: &mut Vec<ConfigError>, path: &str, d: &Destination) {
        if matches!(self.encoding, Encoding::Parquet(_))
            && !matches!(d, Destination::Object(_) | Destination::Iceberg(_))
        {
            errors.push(err(
                format!("{path}.encoding.format"),
                "parquet applies only to s3, file and iceberg destinations",
            ));
        }
        if self.encryption.is_some() && !matches!(d, Destination::Object(_)) {
            errors.push(err(
                format!("{path}.encryption"),
                "applies only to s3 and file destinations",
            ));
        }
    }
}

/// `dynamic_partitioning`, for object destinations; also partitioning with
/// the defaults when the prefix uses only a transform's keys.
fn stream_partitioning(
    errors: &mut Vec<ConfigError>,
    path: &str,
    raw: Option<RawPartitioning>,
    destination: &Destination,
    size_mb: u64,
) -> Option<Arc<Partitioner>> {
    match (raw, destination) {
        // Keys from the transform alone: partitioning with the defaults.
        (None, Destination::Object(o)) if o.prefix.uses_transform_keys() => {
            Some(partitioning::transform_keys_only(o, size_mb))
        }
        (None, _) => None,
        (Some(_), Destination::Http(_) | Destination::Postgres(_) | Destination::Iceberg(_)) => {
            errors.push(err(
                format!("{path}.dynamic_partitioning"),
                "applies only to s3 and file destinations",
            ));
            None
        }
        (Some(p), Destination::Object(o)) => partitioning::partitioning(
            errors,
            &format!("{path}.dynamic_partitioning"),
            &format!("{path}.destination.prefix"),
            p,
            o,
            size_mb,
        )
        .map(Arc::new),
    }
}

/// `source`: the stream's own log, or a Kinesis stream's.
fn source(errors: &mut Vec<ConfigError>, path: &str, s: &RawStream) -> Source {
    let Some(src) = &s.source else {
        return Source::DirectPut;
    };
    if !aws::valid_kinesis_stream_name(&src.kinesis_stream) {
        errors.push(err(
            format!("{path}.source.kinesis_stream"),
            "a Kinesis stream name is 1 to 128 characters of letters, digits, `_`, `.` and `-`",
        ));
    }
    if s.shards.is_some() {
        errors.push(err(
            format!("{path}.shards"),
            "a stream with a Kinesis source has the Kinesis stream's shards",
        ));
    }
    Source::Kinesis {
        stream: src.kinesis_stream.clone(),
    }
}

/// `buffering`: (size in MiB, interval in seconds).
fn buffering(errors: &mut Vec<ConfigError>, path: &str, b: RawBuffering) -> (u64, u64) {
    let size_mb = range_check(
        errors,
        &format!("{path}.buffering.size_mb"),
        b.size_mb.unwrap_or(5),
        BUFFER_SIZE_MB.0,
        BUFFER_SIZE_MB.1,
    );
    let interval = range_check(
        errors,
        &format!("{path}.buffering.interval_secs"),
        b.interval_secs.unwrap_or(300),
        BUFFER_INTERVAL_SECS.0,
        BUFFER_INTERVAL_SECS.1,
    );
    (size_mb, interval)
}

/// `destination`, by its `type`.
fn destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: RawDestination,
    size_mb: u64,
    default_store: &StoreConfig,
    key_ctx: KeyContext<'_>,
) -> Option<Destination> {
    let dpath = format!("{path}.destination");
    Some(match d.kind.as_str() {
        "http" => {
            if size_mb > 64 {
                errors.push(err(
                    format!("{path}.buffering.size_mb"),
                    format!("{size_mb} is out of range for an http destination (1 to 64)"),
                ));
            }
            Destination::Http(http::http_destination(errors, &dpath, &d)?)
        }
        "postgres" => Destination::Postgres(postgres::postgres_destination(errors, &dpath, &d)?),
        _ => Destination::Object(Box::new(object_destination(
            errors,
            &dpath,
            d,
            default_store,
            key_ctx,
        )?)),
    })
}

/// The error output of a stream whose destination holds no objects and that
/// configures none: a local directory under `data_dir`.
fn local_error_output(data_dir: &Path, name: &str) -> ObjectDestination {
    ObjectDestination {
        kind: "file",
        store: StoreConfig::File {
            root: data_dir.join("errors").join(name),
        },
        bucket: String::new(),
        prefix: keys::default_error_prefix(""),
        error_output_prefix: keys::default_error_prefix(""),
    }
}

/// `backup`: a copy of the source records, for http and postgres destinations.
fn backup(
    errors: &mut Vec<ConfigError>,
    path: &str,
    b: RawBackup,
    destination: &Destination,
    default_store: &StoreConfig,
) -> Option<Backup> {
    let bpath = format!("{path}.backup");
    let mode = match b.mode.as_str() {
        "all" => BackupMode::All,
        "failed_only" => BackupMode::FailedOnly,
        other => {
            errors.push(err(
                format!("{bpath}.mode"),
                format!("`{other}` is not a backup mode (all, failed_only)"),
            ));
            BackupMode::All
        }
    };
    if matches!(destination, Destination::Object(_)) {
        errors.push(err(&bpath, "applies only to http and postgres destinations (an s3 or file destination already holds the records)"));
    }
    let target = destination_for_objects(
        errors,
        &format!("{bpath}.destination"),
        b.destination,
        default_store,
    )?;
    Some(Backup { mode, target })
}
