//! Phase 2 of a workload, latency at half load: an open-loop generator
//! sends each request at its scheduled time whatever the previous ones are
//! doing, and each request's latency is measured from that scheduled time
//! (so a stall counts for every request it delays: no coordinated
//! omission). The generator's own lateness is recorded beside it, and the
//! daemon's own p99 comes from its histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::requests::{Request, send};
use crate::metrics::{bucket_quantile, latency_buckets, metric, sync_buckets, wait_delivered};

/// What the half-load phase measured. The durations are not sorted.
pub struct HalfLoad {
    /// Acknowledgement times of the acknowledged requests, from their
    /// scheduled times.
    pub lat: Vec<Duration>,
    /// Where each acknowledged request's records went ((shard, first
    /// offset)), how many they were and when the request was scheduled.
    pub placed: Vec<((u32, u64), usize, Instant)>,
    /// Requests not acknowledged (or not sent: too many in flight).
    pub failed: u64,
    /// Records acknowledged.
    pub records: u64,
    /// How late the generator began each request after its scheduled time.
    pub lag: Vec<Duration>,
    /// The daemon's own p99 acknowledgement time, at most (ms).
    pub server_p99: f64,
    /// The p99 of the daemon's group commits' write + fdatasync, at most (ms).
    pub sync_p99: f64,
}

/// One request as sent: scheduled, begun, answered (or given up), where
/// its records went if acknowledged, and how many records it held.
type Sent = (Instant, Instant, Instant, Option<(u32, u64)>, usize);

/// Sends the pool's requests in turn, one every `interval`, for `secs`;
/// then waits until what was acknowledged is delivered.
pub async fn run(
    http: &reqwest::Client,
    url: &str,
    ndjson: bool,
    pool: Vec<Request>,
    interval: Duration,
    secs: u64,
) -> anyhow::Result<HalfLoad> {
    let before = metric(http, url, "hydrant_delivery_records_total").await?;
    let op = if ndjson {
        "NdjsonPut"
    } else {
        "PutRecordBatch"
    };
    let buckets_before = latency_buckets(http, url, op).await?;
    let syncs_before = sync_buckets(http, url).await?;
    let half_start = Instant::now() + Duration::from_millis(200);
    let count = (secs as f64 / interval.as_secs_f64()).ceil() as usize;
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
    let schedule = Schedule {
        start: half_start,
        interval,
        count,
    };
    let sends = pace(generator.handle(), url, ndjson, pool, schedule).await?;
    let mut half = collect(sends, count).await?;
    generator.shutdown_background();
    let buckets_after = latency_buckets(http, url, op).await?;
    half.server_p99 = bucket_quantile(&buckets_before, &buckets_after, 0.99) * 1e3;
    let syncs_after = sync_buckets(http, url).await?;
    half.sync_p99 = bucket_quantile(&syncs_before, &syncs_after, 0.99) * 1e3;
    wait_delivered(http, url, before + half.records as f64).await?;
    Ok(half)
}

/// When the requests are due: `count` of them, `interval` apart from `start`.
struct Schedule {
    start: Instant,
    interval: Duration,
    count: usize,
}

/// The pacer, on a thread of its own: sleeps to each request's time and
/// spawns its send on the generator's runtime, at most 4,096 in flight (one
/// more is recorded as failed, not sent).
async fn pace(
    spawner: &tokio::runtime::Handle,
    url: &str,
    ndjson: bool,
    pool: Vec<Request>,
    schedule: Schedule,
) -> anyhow::Result<Vec<JoinHandle<Sent>>> {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(4096));
    let spawner = spawner.clone();
    let gen_http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url2 = url.to_string();
    let Schedule {
        start: half_start,
        interval,
        count,
    } = schedule;
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
    Ok(sends)
}

/// Every send's outcome, in the order they were due.
async fn collect(sends: Vec<JoinHandle<Sent>>, count: usize) -> anyhow::Result<HalfLoad> {
    let mut half = HalfLoad {
        lat: Vec::with_capacity(count),
        placed: Vec::new(),
        failed: 0,
        records: 0,
        lag: Vec::with_capacity(count),
        server_p99: 0.0,
        sync_p99: 0.0,
    };
    for s in sends {
        let (due, began, end, p, n) = s.await?;
        half.lag.push(began.saturating_duration_since(due));
        match p {
            Some(p) => {
                half.lat.push(end.duration_since(due));
                half.placed.push((p, n, due));
                half.records += n as u64;
            }
            None => half.failed += 1,
        }
    }
    Ok(half)
}

/// Nice -5 and a 100 µs time slice for the calling thread, or the slice
/// alone where a lower nice value is not allowed: on a busy machine the
/// generator is woken on time.
fn raise_priority() {
    if hydrant::sched::set_thread(Some(-5), 100_000).is_err() {
        let _ = hydrant::sched::set_thread(None, 100_000);
    }
}
