//! Preparing a chunk read from a Kinesis stream: aggregates taken apart in
//! place and in order, corrupt ones marked with their reason, ordinary
//! records untouched.

use super::*;
use bytes::Bytes;

fn at(offset: u64, key: &str, data: Bytes) -> Record {
    Record {
        offset,
        arrival_ms: 1_000 + offset as i64,
        key: Bytes::copy_from_slice(key.as_bytes()),
        data,
    }
}

fn prepared(frames: Vec<Record>, deaggregates: bool) -> (Vec<(Record, Step)>, u64) {
    let (mut frames, mut spare, mut out) = (frames, Vec::new(), Vec::new());
    let users = prepare_chunk(
        (&mut frames, &mut spare),
        deaggregates,
        None,
        None,
        &mut out,
    );
    assert!(frames.is_empty());
    (out, users)
}

#[test]
fn aggregates_come_apart_in_place_and_corrupt_ones_are_marked() {
    let agg = kpl::aggregate(&[("a", b"one"), ("b", b"two"), ("a", b"three")]);
    let mut corrupt = agg.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let frames = vec![
        at(0, "p", Bytes::from_static(b"plain")),
        at(1, "agg", agg),
        at(2, "agg", Bytes::from(corrupt)),
        at(3, "p", Bytes::from_static(b"also plain")),
    ];
    let (out, users) = prepared(frames.clone(), true);
    assert_eq!(users, 3);
    let got: Vec<(u64, i64, &[u8], &[u8])> = out
        .iter()
        .map(|(r, _)| (r.offset, r.arrival_ms, &r.key[..], &r.data[..]))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1000, &b"p"[..], &b"plain"[..]),
            (1, 1001, b"a", b"one"),
            (1, 1001, b"b", b"two"),
            (1, 1001, b"a", b"three"),
            (2, 1002, b"agg", &frames[2].data[..]),
            (3, 1003, b"p", b"also plain"),
        ]
    );
    assert_eq!(
        out[4].1,
        Step::Corrupt("KPL aggregate fails its MD5 check".into())
    );
    assert!(
        out.iter()
            .enumerate()
            .all(|(i, (_, s))| i == 4 || *s == Step::Deliver(None))
    );
    // Read from a stream's own log, an aggregate is an ordinary record.
    let (out, users) = prepared(frames.clone(), false);
    assert_eq!(users, 0);
    assert_eq!(out.into_iter().map(|(r, _)| r).collect::<Vec<_>>(), frames);
}

#[test]
fn a_chunk_without_aggregates_is_left_as_it_is() {
    let frames: Vec<Record> = (0..5)
        .map(|i| at(i, "k", Bytes::from(format!("{{\"n\":{i}}}"))))
        .collect();
    let (mut f, mut spare) = (frames.clone(), Vec::new());
    let ptr = f.as_ptr();
    assert_eq!(deaggregate(&mut f, &mut spare), (Vec::new(), 0));
    assert_eq!(f, frames);
    assert_eq!(f.as_ptr(), ptr, "the chunk was moved");
    assert_eq!(spare.capacity(), 0, "the spare vector was used");
}

#[test]
fn a_read_gives_back_what_a_chunk_of_many_user_records_took() {
    let mut bufs = ReadBuffers::default();
    bufs.frames.reserve(READ_RECORDS_MAX);
    bufs.spare.reserve(KEPT_RECORDS_MAX + 1);
    bufs.prepared.reserve(KEPT_RECORDS_MAX + 1);
    let kept = bufs.frames.capacity();
    bufs.trim();
    assert_eq!(
        bufs.frames.capacity(),
        kept,
        "an ordinary chunk's room is kept"
    );
    for cap in [bufs.spare.capacity(), bufs.prepared.capacity()] {
        assert!((READ_RECORDS_MAX..KEPT_RECORDS_MAX).contains(&cap), "{cap}");
    }
}
