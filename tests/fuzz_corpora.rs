//! Replays every input in the fuzz corpora (`fuzz/corpus/<target>/`) through
//! the same invariant checks the fuzz targets run, on stable Rust.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} broke an invariant", path.display());
        n += 1;
    }
    n
}

#[test]
fn frame_reader_corpus() {
    let n = replay("frame_reader", hydrant::fuzzing::frame_reader);
    assert!(n >= 5, "only {n} inputs in the frame_reader corpus");
}

#[test]
fn firehose_request_corpus() {
    let n = replay("firehose_request", hydrant::fuzzing::firehose_request);
    assert!(n >= 5, "only {n} inputs in the firehose_request corpus");
}

#[test]
fn kpl_aggregate_corpus() {
    let n = replay("kpl_aggregate", hydrant::fuzzing::kpl_aggregate);
    assert!(n >= 5, "only {n} inputs in the kpl_aggregate corpus");
}

#[test]
fn queue_receipt_handle_corpus() {
    let n = replay(
        "queue_receipt_handle",
        hydrant::fuzzing::queue_receipt_handle,
    );
    assert!(n >= 5, "only {n} inputs in the queue_receipt_handle corpus");
}

#[test]
fn iam_policy_corpus() {
    let n = replay("iam_policy", hydrant::fuzzing::iam_policy);
    assert!(n >= 5, "only {n} inputs in the iam_policy corpus");
}

#[test]
fn channel_request_corpus() {
    let n = replay("channel_request", hydrant::fuzzing::channel_request);
    assert!(n >= 5, "only {n} inputs in the channel_request corpus");
}

#[test]
fn sealed_record_corpus() {
    let n = replay("sealed_record", hydrant::fuzzing::sealed_record);
    assert!(n >= 5, "only {n} inputs in the sealed_record corpus");
}

#[test]
fn mkv_reader_corpus() {
    let n = replay("mkv_reader", hydrant::fuzzing::mkv_reader);
    assert!(n >= 5, "only {n} inputs in the mkv_reader corpus");
}

/// The fast paths against their full parses, on their own corpus and on
/// every body of the request parsers' corpora.
#[test]
fn fast_paths_corpus() {
    let n = replay("fast_paths", hydrant::fuzzing::fast_paths);
    assert!(n >= 5, "only {n} inputs in the fast_paths corpus");
    let firehose = replay("firehose_request", hydrant::fuzzing::fast_paths);
    let kinesis = replay("kinesis_request", hydrant::fuzzing::fast_paths);
    assert!(
        firehose + kinesis >= 10,
        "{firehose} + {kinesis} request bodies"
    );
}

#[test]
fn kinesis_request_corpus() {
    let n = replay("kinesis_request", hydrant::fuzzing::kinesis_request);
    assert!(n >= 5, "only {n} inputs in the kinesis_request corpus");
}

#[test]
fn ndjson_body_corpus() {
    let n = replay("ndjson_body", hydrant::fuzzing::ndjson_body);
    assert!(n >= 5, "only {n} inputs in the ndjson_body corpus");
}

#[test]
fn config_yaml_corpus() {
    let n = replay("config_yaml", hydrant::fuzzing::config_yaml);
    assert!(n >= 5, "only {n} inputs in the config_yaml corpus");
}

#[test]
fn video_request_corpus() {
    let n = replay("video_request", hydrant::fuzzing::video_request);
    assert!(n >= 5, "only {n} inputs in the video_request corpus");
}

#[test]
fn analytics_sql_corpus() {
    let n = replay("analytics_sql", hydrant::fuzzing::analytics_sql);
    assert!(n >= 5, "only {n} inputs in the analytics_sql corpus");
}

#[test]
fn analytics_request_corpus() {
    let n = replay("analytics_request", hydrant::fuzzing::analytics_request);
    assert!(n >= 5, "only {n} inputs in the analytics_request corpus");
}

#[test]
fn flat_records_corpus() {
    let n = replay("flat_records", hydrant::fuzzing::flat_records);
    assert!(n >= 5, "only {n} inputs in the flat_records corpus");
}
