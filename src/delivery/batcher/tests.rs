//! Unit tests of the parent module.

use super::*;
use bytes::Bytes;

fn frame(offset: u64, len: usize) -> Frame {
    Frame {
        offset,
        arrival_ms: 0,
        key: Bytes::new(),
        data: Bytes::from(vec![b'x'; len]),
    }
}

#[tokio::test(start_paused = true)]
async fn closes_by_size_without_passing_the_hint() {
    let mut b = Batcher::new(100, 0, Duration::from_secs(300));
    let now = Instant::now();
    for i in 0..5 {
        b.push(frame(i, 30), now);
    }
    let first = b.pop_ready().unwrap();
    assert_eq!(first.len(), 3); // 90 bytes; a 4th would make 120
    assert!(b.pop_ready().is_none());
    assert_eq!(b.lowest_offset(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn delimiters_count_toward_the_hint() {
    let mut b = Batcher::new(100, 1, Duration::from_secs(300));
    b.push(frame(0, 50), Instant::now());
    b.push(frame(1, 49), Instant::now());
    // 50+1 + 49+1 = 101 > 100: the two must not share a batch.
    assert_eq!(b.pop_ready().map(|v| v.len()), Some(1));
    assert_eq!(b.lowest_offset(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn exact_fill_closes_immediately() {
    let mut b = Batcher::new(100, 0, Duration::from_secs(300));
    b.push(frame(0, 50), Instant::now());
    b.push(frame(1, 50), Instant::now());
    assert_eq!(b.pop_ready().map(|v| v.len()), Some(2));
    assert!(b.is_empty());
}

#[tokio::test(start_paused = true)]
async fn oversized_record_is_a_batch_of_its_own() {
    let mut b = Batcher::new(100, 0, Duration::from_secs(300));
    b.push(frame(0, 10), Instant::now());
    b.push(frame(1, 500), Instant::now());
    assert_eq!(b.pop_ready().map(|v| v.len()), Some(1));
    assert_eq!(b.pop_ready().map(|v| v[0].offset), Some(1));
}

#[tokio::test(start_paused = true)]
async fn closes_by_time_measured_from_the_first_record() {
    let mut b = Batcher::new(1 << 20, 0, Duration::from_secs(60));
    let t0 = Instant::now();
    assert_eq!(b.deadline(), None);
    b.push(frame(0, 10), t0);
    tokio::time::advance(Duration::from_secs(30)).await;
    b.push(frame(1, 10), Instant::now());
    assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(60)));
    b.tick(Instant::now());
    assert!(!b.has_ready());
    tokio::time::advance(Duration::from_secs(30)).await;
    b.tick(Instant::now());
    assert_eq!(b.pop_ready().map(|v| v.len()), Some(2));
    assert_eq!(b.deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn zero_interval_closes_on_the_next_tick() {
    let mut b = Batcher::new(1 << 20, 0, Duration::ZERO);
    b.push(frame(0, 10), Instant::now());
    b.tick(Instant::now());
    assert!(b.has_ready());
}
