//! Unit tests of the parent module.

use super::*;
use bytes::Bytes;

#[test]
fn parses_every_kind_of_type() {
    assert_eq!(parse_type("int64").unwrap(), DataType::Int64);
    assert_eq!(
        parse_type("timestamp[us, Europe/Oslo]").unwrap(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("Europe/Oslo")))
    );
    assert_eq!(
        parse_type("decimal(10, 2)").unwrap(),
        DataType::Decimal128(10, 2)
    );
    assert!(matches!(
        parse_type("list<string>").unwrap(),
        DataType::List(_)
    ));
    let DataType::Struct(f) = parse_type("struct<a: int32, b: list<map<string, int64>>>").unwrap()
    else {
        panic!()
    };
    assert_eq!(f.len(), 2);
    assert!(matches!(f[1].data_type(), DataType::List(_)));
    assert!(matches!(
        parse_type("map<string, double>").unwrap(),
        DataType::Map(_, false)
    ));
    assert!(parse_type("varchar").unwrap_err().contains("not a type"));
    assert!(parse_type("decimal(50, 2)").is_err());
    assert!(parse_type("timestamp[hours]").is_err());
}

pub(super) fn frames(lines: &[&str]) -> Vec<Record> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| Record {
            offset: i as u64,
            arrival_ms: 0,
            key: Bytes::new(),
            data: Bytes::copy_from_slice(l.as_bytes()),
        })
        .collect()
}

#[test]
fn writes_good_records_and_rejects_the_rest() {
    let opts = ParquetOptions {
        schema: schema(&[
            ("id".into(), DataType::Int64, false),
            ("name".into(), DataType::Utf8, true),
        ]),
        row_group_rows: 1000,
        compression: "zstd".into(),
        level: None,
        dictionary: true,
    };
    let recs = frames(&[
        r#"{"id": 1, "name": "a"}"#,
        r#"{"id": "x"}"#,
        r#"{"id": 3}"#,
        "not json",
        r#"{"name": "no id"}"#,
    ]);
    let (bytes, rejected) = write(&recs, &opts, Vec::new()).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    let idx: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![1, 3, 4], "{rejected:?}");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
}

#[test]
fn a_batch_decoded_in_chunks_is_one_row_group_and_rejects_by_batch_index() {
    let opts = ParquetOptions {
        schema: schema(&[("id".into(), DataType::Int64, false)]),
        row_group_rows: 1_000_000,
        compression: "snappy".into(),
        level: None,
        dictionary: false,
    };
    let n = DECODE_ROWS * 2 + 10;
    // Bad records in the first chunk, the second and the last: an empty
    // one, one holding two values, one of the wrong type.
    let bad = [5, DECODE_ROWS + 7, 2 * DECODE_ROWS + 3];
    let lines: Vec<String> = (0..n)
        .map(|i| match bad.iter().position(|&b| b == i) {
            Some(0) => String::new(),
            Some(1) => format!(r#"{{"id": {i}}} {{"id": {i}}}"#),
            Some(_) => r#"{"id": "text"}"#.to_string(),
            None => format!(r#"{{"id": {i}}}"#),
        })
        .collect();
    let recs = frames(&lines.iter().map(|l| l.as_str()).collect::<Vec<_>>());
    let (bytes, rejected) = write(&recs, &opts, Vec::new()).unwrap();
    let idx: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, bad, "{rejected:?}");
    assert!(rejected[0].1.contains("no JSON value"), "{}", rejected[0].1);
    assert!(rejected[1].1.contains("more than one"), "{}", rejected[1].1);
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap();
    assert_eq!(builder.metadata().num_row_groups(), 1);
    let mut ids = Vec::new();
    for b in builder.build().unwrap() {
        let b = b.unwrap();
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        ids.extend(col.values().iter().copied());
    }
    let expected: Vec<i64> = (0..n)
        .filter(|i| !bad.contains(i))
        .map(|i| i as i64)
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn the_column_compression_level_is_the_one_asked_for() {
    let lines: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                r#"{{"id": {i}, "name": "user-{} of group {}"}}"#,
                i % 97,
                i % 13
            )
        })
        .collect();
    let recs = frames(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let at = |compression: &str, level: Option<i32>| {
        let opts = ParquetOptions {
            schema: schema(&[
                ("id".into(), DataType::Int64, false),
                ("name".into(), DataType::Utf8, true),
            ]),
            row_group_rows: 100_000,
            compression: compression.into(),
            level,
            dictionary: false,
        };
        let (bytes, rejected) = write(&recs, &opts, Vec::new()).unwrap();
        assert!(rejected.is_empty());
        let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            Bytes::from(bytes.clone()),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
        assert_eq!(rows, lines.len(), "{compression} {level:?}");
        bytes
    };
    // No level is the codec's default: zstd 1, gzip 6.
    assert_eq!(at("zstd", None), at("zstd", Some(1)));
    assert_eq!(at("gzip", None), at("gzip", Some(6)));
    assert_ne!(at("zstd", Some(19)), at("zstd", Some(1)));
    assert!(at("gzip", Some(9)).len() < at("gzip", Some(0)).len());
}

#[test]
fn the_flat_decoder_and_arrow_json_write_the_same_file() {
    let opts = ParquetOptions {
        schema: schema(&[
            ("id".into(), DataType::Int64, false),
            ("name".into(), DataType::Utf8, true),
            ("n".into(), DataType::Int64, true),
        ]),
        row_group_rows: 1_000_000,
        compression: "zstd".into(),
        level: None,
        dictionary: true,
    };
    // 9,000 records: three chunks, one of them with an escape (which the
    // flat decoder leaves to arrow-json) and one with a record that fits
    // neither.
    let lines: Vec<String> = (0..9_000)
        .map(|i| match i {
            100 => r#"{"id":100,"name":"quote \" here"}"#.to_string(),
            5_000 => r#"{"id":"five thousand"}"#.to_string(),
            _ => format!(r#"{{"id":{i},"name":"n{}","n":{}}}"#, i % 17, i * 3),
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let recs = frames(&refs);
    let (fast, fast_rejected) = write(&recs, &opts, Vec::new()).unwrap();
    let (general, general_rejected) = write_general(&recs, &opts, Vec::new()).unwrap();
    assert_eq!(fast_rejected, general_rejected);
    assert_eq!(fast_rejected.len(), 1);
    assert_eq!(fast_rejected[0].0, 5_000);
    assert!(fast == general, "the files differ");
}
