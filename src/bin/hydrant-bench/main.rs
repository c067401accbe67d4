//! `hydrant-bench`: measures the daemon against the ceiling of the machine.
//!
//! * `disk`: the ceiling — appends frames in the log's own format to a file
//!   and calls `fdatasync` after each group, as the log writer does.
//! * `ingest`: starts the real `hydrant` binary with a generated config (file
//!   destination, gzip), drives `PutRecordBatch` from several concurrent
//!   clients, waits until everything is delivered, and reports records/s,
//!   MB/s, acknowledgement latency and the daemon's peak RSS.
//! * `suite`: every workload and stage ceiling in one run, against Garage and
//!   files, with open-loop latency and freshness; writes
//!   `bench/results/<date>-<machine>.json` ([`suite`]).
//! * `kinesis`: the Kinesis Data Streams API: `PutRecords` from several
//!   clients with random partition keys, then every shard read back with
//!   `GetRecords`, per shard and in total, beside Kinesis's per-shard figures;
//!   enhanced fan-out's latency with 1, 5 and 20 subscribers; and what a
//!   `SplitShard` under load costs producers.
//! * `cluster`: W1 and Kinesis puts on the local log and on a cluster (three
//!   NATS JetStream servers and two Hydrant nodes on this machine) in the
//!   same run: what replication costs ([`cluster`]).
//! * `video`: Kinesis Video `PutMedia` sessions at 2 Mbit/s each, doubling
//!   until the machine saturates, with each fragment's time to `PERSISTED`;
//!   HLS segment serving beside the remux ceiling ([`video`]).
//! * `analytics`: a SQL application's one-minute tumbling count by key,
//!   records/s per core beside the JSON parse ceiling, and the latency from
//!   a window's end to its result being durable ([`analytics`]).
//!
//! This file parses the command line and dispatches; each subcommand lives in
//! its own module, with its flags.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use clap::{Parser, Subcommand};

mod analytics;
mod cluster;
mod daemon;
mod files;
mod garage;
mod ingest;
mod kinesis;
mod lake;
mod load;
mod metrics;
mod records;
mod recovery;
mod report;
mod stages;
mod suite;
mod video;
mod workloads;

#[derive(Parser)]
#[command(about = "Hydrant benchmarks: ingest throughput and latency vs. the disk ceiling")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Raw append + fdatasync with the log's frame format.
    Disk(stages::disk::Args),
    /// Ceilings of the encoding stages alone, on the same data: JSON lines
    /// with each compression, Parquet, and AES-256-GCM.
    Stages(stages::encodings::Args),
    /// Fills the log with undelivered records (the destination is down),
    /// SIGKILLs the daemon and times its restart until `/health` answers.
    Recovery(recovery::Args),
    /// The real daemon delivering to the data lake: JSON lines or Parquet,
    /// optionally partitioned by two jq keys and encrypted. Ingests
    /// `records` distinct records as fast as it can, then times until the
    /// last one is delivered (the `delivery_records` metric).
    Lake(lake::Args),
    /// A transform component alone: records/s through it in calls of
    /// `batch` records, and the cost of a call (one record per call).
    Transform(stages::transform::Args),
    /// Every workload (W1-W6) and every stage ceiling in one run, against a
    /// Garage started here and the local filesystem; prints the table and
    /// writes `bench/results/<date>-<machine>.json`.
    Suite(suite::Args),
    /// The Kinesis API: PutRecords records/s, then GetRecords MB/s per
    /// shard; SubscribeToShard latency with 1, 5 and 20 subscribers; the cost
    /// of a SplitShard under load.
    Kinesis(kinesis::Args),
    /// The real daemon under PutRecordBatch load.
    Ingest(ingest::Args),
    /// W1 and Kinesis PutRecords on the local log and on a cluster (3 NATS
    /// JetStream servers + 2 Hydrant nodes on this machine), same run.
    Cluster(cluster::Args),
    /// Kinesis Video: concurrent PutMedia sessions at the media's bitrate
    /// (2 Mbit/s) doubling until the machine saturates, fragment last byte
    /// to PERSISTED p50/p99; HLS segment serving against the remux
    /// ceiling. Writes `bench/results/<date>-<machine>-video.json`.
    Video(video::Args),
    /// A SQL application's one-minute tumbling count by key over 1 KiB
    /// JSON records: records/s per core in process beside the JSON parse
    /// ceiling, and on the daemon the latency from a window's end to its
    /// result being durable. Writes `bench/results/<date>-<machine>-analytics.json`.
    Analytics(analytics::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Disk(args) => stages::disk::run(args),
        Cmd::Stages(args) => stages::encodings::run(args),
        Cmd::Recovery(args) => block_on(recovery::run(args)),
        Cmd::Transform(args) => stages::transform::run(args),
        Cmd::Lake(args) => block_on(lake::run(args)),
        Cmd::Suite(args) => block_on(suite::run(args)),
        Cmd::Kinesis(args) => block_on(kinesis::run(args)),
        Cmd::Cluster(args) => block_on(cluster::run(args)),
        Cmd::Ingest(args) => block_on(ingest::run(args)),
        Cmd::Video(args) => block_on(video::run(args)),
        Cmd::Analytics(args) => block_on(analytics::run(args)),
    }
}

/// Runs an async subcommand on a runtime of its own.
fn block_on(f: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(f)
}

#[cfg(test)]
mod cli_tests {
    /// clap's own checks of the command line (unique argument and group
    /// names), which a release build never runs.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
