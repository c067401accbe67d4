//! `hydrant-bench kinesis --measure split`: what a `SplitShard` costs
//! producers. Closed-loop clients put to a stream (`PutRecords`) for
//! `--split-secs`, every call's start and latency kept; halfway, one shard is
//! split at the middle of its hash-key range (from `ListShards`). A split
//! takes the stream's gate alone (no put in flight), seals the parent, opens
//! the children and persists the new shard map before it answers, so every
//! producer waits for it. Reported: how long the call took, the longest put
//! around it, put p99 before, around and after it, and the puts' timeline
//! around it in 100 ms steps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{kinesis_call, put_bodies};
use crate::daemon::{bench_config, peak_rss_kib, start_daemon, stop};
use crate::load::{Call, closed_loop_timeline, percentile};

const STREAM: &str = "split";
/// The window around the split call, on each side: "during" is the call
/// and half a second either side of it.
const AROUND: Duration = Duration::from_millis(500);
/// The first second of load is not "before": connections are opening.
const WARM_UP: Duration = Duration::from_secs(1);
/// The timeline's step, and how far it reaches either side of the call.
const STEP: Duration = Duration::from_millis(100);
const REACH: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
#[group(id = "split")]
pub struct Args {
    /// Seconds of PutRecords load in the split measurement; SplitShard is
    /// called halfway through.
    #[arg(long, default_value_t = 20)]
    split_secs: u64,
    /// The shard split (its index), at the middle of its hash-key range.
    #[arg(long, default_value_t = 0)]
    split_shard: u32,
}

/// The split call: when it began, how long it took, and the open shards
/// before and after.
struct Split {
    start: Instant,
    took: Duration,
    open_before: usize,
    open_after: usize,
}

/// Starts a daemon, puts under load while splitting a shard halfway, prints
/// the rows.
pub async fn run(args: &super::Args) -> anyhow::Result<()> {
    if args.split.split_secs < 4 {
        bail!("--split-secs must be at least 4");
    }
    let (port, cfg) = bench_config(&args.dir, "streams: {}\n")?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let mut child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    let measured = measure(args, &http, &url).await;
    let rss = peak_rss_kib(child.id()).unwrap_or(0);
    stop(&mut child)?;
    let (calls, split, errors) = measured?;
    print(args, &calls, &split, rss);
    for e in errors {
        println!("  put error: {e}");
    }
    Ok(())
}

/// The load and the split at once: every call, the split, and the first
/// few distinct errors puts met.
async fn measure(
    args: &super::Args,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<(Vec<Call>, Split, Vec<String>)> {
    let create = json!({ "StreamName": STREAM, "ShardCount": args.shards });
    kinesis_call(http, url, "CreateStream", create.to_string()).await?;
    let bodies = Arc::new(put_bodies(STREAM, args.records_per_call, args.record_bytes));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (h, u, e) = (http.clone(), url.to_string(), errors.clone());
    let secs = Duration::from_secs(args.split.split_secs);
    let load = closed_loop_timeline(args.clients, secs, move |c, n| {
        let (http, url, errors) = (h.clone(), u.clone(), e.clone());
        let body = bodies[(c + n) % bodies.len()].clone();
        async move {
            let r = kinesis_call(&http, &url, "PutRecords", body).await;
            let failed = match &r {
                Ok(v) if v["FailedRecordCount"].as_u64() == Some(0) => return true,
                Ok(v) => format!("{} records failed", v["FailedRecordCount"]),
                Err(e) => format!("{e:#}"),
            };
            let mut errors = errors.lock().unwrap_or_else(|p| p.into_inner());
            if errors.len() < 5 && !errors.contains(&failed) {
                errors.push(failed);
            }
            false
        }
    });
    let split = async {
        tokio::time::sleep(secs / 2).await;
        split_shard(http, url, args.split.split_shard).await
    };
    let (calls, split) = tokio::join!(load, split);
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((calls?, split?, errors))
}

/// The stream's shards, as `ListShards` shows them.
async fn list_shards(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Value>> {
    let req = json!({ "StreamName": STREAM }).to_string();
    let out = kinesis_call(http, url, "ListShards", req).await?;
    match out["Shards"].as_array() {
        Some(shards) if out["NextToken"].is_null() => Ok(shards.clone()),
        _ => bail!("ListShards: no Shards, or more than one page"),
    }
}

/// Open shards: those without an ending sequence number.
fn open_shards(shards: &[Value]) -> usize {
    shards
        .iter()
        .filter(|s| s["SequenceNumberRange"]["EndingSequenceNumber"].is_null())
        .count()
}

/// Splits shard `index` at the middle of its hash-key range; times the call.
async fn split_shard(http: &reqwest::Client, url: &str, index: u32) -> anyhow::Result<Split> {
    let id = format!("shardId-{index:012}");
    let shards = list_shards(http, url).await?;
    let shard = shards
        .iter()
        .find(|s| s["ShardId"] == id.as_str())
        .with_context(|| format!("ListShards does not show {id}"))?;
    let key = |k: &str| -> anyhow::Result<u128> {
        shard["HashKeyRange"][k]
            .as_str()
            .and_then(|x| x.parse().ok())
            .with_context(|| format!("{id}'s {k}"))
    };
    let (first, last) = (key("StartingHashKey")?, key("EndingHashKey")?);
    if last <= first {
        bail!("{id} covers one hash key: it cannot be split");
    }
    let middle = first + (last - first) / 2 + 1;
    let req = json!({
        "StreamName": STREAM,
        "ShardToSplit": id,
        "NewStartingHashKey": middle.to_string(),
    });
    let start = Instant::now();
    kinesis_call(http, url, "SplitShard", req.to_string()).await?;
    let took = start.elapsed();
    Ok(Split {
        start,
        took,
        open_before: open_shards(&shards),
        open_after: open_shards(&list_shards(http, url).await?),
    })
}

/// Latencies of the acknowledged calls among `calls` that `keep`, sorted.
fn latencies(calls: &[Call], keep: impl Fn(&Call) -> bool) -> Vec<Duration> {
    let mut lat: Vec<Duration> = calls
        .iter()
        .filter(|c| c.ok && keep(c))
        .map(|c| c.lat)
        .collect();
    lat.sort();
    lat
}

/// The two rows: the split's cost, then the timeline around it.
fn print(args: &super::Args, calls: &[Call], split: &Split, rss_kib: u64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t0 = calls.iter().map(|c| c.start).min().unwrap_or(split.start);
    let from = split.start.checked_sub(AROUND).unwrap_or(split.start);
    let to = split.start + split.took + AROUND;
    let before = latencies(calls, |c| c.start >= t0 + WARM_UP && c.start + c.lat < from);
    let during = latencies(calls, |c| c.start < to && c.start + c.lat > from);
    let after = latencies(calls, |c| c.start >= to);
    let failed = calls
        .iter()
        .filter(|c| !c.ok && c.start < to && c.start + c.lat > from)
        .count();
    let max = |l: &[Duration]| ms(l.last().copied().unwrap_or_default());
    let super::Args {
        clients,
        shards,
        record_bytes,
        records_per_call: per_call,
        ..
    } = args;
    println!(
        "| kinesis SplitShard under load: {clients} clients x PutRecords {per_call} x {record_bytes} B, shard {} of {shards} split at its middle after {} s ({} -> {} open shards) | split call {:.1} ms | longest put around it {:.1} ms (before: {:.1} ms, after: {:.1} ms) | put p99 before {:.2} ms, around the split {:.2} ms, after {:.2} ms (p50 {:.2} / {:.2} / {:.2} ms) | failed calls around it {failed}, in all {} | peak RSS {:.0} MiB |",
        args.split.split_shard,
        split.start.duration_since(t0).as_secs_f64().round(),
        split.open_before,
        split.open_after,
        ms(split.took),
        max(&during),
        max(&before),
        max(&after),
        ms(percentile(&before, 0.99)),
        ms(percentile(&during, 0.99)),
        ms(percentile(&after, 0.99)),
        ms(percentile(&before, 0.5)),
        ms(percentile(&during, 0.5)),
        ms(percentile(&after, 0.5)),
        calls.iter().filter(|c| !c.ok).count(),
        rss_kib as f64 / 1024.0,
    );
    println!("{}", timeline(calls, split));
}

/// Per 100 ms from a second before the split call to a second after it
/// ended: the puts answered in that step and the longest of them (ms).
fn timeline(calls: &[Call], split: &Split) -> String {
    let from = split.start.checked_sub(REACH).unwrap_or(split.start);
    let steps = ((REACH * 2 + split.took).as_secs_f64() / STEP.as_secs_f64()).ceil() as usize;
    let mut answered = vec![(0u32, Duration::ZERO); steps];
    for c in calls.iter().filter(|c| c.ok) {
        let end = c.start + c.lat;
        let Some(i) = end.checked_duration_since(from) else {
            continue;
        };
        if let Some(slot) = answered.get_mut((i.as_secs_f64() / STEP.as_secs_f64()) as usize) {
            slot.0 += 1;
            slot.1 = slot.1.max(c.lat);
        }
    }
    let cells: Vec<String> = answered
        .iter()
        .map(|(n, max)| format!("{n}/{:.0}", max.as_secs_f64() * 1e3))
        .collect();
    format!(
        "| kinesis SplitShard timeline: puts answered / longest (ms) per 100 ms, from 1 s before the call ({:.0} ms) to 1 s after | {} |",
        split.took.as_secs_f64() * 1e3,
        cells.join(" ")
    )
}
