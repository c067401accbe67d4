//! Unit tests of the parent module.

use super::*;
use bytes::Bytes;
use std::collections::HashMap;

/// A closed batch's records, as upload takes them.
fn frames(r: Ready) -> Vec<Record> {
    r.into_parts().0
}

fn frame(offset: u64, len: usize) -> Record {
    Record {
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
    assert_eq!(first.records.len(), 3); // 90 bytes; a 4th would make 120
    assert!(b.pop_ready().is_none());
    assert_eq!(b.lowest_offset(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn delimiters_count_toward_the_hint() {
    let mut b = Batcher::new(100, 1, Duration::from_secs(300));
    b.push(frame(0, 50), Instant::now());
    b.push(frame(1, 49), Instant::now());
    // 50+1 + 49+1 = 101 > 100: the two must not share a batch.
    assert_eq!(b.pop_ready().map(|v| v.records.len()), Some(1));
    assert_eq!(b.lowest_offset(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn exact_fill_closes_immediately() {
    let mut b = Batcher::new(100, 0, Duration::from_secs(300));
    b.push(frame(0, 50), Instant::now());
    b.push(frame(1, 50), Instant::now());
    assert_eq!(b.pop_ready().map(|v| v.records.len()), Some(2));
    assert!(b.is_empty());
}

#[tokio::test(start_paused = true)]
async fn oversized_record_is_a_batch_of_its_own() {
    let mut b = Batcher::new(100, 0, Duration::from_secs(300));
    b.push(frame(0, 10), Instant::now());
    b.push(frame(1, 500), Instant::now());
    assert_eq!(b.pop_ready().map(|v| v.records.len()), Some(1));
    assert_eq!(b.pop_ready().map(|v| frames(v)[0].offset), Some(1));
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
    assert_eq!(b.pop_ready().map(|v| v.records.len()), Some(2));
    assert_eq!(b.deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn zero_interval_closes_on_the_next_tick() {
    let mut b = Batcher::new(1 << 20, 0, Duration::ZERO);
    b.push(frame(0, 10), Instant::now());
    b.tick(Instant::now());
    assert!(b.has_ready());
}

fn key(s: &str) -> PartitionKey {
    Some(Arc::from(s))
}

fn limits(open_max: usize, open_bytes_max: u64) -> PartitionLimits {
    PartitionLimits {
        open_max,
        open_bytes_max,
        copy_records: true,
    }
}

#[tokio::test(start_paused = true)]
async fn each_partition_batches_on_its_own() {
    let mut b = Batcher::with_limits(100, 0, Duration::from_secs(300), limits(10, 1 << 20));
    let now = Instant::now();
    b.push_to(key("a"), frame(0, 60), now);
    b.push_to(key("b"), frame(1, 60), now);
    // a's second record would pass the hint: a closes, b stays open.
    b.push_to(key("a"), frame(2, 60), now);
    let r = b.pop_ready().unwrap();
    assert_eq!(r.route, Route::Deliver(key("a")));
    assert_eq!(frames(r).iter().map(|f| f.offset).collect::<Vec<_>>(), [0]);
    assert_eq!(b.open_partitions(), 2);
    // b holds offset 1, the lowest still pending.
    assert_eq!(b.lowest_offset(), Some(1));
    b.close();
    let mut closed: Vec<_> = std::iter::from_fn(|| b.pop_ready()).collect();
    closed.sort_by_key(|r| r.first_offset());
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0].route, Route::Deliver(key("b")));
    assert_eq!(frames(closed.remove(1))[0].offset, 2);
    assert!(b.is_empty());
}

#[tokio::test(start_paused = true)]
async fn opening_past_the_limit_flushes_the_oldest_partition() {
    let mut b = Batcher::with_limits(1 << 20, 0, Duration::from_secs(300), limits(500, 1 << 30));
    let now = Instant::now();
    for i in 0..600u64 {
        b.push_to(key(&format!("k{i}")), frame(i, 10), now);
        assert!(b.open_partitions() <= 500);
    }
    assert_eq!(b.open_partitions(), 500);
    assert_eq!(b.evictions(), 100);
    // The first hundred, in opening order.
    for i in 0..100u64 {
        let r = b.pop_ready().unwrap();
        assert_eq!(r.route, Route::Deliver(key(&format!("k{i}"))));
    }
    assert!(!b.has_ready());
    assert_eq!(b.lowest_offset(), Some(100));
}

#[tokio::test(start_paused = true)]
async fn open_bytes_bound_flushes_oldest_partitions() {
    let mut b = Batcher::with_limits(1 << 20, 0, Duration::from_secs(300), limits(500, 250));
    let now = Instant::now();
    b.push_to(key("a"), frame(0, 100), now);
    b.push_to(key("b"), frame(1, 100), now);
    assert!(!b.has_ready());
    b.push_to(key("c"), frame(2, 100), now);
    let r = b.pop_ready().unwrap();
    assert_eq!(r.route, Route::Deliver(key("a")));
    assert!(!b.has_ready());
    assert_eq!(b.open_partitions(), 2);
}

#[tokio::test(start_paused = true)]
async fn every_partition_closes_by_its_own_time() {
    let mut b = Batcher::with_limits(1 << 20, 0, Duration::from_secs(60), limits(10, 1 << 20));
    let t0 = Instant::now();
    b.push_to(key("a"), frame(0, 10), t0);
    tokio::time::advance(Duration::from_secs(40)).await;
    b.push_to(key("b"), frame(1, 10), Instant::now());
    assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(60)));
    tokio::time::advance(Duration::from_secs(20)).await;
    b.tick(Instant::now());
    assert_eq!(
        b.pop_ready().map(|r| r.route),
        Some(Route::Deliver(key("a")))
    );
    assert!(!b.has_ready());
    assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(100)));
}

#[tokio::test(start_paused = true)]
async fn failed_records_hold_back_the_checkpoint_until_taken() {
    let mut b = Batcher::with_limits(1 << 20, 0, Duration::from_secs(60), limits(10, 1 << 20));
    b.push_to(key("a"), frame(5, 10), Instant::now());
    b.push_failed(
        "partitioning-failed",
        vec![(frame(3, 10), "not JSON".into())],
    );
    assert_eq!(b.lowest_offset(), Some(3));
    let r = b.pop_ready().unwrap();
    assert_eq!(
        r.route,
        Route::Failed {
            error_type: "partitioning-failed",
            reasons: vec!["not JSON".into()]
        }
    );
    assert_eq!(b.lowest_offset(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn the_oldest_arrival_held_is_known() {
    let mut b = Batcher::with_limits(100, 0, Duration::from_secs(60), limits(10, 1 << 20));
    assert_eq!(b.oldest_arrival(), None);
    let mut f = frame(0, 10);
    f.arrival_ms = 500;
    b.push_to(key("a"), f, Instant::now());
    let mut g = frame(1, 95);
    g.arrival_ms = 300;
    b.push_to(key("b"), g, Instant::now());
    assert_eq!(b.oldest_arrival(), Some(300));
    b.pop_ready();
    b.close();
    while b.pop_ready().is_some() {}
    assert_eq!(b.oldest_arrival(), None);
}

#[tokio::test(start_paused = true)]
async fn partitions_hold_copies_not_the_shared_read_buffer() {
    // Six records read in one buffer, alternating between two partitions.
    let chunk = Bytes::from((0..60u8).collect::<Vec<u8>>());
    let shared = chunk.as_ptr_range();
    let mut b = Batcher::with_limits(1000, 0, Duration::from_secs(300), limits(10, 1 << 20));
    let now = Instant::now();
    for i in 0..6u64 {
        let at = i as usize * 10;
        let f = Record {
            offset: i,
            arrival_ms: 0,
            key: chunk.slice(at..at + 2),
            data: chunk.slice(at + 2..at + 10),
        };
        b.push_to(key(if i % 2 == 0 { "even" } else { "odd" }), f, now);
    }
    b.close();
    let mut seen = 0;
    while let Some(r) = b.pop_ready() {
        for f in frames(r) {
            let at = f.offset as usize * 10;
            assert_eq!(&f.key[..], &chunk[at..at + 2]);
            assert_eq!(&f.data[..], &chunk[at + 2..at + 10]);
            for part in [&f.key, &f.data] {
                assert!(
                    !shared.contains(&part.as_ptr()),
                    "record {} still in the read buffer",
                    f.offset
                );
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    // A single partition keeps its records where they were read.
    let mut one = Batcher::new(1000, 0, Duration::from_secs(300));
    one.push(
        Record {
            offset: 0,
            arrival_ms: 0,
            key: Bytes::new(),
            data: chunk.slice(0..10),
        },
        now,
    );
    one.close();
    let r = one.pop_ready().unwrap();
    assert!(shared.contains(&frames(r)[0].data.as_ptr()));
}

#[tokio::test(start_paused = true)]
async fn a_held_batch_carries_little_unused_vector() {
    // 1,100 records of 10 bytes a batch: doubling grows a vector to 2,048.
    let mut b = Batcher::new(11_000, 0, Duration::from_secs(300));
    let now = Instant::now();
    for i in 0..2200 {
        b.push(frame(i, 10), now);
    }
    for _ in 0..2 {
        let batch = frames(b.pop_ready().unwrap());
        assert_eq!(batch.len(), 1100);
        let cap = batch.capacity();
        assert!((1100..=1100 + 1100 / 8).contains(&cap), "{cap}");
    }
    // A batch closed by time, half as large, keeps no more spare either.
    for i in 2200..2750 {
        b.push(frame(i, 10), now);
    }
    b.close();
    let last = frames(b.pop_ready().unwrap());
    assert_eq!(last.len(), 550);
    assert!(last.capacity() <= 550 + 550 / 8, "{}", last.capacity());
}

#[tokio::test(start_paused = true)]
async fn packed_partitions_give_back_every_record_as_it_came() {
    // Sizes from empty to past the largest block, keys of every length
    // up to 300, over three partitions.
    let sizes = [0usize, 1, 23, 24, 4096, 4097, 300 << 10, 77, 256 << 10];
    let mut b = Batcher::with_limits(u64::MAX, 1, Duration::from_secs(300), limits(10, u64::MAX));
    let now = Instant::now();
    let mut sent: HashMap<String, Vec<Record>> = HashMap::new();
    for i in 0..600u64 {
        let len = sizes[i as usize % sizes.len()];
        let f = Record {
            offset: 1_000_000 + i,
            arrival_ms: -5 + i as i64 * 7,
            key: Bytes::from(vec![(i % 251) as u8; i as usize % 301]),
            data: Bytes::from((0..len).map(|j| (j as u64 + i) as u8).collect::<Vec<u8>>()),
        };
        let part = format!("p{}", i % 3);
        sent.entry(part.clone()).or_default().push(f.clone());
        b.push_to(key(&part), f, now);
    }
    assert_eq!(b.lowest_offset(), Some(1_000_000));
    assert_eq!(b.oldest_arrival(), Some(-5));
    b.close();
    // Closed and still packed, they hold the checkpoint and freshness alike.
    assert_eq!(b.lowest_offset(), Some(1_000_000));
    assert_eq!(b.oldest_arrival(), Some(-5));
    let mut got: HashMap<String, Vec<Record>> = HashMap::new();
    while let Some(r) = b.pop_ready() {
        let (records, route) = r.into_parts();
        let Route::Deliver(Some(k)) = route else {
            panic!("unexpected route {route:?}");
        };
        assert_eq!(records.capacity(), records.len());
        got.entry(k.to_string()).or_default().extend(records);
    }
    assert_eq!(got, sent);
}

#[tokio::test(start_paused = true)]
async fn the_open_bytes_bound_counts_what_packed_records_take() {
    // Ten records of 10 bytes take 10 × (10 + 24) = 340 bytes packed: a
    // bound of 340 holds them, one more record passes it.
    let mut b = Batcher::with_limits(1 << 20, 0, Duration::from_secs(300), limits(500, 340));
    let now = Instant::now();
    for i in 0..10 {
        b.push_to(key(if i % 2 == 0 { "a" } else { "b" }), frame(i, 10), now);
    }
    assert!(!b.has_ready());
    b.push_to(key("b"), frame(10, 10), now);
    let r = b.pop_ready().unwrap();
    assert_eq!(r.route, Route::Deliver(key("a")));
    assert_eq!(r.records.len(), 5);
}

/// The user records of one KPL aggregate: `n` records of `len` bytes, all
/// at `offset`.
fn group(offset: u64, n: usize, len: usize) -> Vec<Record> {
    (0..n).map(|_| frame(offset, len)).collect()
}

#[tokio::test(start_paused = true)]
async fn the_size_hint_never_splits_a_group() {
    let mut b = Batcher::new(100, 0, Duration::from_secs(300));
    let now = Instant::now();
    b.push(frame(0, 60), now);
    // 60 + 3 × 30 passes the hint: the batch closes before the group, and
    // the group stays whole although a third record alone would have fit.
    b.push_group_to(None, group(1, 3, 30), now);
    assert_eq!(b.pop_ready().map(frames).map(|v| v.len()), Some(1));
    assert_eq!(b.lowest_offset(), Some(1));
    b.push(frame(2, 30), now);
    let closed = frames(b.pop_ready().unwrap());
    assert_eq!(
        closed.iter().map(|f| f.offset).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    assert_eq!(b.lowest_offset(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_group_larger_than_the_hint_is_a_batch_of_its_own() {
    let mut b = Batcher::new(100, 1, Duration::from_secs(300));
    let now = Instant::now();
    b.push(frame(0, 10), now);
    b.push_group_to(None, group(1, 5, 30), now);
    assert_eq!(b.pop_ready().map(frames).map(|v| v.len()), Some(1));
    assert_eq!(b.pop_ready().map(frames).map(|v| v.len()), Some(5));
    assert!(b.is_empty());
}

#[tokio::test(start_paused = true)]
async fn evictions_close_a_partition_after_its_group_not_within_it() {
    // One open partition at most: each group opening a partition closes
    // the one before it, which already holds all of its records of the
    // aggregate, so no partition has two batches holding offset 1.
    let mut b = Batcher::with_limits(1 << 20, 0, Duration::from_secs(300), limits(1, 1 << 20));
    let now = Instant::now();
    for k in ["a", "b", "c"] {
        b.push_group_to(key(k), group(1, 4, 10), now);
    }
    b.close();
    let mut seen = Vec::new();
    while let Some(r) = b.pop_ready() {
        let (records, route) = r.into_parts();
        assert_eq!(records.len(), 4);
        seen.push(route);
    }
    assert_eq!(
        seen,
        ["a", "b", "c"].map(|k| Route::Deliver(key(k))).to_vec()
    );
}

/// A piece of decoded rows (one Int64 column) for records of these sizes,
/// from offset `first` on.
fn piece(first: u64, lens: &[u32]) -> RowsPiece {
    use arrow_array::{Int64Array, RecordBatch};
    let ids: Vec<i64> = (0..lens.len() as i64).map(|i| first as i64 + i).collect();
    let batch = RecordBatch::try_from_iter([(
        "id",
        Arc::new(Int64Array::from(ids)) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let records = lens
        .iter()
        .enumerate()
        .map(|(i, &bytes)| RowOf {
            offset: first + i as u64,
            arrival_ms: 1_000 + i as i64,
            bytes,
        })
        .collect();
    RowsPiece { batch, records }
}

/// Each closed batch's offsets, and for rows, that each row is its record's.
fn closed_offsets(b: &mut Batcher) -> Vec<Vec<u64>> {
    use arrow_array::{Array, Int64Array};
    let mut out = Vec::new();
    while let Some(r) = b.pop_ready() {
        match r.into_contents().0 {
            Contents::Records(rs) => out.push(rs.iter().map(|f| f.offset).collect()),
            Contents::Rows(rows) => {
                let ids: Vec<u64> = rows
                    .batches()
                    .iter()
                    .flat_map(|b| {
                        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                        (0..a.len()).map(|i| a.value(i) as u64).collect::<Vec<_>>()
                    })
                    .collect();
                assert_eq!(ids, rows.offsets());
                out.push(ids);
            }
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn rows_close_by_the_size_hint_where_their_records_would() {
    let lens = [30, 30, 30, 30, 500, 10, 50, 50, 99, 1, 100, 20];
    let now = Instant::now();
    let mut by_record = Batcher::new(100, 1, Duration::from_secs(300));
    for (i, &len) in lens.iter().enumerate() {
        by_record.push_to(key("p"), frame(i as u64, len as usize), now);
    }
    let mut by_rows = Batcher::new(100, 1, Duration::from_secs(300));
    // In two pieces, as two read chunks would bring them.
    by_rows.push_rows_to(key("p"), piece(0, &lens[..6]), now);
    by_rows.push_rows_to(key("p"), piece(6, &lens[6..]), now);
    assert_eq!(by_rows.lowest_offset(), by_record.lowest_offset());
    by_record.close();
    by_rows.close();
    let want = closed_offsets(&mut by_record);
    assert_eq!(want.len(), 9, "{want:?}");
    assert_eq!(closed_offsets(&mut by_rows), want);
}

#[tokio::test(start_paused = true)]
async fn rows_count_toward_the_open_bytes_bound_and_close_by_time() {
    let now = Instant::now();
    let p = piece(0, &[10; 1000]);
    // Never counted as less than the records packed: 10 bytes and a header each.
    let held = (p.held_per_row() * 1000).max((10 + PACKED_HEADER as u64) * 1000);
    let mut b = Batcher::with_limits(
        1 << 30,
        0,
        Duration::from_secs(5),
        limits(10, held + held / 2),
    );
    b.push_rows_to(key("a"), p, now);
    assert_eq!(b.open_partitions(), 1);
    assert!(!b.has_ready());
    assert_eq!(b.oldest_arrival(), Some(1_000));
    // A second partition as large passes the bound: the oldest closes.
    b.push_rows_to(key("b"), piece(1000, &[10; 1000]), now);
    assert_eq!(b.evictions(), 1);
    let first = b.pop_ready().unwrap();
    assert_eq!(first.route, Route::Deliver(key("a")));
    assert_eq!(b.lowest_offset(), Some(1000));
    // Records for a partition holding rows close its batch first.
    b.push_to(key("b"), frame(5000, 10), now);
    assert_eq!(
        closed_offsets(&mut b),
        vec![(1000..2000).collect::<Vec<u64>>()]
    );
    b.tick(now + Duration::from_secs(5));
    assert_eq!(closed_offsets(&mut b), vec![vec![5000]]);
    assert!(b.is_empty());
}
