//! A `CreateDeliveryStream` request made into a [`StreamConfig`]: the
//! destination (Extended S3 only), buffering hints, compression, and dynamic
//! partitioning with its `MetadataExtraction` query. Used when the stream is
//! created and again, from the stored request, when the daemon restarts, so
//! it must stay a pure function of the request and the daemon's config.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::aws;
use crate::config::{
    self, Compression, Config, Destination, Encoding, ObjectDestination, StreamConfig,
};
use crate::ingest::error::ApiError;
use crate::route::keys::{self, KeyTemplate, PrefixKind};
use crate::route::partition::{Partitioner, Query, is_key_name};

const DESTINATION_KEYS: &[&str] = &[
    "S3DestinationConfiguration",
    "ExtendedS3DestinationConfiguration",
    "RedshiftDestinationConfiguration",
    "ElasticsearchDestinationConfiguration",
    "AmazonopensearchserviceDestinationConfiguration",
    "AmazonOpenSearchServerlessDestinationConfiguration",
    "SplunkDestinationConfiguration",
    "HttpEndpointDestinationConfiguration",
    "SnowflakeDestinationConfiguration",
    "IcebergDestinationConfiguration",
];

pub(super) fn destination_config(req: &Value) -> Option<(&'static str, &Value)> {
    DESTINATION_KEYS
        .iter()
        .find_map(|k| req.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
}

/// Builds a stream's config from a `CreateDeliveryStream` request. Used when
/// the stream is created and again when the daemon restarts.
pub fn stream_config_from_request(
    name: &str,
    req: &Value,
    cfg: &Config,
) -> Result<StreamConfig, ApiError> {
    let present: Vec<&str> = DESTINATION_KEYS
        .iter()
        .copied()
        .filter(|k| req.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if present.len() != 1 {
        return Err(ApiError::invalid_argument(
            "Exactly one destination configuration is supported for a Firehose",
        ));
    }
    let (kind, d) = destination_config(req)
        .ok_or_else(|| ApiError::invalid_argument("a destination configuration is required"))?;
    if kind != "ExtendedS3DestinationConfiguration" && kind != "S3DestinationConfiguration" {
        return Err(ApiError::invalid_argument(format!(
            "{kind} is not supported by Hydrant; use ExtendedS3DestinationConfiguration"
        )));
    }
    let source = match req.get("DeliveryStreamType").and_then(Value::as_str) {
        None | Some("DirectPut") => config::Source::DirectPut,
        Some("KinesisStreamAsSource") => {
            let arn = req
                .get("KinesisStreamSourceConfiguration")
                .and_then(|k| k.get("KinesisStreamARN"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid_argument(
                        "KinesisStreamSourceConfiguration.KinesisStreamARN is required for a KinesisStreamAsSource delivery stream",
                    )
                })?;
            let stream = aws::kinesis_stream_from_arn(arn).ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "KinesisStreamARN {arn} is not of the form arn:aws:kinesis:REGION:ACCOUNT:stream/NAME"
                ))
            })?;
            config::Source::Kinesis {
                stream: stream.to_string(),
            }
        }
        Some(t) => {
            return Err(ApiError::invalid_argument(format!(
                "DeliveryStreamType {t} is not supported by Hydrant; use DirectPut or KinesisStreamAsSource"
            )));
        }
    };
    let str_field = |k: &str| d.get(k).and_then(Value::as_str);
    let bucket_arn = str_field("BucketARN").ok_or_else(|| {
        ApiError::validation(&[format!(
            "Value null at '{kind}.bucketARN' failed to satisfy constraint: Member must not be null"
        )])
    })?;
    let bucket = aws::bucket_from_arn(bucket_arn).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "BucketARN {bucket_arn} is not of the form arn:aws:s3:::BUCKET with a valid bucket name"
        ))
    })?;
    let prefix_src = str_field("Prefix").unwrap_or("");
    let dynamic = dynamic_partitioning(d, prefix_src)?;
    let prefix = KeyTemplate::parse_with(
        prefix_src,
        PrefixKind::Prefix,
        keys::KeyContext {
            query_keys: dynamic.as_ref().map(|p| p.names.as_slice()),
            transform: false,
        },
    )
    .map_err(|e| ApiError::invalid_argument(format!("Prefix: {e}")))?;
    let error_output_prefix = match str_field("ErrorOutputPrefix") {
        Some(s) => KeyTemplate::parse(s, PrefixKind::ErrorOutputPrefix)
            .map_err(|e| ApiError::invalid_argument(format!("ErrorOutputPrefix: {e}")))?,
        None if prefix_src.contains("!{") => {
            return Err(ApiError::invalid_argument(
                "ErrorOutputPrefix is required when Prefix uses expressions",
            ));
        }
        None => keys::default_error_prefix(prefix_src),
    };
    let hints = d.get("BufferingHints");
    // Firehose's default is 64 MiB with dynamic partitioning, else 5.
    let size_mb = hints
        .and_then(|h| h.get("SizeInMBs"))
        .and_then(Value::as_u64)
        .unwrap_or(if dynamic.is_some() { 64 } else { 5 });
    let interval = hints
        .and_then(|h| h.get("IntervalInSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(300);
    let mut v = Vec::new();
    if !(1..=128).contains(&size_mb) {
        v.push(format!("Value '{size_mb}' at '{kind}.bufferingHints.sizeInMBs' failed to satisfy constraint: Member must have value between 1 and 128"));
    }
    if interval > 900 {
        v.push(format!("Value '{interval}' at '{kind}.bufferingHints.intervalInSeconds' failed to satisfy constraint: Member must have value between 0 and 900"));
    }
    let retry_secs = dynamic.as_ref().and_then(|p| p.retry_secs).unwrap_or(3600);
    if retry_secs > 7200 {
        v.push(format!("Value '{retry_secs}' at '{kind}.dynamicPartitioningConfiguration.retryOptions.durationInSeconds' failed to satisfy constraint: Member must have value between 0 and 7200"));
    }
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let compression = match str_field("CompressionFormat").unwrap_or("UNCOMPRESSED") {
        "UNCOMPRESSED" => Compression::None,
        "GZIP" => Compression::Gzip,
        "Snappy" => Compression::Snappy,
        other => {
            return Err(ApiError::invalid_argument(format!(
                "CompressionFormat {other} is not supported by Hydrant (UNCOMPRESSED, GZIP, Snappy)"
            )));
        }
    };
    let append_delimiter = processor(d, "AppendDelimiterToRecord").is_some();
    let destination = ObjectDestination {
        kind: "s3",
        store: cfg.object_store.clone(),
        bucket: bucket.to_string(),
        prefix,
        error_output_prefix,
    };
    Ok(StreamConfig {
        name: name.to_string(),
        source,
        shards: 4,
        buffer_bytes: size_mb << 20,
        buffer_interval: Duration::from_secs(interval),
        encoding: Encoding::JsonLines {
            delimiter: if append_delimiter {
                b"\n".to_vec()
            } else {
                Vec::new()
            },
        },
        compression,
        compression_level: None,
        encryption: None,
        retry_duration: Duration::from_secs(retry_secs),
        uploads_in_flight_max: 4,
        partitioning: dynamic.map(|p| {
            Arc::new(Partitioner {
                keys: p.keys,
                time: None,
                template: destination.prefix.clone(),
                open_partitions_max: config::DEFAULT_OPEN_PARTITIONS,
                open_bytes_max: config::default_open_mb(size_mb) << 20,
            })
        }),
        error_output: destination.clone(),
        destination: Destination::Object(destination),
        backup: None,
        transform: None,
        fingerprint: String::new(),
    })
}

/// A `CreateDeliveryStream` request's dynamic partitioning.
struct DynamicPartitioning {
    /// The names the Prefix uses as `!{partitionKeyFromQuery:NAME}`, in
    /// first-use order...
    names: Vec<String>,
    /// ...each with the query that picks its value: the field of that name
    /// in what `MetadataExtractionQuery` yields.
    keys: Vec<(String, Query)>,
    retry_secs: Option<u64>,
}

/// `DynamicPartitioningConfiguration` with its `MetadataExtraction`
/// processor (`MetadataExtractionQuery`, a jq expression yielding an object
/// of key values, as Firehose's `JQ-1.6` engine runs it). `None` when it is
/// not enabled.
fn dynamic_partitioning(d: &Value, prefix: &str) -> Result<Option<DynamicPartitioning>, ApiError> {
    let names = query_key_names(prefix);
    let config = d.get("DynamicPartitioningConfiguration");
    let enabled = config
        .and_then(|c| c.get("Enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !enabled {
        if !names.is_empty() {
            return Err(ApiError::invalid_argument(
                "Prefix: partitionKeyFromQuery namespace is only supported when DynamicPartitioningConfiguration is enabled",
            ));
        }
        return Ok(None);
    }
    let params = processor(d, "MetadataExtraction")
        .and_then(|p| p.get("Parameters"))
        .and_then(Value::as_array);
    let param = |name: &str| {
        params.as_ref().and_then(|ps| {
            ps.iter().find_map(|p| {
                (p.get("ParameterName").and_then(Value::as_str) == Some(name))
                    .then(|| p.get("ParameterValue").and_then(Value::as_str))
                    .flatten()
            })
        })
    };
    if let Some(engine) = param("JsonParsingEngine")
        && engine != "JQ-1.6"
    {
        return Err(ApiError::invalid_argument(format!(
            "JsonParsingEngine {engine} is not supported (JQ-1.6)"
        )));
    }
    let query = param("MetadataExtractionQuery");
    if names.is_empty() {
        return Err(ApiError::invalid_argument(
            "Prefix: with DynamicPartitioningConfiguration enabled, the Prefix must use at least one !{partitionKeyFromQuery:NAME} expression",
        ));
    }
    let Some(query) = query else {
        return Err(ApiError::invalid_argument(
            "Prefix uses partitionKeyFromQuery, which needs a MetadataExtraction processor with a MetadataExtractionQuery in ProcessingConfiguration",
        ));
    };
    // Checked whole first, so an error points at the query as written.
    Query::compile(query).map_err(|e| {
        ApiError::invalid_argument(format!("MetadataExtractionQuery `{query}` {e}"))
    })?;
    let mut keys = Vec::with_capacity(names.len());
    for name in &names {
        if !is_key_name(name) {
            return Err(ApiError::invalid_argument(format!(
                "Prefix: partition key name `{name}` must be letters, digits, `_` and `-`"
            )));
        }
        let q = Query::compile(&format!("({query}) | .[\"{name}\"]")).map_err(|e| {
            ApiError::invalid_argument(format!("MetadataExtractionQuery `{query}` {e}"))
        })?;
        keys.push((name.clone(), q));
    }
    let retry_secs = config
        .and_then(|c| c.get("RetryOptions"))
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_u64);
    Ok(Some(DynamicPartitioning {
        names,
        keys,
        retry_secs,
    }))
}

/// The names in a prefix's `!{partitionKeyFromQuery:NAME}` expressions,
/// each once, in first-use order.
pub(super) fn query_key_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = prefix;
    while let Some(start) = rest.find("!{partitionKeyFromQuery:") {
        let after = &rest[start + "!{partitionKeyFromQuery:".len()..];
        let Some(end) = after.find('}') else { break };
        let name = after[..end].to_string();
        if !names.contains(&name) {
            names.push(name);
        }
        rest = &after[end..];
    }
    names
}

/// The enabled `ProcessingConfiguration`'s processor of this type, if any.
fn processor<'a>(d: &'a Value, kind: &str) -> Option<&'a Value> {
    d.get("ProcessingConfiguration")
        .filter(|p| p.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|p| p.get("Processors"))
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get("Type").and_then(Value::as_str) == Some(kind))
}
