//! Prometheus metrics, named after Firehose's CloudWatch metrics where one
//! exists (`incoming_records`, `delivery_success`, `data_freshness_seconds`).
//! Every series is labelled with its stream; shard-level gauges add the shard.
//! Stages only increment counters here; rendering happens on `/metrics`.

pub mod analytics;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub stream: String,
    pub shard: String,
}

/// A Kinesis queue, by name, with its stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub stream: String,
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    pub stream: String,
    pub destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub stream: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerShardLabel {
    pub stream: String,
    pub consumer: String,
    pub shard: String,
}

type LatencyFamily = Family<OperationLabel, Histogram, fn() -> Histogram>;

/// Buckets from 0.5 ms to 23 s, each √2 times the one before, so that a p99
/// read from them is within 41% (doubling buckets left it within 100%).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, std::f64::consts::SQRT_2, 32))
}

/// The time of each group commit's write and `fdatasync` in the local log,
/// over every shard of every stream: the disk's share of an acknowledgement.
/// One per process, because the log writers hold no registry; every
/// [`Metrics`] registers it.
pub fn log_sync_seconds() -> &'static Histogram {
    static H: std::sync::LazyLock<Histogram> = std::sync::LazyLock::new(latency_histogram);
    &H
}

/// An Iceberg table, as `namespace.table` of its catalog.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub catalog: String,
    pub table: String,
}

/// Iceberg destinations: commits and what they added, per table.
#[derive(Clone)]
pub struct IcebergMetrics {
    pub commits: Family<TableLabel, Counter>,
    pub commit_failures: Family<TableLabel, Counter>,
    pub commit_seconds: Family<TableLabel, Histogram, fn() -> Histogram>,
    pub committed_files: Family<TableLabel, Counter>,
    pub committed_bytes: Family<TableLabel, Counter>,
    pub committed_records: Family<TableLabel, Counter>,
    pub snapshots: Family<TableLabel, Gauge>,
    pub abandoned_files: Family<TableLabel, Counter>,
}

/// A video stream's error acknowledgements, by Kinesis Video error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VideoErrorLabel {
    pub stream: String,
    pub code: String,
}

/// Kinesis Video streams: media in and out, sessions, errors.
#[derive(Clone, Default)]
pub struct VideoMetrics {
    pub incoming_bytes: Family<StreamLabel, Counter>,
    pub incoming_fragments: Family<StreamLabel, Counter>,
    pub put_media_sessions: Family<StreamLabel, Gauge>,
    pub errors: Family<VideoErrorLabel, Counter>,
    pub get_media_bytes: Family<StreamLabel, Counter>,
    pub hls_bytes: Family<StreamLabel, Counter>,
}

impl VideoMetrics {
    fn register(&self, registry: &mut Registry) {
        for (name, help, family) in [
            (
                "video_incoming_bytes",
                "Bytes of MKV a video stream received through PutMedia",
                &self.incoming_bytes,
            ),
            (
                "video_incoming_fragments",
                "Fragments a video stream persisted",
                &self.incoming_fragments,
            ),
            (
                "video_get_media_bytes",
                "Bytes of MKV GetMedia and GetMediaForFragmentList sent",
                &self.get_media_bytes,
            ),
            (
                "video_hls_bytes",
                "Bytes of HLS playlists and segments and GetClip MP4 sent",
                &self.hls_bytes,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "video_put_media_sessions",
            "PutMedia sessions open on a video stream",
            self.put_media_sessions.clone(),
        );
        registry.register(
            "video_errors",
            "Error acknowledgements of PutMedia, by Kinesis Video error code",
            self.errors.clone(),
        );
    }
}

impl Default for IcebergMetrics {
    fn default() -> Self {
        IcebergMetrics {
            commits: Family::default(),
            commit_failures: Family::default(),
            commit_seconds: Family::new_with_constructor(latency_histogram),
            committed_files: Family::default(),
            committed_bytes: Family::default(),
            committed_records: Family::default(),
            snapshots: Family::default(),
            abandoned_files: Family::default(),
        }
    }
}

impl IcebergMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "iceberg_commits",
            "Commits (snapshots) made to an Iceberg table",
            self.commits.clone(),
        );
        registry.register(
            "iceberg_commit_failures",
            "Commit attempts that failed or whose outcome was unknown (retried)",
            self.commit_failures.clone(),
        );
        registry.register(
            "iceberg_commit_seconds",
            "Time from a commit's start to its confirmation",
            self.commit_seconds.clone(),
        );
        registry.register(
            "iceberg_committed_files",
            "Data files added by commits",
            self.committed_files.clone(),
        );
        registry.register(
            "iceberg_committed_bytes",
            "Bytes of the data files added by commits",
            self.committed_bytes.clone(),
        );
        registry.register(
            "iceberg_committed_records",
            "Records in the data files added by commits",
            self.committed_records.clone(),
        );
        registry.register(
            "iceberg_snapshots",
            "Snapshots the table keeps, after the last commit and expiry",
            self.snapshots.clone(),
        );
        registry.register("iceberg_abandoned_files", "Data files written but never committed (orphans until `hydrant iceberg clean-orphans`)", self.abandoned_files.clone());
    }

    pub fn table(catalog: &str, table: &str) -> TableLabel {
        TableLabel {
            catalog: catalog.to_string(),
            table: table.to_string(),
        }
    }
}

/// All metrics of the daemon.
pub struct Metrics {
    registry: Registry,
    pub incoming_records: Family<StreamLabel, Counter>,
    pub incoming_bytes: Family<StreamLabel, Counter>,
    pub incoming_put_requests: Family<StreamLabel, Counter>,
    pub throttled_records: Family<StreamLabel, Counter>,
    pub put_latency_seconds: LatencyFamily,
    pub delivery_records: Family<DestinationLabel, Counter>,
    pub delivery_bytes: Family<DestinationLabel, Counter>,
    pub delivery_success: Family<DestinationLabel, Counter>,
    pub delivery_failure: Family<DestinationLabel, Counter>,
    pub delivery_retries: Family<DestinationLabel, Counter>,
    pub delivery_last_error_timestamp_seconds: Family<DestinationLabel, Gauge>,
    pub error_output_records: Family<StreamLabel, Counter>,
    pub data_freshness_seconds: Family<StreamLabel, Gauge>,
    pub backlog_records: Family<ShardLabel, Gauge>,
    pub log_bytes: Family<ShardLabel, Gauge>,
    pub open_partitions: Family<ShardLabel, Gauge>,
    pub partition_evictions: Family<ShardLabel, Gauge>,
    pub transform_records: Family<OutcomeLabel, Counter>,
    pub transform_seconds: Family<StreamLabel, Histogram, fn() -> Histogram>,
    pub kinesis_incoming_records: Family<StreamLabel, Counter>,
    pub kinesis_incoming_bytes: Family<StreamLabel, Counter>,
    pub kinesis_outgoing_records: Family<StreamLabel, Counter>,
    pub kinesis_outgoing_bytes: Family<StreamLabel, Counter>,
    pub kinesis_throttled_records: Family<StreamLabel, Counter>,
    /// Shard-level metrics, for streams with enhanced monitoring on.
    pub kinesis_shard_incoming_records: Family<ShardLabel, Counter>,
    pub kinesis_shard_incoming_bytes: Family<ShardLabel, Counter>,
    pub kinesis_shard_outgoing_records: Family<ShardLabel, Counter>,
    pub kinesis_shard_outgoing_bytes: Family<ShardLabel, Counter>,
    pub kinesis_shard_iterator_age_ms: Family<ShardLabel, Gauge>,
    pub access_denied_requests: Family<OperationLabel, Counter>,
    pub kinesis_queue_received_records: Family<QueueLabel, Counter>,
    pub kinesis_queue_acknowledged_records: Family<QueueLabel, Counter>,
    pub kinesis_queue_in_flight: Family<QueueLabel, Gauge>,
    pub kinesis_queue_dead_letters: Family<QueueLabel, Gauge>,
    pub kinesis_open_shards: Family<StreamLabel, Gauge>,
    pub kinesis_reshards: Family<StreamLabel, Counter>,
    pub kinesis_subscriptions_open: Family<ShardLabel, Gauge>,
    pub kinesis_subscription_events: Family<ConsumerShardLabel, Counter>,
    pub kinesis_subscription_records: Family<ConsumerShardLabel, Counter>,
    pub kinesis_subscription_bytes: Family<ConsumerShardLabel, Counter>,
    pub kinesis_subscription_millis_behind: Family<ConsumerShardLabel, Gauge>,
    pub kpl_user_records: Family<StreamLabel, Counter>,
    pub kpl_corrupt_aggregates: Family<StreamLabel, Counter>,
    pub iceberg: IcebergMetrics,
    pub video: VideoMetrics,
    pub analytics: analytics::AnalyticsMetrics,
    process_resident_memory_bytes: Gauge,
    process_cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    process_open_fds: Gauge,
    process_threads: Gauge,
    process_start_time_seconds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hydrant");
        let m = Metrics {
            incoming_records: Family::default(),
            incoming_bytes: Family::default(),
            incoming_put_requests: Family::default(),
            throttled_records: Family::default(),
            put_latency_seconds: Family::new_with_constructor(latency_histogram),
            delivery_records: Family::default(),
            delivery_bytes: Family::default(),
            delivery_success: Family::default(),
            delivery_failure: Family::default(),
            delivery_retries: Family::default(),
            delivery_last_error_timestamp_seconds: Family::default(),
            error_output_records: Family::default(),
            data_freshness_seconds: Family::default(),
            backlog_records: Family::default(),
            log_bytes: Family::default(),
            open_partitions: Family::default(),
            partition_evictions: Family::default(),
            transform_records: Family::default(),
            transform_seconds: Family::new_with_constructor(latency_histogram),
            kinesis_incoming_records: Family::default(),
            kinesis_incoming_bytes: Family::default(),
            kinesis_outgoing_records: Family::default(),
            kinesis_outgoing_bytes: Family::default(),
            kinesis_throttled_records: Family::default(),
            kinesis_shard_incoming_records: Family::default(),
            kinesis_shard_incoming_bytes: Family::default(),
            kinesis_shard_outgoing_records: Family::default(),
            kinesis_shard_outgoing_bytes: Family::default(),
            kinesis_shard_iterator_age_ms: Family::default(),
            access_denied_requests: Family::default(),
            kinesis_queue_received_records: Family::default(),
            kinesis_queue_acknowledged_records: Family::default(),
            kinesis_queue_in_flight: Family::default(),
            kinesis_queue_dead_letters: Family::default(),
            kinesis_open_shards: Family::default(),
            kinesis_reshards: Family::default(),
            kinesis_subscriptions_open: Family::default(),
            kinesis_subscription_events: Family::default(),
            kinesis_subscription_records: Family::default(),
            kinesis_subscription_bytes: Family::default(),
            kinesis_subscription_millis_behind: Family::default(),
            kpl_user_records: Family::default(),
            kpl_corrupt_aggregates: Family::default(),
            iceberg: IcebergMetrics::default(),
            video: VideoMetrics::default(),
            analytics: analytics::AnalyticsMetrics::default(),
            process_resident_memory_bytes: Gauge::default(),
            process_cpu_seconds: Gauge::default(),
            process_open_fds: Gauge::default(),
            process_threads: Gauge::default(),
            process_start_time_seconds: Gauge::default(),
            registry: Registry::default(),
        };
        m.register_kinesis(&mut registry);
        m.register_access_and_queues(&mut registry);
        m.register_ingest(&mut registry);
        m.register_delivery(&mut registry);
        m.register_shards(&mut registry);
        m.register_transform(&mut registry);
        m.iceberg.register(&mut registry);
        m.video.register(&mut registry);
        m.analytics.register(&mut registry);
        m.process_start_time_seconds
            .set(chrono::Utc::now().timestamp());
        m.register_process(&mut registry);
        Metrics { registry, ..m }
    }

    /// Refused requests, and the Kinesis queues.
    fn register_access_and_queues(&self, registry: &mut Registry) {
        registry.register(
            "access_denied_requests",
            "Requests refused by the signing key's policy, by action",
            self.access_denied_requests.clone(),
        );
        registry.register(
            "kinesis_queue_received_records",
            "Records a queue handed out (redeliveries and dead letters too)",
            self.kinesis_queue_received_records.clone(),
        );
        registry.register(
            "kinesis_queue_acknowledged_records",
            "Records a queue's consumers acknowledged",
            self.kinesis_queue_acknowledged_records.clone(),
        );
        registry.register(
            "kinesis_queue_in_flight",
            "Records of a queue received and not acknowledged, their visibility timeout running",
            self.kinesis_queue_in_flight.clone(),
        );
        registry.register(
            "kinesis_queue_dead_letters",
            "A queue's dead letters",
            self.kinesis_queue_dead_letters.clone(),
        );
    }

    /// The Kinesis API: records put and read.
    fn register_kinesis(&self, registry: &mut Registry) {
        registry.register(
            "kinesis_incoming_records",
            "Records put (durable) to a Kinesis stream",
            self.kinesis_incoming_records.clone(),
        );
        registry.register(
            "kinesis_incoming_bytes",
            "Bytes of record data put to a Kinesis stream",
            self.kinesis_incoming_bytes.clone(),
        );
        registry.register(
            "kinesis_outgoing_records",
            "Records returned by GetRecords",
            self.kinesis_outgoing_records.clone(),
        );
        registry.register(
            "kinesis_outgoing_bytes",
            "Bytes of record data returned by GetRecords",
            self.kinesis_outgoing_bytes.clone(),
        );
        registry.register(
            "kinesis_throttled_records",
            "Records refused by a shard write limit or a full log",
            self.kinesis_throttled_records.clone(),
        );
        for (name, help, family) in [
            (
                "kinesis_shard_incoming_records",
                "Records put to a shard (enhanced monitoring)",
                &self.kinesis_shard_incoming_records,
            ),
            (
                "kinesis_shard_incoming_bytes",
                "Bytes put to a shard (enhanced monitoring)",
                &self.kinesis_shard_incoming_bytes,
            ),
            (
                "kinesis_shard_outgoing_records",
                "Records GetRecords returned from a shard (enhanced monitoring)",
                &self.kinesis_shard_outgoing_records,
            ),
            (
                "kinesis_shard_outgoing_bytes",
                "Bytes GetRecords returned from a shard (enhanced monitoring)",
                &self.kinesis_shard_outgoing_bytes,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "kinesis_shard_iterator_age_ms",
            "How far behind the tip the last GetRecords of a shard read (enhanced monitoring)",
            self.kinesis_shard_iterator_age_ms.clone(),
        );
        registry.register(
            "kinesis_open_shards",
            "Open shards of a Kinesis stream",
            self.kinesis_open_shards.clone(),
        );
        registry.register(
            "kinesis_reshards",
            "Splits, merges and shard count updates of a Kinesis stream",
            self.kinesis_reshards.clone(),
        );
        registry.register(
            "kpl_user_records",
            "User records taken out of KPL aggregates by a delivery stream reading a Kinesis stream",
            self.kpl_user_records.clone(),
        );
        registry.register(
            "kpl_corrupt_aggregates",
            "KPL aggregates that could not be taken apart, sent to the error output",
            self.kpl_corrupt_aggregates.clone(),
        );
        self.register_fan_out(registry);
    }

    /// Enhanced fan-out: subscriptions and what they pushed.
    fn register_fan_out(&self, registry: &mut Registry) {
        registry.register(
            "kinesis_subscriptions_open",
            "SubscribeToShard subscriptions open on a shard",
            self.kinesis_subscriptions_open.clone(),
        );
        registry.register(
            "kinesis_subscription_events",
            "SubscribeToShardEvents sent to a consumer",
            self.kinesis_subscription_events.clone(),
        );
        registry.register(
            "kinesis_subscription_records",
            "Records sent to a consumer in SubscribeToShardEvents",
            self.kinesis_subscription_records.clone(),
        );
        registry.register(
            "kinesis_subscription_bytes",
            "Bytes of record data sent to a consumer in SubscribeToShardEvents",
            self.kinesis_subscription_bytes.clone(),
        );
        registry.register(
            "kinesis_subscription_millis_behind",
            "How far behind the shard's tip a consumer's last event was",
            self.kinesis_subscription_millis_behind.clone(),
        );
    }

    /// Ingest: records accepted and refused, and how fast puts were answered.
    fn register_ingest(&self, registry: &mut Registry) {
        registry.register(
            "incoming_records",
            "Records accepted (durable) by ingest",
            self.incoming_records.clone(),
        );
        registry.register(
            "incoming_bytes",
            "Bytes of record data accepted by ingest",
            self.incoming_bytes.clone(),
        );
        registry.register(
            "incoming_put_requests",
            "Put requests that wrote records",
            self.incoming_put_requests.clone(),
        );
        registry.register(
            "throttled_records",
            "Records refused because the log was full or unavailable",
            self.throttled_records.clone(),
        );
        registry.register(
            "put_latency_seconds",
            "Time from request to acknowledgement, by operation",
            self.put_latency_seconds.clone(),
        );
        registry.register(
            "log_sync_seconds",
            "Time of each group commit's write and fdatasync in the local log",
            log_sync_seconds().clone(),
        );
    }

    /// Delivery to the destination, the error output and freshness.
    fn register_delivery(&self, registry: &mut Registry) {
        registry.register(
            "delivery_records",
            "Records confirmed by the destination",
            self.delivery_records.clone(),
        );
        registry.register(
            "delivery_bytes",
            "Object bytes confirmed by the destination",
            self.delivery_bytes.clone(),
        );
        registry.register(
            "delivery_success",
            "Batches confirmed by the destination",
            self.delivery_success.clone(),
        );
        registry.register(
            "delivery_failure",
            "Batches that exhausted their retry window",
            self.delivery_failure.clone(),
        );
        registry.register(
            "delivery_retries",
            "Failed delivery attempts that were retried",
            self.delivery_retries.clone(),
        );
        registry.register(
            "delivery_last_error_timestamp_seconds",
            "When the destination last failed (Unix seconds; the message is on /ready and in the log)",
            self.delivery_last_error_timestamp_seconds.clone(),
        );
        registry.register(
            "error_output_records",
            "Records written to the error output",
            self.error_output_records.clone(),
        );
        registry.register(
            "data_freshness_seconds",
            "Age of the oldest record not yet delivered (0 when everything read is delivered), Firehose's DataFreshness",
            self.data_freshness_seconds.clone(),
        );
    }

    /// Per-shard figures of the log and the partitioner.
    fn register_shards(&self, registry: &mut Registry) {
        registry.register(
            "backlog_records",
            "Durable records not yet delivered, per shard",
            self.backlog_records.clone(),
        );
        registry.register(
            "log_bytes",
            "Bytes of log segments on disk, per shard",
            self.log_bytes.clone(),
        );
        registry.register(
            "open_partitions",
            "Dynamic partitions with an open batch, per shard",
            self.open_partitions.clone(),
        );
        registry.register(
            "partition_evictions",
            "Partitions flushed early because open_partitions_max or open_buffer_mb_max was reached, per shard since start",
            self.partition_evictions.clone(),
        );
    }

    /// The WebAssembly transform.
    fn register_transform(&self, registry: &mut Registry) {
        registry.register(
            "transform_records",
            "Records through the WebAssembly transform, by outcome (ok, dropped, failed)",
            self.transform_records.clone(),
        );
        registry.register(
            "transform_seconds",
            "Time to transform (and partition) one chunk of records read from the log",
            self.transform_seconds.clone(),
        );
    }

    /// The daemon process (read from /proc at each render).
    fn register_process(&self, registry: &mut Registry) {
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the daemon",
            self.process_resident_memory_bytes.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time (user + system) of the daemon",
            self.process_cpu_seconds.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            self.process_open_fds.clone(),
        );
        registry.register("process_threads", "Threads", self.process_threads.clone());
        registry.register(
            "process_start_time_seconds",
            "When the daemon started, in seconds since the epoch",
            self.process_start_time_seconds.clone(),
        );
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.refresh_process();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Reads the process figures from /proc (Linux); elsewhere they stay 0.
    fn refresh_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<i64>().ok())
            };
            if let Some(kib) = field("VmRSS:") {
                self.process_resident_memory_bytes.set(kib * 1024);
            }
            if let Some(n) = field("Threads:") {
                self.process_threads.set(n);
            }
        }
        // utime and stime, fields 14 and 15, in clock ticks (100 per second
        // on Linux); the command name before them may hold spaces.
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            self.process_cpu_seconds
                .set((ticks(11) + ticks(12)) / 100.0);
        }
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            self.process_open_fds.set(rd.count() as i64);
        }
    }

    pub fn stream(name: &str) -> StreamLabel {
        StreamLabel {
            stream: name.to_string(),
        }
    }

    pub fn outcome(name: &str, outcome: &str) -> OutcomeLabel {
        OutcomeLabel {
            stream: name.to_string(),
            outcome: outcome.to_string(),
        }
    }

    pub fn queue(stream: &str, queue: &str) -> QueueLabel {
        QueueLabel {
            stream: stream.to_string(),
            queue: queue.to_string(),
        }
    }

    pub fn shard(name: &str, shard: u32) -> ShardLabel {
        ShardLabel {
            stream: name.to_string(),
            shard: shard.to_string(),
        }
    }

    pub fn destination(name: &str, destination: &str) -> DestinationLabel {
        DestinationLabel {
            stream: name.to_string(),
            destination: destination.to_string(),
        }
    }

    pub fn operation(op: &str) -> OperationLabel {
        OperationLabel {
            operation: op.to_string(),
        }
    }
}
