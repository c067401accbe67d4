//! `hydrant-bench recovery`: fills the log with undelivered records (the
//! destination is a closed port), SIGKILLs the daemon and times its restart
//! until `/health` answers.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::daemon::{bench_config, wait_healthy};
use crate::files::dir_bytes;
use crate::records::batch_body;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "target/release/hydrant")]
    hydrant: PathBuf,
    #[arg(long, default_value = "/tmp/hydrant-bench")]
    dir: PathBuf,
    #[arg(long, default_value_t = 1024)]
    log_mib: u64,
}

/// Fills the log to `log_mib`, SIGKILLs the daemon, restarts it and prints
/// the time until it is healthy.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        hydrant,
        dir,
        log_mib,
    } = args;
    let data = dir.join("data");
    // The destination is a closed port: nothing is delivered, the log only grows.
    let (port, cfg) = bench_config(
        &dir,
        &format!(
            "log: {{ disk_quota_bytes: {} }}\nstreams:\n  bench:\n    shards: 4\n    destination: {{ type: s3, bucket: nowhere, endpoint: 'http://127.0.0.1:9' }}\n",
            (log_mib + 512) << 20
        ),
    )?;
    let spawn = || {
        Command::new(&hydrant)
            .args(["run", "-c"])
            .arg(&cfg)
            .env("HYDRANT_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let mut child = spawn().with_context(|| format!("cannot start {}", hydrant.display()))?;
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    wait_healthy(&http, &url, &mut child).await?;
    let body = batch_body(500, 1024)?;
    let target = log_mib << 20;
    let fill = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, body, data) = (http.clone(), url.clone(), body.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            while dir_bytes(&data) < target {
                for _ in 0..20 {
                    let _ = http
                        .post(&url)
                        .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
                        .header("Content-Type", "application/x-amz-json-1.1")
                        .body(body.clone())
                        .send()
                        .await;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let filled = dir_bytes(&data);
    child.kill()?;
    child.wait()?;
    let mut child = spawn()?;
    let took = wait_healthy(&http, &url, &mut child).await?;
    println!(
        "| recovery after SIGKILL with {:.0} MiB of undelivered log (filled in {:.1} s) | healthy and accepting after {:.0} ms |",
        filled as f64 / 1048576.0,
        fill.elapsed().as_secs_f64(),
        took.as_secs_f64() * 1e3
    );
    child.kill()?;
    child.wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
