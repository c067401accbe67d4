//! Stage ceilings: each stage of delivery measured alone, on one core (disk
//! and the store as a whole), on the same generated data. One module per
//! stage; the `disk`, `stages` and `transform` subcommands live beside the
//! stage they measure.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::garage::Garage;
use crate::records::{LOG_BYTES, click_record, frames_of, log_record, small_record};

pub mod compress;
pub mod disk;
pub mod encodings;
pub mod encrypt;
pub mod floor;
pub mod ingest;
pub mod json;
pub mod parquet;
pub mod partition;
pub mod store;
pub mod transform;

/// One measured stage, alone on one core (disk and store: as a whole).
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    pub name: String,
    pub mb_per_sec: f64,
    pub records_per_sec: f64,
    /// Whether it scales with cores (CPU work) or not (disk, store).
    pub per_core: bool,
}

/// The stage that went through `n` records of `raw` bytes in `el`; printed
/// to stderr as it is measured.
fn measured(name: &str, raw: usize, n: usize, el: Duration, per_core: bool) -> Stage {
    let s = el.as_secs_f64().max(1e-9);
    let st = Stage {
        name: name.to_string(),
        mb_per_sec: raw as f64 / s / 1e6,
        records_per_sec: n as f64 / s,
        per_core,
    };
    eprintln!(
        "  stage {:<32} {:>9.1} MB/s {:>11.0} records/s",
        st.name, st.mb_per_sec, st.records_per_sec
    );
    st
}

/// One `encode_batch` of every frame with `opts`, timed.
fn encode_stage(
    name: &str,
    frames: &[hydrant::record::Record],
    raw: usize,
    opts: &hydrant::encode::EncodeOptions,
) -> anyhow::Result<Stage> {
    encoding_stage(name, frames.len(), raw, || {
        let out = hydrant::encode::encode_batch(frames, opts)?;
        let rejected = out.rejected.len();
        Ok((out, rejected))
    })
}

/// `encode` of `records` records (`raw` bytes) on one core, timed: it
/// returns its output, dropped after the clock stops, and how many records
/// it rejected, which must be none.
fn encoding_stage<T>(
    name: &str,
    records: usize,
    raw: usize,
    encode: impl FnOnce() -> anyhow::Result<(T, usize)>,
) -> anyhow::Result<Stage> {
    let t = Instant::now();
    let (out, rejected) = encode()?;
    let el = t.elapsed();
    drop(out);
    if rejected > 0 {
        bail!("{name}: {rejected} records rejected");
    }
    Ok(measured(name, raw, records, el, true))
}

/// Makes gzip compress a batch on the calling thread alone, as every stage
/// is measured on one core (the daemon uses `limits.gzip_threads_max`).
pub fn one_core() {
    hydrant::encode::gzip::GzipLimits {
        threads_max: 1,
        ..Default::default()
    }
    .set();
}

/// Every stage the suite's workloads go through, `n` records each (disk and
/// the store: for a time or an amount of their own), in the suite's order.
pub async fn ceilings(
    dir: &Path,
    garage: &Garage,
    wasm: &Path,
    n: usize,
) -> anyhow::Result<Vec<Stage>> {
    let mut out = Vec::new();
    out.push(disk::stage(dir, LOG_BYTES, log_record)?);
    out.push(disk::stage(dir, 300, click_record)?);
    out.push(disk::stage(dir, 100, small_record)?);

    one_core();
    let (logs, logs_raw) = frames_of(n, log_record);
    let (clicks, clicks_raw) = frames_of(n, click_record);
    let (small, small_raw) = frames_of(n, small_record);
    out.push(ingest::stage(ingest::PARSE_1K, &logs, logs_raw)?);
    out.push(ingest::stage(ingest::PARSE_300, &clicks, clicks_raw)?);
    out.extend(compress::stages(&logs, logs_raw, &small, small_raw)?);
    out.push(encrypt::stage(&logs, logs_raw)?);
    out.push(encrypt::seal_stage("1 KiB", &logs, logs_raw)?);
    out.push(encrypt::seal_stage("100 B", &small, small_raw)?);
    out.push(parquet::clickstream_stage(&clicks, clicks_raw)?);
    out.push(parquet::clickstream_general_stage(&clicks, clicks_raw)?);
    out.extend(parquet::partitioned_stages(&clicks, clicks_raw)?);
    out.push(json::stage(&clicks, clicks_raw)?);
    out.extend(partition::stages(&clicks, clicks_raw)?);
    out.push(transform::stage(wasm, &logs, logs_raw)?);
    out.push(store::stage(garage).await?);
    Ok(out)
}
