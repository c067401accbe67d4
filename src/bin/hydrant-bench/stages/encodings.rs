//! `hydrant-bench stages`: the ceilings of the encoding stages alone, on one
//! core and the same data: JSON lines with each compression, Parquet, and
//! AES-256-GCM; then dynamic partitioning, and W2's partitioned Parquet.

use std::time::Instant;

use anyhow::bail;
use hydrant::encode::encrypt::Encryption;
use hydrant::encode::{Compression, Encoding};
use hydrant::encode::{EncodeOptions, encode_batch};

use super::{encrypt, parquet, partition};
use crate::records::{frames_of, json_record};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
}

/// A row of the table: its name, and what the batch is encoded with.
type Case = (&'static str, Encoding, Compression, Option<Encryption>);

/// Encodes every record once per case, timed, and prints a row for each.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        records: n,
        record_bytes,
    } = args;
    super::one_core();
    let (frames, raw) = frames_of(n, |i| json_record(i, record_bytes));
    println!(
        "| stage alone, one core, {n} records of {record_bytes} B ({:.0} MB) | MB/s of input | records/s | output/input |",
        raw as f64 / 1e6
    );
    println!("|---|---|---|---|");
    for (name, encoding, compression, encryption) in cases() {
        let opts = EncodeOptions {
            encoding,
            compression,
            level: None,
            encryption,
        };
        let t = Instant::now();
        let out = encode_batch(&frames, &opts)?;
        let el = t.elapsed().as_secs_f64();
        if !out.rejected.is_empty() {
            bail!("{name}: {} records rejected", out.rejected.len());
        }
        println!(
            "| {name} | {:.0} | {:.0} | {:.3} |",
            raw as f64 / el / 1e6,
            n as f64 / el,
            out.body.len() as f64 / raw as f64
        );
    }
    // Dynamic partitioning alone: JSON parse, two jq keys, prefix render.
    partition::print_logs_row(&frames, raw)?;
    // W2's delivery whole, the keys scanned and from one decode (stderr).
    let (clicks, clicks_raw) = frames_of(n, crate::records::click_record);
    parquet::partitioned_stages(&clicks, clicks_raw).map(drop)
}

/// The rows, in order. A flat table: one entry per row, kept together so the
/// order of the printed table reads off it.
fn cases() -> Vec<Case> {
    let lines = Encoding::JsonLines {
        delimiter: b"\n".to_vec(),
    };
    let key = Some(encrypt::key());
    let pq = parquet::logs_encoding();
    vec![
        ("JSON lines, none", lines.clone(), Compression::None, None),
        (
            "JSON lines, gzip (libdeflate level 6)",
            lines.clone(),
            Compression::Gzip,
            None,
        ),
        (
            "JSON lines, zstd (level 3)",
            lines.clone(),
            Compression::Zstd,
            None,
        ),
        (
            "JSON lines, snappy",
            lines.clone(),
            Compression::Snappy,
            None,
        ),
        (
            "JSON lines, none + AES-256-GCM",
            lines.clone(),
            Compression::None,
            key.clone(),
        ),
        (
            "JSON lines, gzip + AES-256-GCM",
            lines.clone(),
            Compression::Gzip,
            key.clone(),
        ),
        (
            "JSON lines, zstd + AES-256-GCM",
            lines,
            Compression::Zstd,
            key.clone(),
        ),
        (
            "Parquet (5 string columns), zstd",
            pq.clone(),
            Compression::None,
            None,
        ),
        (
            "Parquet (5 string columns), zstd + AES-256-GCM",
            pq,
            Compression::None,
            key,
        ),
    ]
}
