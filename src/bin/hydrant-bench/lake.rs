//! `hydrant-bench lake`: the real daemon delivering to the data lake (file
//! destination): JSON lines or Parquet, optionally partitioned by two jq
//! keys, encrypted and transformed. Ingests distinct records as fast as it
//! can, then times until the last one is delivered (the `delivery_records`
//! metric).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::daemon::{bench_config, peak_rss_kib, start_daemon, stop};
use crate::files::dir_stats;
use crate::load::put_record_batch;
use crate::metrics::{metrics_text, sum};
use crate::records::{json_record, put_record_batch_body};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    #[arg(long, default_value = "/tmp/hydrant-bench")]
    dir: PathBuf,
    /// json-gzip | json-zstd | parquet-zstd
    #[arg(long, default_value = "json-zstd")]
    format: String,
    /// Partition by `.service` and `.level` (32 partitions per shard).
    #[arg(long)]
    partitioned: bool,
    /// AES-256-GCM.
    #[arg(long)]
    encrypt: bool,
    /// A transform component to run on every record (its config:
    /// `{"env":"bench","drop_levels":[]}`).
    #[arg(long)]
    transform: Option<PathBuf>,
    #[arg(long, default_value_t = 400_000)]
    records: usize,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value_t = 4)]
    shards: u32,
}

/// What the run measured, for the table row.
struct Measured {
    raw_bytes: u64,
    ingested: Duration,
    el: f64,
    rss: u64,
    objects: u64,
    written: u64,
    delivered: f64,
    errors: f64,
}

/// Ingests every record, waits until all are delivered and prints the row.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = &args.dir;
    let key_file = dir.join("lake.key");
    let out = dir.join("out");
    let stream = stream_yaml(&args, &key_file, &out)?;
    let (port, cfg) = bench_config(dir, &stream)?;
    std::fs::write(&key_file, [7u8; 32])?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let mut child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    let (bodies, raw_bytes) = bodies(args.records, args.record_bytes)?;
    let bodies = Arc::new(bodies);
    let start = Instant::now();
    put_all(&http, &url, bodies).await?;
    let ingested = start.elapsed();
    let (delivered, errors) = wait_all_delivered(&http, &url, args.records, start).await?;
    let el = start.elapsed().as_secs_f64();
    let rss = peak_rss_kib(child.id()).unwrap_or(0);
    stop(&mut child)?;
    let (objects, written) = dir_stats(&out.join("lake"));
    print(
        &args,
        &Measured {
            raw_bytes,
            ingested,
            el,
            rss,
            objects,
            written,
            delivered,
            errors,
        },
    );
    Ok(())
}

/// The `streams:` part of the config: the format, the options asked for, and
/// a file destination under `out`.
fn stream_yaml(args: &Args, key_file: &Path, out: &Path) -> anyhow::Result<String> {
    let encoding = match args.format.as_str() {
        "json-gzip" => "    compression: gzip\n".to_string(),
        "json-zstd" => "    compression: zstd\n".to_string(),
        "parquet-zstd" => {
            "    encoding:\n      format: parquet\n      compression: zstd\n      schema:\n"
                .to_string()
                + &["ts", "level", "service", "request_id", "msg"]
                    .map(|c| format!("        - {{ name: {c}, type: string }}\n"))
                    .concat()
                + "        - { name: latency_ms, type: int64 }\n"
        }
        other => bail!("--format {other}: json-gzip, json-zstd or parquet-zstd"),
    };
    let mut extra = String::new();
    if args.encrypt {
        extra += &format!(
            "    encryption:\n      keys: [{{ id: bench, file: {} }}]\n",
            key_file.display()
        );
    }
    if let Some(t) = &args.transform {
        extra += &format!(
            "    transform: {{ wasm: {}, config: '{{\"env\":\"bench\",\"drop_levels\":[]}}' }}\n",
            std::fs::canonicalize(t)?.display()
        );
    }
    let mut prefix = "lake/".to_string();
    if args.partitioned {
        extra += "    dynamic_partitioning:\n      keys: { service: .service, level: .level }\n";
        prefix = "lake/service=!{partitionKeyFromQuery:service}/level=!{partitionKeyFromQuery:level}/!{timestamp:yyyy/MM/dd}/".into();
    }
    let shards = args.shards;
    Ok(format!(
        "streams:\n  bench:\n    shards: {shards}\n    buffering: {{ size_mb: 8, interval_secs: 1 }}\n{encoding}{extra}    destination: {{ type: file, path: {}, prefix: \"{prefix}\", error_output_prefix: \"errors/!{{firehose:error-output-type}}/\" }}\n",
        out.display()
    ))
}

/// `PutRecordBatch` bodies of 500 records, distinct records throughout so
/// compressors see realistic data; and the records' total bytes.
fn bodies(records: usize, record_bytes: usize) -> anyhow::Result<(Vec<bytes::Bytes>, u64)> {
    let per_batch = 500;
    let mut raw_bytes = 0u64;
    let mut bodies = Vec::new();
    for start in (0..records).step_by(per_batch) {
        let recs: Vec<Vec<u8>> = (start..(start + per_batch).min(records))
            .map(|i| json_record(i, record_bytes))
            .collect();
        raw_bytes += recs.iter().map(|r| r.len() as u64).sum::<u64>();
        bodies.push(bytes::Bytes::from(put_record_batch_body(&recs)?));
    }
    Ok((bodies, raw_bytes))
}

/// Sends every body once from 4 clients, each retrying a call until it is
/// accepted in full.
async fn put_all(
    http: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, bodies, next) =
            (http.clone(), url.to_string(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                while !put_record_batch(&http, &url, body.clone()).await {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Polls the metrics until every record is delivered, sent to error output
/// or dropped by the transform: (delivered, error output).
async fn wait_all_delivered(
    http: &reqwest::Client,
    url: &str,
    records: usize,
    start: Instant,
) -> anyhow::Result<(f64, f64)> {
    loop {
        let text = metrics_text(http, url).await?;
        let d = sum(&text, "hydrant_delivery_records_total", "");
        let e = sum(&text, "hydrant_error_output_records_total", "");
        let dropped = sum(
            &text,
            "hydrant_transform_records_total",
            "outcome=\"dropped\"",
        );
        if d + e + dropped >= records as f64 {
            return Ok((d, e));
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("only {d} of {records} delivered after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The table row.
fn print(args: &Args, m: &Measured) {
    let Args {
        format,
        partitioned,
        encrypt,
        transform,
        records,
        record_bytes,
        shards,
        ..
    } = args;
    let objects = m.objects;
    println!(
        "| {format}{}{}{} | {records} x {record_bytes} B, {shards} shards | {:.0} records/s | {:.1} MB/s | ingest done at {:.1} s, all delivered at {:.1} s | {objects} objects, output/input {:.3} | peak RSS {:.0} MiB | delivered {}, error output {} |",
        if *partitioned {
            ", partitioned by 2 keys"
        } else {
            ""
        },
        if *encrypt { ", AES-256-GCM" } else { "" },
        match transform {
            Some(t) => format!(", transform {}", t.display()),
            None => String::new(),
        },
        *records as f64 / m.el,
        m.raw_bytes as f64 / m.el / 1e6,
        m.ingested.as_secs_f64(),
        m.el,
        m.written as f64 / m.raw_bytes as f64,
        m.rss as f64 / 1024.0,
        m.delivered as u64,
        m.errors as u64,
    );
}
