//! Finding a destination's table: loaded if it exists, else created from
//! the declared schema and partition spec (its namespace too), and grown by
//! the declared columns it lacks (added as optional columns, the schema
//! evolution Iceberg allows without rewriting files).

use std::collections::HashMap;

use iceberg::spec::Schema;
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};

use crate::config::IcebergDestination;
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
/// missing and allowed, then adds the declared columns it lacks.
pub async fn open(catalog: &dyn Catalog, cfg: &IcebergDestination) -> Result<Table, SinkError> {
    let ident = ident(cfg);
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
        create(catalog, cfg, &ident).await?
    } else {
        return Err(SinkError {
            message: format!("table {ident} does not exist and create_table is false"),
            retryable: false,
        });
    };
    evolve(catalog, cfg, table).await
}

async fn create(
    catalog: &dyn Catalog,
    cfg: &IcebergDestination,
    ident: &TableIdent,
) -> Result<Table, SinkError> {
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
        .name(cfg.table.clone())
        .schema(cfg.schema.clone())
        .partition_spec(cfg.spec.clone())
        .properties(HashMap::from([(
            "write.parquet.compression-codec".to_string(),
            cfg.parquet.compression.clone(),
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
    let missing = missing_columns(&cfg.schema, table.metadata().current_schema());
    let names: Vec<String> = cfg
        .schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| {
            table
                .metadata()
                .current_schema()
                .field_by_name(&f.name)
                .is_none()
        })
        .map(|f| f.name.clone())
        .collect();
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
    tracing::info!(table = %table.identifier(), columns = ?names, "added the declared columns the table lacked");
    Ok(table)
}
