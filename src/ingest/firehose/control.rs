//! The control-plane operations: `ListDeliveryStreams`,
//! `DescribeDeliveryStream` (with the description builders),
//! `CreateDeliveryStream` and `DeleteDeliveryStream`. Turning a create
//! request into a stream's config is `config::firehose`'s job (it validates
//! as YAML does); the handler here checks the name, that the stream is new
//! and that its Kinesis source exists, then registers the stream and answers.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{check_name, lookup, parse};
use crate::aws::{self, ACCOUNT};
use crate::config::firehose::{destination_config, stream_from_request};
use crate::config::{self, Destination, ObjectDestination};
use crate::encode::Compression;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::streams::{Origin, RegistryError, StreamEntry};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListIn {
    limit: Option<i64>,
    delivery_stream_type: Option<String>,
    exclusive_start_delivery_stream_name: Option<String>,
}

pub(super) fn list(state: &AppState, req: ListIn) -> Result<Value, ApiError> {
    let limit = req.limit.unwrap_or(10);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::validation(&[format!(
            "Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
        )]));
    }
    let names: Vec<String> = state
        .registry
        .all()
        .into_iter()
        .filter(|e| e.origin != Origin::Channel)
        .filter(|e| {
            req.delivery_stream_type
                .as_deref()
                .is_none_or(|t| t == stream_type(e))
        })
        .map(|e| e.config.name.clone())
        .filter(|n| {
            req.exclusive_start_delivery_stream_name
                .as_ref()
                .is_none_or(|s| n > s)
        })
        .collect();
    let more = names.len() > limit as usize;
    let page: Vec<String> = names.into_iter().take(limit as usize).collect();
    Ok(json!({ "DeliveryStreamNames": page, "HasMoreDeliveryStreams": more }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NameIn {
    delivery_stream_name: Option<Value>,
    #[allow(dead_code)]
    allow_force_delete: Option<bool>,
    #[allow(dead_code)]
    limit: Option<i64>,
    #[allow(dead_code)]
    exclusive_start_destination_id: Option<String>,
}

pub(super) fn describe(state: &AppState, req: NameIn) -> Result<Value, ApiError> {
    let mut v = Vec::new();
    let name = check_name(req.delivery_stream_name.as_ref(), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let entry = lookup(state, &name)?;
    Ok(json!({ "DeliveryStreamDescription": description(&entry) }))
}

fn stream_type(entry: &StreamEntry) -> &'static str {
    match entry.config.source {
        config::Source::DirectPut => "DirectPut",
        config::Source::Kinesis { .. } => "KinesisStreamAsSource",
    }
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "UNCOMPRESSED",
        Compression::Gzip => "GZIP",
        Compression::Zstd => "ZSTD",
        Compression::Snappy => "Snappy",
    }
}

fn description(entry: &StreamEntry) -> Value {
    let c = &entry.config;
    let created = entry.created_ms as f64 / 1000.0;
    let destination = match &c.destination {
        Destination::Object(d) => object_description(entry, d),
        Destination::Http(h) => http_description(entry, h),
        Destination::Postgres(p) => postgres_description(entry, p),
        Destination::Iceberg(i) => iceberg_description(entry, i),
    };
    let mut dest = json!({ "DestinationId": super::manage::DESTINATION_ID });
    if let (Some(o), Some(extra)) = (dest.as_object_mut(), destination.as_object()) {
        o.extend(extra.clone());
    }
    let source = match &c.source {
        config::Source::DirectPut => json!({}),
        config::Source::Kinesis { stream } => json!({
            "KinesisStreamSourceDescription": {
                "KinesisStreamARN": aws::kinesis_stream_arn(stream),
                "RoleARN": entry
                    .request()
                    .as_ref()
                    .and_then(|r| r.get("KinesisStreamSourceConfiguration"))
                    .and_then(|k| k.get("RoleARN").cloned())
                    .unwrap_or(Value::String(aws::default_role_arn())),
                "DeliveryStartTimestamp": created,
            }
        }),
    };
    let request = entry.request();
    let updated =
        super::manage::last_update_ms(request.as_ref()).map_or(created, |ms| ms as f64 / 1000.0);
    json!({
        "DeliveryStreamName": c.name,
        "DeliveryStreamARN": aws::delivery_stream_arn(&c.name),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamType": stream_type(entry),
        "VersionId": super::manage::version(request.as_ref()).to_string(),
        "CreateTimestamp": created,
        "LastUpdateTimestamp": updated,
        "Source": source,
        "Destinations": [dest],
        "HasMoreDestinations": false,
        "DeliveryStreamEncryptionConfiguration": super::encryption::description(entry),
    })
}

/// An HTTP endpoint destination as Firehose describes one: what the request
/// gave (the access key left out, as Firehose leaves it out), the defaults
/// filled in.
fn http_description(entry: &StreamEntry, h: &config::HttpDestination) -> Value {
    let c = &entry.config;
    let request = entry.request();
    let given = request
        .as_ref()
        .and_then(|r| r.get("HttpEndpointDestinationConfiguration"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut d = json!({
        "EndpointConfiguration": { "Url": h.url },
        "BufferingHints": { "SizeInMBs": c.buffer_bytes >> 20, "IntervalInSeconds": c.buffer_interval.as_secs() },
        "RetryOptions": { "DurationInSeconds": c.retry_duration.as_secs() },
        "RequestConfiguration": { "ContentEncoding": if h.gzip { "GZIP" } else { "NONE" } },
        "S3BackupMode": "FailedDataOnly",
    });
    if let (Some(o), Value::Object(g)) = (d.as_object_mut(), &given) {
        for (k, v) in g {
            if k == "S3Configuration" {
                o.insert("S3DestinationDescription".into(), v.clone());
            } else if k == "EndpointConfiguration" {
                let mut e = v.clone();
                if let Some(e) = e.as_object_mut() {
                    e.remove("AccessKey");
                }
                o.insert(k.clone(), e);
            } else if !matches!(k.as_str(), "BufferingHints" | "RetryOptions") {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    json!({ "HttpEndpointDestinationDescription": d })
}

/// A PostgreSQL destination as Firehose's Redshift destination describes
/// one (Redshift speaks PostgreSQL's protocol; `config::firehose`'s
/// `redshift` module has the mapping): every field the request gave (the
/// password left out, as Firehose leaves it out), or for a stream of the
/// configuration file its connection, table and columns in those fields.
fn postgres_description(entry: &StreamEntry, p: &config::PostgresDestination) -> Value {
    let c = &entry.config;
    let e = &c.error_output;
    let s3 = json!({
        "RoleARN": aws::default_role_arn(),
        "BucketARN": format!("arn:aws:s3:::{}", e.bucket),
        "Prefix": e.prefix.source(),
        "ErrorOutputPrefix": e.error_output_prefix.source(),
        "BufferingHints": { "SizeInMBs": c.buffer_bytes >> 20, "IntervalInSeconds": c.buffer_interval.as_secs() },
        "CompressionFormat": "UNCOMPRESSED",
        "EncryptionConfiguration": { "NoEncryptionConfig": "NoEncryption" },
    });
    let mut d = config::firehose::postgres_as_redshift(p);
    let Some(o) = d.as_object_mut() else {
        return json!({});
    };
    o.insert("RoleARN".into(), json!(aws::default_role_arn()));
    o.insert(
        "RetryOptions".into(),
        json!({ "DurationInSeconds": c.retry_duration.as_secs() }),
    );
    let backup = if c.backup.is_some() {
        "Enabled"
    } else {
        "Disabled"
    };
    o.insert("S3BackupMode".into(), json!(backup));
    o.insert("S3DestinationDescription".into(), s3.clone());
    let request = entry.request();
    let given = request
        .as_ref()
        .and_then(|r| r.get("RedshiftDestinationConfiguration"));
    let over_defaults = |v: &Value| {
        let mut out = s3.clone();
        if let (Some(out), Value::Object(v)) = (out.as_object_mut(), v) {
            out.extend(v.clone());
        }
        out
    };
    for (k, v) in given.and_then(Value::as_object).into_iter().flatten() {
        match k.as_str() {
            "Password" | "RetryOptions" => {}
            "S3Configuration" => {
                o.insert("S3DestinationDescription".into(), over_defaults(v));
            }
            "S3BackupConfiguration" => {
                o.insert("S3BackupDescription".into(), over_defaults(v));
            }
            _ => {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    json!({ "RedshiftDestinationDescription": d })
}

/// An Iceberg destination as Firehose describes one: its table, the
/// identity partition fields (Firehose's `PartitionSpec` has no other
/// transforms), the catalog, the table creation and schema evolution.
fn iceberg_description(entry: &StreamEntry, i: &config::IcebergDestination) -> Value {
    let c = &entry.config;
    let identity: Vec<Value> = i
        .partition_by
        .iter()
        .filter(|f| f.transform == "identity")
        .map(|f| json!({ "SourceName": f.column }))
        .collect();
    let mut d = json!({
            "DestinationTableConfigurationList": [{
                "DestinationDatabaseName": i.namespace,
                "DestinationTableName": i.table,
                "PartitionSpec": { "Identity": identity },
            }],
            "CatalogConfiguration": {
                "CatalogARN": format!("arn:aws:glue:{}:{}:catalog/{}", aws::REGION, aws::ACCOUNT, i.catalog.name),
                "WarehouseLocation": i.catalog.warehouse.location(),
            },
            "TableCreationConfiguration": { "Enabled": i.create_table },
            "SchemaEvolutionConfiguration": { "Enabled": i.evolve_schema },
            "BufferingHints": { "SizeInMBs": c.buffer_bytes >> 20, "IntervalInSeconds": c.buffer_interval.as_secs() },
            "RetryOptions": { "DurationInSeconds": c.retry_duration.as_secs() },
            "AppendOnly": true,
            "S3BackupMode": "FailedDataOnly",
            "RoleARN": aws::default_role_arn(),
    });
    // A stream made through the API: every field as its request gave it
    // (every table, the catalog's ARN as sent), buffering and retry with
    // their defaults filled in.
    let request = entry.request();
    let given = request
        .as_ref()
        .and_then(|r| r.get("IcebergDestinationConfiguration"));
    if let (Some(o), Some(Value::Object(g))) = (d.as_object_mut(), given) {
        for (k, v) in g {
            match k.as_str() {
                "S3Configuration" => {
                    o.insert("S3DestinationDescription".into(), v.clone());
                }
                "BufferingHints" | "RetryOptions" => {}
                _ => {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
    }
    json!({ "IcebergDestinationDescription": d })
}

fn object_description(entry: &StreamEntry, d: &ObjectDestination) -> Value {
    let c = &entry.config;
    // The bucket as AWS names it, whatever store holds it (where is in
    // Hydrant's own status, not in AWS fields).
    let bucket_arn = format!("arn:aws:s3:::{}", d.bucket);
    // What the CreateDeliveryStream request gave, for a stream made through the API.
    let request = entry.request();
    let requested = request
        .as_ref()
        .and_then(|r| destination_config(r).map(|(_, d)| d));
    let error_prefix = requested
        .and_then(|r| r.get("ErrorOutputPrefix").cloned())
        .unwrap_or_else(|| Value::String(d.error_output_prefix.source().to_string()));
    let s3 = json!({
        "RoleARN": requested.and_then(|r| r.get("RoleARN").cloned()).unwrap_or(Value::String(aws::default_role_arn())),
        "BucketARN": bucket_arn,
        "Prefix": d.prefix.source(),
        "ErrorOutputPrefix": error_prefix,
        "BufferingHints": {
            "SizeInMBs": c.buffer_bytes >> 20,
            "IntervalInSeconds": c.buffer_interval.as_secs(),
        },
        "CompressionFormat": compression_name(c.compression),
        "EncryptionConfiguration": { "NoEncryptionConfig": "NoEncryption" },
    });
    // Every other field as the request (and its updates) gave it, so a
    // create → describe round trip shows no drift.
    let mut extended = s3.clone();
    if let (Some(obj), Some(Value::Object(req))) = (extended.as_object_mut(), requested) {
        for (k, v) in req {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    json!({ "ExtendedS3DestinationDescription": extended, "S3DestinationDescription": s3 })
}

pub(super) async fn create(state: &AppState, body: &[u8]) -> Result<Value, ApiError> {
    let req: Value = parse(body)?;
    let mut v = Vec::new();
    let name = check_name(req.get("DeliveryStreamName"), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    super::manage::check_create_tags(&req)?;
    if let Some(e) = state.registry.get(&name) {
        // Channels run as delivery streams, so their names are taken too.
        let what = match e.origin {
            Origin::Channel => "a Kinesis channel",
            _ => "a Firehose stream",
        };
        return Err(ApiError::in_use(format!(
            "Firehose {name} under accountId {ACCOUNT} already exists (as {what})"
        )));
    }
    let cfg =
        stream_from_request(&name, &req, &state.registry.config).map_err(super::request_error)?;
    if let config::Source::Kinesis { stream } = &cfg.source
        && state.registry.kinesis.get(stream).is_none()
    {
        return Err(ApiError::invalid_argument(format!(
            "Kinesis stream {stream} under account {ACCOUNT} does not exist"
        )));
    }
    match state.registry.create(cfg, req, Origin::Api).await {
        Ok(_) => Ok(json!({ "DeliveryStreamARN": aws::delivery_stream_arn(&name) })),
        Err(RegistryError::Exists(_)) => Err(ApiError::in_use(format!(
            "Firehose {name} under accountId {ACCOUNT} already exists"
        ))),
        Err(RegistryError::Limit(n)) => Err(ApiError::limit_exceeded(format!(
            "You have already consumed your firehose quota of {n} hoses. Firehose names: …"
        ))),
        Err(e) => Err(ApiError::invalid_argument(e.to_string())),
    }
}

pub(super) async fn delete(state: &AppState, req: NameIn) -> Result<Value, ApiError> {
    let mut v = Vec::new();
    let name = check_name(req.delivery_stream_name.as_ref(), &mut v);
    if !v.is_empty() {
        return Err(ApiError::validation(&v));
    }
    let entry = lookup(state, &name)?;
    if entry.origin == Origin::Yaml {
        return Err(ApiError::in_use(format!(
            "Firehose {name} is defined in the configuration file and cannot be deleted through the API"
        )));
    }
    match state.registry.delete(&name).await {
        Ok(()) => Ok(json!({})),
        Err(RegistryError::NotFound(_)) => Err(ApiError::not_found(format!(
            "Firehose {name} under account {ACCOUNT} not found."
        ))),
        Err(e) => Err(ApiError::in_use(e.to_string())),
    }
}
