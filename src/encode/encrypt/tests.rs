//! Unit tests of the parent module.

use super::*;
use proptest::prelude::*;

fn key() -> SecretKey {
    SecretKey([7u8; 32])
}

fn seal(plain: &[u8], chunk: u32) -> Vec<u8> {
    let mut w = EncryptingWriter::new(Vec::new(), "k1", &key(), chunk).unwrap();
    // Write in odd pieces to exercise buffering.
    for piece in plain.chunks(333) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn open(data: &[u8]) -> Result<Vec<u8>, DecryptError> {
    decrypt(data, |id| (id == "k1").then(key))
}

#[test]
fn round_trips_at_chunk_boundaries() {
    for len in [0usize, 1, 1023, 1024, 1025, 2048, 5000] {
        let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let sealed = seal(&plain, 1024);
        assert_eq!(open(&sealed).unwrap(), plain, "len {len}");
        let chunks = len.div_ceil(1024).max(1);
        assert_eq!(sealed.len(), 19 + 2 + len + 16 * chunks, "len {len}");
    }
}

#[test]
fn truncation_at_a_chunk_boundary_is_detected() {
    let plain = vec![1u8; 4096];
    let sealed = seal(&plain, 1024);
    let cut = 21 + 2 * (1024 + 16);
    assert_eq!(open(&sealed[..cut]), Err(DecryptError::Tampered(1)));
}

#[test]
fn reordered_chunks_are_detected() {
    let plain: Vec<u8> = (0..3072).map(|i| (i % 251) as u8).collect();
    let mut sealed = seal(&plain, 1024);
    let c = 1024 + 16;
    let (a, b) = (21, 21 + c);
    let first: Vec<u8> = sealed[a..a + c].to_vec();
    let second: Vec<u8> = sealed[b..b + c].to_vec();
    sealed[a..a + c].copy_from_slice(&second);
    sealed[b..b + c].copy_from_slice(&first);
    assert_eq!(open(&sealed), Err(DecryptError::Tampered(0)));
}

#[test]
fn wrong_or_unknown_key() {
    let sealed = seal(b"hello", 1024);
    assert_eq!(key_id(&sealed).unwrap(), "k1");
    assert_eq!(
        decrypt(&sealed, |_| None),
        Err(DecryptError::UnknownKey("k1".into()))
    );
    assert_eq!(
        decrypt(&sealed, |_| Some(SecretKey([8u8; 32]))),
        Err(DecryptError::Tampered(0))
    );
    assert_eq!(
        open(b"PK\x03\x04 definitely a zip file"),
        Err(DecryptError::NotEncrypted)
    );
}

#[test]
fn keys_parse_from_hex_base64_and_raw() {
    let hex = "07".repeat(32);
    assert_eq!(SecretKey::parse(hex.as_bytes()).unwrap(), key());
    assert_eq!(
        SecretKey::parse(format!("{hex}\n").as_bytes()).unwrap(),
        key()
    );
    assert_eq!(SecretKey::parse(&[7u8; 32]).unwrap(), key());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    assert_eq!(SecretKey::parse(b64.as_bytes()).unwrap(), key());
    assert!(SecretKey::parse(b"short").unwrap_err().contains("32"));
    assert_eq!(format!("{:?}", key()), "SecretKey(..)");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_flipped_byte_fails(len in 0usize..3000, pos_frac in 0.0f64..1.0, flip in 1u8..=255) {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut sealed = seal(&plain, 1024);
        let pos = ((sealed.len() - 1) as f64 * pos_frac) as usize;
        sealed[pos] ^= flip;
        prop_assert!(open(&sealed).is_err());
    }

    #[test]
    fn any_truncation_fails(len in 1usize..3000, cut_frac in 0.0f64..1.0) {
        let plain: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
        let sealed = seal(&plain, 1024);
        let cut = ((sealed.len() - 1) as f64 * cut_frac) as usize;
        prop_assert!(open(&sealed[..cut]).is_err());
    }
}
