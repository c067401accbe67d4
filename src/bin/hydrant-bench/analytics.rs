//! `hydrant-bench analytics`: a SQL application's one-minute tumbling count
//! by key over 1 KiB JSON records.
//!
//! 1. **In process, one core**: the JSON parse ceiling (serde_json into a
//!    value, the least any JSON reader does), the input schema's decoder
//!    alone, and the whole engine (decode, window assignment, the count's
//!    accumulators, window close) on the same records, in the batches the
//!    daemon reads (4096 records).
//! 2. **The daemon**: closed-loop producers put the records into a Kinesis
//!    stream for `--secs`; the application counts them per minute of
//!    ROWTIME into another stream. For each result, the latency is from its
//!    window's end to its record's arrival in the output (appended, after
//!    the checkpoint that lists it and the log's fsync): how long after a
//!    minute ends its counts are durable. Also the records/s the
//!    application kept up with, the daemon's CPU and peak RSS.
//!
//! Prints the tables and writes `<results>/<date>-<machine>-analytics.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hydrant::analytics::engine::{Engine, EngineDef, OutputDef};
use hydrant::analytics::schema::{Column, InputSchema, RecordFormat, SqlType};
use hydrant::record::Record;
use serde_json::json;

use crate::daemon::{bench_config, cpu_seconds, peak_rss_kib, settle, start_daemon, stop};
use crate::kinesis::kinesis_call;
use crate::load::{closed_loop, percentile};
use crate::report::write_json;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    #[arg(long, default_value = "/tmp/hydrant-bench-analytics")]
    dir: PathBuf,
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// Records of the in-process measurements.
    #[arg(long, default_value_t = 400_000)]
    records: usize,
    /// Distinct keys (tickers) counted.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Seconds the producers put into the daemon.
    #[arg(long, default_value_t = 70)]
    secs: u64,
    #[arg(long, default_value_t = 2)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    records_per_call: usize,
}

const SQL: &str = "INSERT INTO \"OUT\"\nSELECT window_end, ticker, count(*) AS n\nFROM TUMBLE(\"SOURCE_SQL_STREAM_001\", event_time, INTERVAL '1' MINUTE)\nGROUP BY window_start, window_end, ticker;";

/// Record `i`: a ticker, a price, an event time rising over ten minutes
/// across `n` records, padded to 1 KiB.
fn record(i: usize, n: usize, keys: usize) -> Vec<u8> {
    let t = 1_704_067_200_000i64 + (i as i64 * 600_000 / n.max(1) as i64);
    let head = format!(
        "{{\"TICKER\":\"k{}\",\"PRICE\":{}.{},\"EVENT_TIME\":{t},\"NOTE\":\"",
        i % keys,
        i % 997,
        i % 100
    );
    let mut s = head.into_bytes();
    while s.len() < 1022 {
        s.push(b'a' + (s.len() % 26) as u8);
    }
    s.extend_from_slice(b"\"}");
    s
}

fn schema() -> InputSchema {
    let col = |name: &str, sql_type| Column {
        name: name.into(),
        sql_type,
        mapping: None,
    };
    InputSchema {
        format: RecordFormat::json(),
        columns: vec![
            col("TICKER", SqlType::Varchar(16)),
            col("PRICE", SqlType::Double),
            col("EVENT_TIME", SqlType::Timestamp),
        ],
    }
}

/// records/s and MB/s of `f` over `records`, on this thread.
fn rate(records: &[Vec<u8>], mut f: impl FnMut(&[Vec<u8>])) -> (f64, f64) {
    let started = Instant::now();
    f(records);
    let secs = started.elapsed().as_secs_f64();
    let bytes: usize = records.iter().map(Vec::len).sum();
    (records.len() as f64 / secs, bytes as f64 / secs / 1e6)
}

fn in_process(args: &Args) -> anyhow::Result<serde_json::Value> {
    let records: Vec<Vec<u8>> = (0..args.records)
        .map(|i| record(i, args.records, args.keys))
        .collect();
    let (parse_rps, parse_mbs) = rate(&records, |rs| {
        let mut n = 0usize;
        for r in rs {
            n += usize::from(serde_json::from_slice::<serde_json::Value>(r).is_ok());
        }
        assert_eq!(n, rs.len());
    });
    let mut decoder = hydrant::analytics::decode::Decoder::new(&schema())?;
    let (decode_rps, decode_mbs) = rate(&records, |rs| {
        for chunk in rs.chunks(4096) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let (b, _, rejects) = decoder.decode(&refs);
            assert!(rejects.is_empty() && b.num_rows() == chunk.len());
        }
    });
    let mut engine = Engine::new(EngineDef {
        input_stream: "SOURCE_SQL_STREAM_001".into(),
        schema: schema(),
        program: hydrant::analytics::kda::parse_program(SQL)?,
        outputs: [(
            "OUT".to_string(),
            OutputDef {
                format: hydrant::analytics::encode::OutputFormat::Json,
                partition_key: None,
            },
        )]
        .into(),
        delay_ms: 0,
        groups_max: 100_000,
    })?;
    engine.track(0);
    let batches: Vec<Vec<Record>> = records
        .chunks(4096)
        .enumerate()
        .map(|(b, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, d)| Record {
                    offset: (b * 4096 + i) as u64,
                    arrival_ms: 0,
                    key: Bytes::new(),
                    data: Bytes::from(d.clone()),
                })
                .collect()
        })
        .collect();
    let mut results = 0;
    let (engine_rps, engine_mbs) = rate(&records, |_| {
        for batch in &batches {
            if engine.push(0, batch, 0).is_err() || engine.close_windows(0).is_err() {
                return;
            }
            results += engine.take_pending().len();
        }
    });
    anyhow::ensure!(
        results >= args.keys * 9,
        "the engine emitted {results} results"
    );
    println!(
        "in process, one core ({} records of 1 KiB, {} keys):",
        args.records, args.keys
    );
    println!("  {:<40} {:>12} {:>10}", "stage", "records/s", "MB/s");
    for (name, r, m) in [
        (
            "JSON parse ceiling (serde_json Value)",
            parse_rps,
            parse_mbs,
        ),
        ("input schema decode", decode_rps, decode_mbs),
        (
            "engine: decode + 1-min tumbling count",
            engine_rps,
            engine_mbs,
        ),
    ] {
        println!("  {name:<40} {r:>12.0} {m:>10.1}");
    }
    Ok(json!({
        "records": args.records, "keys": args.keys,
        "json_parse_ceiling": { "records_per_sec": parse_rps, "mb_per_sec": parse_mbs },
        "decode": { "records_per_sec": decode_rps, "mb_per_sec": decode_mbs },
        "engine": { "records_per_sec": engine_rps, "mb_per_sec": engine_mbs, "results": results },
    }))
}

fn daemon_yaml() -> String {
    "kinesis:\n  streams:\n    trades: { shards: 2 }\n    counts: { shards: 1 }\nanalytics:\n  applications:\n    per-minute:\n      input:\n        kinesis_stream: trades\n        starting_position: trim_horizon\n        columns:\n          - { name: TICKER, type: \"VARCHAR(16)\" }\n          - { name: PRICE, type: DOUBLE }\n      sql: |\n        CREATE OR REPLACE STREAM \"DESTINATION_SQL_STREAM\" (TICKER VARCHAR(16), WINDOW_END TIMESTAMP, N BIGINT);\n        CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"DESTINATION_SQL_STREAM\"\n          SELECT STREAM TICKER, ROWTIME, COUNT(*) FROM \"SOURCE_SQL_STREAM_001\"\n          GROUP BY TICKER, STEP(\"SOURCE_SQL_STREAM_001\".ROWTIME BY INTERVAL '60' SECOND);\n      outputs:\n        DESTINATION_SQL_STREAM: { kinesis_stream: counts }\n".into()
}

/// `PutRecords` bodies of 1 KiB records with varied partition keys.
fn bodies(args: &Args) -> Vec<Bytes> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..16)
        .map(|b| {
            let recs: Vec<serde_json::Value> = (0..args.records_per_call)
                .map(|i| {
                    let n = b * args.records_per_call + i;
                    json!({ "Data": b64.encode(record(n, 1, args.keys)), "PartitionKey": format!("p{n}") })
                })
                .collect();
            Bytes::from(json!({ "StreamName": "trades", "Records": recs }).to_string())
        })
        .collect()
}

/// Every result record of the output: (window end ms, arrival ms, count).
async fn results(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<(i64, i64, u64)>> {
    let it = kinesis_call(http, url, "GetShardIterator", json!({
        "StreamName": "counts", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON",
    }).to_string()).await?;
    let mut iter = it["ShardIterator"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    loop {
        let r = kinesis_call(
            http,
            url,
            "GetRecords",
            json!({ "ShardIterator": iter, "Limit": 10000 }).to_string(),
        )
        .await?;
        let recs = r["Records"].as_array().cloned().unwrap_or_default();
        for x in &recs {
            let data = base64::engine::general_purpose::STANDARD
                .decode(x["Data"].as_str().unwrap_or(""))?;
            let v: serde_json::Value = serde_json::from_slice(&data)?;
            let end = chrono::NaiveDateTime::parse_from_str(
                v["WINDOW_END"].as_str().unwrap_or(""),
                "%Y-%m-%d %H:%M:%S%.3f",
            )?
            .and_utc()
            .timestamp_millis();
            let arrived =
                (x["ApproximateArrivalTimestamp"].as_f64().unwrap_or(0.0) * 1000.0) as i64;
            out.push((end, arrived, v["N"].as_u64().unwrap_or(0)));
        }
        if recs.is_empty() {
            return Ok(out);
        }
        iter = r["NextShardIterator"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
}

async fn on_daemon(args: &Args) -> anyhow::Result<serde_json::Value> {
    let dir = args.dir.join("daemon");
    settle(&dir).await;
    let (port, cfg) = bench_config(&dir, &daemon_yaml())?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder().build()?;
    let mut child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    let pid = child.id();
    let cpu0 = cpu_seconds(pid);
    let bodies = Arc::new(bodies(args));
    let (h, u, b) = (http.clone(), url.clone(), bodies.clone());
    let started = Instant::now();
    let (lat, failed) = closed_loop(args.clients, args.secs, move |c, n| {
        let (http, url, body) = (h.clone(), u.clone(), b[(c + n) % b.len()].clone());
        async move {
            kinesis_call(&http, &url, "PutRecords", body)
                .await
                .is_ok_and(|v| v["FailedRecordCount"].as_u64() == Some(0))
        }
    })
    .await?;
    let put_secs = started.elapsed().as_secs_f64();
    let put = lat.len() * args.records_per_call;
    // The last minute closes at its end, without more input.
    let now = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(
        (60_000 - now.rem_euclid(60_000) + 2_000) as u64,
    ))
    .await;
    // The application may still be behind the producers: wait (bounded)
    // until it has counted every record.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut res = results(&http, &url).await?;
    while res.iter().map(|r| r.2).sum::<u64>() < put as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        res = results(&http, &url).await?;
    }
    let counted_all = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let rss = peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    stop(&mut child)?;
    let counted: u64 = res.iter().map(|r| r.2).sum();
    let mut lats: Vec<Duration> = res
        .iter()
        .map(|(end, at, _)| Duration::from_millis((at - end).max(0) as u64))
        .collect();
    lats.sort();
    let windows: std::collections::BTreeSet<i64> = res.iter().map(|r| r.0).collect();
    let (p50, p99) = (percentile(&lats, 0.5), percentile(&lats, 0.99));
    println!(
        "\non the daemon ({} s of PutRecords, {} clients):",
        args.secs, args.clients
    );
    println!(
        "  records put {put} ({:.0}/s, {failed} calls failed), counted {counted} in {} windows",
        put as f64 / put_secs,
        windows.len()
    );
    println!(
        "  window end to result durable: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lats.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!(
        "  daemon CPU {:.0}% of one core, peak RSS {rss:.0} MiB",
        cpu / put_secs * 100.0
    );
    anyhow::ensure!(
        counted as usize == put,
        "the application counted {counted} of {put} records"
    );
    Ok(json!({
        "put_records": put, "put_records_per_sec": put as f64 / put_secs, "failed_calls": failed,
        "counted": counted, "windows": windows.len(),
        "window_end_to_durable_p50_ms": p50.as_secs_f64() * 1e3,
        "window_end_to_durable_p99_ms": p99.as_secs_f64() * 1e3,
        "daemon_cpu_percent": cpu / put_secs * 100.0, "peak_rss_mib": rss,
        "counted_all_after_secs": counted_all,
    }))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let inproc = in_process(&args)?;
    let daemon = on_daemon(&args).await?;
    let path = write_json(
        &args.results,
        "-analytics",
        json!({ "in_process": inproc, "daemon": daemon }),
    )?;
    println!("\nwrote {}", path.display());
    Ok(())
}
