//! The AWS SDK for Rust (`aws-sdk-firehose`) against the real daemon.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_firehose::Client;
use aws_sdk_firehose::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use common::{Daemon, lines_under};

fn client(url: &str) -> Client {
    let conf = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::from_keys("test", "test", None))
        .build();
    Client::from_conf(conf)
}

#[tokio::test]
async fn rust_sdk_puts_records_and_gets_modeled_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let d = Daemon::start(
        dir.path(),
        &format!(
            "streams:\n  rust:\n    shards: 2\n    buffering: {{ size_mb: 1, interval_secs: 1 }}\n    destination: {{ type: file, path: {} }}\n",
            out.display()
        ),
    );
    let c = client(&d.url());

    let r = c
        .put_record()
        .delivery_stream_name("rust")
        .record(
            Record::builder()
                .data(Blob::new(br#"{"sdk":"rust","n":-1}"#.to_vec()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(!r.record_id().is_empty());

    let records: Vec<Record> = (0..100)
        .map(|i| {
            Record::builder()
                .data(Blob::new(
                    format!(r#"{{"sdk":"rust","n":{i}}}"#).into_bytes(),
                ))
                .build()
                .unwrap()
        })
        .collect();
    let r = c
        .put_record_batch()
        .delivery_stream_name("rust")
        .set_records(Some(records))
        .send()
        .await
        .unwrap();
    assert_eq!(r.failed_put_count(), 0);
    assert_eq!(r.request_responses().len(), 100);

    let names = c.list_delivery_streams().send().await.unwrap();
    assert_eq!(names.delivery_stream_names(), ["rust"]);
    let desc = c
        .describe_delivery_stream()
        .delivery_stream_name("rust")
        .send()
        .await
        .unwrap();
    assert_eq!(
        desc.delivery_stream_description()
            .unwrap()
            .delivery_stream_name(),
        "rust"
    );

    let err = c
        .put_record()
        .delivery_stream_name("missing")
        .record(
            Record::builder()
                .data(Blob::new(b"x".to_vec()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");

    let too_many: Vec<Record> = (0..501)
        .map(|_| {
            Record::builder()
                .data(Blob::new(b"x".to_vec()))
                .build()
                .unwrap()
        })
        .collect();
    let err = c
        .put_record_batch()
        .delivery_stream_name("rust")
        .set_records(Some(too_many))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_argument_exception(), "{err:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        lines = lines_under(&out);
        if lines.len() >= 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ns: Vec<i64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns.sort();
    assert_eq!(ns, (-1..100).collect::<Vec<_>>());
    assert_eq!(d.terminate(), Some(0));
}
