//! What the put APIs' fast paths share. A valid request, the common case,
//! is read without serde_json's UTF-8 pass over every `Data` string and
//! answered without formatting every record's id; anything amiss goes to
//! the full parse, which accepts and words errors as the API does. The
//! one-pass scans in front of them read with [`Cursor`].

use std::borrow::Cow;

use serde::Deserialize;

/// A record's `Data` string as a fast path reads it: its bytes with
/// escapes resolved, without serde_json's UTF-8 check of them (base64 is
/// ASCII, and the decoder refuses anything else). Anything but a string is
/// an error here, and the full parse words it.
pub(crate) struct DataBytes<'a>(pub(crate) Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for DataBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Text<'a> {
            type Value = DataBytes<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(DataBytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(DataBytes(Cow::Owned(v.to_vec())))
            }
        }
        d.deserialize_bytes(Text(std::marker::PhantomData))
    }
}

/// A `u64` as 20 decimal digits, zero-padded (`u64::MAX` has 20), that can
/// be counted up by one in place.
pub(crate) struct Digits20([u8; 20]);

impl Digits20 {
    pub(crate) fn new(mut v: u64) -> Self {
        let mut d = [b'0'; 20];
        for slot in d.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        Digits20(d)
    }

    /// Adds one, in decimal (past `u64::MAX` too, which offsets never reach).
    pub(crate) fn increment(&mut self) {
        for slot in self.0.iter_mut().rev() {
            if *slot == b'9' {
                *slot = b'0';
            } else {
                *slot += 1;
                return;
            }
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A cursor over a JSON body for the one-pass scans of the put bodies of
/// the common shape (`firehose/scan.rs`, `kinesis/scan.rs`): it reads
/// only whitespace, punctuation and strings without escapes; anything
/// else is None, and the scan leaves the body to the serde fast path.
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cursor { b, at: 0 }
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.ws();
        (self.at == self.b.len()).then_some(())
    }

    /// Skips JSON whitespace.
    pub(crate) fn ws(&mut self) {
        while let Some(c) = self.b.get(self.at) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.at += 1;
        }
    }

    /// Takes `c` after whitespace, or None.
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.at) == Some(&c)).then(|| self.at += 1)
    }

    /// The next byte after whitespace, not taken.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.at).copied()
    }

    /// A string without escapes, after whitespace: its raw bytes. None for
    /// anything else (an escape, a control character, no string).
    pub(crate) fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.b.get(self.at..)?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        let s = &rest[..end];
        self.at += end + 1;
        Some(s)
    }

    /// A member's key and the colon after it.
    pub(crate) fn key(&mut self) -> Option<&'a [u8]> {
        let k = self.plain_string()?;
        self.eat(b':')?;
        Some(k)
    }

    /// Takes `,` and answers true, or `close` and answers false.
    pub(crate) fn next_or_close(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            c if c == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Digits20;

    #[test]
    fn counted_digits_match_formatted_ones_across_carries() {
        for start in [0, 8, 99_990, 1_999_999_995, u64::MAX - 3] {
            let mut d = Digits20::new(start);
            for k in 0..3u64 {
                if k > 0 {
                    d.increment();
                }
                assert_eq!(d.as_str(), format!("{:020}", start + k));
            }
        }
        let mut d = Digits20::new(u64::MAX);
        assert_eq!(d.as_str(), u64::MAX.to_string());
        d.increment();
        assert_eq!(d.as_str(), (u128::from(u64::MAX) + 1).to_string());
    }
}
