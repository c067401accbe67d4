//! The streams the daemon runs: those from YAML and those created through
//! `CreateDeliveryStream` (persisted as JSON beside the log so they survive a
//! restart). Starting a stream opens its log and starts its delivery;
//! stopping drains it. YAML wins on a name clash, and a YAML stream cannot be
//! deleted through the API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{Config, Source, StreamConfig};
use crate::delivery::{CONSUMER, Delivery, StreamContext, kinesis_consumer};
use crate::kinesis::{KinesisError, KinesisStream, Streams};
use crate::log::files::write_atomic;
use crate::log::{DiskQuota, StreamLog, checkpoint};
use crate::metrics::Metrics;
use crate::sink;

/// Where a stream's definition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Yaml,
    Api,
}

/// A running stream.
pub struct StreamEntry {
    pub config: Arc<StreamConfig>,
    pub origin: Origin,
    /// Epoch milliseconds when the stream was created (API) or first started.
    pub created_ms: i64,
    /// The `CreateDeliveryStream` request, for API streams.
    pub api_request: Option<serde_json::Value>,
    pub log: Arc<StreamLog>,
    pub ctx: Arc<StreamContext>,
    delivery: tokio::sync::Mutex<Option<Delivery>>,
    next_shard: AtomicU32,
}

impl StreamEntry {
    /// The shard the next put request goes to (round robin).
    pub fn pick_shard(&self) -> u32 {
        self.next_shard.fetch_add(1, Ordering::Relaxed) % self.config.shards.max(1)
    }

    /// Stops delivery at once without flushing: records stay in the log
    /// from the checkpoint on, for whoever delivers the stream next.
    pub async fn abort(&self) {
        if let Some(d) = self.delivery.lock().await.take() {
            d.abort().await;
        }
    }

    /// Drains and stops delivery (idempotent).
    pub async fn stop(&self, deadline: Duration) -> bool {
        let d = self.delivery.lock().await.take();
        match d {
            Some(d) => d.shutdown(deadline).await,
            None => true,
        }
    }
}

/// Why a stream could not be started, created or deleted.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("stream {0} already exists")]
    Exists(String),
    #[error("stream {0} not found")]
    NotFound(String),
    #[error("stream {0} is defined in the config file and cannot be deleted through the API")]
    DefinedInConfig(String),
    #[error("the limit of {0} streams created through the API is reached")]
    Limit(usize),
    #[error("stream {stream}: {message}")]
    Start { stream: String, message: String },
}

/// What a reload did, by stream name.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Streams that could not be started, with the reason.
    pub failed: Vec<String>,
}

pub struct Registry {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// The Kinesis streams; delivery streams may read them.
    pub kinesis: Streams,
    quota: Arc<DiskQuota>,
    /// Encoding slots shared by every stream (`limits.encoders_max`).
    encoders: Arc<tokio::sync::Semaphore>,
    streams: RwLock<BTreeMap<String, Arc<StreamEntry>>>,
    /// Serializes create and delete.
    admin: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Arc<Registry> {
        let quota = DiskQuota::new(config.disk_quota_bytes);
        let kinesis = Streams::new(
            &config.data_dir,
            config.kinesis.clone(),
            config.log.clone(),
            quota.clone(),
        );
        let encoders = Arc::new(tokio::sync::Semaphore::new(config.limits.encoders_max));
        Arc::new(Registry {
            config,
            metrics,
            kinesis,
            quota,
            encoders,
            streams: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        })
    }

    pub fn quota(&self) -> &DiskQuota {
        &self.quota
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<StreamEntry>>> {
        self.streams.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<StreamEntry>>> {
        self.streams.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<StreamEntry>> {
        self.read().get(name).cloned()
    }

    /// Every stream, sorted by name.
    pub fn all(&self) -> Vec<Arc<StreamEntry>> {
        self.read().values().cloned().collect()
    }

    pub fn stream_dir(&self, name: &str) -> PathBuf {
        self.config.data_dir.join("streams").join(name)
    }

    fn api_dir(&self) -> PathBuf {
        self.config.data_dir.join("api-streams")
    }

    fn api_spec_path(&self, name: &str) -> PathBuf {
        self.api_dir().join(format!("{name}.json"))
    }

    /// Opens the log and starts the delivery of one stream.
    fn start(
        &self,
        config: StreamConfig,
        origin: Origin,
        created_ms: i64,
        api_request: Option<serde_json::Value>,
    ) -> Result<Arc<StreamEntry>, RegistryError> {
        self.start_on(config, origin, created_ms, api_request, None)
    }

    /// Starts a stream's delivery on its log: the one given (a running
    /// stream's, on reload) or its log opened now.
    fn start_on(
        &self,
        mut config: StreamConfig,
        origin: Origin,
        created_ms: i64,
        api_request: Option<serde_json::Value>,
        log: Option<Arc<StreamLog>>,
    ) -> Result<Arc<StreamEntry>, RegistryError> {
        let name = config.name.clone();
        let fail = |message: String| RegistryError::Start {
            stream: name.clone(),
            message,
        };
        let (log, consumer) = match &config.source {
            Source::Kinesis { stream } => {
                let k = self.kinesis.get(stream).ok_or_else(|| {
                    fail(format!(
                        "its source, Kinesis stream {stream}, does not exist"
                    ))
                })?;
                config.shards = k.shards;
                let consumer = kinesis_consumer(&name);
                start_at_latest(&k, &consumer).map_err(|e| fail(e.to_string()))?;
                (k.log.clone(), consumer)
            }
            Source::DirectPut => (
                self.own_log(&config, log).map_err(fail)?,
                CONSUMER.to_string(),
            ),
        };
        let errors = sink::object(&config.error_output).map_err(|e| fail(e.message))?;
        let destination = sink::build(&config.destination).map_err(|e| fail(e.message))?;
        let backup = match &config.backup {
            Some(b) => Some(sink::object(&b.target).map_err(|e| fail(e.message))?),
            None => None,
        };
        // Compiling a component can take seconds (Python, JavaScript); the
        // compiled form is cached under data_dir for the next start.
        let transform = match &config.transform {
            Some(t) => {
                let cache = self.config.data_dir.join("cache").join("transforms");
                let loaded = crate::transform::Transform::load(t.clone(), Some(&cache))
                    .map_err(|e| fail(e.to_string()))?;
                tracing::info!(stream = name, wasm = %t.wasm.display(), "transform loaded");
                Some(Arc::new(loaded))
            }
            None => None,
        };
        let config = Arc::new(config);
        let ctx = Arc::new(StreamContext::new(
            config.clone(),
            log,
            consumer,
            destination,
            errors,
            backup,
            transform,
            self.metrics.clone(),
            self.encoders.clone(),
        ));
        let delivery = Delivery::start(ctx.clone());
        tracing::info!(stream = name, shards = config.shards, destination = %ctx.sink.describe(), origin = ?origin, "stream started");
        Ok(Arc::new(StreamEntry {
            config,
            origin,
            created_ms,
            api_request,
            log: ctx.log.clone(),
            ctx,
            delivery: tokio::sync::Mutex::new(Some(delivery)),
            next_shard: AtomicU32::new(0),
        }))
    }

    /// The log of a stream put to directly: the one given (a running
    /// stream's, on reload) or its own, opened now.
    fn own_log(
        &self,
        config: &StreamConfig,
        log: Option<Arc<StreamLog>>,
    ) -> Result<Arc<StreamLog>, String> {
        match log {
            Some(l) => Ok(l),
            None => StreamLog::open(
                &self.stream_dir(&config.name),
                config.shards,
                &self.config.log,
                self.quota.clone(),
            )
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        }
    }

    /// Creates a Kinesis stream.
    pub async fn create_kinesis(
        &self,
        name: &str,
        shards: u32,
        on_demand: bool,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<KinesisStream>, KinesisError> {
        let _g = self.admin.lock().await;
        self.kinesis.create(name, shards, on_demand, tags)
    }

    /// Deletes a Kinesis stream, unless a delivery stream reads it.
    pub async fn delete_kinesis(&self, name: &str) -> Result<(), KinesisError> {
        let _g = self.admin.lock().await;
        if self.kinesis.get(name).is_none() {
            return Err(KinesisError::NotFound(name.to_string()));
        }
        let readers: Vec<String> = self
            .all()
            .iter()
            .filter(|e| matches!(&e.config.source, Source::Kinesis { stream } if stream == name))
            .map(|e| e.config.name.clone())
            .collect();
        if !readers.is_empty() {
            return Err(KinesisError::InUse(format!(
                "Stream {name} under account {} is the source of delivery stream {}; delete it first.",
                crate::aws::ACCOUNT,
                readers.join(", ")
            )));
        }
        self.kinesis.delete(name)
    }

    /// Starts every YAML stream, then every persisted API stream whose name
    /// YAML does not use. `from_request` rebuilds an API stream's config.
    pub fn start_all(
        &self,
        from_request: impl Fn(&str, &serde_json::Value, &Config) -> Result<StreamConfig, String>,
    ) -> Result<(), RegistryError> {
        self.kinesis
            .load()
            .and_then(|()| self.kinesis.ensure_declared())
            .map_err(|e| RegistryError::Start {
                stream: "kinesis".into(),
                message: e.to_string(),
            })?;
        let now = chrono::Utc::now().timestamp_millis();
        for cfg in self.config.streams.values() {
            let e = self.start(cfg.clone(), Origin::Yaml, now, None)?;
            self.write().insert(cfg.name.clone(), e);
        }
        for (name, created_ms, request) in read_api_specs(&self.api_dir()) {
            if self.config.streams.contains_key(&name) {
                tracing::warn!(
                    stream = name,
                    "a stream created through the API has the name of a YAML stream; the YAML stream wins"
                );
                continue;
            }
            match from_request(&name, &request, &self.config) {
                Ok(cfg) => {
                    let e = self.start(cfg, Origin::Api, created_ms, Some(request))?;
                    self.write().insert(name, e);
                }
                Err(msg) => tracing::error!(
                    stream = name,
                    error = msg,
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
        self.write().remove(name);
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let _g = this.admin.lock().await;
            let drained = entry.stop(this.config.shutdown_timeout).await;
            if !drained {
                tracing::warn!(stream = name, "deleted before all records were delivered");
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

    /// Applies a new config's streams: starts added ones, drains and stops
    /// removed ones (what is not delivered within `shutdown_timeout_secs`
    /// stays in their log, delivered if the stream comes back), and restarts
    /// the delivery of changed ones on their running log, so ingest never
    /// pauses. Unchanged streams are not touched. Refused whole, with every
    /// reason, if a setting outside `streams` changed or a stream's shard
    /// count did; nothing is applied then.
    pub async fn reload(&self, new: &Config) -> Result<ReloadReport, Vec<String>> {
        let _g = self.admin.lock().await;
        let mut refused: Vec<String> = self
            .config
            .restart_only_changes(new)
            .into_iter()
            .map(|k| format!("{k}: changes need a restart"))
            .collect();
        let current = self.all();
        let mut plan = ReloadReport::default();
        for (name, cfg) in &new.streams {
            match current.iter().find(|e| &e.config.name == name) {
                None => plan.added.push(name.clone()),
                Some(e) if e.origin == Origin::Api => refused.push(format!(
                    "streams.{name}: a stream created through the API has this name"
                )),
                Some(e) if e.config.fingerprint == cfg.fingerprint => {
                    plan.unchanged.push(name.clone())
                }
                Some(e) if e.config.shards != cfg.shards && cfg.source == Source::DirectPut => refused.push(format!(
                    "streams.{name}.shards: cannot change from {} to {} on a running log (restart with an empty log, or add a new stream)",
                    e.config.shards, cfg.shards
                )),
                Some(_) => plan.changed.push(name.clone()),
            }
        }
        for e in &current {
            if e.origin == Origin::Yaml && !new.streams.contains_key(&e.config.name) {
                plan.removed.push(e.config.name.clone());
            }
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut failed = Vec::new();
        for name in &plan.added {
            match self.start(new.streams[name].clone(), Origin::Yaml, now, None) {
                Ok(e) => {
                    self.write().insert(name.clone(), e);
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        for name in &plan.changed {
            let Some(old) = self.get(name) else { continue };
            // Stop the old delivery first: one reader per shard checkpoint.
            old.abort().await;
            match self.start_on(
                new.streams[name].clone(),
                Origin::Yaml,
                old.created_ms,
                None,
                Some(old.log.clone()),
            ) {
                Ok(e) => {
                    self.write().insert(name.clone(), e);
                }
                Err(e) => {
                    // Keep delivering with the old config rather than not at all.
                    failed.push(format!("{e} (the previous config stays)"));
                    let restarted = self.start_on(
                        (*old.config).clone(),
                        Origin::Yaml,
                        old.created_ms,
                        None,
                        Some(old.log.clone()),
                    );
                    match restarted {
                        Ok(e) => {
                            self.write().insert(name.clone(), e);
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
            }
        }
        for name in &plan.removed {
            let Some(entry) = self.write().remove(name) else {
                continue;
            };
            let drained = entry.stop(self.config.shutdown_timeout).await;
            if !drained {
                tracing::warn!(
                    stream = name,
                    "removed before all records were delivered; they stay in its log"
                );
            }
        }
        plan.failed = failed;
        Ok(plan)
    }

    /// Drains every stream: flush open batches, deliver, checkpoint.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        let entries = self.all();
        let mut all = true;
        let stops = entries.iter().map(|e| e.stop(deadline));
        for ok in futures::future::join_all(stops).await {
            all &= ok;
        }
        all
    }
}

/// Makes a new reader of a Kinesis stream start at its tip, as Firehose
/// starts reading a source stream at LATEST: a shard without a checkpoint
/// of `consumer` gets one at its durable end.
fn start_at_latest(k: &KinesisStream, consumer: &str) -> std::io::Result<()> {
    for shard in k.log.shards() {
        let path = checkpoint::checkpoint_path(k.log.dir(), consumer, shard.shard());
        if checkpoint::read(&path)?.is_none() {
            checkpoint::write(&path, shard.durable_end())?;
        }
    }
    Ok(())
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
