//! Apache Iceberg: the `iceberg.catalogs` section (SQL catalogs on SQLite or
//! PostgreSQL, each with its warehouse) and `type: iceberg` destinations
//! (catalog, namespace, table, partition transforms, commit cadence, file
//! size, snapshot retention). The table's columns are the stream's Parquet
//! `encoding.schema`.
//!
//! Without a declared catalog called `hydrant`, there is one by default: on
//! SQLite at `DATA_DIR/iceberg/catalog.db`, its warehouse in
//! `DATA_DIR/iceberg/warehouse` (or in the bucket `iceberg` of an S3
//! `object_store`), so pyiceberg's `SqlCatalog("hydrant", uri=...)` opens
//! the same tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};

use super::destination::reject_fields;
use super::raw::{RawCatalog, RawDestination, RawIceberg};
use super::store::{S3Store, StoreConfig, s3_store};
use super::{ConfigError, err, range_check};
use crate::encode::Encoding;
use crate::encode::parquet::ParquetOptions;
use crate::route::keys::{KeyContext, KeyTemplate, PrefixKind};
use crate::route::partition::{Partitioner, Query};

/// The catalog name destinations use unless they name another.
pub const DEFAULT_CATALOG: &str = "hydrant";

/// An Iceberg catalog: where table metadata pointers live, and the
/// warehouse tables are created in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcebergCatalog {
    /// The catalog's name (the `catalog_name` column of the SQL catalog).
    pub name: String,
    pub database: CatalogDatabase,
    pub warehouse: Warehouse,
}

/// The database of a SQL catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogDatabase {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
    /// Not a database: the URL of a REST catalog server (`type: rest`).
    Rest(String),
}

/// Where a catalog's tables keep their data and metadata files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warehouse {
    /// A local directory (absolute).
    Local(PathBuf),
    /// A bucket (and a key prefix in it) on an S3-compatible store.
    S3 {
        bucket: String,
        prefix: String,
        store: S3Store,
    },
}

impl Warehouse {
    /// The warehouse as a location: `s3://bucket/prefix` or `/dir`.
    pub fn location(&self) -> String {
        match self {
            Warehouse::Local(dir) => dir.display().to_string(),
            Warehouse::S3 { bucket, prefix, .. } if prefix.is_empty() => format!("s3://{bucket}"),
            Warehouse::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// One partition field: a transform of a source column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    pub column: String,
    /// Iceberg's name of the transform: identity, year, month, day, hour,
    /// bucket[N], truncate[W].
    pub transform: String,
}

/// Which snapshots a table keeps: those younger than `max_age`, and at
/// least the `keep_min` newest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub max_age: Duration,
    pub keep_min: usize,
}

/// The declared columns of a table.
#[derive(Clone, Debug)]
pub struct Columns {
    /// As the stream's Parquet schema, which records are decoded with.
    pub parquet: ParquetOptions,
    /// As an Iceberg schema (ids from 1), which a new table is created with.
    pub schema: iceberg::spec::Schema,
    /// `partition_by` as a spec over `schema`.
    pub spec: iceberg::spec::UnboundPartitionSpec,
}

/// A `type: iceberg` destination.
#[derive(Clone, Debug)]
pub struct IcebergDestination {
    pub catalog: IcebergCatalog,
    pub namespace: String,
    pub table: String,
    /// The declared columns (YAML's Parquet `encoding.schema`). None: the
    /// table's own, and a table created from what the first records hold
    /// (Firehose's `TableCreationConfiguration`).
    pub columns: Option<Columns>,
    pub partition_by: Vec<PartitionField>,
    /// The Parquet compression of data files.
    pub compression: String,
    pub create_table: bool,
    /// Add the columns the table lacks: declared ones, or, without declared
    /// columns, top-level fields of records the table has no column for.
    pub evolve_schema: bool,
    pub commit_interval: Duration,
    pub file_bytes_max: u64,
    pub awaiting_commit_max: usize,
    pub snapshots: SnapshotPolicy,
    /// Records routed to tables by jq: the batcher's partitioning, each
    /// partition `namespace/table`. None: every record to `namespace.table`.
    pub route: Option<Arc<Partitioner>>,
    /// The only tables records may go to, each with its partition fields
    /// (Firehose's `DestinationTableConfigurationList`); None: any table,
    /// partitioned by `partition_by`.
    pub tables: Option<BTreeMap<(String, String), Vec<PartitionField>>>,
    /// Tables written at once; opening one more closes the least recently
    /// used (after its pending commit).
    pub tables_open_max: usize,
}

/// The `iceberg` section: every catalog by name, the default one included.
pub(super) fn catalogs(
    errors: &mut Vec<ConfigError>,
    raw: Option<RawIceberg>,
    data_dir: &Path,
    object_store: &StoreConfig,
) -> BTreeMap<String, IcebergCatalog> {
    let mut out = BTreeMap::new();
    out.insert(
        DEFAULT_CATALOG.to_string(),
        default_catalog(data_dir, object_store),
    );
    for (name, c) in raw.map(|r| r.catalogs).unwrap_or_default() {
        let path = format!("iceberg.catalogs.{name}");
        if !valid_name(&name) {
            errors.push(err(
                &path,
                "a catalog name is 1 to 255 characters of letters, digits, `_` and `-`",
            ));
        }
        if let Some(c) = catalog(errors, &path, &name, c, data_dir, object_store) {
            out.insert(name, c);
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn default_catalog(data_dir: &Path, object_store: &StoreConfig) -> IcebergCatalog {
    let dir = absolute(&data_dir.join("iceberg"));
    let warehouse = match object_store {
        StoreConfig::S3(s3) => Warehouse::S3 {
            bucket: "iceberg".into(),
            prefix: "warehouse".into(),
            store: s3.clone(),
        },
        StoreConfig::File { .. } => Warehouse::Local(dir.join("warehouse")),
    };
    IcebergCatalog {
        name: DEFAULT_CATALOG.into(),
        database: CatalogDatabase::Sqlite(dir.join("catalog.db")),
        warehouse,
    }
}

fn catalog(
    errors: &mut Vec<ConfigError>,
    path: &str,
    name: &str,
    c: RawCatalog,
    data_dir: &Path,
    object_store: &StoreConfig,
) -> Option<IcebergCatalog> {
    let kind = c.kind.as_deref().unwrap_or("sql");
    if kind != "sql" && kind != "rest" {
        errors.push(err(
            format!("{path}.type"),
            format!("`{kind}` is not a catalog type (sql, rest)"),
        ));
        return None;
    }
    let database = if kind == "rest" {
        if !(c.uri.starts_with("http://") || c.uri.starts_with("https://")) {
            errors.push(err(
                format!("{path}.uri"),
                "a rest catalog's uri starts with http:// or https://",
            ));
            return None;
        }
        CatalogDatabase::Rest(c.uri.trim_end_matches('/').to_string())
    } else if let Some(file) = c.uri.strip_prefix("sqlite://") {
        let file = file.split('?').next().unwrap_or_default();
        if file.is_empty() {
            errors.push(err(format!("{path}.uri"), "names no SQLite file"));
            return None;
        }
        CatalogDatabase::Sqlite(absolute(&data_dir.join(file)))
    } else if c.uri.starts_with("postgresql://") || c.uri.starts_with("postgres://") {
        CatalogDatabase::Postgres(c.uri.clone())
    } else {
        errors.push(err(
            format!("{path}.uri"),
            "must start with sqlite:// (a file) or postgresql:// (a server)",
        ));
        return None;
    };
    let warehouse = warehouse(errors, path, &c, object_store)?;
    Some(IcebergCatalog {
        name: name.to_string(),
        database,
        warehouse,
    })
}

fn warehouse(
    errors: &mut Vec<ConfigError>,
    path: &str,
    c: &RawCatalog,
    object_store: &StoreConfig,
) -> Option<Warehouse> {
    let Some(rest) = c.warehouse.strip_prefix("s3://") else {
        if c.store.is_some() {
            errors.push(err(
                format!("{path}.store"),
                "applies only to an s3:// warehouse",
            ));
        }
        let dir = c.warehouse.strip_prefix("file://").unwrap_or(&c.warehouse);
        if dir.is_empty() || dir.contains("://") {
            errors.push(err(
                format!("{path}.warehouse"),
                "is s3://bucket/prefix, file:///dir or a directory",
            ));
            return None;
        }
        return Some(Warehouse::Local(absolute(Path::new(dir))));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !crate::aws::valid_bucket_name(bucket) {
        errors.push(err(
            format!("{path}.warehouse"),
            format!("`{bucket}` is not a valid bucket name (3-63 of a-z 0-9 . -)"),
        ));
        return None;
    }
    let store = match (&c.store, object_store) {
        (Some(s), _) => s3_store(errors, &format!("{path}.store"), s),
        (None, StoreConfig::S3(s)) => s.clone(),
        (None, StoreConfig::File { .. }) => {
            errors.push(err(
                format!("{path}.store"),
                "missing: an s3:// warehouse needs an S3 store here or an s3 `object_store`",
            ));
            return None;
        }
    };
    Some(Warehouse::S3 {
        bucket: bucket.to_string(),
        prefix: prefix.trim_end_matches('/').to_string(),
        store,
    })
}

impl IcebergDestination {
    /// The partition fields of table `namespace.table`.
    pub fn partition_fields(&self, namespace: &str, table: &str) -> &[PartitionField] {
        self.tables
            .as_ref()
            .and_then(|t| t.get(&(namespace.to_string(), table.to_string())))
            .map_or(&self.partition_by, |f| f)
    }

    /// Whether records may go to table `namespace.table`.
    pub fn allows(&self, namespace: &str, table: &str) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|t| t.contains_key(&(namespace.to_string(), table.to_string())))
    }
}

/// Tables a routed destination writes at once, by default.
pub const DEFAULT_TABLES_OPEN: usize = 64;

/// `route`: the partitioning that gives each record `namespace/table`, a
/// jq expression or the fixed name for each.
pub(crate) fn route(
    errors: &mut Vec<ConfigError>,
    path: &str,
    r: &super::raw::RawRoute,
    (namespace, table): (&str, &str),
) -> Option<Arc<Partitioner>> {
    let mut keys = Vec::new();
    let mut template = String::new();
    for (name, src, fixed) in [
        ("namespace", &r.namespace, namespace),
        ("table", &r.table, table),
    ] {
        if !template.is_empty() {
            template.push('/');
        }
        match src {
            None => template.push_str(fixed),
            Some(src) => match Query::compile(src) {
                Ok(q) => {
                    template.push_str(&format!("!{{partitionKeyFromQuery:{name}}}"));
                    keys.push((name.to_string(), q));
                }
                Err(e) => errors.push(err(format!("{path}.route.{name}"), format!("`{src}` {e}"))),
            },
        }
    }
    if keys.is_empty() {
        errors.push(err(
            format!("{path}.route"),
            "needs `namespace` or `table` (a jq expression)",
        ));
        return None;
    }
    let names: Vec<String> = keys.iter().map(|(n, _)| n.clone()).collect();
    let template = KeyTemplate::parse_with(
        &template,
        PrefixKind::Prefix,
        KeyContext {
            query_keys: Some(&names),
            transform: false,
        },
    )
    .map_err(|e| errors.push(err(format!("{path}.route"), e)))
    .ok()?;
    Some(Arc::new(Partitioner {
        keys,
        time: None,
        template,
        // A shard's open batches, one per table: dynamic partitioning's
        // defaults (the tables a sink writes at once are bounded apart).
        open_partitions_max: super::partitioning::DEFAULT_OPEN_PARTITIONS,
        open_bytes_max: 256 << 20,
        read_gather: crate::route::partition::ReadGather::DEFAULT,
    }))
}

/// Longest interval between two commits of a table, in seconds.
const COMMIT_INTERVAL_SECS: (u64, u64) = (1, 3600);

/// A `type: iceberg` destination of stream `stream`, its columns from the
/// stream's `encoding`.
pub(super) fn iceberg_destination(
    errors: &mut Vec<ConfigError>,
    path: &str,
    stream: &str,
    d: &RawDestination,
    encoding: &Encoding,
    catalogs: &BTreeMap<String, IcebergCatalog>,
) -> Option<IcebergDestination> {
    reject_fields(
        errors,
        path,
        "iceberg",
        &[
            ("bucket", d.bucket.is_some()),
            ("path", d.path.is_some()),
            ("prefix", d.prefix.is_some()),
            ("error_output_prefix", d.error_output_prefix.is_some()),
            ("url", d.url.is_some()),
            ("connection", d.connection.is_some()),
            ("columns", d.columns.is_some()),
        ],
    );
    let stream_path = path.strip_suffix(".destination").unwrap_or(path);
    let Encoding::Parquet(parquet) = encoding else {
        errors.push(err(
            format!("{stream_path}.encoding.format"),
            "an iceberg destination writes Parquet: set `format: parquet` and the table's columns in `schema`",
        ));
        return None;
    };
    let catalog_name = d.catalog.as_deref().unwrap_or(DEFAULT_CATALOG);
    let Some(catalog) = catalogs.get(catalog_name) else {
        errors.push(err(
            format!("{path}.catalog"),
            format!("`{catalog_name}` is not a catalog under iceberg.catalogs"),
        ));
        return None;
    };
    let namespace = d.namespace.clone().unwrap_or_else(|| "hydrant".into());
    let table = d
        .table
        .clone()
        .unwrap_or_else(|| stream.replace(['.', '-'], "_"));
    for (field, v) in [("namespace", &namespace), ("table", &table)] {
        if !valid_name(v) {
            errors.push(err(
                format!("{path}.{field}"),
                format!("`{v}` is not a name (1 to 255 of letters, digits, `_` and `-`)"),
            ));
        }
    }
    let partition_by = partition_fields(errors, path, d, parquet);
    let schema = table_schema(errors, stream_path, parquet)?;
    let spec = match partition_spec(&schema, &partition_by) {
        Ok(s) => s,
        Err((i, e)) => {
            errors.push(err(format!("{path}.partition_by{i}"), e));
            return None;
        }
    };
    let (commit_interval, file_bytes_max, awaiting_commit_max, snapshots) =
        cadence(errors, path, d);
    let tables_open_max = range_check(
        errors,
        &format!("{path}.tables_open_max"),
        d.tables_open_max.unwrap_or(DEFAULT_TABLES_OPEN),
        1,
        10_000,
    );
    let route = d
        .route
        .as_ref()
        .and_then(|r| route(errors, path, r, (&namespace, &table)));
    Some(IcebergDestination {
        catalog: catalog.clone(),
        namespace,
        table,
        compression: parquet.compression.clone(),
        columns: Some(Columns {
            parquet: parquet.clone(),
            schema,
            spec,
        }),
        partition_by,
        create_table: d.create_table.unwrap_or(true),
        evolve_schema: true,
        commit_interval,
        file_bytes_max,
        awaiting_commit_max,
        snapshots,
        route,
        tables: None,
        tables_open_max,
    })
}

/// `commit_interval_secs`, `file_size_mb`, `batches_awaiting_commit_max`
/// and `snapshots`, each in its bounds.
fn cadence(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
) -> (Duration, u64, usize, SnapshotPolicy) {
    let snapshots = d.snapshots.clone().unwrap_or_default();
    (
        Duration::from_secs(range_check(
            errors,
            &format!("{path}.commit_interval_secs"),
            d.commit_interval_secs.unwrap_or(60),
            COMMIT_INTERVAL_SECS.0,
            COMMIT_INTERVAL_SECS.1,
        )),
        range_check(
            errors,
            &format!("{path}.file_size_mb"),
            d.file_size_mb.unwrap_or(128),
            1,
            4096,
        ) << 20,
        range_check(
            errors,
            &format!("{path}.batches_awaiting_commit_max"),
            d.batches_awaiting_commit_max.unwrap_or(256),
            1,
            65_536,
        ),
        SnapshotPolicy {
            max_age: Duration::from_secs(
                range_check(
                    errors,
                    &format!("{path}.snapshots.max_age_hours"),
                    snapshots.max_age_hours.unwrap_or(120),
                    1,
                    24 * 3650,
                ) * 3600,
            ),
            keep_min: range_check(
                errors,
                &format!("{path}.snapshots.keep_min"),
                snapshots.keep_min.unwrap_or(10),
                1,
                100_000,
            ),
        },
    )
}

/// The declared columns as an Iceberg schema: timestamps become
/// microseconds (Iceberg's unit), with or without a UTC zone.
fn table_schema(
    errors: &mut Vec<ConfigError>,
    stream_path: &str,
    parquet: &ParquetOptions,
) -> Option<iceberg::spec::Schema> {
    let mut fields = Vec::new();
    let mut ok = true;
    for (i, f) in parquet.schema.fields().iter().enumerate() {
        match iceberg_type(f.data_type()) {
            Ok(t) => fields.push(f.as_ref().clone().with_data_type(t)),
            Err(e) => {
                errors.push(err(format!("{stream_path}.encoding.schema[{i}].type"), e));
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    match iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&ArrowSchema::new(fields)) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(err(
                format!("{stream_path}.encoding.schema"),
                format!("is not an Iceberg schema: {e}"),
            ));
            None
        }
    }
}

/// The Arrow type a declared type is stored as in Iceberg.
fn iceberg_type(t: &DataType) -> Result<DataType, String> {
    Ok(match t {
        DataType::Timestamp(_, zone) => match zone.as_deref() {
            None => DataType::Timestamp(TimeUnit::Microsecond, None),
            Some("UTC" | "+00:00" | "Z") => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            Some(z) => {
                return Err(format!(
                    "Iceberg timestamps are UTC or without a zone, not `{z}`"
                ));
            }
        },
        DataType::UInt64 => {
            return Err(
                "Iceberg has no unsigned 64-bit integer (use int64 or decimal(20, 0))".into(),
            );
        }
        DataType::List(f) => DataType::List(Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(iceberg_type(f.data_type())?),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| iceberg_type(f.data_type()).map(|t| f.as_ref().clone().with_data_type(t)))
                .collect::<Result<Vec<Field>, String>>()?
                .into(),
        ),
        DataType::Map(entries, sorted) => DataType::Map(
            Arc::new(
                entries
                    .as_ref()
                    .clone()
                    .with_data_type(iceberg_type(entries.data_type())?),
            ),
            *sorted,
        ),
        other => other.clone(),
    })
}

/// `partition_by` bound to a schema: Java's field names (`ts_day`,
/// `user_id_bucket`, `name_trunc`, the column for identity). Err: the
/// field's index (`[i]`, or empty for the whole) and the reason.
pub fn partition_spec(
    schema: &iceberg::spec::Schema,
    fields: &[PartitionField],
) -> Result<iceberg::spec::UnboundPartitionSpec, (String, String)> {
    let mut b = iceberg::spec::PartitionSpec::builder(schema.clone());
    for (i, f) in fields.iter().enumerate() {
        let at = |e: String| (format!("[{i}]"), e);
        let transform: iceberg::spec::Transform = f
            .transform
            .parse()
            .map_err(|e: iceberg::Error| at(e.to_string()))?;
        let base = f.transform.split('[').next().unwrap_or_default();
        let name = match base {
            "identity" => f.column.clone(),
            "bucket" => format!("{}_bucket", f.column),
            "truncate" => format!("{}_trunc", f.column),
            t => format!("{}_{t}", f.column),
        };
        b = b
            .add_partition_field(&f.column, name, transform)
            .map_err(|e| at(e.message().to_string()))?;
    }
    b.build()
        .map(|spec| spec.into_unbound())
        .map_err(|e| (String::new(), e.to_string()))
}

/// `partition_by`: each entry `identity(col)`, `year|month|day|hour(col)`,
/// `bucket(N, col)` or `truncate(W, col)` of a declared column.
fn partition_fields(
    errors: &mut Vec<ConfigError>,
    path: &str,
    d: &RawDestination,
    parquet: &ParquetOptions,
) -> Vec<PartitionField> {
    let mut out = Vec::new();
    for (i, src) in d.partition_by.iter().flatten().enumerate() {
        let fpath = format!("{path}.partition_by[{i}]");
        match parse_partition(src) {
            Ok(f) if parquet.schema.field_with_name(&f.column).is_err() => errors.push(err(
                fpath,
                format!("`{}` is not a column of encoding.schema", f.column),
            )),
            Ok(f) => out.push(f),
            Err(e) => errors.push(err(fpath, e)),
        }
    }
    out
}

/// Parses `day(ts)`, `bucket(16, user_id)` and the like.
pub fn parse_partition(src: &str) -> Result<PartitionField, String> {
    let bad = || {
        format!(
            "`{src}` is not a partition transform (identity(col), year(col), month(col), day(col), hour(col), bucket(N, col), truncate(W, col))"
        )
    };
    let (name, args) = src.trim().split_once('(').ok_or_else(bad)?;
    let args = args.strip_suffix(')').ok_or_else(bad)?;
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    let (transform, column) = match (name.trim(), parts.as_slice()) {
        (t @ ("identity" | "year" | "month" | "day" | "hour"), [col]) => (t.to_string(), *col),
        (t @ ("bucket" | "truncate"), [n, col]) => {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{src}`: {t} takes a positive number first"))?;
            (format!("{t}[{n}]"), *col)
        }
        _ => return Err(bad()),
    };
    if column.is_empty() {
        return Err(bad());
    }
    Ok(PartitionField {
        column: column.to_string(),
        transform,
    })
}

#[cfg(test)]
mod tests;
