//! Definitions every node shares, in a JetStream key-value bucket: JSON
//! values by key, written by the node that changes them and followed by the
//! others (a Kinesis stream created, resharded or deleted on one node is
//! created, resharded or deleted on every node).

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{JetStreamOptions, patiently};

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
    /// How long a listing of its keys is asked again
    /// ([`JetStreamOptions::patience`]).
    patience: Duration,
}

impl Defs {
    /// Opens (creating if needed) the bucket `bucket`.
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        opts: &JetStreamOptions,
        bucket: &str,
        description: &str,
    ) -> Result<Defs, String> {
        let kv = open_bucket(js, opts, bucket, description).await?;
        Ok(Defs {
            kv,
            bucket: bucket.to_string(),
            patience: opts.patience,
        })
    }

    fn err(&self, key: &str, e: impl std::fmt::Display) -> String {
        format!("{}/{key}: {e}", self.bucket)
    }

    /// The value of `key`, if it has one. A bucket between leaders (no
    /// server answers for a moment) is asked again every 250 ms for up to
    /// `cluster.nats.patience_secs`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        patiently(
            self.patience,
            Duration::from_millis(250),
            || self.kv.get(key),
            |e| tracing::debug!(bucket = self.bucket, key, error = %e, "asking again"),
        )
        .await
        .map_err(|e| self.err(key, e))
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
        let names = list_keys(&self.kv, &self.bucket, self.patience)
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
/// server), so a failed listing is asked again for up to `patience`.
pub(crate) async fn list_keys(
    kv: &kv::Store,
    bucket: &str,
    patience: Duration,
) -> Result<Vec<String>, String> {
    let listed = || async {
        let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(names)
    };
    patiently(patience, Duration::from_millis(500), listed, |e| {
        tracing::info!(bucket, error = %e, "listing the keys again");
    })
    .await
}

/// Opens (creating if needed) a key-value bucket of single values,
/// replicated as the logs are, and waits until it answers. A creation
/// that fails is tried again every half second for the options' patience
/// (a cluster still forming, its servers started with the daemon, has no
/// peers to place replicas on for a moment), and so is a read of the
/// bucket just opened.
pub(crate) async fn open_bucket(
    js: &async_nats::jetstream::Context,
    opts: &JetStreamOptions,
    bucket: &str,
    description: &str,
) -> Result<kv::Store, String> {
    let opened = || async {
        if let Ok(kv) = js.get_key_value(bucket).await {
            return Ok(kv);
        }
        js.create_key_value(kv::Config {
            bucket: bucket.to_string(),
            description: description.to_string(),
            history: 1,
            num_replicas: opts.replicas,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
    };
    let kv = patiently(opts.patience, Duration::from_millis(500), opened, |e| {
        tracing::info!(bucket, error = %e, "creating the bucket again");
    })
    .await
    .map_err(|e| format!("cannot create the bucket {bucket}: {e}"))?;
    // A new replicated bucket has no leader for a moment.
    let answered = || kv.get("hydrant-probe");
    patiently(opts.patience, Duration::from_millis(200), answered, |e| {
        tracing::debug!(bucket, error = %e, "waiting for the bucket to answer");
    })
    .await
    .map_err(|e| format!("the bucket {bucket} does not answer: {e}"))?;
    Ok(kv)
}
