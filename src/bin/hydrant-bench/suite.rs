//! `hydrant-bench suite`: every workload and every stage ceiling, on the same
//! machine in the same run, against real destinations (a Garage started
//! here, and the local filesystem).
//!
//! For each workload the real daemon runs with a generated config and:
//! 1. **saturation**: `clients` closed-loop producers for `secs`; the rate is
//!    the records over the time until the last one is delivered (the
//!    `delivery_records` metric), so a stage slower than ingest shows;
//! 2. **latency at half load**: an open-loop producer at 50% of that rate,
//!    each request sent at its scheduled time whatever the previous ones are
//!    doing, its latency measured from that scheduled time (so a stall counts
//!    for every request it delays: no coordinated omission);
//! 3. **freshness**: during phase 2, a watcher lists the destination every
//!    50 ms; each record's freshness is the time its object became visible
//!    minus its scheduled send time. Records are matched to objects by
//!    (shard, offset): the put's answer gives them, object names carry them.
//!
//! The daemon's peak RSS and CPU seconds (utime + stime) per GB delivered
//! come from `/proc`. Stage ceilings are measured alone on one core, on the
//! same generated data; a workload's ceiling is its slowest stage times the
//! cores that can run it (disk and the store are measured as a whole).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use serde_json::json;

use super::{
    frames_of, free_port, json_record, partitioner, peak_rss_kib, percentile, start_daemon,
};

/// What the suite runs.
pub struct Args {
    pub hydrant: PathBuf,
    pub garage: PathBuf,
    pub dir: PathBuf,
    pub results: PathBuf,
    pub secs: u64,
    /// Seconds of the half-load phase: long enough for a stable p99.9.
    pub half_secs: u64,
    pub clients: usize,
    pub workloads: Vec<String>,
}

/// One measured stage, alone on one core (disk and store: as a whole).
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    pub name: String,
    pub mb_per_sec: f64,
    pub records_per_sec: f64,
    /// Whether it scales with cores (CPU work) or not (disk, store).
    pub per_core: bool,
}

#[derive(Debug, Serialize)]
struct WorkloadResult {
    id: String,
    description: String,
    record_bytes: usize,
    ingest_records_per_sec: f64,
    ingest_mb_per_sec: f64,
    delivered_records_per_sec: f64,
    delivered_mb_per_sec: f64,
    half_load_records_per_sec: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    ack_p999_ms: f64,
    ack_failed: u64,
    freshness_p50_ms: f64,
    freshness_p99_ms: f64,
    peak_rss_mib: f64,
    cpu_seconds_per_gb: f64,
    slowest_stage: String,
    ceiling_mb_per_sec: f64,
    fraction_of_ceiling: f64,
    /// The CPU stages one after another on every core: cores / sum(1/rate).
    cpu_ceiling_mb_per_sec: f64,
    fraction_of_cpu_ceiling: f64,
    /// The daemon's own p99 acknowledgement time at half load, as an upper
    /// bound from its `put_latency_seconds` histogram (buckets √2 apart).
    server_ack_p99_ms_at_most: f64,
    /// How late the generator began a request after its scheduled time, p99:
    /// the generator's own error, included in the acknowledgement times.
    send_lag_p99_ms: f64,
}

/// A Garage server on loopback, one key, buckets on demand.
struct Garage {
    bin: PathBuf,
    config: PathBuf,
    proc: Child,
    endpoint: String,
    key_id: String,
    secret: String,
}

impl Garage {
    fn start(bin: &Path, dir: &Path) -> anyhow::Result<Garage> {
        if !bin.exists() {
            bail!(
                "{} not found: install Garage (scripts/test.sh does: cargo install garage --locked) or pass --garage",
                bin.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let (s3, rpc, admin) = (free_port()?, free_port()?, free_port()?);
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                d = dir.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("garage.log"))?;
        let proc = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut g = Garage {
            bin: bin.to_path_buf(),
            config,
            proc,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
        };
        let t = Instant::now();
        let node = loop {
            if let Ok(out) = g.cli(&["node", "id", "-q"])
                && let Some(id) = out.trim().split('@').next().filter(|s| !s.is_empty())
            {
                break id.to_string();
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!(
                    "Garage did not start (see {})",
                    dir.join("garage.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        g.cli(&["layout", "apply", "--version", "1"])?;
        let out = g.cli(&["key", "create", "bench"])?;
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .with_context(|| format!("no {label} in: {out}"))
        };
        g.key_id = field("Key ID:")?;
        g.secret = field("Secret key:")?;
        Ok(g)
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "garage {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        self.cli(&["bucket", "create", name])?;
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            &self.key_id,
        ])?;
        Ok(())
    }

    fn store(&self, bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_region("garage")
                .with_bucket_name(bucket)
                .with_access_key_id(&self.key_id)
                .with_secret_access_key(&self.secret)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()?,
        ))
    }

    fn store_yaml(&self) -> String {
        format!(
            "object_store:\n  type: s3\n  endpoint: {}\n  region: garage\n  access_key_id: {}\n  secret_access_key: {}\n  allow_http: true\n",
            self.endpoint, self.key_id, self.secret
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// A clickstream event of about 300 bytes.
fn click_record(i: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let countries = ["de", "fr", "us", "br", "in", "jp"];
    let devices = ["mobile", "desktop", "tablet"];
    let events = ["view", "click", "add_to_cart", "purchase", "scroll"];
    let pages = [
        "/",
        "/search",
        "/item",
        "/cart",
        "/checkout",
        "/account",
        "/help",
    ];
    format!(
        r#"{{"ts":"2026-11-24T12:{:02}:{:02}.{:03}Z","user_id":"u{:08}","session":"{:016x}","event":"{}","page":"{}{}","country":"{}","device":"{}","referrer":"https://ref{}.example/","duration_ms":{}}}"#,
        next() % 60,
        next() % 60,
        next() % 1000,
        next() % 1_000_000,
        next(),
        events[(next() % 5) as usize],
        pages[(next() % 7) as usize],
        if next() % 2 == 0 {
            format!("?q={}", next() % 10_000)
        } else {
            String::new()
        },
        countries[(next() % 6) as usize],
        devices[(next() % 3) as usize],
        next() % 50,
        next() % 60_000
    )
    .into_bytes()
}

/// A 100-byte record.
fn small_record(i: usize) -> Vec<u8> {
    let mut r = format!(
        r#"{{"n":{i},"k":"{:x}","v":""#,
        (i as u64).wrapping_mul(0x9E37_79B9)
    )
    .into_bytes();
    while r.len() < 97 {
        r.push(b'a' + (r.len() % 26) as u8);
    }
    r.extend_from_slice(b"\"}\n");
    r.truncate(100);
    r
}

struct Workload {
    id: &'static str,
    description: &'static str,
    record_bytes: usize,
    ndjson: bool,
    make: fn(usize) -> Vec<u8>,
    /// The stream's YAML (after `streams:\n  bench:\n`), given the bucket.
    stream: fn(&str, &Path) -> String,
    /// Stages it goes through (names of [`Stage`]s).
    stages: &'static [&'static str],
    /// Object store bucket, or None for the file destination.
    s3: bool,
}

const LOG_BYTES: usize = 1024;

fn log_record(i: usize) -> Vec<u8> {
    json_record(i, LOG_BYTES)
}

fn errors_prefix() -> &'static str {
    "error_output_prefix: \"errors/!{firehose:error-output-type}/\""
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            id: "W1",
            description: "application logs, ~1 KiB JSON -> gzip JSON lines -> S3",
            record_bytes: LOG_BYTES,
            ndjson: false,
            make: log_record,
            stream: |bucket, _| {
                format!(
                    "    compression: gzip\n    destination: {{ type: s3, bucket: {bucket}, prefix: logs/, {} }}\n",
                    errors_prefix()
                )
            },
            stages: &["append + fdatasync (1 KiB)", "gzip", "PUT to Garage"],
            s3: true,
        },
        Workload {
            id: "W2",
            description: "clickstream, ~300 B JSON -> Parquet zstd partitioned by country, device and hour -> S3",
            record_bytes: 300,
            ndjson: false,
            make: click_record,
            stream: |bucket, _| {
                let cols = [
                    "ts", "user_id", "session", "event", "page", "country", "device", "referrer",
                ]
                .map(|c| format!("        - {{ name: {c}, type: string }}\n"))
                .concat();
                format!(
                    "    encoding:\n      format: parquet\n      compression: zstd\n      schema:\n{cols}        - {{ name: duration_ms, type: int64 }}\n    dynamic_partitioning:\n      keys: {{ country: .country, device: .device }}\n    destination: {{ type: s3, bucket: {bucket}, prefix: \"clicks/country=!{{partitionKeyFromQuery:country}}/device=!{{partitionKeyFromQuery:device}}/!{{timestamp:yyyy/MM/dd/HH}}/\", {} }}\n",
                    errors_prefix()
                )
            },
            stages: &[
                "append + fdatasync (300 B)",
                // Includes parsing each record's JSON.
                "jq partitioning (2 keys)",
                "Parquet zstd (clickstream)",
                "PUT to Garage",
            ],
            s3: true,
        },
        Workload {
            id: "W3",
            description: "W1 through the Rust example WASM transform",
            record_bytes: LOG_BYTES,
            ndjson: false,
            make: log_record,
            stream: |bucket, wasm| {
                format!(
                    "    compression: gzip\n    transform: {{ wasm: {}, config: '{{\"env\":\"bench\",\"drop_levels\":[]}}' }}\n    destination: {{ type: s3, bucket: {bucket}, prefix: logs/, {} }}\n",
                    wasm.display(),
                    errors_prefix()
                )
            },
            stages: &[
                "append + fdatasync (1 KiB)",
                "WASM call (Rust example)",
                "gzip",
                "PUT to Garage",
            ],
            s3: true,
        },
        Workload {
            id: "W4",
            description: "100-byte records over NDJSON -> zstd JSON lines -> files",
            record_bytes: 100,
            ndjson: true,
            make: small_record,
            stream: |_, _| "    compression: zstd\n".to_string(),
            stages: &["append + fdatasync (100 B)", "zstd (100 B)"],
            s3: false,
        },
        Workload {
            id: "W5",
            description: "W1 with AES-256-GCM",
            record_bytes: LOG_BYTES,
            ndjson: false,
            make: log_record,
            stream: |bucket, _| {
                format!(
                    "    compression: gzip\n    encryption: {{ keys: [{{ id: bench, file: KEYFILE }}] }}\n    destination: {{ type: s3, bucket: {bucket}, prefix: logs/, {} }}\n",
                    errors_prefix()
                )
            },
            stages: &[
                "append + fdatasync (1 KiB)",
                "gzip",
                "AES-256-GCM",
                "PUT to Garage",
            ],
            s3: true,
        },
    ]
}

fn stage(name: &str, raw: usize, n: usize, el: Duration, per_core: bool) -> Stage {
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

/// Append + fdatasync with the log's frame format, 1,000 records per sync
/// (what group commit reaches under load), written as the log writes in
/// steady state: over a reused 64 MiB segment, from its start.
fn disk_stage(
    dir: &Path,
    record_bytes: usize,
    make: fn(usize) -> Vec<u8>,
) -> anyhow::Result<Stage> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
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
            hydrant::log::frame::encode(&mut buf, offset, 0, b"", d)?;
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
    Ok(stage(
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

fn encode_stage(
    name: &str,
    frames: &[hydrant::record::Record],
    raw: usize,
    opts: &hydrant::encode::EncodeOptions,
) -> anyhow::Result<Stage> {
    let t = Instant::now();
    let out = hydrant::encode::encode_batch(frames, opts)?;
    let el = t.elapsed();
    if !out.rejected.is_empty() {
        bail!("{name}: {} records rejected", out.rejected.len());
    }
    Ok(stage(name, raw, frames.len(), el, true))
}

async fn stage_ceilings(
    dir: &Path,
    garage: &Garage,
    wasm: &Path,
    n: usize,
) -> anyhow::Result<Vec<Stage>> {
    use hydrant::encode::encrypt::Encryption;
    use hydrant::encode::{Compression, Encoding};
    use hydrant::encode::{EncodeOptions, encrypt::SecretKey, parquet};
    let mut out = Vec::new();
    out.push(disk_stage(dir, LOG_BYTES, log_record)?);
    out.push(disk_stage(dir, 300, click_record)?);
    out.push(disk_stage(dir, 100, small_record)?);

    let (logs, logs_raw) = frames_of(n, log_record);
    let (clicks, clicks_raw) = frames_of(n, click_record);
    let (small, small_raw) = frames_of(n, small_record);
    let lines = Encoding::JsonLines {
        delimiter: b"\n".to_vec(),
    };
    let opts = |compression, encryption| EncodeOptions {
        encoding: lines.clone(),
        compression,
        level: None,
        encryption,
    };
    out.push(encode_stage(
        "gzip",
        &logs,
        logs_raw,
        &opts(Compression::Gzip, None),
    )?);
    out.push(encode_stage(
        "zstd",
        &logs,
        logs_raw,
        &opts(Compression::Zstd, None),
    )?);
    out.push(encode_stage(
        "zstd (100 B)",
        &small,
        small_raw,
        &opts(Compression::Zstd, None),
    )?);
    let key = Encryption {
        keys: vec![("bench".into(), SecretKey([9; 32]))],
        chunk_bytes: 64 << 10,
    };
    out.push(encode_stage(
        "AES-256-GCM",
        &logs,
        logs_raw,
        &opts(Compression::None, Some(key)),
    )?);
    let cols = [
        "ts", "user_id", "session", "event", "page", "country", "device", "referrer",
    ];
    let mut schema: Vec<(String, arrow_schema::DataType, bool)> = cols
        .iter()
        .map(|c| (c.to_string(), arrow_schema::DataType::Utf8, true))
        .collect();
    schema.push(("duration_ms".into(), arrow_schema::DataType::Int64, true));
    let pq = EncodeOptions {
        encoding: Encoding::Parquet(parquet::ParquetOptions {
            schema: parquet::schema(&schema),
            row_group_rows: 1_000_000,
            compression: "zstd".into(),
            dictionary: true,
        }),
        compression: Compression::None,
        level: None,
        encryption: None,
    };
    out.push(encode_stage(
        "Parquet zstd (clickstream)",
        &clicks,
        clicks_raw,
        &pq,
    )?);

    // JSON parse alone: what partitioning and Parquet must do at least.
    let t = Instant::now();
    let mut fields = 0usize;
    for f in &clicks {
        let v: serde_json::Value = serde_json::from_slice(&f.data)?;
        fields += v.as_object().map_or(0, |o| o.len());
    }
    if fields == 0 {
        bail!("JSON parse saw no fields");
    }
    out.push(stage("JSON parse", clicks_raw, n, t.elapsed(), true));

    let part = partitioner(
        "{ country: .country, device: .device }",
        "country=!{partitionKeyFromQuery:country}/device=!{partitionKeyFromQuery:device}/!{timestamp:yyyy/MM/dd/HH}/",
    )?;
    let mut scratch = hydrant::route::partition::RouteScratch::default();
    let t = Instant::now();
    for f in &clicks {
        if let Err(e) = part.route(f, &[], &mut scratch) {
            bail!("partitioning failed: {e}");
        }
    }
    out.push(stage(
        "jq partitioning (2 keys)",
        clicks_raw,
        n,
        t.elapsed(),
        true,
    ));

    {
        use hydrant::transform::{Transform, TransformConfig};
        let t = Transform::load(
            TransformConfig {
                wasm: wasm.to_path_buf(),
                config: r#"{"env":"bench","drop_levels":[]}"#.into(),
                batch_records_max: 10_000,
                batch_bytes_max: 64 << 20,
                timeout: Duration::from_secs(300),
                memory_bytes_max: 2 << 30,
                instances_max: 1,
            },
            None,
        )?;
        let _ = t.run(&logs[..logs.len().min(10_000)]);
        let t0 = Instant::now();
        let outcomes = t.run(&logs);
        let el = t0.elapsed();
        if outcomes.len() != logs.len() {
            bail!(
                "the transform answered {} of {} records",
                outcomes.len(),
                logs.len()
            );
        }
        out.push(stage("WASM call (Rust example)", logs_raw, n, el, true));
    }

    // PUT to the store: 8 MiB objects, 4 at a time (uploads_in_flight_max).
    garage.create_bucket("ceiling")?;
    let store = garage.store("ceiling")?;
    let body = bytes::Bytes::from(vec![7u8; 8 << 20]);
    let objects = 32;
    let t = Instant::now();
    let mut puts = futures::stream::iter(0..objects)
        .map(|i| {
            let (store, body) = (store.clone(), body.clone());
            async move {
                store
                    .put(
                        &object_store::path::Path::from(format!("o{i}")),
                        object_store::PutPayload::from(body),
                    )
                    .await
            }
        })
        .buffer_unordered(4);
    while let Some(r) = puts.next().await {
        r?;
    }
    out.push(stage(
        "PUT to Garage",
        objects * body.len(),
        objects,
        t.elapsed(),
        false,
    ));
    Ok(out)
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

async fn metrics_text(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{url}metrics"))
        .send()
        .await?
        .text()
        .await?)
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = metrics_text(http, url).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The cumulative buckets of the daemon's `put_latency_seconds` histogram for
/// one operation: (upper bound in seconds, count).
async fn latency_buckets(
    http: &reqwest::Client,
    url: &str,
    op: &str,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = metrics_text(http, url).await?;
    let want = format!("operation=\"{op}\"");
    let mut out = Vec::new();
    for l in text.lines() {
        if !l.starts_with("hydrant_put_latency_seconds_bucket") || !l.contains(&want) {
            continue;
        }
        let le = l
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|x| {
                if x == "+Inf" {
                    f64::INFINITY
                } else {
                    x.parse().unwrap_or(f64::NAN)
                }
            });
        let n = l.rsplit(' ').next().and_then(|x| x.parse::<f64>().ok());
        if let (Some(le), Some(n)) = (le, n) {
            out.push((le, n));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

/// The upper bound of the bucket holding quantile `q` of what was observed
/// between two scrapes.
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let count = |b: &[(f64, f64)], le: f64| b.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
    let total = after.last().map_or(0.0, |x| x.1) - before.last().map_or(0.0, |x| x.1);
    for (le, n) in after {
        if total > 0.0 && (n - count(before, *le)) >= q * total {
            return *le;
        }
    }
    f64::NAN
}

/// A request to send: its body and how many records it holds.
#[derive(Clone)]
struct Request {
    body: bytes::Bytes,
    records: usize,
    bytes: usize,
}

fn requests(w: &Workload, count: usize, per_request: usize) -> anyhow::Result<Vec<Request>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(count);
    for r in 0..count {
        let recs: Vec<Vec<u8>> = (0..per_request)
            .map(|i| (w.make)(r * per_request + i))
            .collect();
        let bytes = recs.iter().map(Vec::len).sum();
        let body = if w.ndjson {
            let mut b = Vec::with_capacity(bytes + per_request);
            for rec in &recs {
                b.extend_from_slice(rec);
                if rec.last() != Some(&b'\n') {
                    b.push(b'\n');
                }
            }
            b
        } else {
            let records: Vec<serde_json::Value> = recs
                .iter()
                .map(|d| json!({ "Data": b64.encode(d) }))
                .collect();
            serde_json::to_vec(&json!({ "DeliveryStreamName": "bench", "Records": records }))?
        };
        out.push(Request {
            body: bytes::Bytes::from(body),
            records: per_request,
            bytes,
        });
    }
    Ok(out)
}

/// Sends one request; the shard and first offset its records got.
/// Sends one request; on success, where its records went (shard, first
/// offset) and when the whole answer had arrived (before it is parsed: the
/// acknowledgement is the answer, not the generator's work on it).
async fn send(
    http: &reqwest::Client,
    url: &str,
    ndjson: bool,
    body: bytes::Bytes,
) -> Option<((u32, u64), Instant)> {
    let req = if ndjson {
        http.post(format!("{url}v1/streams/bench/records"))
            .body(body)
    } else {
        http.post(url)
            .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body)
    };
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let answer = resp.bytes().await.ok()?;
    let at = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&answer).ok()?;
    if ndjson {
        return Some((
            (v["shard"].as_u64()? as u32, v["first_offset"].as_u64()?),
            at,
        ));
    }
    if v["FailedPutCount"].as_u64() != Some(0) {
        return None;
    }
    // RecordId: creation ms (20 digits), shard (4), offset (20).
    let id = v["RequestResponses"][0]["RecordId"].as_str()?;
    Some((
        (id.get(20..24)?.parse().ok()?, id.get(24..44)?.parse().ok()?),
        at,
    ))
}

/// Objects seen in the destination: per shard, (first, last, when seen).
type Seen = Arc<Mutex<BTreeMap<u32, Vec<(u64, u64, Instant)>>>>;

/// Parses `bench-<shard>-<first>-<last><ext>` from an object's name.
fn object_range(key: &str) -> Option<(u32, u64, u64)> {
    let name = key.rsplit('/').next()?;
    let rest = name.strip_prefix("bench-")?;
    let mut parts = rest.splitn(3, '-');
    let shard = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((shard, first, last.parse().ok()?))
}

/// Lists the destination every 50 ms, noting when each object appeared.
fn watch(
    store: Option<Arc<dyn ObjectStore>>,
    dir: PathBuf,
    seen: Seen,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut known = std::collections::HashSet::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let keys: Vec<String> = match &store {
                Some(s) => {
                    s.list(None)
                        .filter_map(|m| async move { m.ok().map(|m| m.location.to_string()) })
                        .collect()
                        .await
                }
                None => walk(&dir),
            };
            let now = Instant::now();
            for k in keys {
                if known.insert(k.clone())
                    && let Some((shard, first, last)) = object_range(&k)
                    && let Ok(mut g) = seen.lock()
                {
                    g.entry(shard).or_default().push((first, last, now));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

async fn wait_delivered(http: &reqwest::Client, url: &str, n: f64) -> anyhow::Result<Instant> {
    let t = Instant::now();
    loop {
        let d = metric(http, url, "hydrant_delivery_records_total").await?
            + metric(http, url, "hydrant_error_output_records_total").await?
            + metric(
                http,
                url,
                "hydrant_transform_records_total{stream=\"bench\",outcome=\"dropped\"}",
            )
            .await?;
        if d >= n {
            return Ok(Instant::now());
        }
        if t.elapsed() > Duration::from_secs(1800) {
            bail!("only {d} of {n} records delivered after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_workload(
    args: &Args,
    w: &Workload,
    garage: &Garage,
    ceilings: &[Stage],
    wasm: &Path,
) -> anyhow::Result<WorkloadResult> {
    let wdir = args.dir.join(w.id);
    let _ = std::fs::remove_dir_all(&wdir);
    // Each workload starts on a quiet disk: what the previous one wrote (its
    // log and output, Garage's objects) would otherwise be written back
    // during this one's half-load phase and timed as this one's fsyncs.
    let synced = tokio::process::Command::new("sync").status().await;
    if !synced.is_ok_and(|s| s.success()) {
        eprintln!("  (sync failed: the previous workload's writeback may overlap this one)");
    }
    std::fs::create_dir_all(&wdir)?;
    let bucket = format!("bench-{}", w.id.to_lowercase());
    let out_dir = wdir.join("out");
    let key_file = wdir.join("bench.key");
    std::fs::write(&key_file, [7u8; 32])?;
    let mut stream = (w.stream)(&bucket, wasm).replace("KEYFILE", &key_file.display().to_string());
    if !w.s3 {
        stream += &format!(
            "    destination: {{ type: file, path: {}, prefix: small/, {} }}\n",
            out_dir.display(),
            errors_prefix()
        );
    } else {
        garage.create_bucket(&bucket)?;
    }
    let port = free_port()?;
    let cfg = wdir.join("bench.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{}streams:\n  bench:\n    shards: 4\n    buffering: {{ size_mb: 8, interval_secs: 1 }}\n{stream}",
            wdir.join("data").display(),
            garage.store_yaml()
        ),
    )?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    let pid = child.id();
    let per_request = if w.ndjson { 2000 } else { 500 };
    let pool = requests(w, 64, per_request)?;
    eprintln!(
        "{}: saturation, {} clients, {} s",
        w.id, args.clients, args.secs
    );

    // 1. Saturation, closed loop.
    let cpu0 = cpu_seconds(pid);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, url, pool, stop) = (http.clone(), url.clone(), pool.clone(), stop.clone());
        let ndjson = w.ndjson;
        tasks.push(tokio::spawn(async move {
            let (mut recs, mut bytes, mut failed) = (0u64, 0u64, 0u64);
            let mut i = c;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = &pool[i % pool.len()];
                i += 7;
                match send(&http, &url, ndjson, r.body.clone()).await {
                    Some(_) => {
                        recs += r.records as u64;
                        bytes += r.bytes as u64;
                    }
                    None => failed += 1,
                }
            }
            (recs, bytes, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sat_records, mut sat_bytes) = (0u64, 0u64);
    for t in tasks {
        let (r, b, _) = t.await?;
        sat_records += r;
        sat_bytes += b;
    }
    let ingest_secs = start.elapsed().as_secs_f64();
    let done = wait_delivered(&http, &url, sat_records as f64).await?;
    let e2e_secs = done.duration_since(start).as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let delivered_rps = sat_records as f64 / e2e_secs;
    let delivered_mbps = sat_bytes as f64 / e2e_secs / 1e6;

    // 2 and 3. Half load, open loop, with the freshness watcher.
    let rate = delivered_rps / 2.0;
    let interval = Duration::from_secs_f64(per_request as f64 / rate);
    eprintln!(
        "{}: {:.0} records/s delivered; half load: {:.0} records/s for {} s",
        w.id, delivered_rps, rate, args.half_secs
    );
    let seen: Seen = Arc::default();
    let watch_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = if w.s3 {
        Some(garage.store(&bucket)?)
    } else {
        None
    };
    let watcher = watch(store, out_dir.clone(), seen.clone(), watch_stop.clone());
    let before = metric(&http, &url, "hydrant_delivery_records_total").await?;
    let op = if w.ndjson {
        "NdjsonPut"
    } else {
        "PutRecordBatch"
    };
    let buckets_before = latency_buckets(&http, &url, op).await?;
    let half_start = Instant::now() + Duration::from_millis(200);
    let count = (args.half_secs as f64 / interval.as_secs_f64()).ceil() as usize;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4096));
    // The generator runs on threads of its own at a higher priority than the
    // daemon and the store (nice -5 where allowed): producers stand for other
    // machines, and their lateness would count against every request they
    // delay. The pacer sleeps to each request's time (nanosleep; tokio's
    // timer rounds up to whole milliseconds); the sends run on a runtime of
    // their own, its workers at the same priority. Its lag is reported.
    let generator = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(raise_priority)
        .build()?;
    let spawner = generator.handle().clone();
    let gen_http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let ndjson = w.ndjson;
    let url2 = url.clone();
    let sends = tokio::task::spawn_blocking(move || {
        raise_priority();
        let mut sends = Vec::with_capacity(count);
        for i in 0..count {
            let due = half_start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let now = Instant::now();
                sends.push(spawner.spawn(async move { (due, now, now, None, 0) }));
                continue;
            };
            let (http, url) = (gen_http.clone(), url2.clone());
            let r = pool[i % pool.len()].clone();
            sends.push(spawner.spawn(async move {
                let began = Instant::now();
                let sent = send(&http, &url, ndjson, r.body).await;
                drop(permit);
                let end = sent.as_ref().map_or_else(Instant::now, |(_, at)| *at);
                (due, began, end, sent.map(|(placed, _)| placed), r.records)
            }));
        }
        sends
    })
    .await?;
    let mut lat = Vec::with_capacity(count);
    let mut placed = Vec::new();
    let mut failed = 0u64;
    let mut half_records = 0u64;
    let mut lag = Vec::with_capacity(count);
    for s in sends {
        let (due, began, end, p, n) = s.await?;
        lag.push(began.saturating_duration_since(due));
        match p {
            Some(p) => {
                lat.push(end.duration_since(due));
                placed.push((p, n, due));
                half_records += n as u64;
            }
            None => failed += 1,
        }
    }
    generator.shutdown_background();
    let buckets_after = latency_buckets(&http, &url, op).await?;
    let server_p99 = bucket_quantile(&buckets_before, &buckets_after, 0.99) * 1e3;
    wait_delivered(&http, &url, before + half_records as f64).await?;
    // One more listing after delivery.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await?;
    lat.sort();
    lag.sort();
    eprintln!(
        "{}: generator's lag p50 / p99 / max: {:?} / {:?} / {:?}",
        w.id,
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        lag.last().copied().unwrap_or_default()
    );
    let mut fresh = Vec::new();
    // About 200,000 records sampled evenly.
    let step = (half_records / 200_000).max(1) as usize;
    if let Ok(g) = seen.lock() {
        for ((shard, first), n, due) in &placed {
            let Some(objs) = g.get(shard) else { continue };
            for off in (*first..*first + *n as u64).step_by(step) {
                // The latest-seen object holding the offset: exact without
                // partitions, an upper bound with them.
                let at = objs
                    .iter()
                    .filter(|(a, b, _)| *a <= off && off <= *b)
                    .map(|(_, _, t)| *t)
                    .max();
                if let Some(at) = at {
                    fresh.push(at.saturating_duration_since(*due));
                }
            }
        }
    }
    fresh.sort();
    let rss = peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    child.wait()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu_stages: Vec<&Stage> = w
        .stages
        .iter()
        .filter_map(|name| ceilings.iter().find(|s| s.name == *name))
        .filter(|s| s.per_core)
        .collect();
    let cpu_ceiling = if cpu_stages.is_empty() {
        0.0
    } else {
        cores / cpu_stages.iter().map(|s| 1.0 / s.mb_per_sec).sum::<f64>()
    };
    let (slowest, ceiling) = w
        .stages
        .iter()
        .filter_map(|name| ceilings.iter().find(|s| s.name == *name))
        .map(|s| {
            let cores = if s.per_core {
                std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
            } else {
                1.0
            };
            (s.name.clone(), s.mb_per_sec * cores)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let _ = std::fs::remove_dir_all(&wdir);
    Ok(WorkloadResult {
        id: w.id.into(),
        description: w.description.into(),
        record_bytes: w.record_bytes,
        ingest_records_per_sec: sat_records as f64 / ingest_secs,
        ingest_mb_per_sec: sat_bytes as f64 / ingest_secs / 1e6,
        delivered_records_per_sec: delivered_rps,
        delivered_mb_per_sec: delivered_mbps,
        half_load_records_per_sec: half_records as f64 / args.half_secs as f64,
        ack_p50_ms: ms(percentile(&lat, 0.5)),
        ack_p99_ms: ms(percentile(&lat, 0.99)),
        ack_p999_ms: ms(percentile(&lat, 0.999)),
        ack_failed: failed,
        freshness_p50_ms: ms(percentile(&fresh, 0.5)),
        freshness_p99_ms: ms(percentile(&fresh, 0.99)),
        peak_rss_mib: rss,
        cpu_seconds_per_gb: cpu / (sat_bytes as f64 / 1e9),
        slowest_stage: slowest,
        ceiling_mb_per_sec: ceiling,
        fraction_of_ceiling: if ceiling > 0.0 {
            delivered_mbps / ceiling
        } else {
            0.0
        },
        cpu_ceiling_mb_per_sec: cpu_ceiling,
        fraction_of_cpu_ceiling: if cpu_ceiling > 0.0 {
            delivered_mbps / cpu_ceiling
        } else {
            0.0
        },
        server_ack_p99_ms_at_most: server_p99,
        send_lag_p99_ms: ms(percentile(&lag, 0.99)),
    })
}

/// Nice -5 and a 100 µs time slice for the calling thread, or the slice
/// alone where a lower nice value is not allowed: on a busy machine the
/// generator is woken on time.
fn raise_priority() {
    if hydrant::sched::set_thread(Some(-5), 100_000).is_err() {
        let _ = hydrant::sched::set_thread(None, 100_000);
    }
}

fn machine() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{}-{cores}c-{}g",
        if host.is_empty() { "host" } else { &host },
        (mem as f64 / 1048576.0).round()
    )
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let wasm = std::fs::canonicalize("transforms/examples/rust/transform.wasm").context(
        "transforms/examples/rust/transform.wasm is missing: build it with transforms/examples/rust/build.sh",
    )?;
    let garage = Garage::start(&args.garage, &args.dir.join("garage"))?;
    eprintln!("stage ceilings (one core each; disk and store as a whole)");
    let ceilings = stage_ceilings(&args.dir, &garage, &wasm, 100_000).await?;
    let mut results = Vec::new();
    for w in workloads() {
        if !args.workloads.is_empty() && !args.workloads.iter().any(|x| x == w.id) {
            continue;
        }
        results.push(run_workload(&args, &w, &garage, &ceilings, &wasm).await?);
    }
    drop(garage);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nStage ceilings (one core; disk and store as a whole):\n");
    println!("| stage | MB/s | records/s |");
    println!("|---|---|---|");
    for s in &ceilings {
        println!(
            "| {}{} | {:.1} | {:.0} |",
            s.name,
            if s.per_core { "" } else { " (whole machine)" },
            s.mb_per_sec,
            s.records_per_sec
        );
    }
    println!(
        "\nWorkloads ({} s at saturation with {} clients, {} s at half load, {cores} cores):\n",
        args.secs, args.clients, args.half_secs
    );
    println!(
        "| workload | ingest rec/s | delivered rec/s | delivered MB/s | slowest stage (x{cores} cores if CPU) | of it | CPU stages in series (x{cores}) | of it | ack p50/p99/p99.9 at half load | daemon's p99 | generator's lag p99 | freshness p50/p99 | peak RSS | CPU s/GB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} {} | {:.0} | {:.0} | {:.1} | {} {:.0} MB/s | {:.0}% | {:.0} MB/s | {:.0}% | {:.1} / {:.1} / {:.1} ms{} | ≤ {:.1} ms | {:.2} ms | {:.0} / {:.0} ms | {:.0} MiB | {:.1} |",
            r.id,
            r.description,
            r.ingest_records_per_sec,
            r.delivered_records_per_sec,
            r.delivered_mb_per_sec,
            r.slowest_stage,
            r.ceiling_mb_per_sec,
            r.fraction_of_ceiling * 100.0,
            r.cpu_ceiling_mb_per_sec,
            r.fraction_of_cpu_ceiling * 100.0,
            r.ack_p50_ms,
            r.ack_p99_ms,
            r.ack_p999_ms,
            if r.ack_failed > 0 {
                format!(" ({} failed)", r.ack_failed)
            } else {
                String::new()
            },
            r.server_ack_p99_ms_at_most,
            r.send_lag_p99_ms,
            r.freshness_p50_ms,
            r.freshness_p99_ms,
            r.peak_rss_mib,
            r.cpu_seconds_per_gb
        );
    }
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let machine = machine();
    std::fs::create_dir_all(&args.results)?;
    let path = args.results.join(format!("{date}-{machine}.json"));
    let doc = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine,
        "cores": cores,
        "version": env!("CARGO_PKG_VERSION"),
        "commit": Command::new("git").args(["rev-parse", "--short", "HEAD"]).stderr(Stdio::null()).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        "saturation_secs": args.secs,
        "half_load_secs": args.half_secs,
        "clients": args.clients,
        "stages": ceilings,
        "workloads": results,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    println!("\nwritten to {}", path.display());
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}
