//! A stream's settings beyond its shape, set by the newer control-plane
//! operations and kept in its definition: the shard-level metrics
//! `EnableEnhancedMonitoring` switched on, the record size
//! `UpdateMaxRecordSize` allows, the resource policy (stored and returned;
//! enforced once per-key permissions exist), and the warm throughput asked
//! for (kept and reported; on-demand streams here split under load instead).

use serde::{Deserialize, Serialize};

/// Kinesis's shard-level metric names.
pub const SHARD_METRICS: &[&str] = &[
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// A record's largest size by default (1 MiB) and at most (10 MiB).
pub const RECORD_KIB_DEFAULT: u32 = 1024;
pub const RECORD_KIB_MAX: u32 = 10_240;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    /// Shard-level metrics on (of [`SHARD_METRICS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_metrics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_kib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_throughput_mibps: Option<u64>,
}

impl StreamSettings {
    pub fn is_default(&self) -> bool {
        *self == StreamSettings::default()
    }

    /// The largest record the stream takes, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_kib.unwrap_or(RECORD_KIB_DEFAULT) as usize * 1024
    }
}

impl super::Streams {
    /// The largest record any stream takes: request bodies must hold one
    /// (base64 in JSON), whatever `limits.request_bytes_max` says.
    pub fn record_bytes_max(&self) -> usize {
        self.all()
            .iter()
            .map(|s| s.max_record_bytes())
            .max()
            .unwrap_or(RECORD_KIB_DEFAULT as usize * 1024)
    }
}
