//! Finding a destination's table: loaded if it exists, else created (its
//! namespace too) from the declared schema and partition spec, or from the
//! first records' fields; and grown by the columns it lacks, declared or
//! seen in records (added as optional columns, the schema evolution Iceberg
//! allows without rewriting files).

use std::collections::HashMap;

use iceberg::spec::{Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};

use crate::config::IcebergDestination;
use crate::record::Record;
use crate::sink::SinkError;

fn transient(what: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError {
        message: format!("{what}: {e}"),
        retryable: true,
    }
}

/// The table's identifier.
pub fn ident(cfg: &IcebergDestination) -> TableIdent {
    TableIdent::new(
        NamespaceIdent::new(cfg.namespace.clone()),
        cfg.table.clone(),
    )
}

/// Loads the destination's table, creating it (and its namespace) if
/// missing and allowed (from `first`, the first batch's records, without
/// declared columns), then adds the declared columns it lacks.
pub async fn open(
    catalog: &dyn Catalog,
    cfg: &IcebergDestination,
    ident: &TableIdent,
    first: &[Record],
) -> Result<Table, SinkError> {
    let ident = ident.clone();
    let exists = catalog
        .table_exists(&ident)
        .await
        .map_err(|e| transient("cannot reach the catalog", e))?;
    let table = if exists {
        catalog
            .load_table(&ident)
            .await
            .map_err(|e| transient(&format!("cannot load table {ident}"), e))?
    } else if cfg.create_table {
        create(catalog, cfg, &ident, first).await?
    } else {
        return Err(SinkError {
            message: format!("table {ident} does not exist and create_table is false"),
            retryable: false,
        });
    };
    evolve(catalog, cfg, table).await
}

/// The schema and spec of a new table: declared, or from the records.
fn new_table_schema(
    cfg: &IcebergDestination,
    ident: &TableIdent,
    first: &[Record],
) -> Result<(Schema, UnboundPartitionSpec), SinkError> {
    if let Some(c) = &cfg.columns {
        return Ok((c.schema.clone(), c.spec.clone()));
    }
    let refused = |message: String| SinkError {
        message,
        retryable: false,
    };
    let ns = ident.namespace().join(".");
    let fields = cfg.partition_fields(&ns, ident.name());
    let time_columns: Vec<&str> = fields
        .iter()
        .filter(|f| matches!(f.transform.as_str(), "year" | "month" | "day" | "hour"))
        .map(|f| f.column.as_str())
        .collect();
    let schema = super::infer::schema(first, &time_columns)
        .map_err(|e| refused(format!("cannot create the table from the records: {e}")))?;
    let spec = crate::config::iceberg::partition_spec(&schema, fields)
        .map_err(|(_, e)| refused(format!("cannot partition the new table: {e}")))?;
    Ok((schema, spec))
}

async fn create(
    catalog: &dyn Catalog,
    cfg: &IcebergDestination,
    ident: &TableIdent,
    first: &[Record],
) -> Result<Table, SinkError> {
    let (schema, spec) = new_table_schema(cfg, ident, first)?;
    let ns = ident.namespace();
    let ns_exists = catalog
        .namespace_exists(ns)
        .await
        .map_err(|e| transient("cannot reach the catalog", e))?;
    if !ns_exists
        && let Err(e) = catalog.create_namespace(ns, HashMap::new()).await
        && !catalog.namespace_exists(ns).await.unwrap_or(false)
    {
        return Err(transient(&format!("cannot create namespace {ns:?}"), e));
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec(spec)
        .properties(HashMap::from([(
            "write.parquet.compression-codec".to_string(),
            cfg.compression.clone(),
        )]))
        .build();
    match catalog.create_table(ns, creation).await {
        Ok(t) => {
            tracing::info!(table = %ident, "created the Iceberg table");
            Ok(t)
        }
        // Another writer created it meanwhile.
        Err(e) => match catalog.load_table(ident).await {
            Ok(t) => Ok(t),
            Err(_) => Err(transient(&format!("cannot create table {ident}"), e)),
        },
    }
}

/// The declared top-level columns the table lacks, as optional columns.
fn missing_columns(declared: &Schema, table: &Schema) -> Vec<AddColumn> {
    declared
        .as_struct()
        .fields()
        .iter()
        .filter(|f| table.field_by_name(&f.name).is_none())
        .map(|f| AddColumn::optional(f.name.clone(), f.field_type.as_ref().clone()))
        .collect()
}

/// Adds the declared columns the table lacks.
async fn evolve(
    catalog: &dyn Catalog,
    cfg: &IcebergDestination,
    table: Table,
) -> Result<Table, SinkError> {
    let Some(declared) = cfg.columns.as_ref().filter(|_| cfg.evolve_schema) else {
        return Ok(table);
    };
    let current = table.metadata().current_schema().clone();
    let missing = missing_columns(&declared.schema, &current);
    let names: Vec<String> = declared
        .schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| current.field_by_name(&f.name).is_none())
        .map(|f| f.name.clone())
        .collect();
    add_columns(catalog, table, missing, &names).await
}

/// Adds the top-level fields the table has no column for (primitive ones;
/// see [`super::infer`]).
pub async fn evolve_from_records(
    catalog: &dyn Catalog,
    table: Table,
    fields: &[arrow_schema::Field],
) -> Result<Table, SinkError> {
    let schema = table.metadata().current_schema().clone();
    let mut names = Vec::new();
    let mut missing = Vec::new();
    for f in fields {
        if schema.field_by_name(f.name()).is_some() {
            continue;
        }
        match super::infer::column_type(f.data_type()) {
            Some(t) => {
                names.push(f.name().clone());
                missing.push(AddColumn::optional(f.name().clone(), t));
            }
            None => {
                tracing::warn!(table = %table.identifier(), field = f.name(), "a nested field the table lacks is not added")
            }
        }
    }
    add_columns(catalog, table, missing, &names).await
}

async fn add_columns(
    catalog: &dyn Catalog,
    table: Table,
    missing: Vec<AddColumn>,
    names: &[String],
) -> Result<Table, SinkError> {
    if missing.is_empty() {
        return Ok(table);
    }
    let tx = Transaction::new(&table);
    let mut action = tx.update_schema();
    for c in missing {
        action = action.add_column(c);
    }
    let tx = action
        .apply(tx)
        .map_err(|e| transient("cannot add the new columns", e))?;
    let table = tx
        .commit(catalog)
        .await
        .map_err(|e| transient("cannot add the new columns", e))?;
    tracing::info!(table = %table.identifier(), columns = ?names, "added columns the table lacked");
    Ok(table)
}
