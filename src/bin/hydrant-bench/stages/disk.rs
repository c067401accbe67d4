//! The disk ceiling: appends frames in the log's own format and calls
//! `fdatasync` after each group, as the log writer does. `hydrant-bench
//! disk` on its own, and the suite's `append + fdatasync` stages.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hydrant::log::frame;

use super::Stage;
use crate::load::percentile;
use crate::records::json_record;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "/tmp/hydrant-bench")]
    dir: PathBuf,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value_t = 500)]
    records_per_sync: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
}

/// `hydrant-bench disk`: appends for `duration_secs` (at most 4 GiB), and
/// prints records/s, MB/s and the time of a write + sync.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        dir,
        record_bytes,
        records_per_sync: per_sync,
        duration_secs: secs,
    } = args;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("ceiling.seg");
    let mut f = std::fs::File::create(&path)?;
    let data = json_record(0, record_bytes);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut syncs = Vec::new();
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        buf.clear();
        for _ in 0..per_sync {
            frame::encode(&mut buf, offset, 0, b"", &data)?;
            offset += 1;
        }
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        syncs.push(t.elapsed());
        written += buf.len() as u64;
        if written > 4 << 30 {
            break;
        }
    }
    let el = start.elapsed().as_secs_f64();
    syncs.sort();
    println!(
        "| disk ceiling (append + fdatasync, {per_sync} x {record_bytes} B per sync) | {:.0} records/s | {:.1} MB/s | write+sync p50 {:.2} ms, p99 {:.2} ms |",
        offset as f64 / el,
        written as f64 / el / 1e6,
        percentile(&syncs, 0.5).as_secs_f64() * 1e3,
        percentile(&syncs, 0.99).as_secs_f64() * 1e3
    );
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Append + fdatasync with the log's frame format, 1,000 records per sync
/// (what group commit reaches under load), written as the log writes in
/// steady state: over a reused 64 MiB segment, from its start. The suite's
/// stage for records made by `make`, of about `record_bytes`.
pub fn stage(dir: &Path, record_bytes: usize, make: fn(usize) -> Vec<u8>) -> anyhow::Result<Stage> {
    const SEGMENT: u64 = 64 << 20;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("ceiling.seg");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..SEGMENT >> 20 {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    let data: Vec<Vec<u8>> = (0..1000).map(make).collect();
    let mut buf = Vec::new();
    let (mut offset, mut n, mut raw, mut at) = (0u64, 0usize, 0usize, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        buf.clear();
        for d in &data {
            frame::encode(&mut buf, offset, 0, b"", d)?;
            offset += 1;
            raw += d.len();
        }
        n += data.len();
        if at + buf.len() as u64 > SEGMENT {
            at = 0;
        }
        f.write_all_at(&buf, at)?;
        at += buf.len() as u64;
        f.sync_data()?;
    }
    let el = t.elapsed();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(super::measured(
        &format!(
            "append + fdatasync ({})",
            if record_bytes >= 1024 {
                "1 KiB".to_string()
            } else {
                format!("{record_bytes} B")
            }
        ),
        raw,
        n,
        el,
        false,
    ))
}
