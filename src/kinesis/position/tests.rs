//! Hash-key ranges, sequence numbers, iterators and shard ids as Kinesis has them.

use super::*;

#[test]
fn four_shards_split_the_hash_space_as_kinesis_does() {
    // Kinesis's ranges for a new 4-shard stream.
    assert_eq!(hash_range(0, 4), (0, (1u128 << 126) - 1));
    assert_eq!(
        hash_range(1, 4).0,
        85_070_591_730_234_615_865_843_651_857_942_052_864
    );
    assert_eq!(hash_range(3, 4).1, HASH_KEY_MAX);
    assert_eq!(hash_range(0, 1), (0, HASH_KEY_MAX));
    // Three shards: 2^128 / 3 is not a whole number.
    assert_eq!(
        hash_range(1, 3).0,
        113_427_455_640_312_821_154_458_202_477_256_070_485
    );
}

#[test]
fn every_hash_lands_in_the_shard_whose_range_holds_it() {
    for n in [1u32, 2, 3, 4, 7, 64, 500] {
        let mut edges = vec![0u128, HASH_KEY_MAX];
        for i in 0..n {
            let (s, e) = hash_range(i, n);
            edges.extend([s, e, s.saturating_add(1), e.saturating_sub(1)]);
        }
        let router = crate::kinesis::shards::ShardMap::uniform(n, 0).router();
        for h in edges {
            let shard = router.route(h);
            let (s, e) = hash_range(shard, n);
            assert!(s <= h && h <= e, "n={n} hash={h} shard={shard} [{s},{e}]");
        }
    }
}

#[test]
fn hash_key_is_md5_big_endian() {
    // md5("a") = 0cc175b9c0f1b6a831c399e269772661
    assert_eq!(hash_key(b"a"), 0x0cc175b9c0f1b6a831c399e269772661);
}

#[test]
fn explicit_hash_keys_are_decimal_up_to_2_128_minus_1() {
    assert_eq!(parse_hash_key("0"), Some(0));
    assert_eq!(
        parse_hash_key("340282366920938463463374607431768211455"),
        Some(HASH_KEY_MAX)
    );
    assert_eq!(
        parse_hash_key("340282366920938463463374607431768211456"),
        None
    );
    assert_eq!(parse_hash_key("-1"), None);
    assert_eq!(parse_hash_key("12a"), None);
    assert_eq!(parse_hash_key(""), None);
}

#[test]
fn sequence_numbers_round_trip_and_grow_with_offsets() {
    let a = SequenceNumber {
        incarnation: 123_456_789,
        shard: 3,
        offset: 41,
    };
    let b = SequenceNumber { offset: 42, ..a };
    assert_eq!(SequenceNumber::decode(&a.encode()), Some(a));
    assert!(a.encode().len() == b.encode().len() && a.encode() < b.encode());
    assert!(a.encode().bytes().all(|c| c.is_ascii_digit()));
    assert_eq!(SequenceNumber::decode("0"), None);
    assert_eq!(
        SequenceNumber::decode(&format!("5{}", &a.encode()[1..])),
        None
    );
    assert_eq!(
        SequenceNumber::decode(&format!("{}x", &a.encode()[..35])),
        None
    );
}

#[test]
fn iterators_round_trip_and_refuse_tampering() {
    let it = ShardIterator {
        stream: "orders".into(),
        incarnation: 7,
        shard: 2,
        offset: 99,
        position: Some((64, 4096)),
        issued_ms: 1_700_000_000_000,
    };
    let s = it.encode();
    assert!(s.len() <= 512);
    assert_eq!(ShardIterator::decode(&s), Some(it.clone()));
    let none = ShardIterator {
        position: None,
        ..it.clone()
    };
    assert_eq!(ShardIterator::decode(&none.encode()), Some(none));
    // Flip one bit of the payload: the checksum refuses it.
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .unwrap_or_default();
    raw[10] ^= 1;
    let bad = base64::engine::general_purpose::STANDARD.encode(raw);
    assert_eq!(ShardIterator::decode(&bad), None);
    assert_eq!(ShardIterator::decode("not an iterator"), None);
    assert_eq!(ShardIterator::decode(""), None);
}

#[test]
fn shard_ids_are_twelve_digits() {
    assert_eq!(shard_id(7), "shardId-000000000007");
    assert_eq!(parse_shard_id("shardId-000000000007"), Some(7));
    assert_eq!(parse_shard_id("shardId-7"), None);
    assert_eq!(parse_shard_id("shard-000000000007"), None);
}
