//! Delivery streams created through the API, in cluster mode: defined in a
//! JetStream key-value bucket (`hydrant_streams`) instead of
//! `data_dir/api-streams`, so a stream created on one node runs on every
//! node (each delivers the shards whose leases it holds).
//!
//! Deleting one removes its definition first: every node stops taking
//! records for it and drains the shards it delivers, giving their leases
//! up. The deleting node then waits, up to the shutdown deadline, until no
//! node holds a lease of the stream, and only then deletes its log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use super::api::Persisted;
use super::{Origin, Registry, RegistryError, StreamEntry};
use crate::log::jetstream::{Cluster, DefChange, log_name};

fn key(name: &str) -> String {
    log_name("fh", name)
}

fn fail(name: &str, message: impl std::fmt::Display) -> RegistryError {
    RegistryError::Start {
        stream: name.to_string(),
        message: format!("the shared definition: {message}"),
    }
}

/// A definition as the bucket holds it.
fn parse(v: &[u8]) -> Option<Persisted> {
    let v: Value = serde_json::from_slice(v).ok()?;
    Some(Persisted {
        name: v.get("name")?.as_str()?.to_string(),
        created_ms: v.get("created_ms").and_then(Value::as_i64).unwrap_or(0),
        request: v.get("request").cloned().unwrap_or_default(),
        origin: Origin::from_kind(v.get("kind").and_then(Value::as_str)),
    })
}

fn encode(def: &Persisted) -> Vec<u8> {
    json!({
        "name": def.name,
        "created_ms": def.created_ms,
        "request": def.request,
        "kind": def.origin.kind(),
    })
    .to_string()
    .into_bytes()
}

/// Every API stream the cluster defines. Blocking.
pub(super) fn all(c: &Cluster) -> Result<Vec<Persisted>, RegistryError> {
    let entries = c.block_on(c.stream_defs.all()).map_err(|e| fail("*", e))?;
    Ok(entries.iter().filter_map(|(_, v)| parse(v)).collect())
}

/// Defines a stream for the cluster, unless it is defined; false if it was.
pub(super) async fn define(c: &Cluster, def: &Persisted) -> Result<bool, RegistryError> {
    c.stream_defs
        .create(&key(&def.name), encode(def))
        .await
        .map_err(|e| fail(&def.name, e))
}

/// Replaces a stream's definition (an update); every node restarts it.
pub(super) async fn redefine(c: &Cluster, def: &Persisted) -> Result<(), RegistryError> {
    c.stream_defs
        .put(&key(&def.name), encode(def))
        .await
        .map_err(|e| fail(&def.name, e))
}

pub(super) async fn undefine(c: &Cluster, name: &str) -> Result<(), RegistryError> {
    c.stream_defs
        .delete(&key(name))
        .await
        .map_err(|e| fail(name, e))
}

/// Waits until no node holds a lease of the deleted stream's `entry` (all
/// drained), up to `deadline`.
pub(super) async fn wait_for_drains(entry: &StreamEntry, deadline: Duration) {
    let Some((leases, prefix)) = entry.log.leases_of(Some(&entry.ctx.consumer)) else {
        return;
    };
    let started = Instant::now();
    while started.elapsed() < deadline {
        match leases.held(&prefix).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read a deleted stream's leases"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::warn!(
        stream = entry.config.name,
        "nodes still deliver a deleted stream at the deadline; deleting its log"
    );
}

impl Registry {
    /// In cluster mode, follows the API streams other nodes create, update
    /// and delete, for as long as the node runs.
    pub async fn follow_cluster(self: Arc<Self>) {
        let Some(c) = self.cluster.clone() else {
            return;
        };
        loop {
            match c.stream_defs.follow().await {
                Ok(changes) => {
                    let mut changes = std::pin::pin!(changes);
                    while let Some(change) = changes.next().await {
                        self.apply(change).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the delivery stream definitions")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Starts a stream another node defined.
    fn start_defined(&self, def: Persisted) {
        let started = self
            .config_from(&def.name, &def.request, def.origin)
            .map_err(|m| fail(&def.name, m))
            .and_then(|cfg| {
                tokio::task::block_in_place(|| {
                    self.start(cfg, def.origin, def.created_ms, Some(def.request))
                })
            });
        match started {
            Ok(e) => {
                tracing::info!(stream = def.name, "stream created on another node");
                self.write().insert(def.name, e);
            }
            Err(e) => {
                tracing::error!(stream = def.name, error = %e, "cannot start a stream created on another node")
            }
        }
    }

    async fn apply(self: &Arc<Self>, change: DefChange) {
        match change {
            DefChange::Put(_, v) => {
                let Some(def) = parse(&v) else {
                    return;
                };
                let _g = self.admin.lock().await;
                if self.config.streams.contains_key(&def.name) {
                    return;
                }
                match self.get(&def.name) {
                    None => self.start_defined(def),
                    // Updated on another node: restart with the new request.
                    // Only its tags changed: nothing to restart.
                    Some(old)
                        if old
                            .request()
                            .is_some_and(|r| same_but_tags(&r, &def.request)) =>
                    {
                        old.set_request(def.request)
                    }
                    Some(old) if old.request().as_ref() != Some(&def.request) => {
                        let restarted = match self.config_from(&def.name, &def.request, def.origin)
                        {
                            Ok(cfg) => self.restart(&old, cfg, def.request).await,
                            Err(e) => Err(e.into()),
                        };
                        if let Err(e) = restarted {
                            tracing::error!(stream = def.name, error = %e, "cannot apply an update made on another node");
                        }
                    }
                    Some(_) => {}
                }
            }
            DefChange::Delete(k) => {
                let Some(entry) = self
                    .all()
                    .into_iter()
                    .find(|e| e.origin != Origin::Yaml && key(&e.config.name) == k)
                else {
                    return;
                };
                let name = entry.config.name.clone();
                self.write().remove(&name);
                let deadline = self.config.shutdown_timeout;
                tokio::spawn(async move {
                    entry.stop(deadline).await;
                    tracing::info!(stream = name, "stream deleted on another node");
                });
            }
        }
    }
}

/// Whether two requests differ in their `Tags` at most.
fn same_but_tags(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("Tags");
        }
        v
    };
    a != b && strip(a) == strip(b)
}
