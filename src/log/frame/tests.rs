//! Unit tests of the parent module.

use super::*;
use proptest::prelude::*;

fn encode_one(offset: u64, key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, offset, 1_700_000_000_000, key, data).unwrap();
    out
}

#[test]
fn round_trip_keeps_every_field() {
    let buf = encode_one(42, b"pk", b"hello");
    assert_eq!(buf.len(), encoded_len(2, 5));
    let (frames, used, end) = decode_all(&buf);
    assert_eq!(used, buf.len());
    assert_eq!(end, None);
    assert_eq!(
        frames,
        vec![Record {
            offset: 42,
            arrival_ms: 1_700_000_000_000,
            key: Bytes::from_static(b"pk"),
            data: Bytes::from_static(b"hello"),
        }]
    );
}

#[test]
fn empty_record_is_a_valid_frame() {
    let buf = encode_one(0, b"", b"");
    assert!(matches!(decode(&buf), Decoded::Frame { consumed, .. } if consumed == buf.len()));
}

#[test]
fn truncated_frame_is_incomplete_not_corrupt() {
    let buf = encode_one(7, b"k", b"some data");
    for cut in 0..buf.len() {
        assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
    }
}

#[test]
fn flipped_data_bit_is_detected() {
    let mut buf = encode_one(7, b"k", b"some data");
    let last = buf.len() - 1;
    buf[last] ^= 0x01;
    assert_eq!(decode(&buf), Decoded::Corrupt("frame checksum mismatch"));
}

#[test]
fn absurd_length_is_corrupt_without_allocation() {
    let mut buf = encode_one(7, b"", b"x");
    buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode(&buf), Decoded::Corrupt("frame length out of range"));
}

#[test]
fn oversized_key_is_refused() {
    let key = vec![0u8; KEY_BYTES_MAX + 1];
    let mut out = Vec::new();
    assert_eq!(
        encode(&mut out, 0, 0, &key, b""),
        Err(EncodeError::KeyTooLarge(KEY_BYTES_MAX + 1))
    );
    assert!(out.is_empty());
}

proptest! {
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&buf);
    }

    #[test]
    fn frames_survive_round_trip(records in proptest::collection::vec(
        (proptest::collection::vec(any::<u8>(), 0..16), proptest::collection::vec(any::<u8>(), 0..256)), 1..20)) {
        let mut buf = Vec::new();
        for (i, (k, d)) in records.iter().enumerate() {
            encode(&mut buf, i as u64, i as i64, k, d).unwrap();
        }
        let (frames, used, end) = decode_all(&buf);
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(end, None);
        prop_assert_eq!(frames.len(), records.len());
        for (f, (k, d)) in frames.iter().zip(records.iter()) {
            prop_assert_eq!(&f.key[..], &k[..]);
            prop_assert_eq!(&f.data[..], &d[..]);
        }
    }

    #[test]
    fn truncation_keeps_exactly_the_whole_frames(
        sizes in proptest::collection::vec(0usize..64, 1..10), cut_frac in 0.0f64..1.0) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for (i, s) in sizes.iter().enumerate() {
            encode(&mut buf, i as u64, 0, b"", &vec![i as u8; *s]).unwrap();
            ends.push(buf.len());
        }
        let cut = (buf.len() as f64 * cut_frac) as usize;
        let (frames, used, _) = decode_all(&buf[..cut]);
        let whole = ends.iter().filter(|e| **e <= cut).count();
        prop_assert_eq!(frames.len(), whole);
        prop_assert_eq!(used, if whole == 0 { 0 } else { ends[whole - 1] });
    }

    #[test]
    fn a_flipped_byte_never_yields_a_changed_record(
        data in proptest::collection::vec(any::<u8>(), 1..128), pos_frac in 0.0f64..1.0, flip in 1u8..=255) {
        let buf = encode_one(3, b"key", &data);
        let mut bad = buf.clone();
        let pos = ((bad.len() - 1) as f64 * pos_frac) as usize;
        bad[pos] ^= flip;
        let (frames, _, _) = decode_all(&bad);
        for f in frames {
            // If anything decodes, it must be the original record.
            prop_assert_eq!(&f.data[..], &data[..]);
            prop_assert_eq!(f.offset, 3);
        }
    }
}
