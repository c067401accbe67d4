//! Hydrant: a self-hosted Amazon Kinesis: the Firehose, Kinesis Data
//! Streams, Data Analytics and Video Streams APIs over a durable shard log,
//! delivering to object stores, HTTP endpoints and PostgreSQL.
//!
//! Records flow `ingest` → `log` → `delivery` (`route`, `transform`,
//! `encode`) → `sink`; `analytics` runs SQL over the logs into other
//! streams; `config` describes the streams, `streams` runs them and
//! `daemon` wires it all together. Each module lives on a floor and
//! imports only the floors below it: ARCHITECTURE.md has the map, the
//! floors and the invariants, and `tests/architecture.rs` checks the floors.

// Input, the network and the disk must never panic the daemon: errors are
// returned and worded, not unwrapped (tests may unwrap; clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod alloc;
pub mod analytics;
pub mod aws;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod encode;
pub mod failpoint;
pub mod fuzzing;
pub mod ingest;
pub mod kinesis;
pub mod log;
pub mod metrics;
pub mod record;
pub mod route;
pub mod sched;
pub mod secret;
pub mod sink;
pub mod streams;
pub mod tls;
pub mod transform;
pub mod video;
