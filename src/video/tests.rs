//! Video streams over their log: retention, the archive floor, restart.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;
use crate::log::AppendRecord;

fn streams(dir: &Path) -> VideoStreams {
    let log = LogOptions {
        segment_bytes: 1 << 20,
        ..LogOptions::default()
    };
    VideoStreams::new(dir, VideoOptions::default(), log, DiskQuota::new(u64::MAX))
}

fn spec(name: &str, retention_hours: u32) -> Spec {
    Spec {
        name: name.into(),
        device_name: None,
        media_type: None,
        kms_key_id: None,
        log_key: None,
        retention_hours,
        created_ms: 1_700_000_000_000,
        version: spec::new_version(),
        tags: Default::default(),
    }
}

async fn put_fragments(s: &Arc<VideoStream>, n: usize, bytes: usize) {
    let shard = s.log.shard(0).unwrap();
    for i in 0..n {
        let meta = fragment::Meta {
            timecode: i as i64 * 1000,
            producer_ms: 1_700_000_000_000 + i as i64 * 1000,
            server_ms: 1_700_000_000_000 + i as i64 * 1000,
            duration_ms: 1000,
            tags: Vec::new(),
            timecode_scale_ns: 1_000_000,
            tracks: Vec::new(),
        };
        let data = fragment::encode(&meta, b"header", &vec![7u8; bytes]);
        let r = shard
            .append(vec![AppendRecord {
                key: Bytes::new(),
                data: Bytes::from(data),
                arrival_ms: meta.server_ms,
            }])
            .await
            .unwrap();
        s.index.push(index::entry(r.start, &meta, bytes));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_fragments_but_never_unarchived_ones() {
    let dir = tempfile::tempdir().unwrap();
    let v = streams(dir.path());
    let s = v.create(spec("cam", 1)).unwrap();
    put_fragments(&s, 10, 300_000).await;
    let later = chrono::Utc::now().timestamp_millis() + 3 * 3_600_000;

    // Archived up to fragment 2 only: nothing past it goes.
    s.archived.store(2, Ordering::Release);
    s.trim(later);
    assert!(s.log.shard(0).unwrap().oldest_offset() <= 2);
    assert!(s.index.first().unwrap().offset <= 2);

    s.archived.store(u64::MAX, Ordering::Release);
    s.trim(later);
    let oldest = s.log.shard(0).unwrap().oldest_offset();
    assert!(
        oldest > 2,
        "retention deleted nothing (oldest offset {oldest})"
    );
    assert_eq!(s.index.first().unwrap().offset, oldest);
    // Within retention: nothing more goes.
    s.trim(chrono::Utc::now().timestamp_millis());
    assert_eq!(s.log.shard(0).unwrap().oldest_offset(), oldest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_their_index_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let v = streams(dir.path());
        let s = v.create(spec("cam", 24)).unwrap();
        put_fragments(&s, 3, 1000).await;
        v.create(spec("gone", 24)).unwrap();
        v.delete("gone").unwrap();
        assert!(matches!(
            v.create(spec("cam", 1)),
            Err(VideoError::Exists(_))
        ));
    }
    let v = streams(dir.path());
    v.load().unwrap();
    let names: Vec<String> = v.all().iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["cam"]);
    let s = v.get("cam").unwrap();
    assert_eq!(s.index.len(), 3);
    assert_eq!(s.index.last().unwrap().producer_ms, 1_700_000_002_000);
    assert_eq!(s.spec().retention_hours, 24);
}
