//! Delivery: reads each shard's durable records, batches them by size or time,
//! encodes and uploads them, and moves the checkpoint only after the store
//! confirmed. One task per shard (`shard/`); batching is pure logic
//! ([`batcher`]); where a record goes (its partition and its object's key)
//! comes from [`crate::route`].
//!
//! Delivery never acknowledges anything to producers and never writes to the
//! log; it only reads it, trims delivered segments and writes checkpoints.

pub mod batcher;
mod lineage;
mod shard;
pub mod video_archive;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::StreamConfig;
use crate::kinesis::shards::Layout;
use crate::log::StreamLog;
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::sink::object::ObjectSink;

/// The checkpoint name of a delivery stream's own consumer.
pub const CONSUMER: &str = "delivery";

/// The checkpoint name of delivery stream `stream` reading a Kinesis stream.
pub fn kinesis_consumer(stream: &str) -> String {
    format!("firehose-{stream}")
}

/// What a stream's delivery needs, shared by its shard tasks.
pub struct StreamContext {
    pub config: Arc<StreamConfig>,
    pub log: Arc<StreamLog>,
    /// The name of this delivery's checkpoints in the log: [`CONSUMER`] on
    /// its own log, `firehose-<stream>` on a Kinesis stream's.
    pub consumer: String,
    /// Whether the log is this stream's alone, so delivered segments can be
    /// deleted at once. A Kinesis stream's log is trimmed by its retention.
    pub owns_log: bool,
    pub sink: Arc<dyn Sink>,
    /// Where records that cannot be delivered go.
    pub errors: Arc<ObjectSink>,
    /// Where the copy of source records goes, if the stream keeps one.
    pub backup: Option<Arc<ObjectSink>>,
    /// The stream's loaded WebAssembly transform.
    pub transform: Option<Arc<crate::transform::Transform>>,
    pub metrics: Arc<Metrics>,
    /// Daemon-wide slots for encoding a batch (`limits.encoders_max`): a
    /// shard takes one before it takes a batch out of its batcher.
    pub encoders: Arc<tokio::sync::Semaphore>,
    /// The shards of the Kinesis stream read, as they change; None for a
    /// stream's own log, whose shards never change.
    pub layouts: Option<watch::Receiver<Arc<Layout>>>,
    last_error: Mutex<Option<String>>,
    last_delivery_ms: AtomicI64,
    /// Per shard: arrival (epoch ms) of the oldest record read but not yet
    /// delivered (absent or 0 when there is none).
    oldest_pending_ms: Mutex<BTreeMap<u32, i64>>,
}

impl StreamContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<StreamConfig>,
        log: Arc<StreamLog>,
        consumer: String,
        sink: Arc<dyn Sink>,
        errors: Arc<ObjectSink>,
        backup: Option<Arc<ObjectSink>>,
        transform: Option<Arc<crate::transform::Transform>>,
        metrics: Arc<Metrics>,
        encoders: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        let owns_log = consumer == CONSUMER;
        StreamContext {
            oldest_pending_ms: Mutex::new(BTreeMap::new()),
            layouts: None,
            config,
            log,
            consumer,
            owns_log,
            sink,
            errors,
            backup,
            transform,
            metrics,
            encoders,
            last_error: Mutex::new(None),
            last_delivery_ms: AtomicI64::new(0),
        }
    }

    pub(crate) fn backup_mode(&self) -> Option<crate::config::BackupMode> {
        self.config.backup.as_ref().map(|b| b.mode)
    }

    /// Whether source records are backed up as read, before the transform
    /// (a backup of all data on a stream with a transform).
    pub(crate) fn backs_up_sources(&self) -> bool {
        self.transform.is_some() && self.backup_mode() == Some(crate::config::BackupMode::All)
    }

    /// Whether KPL aggregates are taken apart into their user records, as
    /// Firehose does for a delivery stream reading a Kinesis stream.
    pub(crate) fn deaggregates(&self) -> bool {
        self.layouts.is_some()
    }

    /// Whether this stream's batches may be held by their records' offsets
    /// alone, the records read again from the log if need be: the log is
    /// the stream's own (a Kinesis stream's is trimmed by retention and
    /// holds KPL aggregates where batches hold their user records), no
    /// transform changes the records, and no backup of every batch needs
    /// them after delivery.
    pub(crate) fn offsets_suffice(&self) -> bool {
        self.owns_log
            && !self.deaggregates()
            && self.transform.is_none()
            && self.backup_mode() != Some(crate::config::BackupMode::All)
    }

    pub(crate) fn set_error(&self, e: String) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e);
        }
    }

    pub(crate) fn delivered(&self) {
        self.last_delivery_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Release);
        if let Ok(mut g) = self.last_error.lock() {
            *g = None;
        }
    }

    /// The last delivery error since the last success, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// Reads the shards of a Kinesis stream as `layouts` says, in lineage
    /// order (see [`lineage`]).
    pub fn with_lineage(mut self, layouts: watch::Receiver<Arc<Layout>>) -> Self {
        self.layouts = Some(layouts);
        self
    }

    pub(crate) fn set_oldest_pending(&self, shard: u32, arrival_ms: Option<i64>) {
        let mut g = self
            .oldest_pending_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match arrival_ms {
            Some(ms) => {
                g.insert(shard, ms);
            }
            None => {
                g.remove(&shard);
            }
        }
    }

    /// Seconds since the oldest record not yet delivered arrived, over all
    /// shards (Firehose's DataFreshness); 0 when nothing read is pending.
    pub fn data_freshness_secs(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        let g = self
            .oldest_pending_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        g.values()
            .copied()
            .filter(|&ms| ms > 0)
            .map(|ms| (now - ms).max(0) / 1000)
            .max()
            .unwrap_or(0)
    }

    /// Epoch milliseconds of the last confirmed delivery (0 if none yet).
    pub fn last_delivery_ms(&self) -> i64 {
        self.last_delivery_ms.load(Ordering::Acquire)
    }
}

/// Runs delivery's CPU and file work (reading the log, transforming,
/// partitioning, encoding, compressing, encrypting) on the blocking pool at a
/// lower CPU priority (nice [`crate::sched::BACKGROUND_NICE`]), so that under load the
/// threads that acknowledge producers (the HTTP workers and the log writers)
/// run first: delivery absorbs the contention, which the log is there to
/// buffer, instead of producers' acknowledgement latency.
pub(crate) async fn background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        crate::sched::background_thread();
        f()
    })
    .await
}

/// A running delivery: one task per shard.
pub struct Delivery {
    sink: Arc<dyn Sink>,
    drain: CancellationToken,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Delivery {
    pub fn start(ctx: Arc<StreamContext>) -> Delivery {
        let sink = ctx.sink.clone();
        let drain = CancellationToken::new();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        match ctx.layouts.clone() {
            Some(layouts) => {
                tasks.spawn(lineage::supervise(
                    ctx,
                    layouts,
                    drain.clone(),
                    stop.clone(),
                ));
            }
            None => {
                for shard in 0..ctx.config.shards {
                    let run = shard::run(ctx.clone(), shard, drain.clone(), stop.clone());
                    tasks.spawn(async move {
                        run.await;
                    });
                }
            }
        }
        Delivery {
            sink,
            drain,
            stop,
            tasks,
        }
    }

    /// Flushes every open batch and delivers every durable record, then
    /// stops. After `deadline`, abandons what is still uploading (it stays in
    /// the log and is delivered after restart). True if everything drained.
    pub async fn shutdown(mut self, deadline: Duration) -> bool {
        self.drain.cancel();
        self.sink.flush();
        let drained = tokio::time::timeout(deadline, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            self.stop.cancel();
            while self.tasks.join_next().await.is_some() {}
        }
        drained
    }

    /// Stops at once without flushing (records stay in the log).
    pub async fn abort(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
