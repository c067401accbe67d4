//! The transform stage: a WebAssembly component alone. `hydrant-bench
//! transform` (records/s in calls of `batch` records, and the cost of a
//! one-record call), and the suite's `WASM call` stage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use hydrant::record::Record;
use hydrant::transform::{Outcome, Transform, TransformConfig};

use super::{Stage, measured};
use crate::records::{frames_of, json_record};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    wasm: PathBuf,
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Given to the component's init.
    #[arg(long, default_value = r#"{"env":"bench","drop_levels":[]}"#)]
    config: String,
}

/// The component at `wasm`, initialized with `config`, called with at most
/// `batch` records; one instance.
fn load(wasm: PathBuf, config: String, batch: usize) -> anyhow::Result<Transform> {
    Ok(Transform::load(
        TransformConfig {
            wasm,
            config,
            batch_records_max: batch,
            batch_bytes_max: 64 << 20,
            timeout: Duration::from_secs(300),
            memory_bytes_max: 2 << 30,
            instances_max: 1,
        },
        None,
    )?)
}

/// `hydrant-bench transform`: one warm-up call, every record through the
/// component, then 2,000 calls of one record.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        wasm,
        records: n,
        record_bytes,
        batch,
        config,
    } = args;
    let (frames, raw) = frames_of(n, |i| json_record(i, record_bytes));
    let t0 = Instant::now();
    let t = load(wasm.clone(), config, batch)?;
    let loaded = t0.elapsed();
    // Warm up, then measure.
    let _ = t.run(&frames[..frames.len().min(batch)]);
    let t1 = Instant::now();
    let out = t.run(&frames);
    let el = t1.elapsed().as_secs_f64();
    let failed = out
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .count();
    if failed > 0 {
        bail!("{failed} of {n} records failed");
    }
    let dropped = out.iter().filter(|o| matches!(o, Outcome::Dropped)).count();
    let calls = 2_000;
    let one = &frames[..1];
    let t2 = Instant::now();
    for _ in 0..calls {
        let _ = t.run(one);
    }
    let per_call = t2.elapsed().as_secs_f64() / calls as f64;
    println!(
        "| {} | {n} x {record_bytes} B in calls of {batch} ({dropped} dropped) | {:.0} records/s | {:.1} MB/s | {:.1} µs per 1-record call | compile+load {:.2} s |",
        wasm.display(),
        n as f64 / el,
        raw as f64 / el / 1e6,
        per_call * 1e6,
        loaded.as_secs_f64()
    );
    Ok(())
}

/// `WASM call (Rust example)`: the example component over the log lines in
/// calls of 10,000, after one warm-up call.
pub fn stage(wasm: &Path, logs: &[Record], logs_raw: usize) -> anyhow::Result<Stage> {
    let t = load(
        wasm.to_path_buf(),
        r#"{"env":"bench","drop_levels":[]}"#.into(),
        10_000,
    )?;
    let _ = t.run(&logs[..logs.len().min(10_000)]);
    let t0 = Instant::now();
    let outcomes = t.run(logs);
    let el = t0.elapsed();
    if outcomes.len() != logs.len() {
        bail!(
            "the transform answered {} of {} records",
            outcomes.len(),
            logs.len()
        );
    }
    Ok(measured(
        "WASM call (Rust example)",
        logs_raw,
        logs.len(),
        el,
        true,
    ))
}
