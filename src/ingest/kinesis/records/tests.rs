//! The `PutRecords` fast paths (JSON and CBOR) held to the full path:
//! whatever a fast path accepts, the full path accepts and reads alike.

use base64::Engine;
use ciborium::Value as Cbor;

use super::{
    PutIn, fast_path_agrees, parse_full_put_records, parse_valid_put_records,
    parse_valid_put_records_cbor,
};
use crate::ingest::error::ApiError;

/// The full path's parse and checks of a JSON body, as `put_records` makes
/// them before it appends.
fn full(body: &[u8], max: usize) -> Result<Vec<PutIn>, ApiError> {
    parse_full_put_records(body, false, max)
}

const MAX: usize = 64;

#[test]
fn the_fast_path_reads_a_body_of_every_kind_of_valid_record_as_the_full_path_does() {
    let body = br#"{"StreamName":"s-1","Records":[
        {"Data":"aGVsbG8=","PartitionKey":"k"},
        {"Data":"","PartitionKey":"\u00e9t\u00e9","ExplicitHashKey":"12"},
        {"Data":"YQ==","PartitionKey":"a\/b","ExplicitHashKey":null}]}"#;
    let fast = parse_valid_put_records(body, MAX).expect("the fast path reads a valid body");
    let full = full(body, MAX).expect("the full path reads a valid body");
    assert_eq!(fast, full);
    assert_eq!(&fast[0].data[..], b"hello");
    assert_eq!(&fast[1].key[..], "été".as_bytes());
    assert_eq!(fast[1].hash, 12);
    assert_eq!(&fast[2].key[..], b"a/b");
}

#[test]
fn the_fast_path_leaves_every_refusal_to_the_full_path() {
    let long_key = "k".repeat(257);
    let too_big = base64::engine::general_purpose::STANDARD.encode([0u8; MAX + 1]);
    for body in [
        r#"{"Records":[{"Data":"YQ==","PartitionKey":"k"}]}"#.to_string(),
        r#"{"StreamName":"s-1","Records":[]}"#.to_string(),
        r#"{"StreamName":"s-1","Records":[{"Data":"YQ==","PartitionKey":""}]}"#.to_string(),
        format!(r#"{{"StreamName":"s-1","Records":[{{"Data":"YQ==","PartitionKey":"{long_key}"}}]}}"#),
        format!(r#"{{"StreamName":"s-1","Records":[{{"Data":"{too_big}","PartitionKey":"k"}}]}}"#),
        r#"{"StreamName":"s-1","Records":[{"Data":"YQ","PartitionKey":"k"}]}"#.to_string(),
        r#"{"StreamName":"s-1","Records":[{"Data":null,"PartitionKey":"k"}]}"#.to_string(),
        r#"{"StreamName":"s-1","Records":[{"Data":"YQ==","PartitionKey":"k","ExplicitHashKey":"340282366920938463463374607431768211456"}]}"#.to_string(),
        r#"{"StreamName":"s 1","Records":[{"Data":"YQ==","PartitionKey":"k"}]}"#.to_string(),
    ] {
        assert!(full(body.as_bytes(), MAX).is_err(), "{body}");
        assert!(parse_valid_put_records(body.as_bytes(), MAX).is_none(), "{body}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Whatever the fast path accepts, the full path accepts and reads
    /// alike, and the full path accepts nothing the fast path leaves to it
    /// but a body with a member the fast path does not know: bodies of a
    /// few records with keys of any length (multi-byte ones too), hash keys
    /// valid or not, some escaped, with one byte replaced.
    #[test]
    fn the_fast_path_accepts_and_reads_what_the_full_path_does(
        records in proptest::collection::vec(
            (
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
                proptest::sample::select(vec!["k", "", "été", "key-1", "a\\/b", "\\u00e9"]),
                0usize..300,
                proptest::option::of(proptest::sample::select(vec!["0", "12", "340282366920938463463374607431768211455", "340282366920938463463374607431768211456", "x"])),
            ),
            0..4,
        ),
        escape in proptest::prelude::any::<bool>(),
        at in proptest::prelude::any::<usize>(),
        with in proptest::sample::select(vec![b'"', b'\\', b'A', b'=', b'/', b' ', b'}', b']', b',', b'7', b'n', 0xC3, 0xFF, 0x00]),
        change in proptest::prelude::any::<bool>(),
    ) {
        let items: Vec<String> = records
            .iter()
            .map(|(data, key, repeat, hash)| {
                let t = base64::engine::general_purpose::STANDARD.encode(data);
                let t = if escape { t.replace('/', "\\/") } else { t };
                let key = key.repeat(1 + repeat % 90);
                match hash {
                    Some(h) => format!(r#"{{"Data":"{t}","PartitionKey":"{key}","ExplicitHashKey":"{h}"}}"#),
                    None => format!(r#"{{"Data":"{t}","PartitionKey":"{key}"}}"#),
                }
            })
            .collect();
        let mut body = format!(r#"{{"StreamName":"s-1","Records":[{}]}}"#, items.join(",")).into_bytes();
        // Unchanged, unescaped, the one-pass scan itself reads it.
        let plain = records.iter().all(|(_, key, _, _)| !key.contains('\\'));
        if !change && !escape && plain && !records.is_empty() {
            proptest::prop_assert!(crate::ingest::kinesis::scan::scan_put_records(&body).is_some());
        }
        if change {
            let i = at % body.len();
            body[i] = with;
        }
        // The scan reads alike whatever the serde fast path reads.
        if let Err(e) = fast_path_agrees(&body, false, MAX) {
            proptest::prop_assert!(false, "{:?}: {e}", String::from_utf8_lossy(&body));
        }
        let fast = parse_valid_put_records(&body, MAX);
        let full = full(&body, MAX);
        match (&fast, &full) {
            (Some(f), Ok(c)) => proptest::prop_assert_eq!(f, c),
            (None, Err(_)) => {}
            (None, Ok(_)) if has_unknown_member(&body) => {}
            _ => proptest::prop_assert!(false, "{:?}: fast {fast:?}, full {:?}", String::from_utf8_lossy(&body), full.as_ref().map(Vec::len)),
        }
    }
}

/// Whether a JSON `PutRecords` body has a member, at the top or in a
/// record, that the fast path does not know (and so leaves to the full
/// path).
fn has_unknown_member(body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(body) else {
        return false;
    };
    let unknown = |m: &serde_json::Map<String, serde_json::Value>, known: &[&str]| {
        m.keys().any(|k| !known.contains(&k.as_str()))
    };
    unknown(&top, &["StreamName", "StreamARN", "Records"])
        || top
            .get("Records")
            .and_then(|r| r.as_array())
            .is_some_and(|rs| {
                rs.iter()
                    .filter_map(|r| r.as_object())
                    .any(|r| unknown(r, &["Data", "PartitionKey", "ExplicitHashKey"]))
            })
}

#[test]
fn a_member_the_fast_path_does_not_know_goes_to_the_full_path() {
    // serde_json skips a string it ignores without checking its UTF-8,
    // which the full path refuses: the fast path must not skip it.
    let mut body =
        br#"{"StreamName":"s-1","Records":[{"Data":"YQ==","PartitionKey":"k","Other":"xx"}]}"#
            .to_vec();
    let at = body.len() - 5;
    body[at..at + 2].copy_from_slice(&[0xCC, 0xC6]);
    assert!(full(&body, MAX).is_err());
    assert!(parse_valid_put_records(&body, MAX).is_none());
    let extra = br#"{"StreamName":"s-1","Records":[{"Data":"YQ==","PartitionKey":"k","Other":1}],"More":[]}"#;
    assert!(
        full(extra, MAX).is_ok(),
        "the full path takes unknown members"
    );
    assert!(parse_valid_put_records(extra, MAX).is_none());
    assert!(has_unknown_member(extra));
}

/// The full path's parse and checks of a CBOR body: the body as the JSON
/// value it would be, then as [`full`].
fn full_cbor(body: &[u8], max: usize) -> Result<Vec<PutIn>, ApiError> {
    parse_full_put_records(body, true, max)
}

fn cbor_body(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("writing to a Vec");
    out
}

fn t(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Whatever the CBOR fast path accepts, the full path accepts and reads
    /// alike; it accepts every body of the shape the Java SDK sends, and
    /// leaves any other to the full path: `Data` as text, a key as bytes, a
    /// key not text, a member repeated or unknown, a tag.
    #[test]
    fn the_cbor_fast_path_reads_what_the_full_path_does(
        records in proptest::collection::vec(
            (
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
                proptest::sample::select(vec!["k", "", "été", "key-1"]),
                0usize..100,
                proptest::option::of(proptest::sample::select(vec!["0", "12", "340282366920938463463374607431768211456", "x"])),
            ),
            0..4,
        ),
        twist in 0usize..8,
        at in proptest::prelude::any::<usize>(),
    ) {
        let mut items: Vec<Vec<(Cbor, Cbor)>> = records
            .iter()
            .map(|(data, key, repeat, hash)| {
                let mut m = vec![(t("Data"), Cbor::Bytes(data.clone())), (t("PartitionKey"), t(&key.repeat(1 + repeat % 90)))];
                if let Some(h) = hash {
                    m.push((t("ExplicitHashKey"), t(h)));
                }
                m
            })
            .collect();
        let n = items.len();
        if n > 0 {
            let m = &mut items[at % n];
            let b64 = |v: &Cbor| base64::engine::general_purpose::STANDARD.encode(v.as_bytes().map(Vec::as_slice).unwrap_or_default());
            match twist {
                1 => m[0].1 = t(&b64(&m[0].1)),
                2 => m[1].1 = Cbor::Bytes(b"k".to_vec()),
                3 => m[0].0 = Cbor::Integer(0.into()),
                4 => m.push((t("PartitionKey"), t("again"))),
                5 => m.push((t("Extra"), Cbor::Null)),
                6 => m[0].1 = Cbor::Tag(24, Box::new(m[0].1.clone())),
                _ => {}
            }
        }
        let mut top = vec![(t("StreamName"), t("s-1"))];
        if twist == 7 {
            top.push((t("StreamARN"), t("arn:aws:kinesis:us-east-1:000000000000:stream/s-2")));
        }
        top.push((t("Records"), Cbor::Array(items.into_iter().map(Cbor::Map).collect())));
        let body = cbor_body(&Cbor::Map(top));
        let fast = parse_valid_put_records_cbor(&body, MAX);
        let full = full_cbor(&body, MAX);
        match (&fast, &full) {
            (Some(f), Ok(c)) => proptest::prop_assert_eq!(f, c),
            (None, _) => proptest::prop_assert!(
                twist != 0 || full.is_err(),
                "the fast path left a valid body of the SDK's shape to the full path"
            ),
            (Some(_), Err(e)) => proptest::prop_assert!(false, "fast accepted what the full path refuses: {}", e.message),
        }
    }
}
