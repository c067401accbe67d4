//! Phase 1 of a workload, saturation: closed-loop producers for a while,
//! then the time until the last acknowledged record is delivered (so a
//! stage slower than ingest shows), and the daemon's CPU seconds meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::requests::{Request, send};
use crate::daemon::cpu_seconds;
use crate::metrics::wait_delivered;

/// What saturation measured.
pub struct Saturation {
    /// Records and bytes acknowledged.
    pub records: u64,
    pub bytes: u64,
    /// Seconds of sending.
    pub ingest_secs: f64,
    /// Seconds from the start until every record was delivered.
    pub e2e_secs: f64,
    /// The daemon's CPU seconds from the start until then.
    pub cpu: f64,
    /// The generator's (this process's) and the object store's CPU seconds
    /// meanwhile: the cores they took from the daemon's.
    pub generator_cpu: f64,
    pub store_cpu: f64,
}

/// The processes whose CPU a run counts: the daemon's, and the object
/// store's if the workload writes to one.
pub struct Processes {
    pub daemon: u32,
    pub store: Option<u32>,
}

/// `clients` producers for `secs`, each sending the pool's requests in
/// turn (from its own place, 7 apart) as soon as the previous one is
/// answered; then waits for delivery.
pub async fn run(
    http: &reqwest::Client,
    url: &str,
    procs: Processes,
    ndjson: bool,
    pool: &[Request],
    clients: usize,
    secs: u64,
) -> anyhow::Result<Saturation> {
    let (pid, me) = (procs.daemon, std::process::id());
    let store_cpu = || procs.store.map_or(0.0, cpu_seconds);
    let (cpu0, generator0, store0) = (cpu_seconds(pid), cpu_seconds(me), store_cpu());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, pool, stop) = (http.clone(), url.to_string(), pool.to_vec(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut recs, mut bytes, mut failed) = (0u64, 0u64, 0u64);
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
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
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut records, mut bytes) = (0u64, 0u64);
    for t in tasks {
        let (r, b, _) = t.await?;
        records += r;
        bytes += b;
    }
    let ingest_secs = start.elapsed().as_secs_f64();
    let done = wait_delivered(http, url, records as f64).await?;
    let e2e_secs = done.duration_since(start).as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    Ok(Saturation {
        records,
        bytes,
        ingest_secs,
        e2e_secs,
        cpu,
        generator_cpu: cpu_seconds(me) - generator0,
        store_cpu: store_cpu() - store0,
    })
}
