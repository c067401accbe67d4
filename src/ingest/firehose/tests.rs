//! Parsing of Firehose put requests: one buffer per request, errors named by record.

use base64::Engine;

use super::*;

#[test]
fn a_batch_decodes_into_slices_of_one_buffer_in_order() {
    let body = br#"{"DeliveryStreamName":"s","Records":[{"Data":"YQ=="},{"Data":""},{"Data":"Ynl0ZXM\/"}]}"#;
    let req = parse_put_record_batch(body).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(req.stream, "s");
    let got: Vec<&[u8]> = req.records.iter().map(|b| b.as_ref()).collect();
    // The third is "Ynl0ZXM/" with its slash escaped, as some encoders write it.
    assert_eq!(got, vec![b"a".as_slice(), b"", b"bytes?"]);
}

#[test]
fn bad_records_are_named_by_their_position() {
    let e = parse_put_record_batch(
        br#"{"DeliveryStreamName":"s","Records":[{"Data":"YQ=="},{"Data":null},{}]}"#,
    )
    .err()
    .map(|e| e.message)
    .unwrap_or_default();
    assert!(
        e.contains("'records.2.member.data'") && e.contains("'records.3.member.data'"),
        "{e}"
    );
    let e = parse_put_record_batch(br#"{"DeliveryStreamName":"s","Records":[{"Data":7}]}"#)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.kind, "SerializationException");
    assert!(e.message.contains("records.1.member.data"), "{}", e.message);
    let e = parse_put_record_batch(br#"{"DeliveryStreamName":"s","Records":[{"Data":"!!"}]}"#)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("not valid base64"), "{}", e.message);
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; RECORD_BYTES_MAX + 1]);
    let body =
        format!(r#"{{"DeliveryStreamName":"s","Records":[{{"Data":"YQ=="}},{{"Data":"{big}"}}]}}"#);
    let e = parse_put_record_batch(body.as_bytes())
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.kind, "InvalidArgumentException");
    assert!(
        e.message.contains("records.2.member.data") && e.message.contains("1024000"),
        "{}",
        e.message
    );
}

#[test]
fn a_member_the_fast_path_does_not_know_goes_to_the_full_parse() {
    // serde_json skips a member it does not know without checking its
    // UTF-8: the body is refused as JSON that is not UTF-8, by both parses.
    let mut batch =
        br#"{"DeliveryStreamName":"s","Records":[{"Data":"YQ==","Other":"xx"}]}"#.to_vec();
    let at = batch.len() - 5;
    batch[at..at + 2].copy_from_slice(&[0xCC, 0xC6]);
    assert!(put::parse_valid_batch(&batch).is_none());
    let e = parse_put_record_batch(&batch)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.kind, "SerializationException");
    assert!(e.message.contains("not UTF-8"), "{}", e.message);
    let mut single = br#"{"DeliveryStreamName":"s","Record":{"Data":"YQ=="},"X":"xx"}"#.to_vec();
    let at = single.len() - 4;
    single[at..at + 2].copy_from_slice(&[0xFF, 0xFE]);
    let e = parse_put_record(&single)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.kind, "SerializationException");
    // Valid UTF-8 in a member it does not know: the full parse takes it,
    // as Firehose ignores members it does not know.
    let extra = br#"{"DeliveryStreamName":"s","Records":[{"Data":"YQ==","Other":1}],"More":[]}"#;
    assert!(put::parse_valid_batch(extra).is_none());
    let req = parse_put_record_batch(extra).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(req.records.len(), 1);
    assert_eq!(put::put_record_batch_fast_path_agrees(extra), Ok(()));
    assert_eq!(put::put_record_batch_fast_path_agrees(&batch), Ok(()));
}

#[test]
fn a_single_record_is_parsed_alike() {
    let req = parse_put_record(br#"{"DeliveryStreamName":"s","Record":{"Data":"aGk="}}"#)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(req.data.as_ref(), b"hi");
    let e = parse_put_record(br#"{"DeliveryStreamName":"s","Record":{}}"#)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("'record.data'"), "{}", e.message);
}

proptest::proptest! {
    /// The SIMD decoder with its scalar fallback accepts exactly what the
    /// standard engine accepts, and decodes it to the same bytes: valid
    /// encodings of any length, and ones with a character replaced (bad
    /// symbols, trailing bits, padding in the middle).
    #[test]
    fn data_decodes_as_the_standard_engine_decodes(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160),
        at in proptest::prelude::any::<usize>(),
        with in proptest::sample::select(b"A/+=Z_-!9 ".to_vec()),
        change in proptest::prelude::any::<bool>(),
    ) {
        let mut text = base64::engine::general_purpose::STANDARD.encode(&bytes).into_bytes();
        if change && !text.is_empty() {
            let i = at % text.len();
            text[i] = with;
        }
        let text = String::from_utf8(text).unwrap_or_default();
        let raw = serde_json::value::RawValue::from_string(format!("\"{text}\""))
            .unwrap_or_else(|e| panic!("{e}"));
        let (mut out, mut v) = (b"before".to_vec(), Vec::new());
        let got = put::decode_data(Some(&raw), || "records.1.member.data".into(), &mut v, &mut out);
        let want = base64::engine::general_purpose::STANDARD.decode(text.as_bytes());
        match (got, want) {
            (Ok(Some(range)), Ok(want)) => {
                proptest::prop_assert_eq!(&out[range], want.as_slice());
                proptest::prop_assert_eq!(&out[..6], b"before");
            }
            (Err(e), Err(_)) => {
                proptest::prop_assert!(e.message.contains("not valid base64"), "{}", e.message);
                proptest::prop_assert_eq!(out.as_slice(), b"before");
            }
            (got, want) => proptest::prop_assert!(false, "{text:?}: got {got:?}, want {want:?}"),
        }
    }
}

proptest::proptest! {
    /// The one-pass scan and the fast path for valid batches accept
    /// nothing the full parse refuses and read what they accept alike, and
    /// the full parse accepts nothing the fast paths leave to it: bodies of
    /// a few records, some escaped, spaced or in the other order, with one
    /// byte replaced (quotes, backslashes, non-ASCII and invalid UTF-8,
    /// padding, structure).
    #[test]
    fn the_fast_path_accepts_and_reads_what_the_full_parse_does(
        records in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..4),
        escape in proptest::prelude::any::<bool>(),
        at in proptest::prelude::any::<usize>(),
        with in proptest::sample::select(vec![b'"', b'\\', b'A', b'=', b'/', b' ', b'}', b']', b',', b'7', 0xC3, 0xFF, 0x00]),
        change in proptest::prelude::any::<bool>(),
        spaced in proptest::prelude::any::<bool>(),
        swapped in proptest::prelude::any::<bool>(),
    ) {
        let data: Vec<String> = records
            .iter()
            .map(|r| {
                let t = base64::engine::general_purpose::STANDARD.encode(r);
                if escape { t.replace('/', "\\/") } else { t }
            })
            .map(|t| format!(r#"{{"Data":"{t}"}}"#))
            .collect();
        let (name, recs) = (r#""DeliveryStreamName":"s-1""#, format!(r#""Records":[{}]"#, data.join(",")));
        let mut body = if swapped { format!("{{{recs},{name}}}") } else { format!("{{{name},{recs}}}") };
        if spaced {
            // JSON whitespace around every token the scan steps over.
            for (from, to) in [("{", " {\n"), ("}", "\t} "), (":", " : "), (",", "\r\n,  "), ("[", "[ "), ("]", " ]")] {
                body = body.replace(from, to);
            }
        }
        let mut body = body.into_bytes();
        // Unchanged and unescaped, the scan itself reads it.
        if !change && !escape && !records.is_empty() {
            proptest::prop_assert!(super::scan::scan_batch(&body).is_some());
        }
        if change {
            let i = at % body.len();
            body[i] = with;
        }
        if let Err(e) = put::put_record_batch_fast_path_agrees(&body) {
            proptest::prop_assert!(false, "{:?}: {e}", String::from_utf8_lossy(&body));
        }
    }
}
