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

//!
//! This module runs the suite: the stage ceilings ([`crate::stages`]), then
//! each workload ([`crate::workloads`]) through its phases, then the report
//! ([`crate::report`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::daemon::{free_port, peak_rss_kib, settle, start_daemon, stop};
use crate::garage::Garage;
use crate::load::percentile;
use crate::report::{self, WorkloadResult};
use crate::stages::{self, Stage};
use crate::workloads::freshness::{Seen, freshness, watch};
use crate::workloads::half_load::{self, HalfLoad};
use crate::workloads::requests::{Request, requests};
use crate::workloads::{self, Workload, errors_prefix, saturation};

/// What the suite runs.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "target/release/hydrant")]
    pub hydrant: PathBuf,
    /// The Garage binary (scripts/test.sh installs it in ~/.cargo/bin).
    #[arg(long)]
    pub garage: Option<PathBuf>,
    #[arg(long, default_value = "/tmp/hydrant-bench-suite")]
    pub dir: PathBuf,
    /// Where Garage keeps its data and metadata: in `garage/` under this
    /// directory (made, and removed after, by the suite; nothing else in it
    /// is touched); by default under `--dir`, on the log's own disk. A
    /// directory on another device stands for a
    /// store on other machines (on a machine with one disk, tmpfs:
    /// `/dev/shm/...`). Every `fdatasync` of the log waits for the disk's
    /// cache to take whatever else was written to it, so a store on the
    /// same disk adds its writes to the acknowledgements' tail.
    #[arg(long)]
    pub store_dir: Option<PathBuf>,
    /// The nice value the store runs at. It stands for a store on other
    /// machines: at nice 0 its bursts (a whole object received, hashed and
    /// written at once) preempt the daemon's acknowledgement path on the
    /// cores they share, which a store elsewhere would not; its CPU is
    /// still counted beside the daemon's. 0 runs it as any process.
    #[arg(long, default_value_t = 10)]
    pub store_nice: i32,
    #[arg(long, default_value = "bench/results")]
    pub results: PathBuf,
    /// Seconds of the saturation phase.
    #[arg(long, default_value_t = 15)]
    pub secs: u64,
    /// Seconds of the half-load phase (latency, freshness).
    // Long enough for a stable p99.9.
    #[arg(long, default_value_t = 30)]
    pub half_secs: u64,
    /// The half load in records/s, instead of half the rate delivered at
    /// saturation: to compare two builds at one load.
    #[arg(long)]
    pub half_rate: Option<f64>,
    /// Closed-loop producers at saturation.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Only these workloads (W1..W6, W1-at-rest, W4-at-rest); all by default.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
}

/// The stage ceilings, every workload asked for, then the tables and the
/// results file.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let garage_bin = garage_bin(args.garage.clone());
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let wasm = std::fs::canonicalize("transforms/examples/rust/transform.wasm").context(
        "transforms/examples/rust/transform.wasm is missing: build it with transforms/examples/rust/build.sh",
    )?;
    let store_dir = args.store_dir.as_ref().unwrap_or(&args.dir).join("garage");
    let _ = std::fs::remove_dir_all(&store_dir);
    let garage = Garage::start(&garage_bin, &store_dir, args.store_nice)?;
    let store = report::StoreDir::of(&store_dir, &args.dir, args.store_nice);
    eprintln!(
        "store's data in {} ({}), the store at nice {}",
        store.path, store.filesystem, store.nice
    );
    eprintln!("latency floor (idle machine)");
    let floor = stages::floor::measure(&args.dir, 3)?;
    eprintln!("stage ceilings (one core each; disk and store as a whole)");
    let ceilings = stages::ceilings(&args.dir, &garage, &wasm, 100_000).await?;
    let mut results = Vec::new();
    for w in workloads::all() {
        if !args.workloads.is_empty() && !args.workloads.iter().any(|x| x == w.id) {
            continue;
        }
        results.push(run_workload(&args, &w, &garage, &ceilings, &wasm).await?);
    }
    drop(garage);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    report::print_tables(&args, cores, &ceilings, &floor, &results);
    println!(
        "\nThe store's data: {} ({}); the store ran at nice {}",
        store.path, store.filesystem, store.nice
    );
    let path = report::write(&args, &ceilings, &floor, &store, &results)?;
    println!("\nwritten to {}", path.display());
    let _ = std::fs::remove_dir_all(&args.dir);
    let _ = std::fs::remove_dir_all(&store_dir);
    Ok(())
}

/// `--garage`, else `garage` on PATH, else `~/.cargo/bin/garage`, else
/// `garage`.
fn garage_bin(garage: Option<PathBuf>) -> PathBuf {
    garage
        .or_else(|| which("garage"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/garage")))
        .unwrap_or_else(|| PathBuf::from("garage"))
}

/// The first `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The daemon running one workload's config.
struct Running {
    wdir: PathBuf,
    bucket: String,
    out_dir: PathBuf,
    url: String,
    http: reqwest::Client,
    child: std::process::Child,
    pid: u32,
}

/// One workload: saturation, then half load with freshness, then the
/// figures beside the ceilings of its stages.
async fn run_workload(
    args: &Args,
    w: &Workload,
    garage: &Garage,
    ceilings: &[Stage],
    wasm: &Path,
) -> anyhow::Result<WorkloadResult> {
    let mut d = start(args, w, garage, wasm).await?;
    let per_request = if w.ndjson { 2000 } else { 500 };
    let pool = requests(w, 64, per_request)?;
    eprintln!(
        "{}: saturation, {} clients, {} s",
        w.id, args.clients, args.secs
    );

    // 1. Saturation, closed loop.
    let sat = saturation::run(
        &d.http,
        &d.url,
        saturation::Processes {
            daemon: d.pid,
            store: w.s3.then(|| garage.pid()),
        },
        w.ndjson,
        &pool,
        args.clients,
        args.secs,
    )
    .await?;
    let delivered_rps = sat.records as f64 / sat.e2e_secs;
    let delivered_mbps = sat.bytes as f64 / sat.e2e_secs / 1e6;

    // 2 and 3. Half load, open loop, with the freshness watcher.
    let rate = args
        .half_rate
        .filter(|r| *r > 0.0)
        .unwrap_or(delivered_rps / 2.0);
    let interval = Duration::from_secs_f64(per_request as f64 / rate);
    eprintln!(
        "{}: {:.0} records/s delivered; half load: {:.0} records/s for {} s",
        w.id, delivered_rps, rate, args.half_secs
    );
    let (half, fresh) = half_load_watched(args, w, garage, &d, pool, interval).await?;
    let rss = peak_rss_kib(d.pid).unwrap_or(0) as f64 / 1024.0;
    if w.iceberg {
        print_commits(w, &d).await?;
    }
    stop(&mut d.child)?;
    let (cpu_ceiling, slowest, ceiling) = workload_ceilings(w.stages, ceilings);
    let with_ingest: Vec<&str> = w.stages.iter().copied().chain(w.ingest_stage()).collect();
    let (cpu_ceiling_with_ingest, _, _) = workload_ceilings(&with_ingest, ceilings);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let others = (sat.generator_cpu + sat.store_cpu) / sat.e2e_secs;
    let fraction = |ceiling: f64| {
        if ceiling > 0.0 {
            delivered_mbps / ceiling
        } else {
            0.0
        }
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let _ = std::fs::remove_dir_all(&d.wdir);
    Ok(WorkloadResult {
        id: w.id.into(),
        description: w.description.into(),
        record_bytes: w.record_bytes,
        ingest_records_per_sec: sat.records as f64 / sat.ingest_secs,
        ingest_mb_per_sec: sat.bytes as f64 / sat.ingest_secs / 1e6,
        delivered_records_per_sec: delivered_rps,
        delivered_mb_per_sec: delivered_mbps,
        half_load_records_per_sec: half.records as f64 / args.half_secs as f64,
        ack_p50_ms: ms(percentile(&half.lat, 0.5)),
        ack_p99_ms: ms(percentile(&half.lat, 0.99)),
        ack_p999_ms: ms(percentile(&half.lat, 0.999)),
        ack_failed: half.failed,
        // An Iceberg table's files are listed before their commit.
        freshness_p50_ms: if w.iceberg {
            f64::NAN
        } else {
            ms(percentile(&fresh, 0.5))
        },
        freshness_p99_ms: if w.iceberg {
            f64::NAN
        } else {
            ms(percentile(&fresh, 0.99))
        },
        peak_rss_mib: rss,
        cpu_seconds_per_gb: sat.cpu / (sat.bytes as f64 / 1e9),
        slowest_stage: slowest,
        ceiling_mb_per_sec: ceiling,
        fraction_of_ceiling: fraction(ceiling),
        cpu_ceiling_mb_per_sec: cpu_ceiling,
        fraction_of_cpu_ceiling: fraction(cpu_ceiling),
        cpu_ceiling_with_ingest_mb_per_sec: cpu_ceiling_with_ingest,
        fraction_of_cpu_ceiling_with_ingest: fraction(cpu_ceiling_with_ingest),
        generator_cores: sat.generator_cpu / sat.e2e_secs,
        store_cores: sat.store_cpu / sat.e2e_secs,
        fraction_of_cores_left: fraction(
            cpu_ceiling_with_ingest * (cores - others).max(0.0) / cores,
        ),
        server_ack_p99_ms_at_most: half.server_p99,
        log_sync_p99_ms_at_most: half.sync_p99,
        send_lag_p99_ms: ms(percentile(&half.lag, 0.99)),
    })
}

/// An Iceberg workload's commits over the whole run: how many, their mean
/// and p99 latency (from the histogram), files per commit, bytes per file.
async fn print_commits(w: &Workload, d: &Running) -> anyhow::Result<()> {
    let text = crate::metrics::metrics_text(&d.http, &d.url).await?;
    let s = |name: &str| crate::metrics::sum(&text, name, "");
    let commits = s("hydrant_iceberg_commits_total");
    let files = s("hydrant_iceberg_committed_files_total");
    let bytes = s("hydrant_iceberg_committed_bytes_total");
    let records = s("hydrant_iceberg_committed_records_total");
    let secs = s("hydrant_iceberg_commit_seconds_sum");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("hydrant_iceberg_commit_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p99 = buckets
        .iter()
        .find(|(_, n)| *n >= commits * 0.99)
        .map_or(f64::NAN, |(le, _)| *le);
    eprintln!(
        "{}: {commits} commits of {records} records; commit latency mean {:.0} ms, p99 <= {:.0} ms; {:.1} files per commit, {:.0} KiB per file",
        w.id,
        secs / commits.max(1.0) * 1e3,
        p99 * 1e3,
        files / commits.max(1.0),
        bytes / files.max(1.0) / 1024.0
    );
    Ok(())
}

/// A fresh directory for the workload, its bucket or output directory, and
/// the daemon started on its config.
async fn start(args: &Args, w: &Workload, garage: &Garage, wasm: &Path) -> anyhow::Result<Running> {
    let wdir = args.dir.join(w.id);
    // Each workload starts on a quiet disk: what the previous one wrote (its
    // log and output, Garage's objects) would otherwise be written back
    // during this one's half-load phase and timed as this one's fsyncs.
    settle(&wdir).await;
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
    let catalog = if w.iceberg {
        format!(
            "iceberg:\n  catalogs:\n    lake:\n      uri: sqlite://{}\n      warehouse: s3://{bucket}/warehouse\n",
            wdir.join("catalog.db").display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{}{catalog}streams:\n  bench:\n    shards: 4\n    buffering: {{ size_mb: 8, interval_secs: 1 }}\n{stream}",
            wdir.join("data").display(),
            garage.store_yaml()
        ),
    )?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    let pid = child.id();
    Ok(Running {
        wdir,
        bucket,
        out_dir,
        url,
        http,
        child,
        pid,
    })
}

/// The half-load phase with the freshness watcher listing the destination
/// throughout, and one more listing after delivery. The acknowledgement
/// times and the generator's lag come back sorted, with the freshness.
async fn half_load_watched(
    args: &Args,
    w: &Workload,
    garage: &Garage,
    d: &Running,
    pool: Vec<Request>,
    interval: Duration,
) -> anyhow::Result<(HalfLoad, Vec<Duration>)> {
    let seen: Seen = Arc::default();
    let watch_stop = Arc::new(AtomicBool::new(false));
    let store = if w.s3 {
        Some(garage.store(&d.bucket)?)
    } else {
        None
    };
    let watcher = watch(store, d.out_dir.clone(), seen.clone(), watch_stop.clone());
    let mut half =
        half_load::run(&d.http, &d.url, w.ndjson, pool, interval, args.half_secs).await?;
    // One more listing after delivery.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch_stop.store(true, Ordering::Relaxed);
    watcher.await?;
    half.lat.sort();
    half.lag.sort();
    eprintln!(
        "{}: generator's lag p50 / p99 / max: {:?} / {:?} / {:?}",
        w.id,
        percentile(&half.lag, 0.5),
        percentile(&half.lag, 0.99),
        half.lag.last().copied().unwrap_or_default()
    );
    let fresh = freshness(&seen, &half.placed, half.records);
    Ok((half, fresh))
}

/// The workload's ceilings from the stages it goes through: the CPU stages
/// in series on every core, and the slowest stage (times the cores if it
/// is CPU work) with its name.
fn workload_ceilings(stages: &[&str], ceilings: &[Stage]) -> (f64, String, f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu_stages: Vec<&Stage> = stages
        .iter()
        .filter_map(|name| ceilings.iter().find(|s| s.name == *name))
        .filter(|s| s.per_core)
        .collect();
    let cpu_ceiling = if cpu_stages.is_empty() {
        0.0
    } else {
        cores / cpu_stages.iter().map(|s| 1.0 / s.mb_per_sec).sum::<f64>()
    };
    let (slowest, ceiling) = stages
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
    (cpu_ceiling, slowest, ceiling)
}
