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

fn default_log(dir: &std::path::Path) -> ShardLog {
    ShardLog::open(dir, 0, &LogOptions::default(), DiskQuota::new(u64::MAX)).unwrap()
}

/// A default log holding records "r000" to "r099", with its directory.
async fn hundred_records() -> (tempfile::TempDir, ShardLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = default_log(dir.path());
    log.append((0..100).map(|i| rec(&format!("r{i:03}"))).collect())
        .await
        .unwrap();
    (dir, log)
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
        let log = default_log(dir.path());
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

    let log = default_log(dir.path());
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
    // One deleted segment stays as the spare, and counts until it is reused.
    let spare = fs::metadata(segment::spare_path(dir.path())).unwrap().len();
    assert!(spare >= 256);
    assert_eq!(quota.used(), before - freed + spare);
    assert_eq!(log.quota_bytes(), quota.used());
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

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn write_log(dir: &std::path::Path, sizes: &[usize]) -> Vec<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let records: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| (0..*s).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        rt.block_on(async {
            let log = ShardLog::open(dir, 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
            for r in &records {
                log.append(vec![AppendRecord {
                    key: Bytes::new(),
                    data: Bytes::from(r.clone()),
                    arrival_ms: 0,
                }])
                .await
                .unwrap();
            }
        });
        records
    }

    /// Reads everything it can; stops at the first error.
    fn read_until_error(log: &ShardLog) -> (Vec<crate::record::Record>, Option<LogError>) {
        let mut r = log.reader(log.oldest_offset());
        let mut out = Vec::new();
        loop {
            match r.read(5, usize::MAX) {
                Ok(b) if b.is_empty() => return (out, None),
                Ok(b) => out.extend(b),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A crash can cut the last segment at any byte: recovery keeps every
        /// whole frame before the cut and the log goes on from there.
        #[test]
        fn torn_tail_at_any_byte_keeps_every_whole_frame(
            sizes in proptest::collection::vec(0usize..80, 1..40), cut_frac in 0.0f64..1.0) {
            let dir = tempfile::tempdir().unwrap();
            let records = write_log(dir.path(), &sizes);
            let bases = segment::list_segments(dir.path()).unwrap();
            let last = *bases.last().unwrap();
            let path = segment::segment_path(dir.path(), last);
            let full = std::fs::read(&path).unwrap();
            let cut = (full.len() as f64 * cut_frac) as usize;
            std::fs::write(&path, &full[..cut]).unwrap();
            // Frames wholly before the cut.
            let (whole, _, _) = frame::decode_all(&full[..cut]);
            let expected_end = last + whole.len() as u64;

            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let log = rt.block_on(async { ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap() });
            prop_assert_eq!(log.durable_end(), expected_end);
            let (frames, err) = read_until_error(&log);
            prop_assert!(err.is_none(), "{:?}", err);
            prop_assert_eq!(frames.len() as u64, expected_end);
            for f in &frames {
                prop_assert_eq!(&f.data[..], &records[f.offset as usize][..]);
            }
            // Appending continues at the recovered end.
            let next = rt.block_on(log.append(vec![AppendRecord { key: Bytes::new(), data: Bytes::from_static(b"after"), arrival_ms: 0 }])).unwrap();
            prop_assert_eq!(next.start, expected_end);
        }

        /// Bit rot anywhere: the reader never returns a record whose data
        /// differs from what was written; it stops with an error instead.
        #[test]
        fn flipped_byte_anywhere_never_yields_a_wrong_record(
            sizes in proptest::collection::vec(1usize..60, 5..40), seg_frac in 0.0f64..1.0, pos_frac in 0.0f64..1.0, flip in 1u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let records = write_log(dir.path(), &sizes);
            let bases = segment::list_segments(dir.path()).unwrap();
            let base = bases[((bases.len() - 1) as f64 * seg_frac) as usize];
            let path = segment::segment_path(dir.path(), base);
            let mut bytes = std::fs::read(&path).unwrap();
            prop_assume!(!bytes.is_empty());
            let pos = ((bytes.len() - 1) as f64 * pos_frac) as usize;
            bytes[pos] ^= flip;
            std::fs::write(&path, &bytes).unwrap();

            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let log = rt.block_on(async { ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap() });
            let (frames, _err) = read_until_error(&log);
            for (i, f) in frames.iter().enumerate() {
                prop_assert_eq!(f.offset, i as u64, "offsets must stay in sequence");
                prop_assert_eq!(&f.data[..], &records[f.offset as usize][..]);
            }
        }
    }
}

#[tokio::test]
async fn a_reader_resumes_at_the_byte_position_an_earlier_one_stopped_at() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    for i in 0..40 {
        log.append(vec![rec(&format!("r{i}"))]).await.unwrap();
    }
    let mut r = log.reader(0);
    let mut seen = Vec::new();
    // Read a few at a time, each time from a fresh reader at the resume point.
    loop {
        let batch = r.read(3, usize::MAX).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.iter().map(|f| f.offset));
        let next = r.position();
        r = match r.resume_point() {
            Some((base, pos)) => {
                assert!(base <= next);
                log.reader_at(next, base, pos)
            }
            None => log.reader(next),
        };
    }
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    // A wrong position is noticed and the reader finds the offset itself.
    let mut bad = log.reader_at(5, 0, 3);
    let got = bad.read(2, usize::MAX).unwrap();
    assert_eq!(got.iter().map(|f| f.offset).collect::<Vec<_>>(), vec![5, 6]);
}

#[tokio::test]
async fn offset_at_time_finds_the_first_record_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    for i in 0..30i64 {
        let mut r = rec(&format!("r{i}"));
        r.arrival_ms = 1_000 + i * 10;
        log.append(vec![r]).await.unwrap();
    }
    assert_eq!(log.offset_at_time(0).unwrap(), 0);
    assert_eq!(log.offset_at_time(1_000).unwrap(), 0);
    assert_eq!(log.offset_at_time(1_001).unwrap(), 1);
    assert_eq!(log.offset_at_time(1_150).unwrap(), 15);
    assert_eq!(log.offset_at_time(1_290).unwrap(), 29);
    assert_eq!(log.offset_at_time(5_000).unwrap(), 30);
}

#[tokio::test]
async fn the_tail_position_lets_a_reader_start_at_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    for i in 0..20 {
        log.append(vec![rec(&format!("r{i}"))]).await.unwrap();
    }
    assert_eq!(log.tail_position(19), None, "only the durable end has one");
    let (base, pos) = log.tail_position(20).unwrap();
    let mut r = log.reader_at(20, base, pos);
    assert!(r.read(10, usize::MAX).unwrap().is_empty());
    log.append(vec![rec("new")]).await.unwrap();
    let got = log.reader_at(20, base, pos).read(10, usize::MAX).unwrap();
    assert_eq!(got.iter().map(|f| f.offset).collect::<Vec<_>>(), vec![20]);
    // After a restart the tail is where recovery found it.
    drop(r);
    drop(log);
    let log = ShardLog::open(dir.path(), 0, &small_segments(), DiskQuota::new(u64::MAX)).unwrap();
    let (base, pos) = log.tail_position(21).unwrap();
    log.append(vec![rec("after restart")]).await.unwrap();
    let got = log.reader_at(21, base, pos).read(10, usize::MAX).unwrap();
    assert_eq!(got[0].data, Bytes::from_static(b"after restart"));
}

#[tokio::test]
async fn a_deleted_segment_is_written_over_as_the_next_and_reads_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let quota = DiskQuota::new(u64::MAX);
    let log = ShardLog::open(dir.path(), 0, &small_segments(), quota.clone()).unwrap();
    for i in 0..40 {
        log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
    }
    log.delete_before(20).unwrap();
    let spare_path = segment::spare_path(dir.path());
    let spare_len = fs::metadata(&spare_path).unwrap().len();
    let spare_inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&spare_path).unwrap());
    // Fill the active segment until it rolls onto the spare.
    let mut i = 40;
    while spare_path.exists() {
        log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
        i += 1;
        assert!(i < 200, "the spare was never reused");
    }
    let active = *log.disk().shared.segment_bases().last().unwrap();
    let active_path = segment::segment_path(dir.path(), active);
    let meta = fs::metadata(&active_path).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), spare_inode);
    // The reused file is longer than its one new frame: old frames follow.
    assert_eq!(meta.len(), spare_len);
    let (_, _, active_len) = log.disk().shared.tail.get();
    assert!(active_len < spare_len);
    let want = |from: usize, to: usize| (from..to).map(|i| format!("r{i:03}")).collect::<Vec<_>>();
    let oldest = log.oldest_offset() as usize;
    assert_eq!(read_all(&log, oldest as u64), want(oldest, i));
    // A reader at the tip sees the next records, not the old frames.
    let mut tip = log.reader(i as u64);
    assert!(tip.read(10, usize::MAX).unwrap().is_empty());
    for _ in 0..30 {
        log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
        i += 1;
    }
    let got: Vec<String> = tip
        .read(1000, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|f| String::from_utf8(f.data.to_vec()).unwrap())
        .collect();
    assert_eq!(got, want(i - 30, i));
    // Rolled past, the reused segment was cut to its frames.
    let bases = log.disk().shared.segment_bases();
    let next = bases.iter().find(|b| **b > active).unwrap();
    assert_eq!(
        fs::metadata(&active_path).unwrap().len(),
        (next - active) * frame::encoded_len(0, 4) as u64
    );
    assert_eq!(read_all(&log, oldest as u64), want(oldest, i));
}

#[tokio::test]
async fn a_reused_segment_recovers_to_its_new_frames_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let quota = DiskQuota::new(u64::MAX);
    let mut i = 0;
    {
        let log = ShardLog::open(dir.path(), 0, &small_segments(), quota.clone()).unwrap();
        for _ in 0..40 {
            log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
            i += 1;
        }
        log.delete_before(20).unwrap();
        while segment::spare_path(dir.path()).exists() {
            log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
            i += 1;
        }
        log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
        i += 1;
    }
    // The last segment held two new frames and old ones after them; the
    // writer, closing, cut it to its frames before the log's drop returned.
    let last = *segment::list_segments(dir.path()).unwrap().last().unwrap();
    let last = segment::segment_path(dir.path(), last);
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        2 * frame::encoded_len(0, 4) as u64
    );
    let quota = DiskQuota::new(u64::MAX);
    let log = ShardLog::open(dir.path(), 0, &small_segments(), quota.clone()).unwrap();
    assert_eq!(log.durable_end(), i);
    let oldest = log.oldest_offset();
    let got = read_all(&log, oldest);
    assert_eq!(got.len() as u64, i - oldest);
    assert_eq!(got.last().unwrap(), &format!("r{:03}", i - 1));
    assert_eq!(log.append(vec![rec("next")]).await.unwrap(), i..i + 1);
    assert_eq!(read_all(&log, i), vec!["next"]);
    // What the quota counts is what is on disk.
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(quota.used(), on_disk);
}

#[tokio::test]
async fn the_spare_gives_way_when_the_quota_is_short() {
    let dir = tempfile::tempdir().unwrap();
    let one = frame::encoded_len(0, 4) as u64;
    let quota = DiskQuota::new(one * 40);
    let log = ShardLog::open(dir.path(), 0, &small_segments(), quota.clone()).unwrap();
    for i in 0..30 {
        log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
    }
    log.delete_before(30).unwrap();
    assert!(segment::spare_path(dir.path()).exists());
    // Room for more only once the spare is gone.
    for i in 30..60 {
        log.append(vec![rec(&format!("r{i:03}"))]).await.unwrap();
        log.delete_before(i).unwrap();
    }
    assert!(quota.used() <= quota.limit());
    assert_eq!(read_all(&log, 59), vec!["r059"]);
}

#[tokio::test]
async fn bytes_past_the_durable_end_are_never_read() {
    // A write that is not durable yet (or failed, and is cut off and written
    // again with other records) sits past the durable end. A reader at the
    // tip must not take it in, even into its buffer: it would return it once
    // the end moves past its offset.
    let dir = tempfile::tempdir().unwrap();
    let log = default_log(dir.path());
    for i in 0..3 {
        log.append(vec![rec(&format!("r{i}"))]).await.unwrap();
    }
    let (_, base, len) = log.disk().shared.tail.get();
    let mut ghost = Vec::new();
    frame::encode(&mut ghost, 3, 1_700_000_000_000, b"", b"ghost").unwrap();
    let path = segment::segment_path(dir.path(), base);
    std::os::unix::fs::FileExt::write_all_at(
        &fs::File::options().write(true).open(&path).unwrap(),
        &ghost,
        len,
    )
    .unwrap();
    let mut r = log.reader(0);
    assert_eq!(r.read(2, usize::MAX).unwrap().len(), 2);
    let got = r.read(10, usize::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offset, 2);
    assert!(r.read(10, usize::MAX).unwrap().is_empty());
    log.append(vec![rec("real")]).await.unwrap();
    let got = r.read(10, usize::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset, &got[0].data[..]), (3, &b"real"[..]));
}

#[tokio::test]
async fn consecutive_reads_share_their_read_buffer() {
    // Records of one read and the next lie in one buffer, one after the
    // other as in the file: a batch built from many reads holds about its
    // own bytes, not a new buffer per read.
    let (_dir, log) = hundred_records().await;
    let mut r = log.reader(0);
    let mut frames = Vec::new();
    for _ in 0..10 {
        frames.extend(r.read(10, usize::MAX).unwrap());
    }
    assert_eq!(frames.len(), 100);
    let step = frame::encoded_len(0, 4);
    for w in frames.windows(2) {
        assert_eq!(
            w[1].data.as_ptr() as usize - w[0].data.as_ptr() as usize,
            step,
            "records {} and {} are in different buffers",
            w[0].offset,
            w[1].offset
        );
    }
}

#[test]
fn the_tail_is_never_read_half_updated() {
    let tail = std::sync::Arc::new(Tail::new(0, 0, 0));
    let writer = {
        let tail = tail.clone();
        std::thread::spawn(move || {
            for i in 1..=200_000u64 {
                tail.set(i, i * 2, i * 3);
            }
        })
    };
    let mut last = 0;
    while last < 200_000 {
        let (next, base, pos) = tail.get();
        assert_eq!((base, pos), (next * 2, next * 3), "a torn read");
        assert!(next >= last, "went backwards");
        last = next;
    }
    writer.join().unwrap();
}

#[tokio::test]
async fn read_into_reuses_the_callers_vector() {
    let (_dir, log) = hundred_records().await;
    let mut r = log.reader(0);
    let mut out = Vec::with_capacity(64);
    let at = out.as_ptr();
    let mut seen = Vec::new();
    loop {
        r.read_into(&mut out, 30, usize::MAX).unwrap();
        if out.is_empty() {
            break;
        }
        assert!(out.len() <= 30);
        assert_eq!(out.as_ptr(), at, "the vector was replaced");
        seen.extend(out.iter().map(|f| f.offset));
    }
    assert_eq!(seen, (0..100).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_sealed_shard_keeps_its_records_refuses_more_and_reopens_sealed() {
    let (dir, log) = hundred_records().await;
    // Appends queued before the seal are written; the end is after them.
    let (more, seal) = tokio::join!(log.append(vec![rec("last")]), log.seal());
    assert_eq!(more.unwrap(), 100..101);
    assert_eq!(seal.unwrap(), 101);
    assert!(log.is_sealed());
    assert!(matches!(
        log.append(vec![rec("late")]).await,
        Err(LogError::Closed { .. })
    ));
    assert_eq!(
        log.seal().await.unwrap(),
        101,
        "sealing again answers the end"
    );
    assert_eq!(read_all(&log, 99), vec!["r099", "last"]);
    drop(log);
    let opts = LogOptions::default();
    let cipher = Arc::new(crate::log::seal::LogCipher::new(opts.keys.clone(), None));
    let reopened =
        ShardLog::open_as(dir.path(), 0, &opts, DiskQuota::new(u64::MAX), true, cipher).unwrap();
    assert!(reopened.is_sealed());
    assert_eq!(reopened.durable_end(), 101);
    assert!(reopened.append(vec![rec("x")]).await.is_err());
    assert_eq!(read_all(&reopened, 100), vec!["last"]);
}

#[tokio::test]
async fn a_stream_log_gains_shards_and_an_unfinished_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let quota = DiskQuota::new(u64::MAX);
    let log = StreamLog::open(dir.path(), 2, &LogOptions::default(), quota.clone()).unwrap();
    let added = log.add_shard().unwrap();
    assert_eq!((added.shard(), log.shard_count()), (2, 3));
    added.append(vec![rec("child")]).await.unwrap();
    assert_eq!(read_all(&added, 0), vec!["child"]);
    drop(added);
    drop(log);
    // A shard past the count a change recorded is a leftover: removed.
    StreamLog::remove_unused_shards(dir.path(), 2).unwrap();
    assert!(!shard_dir(dir.path(), 2).exists());
    assert!(shard_dir(dir.path(), 1).exists());
    let log = StreamLog::open(dir.path(), 2, &LogOptions::default(), quota).unwrap();
    assert_eq!(log.shard_count(), 2);
}
