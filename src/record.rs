//! A record as every stage after the log sees it: its data, its partition
//! key, when it arrived and where it sits in its shard.
//!
//! The log produces these; transforms, partitioning, encoders and sinks take
//! them. None of those know how the log lays a record out on disk (that is
//! `log::frame`'s business), so the log's format or its backend can change
//! without touching a stage downstream of it.

use bytes::Bytes;

/// One record of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its position in its shard: offsets increase by one per record.
    pub offset: u64,
    /// When the log accepted it, in epoch milliseconds.
    pub arrival_ms: i64,
    /// Its partition key (empty where the API has none, as Firehose's).
    pub key: Bytes,
    /// Its data, as the producer sent it.
    pub data: Bytes,
}
