//! `hydrant-bench video`: Kinesis Video Streams on the real daemon.
//!
//! 1. **PutMedia sessions until the machine saturates.** The test media
//!    (H.264 at about 2 Mbit/s, one fragment a second, made once with
//!    ffmpeg: [`media`]) is uploaded by N concurrent sessions, one stream
//!    each, every session pacing the file at its own bitrate for its whole
//!    length ([`session`]), starts spread over one fragment's duration.
//!    N doubles from 1 until a level delivers less than 95% of what it
//!    offered, has a p99 above 1 s, loses or refuses a fragment, or reaches
//!    `--max-sessions`; each level runs on a daemon of its own. A
//!    fragment's latency is from when the chunk with its last byte (and the
//!    next Cluster's Timecode, which completes it) was written to when its
//!    `PERSISTED` acknowledgement (after fsync) arrived.
//! 2. **HLS serving** against its ceiling, the daemon's per-segment remux
//!    on one core ([`hls`]).
//!
//! Prints the tables and writes `<results>/<date>-<machine>-video.json`.

mod hls;
mod media;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use serde_json::json;

use crate::daemon::{bench_config, cpu_seconds, peak_rss_kib, settle, start_daemon, stop};
use crate::load::{json_reply, percentile};
use crate::report::write_json;
use media::Media;
use session::{Outcome, Plan, put_media};

#[derive(clap::Args)]
pub struct Args {
    /// The daemon binary.
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    /// Scratch directory for the media and the daemon's config and data.
    #[arg(long, default_value = "/tmp/hydrant-bench-video")]
    dir: PathBuf,
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: PathBuf,
    /// Seconds of media: what each session uploads, in real time.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// The media's frame size.
    #[arg(long, default_value = "1280x720")]
    size: String,
    /// The media's bitrate, kbit/s.
    #[arg(long, default_value_t = 2000)]
    kbps: u32,
    /// How often a session sends a chunk, ms.
    #[arg(long, default_value_t = 40)]
    chunk_ms: u64,
    /// The most concurrent sessions (the last level).
    #[arg(long, default_value_t = 256)]
    max_sessions: usize,
    /// HLS rounds: concurrent clients fetching segments, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    hls_clients: Vec<usize>,
    /// Seconds of each HLS round.
    #[arg(long, default_value_t = 10)]
    hls_secs: u64,
    /// Seconds of the in-process remux ceiling.
    #[arg(long, default_value_t = 5)]
    ceiling_secs: u64,
}

/// What one level of concurrent sessions measured.
#[derive(Debug, Serialize)]
struct Level {
    sessions: usize,
    offered_mbps: f64,
    /// Per session, the bytes of its persisted fragments over the time from
    /// its start to its last `PERSISTED`; summed over the sessions.
    achieved_mbps: f64,
    fragments: usize,
    /// Fragments without `PERSISTED`, or refused with `ERROR`.
    failures: usize,
    error_acks: u64,
    persisted_p50_ms: f64,
    persisted_p99_ms: f64,
    persisted_max_ms: f64,
    /// The daemon's CPU time over the level's, in % of one core.
    daemon_cpu_percent: f64,
    /// The bench's own, the same way (it shares the cores).
    bench_cpu_percent: f64,
    peak_rss_mib: f64,
    /// How late a session began writing a chunk after its scheduled time,
    /// p99: the bench's own lag, or an earlier write the daemon held back
    /// (it reads no more of a session's body while that session's last
    /// fragment is being made durable).
    send_lag_p99_ms: f64,
    /// Why the level ended the run, if it did.
    saturated: Option<String>,
}

/// A daemon for one measurement, with its video streams created.
struct Daemon {
    child: Child,
    url: String,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Daemon {
    /// Settles the disk, starts a daemon on a fresh data directory and
    /// creates `streams` (24 hours of retention: `PERSISTED` is sent for
    /// retained streams only).
    async fn start(args: &Args, streams: &[String]) -> anyhow::Result<Daemon> {
        let dir = args.dir.join("daemon");
        settle(&dir).await;
        let body = format!(
            "streams: {{}}\nvideo:\n  streams_max: {}\n",
            streams.len().max(100)
        );
        let (port, cfg) = bench_config(&dir, &body)?;
        let url = format!("http://127.0.0.1:{port}/");
        let http = reqwest::Client::builder().build()?;
        let child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
        let mut d = Daemon {
            child,
            url,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            http,
        };
        for s in streams {
            let req = json!({ "StreamName": s, "DataRetentionInHours": 24 });
            if let Err(e) = d.call("createStream", &req).await {
                let _ = d.stop();
                return Err(e);
            }
        }
        Ok(d)
    }

    /// One Kinesis Video API call (`POST /<operation>`); the reply's JSON.
    async fn call(&self, op: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .http
            .post(format!("{}{op}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        json_reply(op, resp).await
    }

    /// Stops the daemon; its peak RSS, MiB.
    fn stop(&mut self) -> anyhow::Result<f64> {
        let rss = peak_rss_kib(self.child.id()).unwrap_or(0) as f64 / 1024.0;
        stop(&mut self.child)?;
        Ok(rss)
    }
}

/// The media, each level of sessions until saturation, HLS serving and its
/// ceiling; the tables and the results file.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.secs == 0 || args.chunk_ms == 0 || args.max_sessions == 0 {
        bail!("--secs, --chunk-ms and --max-sessions must be above 0");
    }
    let path = args.dir.join(format!(
        "media-{}-{}k-{}s.mkv",
        args.size, args.kbps, args.secs
    ));
    let media = media::generate(&args.ffmpeg, &path, &args.size, args.kbps, args.secs)?;
    let chunk_bytes = (media.bytes.len() as f64 / media.secs * args.chunk_ms as f64 / 1e3) as usize;
    let plan = Arc::new(Plan::new(&media, chunk_bytes.max(1)));
    print_media(&media, plan.chunks.len());
    let mut levels = Vec::new();
    let mut n = 1;
    loop {
        eprintln!("{n} sessions");
        let l = level(&args, &media, &plan, n).await?;
        eprintln!(
            "  {:.1} of {:.1} Mbit/s, PERSISTED p99 {:.0} ms, {} failures",
            l.achieved_mbps, l.offered_mbps, l.persisted_p99_ms, l.failures
        );
        let done = l.saturated.is_some() || n >= args.max_sessions;
        levels.push(l);
        if done {
            break;
        }
        n = (n * 2).min(args.max_sessions);
    }
    print_levels(&levels);
    eprintln!("HLS");
    let hls = hls::serving(&args, plan.clone()).await?;
    let (bytes, secs) = (media.bytes.clone(), args.ceiling_secs);
    let ceiling = tokio::task::spawn_blocking(move || hls::remux_ceiling(&bytes, secs)).await??;
    print_hls(&hls, &ceiling);
    let _ = std::fs::remove_dir_all(&args.dir);
    let path = write_json(
        &args.results,
        "-video",
        json!({
            "media": {
                "size": media.size, "fps": media.fps, "kbps_asked": media.kbps,
                "bytes": media.bytes.len(), "secs": media.secs, "mbps": media.mbps(),
                "fragments": media.clusters.len(), "chunk_ms": args.chunk_ms,
            },
            "put_media": levels,
            "hls": hls,
            "remux_ceiling": ceiling,
        }),
    )?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// One level: `n` sessions on a daemon of their own.
async fn level(args: &Args, media: &Media, plan: &Arc<Plan>, n: usize) -> anyhow::Result<Level> {
    let names: Vec<String> = (0..n).map(|i| format!("bench-{i}")).collect();
    let mut d = Daemon::start(args, &names).await?;
    let pid = d.child.id();
    let rate = media.bytes.len() as f64 / media.secs;
    let stagger = Duration::from_secs_f64(media.fragment_secs() / n as f64);
    let (cpu, own, t) = (
        cpu_seconds(pid),
        cpu_seconds(std::process::id()),
        Instant::now(),
    );
    let base = tokio::time::Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let (plan, addr) = (plan.clone(), d.addr);
            let start = base + stagger * i as u32;
            tokio::spawn(async move { put_media(addr, &name, plan, rate, start).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(e.into()),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let (cpu, own) = (
        cpu_seconds(pid) - cpu,
        cpu_seconds(std::process::id()) - own,
    );
    let rss = d.stop()?;
    if let Some(e) = failed {
        return Err(e.context(format!("a session of {n}")));
    }
    let mut l = summarize(&outcomes, plan, rate * 8.0 * n as f64 / 1e6);
    l.daemon_cpu_percent = cpu / secs * 100.0;
    l.bench_cpu_percent = own / secs * 100.0;
    l.peak_rss_mib = rss;
    l.saturated = saturated(&l);
    Ok(l)
}

/// A level's figures from its sessions' outcomes.
fn summarize(outcomes: &[Outcome], plan: &Plan, offered_mbps: f64) -> Level {
    let (mut lat, mut lag, mut achieved, mut failures) = (Vec::new(), Vec::new(), 0.0, 0);
    for o in outcomes {
        if let Some(why) = &o.broken {
            eprintln!("  a session ended early: {why}");
        }
        let mut bytes = 0u64;
        let mut last = None;
        for (k, (done, persisted)) in o.completed.iter().zip(&o.persisted).enumerate() {
            match persisted {
                Some(p) if !o.refused[k] => {
                    bytes += plan.fragment_bytes[k];
                    last = last.max(Some(*p));
                    if let Some(done) = done {
                        lat.push(p.saturating_duration_since(*done));
                    }
                }
                _ => failures += 1,
            }
        }
        if let Some(last) = last {
            achieved += bytes as f64 * 8.0 / 1e6 / last.duration_since(o.start).as_secs_f64();
        }
        lag.extend(&o.lag);
    }
    lat.sort();
    lag.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Level {
        sessions: outcomes.len(),
        offered_mbps,
        achieved_mbps: achieved,
        fragments: outcomes.len() * plan.timecodes.len(),
        failures,
        error_acks: outcomes.iter().map(|o| o.error_acks).sum(),
        persisted_p50_ms: ms(percentile(&lat, 0.5)),
        persisted_p99_ms: ms(percentile(&lat, 0.99)),
        persisted_max_ms: ms(lat.last().copied().unwrap_or_default()),
        daemon_cpu_percent: 0.0,
        bench_cpu_percent: 0.0,
        peak_rss_mib: 0.0,
        send_lag_p99_ms: ms(percentile(&lag, 0.99)),
        saturated: None,
    }
}

/// Why a level saturated the machine, if it did.
fn saturated(l: &Level) -> Option<String> {
    if l.failures > 0 {
        Some(format!("{} fragments failed", l.failures))
    } else if l.achieved_mbps < 0.95 * l.offered_mbps {
        Some(format!(
            "delivered {:.1}% of the offered rate",
            l.achieved_mbps / l.offered_mbps * 100.0
        ))
    } else if l.persisted_p99_ms > 1000.0 {
        Some(format!("p99 {:.0} ms is above 1 s", l.persisted_p99_ms))
    } else {
        None
    }
}

fn print_media(m: &Media, chunks: usize) {
    println!(
        "\nMedia: H.264 {} at {} frames/s, {} s, {} bytes: {:.3} Mbit/s ({} kbit/s asked); {} fragments of {:.0} KB on average; {chunks} chunks per upload\n",
        m.size,
        m.fps,
        m.secs,
        m.bytes.len(),
        m.mbps(),
        m.kbps,
        m.clusters.len(),
        m.bytes.len() as f64 / m.clusters.len() as f64 / 1e3,
    );
}

fn print_levels(levels: &[Level]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("PutMedia sessions ({cores} cores; CPU in % of one core):\n");
    println!(
        "| sessions | offered Mbit/s | achieved Mbit/s | fragments | PERSISTED p50 / p99 / max | failures | daemon CPU | bench CPU | peak RSS | send lag p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for l in levels {
        println!(
            "| {} | {:.1} | {:.1} | {} | {:.1} / {:.1} / {:.1} ms | {} | {:.0}% | {:.0}% | {:.0} MiB | {:.1} ms |",
            l.sessions,
            l.offered_mbps,
            l.achieved_mbps,
            l.fragments,
            l.persisted_p50_ms,
            l.persisted_p99_ms,
            l.persisted_max_ms,
            l.failures,
            l.daemon_cpu_percent,
            l.bench_cpu_percent,
            l.peak_rss_mib,
            l.send_lag_p99_ms,
        );
    }
    match levels
        .last()
        .and_then(|l| l.saturated.as_ref().map(|s| (l.sessions, s)))
    {
        Some((n, why)) => println!("\nSaturated at {n} sessions: {why}."),
        None => println!("\nNot saturated at the last level."),
    }
}

fn print_hls(h: &hls::Hls, c: &hls::Ceiling) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nHLS ON_DEMAND, {} segments of {:.0} KB on average (peak RSS {:.0} MiB):\n",
        h.segments,
        h.segment_bytes_mean / 1e3,
        h.peak_rss_mib
    );
    println!(
        "| clients | segments/s | MB/s | segment p50 / p99 | failed | daemon CPU | daemon CPU per MB | bench CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &h.rounds {
        println!(
            "| {} | {:.0} | {:.1} | {:.2} / {:.2} ms | {} | {:.0}% | {:.3} ms | {:.0}% |",
            r.clients,
            r.segments_per_sec,
            r.mb_per_sec,
            r.segment_p50_ms,
            r.segment_p99_ms,
            r.failed,
            r.daemon_cpu_percent,
            r.daemon_cpu_ms_per_mb,
            r.bench_cpu_percent
        );
    }
    println!(
        "| ceiling: record decode + MKV read + remux in process, one core (x{cores}: {:.0} MB/s) | {:.0} | {:.1} | | | 100% | {:.3} ms | |",
        c.mb_per_sec_per_core * cores as f64,
        c.segments_per_sec_per_core,
        c.mb_per_sec_per_core,
        1e3 / c.mb_per_sec_per_core.max(1e-9)
    );
}
