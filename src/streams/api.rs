//! Streams created through `CreateDeliveryStream`, and Kinesis channels
//! (`CreateChannel`): each is persisted as its request, creation time and
//! kind in `data_dir/api-streams/NAME.json`, written atomically before the
//! stream starts, and restored from it at the next start through the same
//! translation into a stream config. Updating a channel persists its new
//! request, drains its delivery and starts it again with the new config on
//! the same checkpoints. Deleting one stops it taking records at once,
//! drains it, then removes its files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Origin, Registry, RegistryError, StreamEntry, shared};
use crate::config::firehose::{self, RequestError};
use crate::config::{Source, StreamConfig, channel};
use crate::delivery::kinesis_consumer;
use crate::log::files::write_atomic;

impl Registry {
    fn api_dir(&self) -> PathBuf {
        self.config.data_dir.join("api-streams")
    }

    fn api_spec_path(&self, name: &str) -> PathBuf {
        self.api_dir().join(format!("{name}.json"))
    }

    /// The config of a stream or channel created through the API, from its
    /// request.
    pub(super) fn config_from(
        &self,
        name: &str,
        request: &serde_json::Value,
        origin: Origin,
    ) -> Result<StreamConfig, RequestError> {
        match origin {
            Origin::Channel => channel::stream_from_channel(name, request, &self.config),
            _ => firehose::stream_from_request(name, request, &self.config),
        }
    }

    /// Starts every persisted API stream whose name YAML does not use,
    /// rebuilding its config from the request it was created with.
    pub(super) fn restore_api_streams(&self) -> Result<(), RegistryError> {
        let specs = match &self.cluster {
            Some(c) => shared::all(c)?,
            None => read_api_specs(&self.api_dir()),
        };
        for Persisted {
            name,
            created_ms,
            request,
            origin,
        } in specs
        {
            if self.config.streams.contains_key(&name) {
                tracing::warn!(
                    stream = name,
                    "a stream created through the API has the name of a YAML stream; the YAML stream wins"
                );
                continue;
            }
            match self.config_from(&name, &request, origin) {
                Ok(cfg) => {
                    let e = self.start(cfg, origin, created_ms, Some(request))?;
                    self.write().insert(name, e);
                }
                Err(msg) => tracing::error!(
                    stream = name,
                    error = %msg,
                    "cannot restore a stream created through the API"
                ),
            }
        }
        Ok(())
    }

    /// Creates, persists and starts a stream or channel defined through the
    /// API (`origin`).
    pub async fn create(
        &self,
        config: StreamConfig,
        request: serde_json::Value,
        origin: Origin,
    ) -> Result<Arc<StreamEntry>, RegistryError> {
        let _g = self.admin.lock().await;
        let name = config.name.clone();
        if self.get(&name).is_some() {
            return Err(RegistryError::Exists(name));
        }
        let api_count = self
            .all()
            .iter()
            .filter(|e| e.origin != Origin::Yaml)
            .count();
        if api_count >= self.config.limits.api_streams_max {
            return Err(RegistryError::Limit(self.config.limits.api_streams_max));
        }
        let created_ms = chrono::Utc::now().timestamp_millis();
        let fail = |e: std::io::Error| RegistryError::Start {
            stream: name.clone(),
            message: e.to_string(),
        };
        // A log left by an earlier stream of this name is not this stream's
        // data, nor are the checkpoints it kept on a Kinesis stream.
        let dir = match &config.source {
            Source::DirectPut => self.stream_dir(&name),
            Source::Kinesis { stream } => match self.kinesis.get(stream) {
                Some(k) => k.consumer_dir(&kinesis_consumer(&name)),
                None => {
                    return Err(RegistryError::Start {
                        stream: name.clone(),
                        message: format!("its source, Kinesis stream {stream}, does not exist"),
                    });
                }
            },
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(fail)?;
        }
        if let Some(c) = &self.cluster {
            // Defined for the cluster first: the other nodes start it too.
            let def = Persisted {
                name: name.clone(),
                created_ms,
                request,
                origin,
            };
            if !shared::define(c, &def).await? {
                return Err(RegistryError::Exists(name));
            }
            let started = tokio::task::block_in_place(|| {
                self.start(config, origin, created_ms, Some(def.request))
            });
            return match started {
                Ok(e) => {
                    self.write().insert(name, e.clone());
                    Ok(e)
                }
                Err(err) => {
                    let _ = shared::undefine(c, &name).await;
                    Err(err)
                }
            };
        }
        let spec = spec_json(created_ms, &request, origin);
        write_atomic(&self.api_spec_path(&name), spec.to_string().as_bytes()).map_err(fail)?;
        match self.start(config, origin, created_ms, Some(request)) {
            Ok(e) => {
                self.write().insert(name, e.clone());
                Ok(e)
            }
            Err(err) => {
                let _ = std::fs::remove_file(self.api_spec_path(&name));
                Err(err)
            }
        }
    }

    /// Replaces the config of a stream created through the API (a channel's
    /// `UpdateChannel`): the new request is persisted first, then the
    /// delivery drains (what it batched is delivered and checkpointed) and
    /// starts again with `config` from those checkpoints, so nothing is lost
    /// or delivered twice.
    pub async fn update(
        &self,
        config: StreamConfig,
        request: serde_json::Value,
    ) -> Result<Arc<StreamEntry>, RegistryError> {
        let _g = self.admin.lock().await;
        let old = self.api_entry(&config.name)?;
        self.persist(&old, &request).await?;
        self.restart(&old, config, request).await
    }

    /// A stream or channel created through the API.
    fn api_entry(&self, name: &str) -> Result<Arc<StreamEntry>, RegistryError> {
        self.get(name)
            .filter(|e| e.origin != Origin::Yaml)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Persists `request` as the definition of `e` (the local file, or the
    /// cluster's definition).
    async fn persist(
        &self,
        e: &StreamEntry,
        request: &serde_json::Value,
    ) -> Result<(), RegistryError> {
        let name = e.config.name.clone();
        match &self.cluster {
            Some(c) => {
                let def = Persisted {
                    name,
                    created_ms: e.created_ms,
                    request: request.clone(),
                    origin: e.origin,
                };
                shared::redefine(c, &def).await
            }
            None => {
                let spec = spec_json(e.created_ms, request, e.origin);
                write_atomic(&self.api_spec_path(&name), spec.to_string().as_bytes()).map_err(
                    |err| RegistryError::Start {
                        stream: name.clone(),
                        message: err.to_string(),
                    },
                )
            }
        }
    }

    /// Replaces the request of a stream created through the API where only
    /// its tags changed: persisted, nothing restarted.
    pub async fn retag(&self, name: &str, request: serde_json::Value) -> Result<(), RegistryError> {
        let _g = self.admin.lock().await;
        let e = self.api_entry(name)?;
        self.persist(&e, &request).await?;
        e.set_request(request);
        Ok(())
    }

    /// Replaces the request of an API stream whose encryption at rest
    /// changed, and seals its log's new records with `key` from now on
    /// (None: in clear): persisted, nothing restarted, no record waits.
    pub async fn reseal(
        &self,
        name: &str,
        request: serde_json::Value,
        key: Option<String>,
    ) -> Result<(), RegistryError> {
        let _g = self.admin.lock().await;
        let e = self.api_entry(name)?;
        let before = e.log.sealing_key();
        tokio::task::block_in_place(|| e.log.set_sealing(key.as_deref())).map_err(|err| {
            RegistryError::Start {
                stream: name.to_string(),
                message: err.to_string(),
            }
        })?;
        if let Err(err) = self.persist(&e, &request).await {
            // Not persisted, so not done: back to what the definition says.
            let _ = tokio::task::block_in_place(|| e.log.set_sealing(before.as_deref()));
            return Err(err);
        }
        e.set_request(request);
        Ok(())
    }

    /// Drains `old`'s delivery and starts `config` in its place.
    pub(super) async fn restart(
        &self,
        old: &StreamEntry,
        config: StreamConfig,
        request: serde_json::Value,
    ) -> Result<Arc<StreamEntry>, RegistryError> {
        let name = config.name.clone();
        if !old.stop(self.config.shutdown_timeout).await {
            tracing::warn!(
                stream = name,
                "not drained within the shutdown deadline; the rest is read again from the log"
            );
        }
        let log = || old.ctx.owns_log.then(|| old.log.clone());
        let started = tokio::task::block_in_place(|| {
            self.start_on(config, old.origin, old.created_ms, Some(request), log())
        });
        let e = match started {
            Ok(e) => e,
            Err(err) => {
                // Keep delivering with the old config rather than not at all,
                // sealing as the log does now.
                let mut back = (*old.config).clone();
                back.log_key = old.log.sealing_key();
                let back = tokio::task::block_in_place(|| {
                    self.start_on(back, old.origin, old.created_ms, old.request(), log())
                })?;
                self.write().insert(name, back);
                return Err(err);
            }
        };
        self.write().insert(name, e.clone());
        Ok(e)
    }

    /// Deletes an API stream: it stops taking records at once, delivers what
    /// it holds (up to the shutdown deadline), then its files are removed.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), RegistryError> {
        let entry = self
            .get(name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        if entry.origin == Origin::Yaml {
            return Err(RegistryError::DefinedInConfig(name.to_string()));
        }
        if let Some(c) = &self.cluster {
            shared::undefine(c, name).await?;
        }
        self.write().remove(name);
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let _g = this.admin.lock().await;
            let drained = entry.stop(this.config.shutdown_timeout).await;
            if !drained {
                tracing::warn!(stream = name, "deleted before all records were delivered");
            }
            if this.cluster.is_some() {
                shared::wait_for_drains(&entry, this.config.shutdown_timeout).await;
                // A reader of a Kinesis stream: its checkpoints there go.
                if !entry.ctx.owns_log
                    && let Some((leases, prefix)) = entry.log.leases_of(Some(&entry.ctx.consumer))
                    && let Err(e) = leases.forget(&prefix).await
                {
                    tracing::warn!(stream = name, error = %e, "cannot remove the stream's checkpoints");
                }
            }
            let _ = std::fs::remove_file(this.api_spec_path(&name));
            // Its own log, or its checkpoints on the Kinesis stream it read.
            let dir = if entry.ctx.owns_log {
                this.stream_dir(&name)
            } else {
                entry
                    .log
                    .dir()
                    .join("checkpoints")
                    .join(&entry.ctx.consumer)
            };
            let held = if entry.ctx.owns_log {
                entry.log.quota_bytes()
            } else {
                0
            };
            if entry.ctx.owns_log
                && let Err(e) = entry.log.destroy()
            {
                tracing::warn!(stream = name, error = %e, "cannot delete the stream's log");
            }
            drop(entry);
            match std::fs::remove_dir_all(dir) {
                Ok(()) => this.quota.release(held),
                Err(e) => {
                    tracing::warn!(stream = name, error = %e, "cannot remove the log of a deleted stream")
                }
            }
            tracing::info!(stream = name, "stream deleted");
        });
        Ok(())
    }
}

/// A stream or channel created through the API, as it is persisted.
pub(super) struct Persisted {
    pub name: String,
    pub created_ms: i64,
    pub request: serde_json::Value,
    pub origin: Origin,
}

fn spec_json(created_ms: i64, request: &serde_json::Value, origin: Origin) -> serde_json::Value {
    serde_json::json!({ "created_ms": created_ms, "request": request, "kind": origin.kind() })
}

fn read_api_specs(dir: &Path) -> Vec<Persisted> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in rd.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(v) => out.push(Persisted {
                name: name.to_string(),
                created_ms: v.get("created_ms").and_then(|c| c.as_i64()).unwrap_or(0),
                request: v.get("request").cloned().unwrap_or_default(),
                origin: Origin::from_kind(v.get("kind").and_then(|k| k.as_str())),
            }),
            Err(e) => {
                tracing::error!(file = %path.display(), error = e, "cannot read a persisted stream definition")
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
