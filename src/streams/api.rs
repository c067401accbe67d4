//! Streams created through `CreateDeliveryStream`: each is persisted as its
//! request (and creation time) in `data_dir/api-streams/NAME.json`, written
//! atomically before the stream starts, and restored from it at the next
//! start through the same translation into a stream config. Deleting one
//! stops it taking records at once, drains it, then removes its files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Origin, Registry, RegistryError, StreamEntry, shared};
use crate::config::firehose;
use crate::config::{Source, StreamConfig};
use crate::delivery::kinesis_consumer;
use crate::log::files::write_atomic;

impl Registry {
    fn api_dir(&self) -> PathBuf {
        self.config.data_dir.join("api-streams")
    }

    fn api_spec_path(&self, name: &str) -> PathBuf {
        self.api_dir().join(format!("{name}.json"))
    }

    /// Starts every persisted API stream whose name YAML does not use,
    /// rebuilding its config from the request it was created with.
    pub(super) fn restore_api_streams(&self) -> Result<(), RegistryError> {
        let specs = match &self.cluster {
            Some(c) => shared::all(c)?,
            None => read_api_specs(&self.api_dir()),
        };
        for (name, created_ms, request) in specs {
            if self.config.streams.contains_key(&name) {
                tracing::warn!(
                    stream = name,
                    "a stream created through the API has the name of a YAML stream; the YAML stream wins"
                );
                continue;
            }
            match firehose::stream_from_request(&name, &request, &self.config) {
                Ok(cfg) => {
                    let e = self.start(cfg, Origin::Api, created_ms, Some(request))?;
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

    /// Creates, persists and starts a stream defined through the API.
    pub async fn create(
        &self,
        config: StreamConfig,
        request: serde_json::Value,
    ) -> Result<Arc<StreamEntry>, RegistryError> {
        let _g = self.admin.lock().await;
        let name = config.name.clone();
        if self.get(&name).is_some() {
            return Err(RegistryError::Exists(name));
        }
        let api_count = self
            .all()
            .iter()
            .filter(|e| e.origin == Origin::Api)
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
            if !shared::define(c, &name, created_ms, &request).await? {
                return Err(RegistryError::Exists(name));
            }
            let started = tokio::task::block_in_place(|| {
                self.start(config, Origin::Api, created_ms, Some(request))
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
        let spec = serde_json::json!({ "created_ms": created_ms, "request": request });
        write_atomic(&self.api_spec_path(&name), spec.to_string().as_bytes()).map_err(fail)?;
        match self.start(config, Origin::Api, created_ms, Some(request)) {
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

fn read_api_specs(dir: &Path) -> Vec<(String, i64, serde_json::Value)> {
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
            Ok(v) => {
                let created = v.get("created_ms").and_then(|c| c.as_i64()).unwrap_or(0);
                let request = v.get("request").cloned().unwrap_or_default();
                out.push((name.to_string(), created, request));
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = e, "cannot read a persisted stream definition")
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
