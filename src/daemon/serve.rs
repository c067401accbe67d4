//! Serving the API on a listener (plain TCP or TLS) with the bounds that
//! keep slow or stuck clients from occupying the daemon: at most
//! `limits.connections_max` connections open (more wait in the listen
//! backlog), request headers read within `limits.header_read_timeout_secs`
//! (which also closes a keep-alive connection idle that long), and HTTP/2
//! connections pinged and closed when they stop answering. Request bodies
//! are bounded in time where they are read (`ingest`).
//!
//! Shutting down stops accepting, lets every connection finish the request
//! it is serving, and waits for them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The bounds every connection is served within.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    /// How long shutting down waits for open connections.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `stop` is cancelled, then drains.
pub async fn serve<L>(mut listener: L, app: Router, limits: ConnLimits, stop: CancellationToken)
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (io, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            c = listener.accept() => c,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.header_read_timeout)
            .keep_alive_timeout(limits.header_read_timeout);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::trace!(?peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain) => {
            tracing::warn!("connections still open at the drain deadline are cut");
        }
    }
}
