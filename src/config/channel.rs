//! A Kinesis `CreateChannel` request turned into a [`StreamConfig`]: a
//! channel is a delivery stream that reads a Kinesis stream and writes to a
//! general purpose S3 bucket (`S3DestinationConfiguration`: objects of
//! records, compressed) or to an Iceberg table (`S3TablesDestinationConfiguration`:
//! a table created from the records, partitioned by `TIME_HOUR` of a
//! timestamp column). Hydrant's Iceberg catalogs stand in for S3 Tables:
//! the `TableBucketARN`'s bucket names a catalog under `iceberg.catalogs`,
//! and when YAML declares none it is the default catalog `hydrant`.
//!
//! Field checks follow the Kinesis model (`ValidationException` naming the
//! field); what the model allows but a channel cannot do is an
//! `InvalidArgumentException` ([`RequestError::Invalid`]). Used when a
//! channel is created or updated, and when the daemon restarts and
//! recreates it from the request it persisted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::destination::{Destination, ObjectDestination, object_keys};
use super::firehose::{RequestError, catalog_named, invalid, refused};
use super::iceberg::{DEFAULT_TABLES_OPEN, IcebergDestination, PartitionField, SnapshotPolicy};
use super::stream::BUFFER_INTERVAL_SECS;
use super::{Config, ConfigError, Source, StreamConfig};
use crate::aws;
use crate::encode::{Compression, Encoding};
use crate::route::keys::KeyContext;

/// `DataFreshnessInSeconds` when the request gives none.
pub const DATA_FRESHNESS_SECS: u64 = 300;
/// The freshness a table channel may ask for: its commit interval.
pub const TABLES_DATA_FRESHNESS_SECS: (u64, u64) = (1, 3600);
/// Where error records go in the destination bucket when the request names
/// no dead-letter prefix.
pub const DEFAULT_ERROR_PREFIX: &str = "errors/!{firehose:error-output-type}/";
/// Buffered per shard before an S3 object is written, whatever the freshness.
const S3_BUFFER_BYTES: u64 = 64 << 20;

pub const S3: &str = "S3DestinationConfiguration";
pub const TABLES: &str = "S3TablesDestinationConfiguration";

/// A rule a string field must follow: a pattern (with the model's text of
/// it, lengths included) or the values allowed.
enum Rule {
    Pattern(fn(&str) -> bool, &'static str),
    OneOf(&'static [&'static str]),
}

/// Collects the model's refusals, each naming its field.
#[derive(Default)]
struct Check {
    errors: Vec<String>,
}

impl Check {
    fn null(&mut self, path: &str) {
        self.errors.push(format!(
            "Value null at '{path}' failed to satisfy constraint: Member must not be null"
        ));
    }

    /// A member that must be present.
    fn required<'v>(&mut self, v: &'v Value, key: &str, path: &str) -> Option<&'v Value> {
        let got = v.get(key).filter(|x| !x.is_null());
        if got.is_none() {
            self.null(path);
        }
        got
    }

    /// A list member with `min..=max` entries.
    fn list<'v>(
        &mut self,
        v: &'v Value,
        key: &str,
        path: &str,
        (min, max): (usize, usize),
    ) -> &'v [Value] {
        let Some(x) = self.required(v, key, path) else {
            return &[];
        };
        let items = x.as_array().map(Vec::as_slice).unwrap_or_default();
        if !(min..=max).contains(&items.len()) {
            self.errors.push(format!(
                "Value at '{path}' failed to satisfy constraint: Member must have length between {min} and {max}"
            ));
        }
        items
    }

    /// A string member (required or not) following `rule`.
    fn string<'v>(
        &mut self,
        v: &'v Value,
        key: &str,
        path: &str,
        required: bool,
        rule: Rule,
    ) -> Option<&'v str> {
        let s = match v.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.null(path);
                }
                return None;
            }
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                self.errors.push(format!(
                    "Value '{other}' at '{path}' failed to satisfy constraint: Member must be a string"
                ));
                return None;
            }
        };
        let broken = match rule {
            Rule::Pattern(ok, text) => {
                (!ok(s)).then(|| format!("Member must satisfy regular expression pattern: {text}"))
            }
            Rule::OneOf(values) => (!values.contains(&s)).then(|| {
                format!(
                    "Member must satisfy enum value set: [{}]",
                    values.join(", ")
                )
            }),
        };
        match broken {
            Some(c) => {
                self.errors.push(format!(
                    "Value '{s}' at '{path}' failed to satisfy constraint: {c}"
                ));
                None
            }
            None => Some(s),
        }
    }

    fn done(self) -> Result<(), RequestError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(RequestError::Validation(self.errors))
        }
    }
}

fn role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((_, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    s.len() <= 512
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c))
}

fn account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn stream_arn(s: &str) -> bool {
    aws::kinesis_stream_from_arn(s).is_some()
}

fn bucket_arn(s: &str) -> bool {
    aws::bucket_from_arn(s).is_some()
}

fn table_bucket_arn(s: &str) -> bool {
    aws::table_bucket_from_arn(s).is_some()
}

fn table_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn column_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
}

fn key_template(s: &str) -> bool {
    (1..=1024).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!-_'.*()/=:{}".contains(c))
}

fn error_prefix(s: &str) -> bool {
    (1..=512).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!-_'.*()/".contains(c))
}

/// The destination a channel request configures: `S3` or `S3_TABLES`.
pub fn destination_type(req: &Value) -> &'static str {
    if req.get(TABLES).is_some_and(|v| !v.is_null()) {
        "S3_TABLES"
    } else {
        "S3"
    }
}

/// The source stream a channel request names (the first of its list).
pub fn source_stream(req: &Value) -> Option<&str> {
    req.get("StreamConfigurationList")?
        .get(0)?
        .get("StreamARN")?
        .as_str()
        .and_then(aws::kinesis_stream_from_arn)
}

/// Builds a channel's delivery stream, named `name`, from its
/// `CreateChannel` request.
pub fn stream_from_channel(
    name: &str,
    req: &Value,
    cfg: &Config,
) -> Result<StreamConfig, RequestError> {
    let mut ch = Check::default();
    ch.string(
        req,
        "ServiceExecutionRoleARN",
        "serviceExecutionRoleARN",
        true,
        Rule::Pattern(
            role_arn,
            "arn:aws[-a-z0-9]*:iam::\\d{12}:role/[a-zA-Z_0-9+=,.@\\-_/]+",
        ),
    );
    let streams = ch.list(
        req,
        "StreamConfigurationList",
        "streamConfigurationList",
        (1, 10_000),
    );
    let mut format = None;
    for (i, s) in streams.iter().enumerate() {
        let at = format!("streamConfigurationList.{}.member", i + 1);
        ch.string(
            s,
            "StreamARN",
            &format!("{at}.streamARN"),
            true,
            Rule::Pattern(stream_arn, "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"),
        );
        if let Some(rc) = ch.required(
            s,
            "RecordConfiguration",
            &format!("{at}.recordConfiguration"),
        ) {
            format = ch.string(
                rc,
                "RecordFormatType",
                &format!("{at}.recordConfiguration.recordFormatType"),
                true,
                Rule::OneOf(&["GSR_JSON", "JSON", "STRING", "BYTE_ARRAY"]),
            );
        }
    }
    if let Some(tags) = req.get("Tags").and_then(Value::as_object)
        && !(1..=200).contains(&tags.len())
    {
        ch.errors.push(
            "Value at 'tags' failed to satisfy constraint: Member must have length between 1 and 200"
                .into(),
        );
    }
    let present: Vec<&str> = [S3, TABLES]
        .into_iter()
        .filter(|k| req.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let (s3, tables) = (req.get(S3), req.get(TABLES));
    let built = match present.as_slice() {
        [S3] => s3.map(|d| s3_stream(name, d, format, cfg, &mut ch)),
        [TABLES] => tables.map(|d| tables_stream(name, d, format, cfg, &mut ch)),
        _ => None,
    };
    ch.done()?;
    if streams.len() > 1 {
        return Err(invalid(
            "StreamConfigurationList: one stream is supported per channel",
        ));
    }
    if req
        .get("EncryptionConfiguration")
        .is_some_and(|v| !v.is_null())
    {
        return Err(invalid(
            "EncryptionConfiguration: SSE-KMS at the destination is not supported by Hydrant; omit it",
        ));
    }
    let mut stream = built.ok_or_else(|| {
        invalid(format!(
            "Specify exactly one of {S3} and {TABLES}, not {}",
            if present.is_empty() {
                "neither"
            } else {
                "both"
            }
        ))
    })??;
    let source = source_stream(req).ok_or_else(|| invalid("StreamARN names no stream"))?;
    stream.source = Source::Kinesis {
        stream: source.to_string(),
    };
    Ok(stream)
}

/// `DataFreshnessInSeconds`, within `(lo, hi)`.
fn freshness(d: &Value, kind: &str, (lo, hi): (u64, u64)) -> Result<u64, RequestError> {
    match d.get("DataFreshnessInSeconds") {
        None | Some(Value::Null) => Ok(DATA_FRESHNESS_SECS),
        Some(v) => v.as_u64().filter(|s| (lo..=hi).contains(s)).ok_or_else(|| {
            invalid(format!(
                "{kind}.DataFreshnessInSeconds {v} must be between {lo} and {hi} seconds"
            ))
        }),
    }
}

/// The bucket and prefix a `DeadLetterQueueS3Configuration` gives, if
/// present and well formed.
fn dead_letter<'v>(
    d: &'v Value,
    kind: &str,
    required: bool,
    ch: &mut Check,
) -> Option<(&'v str, Option<&'v str>)> {
    let path = format!("{}.deadLetterQueueS3Configuration", lower(kind));
    let dlq = match d
        .get("DeadLetterQueueS3Configuration")
        .filter(|v| !v.is_null())
    {
        Some(v) => v,
        None => {
            if required {
                ch.null(&path);
            }
            return None;
        }
    };
    let arn = ch.string(
        dlq,
        "BucketARN",
        &format!("{path}.bucketARN"),
        true,
        Rule::Pattern(bucket_arn, "arn:aws[-a-z0-9]*:s3:::[a-z0-9._-]{3,63}"),
    );
    owner(dlq, &format!("{path}.expectedBucketOwner"), ch);
    let prefix = ch.string(
        dlq,
        "ErrorOutputPrefix",
        &format!("{path}.errorOutputPrefix"),
        false,
        Rule::Pattern(error_prefix, "[0-9A-Za-z!\\-_'.*()\\/]+"),
    );
    Some((arn.and_then(aws::bucket_from_arn)?, prefix))
}

/// `ExpectedBucketOwner`: 12 digits, and Hydrant's account, which owns every
/// bucket it writes.
fn owner(v: &Value, path: &str, ch: &mut Check) {
    let got = ch.string(
        v,
        "ExpectedBucketOwner",
        path,
        true,
        Rule::Pattern(account_id, "\\d{12}"),
    );
    if let Some(o) = got
        && o != aws::ACCOUNT
    {
        ch.errors.push(format!(
            "Value '{o}' at '{path}' failed to satisfy constraint: buckets here belong to account {}",
            aws::ACCOUNT
        ));
    }
}

fn lower(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The destination bucket with the object key template, and where records
/// that cannot be delivered go: the dead-letter bucket under its prefix, or
/// under [`DEFAULT_ERROR_PREFIX`].
fn buckets(
    cfg: &Config,
    (bucket, dlq_bucket): (&str, &str),
    template: Option<&str>,
    prefix: Option<&str>,
    kind: &str,
) -> Result<(ObjectDestination, ObjectDestination), RequestError> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let keys = object_keys(
        &mut errors,
        (
            &format!("{kind}.StorageConfiguration.OutputKeyTemplate"),
            &format!("{kind}.DeadLetterQueueS3Configuration.ErrorOutputPrefix"),
        ),
        template.unwrap_or(""),
        Some(prefix.unwrap_or(DEFAULT_ERROR_PREFIX)),
        KeyContext::default(),
    );
    let Some((prefix, error_output_prefix)) = keys else {
        return Err(refused(errors));
    };
    let at = |bucket: &str| ObjectDestination {
        kind: "s3",
        store: cfg.object_store.clone(),
        bucket: bucket.to_string(),
        prefix: prefix.clone(),
        error_output_prefix: error_output_prefix.clone(),
    };
    Ok((at(bucket), at(dlq_bucket)))
}

/// A channel into a general purpose bucket: objects of the records as they
/// are (JSON and STRING records one per line, BYTE_ARRAY ones back to
/// back), compressed as asked.
fn s3_stream(
    name: &str,
    d: &Value,
    format: Option<&str>,
    cfg: &Config,
    ch: &mut Check,
) -> Result<StreamConfig, RequestError> {
    let at = "s3DestinationConfiguration.storageConfiguration";
    let dlq = dead_letter(d, S3, false, ch);
    let Some(storage) = ch.required(d, "StorageConfiguration", at) else {
        return Err(invalid(""));
    };
    let bucket = ch.string(
        storage,
        "BucketARN",
        &format!("{at}.bucketARN"),
        true,
        Rule::Pattern(bucket_arn, "arn:aws[-a-z0-9]*:s3:::[a-z0-9._-]{3,63}"),
    );
    owner(storage, &format!("{at}.expectedBucketOwner"), ch);
    let template = ch.string(
        storage,
        "OutputKeyTemplate",
        &format!("{at}.outputKeyTemplate"),
        false,
        Rule::Pattern(key_template, "[0-9A-Za-z!\\-_'.*()\\/=:{}]+"),
    );
    ch.string(
        storage,
        "StorageClass",
        &format!("{at}.storageClass"),
        false,
        Rule::OneOf(&["STANDARD", "INTELLIGENT_TIERING", "GLACIER_IR"]),
    );
    let compression = ch.string(
        storage,
        "CompressionType",
        &format!("{at}.compressionType"),
        true,
        Rule::OneOf(&["NONE", "GZIP", "ZSTD"]),
    );
    let (Some(bucket), Some(compression)) = (bucket.and_then(aws::bucket_from_arn), compression)
    else {
        return Err(invalid(""));
    };
    let delimiter = match format {
        Some("GSR_JSON") => {
            return Err(invalid(
                "RecordFormatType GSR_JSON is supported only for S3 Tables destinations",
            ));
        }
        Some("BYTE_ARRAY") => Vec::new(),
        _ => b"\n".to_vec(),
    };
    let secs = freshness(d, S3, BUFFER_INTERVAL_SECS)?;
    let (dlq_bucket, dlq_prefix) = dlq.map_or((bucket, None), |(b, p)| (b, p));
    let (destination, errors_to) = buckets(cfg, (bucket, dlq_bucket), template, dlq_prefix, S3)?;
    let compression = match compression {
        "GZIP" => Compression::Gzip,
        "ZSTD" => Compression::Zstd,
        _ => Compression::None,
    };
    Ok(channel_stream(
        name,
        Duration::from_secs(secs),
        (delimiter, compression),
        errors_to,
        Destination::Object(Box::new(destination)),
    ))
}

/// The one `S3TablesConfigurationList` entry, checked: (table bucket,
/// namespace, table, compression, partition fields).
fn table_config<'v>(
    d: &'v Value,
    ch: &mut Check,
) -> Option<(&'v str, &'v str, &'v str, &'v str, Vec<PartitionField>)> {
    let list = ch.list(
        d,
        "S3TablesConfigurationList",
        "s3TablesDestinationConfiguration.s3TablesConfigurationList",
        (1, 10_000),
    );
    let mut first = None;
    for (i, t) in list.iter().enumerate() {
        let at = format!(
            "s3TablesDestinationConfiguration.s3TablesConfigurationList.{}.member",
            i + 1
        );
        let bucket = ch.string(
            t,
            "TableBucketARN",
            &format!("{at}.tableBucketARN"),
            true,
            Rule::Pattern(
                table_bucket_arn,
                "arn:aws[-a-z0-9]*:s3tables:[-a-z0-9]+:\\d{12}:bucket/[a-z0-9_-]{3,63}",
            ),
        );
        let names = ["Namespace", "TableName"].map(|k| {
            ch.string(
                t,
                k,
                &format!("{at}.{}", lower(k)),
                true,
                Rule::Pattern(table_name, "[0-9a-z_]+"),
            )
        });
        let compression = ch.string(
            t,
            "CompressionType",
            &format!("{at}.compressionType"),
            true,
            Rule::OneOf(&["NONE", "ZSTD", "SNAPPY"]),
        );
        let mut fields = Vec::new();
        if let Some(spec) = t.get("PartitionSpec").filter(|v| !v.is_null()) {
            let path = format!("{at}.partitionSpec.partitionFields");
            for (j, f) in ch
                .list(spec, "PartitionFields", &path, (1, 10))
                .iter()
                .enumerate()
            {
                let fat = format!("{path}.{}.member", j + 1);
                let tr = ch.string(
                    f,
                    "Transform",
                    &format!("{fat}.transform"),
                    true,
                    Rule::OneOf(&["TIME_HOUR"]),
                );
                let col = ch.string(
                    f,
                    "SourceName",
                    &format!("{fat}.sourceName"),
                    true,
                    Rule::Pattern(column_name, "[a-zA-Z0-9\\.\\_]+"),
                );
                if let (Some(_), Some(c)) = (tr, col) {
                    fields.push(PartitionField {
                        column: c.to_string(),
                        transform: "hour".into(),
                    });
                }
            }
        }
        if let (Some(b), [Some(ns), Some(tb)], Some(c)) = (bucket, names, compression)
            && first.is_none()
        {
            first = aws::table_bucket_from_arn(b).map(|b| (b, ns, tb, c, fields));
        }
    }
    if list.len() > 1 {
        ch.errors
            .push("S3TablesConfigurationList: one table is supported per channel".into());
    }
    first
}

/// A channel into an Iceberg table, created from the first records (the
/// `TIME_HOUR` column a `timestamptz`) and given a column for each new
/// top-level field; committed every `DataFreshnessInSeconds`.
fn tables_stream(
    name: &str,
    d: &Value,
    format: Option<&str>,
    cfg: &Config,
    ch: &mut Check,
) -> Result<StreamConfig, RequestError> {
    let dlq = dead_letter(d, TABLES, true, ch);
    let table = table_config(d, ch);
    let (Some((dlq_bucket, dlq_prefix)), Some((bucket, namespace, table, compression, fields))) =
        (dlq, table)
    else {
        return Err(invalid(""));
    };
    match format {
        Some("GSR_JSON") => {
            return Err(invalid(
                "RecordFormatType GSR_JSON needs the AWS Glue Schema Registry, which Hydrant does not have; use JSON (the table's columns come from the records)",
            ));
        }
        Some("STRING" | "BYTE_ARRAY") => {
            return Err(invalid(format!(
                "RecordFormatType {} is supported only for general purpose S3 destinations; S3 Tables take JSON",
                format.unwrap_or_default()
            )));
        }
        _ => {}
    }
    let secs = freshness(d, TABLES, TABLES_DATA_FRESHNESS_SECS)?;
    let catalog = catalog_named(
        Some(bucket),
        &format!("TableBucketARN bucket/{bucket}"),
        cfg,
    )?;
    let (_, errors_to) = buckets(cfg, (dlq_bucket, dlq_bucket), None, dlq_prefix, TABLES)?;
    let key = (namespace.to_string(), table.to_string());
    let destination = IcebergDestination {
        catalog,
        namespace: namespace.to_string(),
        table: table.to_string(),
        columns: None,
        partition_by: fields.clone(),
        compression: match compression {
            "NONE" => "uncompressed",
            "SNAPPY" => "snappy",
            _ => "zstd",
        }
        .into(),
        create_table: true,
        evolve_schema: true,
        commit_interval: Duration::from_secs(secs),
        file_bytes_max: 128 << 20,
        awaiting_commit_max: 256,
        snapshots: SnapshotPolicy {
            max_age: Duration::from_secs(120 * 3600),
            keep_min: 10,
        },
        route: None,
        tables: Some(BTreeMap::from([(key, fields)])),
        tables_open_max: DEFAULT_TABLES_OPEN,
    };
    Ok(channel_stream(
        name,
        Duration::from_secs(secs.min(BUFFER_INTERVAL_SECS.1)),
        (b"\n".to_vec(), Compression::None),
        errors_to,
        Destination::Iceberg(Box::new(destination)),
    ))
}

/// A channel's delivery stream, what S3 and table channels share; its
/// source is set by [`stream_from_channel`] once the request is checked.
fn channel_stream(
    name: &str,
    buffer_interval: Duration,
    (delimiter, compression): (Vec<u8>, Compression),
    error_output: ObjectDestination,
    destination: Destination,
) -> StreamConfig {
    StreamConfig {
        name: name.to_string(),
        source: Source::DirectPut,
        shards: 1,
        buffer_bytes: S3_BUFFER_BYTES,
        buffer_interval,
        encoding: Encoding::JsonLines { delimiter },
        compression,
        compression_level: None,
        encryption: None,
        retry_duration: Duration::from_secs(3600),
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

/// The request an `UpdateChannel` leaves: `DataFreshnessInSeconds` set in
/// the channel's destination (the update must name the channel's kind of
/// destination) and `LoggingConfiguration` replaced.
pub fn updated_request(current: &Value, update: &Value) -> Result<Value, RequestError> {
    let mut next = current.clone();
    let kind = if destination_type(current) == "S3" {
        S3
    } else {
        TABLES
    };
    for k in [S3, TABLES] {
        let Some(u) = update.get(k).filter(|v| !v.is_null()) else {
            continue;
        };
        if k != kind {
            return Err(invalid(format!(
                "{k}: the channel delivers through {kind}; its destination cannot change"
            )));
        }
        let Some(secs) = u.get("DataFreshnessInSeconds").filter(|v| !v.is_null()) else {
            return Err(RequestError::Validation(vec![format!(
                "Value null at '{}.dataFreshnessInSeconds' failed to satisfy constraint: Member must not be null",
                lower(k)
            )]));
        };
        if let Some(d) = next.get_mut(k).and_then(Value::as_object_mut) {
            d.insert("DataFreshnessInSeconds".into(), secs.clone());
        }
    }
    if let Some(l) = update.get("LoggingConfiguration").filter(|v| !v.is_null())
        && let Some(o) = next.as_object_mut()
    {
        o.insert("LoggingConfiguration".into(), l.clone());
    }
    Ok(next)
}

#[cfg(test)]
mod tests;
