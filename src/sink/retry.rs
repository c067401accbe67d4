//! The one retry loop around every sink: exponential backoff with jitter,
//! bounded by the stream's `retry_duration_secs` (Firehose's RetryOptions).
//!
//! Sinks never retry by themselves. When the window closes, the caller sends
//! the batch to the error output; a hard stop (the shutdown deadline) abandons
//! the batch without moving the checkpoint, so it is delivered after restart.

use std::future::Future;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SinkError;

/// How long and how often to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total time after the first failure during which attempts go on.
    pub duration: Duration,
    /// Wait before the first retry; doubles each time.
    pub backoff_initial: Duration,
    /// Longest wait between two attempts.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    pub fn new(duration: Duration) -> Self {
        RetryPolicy {
            duration,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// The wait before retry number `attempt` (1-based), with ±20% jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .backoff_initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
            .min(self.backoff_max);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter)
    }
}

/// How a retried operation ended.
#[derive(Debug)]
pub enum Outcome<T = ()> {
    Delivered {
        attempts: u32,
        value: T,
    },
    /// The retry window closed; the last error says why.
    GaveUp {
        attempts: u32,
        error: SinkError,
    },
    /// A hard stop came first.
    Cancelled,
}

/// Runs `op` until it succeeds, the window of `policy` closes, or `stop` fires.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    stop: &CancellationToken,
    mut on_error: impl FnMut(u32, &SinkError),
    mut op: F,
) -> Outcome<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = tokio::select! {
            r = op() => r,
            _ = stop.cancelled() => return Outcome::Cancelled,
        };
        let error = match result {
            Ok(value) => return Outcome::Delivered { attempts, value },
            Err(e) => e,
        };
        on_error(attempts, &error);
        let wait = policy.backoff(attempts);
        if started.elapsed() + wait > policy.duration {
            return Outcome::GaveUp { attempts, error };
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return Outcome::Cancelled,
        }
    }
}

/// Runs `op` until it succeeds or `stop` fires: for writes that must never be
/// dropped, such as the error output.
pub async fn retry_forever<T, F, Fut>(
    stop: &CancellationToken,
    on_error: impl FnMut(u32, &SinkError),
    op: F,
) -> Outcome<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let policy = RetryPolicy {
        duration: Duration::MAX,
        ..RetryPolicy::new(Duration::MAX)
    };
    retry(&policy, stop, on_error, op).await
}

#[cfg(test)]
mod tests;
