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
//!   `GetRecords`, per shard and in total, beside Kinesis's per-shard figures.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Parser, Subcommand};
use hydrant::log::frame;

mod suite;

#[derive(Parser)]
#[command(about = "Hydrant benchmarks: ingest throughput and latency vs. the disk ceiling")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Raw append + fdatasync with the log's frame format.
    Disk {
        #[arg(long, default_value = "/tmp/hydrant-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        #[arg(long, default_value_t = 500)]
        records_per_sync: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
    },
    /// Ceilings of the encoding stages alone, on the same data: JSON lines
    /// with each compression, Parquet, and AES-256-GCM.
    Stages {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
    },
    /// Fills the log with undelivered records (the destination is down),
    /// SIGKILLs the daemon and times its restart until `/health` answers.
    Recovery {
        #[arg(long, default_value = "target/release/hydrant")]
        hydrant: PathBuf,
        #[arg(long, default_value = "/tmp/hydrant-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 1024)]
        log_mib: u64,
    },
    /// The real daemon delivering to the data lake: JSON lines or Parquet,
    /// optionally partitioned by two jq keys and encrypted. Ingests
    /// `records` distinct records as fast as it can, then times until the
    /// last one is delivered (the `delivery_records` metric).
    Lake {
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
    },
    /// A transform component alone: records/s through it in calls of
    /// `batch` records, and the cost of a call (one record per call).
    Transform {
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
    },
    /// Every workload (W1-W5) and every stage ceiling in one run, against a
    /// Garage started here and the local filesystem; prints the table and
    /// writes `bench/results/<date>-<machine>.json`.
    Suite {
        #[arg(long, default_value = "target/release/hydrant")]
        hydrant: PathBuf,
        /// The Garage binary (scripts/test.sh installs it in ~/.cargo/bin).
        #[arg(long)]
        garage: Option<PathBuf>,
        #[arg(long, default_value = "/tmp/hydrant-bench-suite")]
        dir: PathBuf,
        #[arg(long, default_value = "bench/results")]
        results: PathBuf,
        /// Seconds of the saturation phase.
        #[arg(long, default_value_t = 15)]
        secs: u64,
        /// Seconds of the half-load phase (latency, freshness).
        #[arg(long, default_value_t = 30)]
        half_secs: u64,
        /// Closed-loop producers at saturation.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Only these workloads (W1..W5); all by default.
        #[arg(long, value_delimiter = ',')]
        workloads: Vec<String>,
    },
    /// The Kinesis API: PutRecords records/s, then GetRecords MB/s per shard.
    Kinesis {
        #[arg(long, default_value = "target/release/hydrant")]
        hydrant: PathBuf,
        #[arg(long, default_value = "/tmp/hydrant-bench")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        shards: u32,
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        #[arg(long, default_value_t = 500)]
        records_per_call: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
    },
    /// The real daemon under PutRecordBatch load.
    Ingest {
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
    },
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A log line of about `bytes` bytes that compresses like real application
/// logs (varied words, ids and numbers), not like a repeated pattern.
fn json_record(i: usize, bytes: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "user",
        "order",
        "payment",
        "failed",
        "accepted",
        "retry",
        "cache",
        "miss",
        "hit",
        "upstream",
        "timeout",
        "request",
        "session",
        "token",
        "refresh",
        "checkout",
        "cart",
        "item",
        "added",
        "removed",
        "inventory",
        "warehouse",
        "shipment",
        "label",
        "printed",
        "queue",
        "latency",
        "slow",
        "db",
        "query",
    ];
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let levels = ["info", "warn", "error", "debug"];
    let services = [
        "checkout",
        "cart",
        "auth",
        "search",
        "payments",
        "inventory",
        "shipping",
        "profile",
    ];
    let head = format!(
        r#"{{"ts":"2026-11-24T12:{:02}:{:02}.{:03}Z","level":"{}","service":"{}","request_id":"{:016x}","latency_ms":{},"msg":""#,
        next() % 60,
        next() % 60,
        next() % 1000,
        levels[(next() % 4) as usize],
        services[(next() % 8) as usize],
        next(),
        next() % 5000
    );
    let mut s = head.into_bytes();
    while s.len() + 3 < bytes {
        let w = WORDS[(next() % WORDS.len() as u64) as usize];
        s.extend_from_slice(w.as_bytes());
        s.push(b' ');
        if next() % 5 == 0 {
            s.extend_from_slice(format!("{} ", next() % 100_000).as_bytes());
        }
    }
    s.truncate(
        bytes
            .saturating_sub(3)
            .max(s.len().min(bytes.saturating_sub(3))),
    );
    s.extend_from_slice(b"\"}\n");
    s
}

fn disk(dir: PathBuf, record_bytes: usize, per_sync: usize, secs: u64) -> anyhow::Result<()> {
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

/// A fresh bench directory and a config there listening on a free port:
/// returns (port, config path). `body` follows `listen` and `data_dir`.
fn bench_config(dir: &std::path::Path, body: &str) -> anyhow::Result<(u16, PathBuf)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let cfg = dir.join("bench.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{body}",
            dir.join("data").display()
        ),
    )?;
    Ok((port, cfg))
}

/// A loopback port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A PutRecordBatch body of `n` JSON records of about `bytes` each.
fn batch_body(n: usize, bytes: usize) -> anyhow::Result<bytes::Bytes> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "Data": b64.encode(json_record(i, bytes)) }))
        .collect();
    Ok(bytes::Bytes::from(serde_json::to_vec(
        &serde_json::json!({ "DeliveryStreamName": "bench", "Records": records }),
    )?))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn count_lines(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            n += count_lines(&p);
        } else if let Ok(bytes) = std::fs::read(&p) {
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            let mut text = Vec::new();
            let decoded = match ext {
                "gz" => std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&bytes[..]),
                    &mut text,
                )
                .map(|_| ()),
                "zst" => zstd::stream::copy_decode(&bytes[..], &mut text),
                "snappy" => std::io::Read::read_to_end(
                    &mut snap::read::FrameDecoder::new(&bytes[..]),
                    &mut text,
                )
                .map(|_| ()),
                _ => {
                    text = bytes;
                    Ok(())
                }
            };
            if decoded.is_err() {
                continue;
            }
            n += text.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
    n
}

#[allow(clippy::too_many_arguments)]
async fn ingest(
    hydrant: PathBuf,
    dir: PathBuf,
    clients: usize,
    record_bytes: usize,
    per_batch: usize,
    secs: u64,
    compression: String,
    shards: u32,
    size_mb: u64,
) -> anyhow::Result<()> {
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
        async move {
            let r = http
                .post(&url)
                .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
                .header("Content-Type", "application/x-amz-json-1.1")
                .body(body)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => resp
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["FailedPutCount"].as_u64() == Some(0)),
                _ => false,
            }
        }
    })
    .await?;
    let el = start.elapsed().as_secs_f64();
    lat.sort();
    let sent_records = lat.len() as u64 * per_batch as u64;
    let sent_bytes = sent_records * record_bytes as u64;
    // Drain: SIGTERM flushes every open batch; then count what arrived.
    let drain_start = Instant::now();
    let rss = peak_rss_kib(child.id());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait()?;
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

/// One Kinesis API call; the reply's JSON, or an error with its body.
async fn kinesis_call(
    http: &reqwest::Client,
    url: &str,
    op: &str,
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<serde_json::Value> {
    let resp = http
        .post(url)
        .header("X-Amz-Target", format!("Kinesis_20131202.{op}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        bail!("{op}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecordsOut {
    records: Vec<GetRecord>,
    next_shard_iterator: String,
    millis_behind_latest: u64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecord {
    data: String,
}

#[allow(clippy::too_many_arguments)]
async fn kinesis(
    hydrant: PathBuf,
    dir: PathBuf,
    clients: usize,
    shards: u32,
    record_bytes: usize,
    per_call: usize,
    secs: u64,
) -> anyhow::Result<()> {
    use serde_json::json;
    let (port, cfg) = bench_config(&dir, "streams: {}\n")?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let mut child = start_daemon(&hydrant, &cfg, &http, &url).await?;
    kinesis_call(
        &http,
        &url,
        "CreateStream",
        json!({ "StreamName": "bench", "ShardCount": shards }).to_string(),
    )
    .await?;
    // A few bodies with different partition keys, so every shard gets records.
    let b64 = base64::engine::general_purpose::STANDARD;
    let bodies: Vec<bytes::Bytes> = (0..16)
        .map(|b| {
            let records: Vec<serde_json::Value> = (0..per_call)
                .map(|i| {
                    json!({
                        "Data": b64.encode(json_record(b * per_call + i, record_bytes)),
                        "PartitionKey": format!("key-{b}-{i}"),
                    })
                })
                .collect();
            bytes::Bytes::from(json!({ "StreamName": "bench", "Records": records }).to_string())
        })
        .collect();
    let start = Instant::now();
    let (h, u, bodies) = (http.clone(), url.clone(), Arc::new(bodies));
    let (mut lat, failed) = closed_loop(clients, secs, move |c, n| {
        let (http, url) = (h.clone(), u.clone());
        let body = bodies[(c + n) % bodies.len()].clone();
        async move {
            kinesis_call(&http, &url, "PutRecords", body)
                .await
                .is_ok_and(|v| v["FailedRecordCount"].as_u64() == Some(0))
        }
    })
    .await?;
    let put_secs = start.elapsed().as_secs_f64();
    lat.sort();
    let put_records = lat.len() as u64 * per_call as u64;
    let put_mib = (put_records * record_bytes as u64) as f64 / (1 << 20) as f64;

    // Every shard read back from TRIM_HORIZON at once, one consumer each.
    let read_start = Instant::now();
    let mut readers = Vec::new();
    for shard in 0..shards {
        let (http, url) = (http.clone(), url.clone());
        readers.push(tokio::spawn(async move {
            let it = kinesis_call(
                &http,
                &url,
                "GetShardIterator",
                json!({ "StreamName": "bench", "ShardId": format!("shardId-{shard:012}"), "ShardIteratorType": "TRIM_HORIZON" }).to_string(),
            )
            .await?;
            let mut it = it["ShardIterator"].as_str().unwrap_or_default().to_string();
            let (mut records, mut bytes, mut calls) = (0u64, 0u64, Vec::new());
            let t0 = Instant::now();
            loop {
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("X-Amz-Target", "Kinesis_20131202.GetRecords")
                    .header("Content-Type", "application/x-amz-json-1.1")
                    .body(json!({ "ShardIterator": it, "Limit": 10_000 }).to_string())
                    .send()
                    .await?
                    .bytes()
                    .await?;
                let out: GetRecordsOut = serde_json::from_slice(&resp)
                    .with_context(|| String::from_utf8_lossy(&resp[..resp.len().min(300)]).to_string())?;
                calls.push(t.elapsed());
                records += out.records.len() as u64;
                bytes += out.records.iter().map(|r| r.data.len() as u64 * 3 / 4).sum::<u64>();
                it = out.next_shard_iterator;
                if out.records.is_empty() && out.millis_behind_latest == 0 {
                    break;
                }
            }
            Ok::<_, anyhow::Error>((records, bytes, t0.elapsed(), calls))
        }));
    }
    let mut got_records = 0;
    let mut got_bytes = 0;
    let mut per_shard = Vec::new();
    let mut calls = Vec::new();
    for r in readers {
        let (n, b, el, c) = r.await??;
        got_records += n;
        got_bytes += b;
        per_shard.push(b as f64 / (1 << 20) as f64 / el.as_secs_f64());
        calls.extend(c);
    }
    let read_secs = read_start.elapsed().as_secs_f64();
    calls.sort();
    let rss = peak_rss_kib(child.id()).unwrap_or(0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait()?;
    println!(
        "| kinesis PutRecords: {clients} clients x {per_call} x {record_bytes} B, {shards} shards | {:.0} records/s ({:.0}/shard) | {:.1} MiB/s ({:.1}/shard; Kinesis: 1 MiB/s, 1,000 records/s per shard) | ack p50 {:.2} ms, p99 {:.2} ms | failed calls {failed} |",
        put_records as f64 / put_secs,
        put_records as f64 / put_secs / shards as f64,
        put_mib / put_secs,
        put_mib / put_secs / shards as f64,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "| kinesis GetRecords: {shards} consumers from TRIM_HORIZON, Limit 10,000 | {:.0} records/s | {:.1} MiB/s in all, per shard {} MiB/s (Kinesis: 2 MiB/s per shard) | call p50 {:.1} ms, p99 {:.1} ms | peak RSS {:.0} MiB |",
        got_records as f64 / read_secs,
        got_bytes as f64 / (1 << 20) as f64 / read_secs,
        per_shard
            .iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join("/"),
        percentile(&calls, 0.5).as_secs_f64() * 1e3,
        percentile(&calls, 0.99).as_secs_f64() * 1e3,
        rss as f64 / 1024.0,
    );
    if got_records != put_records {
        bail!("read back {got_records} records of {put_records} acknowledged");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `clients` closed-loop producers for `secs`: each awaits `call(client, n)`
/// (true: acknowledged) and sends the next. The acknowledged calls' latencies
/// and the number that failed.
async fn closed_loop<F, Fut>(
    clients: usize,
    secs: u64,
    call: F,
) -> anyhow::Result<(Vec<Duration>, u64)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (call, stop) = (call.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut failed, mut n) = (Vec::new(), 0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if call(c, n).await {
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                }
                n += 1;
            }
            (lat, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    Ok((lat, failed))
}

/// Starts the daemon on a bench config and waits until it answers `/health`.
async fn start_daemon(
    hydrant: &std::path::Path,
    cfg: &std::path::Path,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<std::process::Child> {
    let mut child = Command::new(hydrant)
        .args(["run", "-c"])
        .arg(cfg)
        // HYDRANT_BENCH_DAEMON_LOG=info,hydrant=debug shows the daemon's logs.
        .env(
            "HYDRANT_LOG",
            std::env::var("HYDRANT_BENCH_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                hydrant.display()
            )
        })?;
    if let Err(e) = wait_healthy(http, url, &mut child).await {
        let _ = child.kill();
        return Err(e);
    }
    Ok(child)
}

/// Files and bytes under a directory.
fn dir_stats(dir: &std::path::Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_stats(&p)
            } else {
                (1, e.metadata().map(|m| m.len()).unwrap_or(0))
            }
        })
        .fold((0, 0), |(f, b), (f2, b2)| (f + f2, b + b2))
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    dir_stats(dir).1
}

async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    child: &mut std::process::Child,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while !http
        .get(format!("{url}health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if let Some(status) = child.try_wait()? {
            bail!("the daemon exited with {status}");
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the daemon did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed())
}

async fn recovery(hydrant: PathBuf, dir: PathBuf, log_mib: u64) -> anyhow::Result<()> {
    let data = dir.join("data");
    // The destination is a closed port: nothing is delivered, the log only grows.
    let (port, cfg) = bench_config(
        &dir,
        &format!(
            "log: {{ disk_quota_bytes: {} }}\nstreams:\n  bench:\n    shards: 4\n    destination: {{ type: s3, bucket: nowhere, endpoint: 'http://127.0.0.1:9' }}\n",
            (log_mib + 512) << 20
        ),
    )?;
    let spawn = || {
        Command::new(&hydrant)
            .args(["run", "-c"])
            .arg(&cfg)
            .env("HYDRANT_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let mut child = spawn().with_context(|| format!("cannot start {}", hydrant.display()))?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    wait_healthy(&http, &url, &mut child).await?;
    let body = batch_body(500, 1024)?;
    let target = log_mib << 20;
    let fill = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, body, data) = (http.clone(), url.clone(), body.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            while dir_bytes(&data) < target {
                for _ in 0..20 {
                    let _ = http
                        .post(&url)
                        .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
                        .header("Content-Type", "application/x-amz-json-1.1")
                        .body(body.clone())
                        .send()
                        .await;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let filled = dir_bytes(&data);
    child.kill()?;
    child.wait()?;
    let mut child = spawn()?;
    let took = wait_healthy(&http, &url, &mut child).await?;
    println!(
        "| recovery after SIGKILL with {:.0} MiB of undelivered log (filled in {:.1} s) | healthy and accepting after {:.0} ms |",
        filled as f64 / 1048576.0,
        fill.elapsed().as_secs_f64(),
        took.as_secs_f64() * 1e3
    );
    child.kill()?;
    child.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `n` generated records as log frames (offsets 0..n), and their total bytes.
fn frames_of(n: usize, make: impl Fn(usize) -> Vec<u8>) -> (Vec<hydrant::record::Record>, usize) {
    let frames: Vec<hydrant::record::Record> = (0..n)
        .map(|i| hydrant::record::Record {
            offset: i as u64,
            arrival_ms: 1_764_000_000_000,
            key: bytes::Bytes::new(),
            data: bytes::Bytes::from(make(i)),
        })
        .collect();
    let raw = frames.iter().map(|f| f.data.len()).sum();
    (frames, raw)
}

/// The partitioner of a stream partitioned by `keys` (YAML map of name to jq)
/// under `prefix`, as the daemon builds it from a config.
fn partitioner(
    keys: &str,
    prefix: &str,
) -> anyhow::Result<std::sync::Arc<hydrant::route::partition::Partitioner>> {
    let cfg = hydrant::config::parse(&format!(
        "streams:\n  s:\n    dynamic_partitioning: {{ keys: {keys} }}\n    destination: {{ type: file, path: /tmp/x, prefix: \"{prefix}\", error_output_prefix: \"e/!{{firehose:error-output-type}}/\" }}\n"
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.streams["s"]
        .partitioning
        .clone()
        .context("partitioning")
}

fn stages(n: usize, record_bytes: usize) -> anyhow::Result<()> {
    use hydrant::encode::encrypt::Encryption;
    use hydrant::encode::{Compression, Encoding};
    use hydrant::encode::{EncodeOptions, encode_batch, encrypt::SecretKey, parquet};
    let (frames, raw) = frames_of(n, |i| json_record(i, record_bytes));
    let lines = Encoding::JsonLines {
        delimiter: b"\n".to_vec(),
    };
    let key = Some(Encryption {
        keys: vec![("bench".into(), SecretKey([9; 32]))],
        chunk_bytes: 64 << 10,
    });
    let pq = Encoding::Parquet(parquet::ParquetOptions {
        schema: parquet::schema(&[
            ("ts".into(), arrow_schema::DataType::Utf8, true),
            ("level".into(), arrow_schema::DataType::Utf8, true),
            ("service".into(), arrow_schema::DataType::Utf8, true),
            ("request_id".into(), arrow_schema::DataType::Utf8, true),
            ("msg".into(), arrow_schema::DataType::Utf8, true),
        ]),
        row_group_rows: 1_000_000,
        compression: "zstd".into(),
        dictionary: true,
    });
    let cases: Vec<(&str, Encoding, Compression, Option<Encryption>)> = vec![
        ("JSON lines, none", lines.clone(), Compression::None, None),
        (
            "JSON lines, gzip (level 6)",
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
    ];
    println!(
        "| stage alone, one core, {n} records of {record_bytes} B ({:.0} MB) | MB/s of input | records/s | output/input |",
        raw as f64 / 1e6
    );
    println!("|---|---|---|---|");
    for (name, encoding, compression, encryption) in cases {
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
    let part = partitioner(
        "{ service: .service, level: .level }",
        "service=!{partitionKeyFromQuery:service}/level=!{partitionKeyFromQuery:level}/!{timestamp:yyyy/MM/dd}/",
    )?;
    let mut scratch = hydrant::route::partition::RouteScratch::default();
    let t = Instant::now();
    let mut prefixes = std::collections::HashSet::new();
    for f in &frames {
        match part.route(f, &[], &mut scratch) {
            Ok(p) => {
                prefixes.insert(p);
            }
            Err(e) => bail!("partitioning failed: {e}"),
        }
    }
    let el = t.elapsed().as_secs_f64();
    println!(
        "| dynamic partitioning, 2 jq keys ({} partitions) | {:.0} | {:.0} | - |",
        prefixes.len(),
        raw as f64 / el / 1e6,
        n as f64 / el
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn lake(
    hydrant: PathBuf,
    dir: PathBuf,
    format: String,
    partitioned: bool,
    encrypt: bool,
    transform: Option<PathBuf>,
    records: usize,
    record_bytes: usize,
    shards: u32,
) -> anyhow::Result<()> {
    let encoding = match format.as_str() {
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
    let key_file = dir.join("lake.key");
    let mut extra = String::new();
    if encrypt {
        extra += &format!(
            "    encryption:\n      keys: [{{ id: bench, file: {} }}]\n",
            key_file.display()
        );
    }
    if let Some(t) = &transform {
        extra += &format!(
            "    transform: {{ wasm: {}, config: '{{\"env\":\"bench\",\"drop_levels\":[]}}' }}\n",
            std::fs::canonicalize(t)?.display()
        );
    }
    let mut prefix = "lake/".to_string();
    if partitioned {
        extra += "    dynamic_partitioning:\n      keys: { service: .service, level: .level }\n";
        prefix = "lake/service=!{partitionKeyFromQuery:service}/level=!{partitionKeyFromQuery:level}/!{timestamp:yyyy/MM/dd}/".into();
    }
    let out = dir.join("out");
    let (port, cfg) = bench_config(
        &dir,
        &format!(
            "streams:\n  bench:\n    shards: {shards}\n    buffering: {{ size_mb: 8, interval_secs: 1 }}\n{encoding}{extra}    destination: {{ type: file, path: {}, prefix: \"{prefix}\", error_output_prefix: \"errors/!{{firehose:error-output-type}}/\" }}\n",
            out.display()
        ),
    )?;
    std::fs::write(&key_file, [7u8; 32])?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let mut child = start_daemon(&hydrant, &cfg, &http, &url).await?;
    // Distinct records throughout, so compressors see realistic data.
    let per_batch = 500;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw_bytes = 0u64;
    let mut bodies = Vec::new();
    for start in (0..records).step_by(per_batch) {
        let recs: Vec<serde_json::Value> = (start..(start + per_batch).min(records))
            .map(|i| {
                let r = json_record(i, record_bytes);
                raw_bytes += r.len() as u64;
                serde_json::json!({ "Data": b64.encode(r) })
            })
            .collect();
        bodies.push(bytes::Bytes::from(serde_json::to_vec(
            &serde_json::json!({ "DeliveryStreamName": "bench", "Records": recs }),
        )?));
    }
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, bodies, next) = (http.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                loop {
                    let r = http
                        .post(&url)
                        .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
                        .header("Content-Type", "application/x-amz-json-1.1")
                        .body(body.clone())
                        .send()
                        .await;
                    let ok = match r {
                        Ok(resp) if resp.status().is_success() => resp
                            .json::<serde_json::Value>()
                            .await
                            .is_ok_and(|v| v["FailedPutCount"].as_u64() == Some(0)),
                        _ => false,
                    };
                    if ok {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let ingested = start.elapsed();
    // Sums the series of `name` whose labels contain `labels`.
    let metric = |text: &str, name: &str, labels: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (delivered, errors) = loop {
        let text = http
            .get(format!("{url}metrics"))
            .send()
            .await?
            .text()
            .await?;
        let d = metric(&text, "hydrant_delivery_records_total", "");
        let e = metric(&text, "hydrant_error_output_records_total", "");
        let dropped = metric(
            &text,
            "hydrant_transform_records_total",
            "outcome=\"dropped\"",
        );
        if d + e + dropped >= records as f64 {
            break (d, e);
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("only {d} of {records} delivered after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let el = start.elapsed().as_secs_f64();
    let rss = peak_rss_kib(child.id()).unwrap_or(0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait()?;
    let (objects, written) = dir_stats(&out.join("lake"));
    println!(
        "| {format}{}{}{} | {records} x {record_bytes} B, {shards} shards | {:.0} records/s | {:.1} MB/s | ingest done at {:.1} s, all delivered at {:.1} s | {objects} objects, output/input {:.3} | peak RSS {:.0} MiB | delivered {}, error output {} |",
        if partitioned {
            ", partitioned by 2 keys"
        } else {
            ""
        },
        if encrypt { ", AES-256-GCM" } else { "" },
        match &transform {
            Some(t) => format!(", transform {}", t.display()),
            None => String::new(),
        },
        records as f64 / el,
        raw_bytes as f64 / el / 1e6,
        ingested.as_secs_f64(),
        el,
        written as f64 / raw_bytes as f64,
        rss as f64 / 1024.0,
        delivered as u64,
        errors as u64,
    );
    Ok(())
}

fn transform_bench(
    wasm: PathBuf,
    n: usize,
    record_bytes: usize,
    batch: usize,
    config: String,
) -> anyhow::Result<()> {
    use hydrant::transform::{Outcome, Transform, TransformConfig};
    let (frames, raw) = frames_of(n, |i| json_record(i, record_bytes));
    let t0 = Instant::now();
    let t = Transform::load(
        TransformConfig {
            wasm: wasm.clone(),
            config,
            batch_records_max: batch,
            batch_bytes_max: 64 << 20,
            timeout: Duration::from_secs(300),
            memory_bytes_max: 2 << 30,
            instances_max: 1,
        },
        None,
    )?;
    let load = t0.elapsed();
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
        load.as_secs_f64()
    );
    Ok(())
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Disk {
            dir,
            record_bytes,
            records_per_sync,
            duration_secs,
        } => disk(dir, record_bytes, records_per_sync, duration_secs),
        Cmd::Stages {
            records,
            record_bytes,
        } => stages(records, record_bytes),
        Cmd::Recovery {
            hydrant,
            dir,
            log_mib,
        } => tokio::runtime::Runtime::new()?.block_on(recovery(hydrant, dir, log_mib)),
        Cmd::Transform {
            wasm,
            records,
            record_bytes,
            batch,
            config,
        } => transform_bench(wasm, records, record_bytes, batch, config),
        Cmd::Lake {
            hydrant,
            dir,
            format,
            partitioned,
            encrypt,
            transform,
            records,
            record_bytes,
            shards,
        } => tokio::runtime::Runtime::new()?.block_on(lake(
            hydrant,
            dir,
            format,
            partitioned,
            encrypt,
            transform,
            records,
            record_bytes,
            shards,
        )),
        Cmd::Suite {
            hydrant,
            garage,
            dir,
            results,
            secs,
            half_secs,
            clients,
            workloads,
        } => {
            let garage = garage
                .or_else(|| which("garage"))
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/garage"))
                })
                .unwrap_or_else(|| PathBuf::from("garage"));
            tokio::runtime::Runtime::new()?.block_on(suite::run(suite::Args {
                hydrant,
                garage,
                dir,
                results,
                secs,
                half_secs,
                clients,
                workloads,
            }))
        }
        Cmd::Kinesis {
            hydrant,
            dir,
            clients,
            shards,
            record_bytes,
            records_per_call,
            duration_secs,
        } => tokio::runtime::Runtime::new()?.block_on(kinesis(
            hydrant,
            dir,
            clients,
            shards,
            record_bytes,
            records_per_call,
            duration_secs,
        )),
        Cmd::Ingest {
            hydrant,
            dir,
            clients,
            record_bytes,
            records_per_batch,
            duration_secs,
            compression,
            shards,
            size_mb,
        } => tokio::runtime::Runtime::new()?.block_on(ingest(
            hydrant,
            dir,
            clients,
            record_bytes,
            records_per_batch,
            duration_secs,
            compression,
            shards,
            size_mb,
        )),
    }
}
