//! Kinesis's names for places in a shard: hash keys, shard ids, sequence
//! numbers and shard iterators, and how they map onto the log's offsets.
//!
//! A sequence number is a decimal string, increasing per shard:
//! `4` | the stream's incarnation (9 digits) | shard (6 digits) | offset (20
//! digits). The incarnation comes from the log's random id, so a number from
//! a deleted stream is not taken for one of a new stream of the same name.
//!
//! A shard iterator is opaque to clients: base64 of a versioned binary record
//! (when it was issued, stream, incarnation, shard, offset, and where in the
//! log that offset starts) with a CRC32C, so a mangled one is refused rather
//! than misread. It carries no secret: it grants nothing a client could not
//! get with `GetShardIterator`.

use base64::Engine;

/// The highest hash key, 2^128 − 1.
pub const HASH_KEY_MAX: u128 = u128::MAX;

/// Kinesis's shard id for shard `i`.
pub fn shard_id(i: u32) -> String {
    format!("shardId-{i:012}")
}

/// The shard index a shard id names, if it is well formed.
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The hash key of a partition key: its MD5 as a big-endian 128-bit number.
pub fn hash_key(partition_key: &[u8]) -> u128 {
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(partition_key).into();
    u128::from_be_bytes(digest)
}

/// The inclusive hash-key range of shard `i` of `n`: equal ranges, the last
/// one ending at 2^128 − 1, as Kinesis splits a new stream.
pub fn hash_range(i: u32, n: u32) -> (u128, u128) {
    let Some(step) = hash_step(n) else {
        return (0, HASH_KEY_MAX);
    };
    let start = step * i as u128;
    let end = if i + 1 >= n {
        HASH_KEY_MAX
    } else {
        step * (i as u128 + 1) - 1
    };
    (start, end)
}

/// floor(2^128 / n), the width of each shard's range; None for one shard
/// (whose range, all of them, does not fit the type).
fn hash_step(n: u32) -> Option<u128> {
    let n = n as u128;
    if n <= 1 {
        return None;
    }
    // 2^128 = HASH_KEY_MAX + 1.
    Some(HASH_KEY_MAX / n + u128::from(HASH_KEY_MAX % n == n - 1))
}

/// Parses an `ExplicitHashKey`: a decimal number from 0 to 2^128 − 1.
pub fn parse_hash_key(s: &str) -> Option<u128> {
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The incarnation of a stream, from its log's random id: 9 decimal digits.
pub fn incarnation(log_id: &str) -> u32 {
    (crc32c::crc32c(log_id.as_bytes()) % 1_000_000_000).max(1)
}

/// A sequence number, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceNumber {
    pub incarnation: u32,
    pub shard: u32,
    pub offset: u64,
}

impl SequenceNumber {
    pub fn encode(&self) -> String {
        use std::fmt::Write;
        let mut s = Self::head(self.incarnation, self.shard);
        // Writing to a String cannot fail.
        let _ = write!(s, "{:020}", self.offset);
        s
    }

    /// The first 16 digits of every sequence number of a shard; the 20
    /// digits of the offset follow.
    pub fn head(incarnation: u32, shard: u32) -> String {
        format!("4{incarnation:09}{shard:06}")
    }

    /// Decodes a sequence number this daemon issued; None for anything else.
    pub fn decode(s: &str) -> Option<SequenceNumber> {
        if s.len() != 36 || !s.starts_with('4') || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SequenceNumber {
            incarnation: s.get(1..10)?.parse().ok()?,
            shard: s.get(10..16)?.parse().ok()?,
            offset: s.get(16..36)?.parse().ok()?,
        })
    }
}

/// The sequence number before a shard's first record: a `3` where a
/// record's begins with `4`, so it sorts below all of them. A subscription
/// that has delivered nothing yet gives it as its continuation, and a
/// position after (or at) it is the shard's first record.
pub fn before_first(incarnation: u32, shard: u32) -> String {
    format!("3{incarnation:09}{shard:06}{:020}", 0)
}

/// Decodes a sequence number this daemon issued, or the marker
/// [`before_first`] (as the record at offset 0, with `true`).
pub fn decode_position(s: &str) -> Option<(SequenceNumber, bool)> {
    if let Some(rest) = s.strip_prefix('3') {
        let seq = SequenceNumber::decode(&format!("4{rest}"))?;
        return (seq.offset == 0).then_some((seq, true));
    }
    SequenceNumber::decode(s).map(|seq| (seq, false))
}

const ITERATOR_VERSION: u8 = 1;
/// `offset` has no known position in the log.
const NO_POSITION: u64 = u64::MAX;

/// A shard iterator, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardIterator {
    pub stream: String,
    pub incarnation: u32,
    pub shard: u32,
    /// The offset of the next record to return.
    pub offset: u64,
    /// Where `offset` starts in the log: (segment base, byte position).
    pub position: Option<(u64, u64)>,
    /// Epoch milliseconds when it was issued.
    pub issued_ms: i64,
}

impl ShardIterator {
    pub fn encode(&self) -> String {
        let name = self.stream.as_bytes();
        let mut b = Vec::with_capacity(50 + name.len());
        b.push(ITERATOR_VERSION);
        b.extend_from_slice(&self.issued_ms.to_be_bytes());
        b.extend_from_slice(&self.incarnation.to_be_bytes());
        b.extend_from_slice(&self.shard.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        let (base, pos) = self.position.unwrap_or((NO_POSITION, NO_POSITION));
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&pos.to_be_bytes());
        b.push(name.len().min(255) as u8);
        b.extend_from_slice(&name[..name.len().min(255)]);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// Decodes an iterator this daemon issued; None for anything else.
    pub fn decode(s: &str) -> Option<ShardIterator> {
        let b = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .ok()?;
        let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader(body);
        if r.take::<1>()?[0] != ITERATOR_VERSION {
            return None;
        }
        let issued_ms = i64::from_be_bytes(r.take()?);
        let incarnation = u32::from_be_bytes(r.take()?);
        let shard = u32::from_be_bytes(r.take()?);
        let offset = u64::from_be_bytes(r.take()?);
        let base = u64::from_be_bytes(r.take()?);
        let pos = u64::from_be_bytes(r.take()?);
        let len = r.take::<1>()?[0] as usize;
        let name = r.0.get(..len)?;
        if r.0.len() != len {
            return None;
        }
        Some(ShardIterator {
            stream: String::from_utf8(name.to_vec()).ok()?,
            incarnation,
            shard,
            offset,
            position: (base != NO_POSITION).then_some((base, pos)),
            issued_ms,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

#[cfg(test)]
mod tests;
