//! `hydrant run`: start every stream, serve HTTP, reload the config on
//! SIGHUP, and shut down in order on SIGTERM or SIGINT — stop accepting,
//! finish in-flight requests, flush and deliver open batches, write
//! checkpoints, exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

mod serve;

use crate::config::Config;
use crate::ingest::{self, AppState};
use crate::metrics::Metrics;
use crate::streams::Registry;

/// Runs the daemon until a shutdown signal; Ok if it drained cleanly.
/// `config_path` is re-read on SIGHUP (None: the embedded default, nothing
/// to reload).
pub async fn run(mut config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let lock = lock_data_dir(&config)?;
    with_builtin_key(&mut config)?;

    let cluster = match &config.cluster {
        Some(c) => {
            let cluster =
                crate::log::jetstream::Cluster::connect(&c.node_id, c.nats.clone(), c.lease)
                    .await
                    .context("cannot use the NATS cluster (cluster.nats)")?;
            tracing::info!(node = c.node_id, servers = ?c.nats.servers, replicas = c.nats.replicas, "cluster mode: logs in NATS JetStream");
            Some(cluster)
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let registry = Registry::new(config.clone(), metrics, cluster);
    registry.start_all().context("cannot start streams")?;
    spawn_kinesis_tasks(&registry);
    let analytics = crate::analytics::Applications::new(registry.clone());
    analytics
        .start_all(crate::config::analytics::api::from_saved)
        .map_err(|e| anyhow::anyhow!("cannot start SQL applications: {e}"))?;
    let state = AppState::new(registry.clone(), analytics.clone());
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), streams = registry.all().len(), "hydrant listening");

    let accepting = state.accepting.clone();
    let app = ingest::router(state);
    let limits = serve::ConnLimits {
        connections_max: config.limits.connections_max,
        header_read_timeout: config.limits.header_read_timeout,
        drain: config.shutdown_timeout,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let https = match &config.listen_tls {
        Some(t) => Some(serve_tls(t, &config, app.clone(), limits, stop.clone()).await?),
        None => None,
    };
    let tls = https.as_ref().map(|(tls, _)| tls.clone());
    let reloader = registry.clone();
    let stopper = stop.clone();
    tokio::spawn(async move {
        let name = wait_for_signal(reloader, config_path, tls).await;
        tracing::info!(signal = name, "shutting down: no longer accepting records");
        accepting.store(false, Ordering::Release);
        stopper.cancel();
    });
    // Small answers and fan-out events go out at once: without TCP_NODELAY
    // each waits for the client's acknowledgement of the one before (Nagle),
    // up to 40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let deadline = config.shutdown_timeout;
    serve::serve(listener, app, limits, stop).await;
    if let Some((_, server)) = https {
        // The HTTPS listener stops with the HTTP one: its open requests end.
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "the HTTPS server failed");
        }
    }
    // In-flight requests have finished: the log holds everything acknowledged.
    // Applications publish what they processed into their outputs first,
    // so the delivery streams drain it too.
    analytics.stop_all().await;
    tracing::info!(
        deadline_secs = deadline.as_secs(),
        "draining: flushing open batches"
    );
    let drained = registry.shutdown(deadline).await;
    if drained {
        tracing::info!("shutdown complete: every record delivered and checkpointed");
    } else {
        tracing::warn!(
            "shutdown deadline reached: undelivered records stay in the log and are delivered after restart"
        );
    }
    drop(lock);
    Ok(())
}

/// Adds the built-in log key (generated under `data_dir/keys` the first
/// time) to the keys records are sealed and opened with; a single node's
/// own, so not in cluster mode, where every node needs the same keys.
pub(crate) fn with_builtin_key(config: &mut Config) -> anyhow::Result<()> {
    if config.cluster.is_some() {
        return Ok(());
    }
    let keys = config
        .log
        .keys
        .with_builtin(&config.data_dir)
        .with_context(|| {
            format!(
                "cannot read or create the built-in log key under {}",
                config.data_dir.join("keys").display()
            )
        })?;
    config.log.keys = Arc::new(keys);
    Ok(())
}

/// Locks `data_dir` for this daemon (one daemon per data directory) and
/// writes its pid there, for `hydrant reload`.
fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    let lock_path = config.data_dir.join("LOCK");
    // Not truncated before it is locked: the pid in it is the running daemon's.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another hydrant is running on data_dir {} (it holds {})",
            config.data_dir.display(),
            lock_path.display()
        )
    })?;
    // The pid, for `hydrant reload`.
    {
        use std::io::Write;
        let mut l = &lock;
        lock.set_len(0)
            .and_then(|()| l.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .and_then(|()| l.flush())
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
    }
    Ok(lock)
}

/// The HTTPS server: its TLS (reloaded on SIGHUP) and its task.
type Https = (Arc<crate::tls::Reloadable>, tokio::task::JoinHandle<()>);

/// Serves `app` over TLS on `listen_tls.address`, beside the HTTP listener.
async fn serve_tls(
    t: &crate::config::ListenTls,
    config: &Config,
    app: axum::Router,
    limits: serve::ConnLimits,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Https> {
    let tls = crate::tls::Reloadable::new(t.files.clone())
        .map_err(|e| anyhow::anyhow!("listen_tls: {e}"))?;
    let tcp = TcpListener::bind(t.address)
        .await
        .with_context(|| format!("cannot listen on {} (listen_tls.address)", t.address))?;
    let handshakes = crate::tls::HandshakeLimits {
        timeout: config.limits.tls_handshake_timeout,
        in_progress_max: config.limits.tls_handshakes_max,
    };
    let listener = crate::tls::TlsListener::start(tcp, tls.clone(), handshakes)?;
    tracing::info!(addr = %t.address, mtls = t.files.client_ca_file.is_some(), "hydrant listening for HTTPS");
    let server = tokio::spawn(serve::serve(listener, app, limits, stop));
    Ok((tls, server))
}

/// Waits for SIGTERM or SIGINT, reloading the config (and the TLS
/// certificate) on every SIGHUP meanwhile.
async fn wait_for_signal(
    registry: Arc<Registry>,
    config_path: Option<PathBuf>,
    tls: Option<Arc<crate::tls::Reloadable>>,
) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        // Without signal handlers the daemon runs until killed.
        std::future::pending::<()>().await;
        return "none";
    };
    loop {
        tokio::select! {
            _ = term.recv() => return "SIGTERM",
            _ = int.recv() => return "SIGINT",
            _ = hup.recv() => {
                let config = reload(&registry, config_path.as_deref()).await;
                if let Some(tls) = &tls {
                    reload_tls(tls, config.as_ref());
                }
            }
        }
    }
}

/// Reads the HTTPS certificate again (the files the config file now names,
/// or the same ones): new connections get it, open ones go on.
fn reload_tls(tls: &crate::tls::Reloadable, config: Option<&Config>) {
    let files = config
        .and_then(|c| c.listen_tls.as_ref())
        .map(|t| t.files.clone());
    match tls.reload(files) {
        Ok(()) => tracing::info!("SIGHUP: the TLS certificate was read again"),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the TLS certificate cannot be read; the previous one stays")
        }
    }
}

/// Re-reads the config file and applies its streams; a config with errors
/// is refused whole and the running one stays. The config read, if it was.
async fn reload(registry: &Registry, path: Option<&Path>) -> Option<Config> {
    let Some(path) = path else {
        tracing::warn!(
            "SIGHUP: running on the embedded default; there is no config file to reload"
        );
        return None;
    };
    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
    let p = path.to_path_buf();
    let loaded = match tokio::task::spawn_blocking(move || Config::load(&p)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "reload task failed; the running config stays");
            return None;
        }
    };
    let mut new = match loaded {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(config = %path.display(), error = %e, "reload refused: config error; the running config stays");
            }
            return None;
        }
    };
    if let Err(e) = with_builtin_key(&mut new) {
        tracing::error!(error = %e, "reload refused; the running config stays");
        return None;
    }
    match registry.reload(&new).await {
        Ok(r) => {
            for f in &r.failed {
                tracing::error!(error = %f, "reload: a stream could not start");
            }
            tracing::info!(added = ?r.added, removed = ?r.removed, changed = ?r.changed, unchanged = r.unchanged.len(), "config reloaded");
        }
        Err(reasons) => {
            for r in reasons {
                tracing::error!(reason = %r, "reload refused; the running config stays");
            }
        }
    }
    Some(new)
}

/// How long the HTTP server may take to finish in-flight requests.
pub const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// The Kinesis streams' background work: retention, checked every minute
/// (segments are deleted whole), and ON_DEMAND streams' splits of their hot
/// shards.
fn spawn_kinesis_tasks(registry: &Arc<Registry>) {
    if let Some(cluster) = registry.cluster.clone() {
        // Kinesis streams created, resharded or deleted on other nodes.
        let follower = registry.clone();
        tokio::spawn(async move { follower.kinesis.follow_cluster().await });
        // Delivery streams created and deleted through the API elsewhere.
        tokio::spawn(registry.clone().follow_cluster());
        // This node's heartbeat, for `status`.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cluster.leases.ttl() / 3);
            loop {
                tick.tick().await;
                if let Err(e) = cluster.leases.heartbeat().await {
                    tracing::warn!(error = %e, "cannot write the node's heartbeat");
                }
                if let Err(e) = cluster.leases.count_shares().await {
                    tracing::debug!(error = %e, "cannot count the leases");
                }
            }
        });
    }
    // Kinesis and video retention: checked every minute (segments are
    // deleted whole).
    let trimmer = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let r = trimmer.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || {
                r.kinesis.trim();
                r.video.trim();
            })
            .await
            {
                tracing::error!(error = %e, "Kinesis retention task failed");
            }
        }
    });
    // ON_DEMAND Kinesis streams split their hot shards.
    let scaler = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::kinesis::on_demand::WINDOW);
        loop {
            tick.tick().await;
            for (s, op) in scaler.kinesis.hot_shards() {
                match scaler.reshard_kinesis(&s, op).await {
                    Ok(_) => {
                        scaler
                            .metrics
                            .kinesis_reshards
                            .get_or_create(&Metrics::stream(&s.name))
                            .inc();
                    }
                    Err(e) => {
                        tracing::warn!(stream = s.name, error = %e, "cannot split a hot shard of an ON_DEMAND stream")
                    }
                }
            }
        }
    });
}
