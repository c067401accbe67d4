//! A stored fragment: one record of a video stream's log, self-contained so
//! that any fragment can be served alone (GetMedia, HLS, archives):
//!
//! ```text
//! "HVF1" | meta_len u32 LE | meta (JSON) | header_len u32 LE | MKV header | MKV cluster
//! ```
//!
//! The MKV header is the upload's EBML header, Segment start, Info and
//! Tracks; the cluster is the fragment's Cluster element with a known size.
//! A fragment's number is its offset in the log behind a prefix made from
//! the log's identity, so numbers grow with ingestion order and a stream
//! deleted and created again never reuses one.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::types::TrackInfo;

const MAGIC: &[u8; 4] = b"HVF1";

/// What is known of a fragment besides its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The cluster's timecode, as the producer sent it (TimecodeScale units).
    pub timecode: i64,
    /// When the producer says it started (epoch ms).
    pub producer_ms: i64,
    /// When Hydrant started receiving it (epoch ms).
    pub server_ms: i64,
    pub duration_ms: u64,
    /// The producer's fragment metadata (MKV SimpleTags before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    pub timecode_scale_ns: u64,
    pub tracks: Vec<TrackInfo>,
}

/// A fragment as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub meta: Meta,
    pub header: Bytes,
    pub cluster: Bytes,
}

/// The record data of a fragment.
pub fn encode(meta: &Meta, header: &[u8], cluster: &[u8]) -> Vec<u8> {
    // Serializing plain data into memory cannot fail.
    let meta = serde_json::to_vec(meta).unwrap_or_default();
    let mut out = Vec::with_capacity(12 + meta.len() + header.len() + cluster.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(cluster);
    out
}

fn take_len(data: &Bytes, at: usize) -> Option<usize> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Reads a fragment record back; None if it is not one.
pub fn decode(data: &Bytes) -> Option<Stored> {
    if data.get(..4)? != MAGIC {
        return None;
    }
    let meta_len = take_len(data, 4)?;
    let meta_end = 8usize.checked_add(meta_len)?;
    let meta: Meta = serde_json::from_slice(data.get(8..meta_end)?).ok()?;
    let header_len = take_len(data, meta_end)?;
    let header_start = meta_end + 4;
    let header_end = header_start.checked_add(header_len)?;
    if header_end > data.len() {
        return None;
    }
    Some(Stored {
        meta,
        header: data.slice(header_start..header_end),
        cluster: data.slice(header_end..),
    })
}

/// Fragment numbers of one log: a prefix from the log's identity, then the
/// offset, zero-padded so that text order is number order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbering {
    prefix: u32,
}

impl Numbering {
    /// The numbering of the log whose identity is `log_id`.
    pub fn of_log(log_id: &str) -> Numbering {
        let h = crc32c::crc32c(log_id.as_bytes());
        // A leading 9 keeps the number's width fixed (no leading zero).
        Numbering {
            prefix: h % 1_000_000_000,
        }
    }

    pub fn number(&self, offset: u64) -> String {
        format!("9{:09}{:020}", self.prefix, offset)
    }

    /// The offset a fragment number of this log names.
    pub fn offset(&self, number: &str) -> Option<u64> {
        if number.len() != 30 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u32 = number.get(1..10)?.parse().ok()?;
        if !number.starts_with('9') || prefix != self.prefix {
            return None;
        }
        number.get(10..)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_record_reads_back_and_garbage_does_not() {
        let meta = Meta {
            timecode: 40,
            producer_ms: 1_700_000_000_040,
            server_ms: 1_700_000_000_100,
            duration_ms: 1000,
            tags: vec![("k".into(), "v".into())],
            timecode_scale_ns: 1_000_000,
            tracks: Vec::new(),
        };
        let data = Bytes::from(encode(&meta, b"HEADER", b"CLUSTER"));
        let s = decode(&data).unwrap();
        assert_eq!(
            (s.meta, &s.header[..], &s.cluster[..]),
            (meta, &b"HEADER"[..], &b"CLUSTER"[..])
        );
        for cut in 0..data.len() - 7 {
            assert!(decode(&data.slice(..cut)).is_none(), "cut at {cut}");
        }
        assert!(decode(&Bytes::from_static(b"HVF1\xff\xff\xff\xff")).is_none());
    }

    #[test]
    fn numbers_sort_by_offset_and_belong_to_their_log() {
        let n = Numbering::of_log("log-a");
        let (a, b) = (n.number(9), n.number(10));
        assert!(a < b && a.len() == 30 && a.starts_with('9'));
        assert_eq!(n.offset(&b), Some(10));
        assert_eq!(Numbering::of_log("log-b").offset(&b), None);
        assert_eq!(n.offset("12"), None);
        assert_eq!(n.offset(&b.replace('9', "x")), None);
    }
}
