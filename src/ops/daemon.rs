//! `hydrant run`: start every stream, serve HTTP, and shut down in order on
//! SIGTERM or SIGINT — stop accepting, finish in-flight requests, flush and
//! deliver open batches, write checkpoints, exit.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::ingest::{self, AppState, firehose};
use crate::ops::metrics::Metrics;
use crate::ops::registry::Registry;

/// Runs the daemon until a shutdown signal; Ok if it drained cleanly.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join("LOCK");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another hydrant is running on data_dir {} (it holds {})",
            config.data_dir.display(),
            lock_path.display()
        )
    })?;

    let metrics = Arc::new(Metrics::new());
    let registry = Registry::new(config.clone(), metrics);
    registry
        .start_all(|name, req, cfg| {
            firehose::stream_config_from_request(name, req, cfg).map_err(|e| e.message)
        })
        .context("cannot start streams")?;
    let state = AppState::new(registry.clone());
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), streams = registry.all().len(), "hydrant listening");

    let accepting = state.accepting.clone();
    let app = ingest::router(state);
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<&'static str>();
    tokio::spawn(async move {
        let name = wait_for_signal().await;
        let _ = signal_tx.send(name);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let name = signal_rx.await.unwrap_or("channel closed");
        tracing::info!(signal = name, "shutting down: no longer accepting records");
        accepting.store(false, Ordering::Release);
    });
    let deadline = config.shutdown_timeout;
    server.await.context("http server failed")?;
    // In-flight requests have finished: the log holds everything acknowledged.
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

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon runs until killed.
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// How long the HTTP server may take to finish in-flight requests.
pub const HTTP_DRAIN: Duration = Duration::from_secs(10);
