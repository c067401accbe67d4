//! Kinesis Data Streams over the shard log: streams that producers put to
//! with a partition key and that any number of consumers read back in order,
//! from any position within the retention period.
//!
//! A Kinesis stream is a [`StreamLog`] without a delivery of its own, kept in
//! `data_dir/kinesis/<name>/` beside its definition (`stream.json`). Its
//! records carry their partition key in the frame's key. Segments are
//! deleted once they are older than the retention period *and* every
//! delivery stream that reads the stream (Firehose's `KinesisStreamAsSource`,
//! each with its own checkpoints in the log's `checkpoints/`) is past them:
//! Hydrant does not drop what a delivery stream has not delivered. The API
//! itself lives in `ingest::kinesis`; [`position`] maps Kinesis's names for
//! places (hash keys, sequence numbers, iterators) onto offsets; [`shards`]
//! keeps which shard owns which hash keys and where closed shards ended;
//! [`reshard`] splits and merges them while producers keep putting;
//! [`consumers`] holds enhanced fan-out's consumers and subscriptions,
//! [`on_demand`] splits an ON_DEMAND stream's hot shards, and [`kpl`] reads
//! the KPL's aggregated records (for delivery streams; the API returns them
//! as put).
//!
//! A stream's shards change only under its gate ([`KinesisStream::gate`]):
//! every put holds it shared from routing its records until they are
//! durable, a reshard holds it alone, so a parent shard is sealed with no
//! put in flight and every record acknowledged before is below its end.

pub mod consumers;
pub mod kpl;
pub mod on_demand;
pub mod position;
pub mod queues;
pub mod reshard;
pub mod settings;
pub mod shards;
mod shared;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::aws;
use crate::config::KinesisOptions;
use crate::log::files::write_atomic;
use crate::log::jetstream::{Cluster, log_name};
use crate::log::{DiskQuota, LogOptions, StreamLog, checkpoint};
use shards::{Layout, ShardMap};

pub const RETENTION_HOURS_DEFAULT: u32 = 24;
pub const RETENTION_HOURS_MIN: u32 = 24;
pub const RETENTION_HOURS_MAX: u32 = 8760;
/// Shards of an `ON_DEMAND` stream (Kinesis starts one with 4).
pub const ON_DEMAND_SHARDS: u32 = 4;
/// Tags per stream.
pub const TAGS_MAX: usize = 50;
/// Kinesis's per-shard write limits, applied when `kinesis.shard_write_limits` is on.
pub const SHARD_WRITE_BYTES_PER_SEC: f64 = 1_048_576.0;
pub const SHARD_WRITE_RECORDS_PER_SEC: f64 = 1_000.0;

const SPEC_FILE: &str = "stream.json";

/// A stream's definition, persisted as JSON beside its log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    /// The shards the stream was created with; its shards now are in
    /// `shard_map` (absent in definitions written before resharding existed:
    /// then `shards` equal ranges, all open).
    pub shards: u32,
    pub retention_hours: u32,
    pub created_ms: i64,
    pub on_demand: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_map: Option<ShardMap>,
    /// When `UpdateShardCount` ran, epoch milliseconds, within the last day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalings_ms: Vec<i64>,
    /// Enhanced fan-out's registered consumers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<consumers::ConsumerSpec>,
    #[serde(default, skip_serializing_if = "settings::StreamSettings::is_default")]
    pub settings: settings::StreamSettings,
    /// The key new records are sealed with at rest (`StartStreamEncryption`);
    /// None: stored in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_key: Option<String>,
}

impl Spec {
    /// The stream's shards, as persisted (or, for an old definition, as
    /// the stream was created).
    pub fn shard_map(&self) -> Result<ShardMap, String> {
        match &self.shard_map {
            Some(m) => m.clone().checked(),
            None => Ok(ShardMap::uniform(self.shards, self.created_ms)),
        }
    }
}

/// Why a stream could not be created, found, changed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error("Stream {0} under account {ACCOUNT} already exists.", ACCOUNT = aws::ACCOUNT)]
    Exists(String),
    #[error("Stream {0} under account {ACCOUNT} not found.", ACCOUNT = aws::ACCOUNT)]
    NotFound(String),
    #[error("{0}")]
    InUse(String),
    /// A shard or consumer the request names does not exist (the message
    /// says which).
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stream {stream}: {message}")]
    Io { stream: String, message: String },
}

/// A token bucket of one shard's writes: a second's worth of each limit.
#[derive(Debug)]
struct Bucket {
    bytes: f64,
    records: f64,
    at: Instant,
}

impl Bucket {
    fn full() -> Self {
        Bucket {
            bytes: SHARD_WRITE_BYTES_PER_SEC,
            records: SHARD_WRITE_RECORDS_PER_SEC,
            at: Instant::now(),
        }
    }

    /// Takes one record of `bytes`, or returns false if the shard is over
    /// its limit. A record larger than the bucket passes when it is full.
    fn take(&mut self, bytes: u64) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.bytes = (self.bytes + dt * SHARD_WRITE_BYTES_PER_SEC).min(SHARD_WRITE_BYTES_PER_SEC);
        self.records =
            (self.records + dt * SHARD_WRITE_RECORDS_PER_SEC).min(SHARD_WRITE_RECORDS_PER_SEC);
        let need = (bytes as f64).min(SHARD_WRITE_BYTES_PER_SEC);
        if self.records < 1.0 || self.bytes < need {
            return false;
        }
        self.records -= 1.0;
        self.bytes -= bytes as f64;
        true
    }
}

/// A running Kinesis stream.
pub struct KinesisStream {
    pub name: String,
    pub created_ms: i64,
    /// From the log's id: tells this stream's sequence numbers and iterators
    /// from those of an earlier stream of the same name.
    pub incarnation: u32,
    pub log: Arc<StreamLog>,
    dir: PathBuf,
    spec: Mutex<Spec>,
    /// Serializes changes of the definition (see [`KinesisStream::update`]).
    updating: Mutex<()>,
    /// Per shard index, when shard write limits are on.
    limits: Option<RwLock<Vec<Mutex<Bucket>>>>,
    /// The shards and their router; subscribers learn of every reshard.
    layout: watch::Sender<Arc<Layout>>,
    /// Held shared by every put from routing to durable, alone by a reshard.
    pub gate: tokio::sync::RwLock<()>,
    /// The definition's `on_demand`, for the put path.
    on_demand: std::sync::atomic::AtomicBool,
    /// The definition's largest record and whether shard-level metrics are
    /// on, for the put and read paths.
    max_record_bytes: std::sync::atomic::AtomicUsize,
    shard_metrics: std::sync::atomic::AtomicBool,
    /// Open enhanced fan-out subscriptions, by (consumer, shard).
    subscriptions: consumers::Subscriptions,
    next_subscription: std::sync::atomic::AtomicUsize,
    /// Cluster mode: the definition is shared through JetStream.
    cluster: Option<Arc<Cluster>>,
    /// Records and bytes written per shard since the last look (ON_DEMAND).
    writes: Mutex<BTreeMap<u32, (u64, u64)>>,
    /// Windows in a row each shard was over its write limit (ON_DEMAND).
    hot: Mutex<BTreeMap<u32, u32>>,
}

impl KinesisStream {
    pub fn spec(&self) -> Spec {
        match self.spec.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn retention_hours(&self) -> u32 {
        self.spec().retention_hours
    }

    /// Whether the stream is in ON_DEMAND mode (read on every put: kept
    /// beside the definition rather than cloned from it).
    pub fn on_demand(&self) -> bool {
        self.on_demand.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The largest record the stream takes (`UpdateMaxRecordSize`).
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether shard-level metrics are on (`EnableEnhancedMonitoring`).
    pub fn shard_metrics(&self) -> bool {
        self.shard_metrics
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The stream's shards now.
    pub fn layout(&self) -> Arc<Layout> {
        self.layout.borrow().clone()
    }

    /// A receiver that sees every change of the stream's shards.
    pub fn subscribe_layout(&self) -> watch::Receiver<Arc<Layout>> {
        self.layout.subscribe()
    }

    /// How many shards are open.
    pub fn open_shards(&self) -> u32 {
        self.layout().map.open_count()
    }

    /// Changes the definition and persists it; nothing changes if `f` refuses
    /// or the write fails.
    pub fn update(
        &self,
        f: impl FnOnce(&mut Spec) -> Result<(), KinesisError>,
    ) -> Result<(), KinesisError> {
        // Changes are serialized by `updating`; the definition's own lock is
        // held only to read and to swap it, never while it is written (to
        // the cluster, a network round trip), so readers never wait on I/O.
        let _serial = self.updating.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.spec();
        let mut next = before.clone();
        f(&mut next)?;
        if next.log_key != before.log_key {
            self.log
                .set_sealing(next.log_key.as_deref())
                .map_err(|e| KinesisError::Io {
                    stream: self.name.clone(),
                    message: e.to_string(),
                })?;
        }
        if next.retention_hours != before.retention_hours {
            self.log
                .set_max_age(Duration::from_secs(u64::from(next.retention_hours) * 3600))
                .map_err(|e| KinesisError::Io {
                    stream: self.name.clone(),
                    message: e.to_string(),
                })?;
        }
        if let Err(e) = self.persist(&next) {
            // Back to what the definition says: a change that was not
            // persisted did not happen.
            if next.log_key != before.log_key {
                let _ = self.log.set_sealing(before.log_key.as_deref());
            }
            return Err(e);
        }
        self.on_demand
            .store(next.on_demand, std::sync::atomic::Ordering::Release);
        self.max_record_bytes.store(
            next.settings.max_record_bytes(),
            std::sync::atomic::Ordering::Release,
        );
        self.shard_metrics.store(
            !next.settings.shard_metrics.is_empty(),
            std::sync::atomic::Ordering::Release,
        );
        *self.spec.lock().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Writes the definition where it lives: the shared bucket in cluster
    /// mode, else `stream.json` beside the log.
    fn persist(&self, spec: &Spec) -> Result<(), KinesisError> {
        match &self.cluster {
            Some(c) => shared::put(c, spec),
            None => save_spec(&self.dir, spec),
        }
    }

    /// Whether a record of `bytes` (data and partition key) may be written
    /// to `shard` now; always true unless shard write limits are on.
    pub fn admit(&self, shard: u32, bytes: u64) -> bool {
        let Some(limits) = &self.limits else {
            return true;
        };
        let limits = limits.read().unwrap_or_else(|p| p.into_inner());
        match limits.get(shard as usize) {
            Some(b) => b.lock().map(|mut b| b.take(bytes)).unwrap_or(true),
            None => true,
        }
    }

    /// The checkpoint directory of the delivery stream `consumer` on this log.
    pub fn consumer_dir(&self, consumer: &str) -> PathBuf {
        self.log.dir().join("checkpoints").join(consumer)
    }

    /// Deletes the segments retention and every consumer allow. Blocking.
    fn trim(&self, now: SystemTime) {
        let retention = Duration::from_secs(u64::from(self.retention_hours()) * 3600);
        let Some(cutoff) = now.checked_sub(retention) else {
            return;
        };
        let consumers = consumer_names(self.log.dir());
        for shard in self.log.shards().iter() {
            let mut below = shard.offset_written_before(cutoff);
            for c in &consumers {
                let path = checkpoint::checkpoint_path(self.log.dir(), c, shard.shard());
                match checkpoint::read(&path) {
                    Ok(Some(o)) => below = below.min(o),
                    // A consumer that has not checkpointed holds everything.
                    Ok(None) | Err(_) => below = below.min(shard.oldest_offset()),
                }
            }
            match shard.delete_before(below) {
                Ok(0) => {}
                Ok(freed) => tracing::info!(
                    stream = self.name,
                    shard = shard.shard(),
                    freed,
                    "deleted segments past the retention period"
                ),
                Err(e) => {
                    tracing::warn!(stream = self.name, error = %e, "cannot delete expired segments")
                }
            }
        }
    }
}

fn consumer_names(log_dir: &Path) -> Vec<String> {
    std::fs::read_dir(log_dir.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn save_spec(dir: &Path, spec: &Spec) -> Result<(), KinesisError> {
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| KinesisError::Io {
        stream: spec.name.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join(SPEC_FILE), &bytes).map_err(|e| KinesisError::Io {
        stream: spec.name.clone(),
        message: format!("cannot write {}: {e}", dir.join(SPEC_FILE).display()),
    })
}

/// Every Kinesis stream of the daemon.
pub struct Streams {
    dir: PathBuf,
    opts: KinesisOptions,
    log_opts: LogOptions,
    quota: Arc<DiskQuota>,
    /// Cluster mode: logs in JetStream.
    cluster: Option<Arc<Cluster>>,
    streams: RwLock<BTreeMap<String, Arc<KinesisStream>>>,
    /// Enhanced fan-out subscriptions open over all streams.
    subscriptions_open: Arc<std::sync::atomic::AtomicUsize>,
    /// The streams' queues.
    pub queues: queues::Queues,
}

impl Streams {
    pub fn new(
        data_dir: &Path,
        opts: KinesisOptions,
        log_opts: LogOptions,
        quota: Arc<DiskQuota>,
    ) -> Self {
        let queue_limits = queues::QueueLimits {
            queues_max: opts.queues_max,
            in_flight_max: opts.queue_in_flight_max,
            long_polls_max: opts.queue_long_polls_max,
        };
        Streams {
            dir: data_dir.join("kinesis"),
            queues: queues::Queues::new(data_dir, queue_limits),
            opts,
            log_opts,
            quota,
            cluster: None,
            streams: RwLock::new(BTreeMap::new()),
            subscriptions_open: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Keeps the streams' logs in JetStream (cluster mode).
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Enhanced fan-out's bounds.
    pub fn fan_out_limits(&self) -> consumers::FanOutLimits {
        consumers::FanOutLimits {
            consumers_per_stream_max: self.opts.consumers_per_stream_max,
            subscriptions_max: self.opts.subscriptions_max,
            activation: self.opts.consumer_activation,
        }
    }

    /// Opens a subscription of `consumer` to shard `shard` of `s`, within
    /// the daemon's bound on subscriptions.
    pub fn subscribe(
        &self,
        s: &Arc<KinesisStream>,
        consumer: &str,
        shard: u32,
    ) -> Result<consumers::Subscription, KinesisError> {
        s.subscribe(
            consumer,
            shard,
            &self.subscriptions_open,
            self.fan_out_limits(),
        )
    }

    /// Subscriptions open over all streams.
    pub fn subscriptions_open(&self) -> usize {
        self.subscriptions_open
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn options(&self) -> &KinesisOptions {
        &self.opts
    }

    pub fn get(&self, name: &str) -> Option<Arc<KinesisStream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every stream, sorted by name.
    pub fn all(&self) -> Vec<Arc<KinesisStream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Open shards of every stream together (what `kinesis.shards_max` bounds).
    fn shards_in_use(&self) -> u32 {
        self.all().iter().map(|s| s.open_shards()).sum()
    }

    /// Opens a stream's log as its shard map says: closed shards read-only,
    /// and no shard past the map's (a reshard that did not complete).
    fn open(&self, spec: Spec) -> Result<Arc<KinesisStream>, KinesisError> {
        let dir = self.dir.join(&spec.name);
        let io = |message: String| KinesisError::Io {
            stream: spec.name.clone(),
            message,
        };
        let map = spec
            .shard_map()
            .map_err(|e| io(format!("its shard map: {e}")))?;
        let sealed = |i| map.get(i).is_some_and(|s| !s.is_open());
        let log = match &self.cluster {
            Some(c) => StreamLog::open_jetstream(
                c.clone(),
                &log_name("kds", &spec.name),
                &dir,
                map.len(),
                Some(Duration::from_secs(u64::from(spec.retention_hours) * 3600)),
                sealed,
                self.log_opts.keys.clone(),
            ),
            None => {
                StreamLog::remove_unused_shards(&dir, map.len()).map_err(|e| io(e.to_string()))?;
                StreamLog::open_with_sealed(
                    &dir,
                    map.len(),
                    &self.log_opts,
                    self.quota.clone(),
                    sealed,
                )
            }
        }
        .map_err(|e| io(e.to_string()))?;
        for s in map.all() {
            if let (Some(c), Some(l)) = (s.closed, log.shard(s.index))
                && l.durable_end() != c.end_offset
            {
                tracing::warn!(
                    stream = spec.name,
                    shard = s.index,
                    end = c.end_offset,
                    durable = l.durable_end(),
                    "a closed shard's log does not end where the shard closed"
                );
            }
        }
        log.set_sealing(spec.log_key.as_deref())
            .map_err(|e| io(format!("its encryption at rest: {e}")))?;
        let limits = self
            .opts
            .shard_write_limits
            .then(|| RwLock::new((0..map.len()).map(|_| Mutex::new(Bucket::full())).collect()));
        let (layout, _) = watch::channel(Arc::new(Layout::new(map)));
        Ok(Arc::new(KinesisStream {
            name: spec.name.clone(),
            created_ms: spec.created_ms,
            incarnation: position::incarnation(log.id()),
            log: Arc::new(log),
            dir,
            on_demand: std::sync::atomic::AtomicBool::new(spec.on_demand),
            max_record_bytes: spec.settings.max_record_bytes().into(),
            shard_metrics: (!spec.settings.shard_metrics.is_empty()).into(),
            spec: Mutex::new(spec),
            updating: Mutex::new(()),
            limits,
            layout,
            cluster: self.cluster.clone(),
            gate: tokio::sync::RwLock::new(()),
            subscriptions: Mutex::new(BTreeMap::new()),
            next_subscription: std::sync::atomic::AtomicUsize::new(0),
            writes: Mutex::new(BTreeMap::new()),
            hot: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Opens every stream found under `data_dir/kinesis`. A directory without
    /// a definition is what a creation cut short or a deletion left behind:
    /// it holds nothing anyone can still read, so it is removed.
    pub fn load(&self) -> Result<(), KinesisError> {
        if let Some(c) = &self.cluster {
            for spec in shared::all(c)? {
                self.insert_opened(spec)?;
            }
            return Ok(());
        }
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in rd.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let spec_path = dir.join(SPEC_FILE);
            let spec = match std::fs::read(&spec_path) {
                Ok(b) => serde_json::from_slice::<Spec>(&b).map_err(|e| KinesisError::Io {
                    stream: dir.display().to_string(),
                    message: format!("cannot read {}: {e}", spec_path.display()),
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(dir = %dir.display(), "removing an unfinished Kinesis stream directory");
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove it");
                    }
                    continue;
                }
                Err(e) => {
                    return Err(KinesisError::Io {
                        stream: dir.display().to_string(),
                        message: format!("cannot read {}: {e}", spec_path.display()),
                    });
                }
            };
            self.insert_opened(spec)?;
        }
        self.queues.load(&self.all())
    }

    /// In cluster mode, follows the streams other nodes create, reshard and
    /// delete, for as long as the node runs ([`shared::follow`]).
    pub async fn follow_cluster(&self) {
        shared::follow(self).await
    }

    /// Opens the stream `spec` defines and makes it known.
    fn insert_opened(&self, spec: Spec) -> Result<Arc<KinesisStream>, KinesisError> {
        let s = self.open(spec)?;
        tracing::info!(
            stream = s.name,
            shards = s.open_shards(),
            "Kinesis stream opened"
        );
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(s.name.clone(), s.clone());
        Ok(s)
    }

    /// Creates a stream: its log, then its definition (which makes it exist
    /// across restarts). Callers serialize creations and deletions.
    pub fn create(
        &self,
        name: &str,
        shards: u32,
        on_demand: bool,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<KinesisStream>, KinesisError> {
        if self.get(name).is_some() {
            return Err(KinesisError::Exists(name.to_string()));
        }
        let used = self.shards_in_use();
        if used + shards > self.opts.shards_max {
            return Err(KinesisError::Limit(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {used}. Limit: {}. Number of additional shards that would have resulted from this request: {shards}. (kinesis.shards_max)",
                aws::ACCOUNT,
                aws::REGION,
                self.opts.shards_max
            )));
        }
        let dir = self.dir.join(name);
        let io = |e: std::io::Error| KinesisError::Io {
            stream: name.to_string(),
            message: e.to_string(),
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        let spec = Spec {
            name: name.to_string(),
            shards,
            retention_hours: RETENTION_HOURS_DEFAULT,
            created_ms: chrono::Utc::now().timestamp_millis(),
            on_demand,
            tags,
            shard_map: None,
            scalings_ms: Vec::new(),
            consumers: Vec::new(),
            settings: Default::default(),
            log_key: None,
        };
        if let Some(c) = &self.cluster
            && shared::get(c, name)?.is_some()
        {
            return Err(KinesisError::Exists(name.to_string()));
        }
        let stream = self.open(spec.clone())?;
        if let Some(c) = &self.cluster {
            // Another node may have created it meanwhile: then its log is
            // that stream's, and stays.
            if !shared::create(c, &spec)? {
                return Err(KinesisError::Exists(name.to_string()));
            }
        } else if let Err(e) = save_spec(&dir, &spec) {
            drop(stream);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), stream.clone());
        tracing::info!(stream = name, shards, "Kinesis stream created");
        Ok(stream)
    }

    /// Creates the streams the config file declares that do not exist yet,
    /// and gives existing ones the declared retention. A declared stream
    /// that exists with another shard count, never resharded, is an error:
    /// its records would land on other shards. The declared count is the
    /// one a stream starts with; once resharded through the API, its shards
    /// are what the API made them.
    pub fn ensure_declared(&self) -> Result<(), KinesisError> {
        for (name, decl) in &self.opts.streams {
            let s = match self.get(name) {
                Some(s) if s.layout().map.is_initial() && s.open_shards() != decl.shards => {
                    return Err(KinesisError::Invalid(format!(
                        "kinesis.streams.{name}.shards: the stream exists with {} shards, not {}; a shard count cannot change on a running log (reshard it through the API)",
                        s.open_shards(),
                        decl.shards
                    )));
                }
                Some(s) => s,
                None => match self.create(name, decl.shards, false, BTreeMap::new()) {
                    Ok(s) => s,
                    // Another node of the cluster, starting at the same time,
                    // created it first: it is that one.
                    Err(KinesisError::Exists(_)) if self.cluster.is_some() => {
                        let spec = self
                            .cluster
                            .as_deref()
                            .map(|c| shared::get(c, name))
                            .transpose()?
                            .flatten()
                            .ok_or_else(|| KinesisError::NotFound(name.to_string()))?;
                        self.insert_opened(spec)?
                    }
                    Err(e) => return Err(e),
                },
            };
            if s.retention_hours() != decl.retention_hours {
                s.update(|spec| {
                    spec.retention_hours = decl.retention_hours;
                    Ok(())
                })?;
            }
            if decl.log_key.is_some() && s.spec().log_key != decl.log_key {
                s.update(|spec| {
                    spec.log_key = decl.log_key.clone();
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// Deletes a stream: it is gone for the API at once; its directory is
    /// renamed aside (so a new stream of the same name starts empty) and
    /// removed in the background.
    pub fn delete(&self, name: &str) -> Result<(), KinesisError> {
        if self.opts.streams.contains_key(name) && self.get(name).is_some() {
            return Err(KinesisError::InUse(format!(
                "Stream {name} is declared in the configuration file (kinesis.streams) and cannot be deleted through the API"
            )));
        }
        let queues = self.queues.on_stream(name);
        if !queues.is_empty() {
            return Err(KinesisError::InUse(format!(
                "Stream {name} has queues ({}); delete them first.",
                queues.join(", ")
            )));
        }
        let Some(stream) = self
            .streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
        else {
            return Err(KinesisError::NotFound(name.to_string()));
        };
        let gone = self
            .dir
            .join(format!(".deleted-{}", uuid::Uuid::new_v4().simple()));
        let renamed = std::fs::remove_file(stream.dir.join(SPEC_FILE))
            .and_then(|()| std::fs::rename(&stream.dir, &gone));
        if let Err(e) = renamed {
            tracing::warn!(stream = name, error = %e, "cannot set a deleted stream's files aside");
        }
        let quota = self.quota.clone();
        let bytes = stream.log.quota_bytes();
        if let Some(c) = &self.cluster {
            shared::delete(c, name)?;
        }
        if let Err(e) = stream.log.destroy() {
            tracing::warn!(stream = name, error = %e, "cannot delete the stream's log");
        }
        stream.end_subscriptions();
        drop(stream);
        std::thread::spawn(move || {
            if gone.exists() {
                match std::fs::remove_dir_all(&gone) {
                    Ok(()) => quota.release(bytes),
                    Err(e) => {
                        tracing::warn!(dir = %gone.display(), error = %e, "cannot remove a deleted stream's files")
                    }
                }
            }
        });
        tracing::info!(stream = name, "Kinesis stream deleted");
        Ok(())
    }

    /// Applies retention to every stream. Blocking.
    pub fn trim(&self) {
        let now = SystemTime::now();
        for s in self.all() {
            s.trim(now);
        }
    }
}

#[cfg(test)]
mod tests;
