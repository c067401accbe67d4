//! `hydrant-bench kinesis`: the Kinesis Data Streams API, each measurement
//! against a daemon of its own (`--measure`):
//!
//! * `records`: `PutRecords` from closed-loop clients with distinct partition
//!   keys, then every shard read back from `TRIM_HORIZON` with `GetRecords`,
//!   one consumer per shard at once; per shard and in total, beside
//!   Kinesis's per-shard figures;
//! * `fan-out`: enhanced fan-out's latency, put acknowledged to
//!   `SubscribeToShard` event received, with 1, 5 and 20 subscribers on one
//!   shard ([`fanout`]);
//! * `split`: what a `SplitShard` costs producers under load ([`split`]).

mod fanout;
mod split;
mod subscriber;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::json;

use crate::daemon::{bench_config, cpu_seconds, peak_rss_kib, settle, start_daemon, stop};
use crate::load::{closed_loop, json_reply, percentile};
use crate::records::json_record;

/// What `hydrant-bench kinesis` measures.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Measure {
    /// PutRecords throughput, then GetRecords read-back.
    Records,
    /// Enhanced fan-out: put acknowledged to SubscribeToShard event.
    FanOut,
    /// A SplitShard under PutRecords load.
    Split,
}

#[derive(clap::Args)]
pub struct Args {
    /// The daemon binary.
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    /// Scratch directory for the daemon's config and data (removed first).
    #[arg(long, default_value = "/tmp/hydrant-bench")]
    dir: PathBuf,
    /// What to measure, comma-separated; each runs against a daemon of its own.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "records,fan-out,split"
    )]
    measure: Vec<Measure>,
    /// Closed-loop PutRecords clients (records and split).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Shards of the stream (records and split; fan-out uses one).
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Bytes of each record's data (records and split).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records in each PutRecords call (records and split).
    #[arg(long, default_value_t = 500)]
    records_per_call: usize,
    /// Seconds of PutRecords before the read-back (records).
    #[arg(long, default_value_t = 20)]
    duration_secs: u64,
    /// Put and read back in CBOR, as the AWS SDK for Java (and so the KCL)
    /// does, instead of JSON (records).
    #[arg(long)]
    cbor: bool,
    #[command(flatten)]
    fanout: fanout::Args,
    #[command(flatten)]
    split: split::Args,
}

/// One Kinesis API call; the reply's JSON, or an error with its body.
pub async fn kinesis_call(
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
    json_reply(op, resp).await
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

/// What the `PutRecords` phase measured.
struct Put {
    /// Acknowledged calls' latencies, sorted.
    lat: Vec<Duration>,
    failed: u64,
    records: u64,
    mib: f64,
    secs: f64,
    /// The daemon's CPU seconds over the phase.
    daemon_cpu: f64,
}

/// What one shard's consumer read: records, bytes (decoded), how long it
/// took, and each `GetRecords` call's time.
type ShardRead = (u64, u64, Duration, Vec<Duration>);

/// What the `GetRecords` phase measured, over every shard.
struct Read {
    records: u64,
    bytes: u64,
    /// MiB/s of each shard's consumer.
    per_shard: Vec<f64>,
    /// Every `GetRecords` call's time, sorted.
    calls: Vec<Duration>,
    secs: f64,
    /// CPU seconds the daemon spent while it was read.
    daemon_cpu: f64,
}

/// Runs each measurement asked for, in turn.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.measure.contains(&Measure::Records) {
        records(&args).await?;
        settle(&args.dir).await;
    }
    if args.measure.contains(&Measure::FanOut) {
        fanout::run(&args).await?;
        settle(&args.dir).await;
    }
    if args.measure.contains(&Measure::Split) {
        split::run(&args).await?;
        settle(&args.dir).await;
    }
    Ok(())
}

/// Creates the stream, puts, reads every shard back, prints the two rows
/// and checks that every acknowledged record was read.
async fn records(args: &Args) -> anyhow::Result<()> {
    let (port, cfg) = bench_config(&args.dir, "streams: {}\n")?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let mut child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    kinesis_call(
        &http,
        &url,
        "CreateStream",
        json!({ "StreamName": "bench", "ShardCount": args.shards }).to_string(),
    )
    .await?;
    let cpu_before = cpu_seconds(child.id());
    let mut put = put_phase(args, &http, &url).await?;
    put.daemon_cpu = cpu_seconds(child.id()) - cpu_before;
    let cpu_before = cpu_seconds(child.id());
    let mut read = read_phase(args.shards, args.cbor, &http, &url).await?;
    read.daemon_cpu = cpu_seconds(child.id()) - cpu_before;
    let rss = peak_rss_kib(child.id()).unwrap_or(0);
    stop(&mut child)?;
    print(args, &put, &read, rss);
    let (got_records, put_records) = (read.records, put.records);
    if got_records != put_records {
        bail!("read back {got_records} records of {put_records} acknowledged");
    }
    Ok(())
}

/// A few `PutRecords` bodies for `stream`, `per_call` records of
/// `record_bytes` each, with different partition keys so that every shard
/// gets records.
pub fn put_bodies(stream: &str, per_call: usize, record_bytes: usize) -> Vec<bytes::Bytes> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..16)
        .map(|b| {
            let records: Vec<serde_json::Value> = (0..per_call)
                .map(|i| {
                    json!({
                        "Data": b64.encode(json_record(b * per_call + i, record_bytes)),
                        "PartitionKey": format!("key-{b}-{i}"),
                    })
                })
                .collect();
            bytes::Bytes::from(json!({ "StreamName": stream, "Records": records }).to_string())
        })
        .collect()
}

/// [`put_bodies`] in CBOR, as the AWS SDK for Java sends them: `Data` as
/// byte strings.
fn put_bodies_cbor(
    stream: &str,
    per_call: usize,
    record_bytes: usize,
) -> anyhow::Result<Vec<bytes::Bytes>> {
    use ciborium::Value as Cbor;
    let t = |s: &str| Cbor::Text(s.into());
    (0..16)
        .map(|b| {
            let records = (0..per_call)
                .map(|i| {
                    Cbor::Map(vec![
                        (
                            t("Data"),
                            Cbor::Bytes(json_record(b * per_call + i, record_bytes)),
                        ),
                        (t("PartitionKey"), t(&format!("key-{b}-{i}"))),
                    ])
                })
                .collect();
            let body = Cbor::Map(vec![
                (t("StreamName"), t(stream)),
                (t("Records"), Cbor::Array(records)),
            ]);
            let mut out = Vec::new();
            ciborium::into_writer(&body, &mut out)?;
            Ok(bytes::Bytes::from(out))
        })
        .collect()
}

/// One `PutRecords` call in CBOR; whether every record was put.
async fn put_records_cbor(
    http: &reqwest::Client,
    url: &str,
    body: bytes::Bytes,
) -> anyhow::Result<bool> {
    use ciborium::Value as Cbor;
    let resp = http
        .post(url)
        .header("X-Amz-Target", "Kinesis_20131202.PutRecords")
        .header("Content-Type", "application/x-amz-cbor-1.1")
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Ok(false);
    }
    let out: Cbor = ciborium::from_reader(&resp.bytes().await?[..])?;
    let failed = cbor_member(&out, "FailedRecordCount").and_then(Cbor::as_integer);
    Ok(failed == Some(0.into()))
}

/// The member `name` of a CBOR map.
fn cbor_member<'v>(v: &'v ciborium::Value, name: &str) -> Option<&'v ciborium::Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

/// `PutRecords` from `clients` closed-loop clients for `duration_secs`.
async fn put_phase(args: &Args, http: &reqwest::Client, url: &str) -> anyhow::Result<Put> {
    let per_call = args.records_per_call;
    let bodies = if args.cbor {
        put_bodies_cbor("bench", per_call, args.record_bytes)?
    } else {
        put_bodies("bench", per_call, args.record_bytes)
    };
    let start = Instant::now();
    let (h, u, bodies, cbor) = (http.clone(), url.to_string(), Arc::new(bodies), args.cbor);
    let (mut lat, failed) = closed_loop(args.clients, args.duration_secs, move |c, n| {
        let (http, url) = (h.clone(), u.clone());
        let body = bodies[(c + n) % bodies.len()].clone();
        async move {
            if cbor {
                return put_records_cbor(&http, &url, body).await.unwrap_or(false);
            }
            kinesis_call(&http, &url, "PutRecords", body)
                .await
                .is_ok_and(|v| v["FailedRecordCount"].as_u64() == Some(0))
        }
    })
    .await?;
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let records = lat.len() as u64 * per_call as u64;
    let mib = (records * args.record_bytes as u64) as f64 / (1 << 20) as f64;
    Ok(Put {
        lat,
        failed,
        records,
        mib,
        secs,
        daemon_cpu: 0.0,
    })
}

/// Every shard read back from TRIM_HORIZON at once, one consumer each.
async fn read_phase(
    shards: u32,
    cbor: bool,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<Read> {
    let read_start = Instant::now();
    let mut readers = Vec::new();
    for shard in 0..shards {
        let (http, url) = (http.clone(), url.to_string());
        readers.push(tokio::spawn(async move {
            read_shard(&http, &url, shard, cbor).await
        }));
    }
    let mut read = Read {
        records: 0,
        bytes: 0,
        per_shard: Vec::new(),
        calls: Vec::new(),
        secs: 0.0,
        daemon_cpu: 0.0,
    };
    for r in readers {
        let (n, b, el, c) = r.await??;
        read.records += n;
        read.bytes += b;
        read.per_shard
            .push(b as f64 / (1 << 20) as f64 / el.as_secs_f64());
        read.calls.extend(c);
    }
    read.secs = read_start.elapsed().as_secs_f64();
    read.calls.sort();
    Ok(read)
}

/// One shard read from TRIM_HORIZON until it is caught up and empty.
async fn read_shard(
    http: &reqwest::Client,
    url: &str,
    shard: u32,
    cbor: bool,
) -> anyhow::Result<ShardRead> {
    let it = kinesis_call(
        http,
        url,
        "GetShardIterator",
        json!({ "StreamName": "bench", "ShardId": format!("shardId-{shard:012}"), "ShardIteratorType": "TRIM_HORIZON" }).to_string(),
    )
    .await?;
    let mut it = it["ShardIterator"].as_str().unwrap_or_default().to_string();
    let (mut records, mut bytes, mut calls) = (0u64, 0u64, Vec::new());
    let t0 = Instant::now();
    loop {
        let t = Instant::now();
        let (n, b, next, behind) = if cbor {
            get_records_cbor(http, url, &it).await?
        } else {
            let resp = http
                .post(url)
                .header("X-Amz-Target", "Kinesis_20131202.GetRecords")
                .header("Content-Type", "application/x-amz-json-1.1")
                .body(json!({ "ShardIterator": it, "Limit": 10_000 }).to_string())
                .send()
                .await?
                .bytes()
                .await?;
            let out: GetRecordsOut = serde_json::from_slice(&resp).with_context(|| {
                String::from_utf8_lossy(&resp[..resp.len().min(300)]).to_string()
            })?;
            let b = out.records.iter().map(|r| r.data.len() as u64 * 3 / 4);
            (
                out.records.len() as u64,
                b.sum::<u64>(),
                out.next_shard_iterator,
                out.millis_behind_latest,
            )
        };
        calls.push(t.elapsed());
        records += n;
        bytes += b;
        it = next;
        if n == 0 && behind == 0 {
            break;
        }
    }
    Ok((records, bytes, t0.elapsed(), calls))
}

/// One `GetRecords` call in CBOR: records, their data's bytes, the next
/// iterator and how far behind the tip.
async fn get_records_cbor(
    http: &reqwest::Client,
    url: &str,
    it: &str,
) -> anyhow::Result<(u64, u64, String, u64)> {
    use ciborium::Value as Cbor;
    let mut body = Vec::new();
    let req = Cbor::Map(vec![
        (Cbor::Text("ShardIterator".into()), Cbor::Text(it.into())),
        (Cbor::Text("Limit".into()), Cbor::Integer(10_000.into())),
    ]);
    ciborium::into_writer(&req, &mut body)?;
    let resp = http
        .post(url)
        .header("X-Amz-Target", "Kinesis_20131202.GetRecords")
        .header("Content-Type", "application/x-amz-cbor-1.1")
        .body(body)
        .send()
        .await?
        .bytes()
        .await?;
    let out: Cbor = ciborium::from_reader(&resp[..]).context("a CBOR GetRecords answer")?;
    let field = |name: &str| cbor_member(&out, name);
    let records = field("Records").and_then(Cbor::as_array);
    let Some(records) = records else {
        bail!("a CBOR GetRecords answer without records: {out:?}");
    };
    let bytes = records
        .iter()
        .filter_map(Cbor::as_map)
        .flat_map(|m| m.iter().filter(|(k, _)| k.as_text() == Some("Data")))
        .filter_map(|(_, v)| v.as_bytes())
        .map(|b| b.len() as u64)
        .sum();
    let next = field("NextShardIterator")
        .and_then(Cbor::as_text)
        .unwrap_or_default();
    let behind = field("MillisBehindLatest")
        .and_then(Cbor::as_integer)
        .and_then(|i| u64::try_from(i).ok())
        .unwrap_or(0);
    Ok((records.len() as u64, bytes, next.to_string(), behind))
}

/// The two table rows: `PutRecords`, then `GetRecords`.
fn print(args: &Args, put: &Put, read: &Read, rss: u64) {
    let Args {
        clients,
        shards,
        record_bytes,
        records_per_call: per_call,
        ..
    } = args;
    let failed = put.failed;
    println!(
        "| kinesis PutRecords{}: {clients} clients x {per_call} x {record_bytes} B, {shards} shards | {:.0} records/s ({:.0}/shard) | {:.1} MiB/s ({:.1}/shard; Kinesis: 1 MiB/s, 1,000 records/s per shard) | ack p50 {:.2} ms, p99 {:.2} ms | failed calls {failed} | daemon CPU {:.2} ms per MiB put |",
        if args.cbor { " (CBOR)" } else { "" },
        put.records as f64 / put.secs,
        put.records as f64 / put.secs / *shards as f64,
        put.mib / put.secs,
        put.mib / put.secs / *shards as f64,
        percentile(&put.lat, 0.5).as_secs_f64() * 1e3,
        percentile(&put.lat, 0.99).as_secs_f64() * 1e3,
        put.daemon_cpu * 1e3 / put.mib.max(1e-9),
    );
    println!(
        "| kinesis GetRecords{}: {shards} consumers from TRIM_HORIZON, Limit 10,000 | {:.0} records/s | {:.1} MiB/s in all, per shard {} MiB/s (Kinesis: 2 MiB/s per shard) | call p50 {:.1} ms, p99 {:.1} ms | peak RSS {:.0} MiB | daemon CPU {:.2} ms per MiB read |",
        if args.cbor { " (CBOR)" } else { "" },
        read.records as f64 / read.secs,
        read.bytes as f64 / (1 << 20) as f64 / read.secs,
        read.per_shard
            .iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join("/"),
        percentile(&read.calls, 0.5).as_secs_f64() * 1e3,
        percentile(&read.calls, 0.99).as_secs_f64() * 1e3,
        rss as f64 / 1024.0,
        read.daemon_cpu * 1e3 / (read.bytes as f64 / (1 << 20) as f64).max(1e-9),
    );
}
