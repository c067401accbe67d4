//! MKV served back: a stored fragment made a standalone file, or a
//! `GetMedia` chunk with the service's tags around it.
//!
//! A chunk is a complete small MKV: the stream's header (EBML header, a
//! Segment of unknown size, Info, Tracks), Tags with the fragment's number,
//! timestamps and producer metadata, the Cluster, then Tags with where the
//! reader stands (`AWS_KINESISVIDEO_MILLIS_BEHIND_NOW`, the continuation
//! token, and on failure the error code). Players read concatenated chunks
//! as one stream, each chunk's Segment following the last.

use super::StreamHeader;
use super::ebml::{self, id};

/// The names of the service's tags in a `GetMedia` chunk.
pub mod tag {
    /// Before the cluster: the fragment's number (a decimal string).
    pub const FRAGMENT_NUMBER: &str = "AWS_KINESISVIDEO_FRAGMENT_NUMBER";
    /// Before the cluster: when the service received the fragment, in
    /// decimal seconds ([`super::seconds`]).
    pub const SERVER_TIMESTAMP: &str = "AWS_KINESISVIDEO_SERVER_TIMESTAMP";
    /// Before the cluster: the producer's timestamp, in decimal seconds.
    pub const PRODUCER_TIMESTAMP: &str = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP";
    /// After the cluster: how far behind the stream's head the reader is.
    pub const MILLIS_BEHIND_NOW: &str = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW";
    /// After the cluster: where a new `GetMedia` would resume.
    pub const CONTINUATION_TOKEN: &str = "AWS_KINESISVIDEO_CONTINUATION_TOKEN";
    /// After the cluster, on failure: the error's name.
    pub const ERROR_CODE: &str = "AWS_KINESISVIDEO_ERROR_CODE";
    /// After the cluster, on failure: the error's number.
    pub const ERROR_ID: &str = "AWS_KINESISVIDEO_ERROR_ID";
}

/// A Tags element holding one Tag (with empty Targets: the whole segment)
/// with one SimpleTag per pair, in order. No pairs make no element: Tags
/// must hold a Tag, and a Tag a SimpleTag.
pub fn tags_element(tags: &[(String, String)]) -> Vec<u8> {
    if tags.is_empty() {
        return Vec::new();
    }
    let mut tag = Vec::new();
    ebml::put_element(&mut tag, id::TARGETS, &[]);
    for (name, value) in tags {
        let mut simple = Vec::with_capacity(name.len() + value.len() + 8);
        ebml::put_element(&mut simple, id::TAG_NAME, name.as_bytes());
        ebml::put_element(&mut simple, id::TAG_STRING, value.as_bytes());
        ebml::put_element(&mut tag, id::SIMPLE_TAG, &simple);
    }
    let mut tags_payload = Vec::with_capacity(tag.len() + 12);
    ebml::put_element(&mut tags_payload, id::TAG, &tag);
    let mut out = Vec::with_capacity(tags_payload.len() + 12);
    ebml::put_element(&mut out, id::TAGS, &tags_payload);
    out
}

/// A `GetMedia` chunk: header, Tags `before`, the fragment's Cluster, Tags
/// `after`. The caller names the tags (the service's and the producer's).
pub fn fragment_chunk(
    header: &StreamHeader,
    fragment_cluster: &[u8],
    before: &[(String, String)],
    after: &[(String, String)],
) -> Vec<u8> {
    let before = tags_element(before);
    let after = tags_element(after);
    let mut out = Vec::with_capacity(
        header.bytes.len() + before.len() + fragment_cluster.len() + after.len(),
    );
    out.extend_from_slice(&header.bytes);
    out.extend_from_slice(&before);
    out.extend_from_slice(fragment_cluster);
    out.extend_from_slice(&after);
    out
}

/// A playable MKV of one fragment, for archiving: header and Cluster.
pub fn standalone(header: &StreamHeader, fragment_cluster: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.bytes.len() + fragment_cluster.len());
    out.extend_from_slice(&header.bytes);
    out.extend_from_slice(fragment_cluster);
    out
}

/// Milliseconds since the epoch as the decimal seconds the service's
/// timestamp tags use, e.g. "1513118181.123".
pub fn seconds(millis: i64) -> String {
    let sign = if millis < 0 { "-" } else { "" };
    let abs = millis.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}
