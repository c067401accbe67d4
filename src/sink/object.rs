//! Object store sinks: S3-compatible services and the local filesystem, both
//! through `object_store`. A PUT is confirmed by the store's answer (S3) or by
//! the file being written and renamed into place (local).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::{Batch, Delivered, Sink, SinkError};
use crate::config::StoreConfig;

/// A bucket on an object store.
pub struct ObjectSink {
    store: Arc<dyn ObjectStore>,
    describe: String,
}

impl ObjectSink {
    /// Connects to `bucket` on `store` (for a file store, `bucket` is a folder
    /// below its root; an empty bucket is the root itself).
    pub fn new(store: &StoreConfig, bucket: &str) -> Result<ObjectSink, SinkError> {
        let fail = |e: &dyn std::fmt::Display| SinkError {
            message: format!("cannot set up the object store: {e}"),
            retryable: false,
        };
        match store {
            StoreConfig::File { root } => {
                let dir = if bucket.is_empty() {
                    root.clone()
                } else {
                    root.join(bucket)
                };
                std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
                // An object is confirmed only once it and its directory entry
                // are on disk, as an S3 PUT is: the checkpoint then moves past
                // its records and the log deletes them.
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| fail(&e))?
                    .with_fsync(true);
                Ok(ObjectSink {
                    store: Arc::new(fs),
                    describe: format!("file://{}", dir.display()),
                })
            }
            StoreConfig::S3(s3) => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&s3.region)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    // Hydrant retries around the sink with its own bounded
                    // policy; the client only retries quick transient faults.
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(10),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(s3.timeout)
                            .with_connect_timeout(s3.connect_timeout),
                    )
                    // After the client options, which would otherwise reset it.
                    .with_allow_http(s3.allow_http);
                if let Some(ep) = &s3.endpoint {
                    b = b.with_endpoint(ep);
                }
                if let (Some(k), Some(s)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                }
                if let Some(t) = &s3.session_token {
                    b = b.with_token(t);
                }
                let store = b.build().map_err(|e| fail(&e))?;
                Ok(ObjectSink {
                    store: Arc::new(store),
                    describe: format!("s3://{bucket}"),
                })
            }
        }
    }

    /// The store client itself, for a destination that lays out its own
    /// objects (an Iceberg warehouse).
    pub fn client(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Writes `body` at `key`, for the error output and other direct writes.
    pub async fn put(&self, key: &str, body: bytes::Bytes) -> Result<(), SinkError> {
        let path = ObjectPath::parse(key).map_err(|e| SinkError {
            message: format!("invalid object key `{key}`: {e}"),
            retryable: false,
        })?;
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.describe, key, e))
    }
}

fn classify(describe: &str, key: &str, e: object_store::Error) -> SinkError {
    let retryable = !matches!(
        e,
        object_store::Error::InvalidPath { .. } | object_store::Error::NotSupported { .. }
    );
    SinkError {
        message: format!("put {describe}/{key} failed: {e}"),
        retryable,
    }
}

#[async_trait]
impl Sink for ObjectSink {
    async fn deliver(&self, batch: &Batch<'_>) -> Result<Delivered, SinkError> {
        self.put(batch.key, batch.body.clone()).await?;
        Ok(Delivered::default())
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
