//! `hydrant-bench kinesis --measure fan-out`: enhanced fan-out's latency.
//! A stream of one shard gets as many registered consumers as the largest
//! round needs; each round subscribes that many of them from `LATEST`, then
//! one producer puts one record at a time (`PutRecord`) at a steady rate,
//! open loop: each put is sent at its scheduled time whatever the earlier
//! ones are doing. A record's latency is when its `SubscribeToShardEvent`
//! reached a subscriber minus when its put was acknowledged (zero if the
//! event came first: the daemon pushes a record as soon as it is durable,
//! before it answers the put), and, beside it, minus when the put was sent;
//! every subscriber counts, so a round of 20 has 20 latencies per record.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::kinesis_call;
use super::subscriber::{ID_DIGITS, Received, subscribe};
use crate::daemon::{bench_config, peak_rss_kib, start_daemon, stop};
use crate::load::percentile;

const STREAM: &str = "fanout";
const SHARD: &str = "shardId-000000000000";
/// How long a round waits, after its last put, for every subscriber to
/// have every acknowledged record.
const DRAIN: Duration = Duration::from_secs(10);
/// How long after a subscription another may take its shard over, with a
/// margin.
const TAKEOVER_AFTER: Duration = Duration::from_millis(5_200);

#[derive(clap::Args)]
#[group(id = "fan-out")]
pub struct Args {
    /// Fan-out rounds: how many subscribers (registered consumers) read the
    /// one shard in each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,5,20")]
    fanout_subscribers: Vec<usize>,
    /// Records a second the fan-out producer puts, one PutRecord each, paced
    /// (open loop).
    #[arg(long, default_value_t = 200)]
    fanout_rate: u32,
    /// Seconds of puts in each fan-out round (a subscription lasts at most
    /// the daemon's kinesis.subscription_secs, 5 minutes).
    #[arg(long, default_value_t = 10)]
    fanout_secs: u64,
    /// Bytes of each fan-out record's data (at least 16: the record's id).
    #[arg(long, default_value_t = 100)]
    fanout_record_bytes: usize,
}

/// What one round measured.
struct Round {
    subscribers: usize,
    /// When its subscriptions were made.
    subscribed: Instant,
    /// Put acknowledged to event received, over every subscriber, sorted;
    /// an event that arrived before its put's answer counts as zero.
    lat: Vec<Duration>,
    /// Put sent to event received, over every subscriber, sorted: the
    /// fsync included.
    from_sent: Vec<Duration>,
    /// Events that arrived before their put's answer did.
    early: u64,
    /// Acknowledged records some subscriber never got (one per subscriber).
    missing: u64,
    unexpected: u64,
    /// Records received, over every subscriber.
    delivered: u64,
    /// From the first put to the last record received.
    secs: f64,
    /// `PutRecord` calls' times, sent to answered, sorted.
    put_lat: Vec<Duration>,
    put_failed: u64,
    rss_kib: u64,
}

/// Starts a daemon, creates the stream and its consumers, runs each round
/// and prints its row.
pub async fn run(args: &super::Args) -> anyhow::Result<()> {
    let a = &args.fanout;
    let most = a.fanout_subscribers.iter().copied().max().unwrap_or(0);
    if a.fanout_subscribers.contains(&0) || most == 0 || a.fanout_rate == 0 {
        bail!("--fanout-subscribers and --fanout-rate must be above 0");
    }
    if a.fanout_secs == 0 || a.fanout_secs + DRAIN.as_secs() >= 290 {
        bail!("--fanout-secs must be 1 to 279: a subscription lasts at most 5 minutes");
    }
    if a.fanout_record_bytes < ID_DIGITS {
        bail!("--fanout-record-bytes must be at least {ID_DIGITS}");
    }
    let body = format!(
        "streams: {{}}\nkinesis:\n  consumer_activation_ms: 0\n  consumers_per_stream_max: {}\n",
        most.max(20)
    );
    let (port, cfg) = bench_config(&args.dir, &body)?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::builder().build()?;
    let mut child = start_daemon(&args.hydrant, &cfg, &http, &url).await?;
    let pid = child.id();
    let rounds = async {
        let consumers = consumers(&http, &url, most).await?;
        let mut rounds = Vec::new();
        for &n in &a.fanout_subscribers {
            // A consumer's next subscription to a shard is refused within
            // 5 s of its last one (Kinesis's rule).
            if let Some(last) = rounds.last().map(|r: &Round| r.subscribed) {
                tokio::time::sleep_until((last + TAKEOVER_AFTER).into()).await;
            }
            let mut r = round(a, &http, &url, &consumers[..n]).await?;
            r.rss_kib = peak_rss_kib(pid).unwrap_or(0);
            print(a, &r);
            rounds.push(r);
        }
        anyhow::Ok(rounds)
    }
    .await;
    stop(&mut child)?;
    let rounds = rounds?;
    if let Some(r) = rounds.iter().find(|r| r.missing > 0) {
        bail!(
            "{} acknowledged records never reached their subscribers ({} subscribers)",
            r.missing,
            r.subscribers
        );
    }
    Ok(())
}

/// Creates the stream and registers `count` consumers; their ARNs once they
/// are all `ACTIVE`.
async fn consumers(http: &reqwest::Client, url: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let create = json!({ "StreamName": STREAM, "ShardCount": 1 }).to_string();
    kinesis_call(http, url, "CreateStream", create).await?;
    let summary = json!({ "StreamName": STREAM }).to_string();
    let summary = kinesis_call(http, url, "DescribeStreamSummary", summary).await?;
    let stream_arn = summary["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .context("DescribeStreamSummary without a StreamARN")?
        .to_string();
    let mut arns = Vec::new();
    for i in 0..count {
        let req = json!({ "StreamARN": stream_arn, "ConsumerName": format!("bench-{i}") });
        let out = kinesis_call(http, url, "RegisterStreamConsumer", req.to_string()).await?;
        let arn = out["Consumer"]["ConsumerARN"]
            .as_str()
            .context("RegisterStreamConsumer without a ConsumerARN")?;
        arns.push(arn.to_string());
    }
    let t = Instant::now();
    for arn in &arns {
        loop {
            let req = json!({ "ConsumerARN": arn }).to_string();
            let out = kinesis_call(http, url, "DescribeStreamConsumer", req).await?;
            if out["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE" {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("consumer {arn} is not ACTIVE after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(arns)
}

/// One round: subscribe, put, wait until every subscriber has every
/// acknowledged record (or `DRAIN` passed), stop, and match.
async fn round(
    a: &Args,
    http: &reqwest::Client,
    url: &str,
    consumers: &[String],
) -> anyhow::Result<Round> {
    let count = (a.fanout_rate as u64 * a.fanout_secs) as usize;
    let subscribed = Instant::now();
    let subs =
        futures::future::try_join_all(consumers.iter().map(|arn| subscribe(http, url, arn, SHARD)))
            .await?;
    let stop = CancellationToken::new();
    let mut progress = Vec::new();
    let mut tasks = Vec::new();
    for sub in subs {
        let p = Arc::new(AtomicUsize::new(0));
        progress.push(p.clone());
        tasks.push(tokio::spawn(sub.receive(count, p, stop.clone())));
    }
    let start = Instant::now();
    let puts = produce(a, http, url, count).await?;
    let acked = puts.iter().filter(|p| p.1.is_some()).count();
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline
        && progress.iter().any(|p| p.load(Ordering::Relaxed) < acked)
        && !tasks.iter().any(|t| t.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let mut received = Vec::new();
    for t in tasks {
        received.push(t.await??);
    }
    let mut r = matched(consumers.len(), &puts, &received, start);
    r.subscribed = subscribed;
    Ok(r)
}

/// Puts `count` records, one `PutRecord` each, `1 / fanout_rate` apart; for
/// each, when it was sent and, if acknowledged, when the answer came.
async fn produce(
    a: &Args,
    http: &reqwest::Client,
    url: &str,
    count: usize,
) -> anyhow::Result<Vec<(Instant, Option<Instant>)>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let interval = Duration::from_secs(1).div_f64(a.fanout_rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut sends = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let mut data = format!("{i:0width$}", width = ID_DIGITS).into_bytes();
        data.resize(a.fanout_record_bytes, b'x');
        let body = json!({
            "StreamName": STREAM,
            "Data": b64.encode(&data),
            "PartitionKey": format!("key-{i}"),
        });
        let (http, url) = (http.clone(), url.to_string());
        sends.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = kinesis_call(&http, &url, "PutRecord", body.to_string()).await;
            (sent, r.ok().map(|_| Instant::now()))
        }));
    }
    let mut puts = Vec::with_capacity(count);
    for s in sends {
        puts.push(s.await?);
    }
    Ok(puts)
}

/// Matches every subscriber's arrivals with the puts' answers.
fn matched(
    subscribers: usize,
    puts: &[(Instant, Option<Instant>)],
    received: &[Received],
    start: Instant,
) -> Round {
    let mut r = Round {
        subscribers,
        subscribed: start,
        lat: Vec::new(),
        from_sent: Vec::new(),
        early: 0,
        missing: 0,
        unexpected: received.iter().map(|x| x.unexpected).sum(),
        delivered: 0,
        secs: 0.0,
        put_lat: Vec::new(),
        put_failed: 0,
        rss_kib: 0,
    };
    let mut last = start;
    for (id, (sent, ack)) in puts.iter().enumerate() {
        let Some(ack) = ack else {
            r.put_failed += 1;
            continue;
        };
        r.put_lat.push(ack.duration_since(*sent));
        for got in received {
            match got.at.get(id).copied().flatten() {
                Some(at) => {
                    r.early += u64::from(at < *ack);
                    r.lat.push(at.saturating_duration_since(*ack));
                    r.from_sent.push(at.saturating_duration_since(*sent));
                    last = last.max(at);
                }
                None => r.missing += 1,
            }
        }
    }
    r.delivered = received
        .iter()
        .map(|x| x.at.iter().flatten().count() as u64)
        .sum();
    r.secs = last.duration_since(start).as_secs_f64();
    r.lat.sort();
    r.from_sent.sort();
    r.put_lat.sort();
    r
}

/// One table row per round.
fn print(a: &Args, r: &Round) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = r.subscribers;
    let rate = r.delivered as f64 / r.secs.max(1e-9);
    println!(
        "| kinesis SubscribeToShard: {n} subscribers on 1 shard, PutRecord {} records/s x {} B for {} s | {rate:.0} records/s delivered in all ({:.0}/subscriber) | put ack -> event p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | put sent -> event p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; put ack p50 {:.2} ms, p99 {:.2} ms | missing {}, unexpected {}, events before their put's ack {}, failed puts {} | peak RSS {:.0} MiB |",
        a.fanout_rate,
        a.fanout_record_bytes,
        a.fanout_secs,
        rate / n as f64,
        ms(percentile(&r.lat, 0.5)),
        ms(percentile(&r.lat, 0.99)),
        ms(r.lat.last().copied().unwrap_or_default()),
        ms(percentile(&r.from_sent, 0.5)),
        ms(percentile(&r.from_sent, 0.99)),
        ms(r.from_sent.last().copied().unwrap_or_default()),
        ms(percentile(&r.put_lat, 0.5)),
        ms(percentile(&r.put_lat, 0.99)),
        r.missing,
        r.unexpected,
        r.early,
        r.put_failed,
        r.rss_kib as f64 / 1024.0,
    );
}
