//! The config file exactly as written: serde structs that reject unknown keys
//! and leave every default to validation. Nothing here is trusted by the
//! running pipeline; `super::validate` turns it into `super::Config`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub listen_tls: Option<RawListenTls>,
    pub data_dir: Option<String>,
    pub shutdown_timeout_secs: Option<u64>,
    pub auth: Option<RawAuth>,
    pub limits: Option<RawLimits>,
    pub log: Option<RawLog>,
    pub object_store: Option<RawStore>,
    pub kinesis: Option<RawKinesis>,
    pub video: Option<RawVideo>,
    pub analytics: Option<super::analytics::RawAnalytics>,
    pub cluster: Option<RawCluster>,
    pub iceberg: Option<RawIceberg>,
    #[serde(default)]
    pub streams: BTreeMap<String, RawStream>,
}

/// The HTTPS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenTls {
    pub address: String,
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: Option<String>,
}

/// The Kinesis Data Streams API's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKinesis {
    pub shards_max: Option<u32>,
    pub stream_shards_max: Option<u32>,
    pub scalings_per_day_max: Option<u32>,
    pub consumers_per_stream_max: Option<usize>,
    pub subscriptions_max: Option<usize>,
    pub subscription_secs: Option<u64>,
    pub subscription_queue_events: Option<usize>,
    pub consumer_activation_ms: Option<u64>,
    pub on_demand_split_secs: Option<u64>,
    pub iterator_ttl_secs: Option<u64>,
    pub shard_write_limits: Option<bool>,
    pub queues_max: Option<usize>,
    pub queue_in_flight_max: Option<usize>,
    pub queue_long_polls_max: Option<usize>,
    #[serde(default)]
    pub streams: BTreeMap<String, RawKinesisStream>,
}

/// The Kinesis Video Streams API's bounds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVideo {
    pub streams_max: Option<usize>,
    pub sessions_per_stream_max: Option<usize>,
    pub session_bytes_per_sec: Option<u64>,
    pub fragment_bytes_max: Option<usize>,
    pub fragment_duration_secs: Option<u64>,
    pub session_idle_secs: Option<u64>,
    pub readers_per_stream_max: Option<usize>,
    pub archive: Option<RawVideoArchive>,
}

/// `video.archive`: fragments as MKV objects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVideoArchive {
    pub destination: RawDestination,
    pub streams: Option<Vec<String>>,
}

/// A Kinesis stream declared in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKinesisStream {
    pub shards: Option<u32>,
    pub retention_hours: Option<u32>,
    pub log_encryption: Option<RawLogEncryption>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub access_keys: Vec<RawAccessKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// An IAM policy document: YAML, or the JSON text of one.
    pub policy: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub request_bytes_max: Option<u64>,
    pub requests_in_flight_max: Option<usize>,
    pub api_streams_max: Option<usize>,
    pub encoders_max: Option<usize>,
    pub gzip_member_bytes: Option<usize>,
    pub gzip_threads_max: Option<usize>,
    pub malloc_arenas: Option<usize>,
    pub ack_slice_us: Option<u64>,
    pub tls_handshake_timeout_secs: Option<u64>,
    pub connections_max: Option<usize>,
    pub header_read_timeout_secs: Option<u64>,
    pub body_read_timeout_secs: Option<u64>,
    pub tls_handshakes_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub segment_bytes: Option<u64>,
    pub append_queue_max: Option<usize>,
    pub group_commit_bytes_max: Option<usize>,
    pub put_run_bytes: Option<u64>,
    pub disk_quota_bytes: Option<u64>,
    pub fsync: Option<String>,
    /// Keys for encryption at rest; the first is a stream's default.
    pub keys: Option<Vec<RawKey>>,
}

/// A stream's `log_encryption`: its log's records sealed at rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogEncryption {
    /// A key id of `log.keys`, or `builtin`; the first of `log.keys` (else
    /// `builtin`) when left out.
    pub key: Option<String>,
}

/// An object store: a local directory or an S3-compatible service.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// file: the directory that holds one folder per bucket.
    pub root: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub path_style: Option<bool>,
    pub allow_http: Option<bool>,
    /// s3: how long one request may take, from connecting to the last byte.
    pub timeout_secs: Option<u64>,
    /// s3: how long connecting may take.
    pub connect_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    pub column: String,
    /// The JSON field; defaults to the column's name. Dots reach into objects.
    pub field: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// disable | require
    pub mode: String,
    /// PEM file of the CA that signed the server's certificate (default: the
    /// system's roots).
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    /// all | failed_only (Firehose's AllData / FailedDataOnly).
    pub mode: String,
    /// Where the copy goes: an s3 or file destination.
    pub destination: RawDestination,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub source: Option<RawSource>,
    pub shards: Option<u32>,
    pub buffering: Option<RawBuffering>,
    pub encoding: Option<RawEncoding>,
    pub compression: Option<String>,
    pub compression_level: Option<i32>,
    pub encryption: Option<RawEncryption>,
    pub retry_duration_secs: Option<u64>,
    pub uploads_in_flight_max: Option<usize>,
    pub destination: Option<RawDestination>,
    pub error_output: Option<RawDestination>,
    pub backup: Option<RawBackup>,
    pub dynamic_partitioning: Option<RawPartitioning>,
    pub transform: Option<RawTransform>,
    pub log_encryption: Option<RawLogEncryption>,
}

/// Where a delivery stream's records come from when it is not put to
/// directly: a Kinesis stream, read with the delivery stream's own checkpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kinesis_stream: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransform {
    /// The WebAssembly component (`hydrant:transform` world).
    pub wasm: String,
    /// Given to the component's `init`: a string as is, anything else as JSON.
    pub config: Option<serde_norway::Value>,
    pub batch_records_max: Option<usize>,
    pub batch_mb_max: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub memory_mb_max: Option<u64>,
    pub instances_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartitioning {
    /// name -> jq expression, used as `!{partitionKeyFromQuery:name}`.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
    /// The record's own time for `!{timestamp:...}` (default: its arrival).
    pub timestamp: Option<RawRecordTime>,
    pub open_partitions_max: Option<usize>,
    pub open_buffer_mb_max: Option<u64>,
    pub read_records_min: Option<u64>,
    pub read_wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecordTime {
    /// A jq expression yielding the time.
    pub query: String,
    /// rfc3339 (default) | epoch_seconds | epoch_millis | a strftime pattern.
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffering {
    pub size_mb: Option<u64>,
    pub interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncoding {
    pub format: Option<String>,
    /// json_lines: appended to records that do not end with it.
    pub delimiter: Option<String>,
    /// parquet: the columns.
    pub schema: Option<Vec<RawColumnType>>,
    /// parquet: rows per row group.
    pub row_group_rows: Option<usize>,
    /// parquet: column compression (none, snappy, gzip, zstd).
    pub compression: Option<String>,
    /// parquet: the column compression's level (gzip 0-9, zstd 1-22).
    pub compression_level: Option<i32>,
    /// parquet: dictionary encoding (default true).
    pub dictionary: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumnType {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub nullable: Option<bool>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    #[serde(rename = "type")]
    pub kind: String,
    /// s3: the bucket.
    pub bucket: Option<String>,
    /// file: the directory objects are written under.
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub error_output_prefix: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub path_style: Option<bool>,
    pub allow_http: Option<bool>,
    /// http: the endpoint URL.
    pub url: Option<String>,
    /// http: sent as X-Amz-Firehose-Access-Key.
    pub access_key: Option<String>,
    /// http: sent as X-Amz-Firehose-Common-Attributes.
    pub common_attributes: Option<BTreeMap<String, String>>,
    /// http: none | gzip.
    pub content_encoding: Option<String>,
    /// http: how long to wait for an answer; s3: how long one request may
    /// take, from connecting to the last byte.
    pub timeout_secs: Option<u64>,
    /// s3: how long connecting may take.
    pub connect_timeout_secs: Option<u64>,
    /// http: records per request (Firehose sends at most 10,000).
    pub records_per_request_max: Option<usize>,
    /// postgres: a libpq-style connection string or URL.
    pub connection: Option<String>,
    /// postgres: the table records are loaded into.
    pub table: Option<String>,
    /// postgres: column <- JSON field mapping.
    pub columns: Option<Vec<RawColumn>>,
    /// postgres: load each whole record into this jsonb column instead.
    pub jsonb_column: Option<String>,
    /// postgres: connections in the pool.
    pub pool_max: Option<usize>,
    /// postgres: TLS to the server.
    pub tls: Option<RawTls>,
    /// iceberg: the catalog's name under `iceberg.catalogs` (default `hydrant`).
    pub catalog: Option<String>,
    /// iceberg: the table's namespace (Firehose's database).
    pub namespace: Option<String>,
    /// iceberg: partition transforms, `day(ts)`, `bucket(16, user_id)`, ...
    pub partition_by: Option<Vec<String>>,
    /// iceberg: create the table from the declared schema if it is missing.
    pub create_table: Option<bool>,
    /// iceberg: how often pending data files are committed.
    pub commit_interval_secs: Option<u64>,
    /// iceberg: a data file is rolled over at this size.
    pub file_size_mb: Option<u64>,
    /// iceberg: batches of a shard written and waiting for their commit.
    pub batches_awaiting_commit_max: Option<usize>,
    /// iceberg: which snapshots are kept.
    pub snapshots: Option<RawSnapshots>,
    /// iceberg: the table of each record, from jq expressions.
    pub route: Option<RawRoute>,
    /// iceberg: tables written at once (routed streams).
    pub tables_open_max: Option<usize>,
}

/// `destination.route` of an iceberg destination: jq expressions giving a
/// record's namespace and table (either may be fixed instead).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub namespace: Option<String>,
    pub table: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// The first key encrypts new objects; every key listed can decrypt.
    pub keys: Vec<RawKey>,
    pub chunk_bytes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    /// A file holding 32 raw bytes, 64 hex characters or base64.
    pub file: Option<String>,
    /// An environment variable holding 64 hex characters or base64.
    pub env: Option<String>,
}

/// `cluster`: run on NATS JetStream with other nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub node_id: Option<String>,
    pub nats: Option<RawNats>,
    pub lease_secs: Option<u64>,
}

/// `cluster.nats`: how to reach and use the NATS servers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    #[serde(default)]
    pub servers: Vec<String>,
    pub replicas: Option<usize>,
    pub monitor: Option<Vec<String>>,
    pub allow_unsynced: Option<bool>,
    pub publishes_in_flight: Option<usize>,
    pub shard_bytes_max: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub start_wait_secs: Option<u64>,
    pub patience_secs: Option<u64>,
    pub credentials_file: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub tls_ca_file: Option<String>,
}

/// `iceberg`: the catalogs Iceberg destinations name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIceberg {
    #[serde(default)]
    pub catalogs: BTreeMap<String, RawCatalog>,
}

/// `iceberg.catalogs.NAME`: an Iceberg catalog and its warehouse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    /// sql (the JDBC layout, on SQLite or PostgreSQL).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// sqlite:///path/catalog.db | postgresql://user:password@host/db
    pub uri: String,
    /// s3://bucket/prefix, file:///dir or a directory.
    pub warehouse: String,
    /// The S3 store of an s3:// warehouse (default: `object_store`).
    pub store: Option<RawStore>,
}

/// `destination.snapshots` of an iceberg destination.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSnapshots {
    pub max_age_hours: Option<u64>,
    pub keep_min: Option<usize>,
}
