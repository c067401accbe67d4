//! The streams the daemon runs: those from YAML and those created through
//! `CreateDeliveryStream` (persisted as JSON beside the log so they survive a
//! restart). Starting a stream opens its log and starts its delivery;
//! stopping drains it. YAML wins on a name clash, and a YAML stream cannot be
//! deleted through the API.
//!
//! [`api`] keeps the streams created through the API (persisted, restored,
//! deleted); [`reload`] applies a changed config file.

mod api;
mod reload;
mod shared;

pub use reload::ReloadReport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{Config, Source, StreamConfig};
use crate::delivery::{CONSUMER, Delivery, StreamContext, kinesis_consumer};
use crate::kinesis::{KinesisError, KinesisStream, Streams};
use crate::log::jetstream::{Cluster, log_name};
use crate::log::{DiskQuota, StreamLog, checkpoint};
use crate::metrics::Metrics;
use crate::sink;

/// Where a stream's definition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Yaml,
    /// `CreateDeliveryStream`.
    Api,
    /// Kinesis's `CreateChannel`: a delivery stream from a Kinesis stream,
    /// out of sight of the Firehose API.
    Channel,
}

impl Origin {
    /// The name a persisted definition gives its origin.
    fn kind(self) -> &'static str {
        match self {
            Origin::Channel => "channel",
            _ => "delivery-stream",
        }
    }

    fn from_kind(kind: Option<&str>) -> Origin {
        match kind {
            Some("channel") => Origin::Channel,
            _ => Origin::Api,
        }
    }
}

/// A running stream.
pub struct StreamEntry {
    pub config: Arc<StreamConfig>,
    pub origin: Origin,
    /// Epoch milliseconds when the stream was created (API) or first started.
    pub created_ms: i64,
    /// The `CreateDeliveryStream` or `CreateChannel` request, for API
    /// streams and channels, as updates and tags have changed it.
    api_request: RwLock<Option<serde_json::Value>>,
    pub log: Arc<StreamLog>,
    pub ctx: Arc<StreamContext>,
    delivery: tokio::sync::Mutex<Option<Delivery>>,
    /// Where puts go: see [`ShardPicker`].
    picker: ShardPicker,
}

/// Spreads a stream's puts over its shards in runs of `run_bytes`
/// (`log.put_run_bytes`): every put goes to the shard of the run its
/// first byte falls in, so puts that arrive together land on one shard and
/// share its group commit (one `fdatasync`), while over time every shard
/// takes the same bytes. A run of 0 sends each put to the next shard.
#[derive(Debug)]
pub struct ShardPicker {
    run_bytes: u64,
    shards: u64,
    /// Bytes (or puts, with runs of 0) picked for so far.
    next: AtomicU64,
}

impl ShardPicker {
    pub fn new(shards: u32, run_bytes: u64) -> ShardPicker {
        ShardPicker {
            run_bytes,
            shards: u64::from(shards.max(1)),
            next: AtomicU64::new(0),
        }
    }

    /// The shard a put of `bytes` goes to.
    pub fn pick(&self, bytes: u64) -> u32 {
        let step = if self.run_bytes == 0 { 1 } else { bytes };
        let at = self.next.fetch_add(step, Ordering::Relaxed);
        let run = at.checked_div(self.run_bytes).unwrap_or(at);
        // Below `shards`, which came from a u32.
        (run % self.shards) as u32
    }
}

impl StreamEntry {
    /// The request the stream or channel was made with (API ones only).
    pub fn request(&self) -> Option<serde_json::Value> {
        self.api_request
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_request(&self, request: serde_json::Value) {
        *self.api_request.write().unwrap_or_else(|p| p.into_inner()) = Some(request);
    }
    /// The shard a put of `bytes` goes to ([`ShardPicker`]).
    pub fn pick_shard(&self, bytes: u64) -> u32 {
        self.picker.pick(bytes)
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
    #[error("{0}")]
    Request(#[from] crate::config::firehose::RequestError),
    #[error("the limit of {0} streams created through the API is reached")]
    Limit(usize),
    #[error("stream {stream}: {message}")]
    Start { stream: String, message: String },
}

pub struct Registry {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// The Kinesis streams; delivery streams may read them.
    pub kinesis: Streams,
    /// The Kinesis Video streams.
    pub video: crate::video::VideoStreams,
    quota: Arc<DiskQuota>,
    /// Cluster mode: every log in JetStream.
    pub cluster: Option<Arc<Cluster>>,
    /// Encoding slots shared by every stream (`limits.encoders_max`).
    encoders: Arc<tokio::sync::Semaphore>,
    streams: RwLock<BTreeMap<String, Arc<StreamEntry>>>,
    /// Serializes create and delete.
    admin: tokio::sync::Mutex<()>,
}

impl Registry {
    /// The registry of a node; `cluster` keeps every log in JetStream.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<Cluster>>,
    ) -> Arc<Registry> {
        let quota = DiskQuota::new(config.disk_quota_bytes);
        let kinesis = Streams::new(
            &config.data_dir,
            config.kinesis.clone(),
            config.log.clone(),
            quota.clone(),
        )
        .with_cluster(cluster.clone());
        let encoders = Arc::new(tokio::sync::Semaphore::new(config.limits.encoders_max));
        let video = crate::video::VideoStreams::new(
            &config.data_dir,
            config.video.clone(),
            config.log.clone(),
            quota.clone(),
        );
        Arc::new(Registry {
            config,
            metrics,
            kinesis,
            video,
            quota,
            cluster,
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
        let (log, consumer, layouts) = match &config.source {
            Source::Kinesis { stream } => {
                let k = self.kinesis.get(stream).ok_or_else(|| {
                    fail(format!(
                        "its source, Kinesis stream {stream}, does not exist"
                    ))
                })?;
                config.shards = k.log.shard_count();
                let consumer = kinesis_consumer(&name);
                start_at_latest(&k, &consumer).map_err(|e| fail(e.to_string()))?;
                (k.log.clone(), consumer, Some(k.subscribe_layout()))
            }
            Source::DirectPut => {
                let log = self.own_log(&config, log).map_err(fail)?;
                log.set_sealing(config.log_key.as_deref())
                    .map_err(|e| fail(format!("log_encryption: {e}")))?;
                (log, CONSUMER.to_string(), None)
            }
        };
        let errors = sink::object(&config.error_output).map_err(|e| fail(e.message))?;
        let writer_id = match &self.cluster {
            Some(c) => c.node_id.clone(),
            None => "local".to_string(),
        };
        let destination = sink::build(
            &config.destination,
            &sink::Stream {
                name: &name,
                retry_duration: config.retry_duration,
                writer_id: &writer_id,
                metrics: &self.metrics,
                encoders: &self.encoders,
            },
        )
        .map_err(|e| fail(e.message))?;
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
        let mut ctx = StreamContext::new(
            config.clone(),
            log,
            consumer,
            destination,
            errors,
            backup,
            transform,
            self.metrics.clone(),
            self.encoders.clone(),
        );
        if let Some(layouts) = layouts {
            ctx = ctx.with_lineage(layouts);
        }
        let ctx = Arc::new(ctx);
        let delivery = Delivery::start(ctx.clone());
        tracing::info!(stream = name, shards = config.shards, destination = %ctx.sink.describe(), origin = ?origin, "stream started");
        let picker = ShardPicker::new(config.shards, self.config.log.put_run_bytes);
        Ok(Arc::new(StreamEntry {
            config,
            origin,
            created_ms,
            api_request: RwLock::new(api_request),
            log: ctx.log.clone(),
            ctx,
            delivery: tokio::sync::Mutex::new(Some(delivery)),
            picker,
        }))
    }

    /// The log of a stream put to directly: the one given (a running
    /// stream's, on reload) or its own, opened now.
    fn own_log(
        &self,
        config: &StreamConfig,
        log: Option<Arc<StreamLog>>,
    ) -> Result<Arc<StreamLog>, String> {
        let dir = self.stream_dir(&config.name);
        if let Some(l) = log {
            return Ok(l);
        }
        match &self.cluster {
            Some(c) => StreamLog::open_jetstream(
                c.clone(),
                &log_name("fh", &config.name),
                &dir,
                config.shards,
                None,
                |_| false,
                self.config.log.keys.clone(),
            ),
            None => StreamLog::open(&dir, config.shards, &self.config.log, self.quota.clone()),
        }
        .map(Arc::new)
        .map_err(|e| e.to_string())
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

    /// Splits or merges a Kinesis stream's shards (serialized with creating
    /// and deleting streams); returns the open shards it had before.
    pub async fn reshard_kinesis(
        &self,
        stream: &Arc<KinesisStream>,
        op: crate::kinesis::reshard::Reshard,
    ) -> Result<u32, KinesisError> {
        let _g = self.admin.lock().await;
        self.kinesis.reshard(stream, op).await
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
            .map(|e| match e.origin {
                Origin::Channel => format!("channel {}", e.config.name),
                _ => format!("delivery stream {}", e.config.name),
            })
            .collect();
        if !readers.is_empty() {
            return Err(KinesisError::InUse(format!(
                "Stream {name} under account {} is the source of {}; delete it first.",
                crate::aws::ACCOUNT,
                readers.join(", ")
            )));
        }
        self.kinesis.delete(name)
    }

    /// Starts every YAML stream, then every persisted API stream whose name
    /// YAML does not use.
    pub fn start_all(&self) -> Result<(), RegistryError> {
        self.kinesis
            .load()
            .and_then(|()| self.kinesis.ensure_declared())
            .map_err(|e| RegistryError::Start {
                stream: "kinesis".into(),
                message: e.to_string(),
            })?;
        self.video.load().map_err(|e| RegistryError::Start {
            stream: "video".into(),
            message: e.to_string(),
        })?;
        for s in self.video.all() {
            self.archive_video(&s);
        }
        let now = chrono::Utc::now().timestamp_millis();
        for cfg in self.config.streams.values() {
            let e = self.start(cfg.clone(), Origin::Yaml, now, None)?;
            self.write().insert(cfg.name.clone(), e);
        }
        self.restore_api_streams()
    }

    /// Creates a video stream and starts archiving it if `video.archive`
    /// covers it. Blocking.
    pub fn create_video(
        &self,
        spec: crate::video::Spec,
    ) -> Result<Arc<crate::video::VideoStream>, crate::video::VideoError> {
        let s = self.video.create(spec)?;
        self.archive_video(&s);
        Ok(s)
    }

    /// Starts the archiver of `s`, if `video.archive` covers it.
    fn archive_video(&self, s: &Arc<crate::video::VideoStream>) {
        let Some(a) = self
            .config
            .video
            .archive
            .as_ref()
            .filter(|a| a.covers(&s.name))
        else {
            return;
        };
        let sink = match sink::object(&a.destination) {
            Ok(sink) => sink,
            Err(e) => {
                tracing::error!(stream = s.name, error = %e.message, "cannot open the video archive's store; not archiving");
                return;
            }
        };
        // Until the archiver has read its checkpoint, retention keeps all.
        s.archived.store(0, std::sync::atomic::Ordering::Release);
        tokio::spawn(crate::delivery::video_archive::run(
            s.clone(),
            a.destination.clone(),
            sink,
        ));
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
/// starts reading a source stream at LATEST: the first time `consumer`
/// starts (it has no checkpoints yet), each shard gets a checkpoint at its
/// durable end. A known reader's shards without a checkpoint are shards
/// created since (a reshard's children): it reads them from their start.
fn start_at_latest(k: &KinesisStream, consumer: &str) -> std::io::Result<()> {
    if k.log
        .start_consumer_at_end(consumer)
        .map_err(std::io::Error::other)?
    {
        return Ok(());
    }
    if k.consumer_dir(consumer).exists() {
        return Ok(());
    }
    for shard in k.log.shards() {
        let path = checkpoint::checkpoint_path(k.log.dir(), consumer, shard.shard());
        if checkpoint::read(&path)?.is_none() {
            checkpoint::write(&path, shard.durable_end())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ShardPicker;

    #[test]
    fn puts_go_to_one_shard_per_run_and_every_shard_takes_the_same_bytes() {
        let p = ShardPicker::new(4, 1000);
        // Ten puts of 300 bytes: a run is the puts whose first byte falls
        // in it, so 0-900 go to shard 0, 1200-1800 to 1, 2100-2700 to 2.
        let picked: Vec<u32> = (0..10).map(|_| p.pick(300)).collect();
        assert_eq!(picked, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
        let mut bytes = [0u64; 4];
        let p = ShardPicker::new(4, 1000);
        for i in 0..40_000u64 {
            let n = 100 + (i * 37) % 900;
            bytes[p.pick(n) as usize] += n;
        }
        // Each put counts whole in the run it starts in, so a shard's share
        // wanders by a put per run: within 2% of the mean over 5,500 runs.
        let mean = bytes.iter().sum::<u64>() / 4;
        assert!(
            bytes.iter().all(|b| b.abs_diff(mean) < mean / 50),
            "{bytes:?}"
        );
    }

    #[test]
    fn a_run_of_zero_sends_each_put_to_the_next_shard() {
        let p = ShardPicker::new(3, 0);
        let picked: Vec<u32> = (0..7).map(|i| p.pick(1 + i * 1000)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2, 0]);
        let one = ShardPicker::new(1, 4096);
        assert!((0..100).all(|_| one.pick(1 << 20) == 0));
    }
}
