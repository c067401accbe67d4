//! Load shared by the subcommands: closed-loop producers (with or without
//! their calls' timeline), one `PutRecordBatch` call, an API reply's JSON,
//! and percentiles of the latencies recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The `p` quantile (0..=1) of sorted durations; zero if there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One `PutRecordBatch` call: true if it was answered with no failed record.
pub async fn put_record_batch(http: &reqwest::Client, url: &str, body: bytes::Bytes) -> bool {
    let r = http
        .post(url)
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

/// The JSON of an API call's reply, or an error with its status and body.
pub async fn json_reply(op: &str, resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        anyhow::bail!("{op}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// One call of a closed-loop producer: when it began, how long it took and
/// whether it was acknowledged.
#[derive(Clone, Copy)]
pub struct Call {
    pub start: Instant,
    pub lat: Duration,
    pub ok: bool,
}

/// `clients` closed-loop producers for `secs`: each awaits `call(client, n)`
/// (true: acknowledged) and sends the next. The acknowledged calls' latencies
/// and the number that failed.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    secs: u64,
    call: F,
) -> anyhow::Result<(Vec<Duration>, u64)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let calls = closed_loop_timeline(clients, Duration::from_secs(secs), call).await?;
    let lat = calls.iter().filter(|c| c.ok).map(|c| c.lat).collect();
    let failed = calls.iter().filter(|c| !c.ok).count() as u64;
    Ok((lat, failed))
}

/// [`closed_loop`] with every call kept, in no particular order: the
/// latency timeline.
pub async fn closed_loop_timeline<F, Fut>(
    clients: usize,
    duration: Duration,
    call: F,
) -> anyhow::Result<Vec<Call>>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (call, stop) = (call.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut calls, mut n) = (Vec::new(), 0usize);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = call(c, n).await;
                calls.push(Call {
                    start,
                    lat: start.elapsed(),
                    ok,
                });
                n += 1;
            }
            calls
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for t in tasks {
        calls.extend(t.await?);
    }
    Ok(calls)
}
