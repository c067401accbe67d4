//! Iceberg's file I/O over Hydrant's `object_store` client: an S3 bucket
//! (path-style endpoints such as Garage and MinIO included) or the local
//! filesystem, where a file is written to a temporary name, synced and
//! renamed into place, as every object Hydrant stores locally is.
//!
//! Iceberg hands paths as full locations (`s3://bucket/key`,
//! `file:///dir/file`); the scheme and bucket are checked and stripped.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

fn store_err(e: object_store::Error) -> Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("object store: {e}")).with_source(e)
}

/// Where locations point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Root {
    /// `file:///...` or `/...`, keys relative to `/`.
    Local,
    /// `s3://BUCKET/...`.
    S3 { bucket: String },
}

/// A [`Storage`] on one object store. Iceberg requires storages to be
/// serialisable; the client itself is not carried (a copy made by
/// deserialising has none, and every call on it fails).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStorage {
    root: Root,
    #[serde(skip)]
    store: Option<Arc<dyn ObjectStore>>,
}

impl ObjectStorage {
    pub fn new(root: Root, store: Arc<dyn ObjectStore>) -> Self {
        ObjectStorage {
            root,
            store: Some(store),
        }
    }

    fn store(&self) -> Result<&Arc<dyn ObjectStore>> {
        self.store
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "storage has no object store client"))
    }

    /// The object key of a location.
    pub fn key(&self, location: &str) -> Result<Path> {
        let outside = || {
            Error::new(
                ErrorKind::DataInvalid,
                format!("{location} is outside this storage ({:?})", self.root),
            )
        };
        let key = match &self.root {
            Root::Local => location
                .strip_prefix("file://")
                .unwrap_or(location)
                .strip_prefix('/')
                .ok_or_else(outside)?,
            Root::S3 { bucket } => location
                .strip_prefix("s3://")
                .or_else(|| location.strip_prefix("s3a://"))
                .and_then(|r| r.strip_prefix(bucket.as_str()))
                .and_then(|r| r.strip_prefix('/'))
                .ok_or_else(outside)?,
        };
        Path::parse(key).map_err(|e| {
            Error::new(ErrorKind::DataInvalid, format!("{location}: {e}")).with_source(e)
        })
    }

    /// The location of an object key (the inverse of [`Self::key`]).
    pub fn location(&self, key: &Path) -> String {
        match &self.root {
            Root::Local => format!("file:///{key}"),
            Root::S3 { bucket } => format!("s3://{bucket}/{key}"),
        }
    }

    /// The client, for listing (orphan files).
    pub fn client(&self) -> Result<Arc<dyn ObjectStore>> {
        self.store().cloned()
    }
}

struct Reader {
    store: Arc<dyn ObjectStore>,
    key: Path,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.key, range)
            .await
            .map_err(store_err)
    }
}

/// Collects what is written and stores it in one PUT on close.
struct Writer {
    store: Arc<dyn ObjectStore>,
    key: Path,
    parts: Option<Vec<Bytes>>,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.parts
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "write after close"))?
            .push(bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        let parts = self
            .parts
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "closed twice"))?;
        let payload: PutPayload = parts.into_iter().collect();
        self.store
            .put(&self.key, payload)
            .await
            .map_err(store_err)?;
        Ok(())
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.store()?.head(&self.key(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let m = self
            .store()?
            .head(&self.key(path)?)
            .await
            .map_err(store_err)?;
        Ok(FileMetadata { size: m.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        self.store()?
            .get(&self.key(path)?)
            .await
            .map_err(store_err)?
            .bytes()
            .await
            .map_err(store_err)
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        Ok(Box::new(Reader {
            store: self.store()?.clone(),
            key: self.key(path)?,
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        self.store()?
            .put(&self.key(path)?, bs.into())
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        Ok(Box::new(Writer {
            store: self.store()?.clone(),
            key: self.key(path)?,
            parts: Some(Vec::new()),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.store()?.delete(&self.key(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let store = self.store()?.clone();
        let prefix = self.key(path)?;
        let mut list = store.list(Some(&prefix));
        while let Some(m) = list.next().await {
            let m = m.map_err(store_err)?;
            match store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(p) = paths.next().await {
            self.delete(&p).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Hands the catalog's tables the one storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStorageFactory {
    storage: ObjectStorage,
}

impl ObjectStorageFactory {
    pub fn new(storage: ObjectStorage) -> Self {
        ObjectStorageFactory { storage }
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.storage.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_map_to_keys_and_back() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let s3 = ObjectStorage::new(
            Root::S3 {
                bucket: "lake".into(),
            },
            store.clone(),
        );
        let key = s3.key("s3://lake/wh/ns/t/data/a.parquet").unwrap();
        assert_eq!(key.as_ref(), "wh/ns/t/data/a.parquet");
        assert_eq!(s3.location(&key), "s3://lake/wh/ns/t/data/a.parquet");
        assert!(s3.key("s3://other/wh/a").is_err());
        assert!(s3.key("file:///tmp/a").is_err());
        let local = ObjectStorage::new(Root::Local, store);
        let key = local.key("file:///var/lib/h/wh/a.parquet").unwrap();
        assert_eq!(key.as_ref(), "var/lib/h/wh/a.parquet");
        assert_eq!(local.key("/var/lib/h/wh/a.parquet").unwrap(), key);
        assert_eq!(local.location(&key), "file:///var/lib/h/wh/a.parquet");
        assert!(local.key("relative/a").is_err());
    }
}
