//! The on-disk frame: one record of the shard log.
//!
//! ```text
//! len u32 | crc32c u32 | offset u64 | arrival_ms i64 | key_len u16 | key | data
//! ```
//! All integers are little-endian. `len` counts the bytes after the CRC field
//! (`offset` through the end of `data`), and the CRC covers exactly those bytes.
//! This module only encodes and decodes bytes; it never touches files, so the
//! decoder can be property-tested and fuzzed on arbitrary input.

use bytes::Bytes;

use crate::record::Record;

/// Bytes before the checksummed body: `len` and `crc32c`.
pub const HEADER_BYTES: usize = 8;
/// Fixed part of the checksummed body: offset, arrival time and key length.
pub const BODY_FIXED_BYTES: usize = 8 + 8 + 2;
/// Largest body the decoder accepts. Anything larger is treated as corruption,
/// so a flipped bit in `len` cannot make a reader allocate gigabytes.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest key a frame can carry (its length is a `u16`).
pub const KEY_BYTES_MAX: usize = u16::MAX as usize;

/// Size of a frame with this key and data once encoded.
pub fn encoded_len(key_len: usize, data_len: usize) -> usize {
    HEADER_BYTES + BODY_FIXED_BYTES + key_len + data_len
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("key of {0} bytes exceeds the frame limit of {KEY_BYTES_MAX} bytes")]
    KeyTooLarge(usize),
    #[error("record of {0} bytes exceeds the frame limit of {BODY_BYTES_MAX} bytes")]
    RecordTooLarge(usize),
}

/// Appends the encoded frame to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    offset: u64,
    arrival_ms: i64,
    key: &[u8],
    data: &[u8],
) -> Result<(), EncodeError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(EncodeError::KeyTooLarge(key.len()));
    }
    let body_len = BODY_FIXED_BYTES + key.len() + data.len();
    if body_len > BODY_BYTES_MAX {
        return Err(EncodeError::RecordTooLarge(data.len()));
    }
    let start = out.len();
    out.reserve(HEADER_BYTES + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // CRC, filled in below
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&arrival_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    out[start + 4..start + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    // Verify what we are about to write, so a bug in this function can never put
    // a frame on disk that the reader would reject.
    debug_assert!(matches!(decode(&out[start..]), Decoded::Frame { .. }));
    Ok(())
}

/// The result of trying to decode one frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete, checksum-verified frame and how many bytes it used.
    Frame { frame: FrameRef, consumed: usize },
    /// The buffer ends inside a frame: read more bytes, or, at the end of the
    /// file, this is a torn write.
    Incomplete,
    /// The bytes cannot be a frame written by this log.
    Corrupt(&'static str),
}

/// A decoded frame whose key and data are ranges of the decoded buffer, so the
/// caller chooses whether and how to copy them.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct FrameRef {
    pub offset: u64,
    pub arrival_ms: i64,
    pub key: std::ops::Range<usize>,
    pub data: std::ops::Range<usize>,
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}
pub(crate) fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}
pub(crate) fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes the frame at the start of `buf`, verifying its checksum.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(body_len) = read_u32(buf, 0) else {
        return Decoded::Incomplete;
    };
    let body_len = body_len as usize;
    if !(BODY_FIXED_BYTES..=BODY_BYTES_MAX).contains(&body_len) {
        return Decoded::Corrupt("frame length out of range");
    }
    let Some(body) = buf.get(HEADER_BYTES..HEADER_BYTES + body_len) else {
        return Decoded::Incomplete;
    };
    let Some(crc) = read_u32(buf, 4) else {
        return Decoded::Incomplete;
    };
    if crc32c::crc32c(body) != crc {
        return Decoded::Corrupt("frame checksum mismatch");
    }
    // The checksum matched, so these fields are what the writer wrote; the
    // bounds are still checked rather than trusted.
    let (Some(offset), Some(arrival), Some(key_len)) =
        (read_u64(body, 0), read_u64(body, 8), read_u16(body, 16))
    else {
        return Decoded::Corrupt("frame body too short");
    };
    let key_start = HEADER_BYTES + BODY_FIXED_BYTES;
    let key_end = key_start + key_len as usize;
    let end = HEADER_BYTES + body_len;
    if key_end > end {
        return Decoded::Corrupt("frame key longer than its body");
    }
    Decoded::Frame {
        frame: FrameRef {
            offset,
            arrival_ms: arrival as i64,
            key: key_start..key_end,
            data: key_end..end,
        },
        consumed: end,
    }
}

/// Decodes every complete frame in `buf`, returning them and the number of
/// bytes they used. Stops at the first incomplete or corrupt frame and says
/// which one it was (`None` when the buffer ended cleanly on a frame boundary).
pub fn decode_all(buf: &[u8]) -> (Vec<Record>, usize, Option<Decoded>) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match decode(&buf[pos..]) {
            Decoded::Frame { frame, consumed } => {
                let base = pos;
                frames.push(Record {
                    offset: frame.offset,
                    arrival_ms: frame.arrival_ms,
                    key: Bytes::copy_from_slice(&buf[base + frame.key.start..base + frame.key.end]),
                    data: Bytes::copy_from_slice(
                        &buf[base + frame.data.start..base + frame.data.end],
                    ),
                });
                pos += consumed;
            }
            other => return (frames, pos, Some(other)),
        }
    }
    (frames, pos, None)
}

#[cfg(test)]
mod tests;
