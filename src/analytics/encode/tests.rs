//! Tests of `encode`: the written forms, and round trips through `decode`.

use std::sync::Arc;

use arrow_array::types::{IntervalDayTimeType, Time64MicrosecondType, TimestampNanosecondType};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Date64Array, Decimal128Array, Float32Array, Float64Array,
    Int8Array, Int16Array, Int32Array, Int64Array, IntervalDayTimeArray, LargeStringArray,
    PrimitiveArray, RecordBatch, StringArray, StringViewArray, Time32MillisecondArray,
    TimestampMillisecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;

use super::super::decode::Decoder;
use super::super::schema::{Column, InputSchema, RecordFormat, SqlType};
use super::*;

fn columns() -> Vec<Column> {
    let types = [
        ("S", "VARCHAR(64)"),
        ("C", "CHAR(3)"),
        ("I", "INTEGER"),
        ("B", "BIGINT"),
        ("SM", "SMALLINT"),
        ("T", "TINYINT"),
        ("D", "DOUBLE"),
        ("R", "REAL"),
        ("N", "DECIMAL(38,4)"),
        ("OK", "BOOLEAN"),
        ("TS", "TIMESTAMP"),
        ("DT", "DATE"),
        ("TM", "TIME"),
    ];
    types
        .iter()
        .map(|(name, ty)| Column {
            name: name.to_string(),
            sql_type: SqlType::parse(ty).unwrap(),
            mapping: None,
        })
        .collect()
}

/// A batch of every input type with NULLs, unicode, quotes and delimiters.
fn every_type_batch() -> (InputSchema, RecordBatch) {
    let schema = InputSchema {
        format: RecordFormat::json(),
        columns: columns(),
    };
    let mut arrays = text_arrays();
    arrays.extend(number_arrays());
    arrays.extend(temporal_arrays());
    let batch = RecordBatch::try_new(schema.arrow_schema(), arrays).unwrap();
    (schema, batch)
}

fn text_arrays() -> Vec<ArrayRef> {
    let strings = vec![
        Some("plain"),
        Some("comma, \"quote\" and\nnewline\r\n"),
        Some(""),
        None,
        Some("ünïcödé 😀 tab\t \\ back"),
    ];
    let chars = vec![Some("a|b"), None, Some("  x"), Some("\""), Some(",")];
    vec![
        Arc::new(StringArray::from(strings)),
        Arc::new(StringArray::from(chars)),
    ]
}

fn number_arrays() -> Vec<ArrayRef> {
    let decimals = vec![
        Some(12_3400),
        Some(-5),
        None,
        Some(10i128.pow(38) - 1),
        Some(0),
    ];
    vec![
        Arc::new(Int32Array::from(vec![
            Some(i32::MIN),
            Some(0),
            None,
            Some(i32::MAX),
            Some(-1),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(i64::MIN),
            None,
            Some(1),
            Some(i64::MAX),
            Some(42),
        ])),
        Arc::new(Int16Array::from(vec![
            Some(i16::MIN),
            Some(i16::MAX),
            None,
            Some(0),
            Some(7),
        ])),
        Arc::new(Int8Array::from(vec![
            Some(i8::MIN),
            Some(i8::MAX),
            Some(0),
            None,
            Some(-3),
        ])),
        Arc::new(Float64Array::from(vec![
            Some(0.1),
            Some(-1e300),
            Some(5e-324),
            None,
            Some(-0.0),
        ])),
        Arc::new(Float32Array::from(vec![
            Some(0.1f32),
            Some(f32::MAX),
            None,
            Some(1e-30),
            Some(3.0),
        ])),
        Arc::new(
            Decimal128Array::from(decimals)
                .with_precision_and_scale(38, 4)
                .unwrap(),
        ),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None,
            Some(true),
            Some(false),
        ])),
    ]
}

fn temporal_arrays() -> Vec<ArrayRef> {
    let stamps = vec![
        Some(1_704_164_645_678),
        Some(0),
        Some(-1),
        None,
        Some(253_402_300_799_999),
    ];
    let dates = vec![Some(19_782), Some(0), Some(-719_162), None, Some(2_932_896)];
    let times = vec![Some(0), Some(86_399_999), None, Some(47_655_016), Some(1)];
    vec![
        Arc::new(TimestampMillisecondArray::from(stamps)),
        Arc::new(Date32Array::from(dates)),
        Arc::new(Time32MillisecondArray::from(times)),
    ]
}

fn decode_all(schema: &InputSchema, records: &[Vec<u8>]) -> RecordBatch {
    let mut decoder = Decoder::new(schema).unwrap();
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let (batch, accepted, rejects) = decoder.decode(&slices);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(accepted, (0..records.len()).collect::<Vec<_>>());
    batch
}

fn text(records: &[Vec<u8>], i: usize) -> &str {
    std::str::from_utf8(&records[i]).unwrap()
}

#[test]
fn json_round_trip_of_every_type() {
    let (schema, batch) = every_type_batch();
    let records = encode_rows(&batch, &OutputFormat::Json).unwrap();
    assert_eq!(records.len(), batch.num_rows());
    assert_eq!(decode_all(&schema, &records), batch);
}

#[test]
fn csv_round_trip_of_every_type() {
    let (mut schema, batch) = every_type_batch();
    for (row, column) in [("\n", ","), ("\r\n", "|"), ("~~", "\t"), ("\n", ", ")] {
        schema.format = RecordFormat::Csv {
            row_delimiter: row.to_string(),
            column_delimiter: column.to_string(),
        };
        let format = OutputFormat::Csv {
            row_delimiter: row.to_string(),
            column_delimiter: column.to_string(),
        };
        let records = encode_rows(&batch, &format).unwrap();
        assert!(records.iter().all(|r| r.ends_with(row.as_bytes())));
        assert_eq!(decode_all(&schema, &records), batch, "{row:?} {column:?}");
    }
}

#[test]
fn json_value_forms() {
    let (_, batch) = every_type_batch();
    let records = encode_rows(&batch, &OutputFormat::Json).unwrap();
    let first = text(&records, 0);
    assert!(
        first.starts_with(r#"{"S":"plain","C":"a|b","I":-2147483648,"#),
        "{first}"
    );
    assert!(
        first.contains(r#""D":0.1,"R":0.1,"N":12.3400,"OK":true,"#),
        "{first}"
    );
    assert!(
        first.ends_with(r#""TS":"2024-01-02 03:04:05.678","DT":"2024-02-29","TM":"00:00:00.000"}"#),
        "{first}"
    );
    let second = text(&records, 1);
    assert!(
        second.contains(r#""S":"comma, \"quote\" and\nnewline\r\n""#),
        "{second}"
    );
    assert!(second.contains(r#""B":null"#), "{second}");
    assert!(second.contains(r#""D":-1e300"#), "{second}");
    assert!(second.contains(r#""N":-0.0005"#), "{second}");
    assert!(
        second.contains(r#""TS":"1970-01-01 00:00:00.000""#),
        "{second}"
    );
    assert!(text(&records, 2).contains(r#""TS":"1969-12-31 23:59:59.999""#));
    assert!(text(&records, 3).contains(r#""S":null"#));
    assert!(!first.ends_with('\n'));
    for record in &records {
        serde_json::from_slice::<serde_json::Value>(record).unwrap();
    }
}

#[test]
fn json_writes_non_finite_floats_as_null() {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let values = Float64Array::from(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0]);
    let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
    let records = encode_rows(&batch, &OutputFormat::Json).unwrap();
    let texts: Vec<&str> = (0..4).map(|i| text(&records, i)).collect();
    assert_eq!(
        texts,
        vec![
            r#"{"x":null}"#,
            r#"{"x":null}"#,
            r#"{"x":null}"#,
            r#"{"x":1}"#
        ]
    );
    let csv = OutputFormat::Csv {
        row_delimiter: "\n".to_string(),
        column_delimiter: ",".to_string(),
    };
    let records = encode_rows(&batch, &csv).unwrap();
    let texts: Vec<&str> = (0..4).map(|i| text(&records, i)).collect();
    assert_eq!(texts, vec!["NaN\n", "inf\n", "-inf\n", "1\n"]);
}

#[test]
fn csv_quotes_only_what_needs_it_and_keeps_null_apart_from_empty() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Int32, true),
        Field::new("c", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![
                Some("x,y"),
                Some(""),
                Some("say \"hi\""),
            ])),
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec![
                None,
                Some("line\nbreak"),
                Some("plain"),
            ])),
        ],
    )
    .unwrap();
    let format = OutputFormat::Csv {
        row_delimiter: "\n".to_string(),
        column_delimiter: ",".to_string(),
    };
    let records = encode_rows(&batch, &format).unwrap();
    assert_eq!(text(&records, 0), "\"x,y\",1,\n");
    assert_eq!(text(&records, 1), "\"\",,\"line\nbreak\"\n");
    assert_eq!(text(&records, 2), "\"say \"\"hi\"\"\",3,plain\n");
}

#[test]
fn engine_output_types_are_written() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("big", DataType::LargeUtf8, true),
        Field::new("view", DataType::Utf8View, true),
        Field::new("count", DataType::UInt64, true),
        Field::new(
            "ns",
            DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, Some("+02:00".into())),
            true,
        ),
        Field::new("d64", DataType::Date64, true),
        Field::new(
            "t64",
            DataType::Time64(arrow_schema::TimeUnit::Microsecond),
            true,
        ),
        Field::new(
            "iv",
            DataType::Interval(arrow_schema::IntervalUnit::DayTime),
            true,
        ),
        Field::new("none", DataType::Null, true),
    ]));
    let ns = PrimitiveArray::<TimestampNanosecondType>::from(vec![1_704_164_645_678_999_999])
        .with_timezone("+02:00");
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(LargeStringArray::from(vec!["l"])),
            Arc::new(StringViewArray::from(vec![
                "a view string longer than twelve",
            ])),
            Arc::new(UInt64Array::from(vec![u64::MAX])),
            Arc::new(ns),
            Arc::new(Date64Array::from(vec![86_400_000])),
            Arc::new(PrimitiveArray::<Time64MicrosecondType>::from(vec![
                3_723_004_005,
            ])),
            Arc::new(IntervalDayTimeArray::from(vec![
                IntervalDayTimeType::make_value(1, 2),
            ])),
            Arc::new(arrow_array::NullArray::new(1)),
        ],
    )
    .unwrap();
    let records = encode_rows(&batch, &OutputFormat::Json).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&records[0]).unwrap();
    assert_eq!(value["big"], "l");
    assert_eq!(value["view"], "a view string longer than twelve");
    assert_eq!(value["count"], serde_json::json!(u64::MAX));
    assert_eq!(
        value["ns"], "2024-01-02 03:04:05.678",
        "utc, truncated to ms"
    );
    assert_eq!(value["d64"], "1970-01-02");
    assert_eq!(value["t64"], "01:02:03.004");
    assert!(
        value["iv"].as_str().is_some_and(|s| !s.is_empty()),
        "{value}"
    );
    assert_eq!(value.get("none"), Some(&serde_json::Value::Null), "{value}");
}

#[test]
fn out_of_range_values_and_bad_formats_are_errors() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "t",
        DataType::Time32(arrow_schema::TimeUnit::Millisecond),
        true,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Time32MillisecondArray::from(vec![-5]))],
    )
    .unwrap();
    let err = encode_rows(&batch, &OutputFormat::Json).unwrap_err();
    assert!(
        matches!(err, EncodeError::Value { ref column, row: 0, .. } if column == "t"),
        "{err}"
    );
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
        true,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(TimestampMillisecondArray::from(vec![i64::MAX]))],
    )
    .unwrap();
    assert!(encode_rows(&batch, &OutputFormat::Json).is_err());
    let format = OutputFormat::Csv {
        row_delimiter: String::new(),
        column_delimiter: ",".to_string(),
    };
    assert!(matches!(
        encode_rows(&batch, &format),
        Err(EncodeError::Format(_))
    ));
}

fn one_string_schema(format: RecordFormat) -> InputSchema {
    InputSchema {
        format,
        columns: vec![
            Column {
                name: "A".to_string(),
                sql_type: SqlType::Varchar(65535),
                mapping: None,
            },
            Column {
                name: "B".to_string(),
                sql_type: SqlType::Double,
                mapping: None,
            },
        ],
    }
}

proptest! {
    #[test]
    fn strings_and_doubles_round_trip(values in prop::collection::vec((prop::option::of(any::<String>()), prop::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite()))), 1..12), csv in any::<bool>()) {
        let (strings, doubles): (Vec<_>, Vec<_>) = values.into_iter().unzip();
        let (record_format, format) = if csv {
            (RecordFormat::Csv { row_delimiter: "\n".into(), column_delimiter: ";".into() },
             OutputFormat::Csv { row_delimiter: "\n".into(), column_delimiter: ";".into() })
        } else {
            (RecordFormat::json(), OutputFormat::Json)
        };
        let schema = one_string_schema(record_format);
        let batch = RecordBatch::try_new(schema.arrow_schema(), vec![
            Arc::new(StringArray::from(strings)),
            Arc::new(Float64Array::from(doubles)),
        ]).unwrap();
        let records = encode_rows(&batch, &format).unwrap();
        let mut decoder = Decoder::new(&schema).unwrap();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let (decoded, _, rejects) = decoder.decode(&slices);
        prop_assert!(rejects.is_empty(), "{:?}", rejects);
        prop_assert_eq!(decoded, batch);
    }
}
