//! Kinesis streams over the log: persistence, limits, retention with consumers, declared streams.

use super::*;
use crate::log::AppendRecord;
use bytes::Bytes;

fn streams(dir: &Path, opts: KinesisOptions) -> Streams {
    let log = LogOptions {
        segment_bytes: 1 << 20,
        ..LogOptions::default()
    };
    Streams::new(dir, opts, log, DiskQuota::new(1 << 30))
}

async fn put(s: &KinesisStream, shard: u32, n: usize, bytes: usize) {
    let records = (0..n)
        .map(|_| AppendRecord {
            key: Bytes::from_static(b"k"),
            data: Bytes::from(vec![b'x'; bytes]),
            arrival_ms: 1,
        })
        .collect();
    match s.log.shard(shard) {
        Some(l) => assert!(l.append(records).await.is_ok()),
        None => panic!("no shard {shard}"),
    }
}

#[tokio::test]
async fn streams_survive_a_restart_and_deleted_ones_do_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let s = streams(dir.path(), KinesisOptions::default());
        let a = s
            .create("a", 2, false, BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        s.create("b", 1, true, BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            s.create("a", 1, false, BTreeMap::new()),
            Err(KinesisError::Exists(_))
        ));
        a.update(|spec| {
            spec.retention_hours = 48;
            spec.tags.insert("team".into(), "data".into());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        put(&a, 1, 3, 10).await;
        s.delete("b").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(s.delete("b"), Err(KinesisError::NotFound(_))));
    }
    let s = streams(dir.path(), KinesisOptions::default());
    s.load().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = s.all().iter().map(|x| x.name.clone()).collect();
    assert_eq!(names, vec!["a".to_string()]);
    let a = s.get("a").unwrap_or_else(|| panic!("a is gone"));
    assert_eq!(a.spec().retention_hours, 48);
    assert_eq!(a.spec().tags.get("team").map(String::as_str), Some("data"));
    assert_eq!(a.log.shard(1).map(|l| l.durable_end()), Some(3));
}

#[tokio::test]
async fn the_shard_limit_counts_every_stream() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = streams(
        dir.path(),
        KinesisOptions {
            shards_max: 5,
            ..KinesisOptions::default()
        },
    );
    s.create("a", 4, false, BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        s.create("b", 2, false, BTreeMap::new()),
        Err(KinesisError::Limit(_))
    ));
    s.create("b", 1, false, BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn retention_deletes_old_segments_but_not_what_a_consumer_still_needs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = streams(dir.path(), KinesisOptions::default());
    let a = s
        .create("a", 1, false, BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}"));
    // Three segments of 1 MiB each, then a fourth being written.
    put(&a, 0, 3, 400 << 10).await;
    put(&a, 0, 3, 400 << 10).await;
    put(&a, 0, 3, 400 << 10).await;
    let shard = a.log.shard(0).unwrap_or_else(|| panic!("no shard"));
    let oldest = shard.oldest_offset();
    // Within retention: nothing goes.
    a.trim(SystemTime::now());
    assert_eq!(shard.oldest_offset(), oldest);
    // A consumer at offset 4 holds what it has not read.
    checkpoint::write(
        &checkpoint::checkpoint_path(a.log.dir(), "firehose-x", 0),
        4,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let later = SystemTime::now() + Duration::from_secs(25 * 3600);
    a.trim(later);
    let after = shard.oldest_offset();
    assert!(after > 0 && after <= 4, "oldest {after}");
    // Once it has read everything, only the segment being written stays.
    checkpoint::write(
        &checkpoint::checkpoint_path(a.log.dir(), "firehose-x", 0),
        9,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    a.trim(later);
    assert!(shard.oldest_offset() > after);
    let mut r = shard.reader(shard.oldest_offset());
    let left = r.read(100, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        left.last().map(|f| f.offset),
        Some(8),
        "the newest records are kept"
    );
}

#[test]
fn the_write_limit_admits_a_second_of_records_then_refuses() {
    let mut b = Bucket::full();
    let admitted = (0..1500).filter(|_| b.take(10)).count();
    assert!((1000..1010).contains(&admitted), "{admitted}");
    let mut b = Bucket::full();
    assert!(b.take(1 << 20), "a full bucket takes a 1 MiB record");
    assert!(!b.take(1 << 20), "but not a second one at once");
}

#[tokio::test]
async fn declared_streams_are_created_kept_and_not_deleted_through_the_api() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = KinesisOptions::default();
    opts.streams.insert(
        "orders".into(),
        crate::config::KinesisStreamConfig {
            shards: 3,
            retention_hours: 72,
            log_key: None,
        },
    );
    let s = streams(dir.path(), opts.clone());
    s.load().unwrap_or_else(|e| panic!("{e}"));
    s.ensure_declared().unwrap_or_else(|e| panic!("{e}"));
    let o = s.get("orders").unwrap_or_else(|| panic!("not created"));
    assert_eq!((o.open_shards(), o.retention_hours()), (3, 72));
    assert!(matches!(s.delete("orders"), Err(KinesisError::InUse(_))));
    drop(o);
    drop(s);
    // Declared again with another shard count: refused, nothing changed.
    opts.streams.insert(
        "orders".into(),
        crate::config::KinesisStreamConfig {
            shards: 5,
            retention_hours: 24,
            log_key: None,
        },
    );
    let s = streams(dir.path(), opts);
    s.load().unwrap_or_else(|e| panic!("{e}"));
    let e = s.ensure_declared().err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|m| m.contains("kinesis.streams.orders.shards")),
        "{e:?}"
    );
    assert_eq!(s.get("orders").map(|o| o.open_shards()), Some(3));
}
