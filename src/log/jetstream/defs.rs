//! Definitions every node shares, in a JetStream key-value bucket: JSON
//! values by key, written by the node that changes them and followed by the
//! others (a Kinesis stream created, resharded or deleted on one node is
//! created, resharded or deleted on every node).

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// How long a listing of a bucket's keys is asked again before it is an
/// error.
const LIST_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A change another node (or this one) made.
#[derive(Debug)]
pub enum DefChange {
    Put(String, Bytes),
    Delete(String),
}

/// One bucket of shared definitions.
pub struct Defs {
    kv: kv::Store,
    bucket: String,
}

impl Defs {
    /// Opens (creating if needed) the bucket `bucket`.
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
        bucket: &str,
        description: &str,
    ) -> Result<Defs, String> {
        let kv = open_bucket(js, replicas, bucket, description).await?;
        Ok(Defs {
            kv,
            bucket: bucket.to_string(),
        })
    }

    fn err(&self, key: &str, e: impl std::fmt::Display) -> String {
        format!("{}/{key}: {e}", self.bucket)
    }

    /// The value of `key`, if it has one. A bucket between leaders (no
    /// server answers for a moment) is asked again for up to 2 seconds.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        let mut tries = 0;
        loop {
            match self.kv.get(key).await {
                Ok(v) => return Ok(v),
                Err(e) if tries < 8 => {
                    tracing::debug!(bucket = self.bucket, key, error = %e, "asking again");
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(self.err(key, e)),
            }
        }
    }

    /// Writes `key` only if it has no value; false if it had one.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<bool, String> {
        match self.kv.create(key, value.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Writes `key`.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        self.kv
            .put(key, value.into())
            .await
            .map(|_| ())
            .map_err(|e| self.err(key, e))
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.kv.delete(key).await.map_err(|e| self.err(key, e))
    }

    /// Every key with its value.
    pub async fn all(&self) -> Result<Vec<(String, Bytes)>, String> {
        let names = list_keys(&self.kv, &self.bucket)
            .await
            .map_err(|e| self.err("*", e))?;
        let mut out = Vec::new();
        for k in names {
            if let Some(v) = self.get(&k).await? {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Every key's value now, then every change as it happens.
    pub async fn follow(&self) -> Result<impl Stream<Item = DefChange> + use<>, String> {
        let watch = self
            .kv
            .watch_with_history(">")
            .await
            .map_err(|e| self.err(">", e))?;
        Ok(watch.filter_map(|e| async move {
            let e = e.ok()?;
            Some(match e.operation {
                kv::Operation::Put => DefChange::Put(e.key, e.value),
                kv::Operation::Delete | kv::Operation::Purge => DefChange::Delete(e.key),
            })
        }))
    }
}

/// Every key of a bucket. Listing starts a consumer, which a replicated
/// bucket can fail to answer for a moment (a leader moving, a busy
/// server), so a failed listing is asked again for up to [`LIST_PATIENCE`].
pub(crate) async fn list_keys(kv: &kv::Store, bucket: &str) -> Result<Vec<String>, String> {
    let started = std::time::Instant::now();
    loop {
        let listed = async {
            let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
            let mut names = Vec::new();
            while let Some(k) = keys.next().await {
                names.push(k.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(names)
        };
        match listed.await {
            Ok(names) => return Ok(names),
            Err(e) if started.elapsed() < LIST_PATIENCE => {
                tracing::info!(bucket, error = %e, "listing the keys again");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long creating a bucket is tried again: a cluster that is still
/// forming (its servers started with the daemon) has no peers to place
/// replicas on for a moment.
const CREATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens (creating if needed) a key-value bucket of single values,
/// replicated as the logs are, and waits until it answers. A creation
/// that fails is tried again every half second for [`CREATE_PATIENCE`].
pub(crate) async fn open_bucket(
    js: &async_nats::jetstream::Context,
    replicas: usize,
    bucket: &str,
    description: &str,
) -> Result<kv::Store, String> {
    let started = std::time::Instant::now();
    let kv = loop {
        if let Ok(kv) = js.get_key_value(bucket).await {
            break kv;
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: bucket.to_string(),
                description: description.to_string(),
                history: 1,
                num_replicas: replicas,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await;
        match created {
            Ok(kv) => break kv,
            Err(e) if started.elapsed() < CREATE_PATIENCE => {
                tracing::info!(bucket, error = %e, "creating the bucket again");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("cannot create the bucket {bucket}: {e}")),
        }
    };
    wait_answering(&kv, bucket).await?;
    Ok(kv)
}

/// Waits until a bucket just opened answers reads: a new replicated
/// bucket has no leader for a moment.
async fn wait_answering(kv: &kv::Store, bucket: &str) -> Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        match kv.get("hydrant-probe").await {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() < std::time::Duration::from_secs(30) => {
                tracing::debug!(bucket, error = %e, "waiting for the bucket to answer");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("the bucket {bucket} does not answer: {e}")),
        }
    }
}
