//! Hydrant: a self-hosted streaming delivery daemon with Amazon Kinesis Data
//! Firehose's API.
//!
//! Records flow `ingest` → `log` → `delivery` (`encode`) → `sink`; `config`
//! describes the pipelines and `ops` runs them as a daemon. See ARCHITECTURE.md
//! for the map and the invariants.

pub mod aws;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod encode;
pub mod fuzzing;
pub mod ingest;
pub mod kinesis;
pub mod log;
pub mod metrics;
pub mod record;
pub mod route;
pub mod sched;
pub mod sink;
pub mod streams;
pub mod transform;
