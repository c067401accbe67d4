//! `kinesis`: the Kinesis Data Streams API's bounds and the Kinesis streams
//! the file declares.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawKinesis, RawKinesisStream};
use super::{ConfigError, err, range_check};
use crate::aws;
use crate::log::seal::Keyring;

/// Settings of the Kinesis Data Streams API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisOptions {
    /// Open shards of all Kinesis streams together (each is a log writer
    /// thread).
    pub shards_max: u32,
    /// Open shards of one stream (Kinesis's per-stream limit).
    pub stream_shards_max: u32,
    /// `UpdateShardCount` calls per stream in 24 hours (Kinesis: 10).
    pub scalings_per_day_max: u32,
    /// Enhanced fan-out consumers a stream may register (Kinesis: 20).
    pub consumers_per_stream_max: usize,
    /// `SubscribeToShard` subscriptions open at once, over all streams.
    pub subscriptions_max: usize,
    /// How long a subscription lasts before the client must renew it
    /// (Kinesis: 5 minutes).
    pub subscription_duration: Duration,
    /// Events a subscription may have queued for a slow client before it
    /// stops reading the shard.
    pub subscription_queue_events: usize,
    /// How long a registered consumer stays `CREATING`.
    pub consumer_activation: Duration,
    /// How long an ON_DEMAND stream's shard must stay over its write limit
    /// before it is split.
    pub on_demand_split_after: Duration,
    /// How long a shard iterator stays valid (Kinesis: 5 minutes).
    pub iterator_ttl: Duration,
    /// Kinesis's per-shard write limits (1 MiB/s and 1,000 records/s).
    pub shard_write_limits: bool,
    /// Queues over all streams.
    pub queues_max: usize,
    /// Records a queue tracks at once (in flight, visible again, dead
    /// letters): past it, only those are delivered, no fresh ones.
    pub queue_in_flight_max: usize,
    /// `ReceiveQueueRecords` calls waiting for records at once, over all
    /// queues; past it, a call answers at once.
    pub queue_long_polls_max: usize,
    /// Kinesis streams declared in the file: created at start if missing.
    pub streams: BTreeMap<String, KinesisStreamConfig>,
}

/// A Kinesis stream declared in the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisStreamConfig {
    pub shards: u32,
    pub retention_hours: u32,
    /// The key its log is sealed with at rest (`log_encryption`); None:
    /// as the API left it.
    pub log_key: Option<String>,
}

impl Default for KinesisOptions {
    fn default() -> Self {
        KinesisOptions {
            shards_max: 200,
            stream_shards_max: 10_000,
            scalings_per_day_max: 10,
            consumers_per_stream_max: 20,
            subscriptions_max: 1024,
            subscription_duration: Duration::from_secs(300),
            subscription_queue_events: 4,
            consumer_activation: Duration::from_millis(500),
            on_demand_split_after: Duration::from_secs(60),
            iterator_ttl: Duration::from_secs(300),
            shard_write_limits: false,
            queues_max: 100,
            queue_in_flight_max: 100_000,
            queue_long_polls_max: 1024,
            streams: BTreeMap::new(),
        }
    }
}

/// Validates `kinesis`'s bounds (its declared streams: [`declared`]).
pub(super) fn kinesis(errors: &mut Vec<ConfigError>, rk: RawKinesis) -> KinesisOptions {
    KinesisOptions {
        shards_max: range_check(
            errors,
            "kinesis.shards_max",
            rk.shards_max.unwrap_or(200),
            1,
            10_000,
        ),
        stream_shards_max: range_check(
            errors,
            "kinesis.stream_shards_max",
            rk.stream_shards_max.unwrap_or(10_000),
            1,
            10_000,
        ),
        scalings_per_day_max: range_check(
            errors,
            "kinesis.scalings_per_day_max",
            rk.scalings_per_day_max.unwrap_or(10),
            1,
            10_000,
        ),
        consumers_per_stream_max: range_check(
            errors,
            "kinesis.consumers_per_stream_max",
            rk.consumers_per_stream_max.unwrap_or(20),
            1,
            1000,
        ),
        subscriptions_max: range_check(
            errors,
            "kinesis.subscriptions_max",
            rk.subscriptions_max.unwrap_or(1024),
            1,
            65_536,
        ),
        subscription_duration: Duration::from_secs(range_check(
            errors,
            "kinesis.subscription_secs",
            rk.subscription_secs.unwrap_or(300),
            1,
            300,
        )),
        subscription_queue_events: range_check(
            errors,
            "kinesis.subscription_queue_events",
            rk.subscription_queue_events.unwrap_or(4),
            1,
            64,
        ),
        consumer_activation: Duration::from_millis(range_check(
            errors,
            "kinesis.consumer_activation_ms",
            rk.consumer_activation_ms.unwrap_or(500),
            0,
            60_000,
        )),
        on_demand_split_after: Duration::from_secs(range_check(
            errors,
            "kinesis.on_demand_split_secs",
            rk.on_demand_split_secs.unwrap_or(60),
            5,
            86_400,
        )),
        iterator_ttl: Duration::from_secs(range_check(
            errors,
            "kinesis.iterator_ttl_secs",
            rk.iterator_ttl_secs.unwrap_or(300),
            1,
            86_400,
        )),
        shard_write_limits: rk.shard_write_limits.unwrap_or(false),
        queues_max: range_check(
            errors,
            "kinesis.queues_max",
            rk.queues_max.unwrap_or(100),
            1,
            10_000,
        ),
        queue_in_flight_max: range_check(
            errors,
            "kinesis.queue_in_flight_max",
            rk.queue_in_flight_max.unwrap_or(100_000),
            10,
            10_000_000,
        ),
        queue_long_polls_max: range_check(
            errors,
            "kinesis.queue_long_polls_max",
            rk.queue_long_polls_max.unwrap_or(1024),
            1,
            65_536,
        ),
        streams: BTreeMap::new(),
    }
}

/// `kinesis.streams`: each declared stream, whose shards together must fit
/// `shards_max`.
pub(super) fn declared(
    errors: &mut Vec<ConfigError>,
    raw: BTreeMap<String, RawKinesisStream>,
    shards_max: u32,
    (keys, clustered): (&Keyring, bool),
) -> BTreeMap<String, KinesisStreamConfig> {
    let mut streams = BTreeMap::new();
    let mut declared_shards = 0u32;
    for (name, ks) in raw {
        let path = format!("kinesis.streams.{name}");
        if !aws::valid_kinesis_stream_name(&name) {
            errors.push(err(
                &path,
                "a Kinesis stream name is 1 to 128 characters of letters, digits, `_`, `.` and `-`",
            ));
        }
        let shards = range_check(
            errors,
            &format!("{path}.shards"),
            ks.shards.unwrap_or(4),
            1,
            10_000,
        );
        let retention_hours = range_check(
            errors,
            &format!("{path}.retention_hours"),
            ks.retention_hours.unwrap_or(24),
            24,
            8760,
        );
        declared_shards = declared_shards.saturating_add(shards);
        let log_key = super::at_rest::stream_key(errors, &path, ks.log_encryption, keys, clustered);
        streams.insert(
            name,
            KinesisStreamConfig {
                shards,
                retention_hours,
                log_key,
            },
        );
    }
    if declared_shards > shards_max {
        errors.push(err(
            "kinesis.streams",
            format!(
                "declare {declared_shards} shards in all, more than kinesis.shards_max ({})",
                shards_max
            ),
        ));
    }
    streams
}
