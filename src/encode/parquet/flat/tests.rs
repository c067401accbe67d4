//! The flat decoder against `arrow-json`: whatever it takes, it reads as
//! that does; what it leaves, it leaves whole.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use proptest::prelude::*;

use super::FlatDecoder;
use crate::record::Record;

fn schema(not_null_id: bool) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, !not_null_id),
        Field::new("name", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]))
}

/// One record per text, as the parent's tests make them.
fn records(texts: &[&str]) -> Vec<Record> {
    super::super::tests::frames(texts)
}

/// What `arrow-json` makes of the records, one row each, or None if it
/// refuses any of them.
fn general(schema: &SchemaRef, recs: &[Record]) -> Option<RecordBatch> {
    let mut d = super::super::decoder(schema, recs.len().max(1)).ok()?;
    super::super::decode(&mut d, recs.iter()).ok().flatten()
}

#[test]
fn flat_objects_decode_as_arrow_json_decodes_them() {
    let s = schema(false);
    let recs = records(&[
        r#"{"id":1,"name":"ann","city":"Oslo","n":-7}"#,
        r#" { "city" : "Bergen" , "id" : 2 } "#,
        r#"{"id":null,"name":null,"extra":"x","more":[1,2]}"#
            .replace(r#","more":[1,2]"#, "")
            .as_str(),
        r#"{"n":9223372036854775807,"id":-9223372036854775808,"flag":true,"f":1.5e3,"z":null}"#,
        r#"{}"#,
        "{\"name\":\"ünïcødé ✓\"}\n",
        r#"{"name":"a\"b\\c\/d\b\f\n\r\t","city":"\u00e9\u00C9 \ud83d\ude00 \u0000","x":"\"\u2603"}"#,
    ]);
    let flat = FlatDecoder::new(&s)
        .unwrap()
        .decode(&recs)
        .expect("all flat");
    assert_eq!(flat.num_rows(), recs.len());
    assert_eq!(Some(flat), general(&s, &recs));
}

#[test]
fn what_it_cannot_read_exactly_it_leaves_whole() {
    let s = schema(true);
    let d = FlatDecoder::new(&s).unwrap();
    for text in [
        r#"{"id":1,"name":"a\qb"}"#,         // an escape arrow-json refuses
        r#"{"id":1,"name":"\ud800"}"#,       // a lone surrogate
        r#"{"id":1,"name":"\ud800\u0041"}"#, // a surrogate paired wrong
        r#"{"id":1,"name":"\u12"}"#,         // a short \u
        r#"{"id":1,"x":"\q"}"#,              // the same outside the schema
        r#"{"id":1,"n\u0061me":"a"}"#,       // an escaped key
        r#"{"id":1.0}"#,                     // a fraction
        r#"{"id":1e2}"#,                     // an exponent
        r#"{"id":01}"#,                      // a leading zero
        r#"{"id":9223372036854775808}"#,     // past i64
        r#"{"id":"1"}"#,                     // a string for a number
        r#"{"id":1,"name":7}"#,              // a number for a string
        r#"{"id":1,"id":2}"#,                // a member twice
        r#"{"name":"no id"}"#,               // a non-nullable field missing
        r#"{"id":null}"#,                    // or null
        r#"{"id":1,"x":{"a":1}}"#,           // a nested value outside the schema
        r#"{"id":1} {"id":2}"#,              // two values
        r#"[{"id":1}]"#,                     // not an object
        r#"{"id":1,}"#,                      // a trailing comma
        r#"{"id":1"#,                        // cut short
        "{\"id\":1,\"name\":\"tab\there\"}", // a raw control character
        "",
    ] {
        let recs = records(&[r#"{"id":5}"#, text]);
        assert!(d.decode(&recs).is_none(), "took {text:?}");
    }
    let bad_utf8 = vec![Record {
        offset: 0,
        arrival_ms: 0,
        key: Bytes::new(),
        data: Bytes::from_static(b"{\"id\":1,\"name\":\"\xff\"}"),
    }];
    assert!(d.decode(&bad_utf8).is_none());
}

#[test]
fn a_schema_with_other_types_is_not_taken() {
    let s = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("ok", DataType::Boolean, true),
    ]));
    assert!(FlatDecoder::new(&s).is_none());
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        "[a-zA-Z0-9 ü✓/:.-]{0,12}".prop_map(|v| format!("\"{v}\"")),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1.25".to_string()),
        Just("\"a\\nb\"".to_string()),
        prop::collection::vec(
            prop_oneof![
                Just("a"),
                Just(r#"\""#),
                Just(r"\\"),
                Just(r"\/"),
                Just(r"\t"),
                Just(r"\u00e9"),
                Just(r"\ud83d\ude00"),
                Just(r"\uD83D\uDE00"),
                Just(r"\ud800"),
                Just(r"\udc00"),
                Just(r"\ud800\u0041"),
                Just(r"\q"),
                Just(r"\u12"),
                Just("ü"),
            ],
            0..5,
        )
        .prop_map(|p| format!("\"{}\"", p.concat())),
        Just("{\"k\":1}".to_string()),
    ]
}

fn member() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("id"),
            Just("name"),
            Just("city"),
            Just("n"),
            Just("other")
        ],
        scalar(),
        " {0,1}",
    )
        .prop_map(|(k, v, sp)| format!("\"{k}\"{sp}:{sp}{v}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Random objects: taken only as arrow-json reads them.
    #[test]
    fn taken_means_read_as_arrow_json_reads(objs in prop::collection::vec(prop::collection::vec(member(), 0..6), 1..5)) {
        let texts: Vec<String> = objs.iter().map(|m| format!("{{{}}}", m.join(","))).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let recs = records(&refs);
        for s in [schema(false), schema(true)] {
            if let Some(b) = FlatDecoder::new(&s).unwrap().decode(&recs) {
                prop_assert_eq!(Some(b), general(&s, &recs), "{:?}", texts);
            }
        }
    }
}

/// The scalar reading `string_end` stands for.
fn string_end_slowly(s: &[u8]) -> Option<usize> {
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'"' => return Some(i),
            b'\\' => return None,
            c if c < 0x20 => return None,
            _ => {}
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]
    /// Eight bytes at a time finds what one at a time finds, whatever the
    /// bytes around it (controls, quotes, backslashes, bytes of 0x80 up).
    #[test]
    fn string_end_finds_what_a_byte_loop_finds(s in prop::collection::vec(prop_oneof![
        4 => 0x20u8..0x7f,
        1 => Just(b'"'),
        1 => Just(b'\\'),
        1 => 0u8..0x20,
        2 => 0x80u8..=0xff,
    ], 0..40)) {
        prop_assert_eq!(super::string_end(&s), string_end_slowly(&s));
        // And the first quote, backslash or control byte, which escaped
        // strings are read in runs up to, is where a byte loop finds it.
        prop_assert_eq!(
            super::special(&s),
            s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        );
    }
}
