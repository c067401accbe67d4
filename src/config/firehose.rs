//! A `CreateDeliveryStream` request turned into a [`StreamConfig`], as the
//! same stream written in YAML would be.
//!
//! The request's prefixes, partitioning and bounds go through the functions
//! and limits YAML validation uses ([`object_keys`], [`partitioning`], the
//! buffering and retry bounds), so a stream the API accepts is one YAML
//! accepts and the other way round. What is the API's own is only its
//! vocabulary: Firehose's field names, its compression names, its
//! `MetadataExtraction` processor, and its two kinds of refusal
//! ([`RequestError`]). Used when a stream is created, and again when the
//! daemon restarts and recreates it from the request it persisted.

mod http;
mod iceberg;
mod redshift;

pub(crate) use iceberg::catalog_named;
pub use redshift::describe_yaml as postgres_as_redshift;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::destination::{Destination, ObjectDestination, object_keys};
use super::partitioning::partitioning;
use super::raw::RawPartitioning;
use super::stream::{BUFFER_INTERVAL_SECS, BUFFER_SIZE_MB, RETRY_DURATION_SECS};
use super::{Config, ConfigError, Source, StreamConfig, at_rest};
use crate::aws;
use crate::encode::{Compression, Encoding};
use crate::route::keys::KeyContext;
use crate::route::partition::Query;

/// Why a request cannot become a stream, as Firehose answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Values outside the API model's constraints (`ValidationException`),
    /// one message per field.
    #[error("{}", .0.join("; "))]
    Validation(Vec<String>),
    /// A well-formed request that cannot be carried out
    /// (`InvalidArgumentException`).
    #[error("{0}")]
    Invalid(String),
    /// A key the request names that cannot be used
    /// (`InvalidKMSResourceException`).
    #[error("{0}")]
    Kms(String),
}

pub(crate) fn invalid(message: impl Into<String>) -> RequestError {
    RequestError::Invalid(message.into())
}

/// Every destination configuration a request may carry; Hydrant supports
/// the two S3 ones, HTTP endpoints, Iceberg and Redshift (as PostgreSQL).
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

/// The request's destination configuration, with the key it came under.
pub fn destination_config(req: &Value) -> Option<(&'static str, &Value)> {
    DESTINATION_KEYS
        .iter()
        .find_map(|k| req.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
}

/// Builds a stream's config from a `CreateDeliveryStream` request.
pub fn stream_from_request(
    name: &str,
    req: &Value,
    cfg: &Config,
) -> Result<StreamConfig, RequestError> {
    let mut stream = destination_stream(name, req, cfg)?;
    stream.log_key = log_key(req, &stream.source, cfg)?;
    Ok(stream)
}

/// The key a request's `DeliveryStreamEncryptionConfigurationInput` seals
/// the stream's log with: `AWS_OWNED_CMK` the built-in key,
/// `CUSTOMER_MANAGED_CMK` the key of `log.keys` its `KeyARN` names.
pub fn log_key(req: &Value, source: &Source, cfg: &Config) -> Result<Option<String>, RequestError> {
    const FIELD: &str = "DeliveryStreamEncryptionConfigurationInput";
    let Some(input) = req.get(FIELD).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if matches!(source, Source::Kinesis { .. }) {
        return Err(invalid(format!(
            "{FIELD}: a delivery stream with a Kinesis stream as its source cannot be encrypted; encrypt the Kinesis stream (StartStreamEncryption)"
        )));
    }
    let arn = input.get("KeyARN").and_then(Value::as_str);
    let requested = match (input.get("KeyType").and_then(Value::as_str), arn) {
        (Some("AWS_OWNED_CMK"), None) => Some(crate::log::seal::BUILTIN_KEY),
        (Some("AWS_OWNED_CMK"), Some(_)) => {
            return Err(invalid(format!(
                "{FIELD}.KeyARN must not be given with KeyType AWS_OWNED_CMK"
            )));
        }
        (Some("CUSTOMER_MANAGED_CMK"), Some(arn)) => Some(at_rest::key_id_of_kms(arn)),
        (Some("CUSTOMER_MANAGED_CMK"), None) => {
            return Err(invalid(format!(
                "{FIELD}.KeyARN is required with KeyType CUSTOMER_MANAGED_CMK"
            )));
        }
        (other, _) => {
            return Err(RequestError::Validation(vec![format!(
                "Value '{}' at '{FIELD}.keyType' failed to satisfy constraint: Member must satisfy enum value set: [AWS_OWNED_CMK, CUSTOMER_MANAGED_CMK]",
                other.unwrap_or("null")
            )]));
        }
    };
    at_rest::resolve(&cfg.log.keys, cfg.cluster.is_some(), requested)
        .map(Some)
        .map_err(RequestError::Kms)
}

fn destination_stream(name: &str, req: &Value, cfg: &Config) -> Result<StreamConfig, RequestError> {
    let (kind, d) = s3_destination(req)?;
    let source = source(req)?;
    if kind == "IcebergDestinationConfiguration" {
        return iceberg::stream(name, d, source, cfg);
    }
    if kind == "HttpEndpointDestinationConfiguration" {
        return http::stream(name, d, source, cfg);
    }
    if kind == "RedshiftDestinationConfiguration" {
        return redshift::stream(name, d, source, cfg);
    }
    let str_field = |k: &str| d.get(k).and_then(Value::as_str);
    let bucket_arn = str_field("BucketARN").ok_or_else(|| {
        RequestError::Validation(vec![format!(
            "Value null at '{kind}.bucketARN' failed to satisfy constraint: Member must not be null"
        )])
    })?;
    let bucket = aws::bucket_from_arn(bucket_arn).ok_or_else(|| {
        invalid(format!(
            "BucketARN {bucket_arn} is not of the form arn:aws:s3:::BUCKET with a valid bucket name"
        ))
    })?;
    unsupported(d)?;
    let prefix_src = str_field("Prefix").unwrap_or("");
    let dynamic = dynamic_partitioning(d, prefix_src)?;
    let bounds = bounds(kind, d, dynamic.as_ref())?;
    let compression = compression(str_field("CompressionFormat"))?;

    let mut errors: Vec<ConfigError> = Vec::new();
    let names: Option<Vec<String>> = dynamic.as_ref().map(|p| p.keys.keys().cloned().collect());
    let key_ctx = KeyContext {
        query_keys: names.as_deref(),
        transform: false,
    };
    let keys = object_keys(
        &mut errors,
        ("Prefix", "ErrorOutputPrefix"),
        prefix_src,
        str_field("ErrorOutputPrefix"),
        key_ctx,
    );
    let Some((prefix, error_output_prefix)) = keys else {
        return Err(refused(errors));
    };
    let destination = ObjectDestination {
        kind: "s3",
        store: cfg.object_store.clone(),
        bucket: bucket.to_string(),
        prefix,
        error_output_prefix,
    };
    let partitioning = dynamic.and_then(|p| {
        partitioning(
            &mut errors,
            "DynamicPartitioningConfiguration",
            "Prefix",
            p,
            &destination,
            bounds.size_mb,
        )
    });
    if !errors.is_empty() {
        return Err(refused(errors));
    }
    let append_delimiter = processor(d, "AppendDelimiterToRecord").is_some();
    Ok(StreamConfig {
        encoding: Encoding::JsonLines {
            delimiter: if append_delimiter {
                b"\n".to_vec()
            } else {
                Vec::new()
            },
        },
        compression,
        partitioning: partitioning.map(Arc::new),
        ..api_stream(
            name,
            source,
            &bounds,
            bounds.retry_secs,
            destination.clone(),
            Destination::Object(Box::new(destination)),
        )
    })
}

/// Where records that cannot be delivered go, for a destination whose
/// failed data lands in its `S3Configuration`'s bucket (HTTP endpoint,
/// Iceberg): under `error_prefix` (named `error_field` in errors), and every
/// record under the bucket's `Prefix` with `S3BackupMode: AllData`.
pub(crate) fn failed_output(
    s3: &Value,
    (error_field, error_prefix): (&str, Option<&str>),
    mode: Option<&str>,
    cfg: &Config,
) -> Result<(ObjectDestination, Option<super::destination::Backup>), RequestError> {
    use super::destination::{Backup, BackupMode};
    let arn = s3.get("BucketARN").and_then(Value::as_str).unwrap_or("");
    let bucket = aws::bucket_from_arn(arn).ok_or_else(|| {
        invalid(format!(
            "S3Configuration.BucketARN {arn} is not of the form arn:aws:s3:::BUCKET with a valid bucket name"
        ))
    })?;
    let mut errors: Vec<ConfigError> = Vec::new();
    let keys = object_keys(
        &mut errors,
        ("S3Configuration.Prefix", error_field),
        s3.get("Prefix").and_then(Value::as_str).unwrap_or(""),
        error_prefix,
        KeyContext::default(),
    );
    let Some((prefix, error_output_prefix)) = keys else {
        return Err(refused(errors));
    };
    let target = ObjectDestination {
        kind: "s3",
        store: cfg.object_store.clone(),
        bucket: bucket.to_string(),
        prefix,
        error_output_prefix,
    };
    let backup = match mode {
        None | Some("FailedDataOnly") => None,
        Some("AllData") => Some(Backup {
            mode: BackupMode::All,
            target: target.clone(),
        }),
        Some(other) => {
            return Err(invalid(format!(
                "S3BackupMode {other} is not one of FailedDataOnly, AllData"
            )));
        }
    };
    Ok((target, backup))
}

/// What an S3 destination may ask for that the API cannot give yet: refused
/// rather than ignored, so a stream never delivers other than was asked.
fn unsupported(d: &Value) -> Result<(), RequestError> {
    if enabled(d, "DataFormatConversionConfiguration") {
        return Err(invalid(
            "DataFormatConversionConfiguration is not supported through the API yet; declare the stream's Parquet encoding in YAML",
        ));
    }
    if d.get("S3BackupMode").and_then(Value::as_str) == Some("Enabled") {
        return Err(invalid(
            "S3BackupMode Enabled is not supported through the API yet; declare the stream's backup in YAML",
        ));
    }
    Ok(())
}

/// `RetryOptions.DurationInSeconds` (0 to 7200), `default` when not given.
pub(crate) fn retry_options(d: &Value, default: u64) -> Result<u64, RequestError> {
    let secs = d
        .get("RetryOptions")
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(default);
    if secs > 7200 {
        return Err(invalid(format!(
            "RetryOptions.DurationInSeconds {secs} must be between 0 and 7200"
        )));
    }
    Ok(secs)
}

/// Whether the request's `k` configuration says `Enabled: true`.
pub(crate) fn enabled(d: &Value, k: &str) -> bool {
    d.get(k)
        .and_then(|c| c.get("Enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The stream of a request whose records go to `destination` and whose
/// failed records to `error_output`: JSON lines as given, uncompressed, 4 shards, the request's buffering and retry. Callers
/// set what differs with struct update syntax.
pub(crate) fn api_stream(
    name: &str,
    source: Source,
    bounds: &Bounds,
    retry_secs: u64,
    error_output: ObjectDestination,
    destination: Destination,
) -> StreamConfig {
    StreamConfig {
        name: name.to_string(),
        source,
        shards: 4,
        buffer_bytes: bounds.size_mb << 20,
        buffer_interval: Duration::from_secs(bounds.interval_secs),
        encoding: Encoding::JsonLines {
            delimiter: Vec::new(),
        },
        compression: Compression::None,
        compression_level: None,
        encryption: None,
        retry_duration: Duration::from_secs(retry_secs),
        uploads_in_flight_max: 4,
        partitioning: None,
        error_output,
        destination,
        backup: None,
        transform: None,
        log_key: None,
        fingerprint: String::new(),
    }
}

/// What validation found, as one `InvalidArgumentException`.
pub(crate) fn refused(errors: Vec<ConfigError>) -> RequestError {
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    invalid(messages.join("; "))
}

/// The request's one destination configuration, which must be an S3 one.
fn s3_destination(req: &Value) -> Result<(&'static str, &Value), RequestError> {
    let present = DESTINATION_KEYS
        .iter()
        .filter(|k| req.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    if present != 1 {
        return Err(invalid(
            "Exactly one destination configuration is supported for a Firehose",
        ));
    }
    let (kind, d) = destination_config(req)
        .ok_or_else(|| invalid("a destination configuration is required"))?;
    if !matches!(
        kind,
        "ExtendedS3DestinationConfiguration"
            | "S3DestinationConfiguration"
            | "IcebergDestinationConfiguration"
            | "HttpEndpointDestinationConfiguration"
            | "RedshiftDestinationConfiguration"
    ) {
        return Err(invalid(format!(
            "{kind} is not supported by Hydrant; use ExtendedS3DestinationConfiguration, HttpEndpointDestinationConfiguration, IcebergDestinationConfiguration or RedshiftDestinationConfiguration (PostgreSQL)"
        )));
    }
    Ok((kind, d))
}

/// `DeliveryStreamType`: put to directly, or reading a Kinesis stream.
fn source(req: &Value) -> Result<Source, RequestError> {
    match req.get("DeliveryStreamType").and_then(Value::as_str) {
        None | Some("DirectPut") => Ok(Source::DirectPut),
        Some("KinesisStreamAsSource") => {
            let arn = req
                .get("KinesisStreamSourceConfiguration")
                .and_then(|k| k.get("KinesisStreamARN"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "KinesisStreamSourceConfiguration.KinesisStreamARN is required for a KinesisStreamAsSource delivery stream",
                    )
                })?;
            let stream = aws::kinesis_stream_from_arn(arn).ok_or_else(|| {
                invalid(format!(
                    "KinesisStreamARN {arn} is not of the form arn:aws:kinesis:REGION:ACCOUNT:stream/NAME"
                ))
            })?;
            Ok(Source::Kinesis {
                stream: stream.to_string(),
            })
        }
        Some(t) => Err(invalid(format!(
            "DeliveryStreamType {t} is not supported by Hydrant; use DirectPut or KinesisStreamAsSource"
        ))),
    }
}

/// A request's buffering and retry, within the bounds YAML has.
pub(crate) struct Bounds {
    size_mb: u64,
    interval_secs: u64,
    retry_secs: u64,
}

/// `BufferingHints` (Firehose's default size is 64 MiB with dynamic
/// partitioning, else 5) and the retry duration, refused as Firehose's model
/// refuses a value out of range.
fn bounds(
    kind: &str,
    d: &Value,
    dynamic: Option<&RawPartitioning>,
) -> Result<Bounds, RequestError> {
    let hints = d.get("BufferingHints");
    let hint = |k: &str| hints.and_then(|h| h.get(k)).and_then(Value::as_u64);
    let size_mb = hint("SizeInMBs").unwrap_or(if dynamic.is_some() { 64 } else { 5 });
    let interval_secs = hint("IntervalInSeconds").unwrap_or(300);
    let retry_secs = dynamic
        .and_then(|_| d.get("DynamicPartitioningConfiguration"))
        .and_then(|c| c.get("RetryOptions"))
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(3600);
    let mut v = Vec::new();
    let mut check = |value: u64, (lo, hi): (u64, u64), field: &str| {
        if !(lo..=hi).contains(&value) {
            v.push(format!("Value '{value}' at '{kind}.{field}' failed to satisfy constraint: Member must have value between {lo} and {hi}"));
        }
    };
    check(size_mb, BUFFER_SIZE_MB, "bufferingHints.sizeInMBs");
    check(
        interval_secs,
        BUFFER_INTERVAL_SECS,
        "bufferingHints.intervalInSeconds",
    );
    check(
        retry_secs,
        RETRY_DURATION_SECS,
        "dynamicPartitioningConfiguration.retryOptions.durationInSeconds",
    );
    if !v.is_empty() {
        return Err(RequestError::Validation(v));
    }
    Ok(Bounds {
        size_mb,
        interval_secs,
        retry_secs,
    })
}

/// `CompressionFormat`, in Firehose's names.
fn compression(format: Option<&str>) -> Result<Compression, RequestError> {
    match format.unwrap_or("UNCOMPRESSED") {
        "UNCOMPRESSED" => Ok(Compression::None),
        "GZIP" => Ok(Compression::Gzip),
        "Snappy" => Ok(Compression::Snappy),
        other => Err(invalid(format!(
            "CompressionFormat {other} is not supported by Hydrant (UNCOMPRESSED, GZIP, Snappy)"
        ))),
    }
}

/// `DynamicPartitioningConfiguration` with its `MetadataExtraction`
/// processor (`MetadataExtractionQuery`, a jq expression yielding an object
/// of key values, as Firehose's `JQ-1.6` engine runs it), as the
/// `dynamic_partitioning` section YAML would give: one key per name the
/// Prefix uses as `!{partitionKeyFromQuery:NAME}`, each the query's field of
/// that name. `None` when it is not enabled.
fn dynamic_partitioning(d: &Value, prefix: &str) -> Result<Option<RawPartitioning>, RequestError> {
    let names = query_key_names(prefix);
    let enabled = d
        .get("DynamicPartitioningConfiguration")
        .and_then(|c| c.get("Enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !enabled {
        if !names.is_empty() {
            return Err(invalid(
                "Prefix: partitionKeyFromQuery namespace is only supported when DynamicPartitioningConfiguration is enabled",
            ));
        }
        return Ok(None);
    }
    let param = |name: &str| processor_param(d, "MetadataExtraction", name);
    if let Some(engine) = param("JsonParsingEngine")
        && engine != "JQ-1.6"
    {
        return Err(invalid(format!(
            "JsonParsingEngine {engine} is not supported (JQ-1.6)"
        )));
    }
    if names.is_empty() {
        return Err(invalid(
            "Prefix: with DynamicPartitioningConfiguration enabled, the Prefix must use at least one !{partitionKeyFromQuery:NAME} expression",
        ));
    }
    let Some(query) = param("MetadataExtractionQuery") else {
        return Err(invalid(
            "Prefix uses partitionKeyFromQuery, which needs a MetadataExtraction processor with a MetadataExtractionQuery in ProcessingConfiguration",
        ));
    };
    // Checked whole first, so an error points at the query as written.
    Query::compile(query).map_err(|e| invalid(format!("MetadataExtractionQuery `{query}` {e}")))?;
    let keys: BTreeMap<String, String> = names
        .into_iter()
        .map(|name| {
            let key = format!("({query}) | .[\"{name}\"]");
            (name, key)
        })
        .collect();
    Ok(Some(RawPartitioning {
        keys,
        ..RawPartitioning::default()
    }))
}

/// The names in a prefix's `!{partitionKeyFromQuery:NAME}` expressions,
/// each once, in first-use order.
fn query_key_names(prefix: &str) -> Vec<String> {
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

/// The value of parameter `name` of the enabled processor of type `kind`.
pub fn processor_param<'a>(d: &'a Value, kind: &str, name: &str) -> Option<&'a str> {
    processor(d, kind)?
        .get("Parameters")?
        .as_array()?
        .iter()
        .find_map(|p| {
            (p.get("ParameterName").and_then(Value::as_str) == Some(name))
                .then(|| p.get("ParameterValue").and_then(Value::as_str))
                .flatten()
        })
}

/// The enabled `ProcessingConfiguration`'s processor of this type, if any.
pub fn processor<'a>(d: &'a Value, kind: &str) -> Option<&'a Value> {
    d.get("ProcessingConfiguration")
        .filter(|p| p.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|p| p.get("Processors"))
        .and_then(Value::as_array)?
        .iter()
        .find(|p| p.get("Type").and_then(Value::as_str) == Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_key_names_are_read_from_the_prefix_once_each_in_order() {
        assert_eq!(
            query_key_names(
                "a/!{partitionKeyFromQuery:x}/!{timestamp:yyyy}/!{partitionKeyFromQuery:y}-!{partitionKeyFromQuery:x}/"
            ),
            vec!["x".to_string(), "y".to_string()]
        );
        assert!(query_key_names("plain/!{firehose:random-string}/").is_empty());
        // An unclosed expression ends the scan (the template parser names it).
        assert!(query_key_names("a/!{partitionKeyFromQuery:x").is_empty());
    }
}
