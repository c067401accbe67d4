//! Unit tests of the parent module.

use super::checkpoint::complete;
use super::held::{offset_runs, reread};
use super::upload::Uploading;
use super::*;
use crate::log::{AppendRecord, DiskQuota, LogOptions, StreamLog};
use crate::record::Record;

async fn log_of(n: usize) -> (tempfile::TempDir, StreamLog) {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the records span many of them.
    let opts = LogOptions {
        segment_bytes: 256,
        ..LogOptions::default()
    };
    let log = StreamLog::open(dir.path(), 2, &opts, DiskQuota::new(u64::MAX)).unwrap();
    for i in 0..n {
        let rec = AppendRecord {
            key: bytes::Bytes::new(),
            data: bytes::Bytes::from(format!("record {i}")),
            arrival_ms: 1_700_000_000_000 + i as i64,
        };
        log.shard(1).unwrap().append(vec![rec]).await.unwrap();
    }
    (dir, log)
}

fn frame(offset: u64) -> Record {
    Record {
        offset,
        arrival_ms: 0,
        key: bytes::Bytes::new(),
        data: bytes::Bytes::new(),
    }
}

#[test]
fn batches_sharing_a_first_offset_each_hold_back_the_checkpoint() {
    // A backup of source records and the batch they went to can start
    // at the same offset: finishing one must not release the other.
    let mut firsts = BTreeMap::new();
    let a = Uploading { first: 7, seq: 0 };
    let b = Uploading { first: 7, seq: 1 };
    firsts.insert(a, 0);
    firsts.insert(b, 0);
    assert!(complete("s", 0, Ok((a, true)), &mut firsts));
    assert_eq!(firsts.keys().next().map(|u| u.first), Some(7));
    assert!(!complete("s", 0, Ok((b, false)), &mut firsts));
    assert_eq!(firsts.len(), 1);
    assert!(complete("s", 0, Ok((b, true)), &mut firsts));
    assert!(firsts.is_empty());
}

#[test]
fn offsets_are_held_as_runs_of_consecutive_ones() {
    let frames: Vec<Record> = [3, 4, 5, 9, 11, 12].into_iter().map(frame).collect();
    assert_eq!(offset_runs(&frames), vec![(3, 5), (9, 9), (11, 12)]);
    assert!(offset_runs(&[]).is_empty());
}

#[tokio::test]
async fn a_batch_is_read_again_from_the_log_exactly() {
    let (_dir, log) = log_of(40).await;
    // A partition's batch: some runs of the shard's records, across
    // several segments.
    let runs = [(2, 4), (7, 7), (20, 25), (39, 39)];
    let frames = reread(&log, 1, &runs, 11).unwrap();
    let offsets: Vec<u64> = frames.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, vec![2, 3, 4, 7, 20, 21, 22, 23, 24, 25, 39]);
    for f in &frames {
        assert_eq!(f.data, format!("record {}", f.offset).as_bytes());
        assert_eq!(f.arrival_ms, 1_700_000_000_000 + f.offset as i64);
    }
}

#[tokio::test]
async fn records_missing_from_the_log_are_an_error_not_a_short_batch() {
    let (_dir, log) = log_of(10).await;
    let e = reread(&log, 1, &[(5, 12)], 8).unwrap_err();
    assert!(e.contains("records 10 to 12"), "{e}");
    let e = reread(&log, 7, &[(0, 1)], 2).unwrap_err();
    assert!(e.contains("closed"), "{e}");
}

#[test]
fn error_output_names_tell_partitions_and_outputs_apart_when_records_share_offsets() {
    use super::side::output_object_name;
    // A stream's own log: one record per offset, the names as ever.
    assert_eq!(
        output_object_name("s", 1, (5, 9), None),
        crate::route::keys::object_name("s", 1, 5, 9, "")
    );
    // Read from a Kinesis stream, the user records of an aggregate at
    // offset 5 can fail in two partitions, or be refused by the format in
    // one batch while the rest of it gives up: four names.
    let names: std::collections::HashSet<String> = [
        ("k=a/", "s3-failed"),
        ("k=b/", "s3-failed"),
        ("k=a/", "format-conversion-failed"),
        ("k=a/", "backup"),
    ]
    .into_iter()
    .map(|tag| output_object_name("s", 1, (5, 5), Some(tag)))
    .collect();
    assert_eq!(names.len(), 4);
    // The same records under the same name on every try.
    assert_eq!(
        output_object_name("s", 1, (5, 5), Some(("k=a/", "s3-failed"))),
        output_object_name("s", 1, (5, 5), Some(("k=a/", "s3-failed")))
    );
    assert!(
        output_object_name("s", 1, (5, 5), Some(("", "processing-failed")))
            .starts_with("s-1-00000000000000000005-00000000000000000005-")
    );
}
