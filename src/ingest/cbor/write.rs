//! CBOR items written straight into a body (RFC 8949), as the answers that
//! are written without a value per record need them: definite lengths and
//! the shortest heads, as `ciborium` writes them, so a written answer is
//! byte for byte the one made from a value.

/// The major types used here.
const UNSIGNED: u8 = 0;
const NEGATIVE: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;

/// An item's head: its major type and its argument, in the fewest bytes.
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[m | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(m | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(m | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// An integer.
pub fn int(out: &mut Vec<u8>, v: i64) {
    match u64::try_from(v) {
        Ok(u) => head(out, UNSIGNED, u),
        // -1 - v, which is never negative here.
        Err(_) => head(out, NEGATIVE, (-1 - i128::from(v)) as u64),
    }
}

/// A text string.
pub fn text(out: &mut Vec<u8>, s: &str) {
    head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A byte string.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

/// The head of an array of `n` items, which follow.
pub fn array(out: &mut Vec<u8>, n: usize) {
    head(out, ARRAY, n as u64);
}

/// The head of a map of `n` pairs, which follow, each key then its value.
pub fn map(out: &mut Vec<u8>, n: usize) {
    head(out, MAP, n as u64);
}

/// A timestamp as the AWS SDKs write one: tag 1 around epoch milliseconds.
pub fn epoch_ms(out: &mut Vec<u8>, ms: i64) {
    head(out, TAG, 1);
    int(out, ms);
}

#[cfg(test)]
mod tests {
    use ciborium::Value as Cbor;

    fn encoded(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).expect("writing to a Vec");
        out
    }

    #[test]
    fn items_are_written_as_ciborium_writes_them() {
        for n in [
            0i64,
            1,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            1 << 32,
            i64::MAX,
            -1,
            -24,
            -25,
            -256,
            -257,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            super::int(&mut out, n);
            assert_eq!(out, encoded(&Cbor::Integer(n.into())), "{n}");
            let mut out = Vec::new();
            super::epoch_ms(&mut out, n);
            assert_eq!(
                out,
                encoded(&Cbor::Tag(1, Box::new(Cbor::Integer(n.into())))),
                "{n}"
            );
        }
        for len in [0usize, 23, 24, 255, 256, 70_000] {
            let s = "é".repeat(len / 2);
            let mut out = Vec::new();
            super::text(&mut out, &s);
            assert_eq!(out, encoded(&Cbor::Text(s.clone())));
            let b = vec![7u8; len];
            let mut out = Vec::new();
            super::bytes(&mut out, &b);
            assert_eq!(out, encoded(&Cbor::Bytes(b)));
            let mut out = Vec::new();
            super::array(&mut out, len);
            (0..len).for_each(|_| super::int(&mut out, 1));
            assert_eq!(
                out,
                encoded(&Cbor::Array(vec![Cbor::Integer(1.into()); len]))
            );
        }
        let mut out = Vec::new();
        super::map(&mut out, 2);
        super::text(&mut out, "a");
        super::int(&mut out, 1);
        super::text(&mut out, "b");
        super::bytes(&mut out, b"x");
        let pairs = vec![
            (Cbor::Text("a".into()), Cbor::Integer(1.into())),
            (Cbor::Text("b".into()), Cbor::Bytes(b"x".to_vec())),
        ];
        assert_eq!(out, encoded(&Cbor::Map(pairs)));
    }
}
