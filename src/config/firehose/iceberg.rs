//! `IcebergDestinationConfiguration`: a delivery stream into an Iceberg
//! table, as Firehose's API describes one. The table's columns are the
//! table's own, or, with `TableCreationConfiguration`, what the first
//! records hold; `SchemaEvolutionConfiguration` adds a column for each new
//! top-level field. The `CatalogARN` names a catalog declared in YAML
//! (`arn:aws:glue:REGION:ACCOUNT:catalog/NAME`); when YAML declares none,
//! or the ARN names none, it is the default catalog `hydrant`.

use std::time::Duration;

use serde_json::Value;

use super::super::destination::Destination;
use super::super::iceberg::{DEFAULT_CATALOG, IcebergDestination, PartitionField, SnapshotPolicy};
use super::super::{Config, Source, StreamConfig};
use super::{RequestError, api_stream, bounds, failed_output, invalid, refused};
use crate::encode::Encoding;

const KIND: &str = "IcebergDestinationConfiguration";

/// A stream from a request with an `IcebergDestinationConfiguration`.
pub(super) fn stream(
    name: &str,
    d: &Value,
    source: Source,
    cfg: &Config,
) -> Result<StreamConfig, RequestError> {
    let list = table_configs(d)?;
    let table = list[0];
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (namespace, table_name) = (
        str_at(table, "DestinationDatabaseName").unwrap_or_default(),
        str_at(table, "DestinationTableName").unwrap_or_default(),
    );
    let s3 = d.get("S3Configuration").ok_or_else(|| {
        RequestError::Validation(vec![format!(
            "Value null at '{KIND}.s3Configuration' failed to satisfy constraint: Member must not be null"
        )])
    })?;
    let bounds = bounds(KIND, d, None)?;
    let retry_secs = d
        .get("RetryOptions")
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(bounds.retry_secs);
    let mode = d.get("S3BackupMode").and_then(Value::as_str);
    // The table's S3ErrorOutputPrefix, else the bucket's own.
    let error_prefix =
        str_at(table, "S3ErrorOutputPrefix").or_else(|| str_at(s3, "ErrorOutputPrefix"));
    let (errors_to, backup) = failed_output(
        s3,
        ("S3ErrorOutputPrefix", error_prefix.as_deref()),
        mode,
        cfg,
    )?;
    let enabled = |k: &str| {
        d.get(k)
            .and_then(|c| c.get("Enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let destination = IcebergDestination {
        catalog: catalog(d, cfg)?,
        namespace,
        table: table_name,
        columns: None,
        partition_by: identity_fields(table),
        compression: "zstd".into(),
        create_table: enabled("TableCreationConfiguration"),
        evolve_schema: enabled("SchemaEvolutionConfiguration"),
        commit_interval: Duration::from_secs(bounds.interval_secs.clamp(1, 3600)),
        file_bytes_max: 128 << 20,
        awaiting_commit_max: 256,
        snapshots: SnapshotPolicy {
            max_age: Duration::from_secs(120 * 3600),
            keep_min: 10,
        },
        route: route(d, list.len())?,
        tables: Some(
            list.iter()
                .map(|t| {
                    let key = (
                        str_at(t, "DestinationDatabaseName").unwrap_or_default(),
                        str_at(t, "DestinationTableName").unwrap_or_default(),
                    );
                    (key, identity_fields(t))
                })
                .collect(),
        ),
        tables_open_max: crate::config::iceberg::DEFAULT_TABLES_OPEN,
    };
    Ok(StreamConfig {
        encoding: Encoding::JsonLines {
            delimiter: b"\n".to_vec(),
        },
        partitioning: destination.route.clone(),
        backup,
        ..api_stream(
            name,
            source,
            &bounds,
            retry_secs.min(7200),
            errors_to,
            Destination::Iceberg(Box::new(destination)),
        )
    })
}

/// The `DestinationTableConfigurationList` entries, each checked; at
/// least one.
fn table_configs(d: &Value) -> Result<Vec<&Value>, RequestError> {
    let list = d
        .get("DestinationTableConfigurationList")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.is_empty() {
        return Err(invalid(
            "DestinationTableConfigurationList must hold at least one table",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| table_config(d, i + 1, t))
        .collect()
}

/// Records routed to the listed tables: a `MetadataExtraction` processor's
/// `MetadataExtractionQuery` yields each record's
/// `destinationDatabaseName` and `destinationTableName`, as Firehose's
/// JQ-1.6 engine runs it. Needed with more than one table.
fn route(
    d: &Value,
    tables: usize,
) -> Result<Option<std::sync::Arc<crate::route::partition::Partitioner>>, RequestError> {
    let query = super::processor_param(d, "MetadataExtraction", "MetadataExtractionQuery");
    let Some(query) = query else {
        if tables > 1 {
            return Err(invalid(
                "with several tables in DestinationTableConfigurationList, a MetadataExtraction processor's MetadataExtractionQuery must give each record's destinationDatabaseName and destinationTableName",
            ));
        }
        return Ok(None);
    };
    let raw = super::super::raw::RawRoute {
        namespace: Some(format!("({query}) | .destinationDatabaseName")),
        table: Some(format!("({query}) | .destinationTableName")),
    };
    let mut errors = Vec::new();
    let route =
        super::super::iceberg::route(&mut errors, "MetadataExtractionQuery", &raw, ("", ""));
    match route {
        Some(r) if errors.is_empty() => Ok(Some(r)),
        _ => Err(refused(errors)),
    }
}

/// One `DestinationTableConfigurationList` entry (the `n`th), checked.
fn table_config<'a>(d: &Value, n: usize, table: &'a Value) -> Result<&'a Value, RequestError> {
    let mut v = Vec::new();
    for k in ["DestinationDatabaseName", "DestinationTableName"] {
        match table.get(k).and_then(Value::as_str) {
            None => v.push(format!(
                "Value null at '{KIND}.destinationTableConfigurationList.{n}.member.{}' failed to satisfy constraint: Member must not be null",
                lower_first(k)
            )),
            Some(s) if s.is_empty() || s.len() > 255 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') => v.push(format!(
                "Value '{s}' at '{KIND}.destinationTableConfigurationList.{n}.member.{}' failed to satisfy constraint: Member must have length between 1 and 255 and satisfy regular expression pattern: ^[a-zA-Z0-9\\.\\_]+$",
                lower_first(k)
            )),
            Some(_) => {}
        }
    }
    if !v.is_empty() {
        return Err(RequestError::Validation(v));
    }
    if table
        .get("UniqueKeys")
        .and_then(Value::as_array)
        .is_some_and(|k| !k.is_empty())
        || d.get("AppendOnly").and_then(Value::as_bool) == Some(false)
    {
        return Err(invalid(
            "UniqueKeys and AppendOnly false (updates and deletes) are not supported by Hydrant: tables are append-only",
        ));
    }
    Ok(table)
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// `PartitionSpec.Identity`: identity partition fields.
fn identity_fields(table: &Value) -> Vec<PartitionField> {
    table
        .get("PartitionSpec")
        .and_then(|p| p.get("Identity"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.get("SourceName").and_then(Value::as_str))
        .map(|c| PartitionField {
            column: c.to_string(),
            transform: "identity".into(),
        })
        .collect()
}

/// The catalog a `CatalogARN` names.
fn catalog(d: &Value, cfg: &Config) -> Result<crate::config::IcebergCatalog, RequestError> {
    let arn = d
        .get("CatalogConfiguration")
        .and_then(|c| c.get("CatalogARN"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let named = arn
        .split_once(":catalog/")
        .map(|(_, n)| n.split('/').next().unwrap_or(n))
        .filter(|n| !n.is_empty());
    catalog_named(named, &format!("CatalogARN {arn}"), cfg)
}

/// The catalog an ARN's name (`named`, from `what`) stands for: the YAML
/// catalog of that name; when YAML declares none, or the ARN names none,
/// the default catalog.
pub(crate) fn catalog_named(
    named: Option<&str>,
    what: &str,
    cfg: &Config,
) -> Result<crate::config::IcebergCatalog, RequestError> {
    let declared_none = cfg.iceberg_catalogs.keys().all(|k| k == DEFAULT_CATALOG);
    let name = match named {
        Some(n) if !declared_none => n,
        _ => DEFAULT_CATALOG,
    };
    cfg.iceberg_catalogs.get(name).cloned().ok_or_else(|| {
        invalid(format!(
            "{what} names the catalog `{name}`, which is not under iceberg.catalogs"
        ))
    })
}
