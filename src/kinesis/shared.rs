//! Kinesis stream definitions in cluster mode: kept in a JetStream
//! key-value bucket (`hydrant_kinesis`, one key per stream) instead of a
//! `stream.json` beside a local log, so every node serves the same streams.
//!
//! The node that creates, changes (reshards, tags, registers a consumer)
//! or deletes a stream writes the bucket; every node follows it
//! ([`follow`]) and opens, updates or forgets its view of the stream. A
//! reshard on another node reaches this one as a new shard map: the
//! children's logs are opened and puts route to them; until then, a put
//! routed here to a parent is refused by JetStream (the parent's stream is
//! sealed) and the producer's SDK retries it.

use std::sync::Arc;

use futures::StreamExt;

use super::shards::Layout;
use super::{Bucket, KinesisError, KinesisStream, Spec, Streams};
use crate::log::jetstream::{Cluster, DefChange, Lease, log_name};

fn key(name: &str) -> String {
    log_name("kds", name)
}

fn fail(name: &str, message: impl std::fmt::Display) -> KinesisError {
    KinesisError::Io {
        stream: name.to_string(),
        message: format!("the shared definition: {message}"),
    }
}

fn to_json(spec: &Spec) -> Result<Vec<u8>, KinesisError> {
    serde_json::to_vec(spec).map_err(|e| fail(&spec.name, e))
}

/// Writes `spec` to the bucket. Blocking.
pub(super) fn put(c: &Cluster, spec: &Spec) -> Result<(), KinesisError> {
    let value = to_json(spec)?;
    c.block_on(c.kinesis_defs.put(&key(&spec.name), value))
        .map_err(|e| fail(&spec.name, e))
}

/// Writes `spec` only if the stream has no definition; false if it had.
pub(super) fn create(c: &Cluster, spec: &Spec) -> Result<bool, KinesisError> {
    let value = to_json(spec)?;
    c.block_on(c.kinesis_defs.create(&key(&spec.name), value))
        .map_err(|e| fail(&spec.name, e))
}

/// The definition of `name`, if the cluster has one.
pub(super) fn get(c: &Cluster, name: &str) -> Result<Option<Spec>, KinesisError> {
    let v = c
        .block_on(c.kinesis_defs.get(&key(name)))
        .map_err(|e| fail(name, e))?;
    v.map(|v| serde_json::from_slice(&v).map_err(|e| fail(name, e)))
        .transpose()
}

pub(super) fn delete(c: &Cluster, name: &str) -> Result<(), KinesisError> {
    c.block_on(c.kinesis_defs.delete(&key(name)))
        .map_err(|e| fail(name, e))
}

/// Every stream the cluster defines.
pub(super) fn all(c: &Cluster) -> Result<Vec<Spec>, KinesisError> {
    let entries = c.block_on(c.kinesis_defs.all()).map_err(|e| fail("*", e))?;
    let mut out = Vec::new();
    for (k, v) in entries {
        match serde_json::from_slice::<Spec>(&v) {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::warn!(key = k, error = %e, "an unreadable Kinesis stream definition; skipped")
            }
        }
    }
    Ok(out)
}

/// In cluster mode, makes this node the only one resharding `s` (a lease
/// on `reshard.<stream>` in the lease bucket) and brings its view of the
/// stream up to date first. `ResourceInUseException` if another node is
/// resharding it. None in local mode.
pub(super) async fn exclusive(
    streams: &Streams,
    s: &Arc<KinesisStream>,
) -> Result<Option<Lease>, KinesisError> {
    let Some(c) = &streams.cluster else {
        return Ok(None);
    };
    let lease = c
        .leases
        .try_acquire(&format!("reshard.{}", key(&s.name)))
        .await
        .map_err(|e| fail(&s.name, e))?
        .ok_or_else(|| {
            KinesisError::InUse(format!(
                "Stream {} under account {} is being resharded on another node; retry.",
                s.name,
                crate::aws::ACCOUNT
            ))
        })?;
    let current = c
        .kinesis_defs
        .get(&key(&s.name))
        .await
        .map_err(|e| fail(&s.name, e))?;
    if let Some(v) = current {
        let spec: Spec = serde_json::from_slice(&v).map_err(|e| fail(&s.name, e))?;
        update(s, spec).await?;
    }
    Ok(Some(lease))
}

/// Follows the bucket for as long as the node runs, applying every change.
pub async fn follow(streams: &Streams) {
    let Some(c) = streams.cluster.clone() else {
        return;
    };
    loop {
        match c.kinesis_defs.follow().await {
            Ok(changes) => {
                let mut changes = std::pin::pin!(changes);
                while let Some(change) = changes.next().await {
                    if let Err(e) = apply(streams, change).await {
                        tracing::warn!(error = %e, "cannot apply a Kinesis stream's change from the cluster");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot follow the Kinesis definitions"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn apply(streams: &Streams, change: DefChange) -> Result<(), KinesisError> {
    match change {
        DefChange::Put(k, v) => {
            let spec: Spec = serde_json::from_slice(&v).map_err(|e| fail(&k, e))?;
            match streams.get(&spec.name) {
                None => {
                    let _ = tokio::task::block_in_place(|| streams.insert_opened(spec))?;
                }
                Some(s) if s.created_ms != spec.created_ms => {
                    // Deleted and created again elsewhere.
                    forget(streams, &spec.name);
                    let _ = tokio::task::block_in_place(|| streams.insert_opened(spec))?;
                }
                Some(s) => update(&s, spec).await?,
            }
        }
        DefChange::Delete(k) => {
            let name = streams.all().into_iter().find(|s| key(&s.name) == k);
            if let Some(s) = name {
                forget(streams, &s.name);
            }
        }
    }
    Ok(())
}

/// Drops this node's view of a stream another node deleted.
fn forget(streams: &Streams, name: &str) {
    let gone = streams
        .streams
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name);
    if let Some(s) = gone {
        s.end_subscriptions();
        tracing::info!(stream = name, "Kinesis stream deleted on another node");
    }
}

/// Brings a running stream to `spec`: opens the shards a reshard elsewhere
/// added, notes the ones it closed, and routes puts by the new map.
async fn update(s: &Arc<KinesisStream>, spec: Spec) -> Result<(), KinesisError> {
    let same = serde_json::to_value(current(s).await).ok() == serde_json::to_value(&spec).ok();
    if same {
        return Ok(());
    }
    let map = spec.shard_map().map_err(|e| fail(&spec.name, e))?;
    let _gate = s.gate.write().await;
    while s.log.shard_count() < map.len() {
        tokio::task::block_in_place(|| s.log.add_shard()).map_err(|e| fail(&spec.name, e))?;
    }
    for sh in map.all() {
        if let Some(l) = s.log.shard(sh.index)
            && !sh.is_open()
            && !l.is_sealed()
        {
            l.seal().await.map_err(|e| fail(&spec.name, e))?;
        }
    }
    if let Some(limits) = &s.limits {
        let mut l = limits.write().unwrap_or_else(|p| p.into_inner());
        while (l.len() as u32) < map.len() {
            l.push(std::sync::Mutex::new(Bucket::full()));
        }
    }
    let changed = serde_json::to_value(&s.layout().map).ok() != serde_json::to_value(&map).ok();
    if changed {
        tracing::info!(
            stream = spec.name,
            open = map.open_count(),
            "shards changed on another node"
        );
        s.layout.send_replace(Arc::new(Layout::new(map)));
    }
    s.on_demand
        .store(spec.on_demand, std::sync::atomic::Ordering::Release);
    if s.log.sealing_key() != spec.log_key {
        tokio::task::block_in_place(|| s.log.set_sealing(spec.log_key.as_deref()))
            .map_err(|e| fail(&spec.name, e))?;
    }
    let mut spec = Some(spec);
    loop {
        let set = match s.spec.try_lock() {
            Ok(mut g) => {
                *g = spec.take().unwrap_or_else(|| g.clone());
                true
            }
            Err(std::sync::TryLockError::Poisoned(p)) => {
                let mut g = p.into_inner();
                *g = spec.take().unwrap_or_else(|| g.clone());
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        };
        if set {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The stream's definition now. A change of this node's may hold the lock
/// while it writes to the cluster (which needs the runtime): wait for it
/// without blocking a runtime thread.
async fn current(s: &KinesisStream) -> Spec {
    loop {
        let got = match s.spec.try_lock() {
            Ok(g) => Some(g.clone()),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner().clone()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(spec) = got {
            return spec;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
