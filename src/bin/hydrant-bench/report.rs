//! The suite's report: what each workload measured (the shape of the
//! results file), the two tables printed at the end with W1 against zlib at
//! level 6, and the results files `<date>-<machine>[-<suffix>].json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use serde_json::{Value, json};

use crate::stages::Stage;
use crate::stages::compress::ZLIB_6;
use crate::stages::floor::Floor;
use crate::suite::Args;

/// What one workload measured: an entry of the results file's `workloads`.
#[derive(Debug, Serialize)]
pub struct WorkloadResult {
    pub id: String,
    pub description: String,
    pub record_bytes: usize,
    pub ingest_records_per_sec: f64,
    pub ingest_mb_per_sec: f64,
    pub delivered_records_per_sec: f64,
    pub delivered_mb_per_sec: f64,
    pub half_load_records_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub ack_failed: u64,
    pub freshness_p50_ms: f64,
    pub freshness_p99_ms: f64,
    pub peak_rss_mib: f64,
    pub cpu_seconds_per_gb: f64,
    pub slowest_stage: String,
    pub ceiling_mb_per_sec: f64,
    pub fraction_of_ceiling: f64,
    /// The CPU stages one after another on every core: cores / sum(1/rate).
    pub cpu_ceiling_mb_per_sec: f64,
    pub fraction_of_cpu_ceiling: f64,
    /// The same with the ingest stage (the `PutRecordBatch` parser) in the
    /// series: every record of the saturation phase goes through it on the
    /// same cores.
    pub cpu_ceiling_with_ingest_mb_per_sec: f64,
    pub fraction_of_cpu_ceiling_with_ingest: f64,
    /// Cores the generator (the bench process) and the object store used on
    /// average over the saturation phase, on the daemon's machine.
    pub generator_cores: f64,
    pub store_cores: f64,
    /// Delivered MB/s over the ceiling with ingest scaled to the cores the
    /// generator and the store left to the daemon.
    pub fraction_of_cores_left: f64,
    /// The daemon's own p99 acknowledgement time at half load, as an upper
    /// bound from its `put_latency_seconds` histogram (buckets √2 apart).
    pub server_ack_p99_ms_at_most: f64,
    /// The p99 of the daemon's group commits (write + fdatasync) at half
    /// load, as an upper bound from its `log_sync_seconds` histogram: the
    /// disk's share of an acknowledgement.
    pub log_sync_p99_ms_at_most: f64,
    /// How late the generator began a request after its scheduled time, p99:
    /// the generator's own error, included in the acknowledgement times.
    pub send_lag_p99_ms: f64,
}

/// The stage ceilings, the latency floor, then the workloads, as Markdown
/// tables.
pub fn print_tables(
    args: &Args,
    cores: usize,
    ceilings: &[Stage],
    floor: &Floor,
    results: &[WorkloadResult],
) {
    println!("\nStage ceilings (one core; disk and store as a whole):\n");
    println!("| stage | MB/s | records/s |");
    println!("|---|---|---|");
    for s in ceilings {
        println!(
            "| {}{} | {:.1} | {:.0} |",
            s.name,
            if s.per_core { "" } else { " (whole machine)" },
            s.mb_per_sec,
            s.records_per_sec
        );
    }
    println!("\nLatency floor of this machine, idle (ms):\n");
    println!(
        "| wake-up after a 1 ms sleep p50 / p99 / p99.9 | 512 KiB write + fdatasync p50 / p99 / max |"
    );
    println!("|---|---|");
    let (wake, sync) = floor.cells();
    println!("| {wake} | {sync} |");
    println!(
        "\nWorkloads ({} s at saturation with {} clients, {} s at half load, {cores} cores):\n",
        args.secs, args.clients, args.half_secs
    );
    println!(
        "| workload | ingest rec/s | delivered rec/s | delivered MB/s | slowest stage (x{cores} cores if CPU) | of it | CPU stages in series (x{cores}) | of it | ack p50/p99/p99.9 at half load | daemon's p99 / its log syncs' p99 | generator's lag p99 | freshness p50/p99 | peak RSS | CPU s/GB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        print_workload_row(r);
    }
    println!(
        "\nWhere the {cores} cores went at saturation (the generator and the store share them with the daemon):\n"
    );
    println!(
        "| workload | CPU stages with ingest in series | of it | daemon cores | generator cores | store cores | of that ceiling on the cores left |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {:.0} MB/s | {:.0}% | {:.2} | {:.2} | {:.2} | {:.0}% |",
            r.id,
            r.cpu_ceiling_with_ingest_mb_per_sec,
            r.fraction_of_cpu_ceiling_with_ingest * 100.0,
            r.cpu_seconds_per_gb * r.delivered_mb_per_sec / 1e3,
            r.generator_cores,
            r.store_cores,
            r.fraction_of_cores_left * 100.0
        );
    }
    if let Some(x) = w1_vs_zlib6(ceilings, results) {
        println!("\nW1 delivered MB/s ÷ {ZLIB_6} MB/s per core: {x:.2}");
    }
}

/// W1's delivered MB/s over the zlib level 6 stage's (one core): W1 against
/// the gzip Hydrant used to run. None without both.
pub fn w1_vs_zlib6(ceilings: &[Stage], results: &[WorkloadResult]) -> Option<f64> {
    let w1 = results.iter().find(|r| r.id == "W1")?;
    let zlib = ceilings.iter().find(|s| s.name == ZLIB_6)?;
    (zlib.mb_per_sec > 0.0).then(|| w1.delivered_mb_per_sec / zlib.mb_per_sec)
}

fn print_workload_row(r: &WorkloadResult) {
    println!(
        "| {} {} | {:.0} | {:.0} | {:.1} | {} {:.0} MB/s | {:.0}% | {:.0} MB/s | {:.0}% | {:.1} / {:.1} / {:.1} ms{} | ≤ {:.1} / ≤ {:.1} ms | {:.2} ms | {:.0} / {:.0} ms | {:.0} MiB | {:.1} |",
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
        r.log_sync_p99_ms_at_most,
        r.send_lag_p99_ms,
        r.freshness_p50_ms,
        r.freshness_p99_ms,
        r.peak_rss_mib,
        r.cpu_seconds_per_gb
    );
}

/// Writes `<results>/<date>-<machine>.json`; its path.
pub fn write(
    args: &Args,
    ceilings: &[Stage],
    floor: &Floor,
    store: &StoreDir,
    results: &[WorkloadResult],
) -> anyhow::Result<PathBuf> {
    write_json(
        &args.results,
        "",
        json!({
            "saturation_secs": args.secs,
            "half_load_secs": args.half_secs,
            "clients": args.clients,
            "stages": ceilings,
            "latency_floor": floor,
            "store_dir": store,
            "workloads": results,
            "w1_vs_zlib6": w1_vs_zlib6(ceilings, results),
        }),
    )
}

/// Where the store kept its data, and on what: a store on the log's disk
/// adds its writes to every `fdatasync` of the log.
#[derive(serde::Serialize)]
pub struct StoreDir {
    pub path: String,
    /// The filesystem type of the mount the directory is on (`ext4`,
    /// `tmpfs`, ...), from `/proc/mounts`; `unknown` if not found.
    pub filesystem: String,
    /// Whether that mount is the one the daemon's log is on (`--dir`).
    pub same_mount_as_log: bool,
    /// The nice value the store ran at (`--store-nice`).
    pub nice: i32,
}

impl StoreDir {
    /// `dir`, where the store keeps its data, against `log_dir`, where the
    /// daemon keeps its log; the store ran at `nice`.
    pub fn of(dir: &Path, log_dir: &Path, nice: i32) -> StoreDir {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        // The longest mount point the path is under: (mount point, type).
        let mount_of = |p: &Path| {
            mounts
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (_, at, fs) = (f.next()?, f.next()?, f.next()?);
                    p.starts_with(at).then_some((at, fs))
                })
                .max_by_key(|(at, _)| at.len())
        };
        let path = canonical(dir);
        let store = mount_of(&path);
        let log = mount_of(&canonical(log_dir));
        StoreDir {
            path: path.display().to_string(),
            filesystem: store.map_or("unknown", |(_, fs)| fs).to_string(),
            same_mount_as_log: store.is_some() && store.map(|s| s.0) == log.map(|l| l.0),
            nice,
        }
    }
}

/// Writes `<dir>/<date>-<machine><suffix>.json`: the run's date, machine,
/// cores, version and commit, then the fields of `fields` (an object); its
/// path.
pub fn write_json(dir: &Path, suffix: &str, fields: Value) -> anyhow::Result<PathBuf> {
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let machine = machine();
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{date}-{machine}{suffix}.json"));
    let mut doc = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": Command::new("git").args(["rev-parse", "--short", "HEAD"]).stderr(Stdio::null()).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
    });
    if let (Some(d), Value::Object(f)) = (doc.as_object_mut(), fields) {
        d.extend(f);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    Ok(path)
}

/// `<hostname>-<cores>c-<memory GiB>g`, naming the results file.
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
