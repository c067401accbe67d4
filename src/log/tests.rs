//! Tests of the shard log as a whole: append, read back, restart, trim, quota.

use super::*;
use bytes::Bytes;

fn rec(s: &str) -> AppendRecord {
    AppendRecord {
        key: Bytes::new(),
        data: Bytes::copy_from_slice(s.as_bytes()),
        arrival_ms: 1_700_000_000_000,
    }
}

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 256,
        ..LogOptions::default()
    }
}

fn read_all(log: &ShardLog, from: u64) -> Vec<String> {
    let mut r = log.reader(from);
    let mut out = Vec::new();
    loop {
        let batch = r.read(7, usize::MAX).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(
            batch
                .into_iter()
                .map(|f| String::from_utf8(f.data.to_vec()).unwrap()),
        );
    }
}

#[tokio::test]
async fn appends_get_consecutive_offsets_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    let a = log.append(vec![rec("a"), rec("b")]).await.unwrap();
    let b = log.append(vec![rec("c")]).await.unwrap();
    assert_eq!(a, 0..2);
    assert_eq!(b, 2..3);
    assert_eq!(log.durable_end(), 3);
    assert_eq!(read_all(&log, 0), vec!["a", "b", "c"]);
    assert_eq!(read_all(&log, 2), vec!["c"]);
}

#[tokio::test]
async fn concurrent_appends_are_all_durable_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut ranges = Vec::new();
            for i in 0..25 {
                ranges.push(log.append(vec![rec(&format!("{t}-{i}"))]).await.unwrap());
            }
            ranges
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|r| r.start);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.start, i as u64);
    }
    let mut got = read_all(&log, 0);
    got.sort();
    assert_eq!(got.len(), 200);
    got.dedup();
    assert_eq!(got.len(), 200);
}

#[tokio::test]
async fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("record-{i:03}")).collect();
    for r in &expected {
        log.append(vec![rec(r)]).await.unwrap();
    }
    let segs = segment::list_segments(dir.path()).unwrap();
    assert!(segs.len() > 5, "expected several segments, got {segs:?}");
    assert_eq!(read_all(&log, 0), expected);
    assert_eq!(read_all(&log, 55), expected[55..].to_vec());
}

#[tokio::test]
async fn reopen_continues_offsets_after_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = ShardLog::open(
            dir.path(),
            0,
            &LogOptions::default(),
            DiskQuota::new(u64::MAX),
        )
        .unwrap();
        log.append(vec![rec("one"), rec("two")]).await.unwrap();
    }
    // Simulate a crash in the middle of a write: half a frame at the end.
    let path = segment::segment_path(dir.path(), 0);
    let mut half = Vec::new();
    frame::encode(&mut half, 2, 0, b"", b"never acknowledged").unwrap();
    half.truncate(half.len() / 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&half);
    std::fs::write(&path, &bytes).unwrap();

    let log = ShardLog::open(
        dir.path(),
        0,
        &LogOptions::default(),
        DiskQuota::new(u64::MAX),
    )
    .unwrap();
    assert_eq!(log.durable_end(), 2);
    assert_eq!(log.append(vec![rec("three")]).await.unwrap(), 2..3);
    assert_eq!(read_all(&log, 0), vec!["one", "two", "three"]);
}

#[tokio::test]
async fn delete_before_keeps_unread_records_and_frees_quota() {
    let dir = tempfile::tempdir().unwrap();
    let quota = DiskQuota::new(u64::MAX);
    let log = ShardLog::open(dir.path(), 0, &small_segments(), quota.clone()).unwrap();
    for i in 0..60 {
        log.append(vec![rec(&format!("r{i}"))]).await.unwrap();
    }
    let before = quota.used();
    let freed = log.delete_before(40).unwrap();
    assert!(freed > 0);
    assert_eq!(quota.used(), before - freed);
    assert!(log.oldest_offset() <= 40);
    let got = read_all(&log, 40);
    assert_eq!(got.first().map(String::as_str), Some("r40"));
    assert_eq!(got.len(), 20);
    // Reading below the oldest segment is an error, not silence.
    let mut r = log.reader(0);
    assert!(matches!(
        r.read(10, usize::MAX),
        Err(LogError::Trimmed { .. })
    ));
}

#[tokio::test]
async fn quota_refuses_what_does_not_fit_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let one = frame::encoded_len(0, 10) as u64;
    let log = ShardLog::open(
        dir.path(),
        0,
        &LogOptions::default(),
        DiskQuota::new(one * 3),
    )
    .unwrap();
    for _ in 0..3 {
        log.append(vec![rec("0123456789")]).await.unwrap();
    }
    let err = log.append(vec![rec("0123456789")]).await.unwrap_err();
    assert!(matches!(err, LogError::QuotaExceeded { .. }), "{err}");
    assert!(err.is_unavailable());
    assert_eq!(log.durable_end(), 3);
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[tokio::test]
async fn reader_sees_records_appended_after_it_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    let mut r = log.reader(0);
    assert!(r.read(10, usize::MAX).unwrap().is_empty());
    for i in 0..30 {
        log.append(vec![rec(&format!("x{i}"))]).await.unwrap();
        let got = r.read(10, usize::MAX).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset, i);
    }
}
