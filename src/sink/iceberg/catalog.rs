//! Opening a configured catalog: the SQL catalog (the JDBC layout Spark,
//! Trino, Flink and pyiceberg share) on SQLite or PostgreSQL, or a REST
//! catalog server (the Iceberg REST spec); its tables' files through
//! [`super::storage`].

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::{
    REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE, RestCatalogBuilder,
};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalogBuilder,
};

use super::storage::{ObjectStorage, ObjectStorageFactory, Root};
use crate::config::StoreConfig;
use crate::config::iceberg::{CatalogDatabase, IcebergCatalog, Warehouse};
use crate::sink::SinkError;

/// An open catalog and the storage of its warehouse.
pub struct OpenCatalog {
    pub catalog: Arc<dyn Catalog>,
    pub storage: ObjectStorage,
}

/// The storage of `warehouse`.
pub fn storage(warehouse: &Warehouse) -> Result<ObjectStorage, SinkError> {
    match warehouse {
        Warehouse::Local(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| SinkError {
                message: format!("cannot create the warehouse {}: {e}", dir.display()),
                retryable: true,
            })?;
            let fs = object_store::local::LocalFileSystem::new().with_fsync(true);
            Ok(ObjectStorage::new(Root::Local, Arc::new(fs)))
        }
        Warehouse::S3 { bucket, store, .. } => {
            let sink =
                crate::sink::object::ObjectSink::new(&StoreConfig::S3(store.clone()), bucket)?;
            Ok(ObjectStorage::new(
                Root::S3 {
                    bucket: bucket.clone(),
                },
                sink.client(),
            ))
        }
    }
}

/// The warehouse as the catalog records table locations under it.
fn warehouse_location(w: &Warehouse) -> String {
    match w {
        Warehouse::Local(dir) => format!("file://{}", dir.display()),
        Warehouse::S3 { .. } => w.location(),
    }
}

/// Opens a REST catalog; its tables' files through `storage`.
async fn open_rest(
    c: &IcebergCatalog,
    url: &str,
    storage: ObjectStorage,
) -> Result<OpenCatalog, SinkError> {
    let props = HashMap::from([
        (REST_CATALOG_PROP_URI.to_string(), url.to_string()),
        (
            REST_CATALOG_PROP_WAREHOUSE.to_string(),
            warehouse_location(&c.warehouse),
        ),
    ]);
    let catalog = RestCatalogBuilder::default()
        .with_storage_factory(Arc::new(ObjectStorageFactory::new(storage.clone())))
        .load(&c.name, props)
        .await
        .map_err(|e| SinkError {
            message: format!(
                "cannot open the Iceberg REST catalog `{}` at {url}: {e}",
                c.name
            ),
            retryable: true,
        })?;
    Ok(OpenCatalog {
        catalog: Arc::new(catalog),
        storage,
    })
}

/// Opens (and on first use creates) the catalog's tables.
pub async fn open(c: &IcebergCatalog) -> Result<OpenCatalog, SinkError> {
    let storage = storage(&c.warehouse)?;
    let (uri, bind) = match &c.database {
        CatalogDatabase::Sqlite(file) => {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| SinkError {
                    message: format!("cannot create {}: {e}", dir.display()),
                    retryable: true,
                })?;
            }
            (
                format!("sqlite://{}?mode=rwc", file.display()),
                SqlBindStyle::QMark,
            )
        }
        CatalogDatabase::Postgres(url) => (url.clone(), SqlBindStyle::DollarNumeric),
        CatalogDatabase::Rest(url) => return open_rest(c, url, storage).await,
    };
    let props = HashMap::from([
        (SQL_CATALOG_PROP_URI.to_string(), uri),
        (
            SQL_CATALOG_PROP_WAREHOUSE.to_string(),
            warehouse_location(&c.warehouse),
        ),
        (SQL_CATALOG_PROP_BIND_STYLE.to_string(), bind.to_string()),
    ]);
    let catalog = SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(ObjectStorageFactory::new(storage.clone())))
        .load(&c.name, props)
        .await
        .map_err(|e| SinkError {
            message: format!("cannot open the Iceberg catalog `{}`: {e}", c.name),
            retryable: true,
        })?;
    Ok(OpenCatalog {
        catalog: Arc::new(catalog),
        storage,
    })
}
