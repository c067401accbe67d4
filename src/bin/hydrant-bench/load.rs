//! Load shared by the subcommands: closed-loop producers, one
//! `PutRecordBatch` call, and percentiles of the latencies recorded.

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
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (call, stop) = (call.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut failed, mut n) = (Vec::new(), 0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if call(c, n).await {
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                }
                n += 1;
            }
            (lat, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    Ok((lat, failed))
}
