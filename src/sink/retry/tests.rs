//! Unit tests of the parent module.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

fn fail() -> SinkError {
    SinkError {
        message: "down".into(),
        retryable: true,
    }
}

#[tokio::test(start_paused = true)]
async fn succeeds_after_transient_failures() {
    let calls = AtomicU32::new(0);
    let out = retry(
        &RetryPolicy::new(Duration::from_secs(60)),
        &CancellationToken::new(),
        |_, _| {},
        || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(fail())
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert!(
        matches!(out, Outcome::Delivered { attempts: 4, .. }),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn gives_up_when_the_window_closes() {
    let start = Instant::now();
    let out = retry(
        &RetryPolicy::new(Duration::from_secs(10)),
        &CancellationToken::new(),
        |_, _| {},
        || async { Err::<(), _>(fail()) },
    )
    .await;
    match out {
        Outcome::GaveUp { attempts, error } => {
            assert!(attempts >= 4, "attempts {attempts}");
            assert_eq!(error.message, "down");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() <= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn zero_window_means_one_attempt() {
    let calls = AtomicU32::new(0);
    let out = retry(
        &RetryPolicy::new(Duration::ZERO),
        &CancellationToken::new(),
        |_, _| {},
        || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(fail())
        },
    )
    .await;
    assert!(matches!(out, Outcome::GaveUp { attempts: 1, .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stop_cancels_a_retry_loop() {
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        s2.cancel();
    });
    let out: Outcome = retry_forever(&stop, |_, _| {}, || async { Err(fail()) }).await;
    assert!(matches!(out, Outcome::Cancelled));
}

#[test]
fn backoff_grows_and_is_capped() {
    let p = RetryPolicy::new(Duration::from_secs(100));
    assert!(p.backoff(1) <= Duration::from_millis(600));
    assert!(p.backoff(3) >= Duration::from_millis(1600));
    assert!(p.backoff(30) <= Duration::from_secs(36));
}
