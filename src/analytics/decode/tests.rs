//! Tests of `decode`: each value rule, row paths, CSV splitting, and that
//! no input makes it panic.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Time32MillisecondType, TimestampMillisecondType,
};
use arrow_array::{Array, RecordBatch};
use proptest::prelude::*;

use super::super::schema::{Column, InputSchema, RecordFormat, SqlType};
use super::*;

fn column(name: &str, sql_type: &str, mapping: Option<&str>) -> Column {
    Column {
        name: name.to_string(),
        sql_type: SqlType::parse(sql_type).unwrap(),
        mapping: mapping.map(str::to_string),
    }
}

fn json_schema(row_path: &str, columns: Vec<Column>) -> InputSchema {
    InputSchema {
        format: RecordFormat::Json {
            row_path: row_path.to_string(),
        },
        columns,
    }
}

fn csv_schema(row: &str, col: &str, columns: Vec<Column>) -> InputSchema {
    InputSchema {
        format: RecordFormat::Csv {
            row_delimiter: row.to_string(),
            column_delimiter: col.to_string(),
        },
        columns,
    }
}

fn run(schema: &InputSchema, records: &[&str]) -> (RecordBatch, Vec<usize>, Vec<Reject>) {
    let mut decoder = Decoder::new(schema).unwrap();
    let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    decoder.decode(&bytes)
}

/// Decodes one JSON record into one column of the given type.
fn one(sql_type: &str, json_value: &str) -> (RecordBatch, Vec<Reject>) {
    let schema = json_schema("$", vec![column("V", sql_type, Some("$.v"))]);
    let record = format!("{{\"v\": {json_value}}}");
    let (batch, _, rejects) = run(&schema, &[&record]);
    (batch, rejects)
}

fn one_ok(sql_type: &str, json_value: &str) -> RecordBatch {
    let (batch, rejects) = one(sql_type, json_value);
    assert!(rejects.is_empty(), "{sql_type} {json_value}: {rejects:?}");
    assert_eq!(batch.num_rows(), 1);
    batch
}

fn one_rejected(sql_type: &str, json_value: &str) -> Reject {
    let (batch, rejects) = one(sql_type, json_value);
    assert_eq!(batch.num_rows(), 0, "{sql_type} {json_value} was accepted");
    assert_eq!(rejects.len(), 1);
    rejects.into_iter().next().unwrap()
}

fn ts(batch: &RecordBatch) -> i64 {
    batch
        .column(0)
        .as_primitive::<TimestampMillisecondType>()
        .value(0)
}

#[test]
fn json_every_type_decodes() {
    let schema = json_schema(
        "$",
        vec![
            column("S", "VARCHAR(8)", Some("$.s")),
            column("C", "CHAR(2)", Some("$.c")),
            column("I", "INTEGER", Some("$.i")),
            column("B", "BIGINT", Some("$.b")),
            column("SM", "SMALLINT", Some("$.sm")),
            column("T", "TINYINT", Some("$.t")),
            column("D", "DOUBLE", Some("$.d")),
            column("R", "REAL", Some("$.r")),
            column("N", "DECIMAL(6,2)", Some("$.n")),
            column("OK", "BOOLEAN", Some("$.ok")),
            column("TS", "TIMESTAMP", Some("$.ts")),
            column("DT", "DATE", Some("$.dt")),
            column("TM", "TIME", Some("$.tm")),
        ],
    );
    let record = r#"{"s":"héllo","c":"ab","i":-7,"b":9000000000,"sm":-300,"t":12,"d":1.5,
        "r":0.25,"n":12.34,"ok":true,"ts":"2024-01-02 03:04:05.678","dt":"2024-02-29",
        "tm":"13:14:15.016"}"#;
    let (batch, accepted, rejects) = run(&schema, &[record]);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(accepted, vec![0]);
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "héllo");
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "ab");
    assert_eq!(batch.column(2).as_primitive::<Int32Type>().value(0), -7);
    assert_eq!(
        batch.column(3).as_primitive::<Int64Type>().value(0),
        9_000_000_000
    );
    assert_eq!(batch.column(4).as_primitive::<Int16Type>().value(0), -300);
    assert_eq!(batch.column(5).as_primitive::<Int8Type>().value(0), 12);
    assert_eq!(batch.column(6).as_primitive::<Float64Type>().value(0), 1.5);
    assert_eq!(batch.column(7).as_primitive::<Float32Type>().value(0), 0.25);
    assert_eq!(
        batch.column(8).as_primitive::<Decimal128Type>().value(0),
        1234
    );
    assert!(batch.column(9).as_boolean().value(0));
    assert_eq!(
        batch
            .column(10)
            .as_primitive::<TimestampMillisecondType>()
            .value(0),
        1_704_164_645_678
    );
    assert_eq!(
        batch.column(11).as_primitive::<Date32Type>().value(0),
        19_782
    );
    assert_eq!(
        batch
            .column(12)
            .as_primitive::<Time32MillisecondType>()
            .value(0),
        47_655_016
    );
    assert_eq!(batch.schema(), schema.arrow_schema());
}

#[test]
fn missing_field_and_json_null_are_null() {
    let schema = json_schema(
        "$",
        vec![
            column("A", "INTEGER", Some("$.a")),
            column("B", "VARCHAR(4)", Some("$.x.y")),
        ],
    );
    let (batch, _, rejects) = run(&schema, &[r#"{"a": null, "x": 5}"#, "{}"]);
    assert!(rejects.is_empty());
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(batch.column(0).null_count(), 2);
    assert_eq!(batch.column(1).null_count(), 2);
}

#[test]
fn wrong_type_is_rejected_naming_column_and_value() {
    let reject = one_rejected("INTEGER", r#""abc""#);
    assert_eq!(reject.column.as_deref(), Some("V"));
    assert!(reject.message.contains("\"abc\""), "{}", reject.message);
    assert!(reject.message.contains("INTEGER"), "{}", reject.message);
    let reject = one_rejected("DOUBLE", "{\"x\": 1}");
    assert!(reject.message.contains("an object"), "{}", reject.message);
    let reject = one_rejected("BOOLEAN", "1");
    assert!(reject.message.contains("BOOLEAN"), "{}", reject.message);
    one_rejected("DATE", "true");
    one_rejected("BIGINT", "[1]");
}

#[test]
fn rejected_value_is_shown_truncated_to_100_chars() {
    let long = "x".repeat(300);
    let reject = one_rejected("INTEGER", &format!("\"{long}\""));
    assert!(
        reject
            .message
            .contains(&format!("\"{}\"...", "x".repeat(100)))
    );
    assert!(!reject.message.contains(&"x".repeat(101)));
}

#[test]
fn numbers_in_strings_are_accepted() {
    let batch = one_ok("INTEGER", r#""42""#);
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 42);
    let batch = one_ok("DOUBLE", r#"" 2.5 ""#);
    assert_eq!(batch.column(0).as_primitive::<Float64Type>().value(0), 2.5);
    let batch = one_ok("DECIMAL(5,1)", r#""-3.25""#);
    assert_eq!(
        batch.column(0).as_primitive::<Decimal128Type>().value(0),
        -33
    );
    let batch = one_ok("INTEGER", "1e3");
    assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 1000);
    let batch = one_ok("BIGINT", r#""""#);
    assert!(
        batch.column(0).is_null(0),
        "an empty string is null for numbers"
    );
}

#[test]
fn integer_bounds_and_overflow() {
    for (ty, low, high) in [
        ("TINYINT", "-128", "127"),
        ("SMALLINT", "-32768", "32767"),
        ("INTEGER", "-2147483648", "2147483647"),
        ("BIGINT", "-9223372036854775808", "9223372036854775807"),
    ] {
        one_ok(ty, low);
        one_ok(ty, high);
        let over = if ty == "BIGINT" {
            "9223372036854775808".to_string()
        } else {
            (high.parse::<i64>().unwrap() + 1).to_string()
        };
        let reject = one_rejected(ty, &over);
        assert!(
            reject.message.contains("out of range"),
            "{ty}: {}",
            reject.message
        );
        let under = format!("\"{}\"", low.parse::<i128>().unwrap() - 1);
        assert!(one_rejected(ty, &under).message.contains("out of range"));
    }
    assert!(
        one_rejected("INTEGER", "1.5")
            .message
            .contains("not an integer")
    );
    assert!(
        one_rejected("BIGINT", "1e300")
            .message
            .contains("out of range")
    );
}

#[test]
fn varchar_longer_than_its_length_is_rejected() {
    one_ok("VARCHAR(3)", r#""äöü""#);
    let reject = one_rejected("VARCHAR(3)", r#""abcd""#);
    assert!(
        reject.message.contains("longer than 3"),
        "{}",
        reject.message
    );
    one_rejected("CHAR(1)", r#""ab""#);
}

#[test]
fn varchar_takes_any_json_value_as_text() {
    let batch = one_ok("VARCHAR(32)", "12.50");
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "12.50");
    let batch = one_ok("VARCHAR(32)", "false");
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "false");
    let batch = one_ok("VARCHAR(32)", r#"{"a": [1, 2]}"#);
    assert_eq!(
        batch.column(0).as_string::<i32>().value(0),
        r#"{"a": [1, 2]}"#
    );
    let batch = one_ok("VARCHAR(32)", r#""a\"b\u00e9\n""#);
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "a\"bé\n");
}

#[test]
fn timestamp_forms() {
    let base = 1_704_164_645_000; // 2024-01-02 03:04:05 UTC
    for (value, expected) in [
        (r#""2024-01-02 03:04:05""#, base),
        (r#""2024-01-02 03:04:05.678""#, base + 678),
        (r#""2024-01-02 03:04:05.6""#, base + 600),
        (r#""2024-01-02 03:04:05.678999999""#, base + 678),
        (r#""2024-01-02T03:04:05Z""#, base),
        (r#""2024-01-02T03:04:05.5Z""#, base + 500),
        (r#""2024-01-02T05:04:05+02:00""#, base),
        (r#""2024-01-01T22:04:05-0500""#, base),
        (r#""2024-01-02T03:04""#, base - 5000),
        ("1704164645678", base + 678),
        (r#""1704164645678""#, base + 678),
        ("-1000", -1000),
    ] {
        assert_eq!(ts(&one_ok("TIMESTAMP", value)), expected, "{value}");
    }
    for bad in [
        r#""2024-13-02 03:04:05""#,
        r#""2024-01-02 25:00:00""#,
        r#""2024-01-02 03:04:05.1234567890""#,
        r#""2024-01-02 03:04:05 junk""#,
        r#""2024-01-02""#,
        "1.5",
        "true",
    ] {
        one_rejected("TIMESTAMP", bad);
    }
}

#[test]
fn date_time_and_boolean_forms() {
    let batch = one_ok("DATE", r#""1969-12-31""#);
    assert_eq!(batch.column(0).as_primitive::<Date32Type>().value(0), -1);
    one_rejected("DATE", r#""2023-02-29""#);
    one_rejected("DATE", r#""2023-02-01 00:00:00""#);
    let batch = one_ok("TIME", r#""00:00:01""#);
    assert_eq!(
        batch
            .column(0)
            .as_primitive::<Time32MillisecondType>()
            .value(0),
        1000
    );
    one_rejected("TIME", r#""24:00:00""#);
    for (value, expected) in [("true", true), (r#""TRUE""#, true), (r#""False""#, false)] {
        assert_eq!(
            one_ok("BOOLEAN", value).column(0).as_boolean().value(0),
            expected
        );
    }
    one_rejected("BOOLEAN", r#""yes""#);
}

#[test]
fn floats_and_decimals() {
    let batch = one_ok("REAL", "0.1");
    assert_eq!(
        batch.column(0).as_primitive::<Float32Type>().value(0),
        0.1f32
    );
    assert!(
        one_rejected("REAL", "1e39")
            .message
            .contains("out of range")
    );
    assert!(
        one_rejected("DOUBLE", "1e400")
            .message
            .contains("out of range")
    );
    let batch = one_ok("DOUBLE", r#""NaN""#);
    assert!(
        batch
            .column(0)
            .as_primitive::<Float64Type>()
            .value(0)
            .is_nan()
    );
    let dec = |ty: &str, v: &str| {
        one_ok(ty, v)
            .column(0)
            .as_primitive::<Decimal128Type>()
            .value(0)
    };
    assert_eq!(
        dec("DECIMAL(5,2)", "1.005"),
        101,
        "half rounds away from zero"
    );
    assert_eq!(dec("DECIMAL(5,2)", "-1.004"), -100);
    assert_eq!(dec("DECIMAL(5,2)", "1.5e2"), 15000);
    assert_eq!(dec("DECIMAL(5,2)", "0.00001"), 0);
    assert_eq!(dec("DECIMAL(5,0)", "0e999999"), 0);
    let big = "12345678901234567890123456789.123456789";
    assert_eq!(
        dec("DECIMAL(38,9)", big),
        12345678901234567890123456789123456789
    );
    assert!(
        one_rejected("DECIMAL(5,2)", "1000")
            .message
            .contains("out of range")
    );
    assert!(
        one_rejected("DECIMAL(5,2)", "999.995")
            .message
            .contains("out of range")
    );
    one_rejected("DECIMAL(5,2)", r#""1.2.3""#);
    one_rejected("DECIMAL(5,2)", r#""e5""#);
}

#[test]
fn invalid_utf8_and_invalid_json_are_rejected_without_a_column() {
    let schema = json_schema("$", vec![column("A", "INTEGER", None)]);
    let mut decoder = Decoder::new(&schema).unwrap();
    let records: Vec<&[u8]> = vec![
        b"{\"a\": 1}",
        b"{\"a\": \xff}",
        b"{\"a\": 1",
        b"",
        b"{\"a\": 2}",
    ];
    let (batch, accepted, rejects) = decoder.decode(&records);
    assert_eq!(accepted, vec![0, 4]);
    assert_eq!(batch.num_rows(), 2);
    let indexes: Vec<usize> = rejects.iter().map(|r| r.index).collect();
    assert_eq!(indexes, vec![1, 2, 3]);
    assert!(rejects.iter().all(|r| r.column.is_none()));
    assert!(rejects[0].message.contains("utf-8"));
    assert!(rejects[1].message.contains("invalid json"));
}

#[test]
fn unmapped_column_matches_key_exactly_then_ignoring_case() {
    let schema = json_schema(
        "$",
        vec![
            column("PRICE", "INTEGER", None),
            column("Ticker", "VARCHAR(4)", None),
        ],
    );
    let (batch, _, rejects) = run(
        &schema,
        &[
            r#"{"price": 1, "PRICE": 2, "ticker": "A"}"#,
            r#"{"Price": 3}"#,
        ],
    );
    assert!(rejects.is_empty());
    let prices = batch.column(0).as_primitive::<Int32Type>();
    assert_eq!((prices.value(0), prices.value(1)), (2, 3));
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "A");
    // An explicit mapping is case-sensitive.
    let schema = json_schema("$", vec![column("P", "INTEGER", Some("$.PRICE"))]);
    let (batch, _, _) = run(&schema, &[r#"{"price": 1}"#]);
    assert!(batch.column(0).is_null(0));
}

#[test]
fn mappings_with_brackets_and_indexes() {
    let schema = json_schema(
        "$",
        vec![
            column("A", "VARCHAR(8)", Some(r#"$["a b"]"#)),
            column("B", "INTEGER", Some("$.list[1].x")),
            column("C", "INTEGER", Some("$['o'].n[0]")),
            column("D", "INTEGER", Some("$.list[9].x")),
        ],
    );
    let record = r#"{"a b": "yes", "list": [{"x": 1}, {"x": 2}], "o": {"n": [7]}}"#;
    let (batch, _, rejects) = run(&schema, &[record]);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(batch.column(0).as_string::<i32>().value(0), "yes");
    assert_eq!(batch.column(1).as_primitive::<Int32Type>().value(0), 2);
    assert_eq!(batch.column(2).as_primitive::<Int32Type>().value(0), 7);
    assert!(batch.column(3).is_null(0));
}

#[test]
fn row_path_selecting_an_array_makes_a_row_per_element() {
    let schema = json_schema(
        "$.items[0:]",
        vec![
            column("ID", "INTEGER", Some("$.items[0:].id")),
            column("TAG", "VARCHAR(4)", Some("$.tag")),
        ],
    );
    let records = [
        r#"{"items": [{"id": 1, "tag": "a"}, {"id": 2}]}"#,
        r#"{"items": [{"id": "bad"}, {"id": 3}]}"#,
        r#"{"items": []}"#,
        r#"{"items": [{"id": 4}]}"#,
        r#"{"other": 1}"#,
        r#"{"items": {"id": 5}}"#,
    ];
    let (batch, accepted, rejects) = run(&schema, &records);
    assert_eq!(accepted, vec![0, 0, 3]);
    let ids = batch.column(0).as_primitive::<Int32Type>();
    assert_eq!(ids.values().to_vec(), vec![1, 2, 4]);
    assert_eq!(batch.column(1).as_string::<i32>().value(0), "a");
    let rejected: Vec<usize> = rejects.iter().map(|r| r.index).collect();
    assert_eq!(rejected, vec![1, 4, 5], "{rejects:?}");
    assert_eq!(rejects[0].column.as_deref(), Some("ID"));
    // A root array is a row per element with the row path `$`.
    let schema = json_schema("$", vec![column("ID", "INTEGER", None)]);
    let (batch, accepted, _) = run(&schema, &[r#"[{"id": 1}, {"id": 2}]"#]);
    assert_eq!((batch.num_rows(), accepted), (2, vec![0, 0]));
}

#[test]
fn csv_rows_quotes_and_nulls() {
    let schema = csv_schema(
        "\n",
        ",",
        vec![
            column("A", "VARCHAR(16)", None),
            column("B", "INTEGER", None),
            column("C", "VARCHAR(4)", None),
        ],
    );
    let record = "\"x, \"\"y\"\"\",1,\"\"\nplain,,\r\n\"multi\nline\",3,z\n";
    let (batch, accepted, rejects) = run(&schema, &[record]);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(accepted, vec![0, 0, 0]);
    let a = batch.column(0).as_string::<i32>();
    assert_eq!(
        (a.value(0), a.value(1), a.value(2)),
        ("x, \"y\"", "plain", "multi\nline")
    );
    let b = batch.column(1).as_primitive::<Int32Type>();
    assert!(b.is_null(1));
    assert_eq!(b.value(2), 3);
    let c = batch.column(2).as_string::<i32>();
    assert!(
        !c.is_null(0) && c.value(0).is_empty(),
        "quoted empty is an empty string"
    );
    assert!(c.is_null(1), "unquoted empty is null");
}

#[test]
fn csv_column_count_rules() {
    let schema = csv_schema(
        "\n",
        ",",
        vec![column("A", "INTEGER", None), column("B", "INTEGER", None)],
    );
    let (batch, accepted, rejects) = run(&schema, &["1,2,3\n", "1\n", "4,5\n\n6,7"]);
    assert_eq!(
        accepted,
        vec![0, 2, 2],
        "extra columns are ignored, blank rows skipped"
    );
    assert_eq!(
        batch
            .column(1)
            .as_primitive::<Int32Type>()
            .values()
            .to_vec(),
        vec![2, 5, 7]
    );
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].index, 1);
    assert!(
        rejects[0].message.contains("1 columns, the schema has 2"),
        "{}",
        rejects[0].message
    );
}

#[test]
fn csv_custom_delimiters_and_malformed_quotes() {
    let schema = csv_schema(
        "||",
        "\t",
        vec![column("A", "VARCHAR(8)", None), column("B", "BIGINT", None)],
    );
    let (batch, accepted, rejects) =
        run(&schema, &["a\t1||\"b||\"\t2||", "\"open\t1", "\"x\"y\t1"]);
    assert_eq!(accepted, vec![0, 0]);
    assert_eq!(batch.column(0).as_string::<i32>().value(1), "b||");
    let messages: Vec<&str> = rejects.iter().map(|r| r.message.as_str()).collect();
    assert!(messages[0].contains("unterminated"), "{messages:?}");
    assert!(messages[1].contains("after closing quote"), "{messages:?}");
    // A one-column schema reads a blank row as NULL.
    let schema = csv_schema("\n", ",", vec![column("A", "INTEGER", None)]);
    let (batch, _, _) = run(&schema, &["\n"]);
    assert_eq!((batch.num_rows(), batch.column(0).null_count()), (1, 1));
}

#[test]
fn decoder_is_reused_across_batches() {
    let schema = json_schema("$", vec![column("A", "VARCHAR(8)", None)]);
    let mut decoder = Decoder::new(&schema).unwrap();
    let (first, _, _) = decoder.decode(&[b"{\"a\": \"x\\u0041\"}".as_slice()]);
    let (second, _, _) =
        decoder.decode(&[b"{\"a\": \"y\"}".as_slice(), b"{\"a\": \"z\"}".as_slice()]);
    assert_eq!(first.column(0).as_string::<i32>().value(0), "xA");
    assert_eq!(second.num_rows(), 2);
    assert_eq!(second.column(0).as_string::<i32>().value(1), "z");
    let (empty, accepted, _) = decoder.decode(&[]);
    assert_eq!((empty.num_rows(), accepted.len()), (0, 0));
}

#[test]
fn decoder_refuses_an_invalid_schema() {
    let schema = json_schema("$", vec![column("A", "INTEGER", Some("a.b"))]);
    assert!(Decoder::new(&schema).is_err());
}

fn kib_record(i: usize) -> String {
    let padding = "p".repeat(850);
    format!(
        r#"{{"id": {i}, "ticker": "T{:03}", "price": {}.25, "ts": "2024-05-06T07:08:09.{:03}Z", "ok": {}, "nested": {{"qty": {}, "note": "{padding}"}}, "tags": ["a", "b"]}}"#,
        i % 1000,
        i % 500,
        i % 1000,
        i.is_multiple_of(2),
        i * 3
    )
}

#[test]
fn decodes_ten_thousand_kib_records_into_one_batch() {
    let schema = json_schema(
        "$",
        vec![
            column("ID", "BIGINT", None),
            column("TICKER", "VARCHAR(8)", None),
            column("PRICE", "DOUBLE", None),
            column("TS", "TIMESTAMP", None),
            column("OK", "BOOLEAN", None),
            column("QTY", "INTEGER", Some("$.nested.qty")),
            column("NOTE", "VARCHAR(1024)", Some("$.nested.note")),
        ],
    );
    let records: Vec<String> = (0..10_000).map(kib_record).collect();
    assert!(records.iter().all(|r| (900..1200).contains(&r.len())));
    let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    let mut decoder = Decoder::new(&schema).unwrap();
    let (batch, accepted, rejects) = decoder.decode(&bytes);
    assert!(rejects.is_empty(), "{:?}", rejects.first());
    assert_eq!(batch.num_rows(), 10_000);
    assert_eq!(accepted.len(), 10_000);
    let qty = batch.column(5).as_primitive::<Int32Type>();
    assert_eq!(qty.value(9_999), 29_997);
    assert_eq!(
        batch.column(0).as_primitive::<Int64Type>().value(1234),
        1234
    );
}

#[test]
fn json_parser_agrees_with_serde_json_on_documents() {
    let documents = [
        r#"{"a":[1,-0.5e+3,"\ud83d\ude00",true,null,{}],"b":"\\\/\b\f\n\r\t"}"#,
        "  [ ]  ",
        "\"\\u0000\"",
        "-0",
        "01",
        "[1,]",
        "{\"a\" 1}",
        "\"\\ud800\"",
        "\"\\udc00x\"",
        "\"tab\there\"",
        "nul",
        "[1] [2]",
        "1.",
        "-",
        "{\"a\":1,}",
    ];
    let mut tape = JsonTape::default();
    for doc in documents {
        let ours = tape.parse(doc).is_ok();
        let theirs = serde_json::from_str::<serde_json::Value>(doc).is_ok();
        assert_eq!(ours, theirs, "{doc}");
    }
    tape.parse(r#"{"k":"\ud83d\ude00"}"#).unwrap();
    let value = tape.node(2).unwrap();
    assert_eq!(tape.text(r#"{"k":"\ud83d\ude00"}"#, value), "😀");
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn all_types_schema(format: RecordFormat) -> InputSchema {
    let types = [
        "VARCHAR(4)",
        "CHAR(2)",
        "INTEGER",
        "BIGINT",
        "SMALLINT",
        "TINYINT",
        "DOUBLE",
        "REAL",
        "DECIMAL(10,3)",
        "BOOLEAN",
        "TIMESTAMP",
        "DATE",
        "TIME",
    ];
    let columns = types
        .iter()
        .enumerate()
        .map(|(i, t)| column(&format!("C{i}"), t, Some(&format!("$.c{i}"))))
        .collect();
    InputSchema { format, columns }
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..8)) {
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        for format in [RecordFormat::json(), RecordFormat::csv(), RecordFormat::Json { row_path: "$.c0[*]".to_string() }] {
            let mut decoder = Decoder::new(&all_types_schema(format)).unwrap();
            let (batch, accepted, rejects) = decoder.decode(&slices);
            prop_assert_eq!(batch.num_rows(), accepted.len());
            prop_assert!(rejects.iter().all(|r| r.index < slices.len()));
        }
    }

    #[test]
    fn decode_never_panics_on_json_like_text(text in "[\\[\\]{}\",:0-9eE.+\\-a-z \\\\]{0,80}") {
        let mut decoder = Decoder::new(&all_types_schema(RecordFormat::json())).unwrap();
        let (batch, accepted, _) = decoder.decode(&[text.as_bytes()]);
        prop_assert_eq!(batch.num_rows(), accepted.len());
        let mut tape = JsonTape::default();
        if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            prop_assert!(tape.parse(&text).is_ok(), "{}", text);
        }
    }

    #[test]
    fn json_parser_accepts_what_serde_json_writes(value in arb_json()) {
        let text = serde_json::to_string(&value).unwrap();
        let mut tape = JsonTape::default();
        prop_assert!(tape.parse(&text).is_ok(), "{}", text);
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        prop_assert!(tape.parse(&pretty).is_ok(), "{}", pretty);
        if let (serde_json::Value::String(s), Some(node)) = (&value, tape.node(0)) {
            prop_assert_eq!(tape.text(&pretty, node), s.as_str());
        }
    }

    #[test]
    fn decimal_text_matches_integer_arithmetic(whole in -99_999i64..99_999, frac in 0u32..1000) {
        let text = format!("{}{}.{:03}", if whole < 0 { "" } else { "+" }, whole, frac);
        let sign = if text.starts_with('-') { -1 } else { 1 };
        let expected = i128::from(whole) * 1000 + sign * i128::from(frac);
        prop_assert_eq!(parse_decimal(&text, 9, 3), Ok(expected));
    }
}

proptest! {
    #[test]
    fn special_scan_matches_a_plain_scan(bytes in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1f), Just(b' '), any::<u8>()], 0..40)) {
        let plain = bytes.iter().position(|c| *c == b'"' || *c == b'\\' || *c < 0x20);
        prop_assert_eq!(json::special_in(&bytes), plain);
    }
}

#[test]
fn decoder_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Decoder>();
}

proptest! {
    #[test]
    fn decode_never_panics_on_csv_like_text(text in "[\",\n\r|a1 .\\-:]{0,60}") {
        for (row, col) in [("\n", ","), ("||", "|"), ("\r\n", ",,")] {
            let format = RecordFormat::Csv { row_delimiter: row.to_string(), column_delimiter: col.to_string() };
            let mut decoder = Decoder::new(&all_types_schema(format)).unwrap();
            let (batch, accepted, _) = decoder.decode(&[text.as_bytes()]);
            prop_assert_eq!(batch.num_rows(), accepted.len());
        }
    }
}
