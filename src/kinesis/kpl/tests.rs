//! KPL aggregates: taken apart as the KPL packed them, corrupt ones refused
//! whole with their reason, and no input at all makes the decoder panic.

use super::*;
use proptest::prelude::*;

/// The KPL's messages as its `.proto` declares them, for building
/// aggregates in tests.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AggregatedRecord {
        #[prost(string, repeated, tag = "1")]
        pub partition_key_table: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub explicit_hash_key_table: Vec<String>,
        #[prost(message, repeated, tag = "3")]
        pub records: Vec<UserRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserRecord {
        #[prost(uint64, required, tag = "1")]
        pub partition_key_index: u64,
        #[prost(uint64, optional, tag = "2")]
        pub explicit_hash_key_index: Option<u64>,
        #[prost(bytes = "vec", required, tag = "3")]
        pub data: Vec<u8>,
        #[prost(message, repeated, tag = "4")]
        pub tags: Vec<Tag>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tag {
        #[prost(string, required, tag = "1")]
        pub key: String,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }
}

/// Magic, the message, its MD5: an aggregate around any protobuf bytes.
fn wrap(message: &[u8]) -> Bytes {
    let digest: [u8; 16] = Md5::digest(message).into();
    [&MAGIC[..], message, &digest[..]].concat().into()
}

fn encode(agg: &proto::AggregatedRecord) -> Bytes {
    wrap(&agg.encode_to_vec())
}

fn record(offset: u64, data: Bytes) -> Record {
    Record {
        offset,
        arrival_ms: 1_700_000_000_123,
        key: Bytes::from_static(b"aggregate-key"),
        data,
    }
}

fn user(pk: u64, data: &[u8]) -> proto::UserRecord {
    proto::UserRecord {
        partition_key_index: pk,
        explicit_hash_key_index: None,
        data: data.to_vec(),
        tags: Vec::new(),
    }
}

fn agg(keys: &[&str], records: Vec<proto::UserRecord>) -> proto::AggregatedRecord {
    proto::AggregatedRecord {
        partition_key_table: keys.iter().map(|k| k.to_string()).collect(),
        explicit_hash_key_table: Vec::new(),
        records,
    }
}

fn deaggregate(data: Bytes) -> Result<Vec<Record>, KplError> {
    let mut out = Vec::new();
    let n = deaggregate_into(&record(7, data), &mut out)?;
    assert_eq!(n, out.len());
    Ok(out)
}

#[test]
fn an_aggregate_from_the_python_aggregator_comes_apart() {
    // `aws_kinesis_agg.aggregator.RecordAggregator`: five records, keys
    // k0 and k1 in turn, data rec0 to rec4.
    let data = hex::decode(concat!(
        "f3899ac20a026b300a026b311a0808001a04726563301a0808011a04726563311a",
        "0808001a04726563321a0808011a04726563331a0808001a04726563344adb8494",
        "a58ff24627bff65e07acfdcb"
    ))
    .unwrap();
    let out = deaggregate(data.into()).unwrap();
    let got: Vec<(&[u8], &[u8])> = out.iter().map(|r| (&r.key[..], &r.data[..])).collect();
    assert_eq!(
        got,
        vec![
            (&b"k0"[..], &b"rec0"[..]),
            (b"k1", b"rec1"),
            (b"k0", b"rec2"),
            (b"k1", b"rec3"),
            (b"k0", b"rec4"),
        ]
    );
    assert!(
        out.iter()
            .all(|r| r.offset == 7 && r.arrival_ms == 1_700_000_000_123)
    );
}

#[test]
fn ordinary_records_are_not_aggregates() {
    for data in [&b""[..], b"{}", b"\xF3\x89\x9A", b"\xF3\x89\x9A\xC3rest"] {
        assert!(!is_aggregate(data), "{data:?}");
    }
    assert!(is_aggregate(&wrap(b"")));
    assert_eq!(
        deaggregate(Bytes::from_static(b"{\"a\":1}")),
        Err(KplError::Magic)
    );
}

#[test]
fn an_empty_aggregate_holds_no_user_records() {
    assert_eq!(deaggregate(wrap(b"")), Ok(Vec::new()));
    assert_eq!(
        deaggregate(encode(&agg(&["k"], Vec::new()))),
        Ok(Vec::new())
    );
}

#[test]
fn user_records_share_the_aggregates_bytes() {
    let data = encode(&agg(&["k"], vec![user(0, b"some user data")]));
    let out = deaggregate(data.clone()).unwrap();
    let range = data.as_ptr_range();
    assert!(range.contains(&out[0].data.as_ptr()), "copied, not sliced");
}

#[test]
fn too_short_and_too_large_aggregates_are_refused() {
    assert_eq!(
        deaggregate(Bytes::from_static(&[0xF3, 0x89, 0x9A, 0xC2, 1, 2])),
        Err(KplError::TooShort(6))
    );
    let big = wrap(&vec![0u8; AGGREGATE_BYTES_MAX]);
    assert_eq!(deaggregate(big.clone()), Err(KplError::TooLarge(big.len())));
    assert_eq!(
        KplError::TooShort(6).to_string(),
        "KPL aggregate of 6 bytes is shorter than its magic and MD5 (20 bytes)"
    );
}

#[test]
fn a_flipped_byte_fails_the_md5_check() {
    let data = encode(&agg(&["a", "b"], vec![user(0, b"x"), user(1, b"y")]));
    for at in MAGIC.len()..data.len() {
        let mut bad = data.to_vec();
        bad[at] ^= 0x40;
        assert_eq!(deaggregate(bad.into()), Err(KplError::Digest), "byte {at}");
    }
    assert_eq!(
        KplError::Digest.to_string(),
        "KPL aggregate fails its MD5 check"
    );
}

#[test]
fn a_message_that_does_not_decode_is_refused() {
    // Field 3, length-delimited, claiming 100 bytes where there are 2.
    let err = deaggregate(wrap(&[0x1a, 100, 1, 2])).unwrap_err();
    assert!(matches!(err, KplError::Decode(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("KPL aggregate does not decode: ")
    );
    // A user record holding a truncated field.
    let err = deaggregate(wrap(&[0x1a, 2, 0x08, 0x80])).unwrap_err();
    assert!(
        matches!(err, KplError::RecordDecode { record: 0, .. }),
        "{err:?}"
    );
    // A partition key that is not UTF-8.
    let err = deaggregate(wrap(&[0x0a, 1, 0xff])).unwrap_err();
    assert!(matches!(err, KplError::Decode(_)), "{err:?}");
}

#[test]
fn indexes_past_their_tables_are_refused() {
    let err = deaggregate(encode(&agg(&["a"], vec![user(0, b"x"), user(1, b"y")])));
    assert_eq!(
        err,
        Err(KplError::Index {
            record: 1,
            table: "partition key",
            index: 1,
            len: 1
        })
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "KPL aggregate's user record 1 has partition key index 1, past the end of its table of 1"
    );
    let err = deaggregate(encode(&agg(&["a"], vec![user(u64::MAX, b"x")])));
    assert!(matches!(
        err,
        Err(KplError::Index {
            index: u64::MAX,
            ..
        })
    ));
    let mut with_hash_key = user(0, b"x");
    with_hash_key.explicit_hash_key_index = Some(0);
    let err = deaggregate(encode(&agg(&["a"], vec![with_hash_key.clone()])));
    assert!(
        matches!(
            err,
            Err(KplError::Index {
                table: "explicit hash key",
                index: 0,
                len: 0,
                ..
            })
        ),
        "{err:?}"
    );
    let mut fine = agg(&["a"], vec![with_hash_key]);
    fine.explicit_hash_key_table = vec!["12345".into()];
    assert_eq!(deaggregate(encode(&fine)).map(|v| v.len()), Ok(1));
}

#[test]
fn missing_required_fields_are_refused() {
    let no_data = UserRecordMessage {
        partition_key_index: Some(0),
        ..Default::default()
    };
    let no_key = UserRecordMessage {
        data: Some(Bytes::from_static(b"x")),
        ..Default::default()
    };
    for (r, field) in [(no_data, "data"), (no_key, "partition key index")] {
        let top = AggregatedRecordMessage {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: Vec::new(),
            records: vec![r.encode_to_vec().into()],
        };
        assert_eq!(
            deaggregate(wrap(&top.encode_to_vec())),
            Err(KplError::Missing { record: 0, field })
        );
    }
    let mut tagged = user(0, b"x");
    tagged.tags = vec![proto::Tag {
        key: "env".into(),
        value: Some("prod".into()),
    }];
    assert_eq!(
        deaggregate(encode(&agg(&["k"], vec![tagged]))).map(|v| v.len()),
        Ok(1)
    );
}

#[test]
fn a_flood_of_records_is_refused_before_they_are_decoded() {
    // Empty record messages, two bytes each: more than any valid aggregate
    // of the largest size holds.
    let message: Vec<u8> = [0x1a, 0x00].repeat(USER_RECORDS_MAX + 1);
    assert_eq!(
        deaggregate(wrap(&message)),
        Err(KplError::TooManyRecords(USER_RECORDS_MAX + 1))
    );
}

#[test]
fn a_refused_aggregate_leaves_the_output_as_it_was() {
    let mut out = vec![record(3, Bytes::from_static(b"earlier"))];
    let bad = encode(&agg(
        &["a"],
        vec![user(0, b"x"), user(0, b"y"), user(5, b"z")],
    ));
    assert!(deaggregate_into(&record(4, bad), &mut out).is_err());
    assert_eq!(out, vec![record(3, Bytes::from_static(b"earlier"))]);
}

/// A key table, and user records: a key index, data, and whether the
/// record has an explicit hash key and a tag.
type Packed = (Vec<String>, Vec<(usize, Vec<u8>, bool)>);

fn user_records() -> impl Strategy<Value = Packed> {
    proptest::collection::vec("[a-z0-9]{1,8}", 1..6).prop_flat_map(|keys| {
        let n = keys.len();
        let records = proptest::collection::vec(
            (
                0..n,
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<bool>(),
            ),
            0..40,
        );
        (Just(keys), records)
    })
}

proptest! {
    #[test]
    fn aggregates_come_apart_into_what_was_packed((keys, records) in user_records()) {
        let packed = proto::AggregatedRecord {
            partition_key_table: keys.clone(),
            explicit_hash_key_table: vec!["0".into()],
            records: records
                .iter()
                .map(|(k, data, tagged)| proto::UserRecord {
                    partition_key_index: *k as u64,
                    explicit_hash_key_index: tagged.then_some(0),
                    data: data.clone(),
                    tags: if *tagged {
                        vec![proto::Tag { key: "t".into(), value: None }]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        };
        let out = deaggregate(encode(&packed)).unwrap();
        prop_assert_eq!(out.len(), records.len());
        for (r, (k, data, _)) in out.iter().zip(&records) {
            prop_assert_eq!(&r.key[..], keys[*k].as_bytes());
            prop_assert_eq!(&r.data[..], &data[..]);
            prop_assert_eq!(r.offset, 7);
            prop_assert_eq!(r.arrival_ms, 1_700_000_000_123);
        }
    }

    #[test]
    fn a_truncated_aggregate_is_refused((keys, records) in user_records(), cut_frac in 0.0f64..1.0) {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let packed = agg(&keys, records.iter().map(|(k, d, _)| user(*k as u64, d)).collect());
        let data = encode(&packed);
        let cut = MAGIC.len() + ((data.len() - MAGIC.len() - 1) as f64 * cut_frac) as usize;
        prop_assert!(deaggregate(data.slice(..cut)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = deaggregate(data.clone().into());
        // Behind the magic and a valid MD5 they reach the protobuf decoder.
        let mut out = vec![record(1, Bytes::new())];
        match deaggregate_into(&record(2, wrap(&data)), &mut out) {
            Ok(n) => prop_assert_eq!(out.len(), n + 1),
            Err(_) => prop_assert_eq!(out.len(), 1),
        }
    }

    #[test]
    fn arbitrary_user_records_never_panic(
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..8),
        keys in 0usize..3,
    ) {
        let top = AggregatedRecordMessage {
            partition_key_table: (0..keys).map(|k| k.to_string()).collect(),
            explicit_hash_key_table: Vec::new(),
            records: raw.into_iter().map(Bytes::from).collect(),
        };
        let _ = deaggregate(wrap(&top.encode_to_vec()));
    }
}
