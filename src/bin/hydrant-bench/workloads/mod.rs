//! The suite's workloads, W1 to W6 (and W1 and W4 sealed at rest): one module each, saying what a workload
//! sends, how its stream is configured and which stages it goes through;
//! and the driver they share: the requests and their sending
//! ([`requests`]), the closed-loop saturation phase ([`saturation`]), the
//! paced open-loop half-load phase ([`half_load`]) and the freshness watcher
//! ([`freshness`]).

use std::path::Path;

mod at_rest;
pub mod freshness;
pub mod half_load;
pub mod requests;
pub mod saturation;
mod w1_logs;
mod w2_clickstream;
mod w3_transform;
mod w4_small;
mod w5_encrypted;
mod w6_iceberg;

pub struct Workload {
    pub id: &'static str,
    pub description: &'static str,
    pub record_bytes: usize,
    pub ndjson: bool,
    pub make: fn(usize) -> Vec<u8>,
    /// The stream's YAML (after `streams:\n  bench:\n`), given the bucket.
    pub stream: fn(&str, &Path) -> String,
    /// Stages it goes through (names of [`Stage`](crate::stages::Stage)s).
    pub stages: &'static [&'static str],
    /// Object store bucket, or None for the file destination.
    pub s3: bool,
    /// Delivers into an Iceberg table: a catalog `lake` is declared with
    /// its warehouse in the workload's bucket.
    pub iceberg: bool,
}

impl Workload {
    /// The ingest stage its records go through before the log: the
    /// `PutRecordBatch` parser for Firehose requests (NDJSON bodies are
    /// split by lines, with no stage of their own).
    pub fn ingest_stage(&self) -> Option<&'static str> {
        use crate::stages::ingest::{PARSE_1K, PARSE_300};
        match (self.ndjson, self.record_bytes) {
            (true, _) => None,
            (false, 300) => Some(PARSE_300),
            (false, _) => Some(PARSE_1K),
        }
    }
}

/// Every workload, in order.
pub fn all() -> Vec<Workload> {
    vec![
        w1_logs::workload(),
        w2_clickstream::workload(),
        w3_transform::workload(),
        w4_small::workload(),
        w5_encrypted::workload(),
        w6_iceberg::workload(),
        at_rest::w1(),
        at_rest::w4(),
    ]
}

/// The destination's `error_output_prefix`, in YAML.
pub fn errors_prefix() -> &'static str {
    "error_output_prefix: \"errors/!{firehose:error-output-type}/\""
}
