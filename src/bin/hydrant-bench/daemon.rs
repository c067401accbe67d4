//! The daemon under test: a bench config on a free port, starting the real
//! `hydrant` binary and waiting until it is healthy, stopping it, settling
//! the disk between measurements, and what `/proc` says about it (peak RSS,
//! CPU seconds).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A fresh bench directory and a config there listening on a free port:
/// returns (port, config path). `body` follows `listen` and `data_dir`,
/// then `HYDRANT_BENCH_CONFIG` if set: top-level YAML of the daemon's
/// options to compare in one build (e.g. `log: { group_commit_bytes_max: 1048576 }`).
pub fn bench_config(dir: &Path, body: &str) -> anyhow::Result<(u16, PathBuf)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let cfg = dir.join("bench.yaml");
    let extra = std::env::var("HYDRANT_BENCH_CONFIG").unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{body}\n{extra}\n",
            dir.join("data").display()
        ),
    )?;
    Ok((port, cfg))
}

/// A loopback port nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the daemon on a bench config and waits until it answers `/health`.
pub async fn start_daemon(
    hydrant: &Path,
    cfg: &Path,
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<Child> {
    let mut child = Command::new(hydrant)
        .args(["run", "-c"])
        .arg(cfg)
        // HYDRANT_BENCH_DAEMON_LOG=info,hydrant=debug shows the daemon's logs.
        .env(
            "HYDRANT_LOG",
            std::env::var("HYDRANT_BENCH_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                hydrant.display()
            )
        })?;
    if let Err(e) = wait_healthy(http, url, &mut child).await {
        let _ = child.kill();
        return Err(e);
    }
    Ok(child)
}

/// Waits until the daemon answers `/health`; how long that took.
pub async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    child: &mut Child,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    while !http
        .get(format!("{url}health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if let Some(status) = child.try_wait()? {
            bail!("the daemon exited with {status}");
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the daemon did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed())
}

/// SIGTERM (the daemon flushes every open batch), then waits for it to exit.
pub fn stop(child: &mut Child) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait()?;
    Ok(())
}

/// Removes a measurement's data and waits for the disk to write everything
/// out (`sync`), so that no measurement is timed against the writeback of
/// the one before it.
pub async fn settle(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let synced = tokio::process::Command::new("sync").status().await;
    if !synced.is_ok_and(|s| s.success()) {
        eprintln!("  (sync failed: the last measurement's writeback may overlap the next one)");
    }
}

/// The peak resident set size of a process so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) of a process so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}
