//! Config parsing and validation: each error names its YAML path.

use super::*;
use crate::encode::{Compression, Encoding};
use crate::route::partition::ReadGather;

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const GOOD: &str = r#"
listen: 127.0.0.1:4600
data_dir: /tmp/hydrant-test
object_store:
  type: s3
  endpoint: http://127.0.0.1:3900
  region: garage
  access_key_id: GK1
  secret_access_key: s3cr3t
streams:
  app-logs:
    shards: 2
    buffering: { size_mb: 1, interval_secs: 60 }
    compression: gzip
    destination:
      type: s3
      bucket: logs
      prefix: app/
  local:
    destination: { type: file, path: /tmp/out }
"#;

#[test]
fn good_config_gets_defaults_and_inherits_the_store() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.listen.port(), 4600);
    let s = &c.streams["app-logs"];
    assert_eq!(s.shards, 2);
    assert_eq!(s.buffer_bytes, 1 << 20);
    assert_eq!(s.compression, Compression::Gzip);
    let Destination::Object(d) = &s.destination else {
        panic!("{:?}", s.destination)
    };
    assert_eq!(d.bucket, "logs");
    match &d.store {
        StoreConfig::S3(s3) => {
            assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
            assert!(s3.path_style && s3.allow_http);
            assert_eq!(s3.access_key_id.as_deref(), Some("GK1"));
            assert_eq!(s3.timeout, Duration::from_secs(120));
            assert_eq!(s3.connect_timeout, Duration::from_secs(5));
        }
        other => panic!("{other:?}"),
    }
    let l = &c.streams["local"];
    assert_eq!(l.shards, 4);
    assert_eq!(l.buffer_interval, Duration::from_secs(300));
    assert_eq!(
        l.encoding,
        Encoding::JsonLines {
            delimiter: b"\n".to_vec()
        }
    );
}

#[test]
fn misspelled_key_names_its_path() {
    let e = errors(
        "streams:\n  a:\n    buffering: { size_mbs: 5 }\n    destination: { type: file, path: /x }\n",
    );
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("streams.a.buffering"), "{e:?}");
    assert!(e[0].contains("unknown field `size_mbs`"), "{e:?}");
}

#[test]
fn misspelled_top_level_key() {
    let e = errors("listn: 127.0.0.1:1\n");
    assert!(e[0].contains("unknown field `listn`"), "{e:?}");
}

#[test]
fn out_of_range_hints_are_all_reported() {
    let e = errors(
        "streams:\n  a:\n    shards: 0\n    buffering: { size_mb: 129, interval_secs: 901 }\n    destination: { type: file, path: /x }\n",
    );
    assert!(
        e.contains(&"streams.a.shards: 0 is out of range (1 to 256)".to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(&"streams.a.buffering.size_mb: 129 is out of range (1 to 128)".to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(
            &"streams.a.buffering.interval_secs: 901 is out of range (0 to 900)".to_string()
        ),
        "{e:?}"
    );
}

#[test]
fn missing_bucket_names_the_path() {
    let e = errors("streams:\n  a:\n    destination: { type: s3 }\n");
    assert_eq!(
        e,
        vec!["streams.a.destination.bucket: missing: an s3 destination needs a bucket"]
    );
}

#[test]
fn missing_destination_and_bad_name() {
    let e = errors("streams:\n  'bad name!':\n    shards: 1\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.bad name!: a stream name")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.bad name!.destination: missing")),
        "{e:?}"
    );
}

#[test]
fn wrong_type_names_the_path() {
    let e = errors("streams:\n  a:\n    shards: many\n    destination: { type: file, path: /x }\n");
    assert!(e[0].starts_with("streams.a.shards"), "{e:?}");
}

#[test]
fn unknown_destination_and_compression() {
    let e = errors("streams:\n  a:\n    compression: lz4\n    destination: { type: ftp }\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.a.compression: `lz4`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.a.destination.type: `ftp`")),
        "{e:?}"
    );
}

#[test]
fn bad_prefix_template_names_the_field() {
    let e = errors(
        "streams:\n  a:\n    destination: { type: file, path: /x, prefix: 'a/!{nope:1}/' }\n",
    );
    assert!(
        e[0].starts_with("streams.a.destination.prefix: unknown expression"),
        "{e:?}"
    );
}

#[test]
fn expressions_in_prefix_need_an_error_prefix() {
    let e = errors(
        "streams:\n  a:\n    destination: { type: file, path: /x, prefix: 'y=!{timestamp:yyyy}/' }\n",
    );
    assert_eq!(
        e,
        vec!["streams.a.destination.error_output_prefix: is required when prefix uses expressions"]
    );
}

#[test]
fn auth_is_required_off_loopback() {
    let e = errors("listen: 0.0.0.0:4573\n");
    assert!(e[0].starts_with("auth: is required"), "{e:?}");
    parse("listen: 0.0.0.0:4573\nauth:\n  access_keys:\n    - { access_key_id: A, secret_access_key: B }\n").unwrap();
}

#[test]
fn env_interpolation() {
    let get = |k: &str| (k == "SECRET").then(|| "hunter2".to_string());
    assert_eq!(interpolate_env("a: ${SECRET}", get).unwrap(), "a: hunter2");
    assert_eq!(interpolate_env("a: ${NOPE:-dflt}", get).unwrap(), "a: dflt");
    assert_eq!(interpolate_env("a: $$5 $x", get).unwrap(), "a: $5 $x");
    let e = interpolate_env("x: 1\na: ${NOPE}", get).unwrap_err();
    assert!(
        e.message.contains("line 2") && e.message.contains("NOPE"),
        "{e}"
    );
}

#[test]
fn only_fsync_always_is_accepted() {
    let e = errors("log: { fsync: never }\n");
    assert!(e[0].starts_with("log.fsync:"), "{e:?}");
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded_default().unwrap();
    let s = &c.streams["default"];
    assert_eq!(s.compression, Compression::None);
    assert_eq!(s.destination.kind(), "file");
    assert!(c.access_keys.is_empty());
}

#[test]
fn stream_names_follow_firehose_rules() {
    assert!(crate::aws::valid_delivery_stream_name("a.b_c-1"));
    assert!(!crate::aws::valid_delivery_stream_name(""));
    assert!(!crate::aws::valid_delivery_stream_name(&"a".repeat(65)));
    assert!(!crate::aws::valid_delivery_stream_name("a/b"));
    assert!(crate::aws::valid_bucket_name("my-bucket.1"));
    assert!(!crate::aws::valid_bucket_name("My_Bucket"));
    assert!(!crate::aws::valid_bucket_name("ab"));
}

#[test]
fn error_output_can_go_elsewhere() {
    let c = parse("streams:\n  a:\n    destination: { type: s3, bucket: data, endpoint: 'http://127.0.0.1:1' }\n    error_output: { type: file, path: /tmp/errors, prefix: 'e/!{firehose:error-output-type}/' }\n").unwrap();
    let s = &c.streams["a"];
    let t = &s.error_output;
    assert_eq!(t.kind, "file");
    assert_eq!(
        t.error_output_prefix.source(),
        "e/!{firehose:error-output-type}/"
    );
    let e = errors(
        "streams:\n  a:\n    destination: { type: file, path: /x }\n    error_output: { type: file, path: /y, error_output_prefix: z/ }\n",
    );
    assert!(
        e[0].starts_with("streams.a.error_output.error_output_prefix"),
        "{e:?}"
    );
}

#[test]
fn http_and_postgres_destinations() {
    let c = parse(
        "streams:\n  h:\n    buffering: { size_mb: 4, interval_secs: 1 }\n    destination: { type: http, url: 'https://example.com/in', access_key: k, content_encoding: gzip, common_attributes: { env: prod } }\n    backup: { mode: failed_only, destination: { type: file, path: /tmp/b } }\n  p:\n    destination:\n      type: postgres\n      connection: host=127.0.0.1 user=postgres dbname=x\n      table: public.events\n      columns: [ { column: id }, { column: city, field: addr.city } ]\n",
    )
    .unwrap();
    let Destination::Http(h) = &c.streams["h"].destination else {
        panic!()
    };
    assert!(h.gzip);
    assert_eq!(h.common_attributes["env"], "prod");
    assert_eq!(
        c.streams["h"].backup.as_ref().map(|b| b.mode),
        Some(BackupMode::FailedOnly)
    );
    assert_eq!(
        c.streams["h"].error_output.kind, "file",
        "http errors default to a local directory"
    );
    let Destination::Postgres(p) = &c.streams["p"].destination else {
        panic!()
    };
    assert_eq!(
        p.mapping,
        ColumnMapping::Columns(vec![
            ColumnMap {
                column: "id".into(),
                field: vec!["id".into()]
            },
            ColumnMap {
                column: "city".into(),
                field: vec!["addr".into(), "city".into()]
            },
        ])
    );
}

#[test]
fn bad_http_and_postgres_destinations_name_their_paths() {
    let e = errors(
        "streams:\n  h:\n    buffering: { size_mb: 100 }\n    destination: { type: http, bucket: b }\n",
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.h.destination.url: missing")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.h.destination.bucket: does not apply")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.h.buffering.size_mb: 100 is out of range for an http")),
        "{e:?}"
    );
    let e = errors(
        "streams:\n  p:\n    destination: { type: postgres, connection: 'host=x', table: 'drop table;' , jsonb_column: j}\n",
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.p.destination.table")),
        "{e:?}"
    );
    let e = errors(
        "streams:\n  p:\n    destination: { type: postgres, connection: 'host=x', table: t }\n",
    );
    assert!(
        e.iter().any(|m| m.contains("exactly one of `columns`")),
        "{e:?}"
    );
    let e = errors(
        "streams:\n  p:\n    destination: { type: file, path: /x }\n    backup: { mode: all, destination: { type: file, path: /y } }\n",
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("streams.p.backup: applies only")),
        "{e:?}"
    );
}

const PARTITIONED: &str = r#"
streams:
  events:
    dynamic_partitioning:
      keys:
        customer: .customer_id
        kind: .event.kind
      timestamp: { query: .ts, format: epoch_millis }
      open_partitions_max: 600
    destination:
      type: file
      path: /tmp/out
      prefix: "c=!{partitionKeyFromQuery:customer}/k=!{partitionKeyFromQuery:kind}/!{timestamp:yyyy}/"
      error_output_prefix: "errors/!{firehose:error-output-type}/"
"#;

#[test]
fn dynamic_partitioning_compiles_with_defaults() {
    let c = parse(PARTITIONED).unwrap();
    let p = c.streams["events"].partitioning.as_ref().unwrap();
    let names: Vec<&str> = p.keys.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["customer", "kind"]);
    assert_eq!(p.open_partitions_max, 600);
    // Four 5 MiB batches by default.
    assert_eq!(p.open_bytes_max, 20 << 20);
    assert!(p.time.is_some());
    assert_eq!(p.read_gather, ReadGather::DEFAULT);
    assert_eq!(p.read_gather.records_min, 2048);
    assert_eq!(p.read_gather.wait, Duration::from_millis(50));
}

#[test]
fn the_read_gather_is_set_and_bounded() {
    let yaml = PARTITIONED.replace(
        "open_partitions_max: 600",
        "open_partitions_max: 600\n      read_records_min: 100\n      read_wait_ms: 0",
    );
    let c = parse(&yaml).unwrap();
    let p = c.streams["events"].partitioning.as_ref().unwrap();
    assert_eq!(
        p.read_gather,
        ReadGather {
            records_min: 100,
            wait: Duration::ZERO
        }
    );
    let yaml = PARTITIONED.replace(
        "open_partitions_max: 600",
        "open_partitions_max: 600\n      read_records_min: 0\n      read_wait_ms: 60001",
    );
    let e = errors(&yaml);
    assert!(
        e.iter().any(|m| m.starts_with(
            "streams.events.dynamic_partitioning.read_records_min: 0 is out of range (1 to 1000000)"
        )),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with(
            "streams.events.dynamic_partitioning.read_wait_ms: 60001 is out of range (0 to 60000)"
        )),
        "{e:?}"
    );
}

#[test]
fn invalid_jq_names_the_key_path() {
    let yaml = PARTITIONED.replace(".event.kind", ".event.kind |");
    let e = errors(&yaml);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("streams.events.dynamic_partitioning.keys.kind: `.event.kind |` is not a valid jq expression"),
        "{e:?}"
    );
}

#[test]
fn partitioning_errors_name_their_paths() {
    let cases = [
        (
            PARTITIONED.replace("format: epoch_millis", "format: \"%Y-%Q\""),
            "streams.events.dynamic_partitioning.timestamp.format: `%Y-%Q` is not a valid strftime pattern",
        ),
        (
            PARTITIONED.replace("format: epoch_millis", "format: iso"),
            "streams.events.dynamic_partitioning.timestamp.format: `iso` is not a time format",
        ),
        (
            PARTITIONED.replace("query: .ts", "query: \".ts |\""),
            "streams.events.dynamic_partitioning.timestamp.query: `.ts |` is not a valid jq expression",
        ),
        (
            PARTITIONED.replace("k=!{partitionKeyFromQuery:kind}/", ""),
            "streams.events.dynamic_partitioning.keys.kind: is not used in streams.events.destination.prefix",
        ),
        (
            PARTITIONED.replace("partitionKeyFromQuery:kind", "partitionKeyFromQuery:knd"),
            "streams.events.destination.prefix: `knd` in `!{partitionKeyFromQuery:knd}` is not one of dynamic_partitioning.keys (customer, kind)",
        ),
        (
            PARTITIONED.replace("open_partitions_max: 600", "open_partitions_max: 0"),
            "streams.events.dynamic_partitioning.open_partitions_max: 0 is out of range",
        ),
        (
            PARTITIONED.replace(
                "      error_output_prefix: \"errors/!{firehose:error-output-type}/\"\n",
                "",
            ),
            "streams.events.destination.error_output_prefix: is required when prefix uses expressions",
        ),
        (
            PARTITIONED.replace("keys:", "kyes:"),
            "streams.events.dynamic_partitioning.kyes: unknown field `kyes`, expected one of `keys`",
        ),
    ];
    for (yaml, want) in cases {
        let e = errors(&yaml);
        assert!(
            e.iter().any(|m| m.starts_with(want)),
            "want {want}\n got {e:?}"
        );
    }
}

#[test]
fn partition_keys_need_partitioning() {
    let yaml = r#"
streams:
  s:
    destination:
      type: file
      path: /tmp/out
      prefix: "!{partitionKeyFromQuery:a}/"
      error_output_prefix: "e/!{firehose:error-output-type}/"
"#;
    let e = errors(yaml);
    assert!(
        e[0].starts_with("streams.s.destination.prefix: `!{partitionKeyFromQuery:a}` needs dynamic_partitioning.keys"),
        "{e:?}"
    );
    let yaml = r#"
streams:
  s:
    dynamic_partitioning: { keys: { a: .a } }
    destination: { type: http, url: "http://127.0.0.1:1/" }
"#;
    let e = errors(yaml);
    assert!(
        e.iter().any(|m| m.starts_with(
            "streams.s.dynamic_partitioning: applies only to s3 and file destinations"
        )),
        "{e:?}"
    );
}

#[test]
fn kinesis_settings_get_defaults_and_their_errors_name_their_paths() {
    let c = parse("streams: {}\n").unwrap();
    assert_eq!(c.kinesis, KinesisOptions::default());
    assert_eq!(c.kinesis.iterator_ttl, Duration::from_secs(300));
    let c = parse(
        "kinesis:\n  streams:\n    orders: { shards: 3 }\nstreams:\n  a:\n    source: { kinesis_stream: orders }\n    destination: { type: file, path: /tmp/x }\n",
    )
    .unwrap();
    assert_eq!(
        c.kinesis.streams["orders"],
        KinesisStreamConfig {
            shards: 3,
            retention_hours: 24,
            log_key: None,
        }
    );
    assert_eq!(
        c.streams["a"].source,
        Source::Kinesis {
            stream: "orders".into()
        }
    );
    let e = errors(
        "kinesis:\n  shards_max: 3\n  iterator_ttl_secs: 0\n  streams:\n    ok: { shards: 4, retention_hours: 10 }\nstreams:\n  x:\n    source: { kinesis_stream: \"a/b\" }\n    shards: 2\n    destination: { type: file, path: /tmp/x }\n",
    );
    for want in [
        "kinesis.iterator_ttl_secs: 0 is out of range",
        "kinesis.streams.ok.retention_hours: 10 is out of range (24 to 8760)",
        "kinesis.streams: declare 4 shards in all, more than kinesis.shards_max (3)",
        "streams.x.source.kinesis_stream: a Kinesis stream name",
        "streams.x.shards: a stream with a Kinesis source",
    ] {
        assert!(e.iter().any(|x| x.contains(want)), "{want} not in {e:#?}");
    }
    let e = errors("kinesis: { shard_limits: true }\n");
    assert!(
        e.iter()
            .any(|x| x.contains("kinesis") && x.contains("shard_limits")),
        "{e:?}"
    );
}

#[test]
fn gzip_limits_default_and_are_bounded() {
    let g = parse(GOOD).unwrap().limits.gzip;
    assert_eq!((g.member_bytes, g.threads_max), (1 << 20, 1));
    let c = parse(&format!(
        "limits: {{ gzip_member_bytes: 4194304, gzip_threads_max: 2 }}\n{GOOD}"
    ))
    .unwrap();
    assert_eq!(
        (c.limits.gzip.member_bytes, c.limits.gzip.threads_max),
        (4 << 20, 2)
    );
    let e = errors(&format!(
        "limits: {{ gzip_member_bytes: 1000, gzip_threads_max: 0 }}\n{GOOD}"
    ));
    for key in [
        "limits.gzip_member_bytes: 1000",
        "limits.gzip_threads_max: 0",
    ] {
        assert!(
            e.iter()
                .any(|x| x.contains(&format!("{key} is out of range"))),
            "{e:?}"
        );
    }
}

#[test]
fn malloc_arenas_default_to_the_cores_and_are_bounded() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(parse(GOOD).unwrap().limits.malloc_arenas, cores);
    let c = parse(&format!("limits: {{ malloc_arenas: 3 }}\n{GOOD}")).unwrap();
    assert_eq!(c.limits.malloc_arenas, 3);
    let e = errors(&format!("limits: {{ malloc_arenas: 0 }}\n{GOOD}"));
    assert!(
        e.iter()
            .any(|x| x.contains("limits.malloc_arenas: 0 is out of range")),
        "{e:?}"
    );
}

#[test]
fn parquet_takes_its_column_compression_level_under_encoding() {
    let stream = |top: &str, enc: &str| {
        format!(
            "streams:\n  s:\n{top}    encoding:\n      format: parquet\n{enc}      schema: [{{ name: id, type: int64 }}]\n    destination: {{ type: file, path: /tmp/out }}\n"
        )
    };
    let c = parse(&stream(
        "",
        "      compression: zstd\n      compression_level: 19\n",
    ))
    .unwrap();
    let Encoding::Parquet(p) = &c.streams["s"].encoding else {
        panic!("{:?}", c.streams["s"].encoding)
    };
    assert_eq!((p.compression.as_str(), p.level), ("zstd", Some(19)));
    let e = errors(&stream(
        "",
        "      compression: zstd\n      compression_level: 23\n",
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("streams.s.encoding.compression_level")),
        "{e:?}"
    );
    let e = errors(&stream("", "      compression_level: 3\n"));
    assert!(
        e.iter()
            .any(|e| e.contains("streams.s.encoding.compression_level")
                && e.contains("gzip and zstd")),
        "{e:?}"
    );
    let e = errors(&stream("    compression_level: 3\n", ""));
    assert!(
        e.iter().any(|e| e.contains("streams.s.compression_level")
            && e.contains("encoding.compression_level")),
        "{e:?}"
    );
    let e = errors(
        "streams:\n  s:\n    encoding: { compression_level: 3 }\n    destination: { type: file, path: /tmp/out }\n",
    );
    assert!(
        e.iter()
            .any(|e| e.contains("streams.s.encoding.compression_level")
                && e.contains("format: parquet")),
        "{e:?}"
    );
}

#[test]
fn put_runs_default_to_4_mib_and_are_bounded() {
    let cfg = parse("streams:\n  a:\n    destination: { type: file, path: /x }\n");
    assert_eq!(cfg.map(|c| c.log.put_run_bytes).ok(), Some(4 << 20));
    let cfg = parse(
        "log: { put_run_bytes: 0 }\nstreams:\n  a:\n    destination: { type: file, path: /x }\n",
    );
    assert_eq!(cfg.map(|c| c.log.put_run_bytes).ok(), Some(0));
    let e = errors("log: { put_run_bytes: 2147483648 }\n");
    assert!(
        e.contains(&"log.put_run_bytes: 2147483648 is out of range (0 to 1073741824)".to_string()),
        "{e:?}"
    );
}

fn s3_timeouts(c: &Config, stream: &str) -> (Duration, Duration) {
    match &c.streams[stream].destination {
        Destination::Object(d) => match &d.store {
            StoreConfig::S3(s3) => (s3.timeout, s3.connect_timeout),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn s3_timeouts_come_from_the_store_and_a_destination_may_override_them() {
    let c = parse(
        "object_store: { type: s3, endpoint: 'http://127.0.0.1:3900', timeout_secs: 30, connect_timeout_secs: 2 }\n\
         streams:\n  \
           a: { destination: { type: s3, bucket: logs } }\n  \
           b: { destination: { type: s3, bucket: logs, timeout_secs: 600 } }\n  \
           c: { destination: { type: s3, bucket: logs, region: eu-west-1, connect_timeout_secs: 9 } }\n",
    )
    .unwrap();
    let secs = Duration::from_secs;
    assert_eq!(s3_timeouts(&c, "a"), (secs(30), secs(2)));
    assert_eq!(s3_timeouts(&c, "b"), (secs(600), secs(2)));
    assert_eq!(s3_timeouts(&c, "c"), (secs(30), secs(9)));
}

#[test]
fn s3_timeouts_out_of_range_or_on_a_file_store_name_their_path() {
    let e = errors(
        "object_store: { type: s3, timeout_secs: 0 }\n\
         streams:\n  \
           a: { destination: { type: s3, bucket: logs, connect_timeout_secs: 301 } }\n  \
           b: { destination: { type: file, path: /x, timeout_secs: 5 } }\n",
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("object_store.timeout_secs") && e.contains("out of range")),
        "{e:?}"
    );
    assert!(
        e.iter().any(
            |e| e.starts_with("streams.a.destination.connect_timeout_secs")
                && e.contains("out of range")
        ),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("streams.b.destination.timeout_secs")
                && e.contains("applies only to `type: s3`")),
        "{e:?}"
    );
    let e = errors("object_store: { type: file, timeout_secs: 5 }\n");
    assert!(
        e.iter().any(|e| e.starts_with("object_store.timeout_secs")),
        "{e:?}"
    );
}
