//! Hydrant: a self-hosted streaming delivery daemon with Amazon Kinesis Data
//! Firehose's API.
//!
//! Records flow `ingest` → `log` → `delivery` (`encode`) → `sink`; `config`
//! describes the pipelines and `ops` runs them as a daemon. See ARCHITECTURE.md
//! for the map and the invariants.

pub mod config;
pub mod delivery;
pub mod encode;
pub mod fuzzing;
pub mod ingest;
pub mod kinesis;
pub mod log;
pub mod ops;
pub mod sched;
pub mod sink;
pub mod transform;
