//! CBOR requests and replies as the AWS SDK for Java writes and reads them.

use super::*;
use serde_json::json;

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap_or_else(|e| panic!("{e}"));
    out
}

#[test]
fn a_java_sdk_put_records_request_reads_as_its_json_form() {
    // What the Java SDK sends: Data as a byte string, names as text.
    let req = Cbor::Map(vec![
        (Cbor::Text("StreamName".into()), Cbor::Text("s".into())),
        (
            Cbor::Text("Records".into()),
            Cbor::Array(vec![Cbor::Map(vec![
                (Cbor::Text("Data".into()), Cbor::Bytes(b"hello".to_vec())),
                (Cbor::Text("PartitionKey".into()), Cbor::Text("k".into())),
            ])]),
        ),
    ]);
    let v = request_to_json(&cbor(&req)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v,
        json!({ "StreamName": "s", "Records": [{ "Data": "aGVsbG8=", "PartitionKey": "k" }] })
    );
}

#[test]
fn timestamps_are_tag_1_around_epoch_milliseconds_both_ways() {
    let req = Cbor::Map(vec![(
        Cbor::Text("Timestamp".into()),
        Cbor::Tag(1, Box::new(Cbor::Integer(1_506_440_188_749i64.into()))),
    )]);
    let v = request_to_json(&cbor(&req)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["Timestamp"].as_f64(), Some(1_506_440_188.749));

    let reply = json!({ "Records": [{ "Data": "aGk=", "ApproximateArrivalTimestamp": 1_506_440_188.749, "SequenceNumber": "4" }], "MillisBehindLatest": 0 });
    let back: Cbor =
        ciborium::from_reader(reply_from_json(&reply).as_slice()).unwrap_or_else(|e| panic!("{e}"));
    let Cbor::Map(top) = back else {
        panic!("not a map")
    };
    let records = top
        .iter()
        .find(|(k, _)| k == &Cbor::Text("Records".into()))
        .map(|(_, v)| v.clone());
    let Some(Cbor::Array(rs)) = records else {
        panic!("no records")
    };
    let Cbor::Map(r) = &rs[0] else {
        panic!("record is not a map")
    };
    let get = |name: &str| {
        r.iter()
            .find(|(k, _)| k == &Cbor::Text(name.into()))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("Data"), Some(Cbor::Bytes(b"hi".to_vec())));
    assert_eq!(
        get("ApproximateArrivalTimestamp"),
        Some(Cbor::Tag(
            1,
            Box::new(Cbor::Integer(1_506_440_188_749i64.into()))
        ))
    );
    assert_eq!(get("SequenceNumber"), Some(Cbor::Text("4".into())));
}

#[test]
fn junk_is_refused_with_a_reason() {
    assert!(request_to_json(&[0xff, 0x00]).is_err());
    let non_text_key = Cbor::Map(vec![(Cbor::Integer(1.into()), Cbor::Null)]);
    assert!(request_to_json(&cbor(&non_text_key)).is_err());
    assert_eq!(request_to_json(&[]).ok(), Some(json!({})));
}
