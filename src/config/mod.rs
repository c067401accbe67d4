//! Configuration: YAML pipelines parsed into raw structs ([`raw`]), then
//! validated into the typed [`Config`] the daemon runs.
//!
//! Every error names its YAML path (`streams.app.buffering.size_mb`) and the
//! reason; validation reports all of them at once. `${VAR}` (and
//! `${VAR:-default}`, `$$` for a literal `$`) is replaced from the environment
//! before parsing, so secrets need not sit in the file. Nothing downstream ever
//! sees an invalid value: this is the only place config is checked.

pub mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::aws;
use crate::log::LogOptions;
use crate::route::keys::{self, KeyContext, KeyTemplate, PrefixKind};
use crate::route::partition::{Partitioner, Query, RecordTime, TimeFormat};
use raw::{RawConfig, RawDestination, RawStore, RawStream};

/// One problem in the config: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The validated configuration of the daemon.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub access_keys: Vec<AccessKey>,
    pub limits: Limits,
    pub log: LogOptions,
    pub disk_quota_bytes: u64,
    /// Where the buckets of streams created through the API live.
    pub object_store: StoreConfig,
    pub kinesis: KinesisOptions,
    pub streams: BTreeMap<String, StreamConfig>,
}

/// Settings of the Kinesis Data Streams API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisOptions {
    /// Shards of all Kinesis streams together (each is a log writer thread).
    pub shards_max: u32,
    /// How long a shard iterator stays valid (Kinesis: 5 minutes).
    pub iterator_ttl: Duration,
    /// Kinesis's per-shard write limits (1 MiB/s and 1,000 records/s).
    pub shard_write_limits: bool,
    /// Kinesis streams declared in the file: created at start if missing.
    pub streams: BTreeMap<String, KinesisStreamConfig>,
}

/// A Kinesis stream declared in the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisStreamConfig {
    pub shards: u32,
    pub retention_hours: u32,
}

impl Default for KinesisOptions {
    fn default() -> Self {
        KinesisOptions {
            shards_max: 200,
            iterator_ttl: Duration::from_secs(300),
            shard_write_limits: false,
            streams: BTreeMap::new(),
        }
    }
}

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest HTTP request body accepted.
    pub request_bytes_max: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub requests_in_flight_max: usize,
    /// Streams that `CreateDeliveryStream` may create.
    pub api_streams_max: usize,
    /// Batches encoded (and compressed, encrypted) at once, over all streams:
    /// each holds its records in memory, and more than the machine has cores
    /// buys no speed.
    pub encoders_max: usize,
    /// glibc malloc arenas (`M_ARENA_MAX`). glibc's own default, 8 per core,
    /// lets freed buffers of many threads pile up in separate arenas; one per
    /// core keeps peak RSS down at no cost in speed measured here.
    pub malloc_arenas: usize,
    /// The time slice, in microseconds, the threads that acknowledge
    /// producers ask the kernel for (see [`crate::sched`]); 0: the kernel's.
    pub ack_slice_us: u64,
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
    pub partitioning: Option<std::sync::Arc<Partitioner>>,
    /// The user's WebAssembly transform.
    pub transform: Option<crate::transform::TransformConfig>,
    /// Hash of everything that defines the stream (its YAML, the store it
    /// resolved to, the transform's bytes, the encryption keys): a reload
    /// restarts the stream only if this changed.
    pub fingerprint: String,
}

/// Client-side encryption of a stream's objects.
#[derive(Clone, Debug)]
pub struct Encryption {
    /// (key id, key); the first encrypts, every one decrypts.
    pub keys: Vec<(String, crate::encode::encrypt::SecretKey)>,
    pub chunk_bytes: u32,
}

impl Encryption {
    /// The key new objects are encrypted with.
    pub fn current(&self) -> (&str, &crate::encode::encrypt::SecretKey) {
        // Validation guarantees at least one key.
        let (id, key) = &self.keys[0];
        (id, key)
    }

    pub fn key(&self, id: &str) -> Option<&crate::encode::encrypt::SecretKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }
}

/// Where a stream delivers.
#[derive(Clone, Debug)]
pub enum Destination {
    Object(ObjectDestination),
    Http(HttpDestination),
    Postgres(PostgresDestination),
}

impl Destination {
    /// The configured `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Object(o) => o.kind,
            Destination::Http(_) => "http",
            Destination::Postgres(_) => "postgres",
        }
    }
}

/// Firehose's HTTP endpoint delivery.
#[derive(Clone, Debug)]
pub struct HttpDestination {
    pub url: String,
    pub access_key: Option<String>,
    pub common_attributes: BTreeMap<String, String>,
    pub gzip: bool,
    pub timeout: Duration,
    pub records_per_request_max: usize,
}

/// The PostgreSQL loader.
#[derive(Clone, Debug)]
pub struct PostgresDestination {
    pub connection: String,
    pub table: String,
    pub mapping: ColumnMapping,
    pub pool_max: usize,
    pub tls: PostgresTls,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnMapping {
    /// Each column from a JSON field (a path of keys).
    Columns(Vec<ColumnMap>),
    /// The whole record into one jsonb column.
    Jsonb(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMap {
    pub column: String,
    pub field: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresTls {
    Disable,
    Require { ca_file: Option<PathBuf> },
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

#[derive(Clone, Debug, PartialEq)]
pub enum Encoding {
    /// Records one after another, each followed by `delimiter` unless it
    /// already ends with it. An empty delimiter is Firehose's raw concatenation.
    JsonLines { delimiter: Vec<u8> },
    /// JSON records converted to Parquet with a declared schema.
    Parquet(crate::encode::parquet::ParquetOptions),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// The Snappy framing format (what Python's `snappy.stream_decompress` reads).
    Snappy,
}

impl Compression {
    /// Firehose's file extension for this compression.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
            Compression::Snappy => ".snappy",
        }
    }
}

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

impl Config {
    /// The embedded default: one stream `default` writing JSON lines to
    /// `./hydrant-data/out`.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        let yaml = "streams:\n  default:\n    buffering: { size_mb: 5, interval_secs: 10 }\n    destination:\n      type: file\n      path: ./hydrant-data/out\n";
        parse(yaml)
    }

    /// Reads, interpolates and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        parse(&text)
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let text =
        interpolate_env(text, |k| std::env::var(k).ok()).map_err(|e| ConfigErrors(vec![e]))?;
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        let de = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.to_string();
            // serde_norway starts with its own path (the enclosing map's for
            // an unknown key) and appends " at line L column C"; the path is
            // already given, the position helps.
            if let Some((head, rest)) = message.split_once(": ")
                && !head.contains(' ')
                && path.starts_with(head)
            {
                message = rest.to_string();
            }
            ConfigErrors(vec![err(
                if path == "." { String::new() } else { path },
                message,
            )])
        })?
    };
    let mut config = validate(raw)?;
    let tree: serde_norway::Value = serde_norway::from_str(&text).unwrap_or_default();
    for (name, stream) in config.streams.iter_mut() {
        let yaml = tree
            .get("streams")
            .and_then(|s| s.get(name.as_str()))
            .cloned()
            .unwrap_or_default();
        stream.fingerprint = fingerprint(stream, &yaml);
    }
    Ok(config)
}

/// See [`StreamConfig::fingerprint`].
fn fingerprint(stream: &StreamConfig, yaml: &serde_norway::Value) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(serde_json::to_string(yaml).unwrap_or_default());
    h.update(format!("{:?}", stream.destination));
    h.update(format!("{:?}", stream.error_output));
    h.update(format!("{:?}", stream.backup));
    if let Some(t) = &stream.transform {
        h.update(std::fs::read(&t.wasm).unwrap_or_default());
    }
    if let Some(e) = &stream.encryption {
        for (id, key) in &e.keys {
            h.update(id);
            h.update(key.0);
        }
    }
    hex::encode(h.finalize())
}

impl Config {
    /// The settings a reload cannot change (they need a restart), by name,
    /// where `other` differs from `self`.
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listen != other.listen {
            out.push("listen");
        }
        if self.data_dir != other.data_dir {
            out.push("data_dir");
        }
        if format!("{:?}", self.log) != format!("{:?}", other.log)
            || self.disk_quota_bytes != other.disk_quota_bytes
        {
            out.push("log");
        }
        if format!("{:?}", self.limits) != format!("{:?}", other.limits) {
            out.push("limits");
        }
        if self.access_keys != other.access_keys {
            out.push("auth");
        }
        if format!("{:?}", self.object_store) != format!("{:?}", other.object_store) {
            out.push("object_store");
        }
        if self.shutdown_timeout != other.shutdown_timeout {
            out.push("shutdown_timeout_secs");
        }
        if self.kinesis != other.kinesis {
            out.push("kinesis");
        }
        out
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` from `lookup`; `$$` is a literal `$`.
pub fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let line = text[..text.len() - rest.len() + i].matches('\n').count() + 1;
            let Some(end) = body.find('}') else {
                return Err(err(
                    "",
                    format!("line {line}: `${{` is never closed with `}}`"),
                ));
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(
                    "",
                    format!("line {line}: `${{{expr}}}` is not a valid variable name"),
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(err(
                        "",
                        format!(
                            "line {line}: environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                        ),
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn range_check<T: PartialOrd + fmt::Display + Copy>(
    errors: &mut Vec<ConfigError>,
    path: &str,
    value: T,
    min: T,
    max: T,
) -> T {
    if value < min || value > max {
        errors.push(err(
            path,
            format!("{value} is out of range ({min} to {max})"),
        ));
    }
    value
}

fn validate(raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let listen_src = raw.listen.as_deref().unwrap_or("127.0.0.1:4573");
    let listen = match listen_src.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(e) => {
            errors.push(err(
                "listen",
                format!("`{listen_src}` is not an address:port ({e})"),
            ));
            SocketAddr::from(([127, 0, 0, 1], 4573))
        }
    };
    let data_dir = PathBuf::from(raw.data_dir.as_deref().unwrap_or("./hydrant-data"));
    let shutdown_secs = range_check(
        &mut errors,
        "shutdown_timeout_secs",
        raw.shutdown_timeout_secs.unwrap_or(30),
        1,
        3600,
    );

    let mut access_keys = Vec::new();
    if let Some(auth) = raw.auth {
        if auth.access_keys.is_empty() {
            errors.push(err("auth.access_keys", "must list at least one key (omit `auth` to run without authentication on loopback)"));
        }
        for (i, k) in auth.access_keys.into_iter().enumerate() {
            if k.access_key_id.is_empty() {
                errors.push(err(
                    format!("auth.access_keys[{i}].access_key_id"),
                    "must not be empty",
                ));
            }
            if k.secret_access_key.is_empty() {
                errors.push(err(
                    format!("auth.access_keys[{i}].secret_access_key"),
                    "must not be empty",
                ));
            }
            access_keys.push(AccessKey {
                access_key_id: k.access_key_id,
                secret_access_key: k.secret_access_key,
            });
        }
    }
    if access_keys.is_empty() && !listen.ip().is_loopback() {
        errors.push(err(
            "auth",
            format!("is required when listening on a non-loopback address ({listen})"),
        ));
    }

    let l = raw.limits.unwrap_or_default();
    let limits = Limits {
        request_bytes_max: range_check(
            &mut errors,
            "limits.request_bytes_max",
            l.request_bytes_max.unwrap_or(8 << 20),
            1 << 20,
            64 << 20,
        ) as usize,
        requests_in_flight_max: range_check(
            &mut errors,
            "limits.requests_in_flight_max",
            l.requests_in_flight_max.unwrap_or(1024),
            1,
            65_536,
        ),
        api_streams_max: range_check(
            &mut errors,
            "limits.api_streams_max",
            l.api_streams_max.unwrap_or(50),
            0,
            5000,
        ),
        encoders_max: range_check(
            &mut errors,
            "limits.encoders_max",
            l.encoders_max
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            1,
            1024,
        ),
        malloc_arenas: range_check(
            &mut errors,
            "limits.malloc_arenas",
            l.malloc_arenas
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            1,
            1024,
        ),
        ack_slice_us: range_check(
            &mut errors,
            "limits.ack_slice_us",
            l.ack_slice_us.unwrap_or(100),
            0,
            100_000,
        ),
    };

    let rl = raw.log.unwrap_or_default();
    let log = LogOptions {
        segment_bytes: range_check(
            &mut errors,
            "log.segment_bytes",
            rl.segment_bytes.unwrap_or(64 << 20),
            1 << 20,
            1 << 30,
        ),
        append_queue_max: range_check(
            &mut errors,
            "log.append_queue_max",
            rl.append_queue_max.unwrap_or(1024),
            1,
            1 << 20,
        ),
        group_commit_bytes_max: range_check(
            &mut errors,
            "log.group_commit_bytes_max",
            rl.group_commit_bytes_max.unwrap_or(16 << 20),
            64 << 10,
            256 << 20,
        ),
    };
    let disk_quota_bytes = range_check(
        &mut errors,
        "log.disk_quota_bytes",
        rl.disk_quota_bytes.unwrap_or(10 << 30),
        16 << 20,
        u64::MAX,
    );
    if let Some(f) = rl.fsync.as_deref()
        && f != "always"
    {
        errors.push(err("log.fsync", format!("`{f}` is not supported: the only mode is `always` (every acknowledged record is fsynced)")));
    }

    let object_store = match raw.object_store {
        None => StoreConfig::File {
            root: data_dir.join("buckets"),
        },
        Some(s) => store_config(&mut errors, "object_store", &s, &data_dir),
    };

    let rk = raw.kinesis.unwrap_or_default();
    let mut kinesis = KinesisOptions {
        shards_max: range_check(
            &mut errors,
            "kinesis.shards_max",
            rk.shards_max.unwrap_or(200),
            1,
            10_000,
        ),
        iterator_ttl: Duration::from_secs(range_check(
            &mut errors,
            "kinesis.iterator_ttl_secs",
            rk.iterator_ttl_secs.unwrap_or(300),
            1,
            86_400,
        )),
        shard_write_limits: rk.shard_write_limits.unwrap_or(false),
        streams: BTreeMap::new(),
    };
    let mut declared_shards = 0u32;
    for (name, ks) in rk.streams {
        let path = format!("kinesis.streams.{name}");
        if !aws::valid_kinesis_stream_name(&name) {
            errors.push(err(
                &path,
                "a Kinesis stream name is 1 to 128 characters of letters, digits, `_`, `.` and `-`",
            ));
        }
        let shards = range_check(
            &mut errors,
            &format!("{path}.shards"),
            ks.shards.unwrap_or(4),
            1,
            10_000,
        );
        let retention_hours = range_check(
            &mut errors,
            &format!("{path}.retention_hours"),
            ks.retention_hours.unwrap_or(24),
            24,
            8760,
        );
        declared_shards = declared_shards.saturating_add(shards);
        kinesis.streams.insert(
            name,
            KinesisStreamConfig {
                shards,
                retention_hours,
            },
        );
    }
    if declared_shards > kinesis.shards_max {
        errors.push(err(
            "kinesis.streams",
            format!(
                "declare {declared_shards} shards in all, more than kinesis.shards_max ({})",
                kinesis.shards_max
            ),
        ));
    }

    let mut streams = BTreeMap::new();
    for (name, s) in raw.streams {
        let path = format!("streams.{name}");
        if !aws::valid_delivery_stream_name(&name) {
            errors.push(err(
                &path,
                "a stream name is 1 to 64 characters of letters, digits, `_`, `.` and `-`",
            ));
        }
        if let Some(sc) = stream_config(&mut errors, &path, &name, s, &object_store, &data_dir) {
            streams.insert(name, sc);
        }
    }

    if errors.is_empty() {
        Ok(Config {
            listen,
            data_dir,
            shutdown_timeout: Duration::from_secs(shutdown_secs),
            access_keys,
            limits,
            log,
            disk_quota_bytes,
            object_store,
            kinesis,
            streams,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn store_config(
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

fn s3_store(errors: &mut Vec<ConfigError>, path: &str, s: &RawStore) -> S3Store {
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
    }
}

fn stream_config(
    errors: &mut Vec<ConfigError>,
    path: &str,
    name: &str,
    s: RawStream,
    default_store: &StoreConfig,
    data_dir: &Path,
) -> Option<StreamConfig> {
    let source = match &s.source {
        None => Source::DirectPut,
        Some(src) => {
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
    };
    let shards = range_check(
        errors,
        &format!("{path}.shards"),
        s.shards.unwrap_or(4),
        1,
        256,
    );
    let b = s.buffering.unwrap_or_default();
    let size_mb = range_check(
        errors,
        &format!("{path}.buffering.size_mb"),
        b.size_mb.unwrap_or(5),
        1,
        128,
    );
    let interval = range_check(
        errors,
        &format!("{path}.buffering.interval_secs"),
        b.interval_secs.unwrap_or(300),
        0,
        900,
    );
    let enc = s.encoding.unwrap_or_default();
    let encoding = match enc.format.as_deref().unwrap_or("json_lines") {
        "json_lines" => {
            for (f, set) in [
                ("schema", enc.schema.is_some()),
                ("row_group_rows", enc.row_group_rows.is_some()),
                ("compression", enc.compression.is_some()),
                ("dictionary", enc.dictionary.is_some()),
            ] {
                if set {
                    errors.push(err(
                        format!("{path}.encoding.{f}"),
                        "applies only to `format: parquet`",
                    ));
                }
            }
            Encoding::JsonLines {
                delimiter: enc.delimiter.unwrap_or_else(|| "\n".into()).into_bytes(),
            }
        }
        "parquet" => {
            use crate::encode::parquet;
            if enc.delimiter.is_some() {
                errors.push(err(
                    format!("{path}.encoding.delimiter"),
                    "applies only to `format: json_lines`",
                ));
            }
            let mut cols = Vec::new();
            match enc.schema {
                None => errors.push(err(
                    format!("{path}.encoding.schema"),
                    "missing: parquet needs the columns' names and types",
                )),
                Some(list) if list.is_empty() => errors.push(err(
                    format!("{path}.encoding.schema"),
                    "must list at least one column",
                )),
                Some(list) => {
                    for (i, c) in list.into_iter().enumerate() {
                        if cols
                            .iter()
                            .any(|(n, _, _): &(String, _, bool)| *n == c.name)
                        {
                            errors.push(err(
                                format!("{path}.encoding.schema[{i}].name"),
                                format!("`{}` is listed twice", c.name),
                            ));
                        }
                        match parquet::parse_type(&c.kind) {
                            Ok(t) => cols.push((c.name, t, c.nullable.unwrap_or(true))),
                            Err(e) => {
                                errors.push(err(format!("{path}.encoding.schema[{i}].type"), e))
                            }
                        }
                    }
                }
            }
            let compression = enc.compression.unwrap_or_else(|| "snappy".into());
            if !["none", "snappy", "gzip", "zstd"].contains(&compression.as_str()) {
                errors.push(err(
                    format!("{path}.encoding.compression"),
                    format!(
                        "`{compression}` is not a Parquet compression (none, snappy, gzip, zstd)"
                    ),
                ));
            }
            Encoding::Parquet(parquet::ParquetOptions {
                schema: parquet::schema(&cols),
                row_group_rows: range_check(
                    errors,
                    &format!("{path}.encoding.row_group_rows"),
                    enc.row_group_rows.unwrap_or(1_000_000),
                    1,
                    100_000_000,
                ),
                compression,
                dictionary: enc.dictionary.unwrap_or(true),
            })
        }
        other => {
            errors.push(err(
                format!("{path}.encoding.format"),
                format!("`{other}` is not a format (json_lines, parquet)"),
            ));
            Encoding::JsonLines {
                delimiter: b"\n".to_vec(),
            }
        }
    };
    let compression = match s.compression.as_deref().unwrap_or("none") {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "snappy" => Compression::Snappy,
        other => {
            errors.push(err(
                format!("{path}.compression"),
                format!("`{other}` is not a compression (none, gzip, zstd, snappy)"),
            ));
            Compression::None
        }
    };
    let compression_level = match (s.compression_level, compression) {
        (None, _) => None,
        (Some(l), Compression::Gzip) => Some(range_check(
            errors,
            &format!("{path}.compression_level"),
            l,
            0,
            9,
        )),
        (Some(l), Compression::Zstd) => Some(range_check(
            errors,
            &format!("{path}.compression_level"),
            l,
            1,
            22,
        )),
        (Some(_), _) => {
            errors.push(err(
                format!("{path}.compression_level"),
                "applies only to gzip and zstd",
            ));
            None
        }
    };
    let encryption = s
        .encryption
        .and_then(|e| encryption(errors, &format!("{path}.encryption"), e));
    if matches!(encoding, Encoding::Parquet(_)) && compression != Compression::None {
        errors.push(err(
            format!("{path}.compression"),
            "must be none with parquet, which compresses inside the file (set encoding.compression)",
        ));
    }
    let retry = range_check(
        errors,
        &format!("{path}.retry_duration_secs"),
        s.retry_duration_secs.unwrap_or(3600),
        0,
        7200,
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
    let dpath = format!("{path}.destination");
    let partition_keys: Option<Vec<String>> = s
        .dynamic_partitioning
        .as_ref()
        .map(|p| p.keys.keys().cloned().collect());
    let transform = s
        .transform
        .and_then(|t| transform(errors, &format!("{path}.transform"), t, shards));
    let destination = match d.kind.as_str() {
        "http" => {
            if size_mb > 64 {
                errors.push(err(
                    format!("{path}.buffering.size_mb"),
                    format!("{size_mb} is out of range for an http destination (1 to 64)"),
                ));
            }
            Destination::Http(http_destination(errors, &dpath, &d)?)
        }
        "postgres" => Destination::Postgres(postgres_destination(errors, &dpath, &d)?),
        _ => Destination::Object(destination(
            errors,
            &dpath,
            d.clone(),
            default_store,
            KeyContext {
                query_keys: partition_keys.as_deref(),
                transform: transform.is_some(),
            },
        )?),
    };
    if matches!(encoding, Encoding::Parquet(_)) && !matches!(destination, Destination::Object(_)) {
        errors.push(err(
            format!("{path}.encoding.format"),
            "parquet applies only to s3 and file destinations",
        ));
    }
    if encryption.is_some() && !matches!(destination, Destination::Object(_)) {
        errors.push(err(
            format!("{path}.encryption"),
            "applies only to s3 and file destinations",
        ));
    }
    let error_output = match (s.error_output, &destination) {
        (Some(e), _) => error_output(
            errors,
            &format!("{path}.error_output"),
            e,
            default_store,
            data_dir,
        )?,
        (None, Destination::Object(o)) => o.clone(),
        // Nothing is dropped even when no error output is configured: it goes
        // to a local directory under data_dir.
        (None, _) => ObjectDestination {
            kind: "file",
            store: StoreConfig::File {
                root: data_dir.join("errors").join(name),
            },
            bucket: String::new(),
            prefix: keys::default_error_prefix(""),
            error_output_prefix: keys::default_error_prefix(""),
        },
    };
    let partitioning = match (s.dynamic_partitioning, &destination) {
        // Keys from the transform alone: partitioning with the defaults.
        (None, Destination::Object(o)) if o.prefix.uses_transform_keys() => {
            Some(std::sync::Arc::new(Partitioner {
                keys: Vec::new(),
                time: None,
                template: o.prefix.clone(),
                open_partitions_max: DEFAULT_OPEN_PARTITIONS,
                open_bytes_max: default_open_mb(size_mb) << 20,
            }))
        }
        (None, _) => None,
        (Some(_), Destination::Http(_) | Destination::Postgres(_)) => {
            errors.push(err(
                format!("{path}.dynamic_partitioning"),
                "applies only to s3 and file destinations",
            ));
            None
        }
        (Some(p), Destination::Object(o)) => partitioning(
            errors,
            &format!("{path}.dynamic_partitioning"),
            &format!("{dpath}.prefix"),
            p,
            o,
            size_mb,
        )
        .map(std::sync::Arc::new),
    };
    let backup = match s.backup {
        None => None,
        Some(b) => {
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
                data_dir,
            )?;
            Some(Backup { mode, target })
        }
    };
    Some(StreamConfig {
        source,
        name: name.to_string(),
        shards,
        buffer_bytes: size_mb << 20,
        buffer_interval: Duration::from_secs(interval),
        encoding,
        compression,
        compression_level,
        encryption,
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

/// Firehose's default bound on open partitions.
pub(crate) const DEFAULT_OPEN_PARTITIONS: usize = 500;

/// Default bytes of a shard's open partitions: four full batches, at most 256 MiB.
pub(crate) fn default_open_mb(size_mb: u64) -> u64 {
    (4 * size_mb).min(256)
}

fn transform(
    errors: &mut Vec<ConfigError>,
    path: &str,
    t: raw::RawTransform,
    shards: u32,
) -> Option<crate::transform::TransformConfig> {
    let before = errors.len();
    let wasm = PathBuf::from(&t.wasm);
    match std::fs::metadata(&wasm) {
        Ok(m) if m.is_file() => {}
        Ok(_) => errors.push(err(
            format!("{path}.wasm"),
            format!("{} is not a file", t.wasm),
        )),
        Err(e) => errors.push(err(
            format!("{path}.wasm"),
            format!("cannot read {}: {e}", t.wasm),
        )),
    }
    let config = match t.config {
        None => String::new(),
        Some(serde_norway::Value::String(s)) => s,
        Some(v) => match serde_json::to_string(&v) {
            Ok(s) => s,
            Err(e) => {
                errors.push(err(
                    format!("{path}.config"),
                    format!("cannot be given as JSON: {e}"),
                ));
                String::new()
            }
        },
    };
    let batch_records_max = range_check(
        errors,
        &format!("{path}.batch_records_max"),
        t.batch_records_max.unwrap_or(10_000),
        1,
        100_000,
    );
    let batch_mb = range_check(
        errors,
        &format!("{path}.batch_mb_max"),
        t.batch_mb_max.unwrap_or(4),
        1,
        64,
    );
    let timeout_ms = range_check(
        errors,
        &format!("{path}.timeout_ms"),
        t.timeout_ms.unwrap_or(10_000),
        10,
        300_000,
    );
    let memory_mb = range_check(
        errors,
        &format!("{path}.memory_mb_max"),
        t.memory_mb_max.unwrap_or(256),
        16,
        4096,
    );
    let instances_max = range_check(
        errors,
        &format!("{path}.instances_max"),
        t.instances_max.unwrap_or(shards as usize),
        1,
        256,
    );
    if errors.len() > before {
        return None;
    }
    Some(crate::transform::TransformConfig {
        wasm,
        config,
        batch_records_max,
        batch_bytes_max: (batch_mb << 20) as usize,
        timeout: Duration::from_millis(timeout_ms),
        memory_bytes_max: (memory_mb << 20) as usize,
        instances_max,
    })
}

/// Validates and compiles `dynamic_partitioning` for an object destination
/// whose prefix has been parsed with the key names.
fn partitioning(
    errors: &mut Vec<ConfigError>,
    path: &str,
    prefix_path: &str,
    p: raw::RawPartitioning,
    dest: &ObjectDestination,
    size_mb: u64,
) -> Option<Partitioner> {
    let before = errors.len();
    let mut keys = Vec::new();
    for (name, src) in &p.keys {
        if !crate::route::partition::is_key_name(name) {
            errors.push(err(
                format!("{path}.keys.{name}"),
                "a key name is letters, digits, `_` and `-`",
            ));
            continue;
        }
        match Query::compile(src) {
            Ok(q) => keys.push((name.clone(), q)),
            Err(e) => errors.push(err(format!("{path}.keys.{name}"), format!("`{src}` {e}"))),
        }
    }
    let time = match p.timestamp {
        None => None,
        Some(t) => {
            let query = Query::compile(&t.query)
                .map_err(|e| {
                    errors.push(err(
                        format!("{path}.timestamp.query"),
                        format!("`{}` {e}", t.query),
                    ))
                })
                .ok();
            let format = TimeFormat::parse(t.format.as_deref().unwrap_or("rfc3339"))
                .map_err(|e| errors.push(err(format!("{path}.timestamp.format"), e)))
                .ok();
            match (query, format) {
                (Some(query), Some(format)) => Some(RecordTime { query, format }),
                _ => None,
            }
        }
    };
    if p.keys.is_empty()
        && time.is_none()
        && !dest.prefix.uses_transform_keys()
        && errors.len() == before
    {
        errors.push(err(
            path,
            "needs `keys` (jq expressions) or `timestamp`: there is nothing to partition by",
        ));
    }
    if time.is_some() && !dest.prefix.has_timestamp() {
        errors.push(err(
            format!("{path}.timestamp"),
            format!("is not used: {prefix_path} has no `!{{timestamp:…}}` expression"),
        ));
    }
    let used: std::collections::BTreeSet<usize> = dest.prefix.query_keys_used().collect();
    for (i, name) in p.keys.keys().enumerate() {
        if !used.contains(&i) {
            errors.push(err(
                format!("{path}.keys.{name}"),
                format!("is not used in {prefix_path} (add `!{{partitionKeyFromQuery:{name}}}`)"),
            ));
        }
    }
    let open_partitions_max = range_check(
        errors,
        &format!("{path}.open_partitions_max"),
        p.open_partitions_max.unwrap_or(DEFAULT_OPEN_PARTITIONS),
        1,
        100_000,
    );
    // Default: four full batches' worth per shard, at most 256 MiB.
    let open_mb = range_check(
        errors,
        &format!("{path}.open_buffer_mb_max"),
        p.open_buffer_mb_max
            .unwrap_or_else(|| (4 * size_mb).min(256)),
        1,
        4096,
    );
    if errors.len() > before {
        return None;
    }
    Some(Partitioner {
        keys,
        time,
        template: dest.prefix.clone(),
        open_partitions_max,
        open_bytes_max: open_mb << 20,
    })
}

fn encryption(
    errors: &mut Vec<ConfigError>,
    path: &str,
    e: raw::RawEncryption,
) -> Option<Encryption> {
    use crate::encode::encrypt::{
        CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, DEFAULT_CHUNK_BYTES, SecretKey,
    };
    let chunk_bytes = range_check(
        errors,
        &format!("{path}.chunk_bytes"),
        e.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES),
        CHUNK_BYTES_MIN,
        CHUNK_BYTES_MAX,
    );
    if e.keys.is_empty() {
        errors.push(err(
            format!("{path}.keys"),
            "must list at least one key (the first encrypts)",
        ));
        return None;
    }
    let mut keys = Vec::new();
    for (i, k) in e.keys.into_iter().enumerate() {
        let kpath = format!("{path}.keys[{i}]");
        if k.id.is_empty() || k.id.len() > 255 || !k.id.chars().all(|c| c.is_ascii_graphic()) {
            errors.push(err(
                format!("{kpath}.id"),
                "must be 1 to 255 printable ASCII characters",
            ));
        }
        if keys.iter().any(|(id, _): &(String, SecretKey)| *id == k.id) {
            errors.push(err(
                format!("{kpath}.id"),
                format!("`{}` is listed twice", k.id),
            ));
        }
        let material = match (&k.file, &k.env) {
            (Some(f), None) => std::fs::read(f)
                .map_err(|e| (format!("{kpath}.file"), format!("cannot read {f}: {e}"))),
            (None, Some(v)) => std::env::var(v).map(String::into_bytes).map_err(|_| {
                (
                    format!("{kpath}.env"),
                    format!("environment variable {v} is not set"),
                )
            }),
            _ => Err((
                kpath.clone(),
                "give exactly one of `file` or `env`".to_string(),
            )),
        };
        let field = if k.file.is_some() { "file" } else { "env" };
        match material
            .and_then(|m| SecretKey::parse(&m).map_err(|e| (format!("{kpath}.{field}"), e)))
        {
            Ok(key) => keys.push((k.id, key)),
            Err((p, m)) => errors.push(err(p, m)),
        }
    }
    (!keys.is_empty()).then_some(Encryption { keys, chunk_bytes })
}

/// An object destination where only s3 and file make sense (error output, backup).
fn destination_for_objects(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: RawDestination,
    default_store: &StoreConfig,
    data_dir: &Path,
) -> Option<ObjectDestination> {
    if d.kind != "s3" && d.kind != "file" {
        errors.push(err(
            format!("{path}.type"),
            format!("`{}` cannot hold objects here (s3, file)", d.kind),
        ));
        return None;
    }
    let _ = data_dir;
    destination(errors, path, d, default_store, KeyContext::default())
}

fn reject_fields(errors: &mut Vec<ConfigError>, path: &str, kind: &str, fields: &[(&str, bool)]) {
    for (field, set) in fields {
        if *set {
            errors.push(err(
                format!("{path}.{field}"),
                format!("does not apply to `type: {kind}`"),
            ));
        }
    }
}

fn http_destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
) -> Option<HttpDestination> {
    reject_fields(
        errors,
        path,
        "http",
        &[
            ("bucket", d.bucket.is_some()),
            ("path", d.path.is_some()),
            ("prefix", d.prefix.is_some()),
            ("error_output_prefix", d.error_output_prefix.is_some()),
            ("connection", d.connection.is_some()),
            ("table", d.table.is_some()),
            ("columns", d.columns.is_some()),
            ("jsonb_column", d.jsonb_column.is_some()),
        ],
    );
    let Some(url) = d.url.clone() else {
        errors.push(err(
            format!("{path}.url"),
            "missing: an http destination needs a url",
        ));
        return None;
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        errors.push(err(
            format!("{path}.url"),
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    let gzip = match d.content_encoding.as_deref().unwrap_or("none") {
        "none" => false,
        "gzip" => true,
        other => {
            errors.push(err(
                format!("{path}.content_encoding"),
                format!("`{other}` is not an encoding (none, gzip)"),
            ));
            false
        }
    };
    let attrs = d.common_attributes.clone().unwrap_or_default();
    if attrs.len() > 50 {
        errors.push(err(
            format!("{path}.common_attributes"),
            "at most 50 attributes",
        ));
    }
    if let Some(k) = &d.access_key
        && k.len() > 4096
    {
        errors.push(err(format!("{path}.access_key"), "at most 4096 bytes"));
    }
    Some(HttpDestination {
        url,
        access_key: d.access_key.clone(),
        common_attributes: attrs,
        gzip,
        timeout: Duration::from_secs(range_check(
            errors,
            &format!("{path}.timeout_secs"),
            d.timeout_secs.unwrap_or(180),
            1,
            900,
        )),
        records_per_request_max: range_check(
            errors,
            &format!("{path}.records_per_request_max"),
            d.records_per_request_max.unwrap_or(10_000),
            1,
            10_000,
        ),
    })
}

fn valid_sql_identifier(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let first = parts.next().is_some_and(ok);
    let rest: Vec<&str> = parts.collect();
    first && rest.len() <= 1 && rest.iter().all(|p| ok(p))
}

fn postgres_destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
) -> Option<PostgresDestination> {
    reject_fields(
        errors,
        path,
        "postgres",
        &[
            ("bucket", d.bucket.is_some()),
            ("path", d.path.is_some()),
            ("prefix", d.prefix.is_some()),
            ("error_output_prefix", d.error_output_prefix.is_some()),
            ("url", d.url.is_some()),
            ("access_key", d.access_key.is_some()),
            ("common_attributes", d.common_attributes.is_some()),
        ],
    );
    let (Some(connection), Some(table)) = (d.connection.clone(), d.table.clone()) else {
        if d.connection.is_none() {
            errors.push(err(
                format!("{path}.connection"),
                "missing: a postgres destination needs a connection string",
            ));
        }
        if d.table.is_none() {
            errors.push(err(
                format!("{path}.table"),
                "missing: a postgres destination needs a table",
            ));
        }
        return None;
    };
    if let Err(e) = connection.parse::<tokio_postgres::Config>() {
        errors.push(err(
            format!("{path}.connection"),
            format!("not a valid connection string: {e}"),
        ));
    }
    if !valid_sql_identifier(&table) {
        errors.push(err(
            format!("{path}.table"),
            format!("`{table}` is not a plain table name ([schema.]name of letters, digits, _)"),
        ));
    }
    let mapping = match (&d.columns, &d.jsonb_column) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(err(path, "give exactly one of `columns` (JSON fields to columns) or `jsonb_column` (the whole record)"));
            return None;
        }
        (None, Some(c)) => {
            if !valid_sql_identifier(c) || c.contains('.') {
                errors.push(err(
                    format!("{path}.jsonb_column"),
                    format!("`{c}` is not a plain column name"),
                ));
            }
            ColumnMapping::Jsonb(c.clone())
        }
        (Some(cols), None) => {
            if cols.is_empty() {
                errors.push(err(
                    format!("{path}.columns"),
                    "must list at least one column",
                ));
            }
            let mut out = Vec::new();
            for (i, c) in cols.iter().enumerate() {
                if !valid_sql_identifier(&c.column) || c.column.contains('.') {
                    errors.push(err(
                        format!("{path}.columns[{i}].column"),
                        format!("`{}` is not a plain column name", c.column),
                    ));
                }
                let field = c.field.clone().unwrap_or_else(|| c.column.clone());
                out.push(ColumnMap {
                    column: c.column.clone(),
                    field: field.split('.').map(String::from).collect(),
                });
            }
            ColumnMapping::Columns(out)
        }
    };
    let tls = match &d.tls {
        None => PostgresTls::Disable,
        Some(t) => match t.mode.as_str() {
            "disable" => PostgresTls::Disable,
            "require" => PostgresTls::Require {
                ca_file: t.ca_file.as_ref().map(PathBuf::from),
            },
            other => {
                errors.push(err(
                    format!("{path}.tls.mode"),
                    format!("`{other}` is not a TLS mode (disable, require)"),
                ));
                PostgresTls::Disable
            }
        },
    };
    Some(PostgresDestination {
        connection,
        table,
        mapping,
        pool_max: range_check(
            errors,
            &format!("{path}.pool_max"),
            d.pool_max.unwrap_or(4),
            1,
            64,
        ),
        tls,
    })
}

/// A separate place for the error output: a destination whose `prefix` is an
/// error prefix (it may use `!{firehose:error-output-type}`).
fn error_output(
    errors: &mut Vec<ConfigError>,
    path: &str,
    mut d: RawDestination,
    default_store: &StoreConfig,
    data_dir: &Path,
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
    let _ = data_dir;
    let mut out = destination(errors, path, d, default_store, KeyContext::default())?;
    out.error_output_prefix = prefix?;
    Some(out)
}

fn destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: RawDestination,
    default_store: &StoreConfig,
    key_ctx: KeyContext<'_>,
) -> Option<ObjectDestination> {
    let prefix_src = d.prefix.clone().unwrap_or_default();
    let prefix = match KeyTemplate::parse_with(&prefix_src, PrefixKind::Prefix, key_ctx) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(err(format!("{path}.prefix"), e));
            None
        }
    };
    let error_output_prefix = match &d.error_output_prefix {
        Some(src) => match KeyTemplate::parse(src, PrefixKind::ErrorOutputPrefix) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(err(format!("{path}.error_output_prefix"), e));
                None
            }
        },
        None => {
            if prefix_src.contains("!{") {
                errors.push(err(
                    format!("{path}.error_output_prefix"),
                    "is required when prefix uses expressions",
                ));
                None
            } else {
                Some(keys::default_error_prefix(&prefix_src))
            }
        }
    };
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
            };
            let any_override =
                d.endpoint.is_some() || d.region.is_some() || d.access_key_id.is_some();
            let store = match (default_store, any_override) {
                (StoreConfig::S3(base), false) => StoreConfig::S3(base.clone()),
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
                    StoreConfig::S3(s)
                }
                (StoreConfig::File { .. }, _) => {
                    StoreConfig::S3(s3_store(errors, path, &overrides))
                }
            };
            ("s3", store, bucket)
        }
        "file" => {
            for (field, set) in [
                ("bucket", d.bucket.is_some()),
                ("endpoint", d.endpoint.is_some()),
                ("region", d.region.is_some()),
                ("access_key_id", d.access_key_id.is_some()),
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
                    root: PathBuf::from(dir.clone()),
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
    Some(ObjectDestination {
        kind,
        store,
        bucket,
        prefix: prefix?,
        error_output_prefix: error_output_prefix?,
    })
}

#[cfg(test)]
mod tests;
