//! `hydrant-bench ingest`: the real daemon under `PutRecordBatch` load from
//! closed-loop clients, file destination; records/s, MB/s, acknowledgement
//! latency, peak RSS, and a check that every acknowledged record arrived.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use crate::daemon::{bench_config, peak_rss_kib, start_daemon, stop};
use crate::files::count_lines;
use crate::load::{closed_loop, percentile, put_record_batch};
use crate::records::batch_body;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    #[arg(long, default_value = "/tmp/hydrant-bench")]
    dir: PathBuf,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value_t = 500)]
    records_per_batch: usize,
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    #[arg(long, default_value = "gzip")]
    compression: String,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// The stream's buffering size hint (Firehose SizeInMBs).
    #[arg(long, default_value_t = 5)]
    size_mb: u64,
}

/// Drives the daemon for `duration_secs`, stops it (SIGTERM flushes every
/// open batch), counts what arrived and prints the row.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        hydrant,
        dir,
        clients,
        record_bytes,
        records_per_batch: per_batch,
        duration_secs: secs,
        compression,
        shards,
        size_mb,
    } = args;
    let out = dir.join("out");
    let (port, cfg) = bench_config(
        &dir,
        &format!(
            "streams:\n  bench:\n    shards: {shards}\n    buffering: {{ size_mb: {size_mb}, interval_secs: 5 }}\n    compression: {compression}\n    destination: {{ type: file, path: {} }}\n",
            out.display()
        ),
    )?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let mut child = start_daemon(&hydrant, &cfg, &http, &url).await?;
    let body = batch_body(per_batch, record_bytes)?;
    let start = Instant::now();
    let (h, u) = (http.clone(), url.clone());
    let (mut lat, failed) = closed_loop(clients, secs, move |_, _| {
        let (http, url, body) = (h.clone(), u.clone(), body.clone());
        async move { put_record_batch(&http, &url, body).await }
    })
    .await?;
    let el = start.elapsed().as_secs_f64();
    lat.sort();
    let sent_records = lat.len() as u64 * per_batch as u64;
    let sent_bytes = sent_records * record_bytes as u64;
    // Drain: SIGTERM flushes every open batch; then count what arrived.
    let drain_start = Instant::now();
    let rss = peak_rss_kib(child.id());
    stop(&mut child)?;
    let drain = drain_start.elapsed();
    let rss_after = rss.unwrap_or(0);
    let delivered = count_lines(&out);
    println!(
        "| ingest: {clients} clients, PutRecordBatch {per_batch} x {record_bytes} B, {compression}, {shards} shards, {size_mb} MiB buffers | {:.0} records/s | {:.1} MB/s | ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | peak RSS {:.0} MiB | failed calls {failed} | delivered {delivered}/{sent_records} (drain {:.1} s) |",
        sent_records as f64 / el,
        sent_bytes as f64 / el / 1e6,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        rss_after as f64 / 1024.0,
        drain.as_secs_f64()
    );
    if delivered < sent_records {
        bail!("only {delivered} of {sent_records} acknowledged records were delivered");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
