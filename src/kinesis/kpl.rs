//! The Kinesis Producer Library's aggregated record format: many user
//! records packed into one Kinesis record, which a delivery stream reading
//! a Kinesis stream takes apart again before its transform and partitioning,
//! as Firehose does. `GetRecords` never looks inside: consumers get the
//! aggregates as they were put.
//!
//! An aggregate's data is the magic `F3 89 9A C2`, then a protobuf
//! `AggregatedRecord` (proto2), then the MD5 of those protobuf bytes:
//!
//! ```text
//! message AggregatedRecord { repeated string partition_key_table = 1;
//!                            repeated string explicit_hash_key_table = 2;
//!                            repeated Record records = 3; }
//! message Tag { required string key = 1; optional string value = 2; }
//! message Record { required uint64 partition_key_index = 1;
//!                  optional uint64 explicit_hash_key_index = 2;
//!                  required bytes data = 3; repeated Tag tags = 4; }
//! ```
//!
//! Data without the magic is an ordinary record. Data with it that is too
//! short or too large, fails its MD5, does not decode, lacks a required
//! field or points past one of its tables is a corrupt aggregate: refused
//! whole with the reason, never half taken apart. The work per aggregate is
//! bounded by its size (at most [`AGGREGATE_BYTES_MAX`]) and the number of
//! user records it may hold ([`USER_RECORDS_MAX`]); the user records' data
//! are slices of the aggregate's, not copies.
//!
//! This module only knows the format; it must not know where records come
//! from or go.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::record::Record;

/// The first four bytes of an aggregate's data.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Bytes of the MD5 that ends an aggregate.
const DIGEST_BYTES: usize = 16;
/// The largest aggregate taken apart: a Kinesis record's data is at most
/// 1 MiB.
pub const AGGREGATE_BYTES_MAX: usize = 1 << 20;
/// The most user records an aggregate may hold: a valid user record takes
/// at least 6 bytes (its key and length, a partition key index, an empty
/// data field), so no valid aggregate of [`AGGREGATE_BYTES_MAX`] holds more.
pub const USER_RECORDS_MAX: usize = AGGREGATE_BYTES_MAX / 6;

/// Why an aggregate cannot be taken apart. The messages go to the error
/// output as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    #[error("data does not start with the KPL magic")]
    Magic,
    #[error(
        "KPL aggregate of {0} bytes is shorter than its magic and MD5 ({min} bytes)",
        min = MAGIC.len() + DIGEST_BYTES
    )]
    TooShort(usize),
    #[error(
        "KPL aggregate of {0} bytes is larger than a Kinesis record ({AGGREGATE_BYTES_MAX} bytes)"
    )]
    TooLarge(usize),
    #[error("KPL aggregate fails its MD5 check")]
    Digest,
    #[error("KPL aggregate does not decode: {0}")]
    Decode(String),
    #[error("KPL aggregate holds {0} user records, more than {USER_RECORDS_MAX}")]
    TooManyRecords(usize),
    #[error("KPL aggregate's user record {record} does not decode: {why}")]
    RecordDecode { record: usize, why: String },
    #[error("KPL aggregate's user record {record} has no {field}")]
    Missing { record: usize, field: &'static str },
    #[error(
        "KPL aggregate's user record {record} has {table} index {index}, past the end of its table of {len}"
    )]
    Index {
        record: usize,
        table: &'static str,
        index: u64,
        len: usize,
    },
}

/// The top of an aggregate, with its user records still encoded: each is
/// decoded on its own ([`UserRecordMessage`]) once their number is known to
/// be within bounds, so a flood of tiny records costs a slice each (not a
/// decoded message each) before it is refused. The wire format is the same:
/// an embedded message is a length-delimited field, as bytes are.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AggregatedRecordMessage {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub records: Vec<Bytes>,
}

/// One user record. Its required fields are optional here so that a record
/// lacking one is told apart from one holding the default value.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct UserRecordMessage {
    #[prost(uint64, optional, tag = "1")]
    pub partition_key_index: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub data: Option<Bytes>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<TagMessage>,
}

/// A user record's tag: decoded and checked, not delivered.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TagMessage {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Whether `data` is a KPL aggregate (or claims to be one): it starts with
/// the magic. A four-byte comparison; an ordinary record costs no more.
pub fn is_aggregate(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Takes the aggregate `agg` apart, appending its user records to `out`
/// in their order: each keeps the aggregate's offset and arrival and takes
/// its partition key from the aggregate's table. Returns how many were
/// appended. On an error `out` is as it was: an aggregate is taken apart
/// whole or not at all.
pub fn deaggregate_into(agg: &Record, out: &mut Vec<Record>) -> Result<usize, KplError> {
    let start = out.len();
    let result = decode_into(agg, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decode_into(agg: &Record, out: &mut Vec<Record>) -> Result<usize, KplError> {
    let start = out.len();
    let message = checked_message(&agg.data)?;
    let top =
        AggregatedRecordMessage::decode(message).map_err(|e| KplError::Decode(e.to_string()))?;
    if top.records.len() > USER_RECORDS_MAX {
        return Err(KplError::TooManyRecords(top.records.len()));
    }
    // Each key is one allocation, shared by the records that use it.
    let keys: Vec<Bytes> = top
        .partition_key_table
        .into_iter()
        .map(Bytes::from)
        .collect();
    let hash_keys = top.explicit_hash_key_table.len();
    out.reserve(top.records.len());
    for (i, raw) in top.records.into_iter().enumerate() {
        let r = UserRecordMessage::decode(raw).map_err(|e| KplError::RecordDecode {
            record: i,
            why: e.to_string(),
        })?;
        let missing = |field| KplError::Missing { record: i, field };
        let pk = r
            .partition_key_index
            .ok_or_else(|| missing("partition key index"))?;
        let data = r.data.ok_or_else(|| missing("data"))?;
        if r.tags.iter().any(|t| t.key.is_none()) {
            return Err(missing("key in one of its tags"));
        }
        if let Some(ehk) = r.explicit_hash_key_index
            && usize::try_from(ehk).map_or(true, |e| e >= hash_keys)
        {
            return Err(KplError::Index {
                record: i,
                table: "explicit hash key",
                index: ehk,
                len: hash_keys,
            });
        }
        let key = usize::try_from(pk)
            .ok()
            .and_then(|k| keys.get(k))
            .ok_or(KplError::Index {
                record: i,
                table: "partition key",
                index: pk,
                len: keys.len(),
            })?;
        out.push(Record {
            offset: agg.offset,
            arrival_ms: agg.arrival_ms,
            key: key.clone(),
            data,
        });
    }
    Ok(out.len() - start)
}

/// The protobuf bytes of an aggregate whose size and MD5 check out.
fn checked_message(data: &Bytes) -> Result<Bytes, KplError> {
    if !is_aggregate(data) {
        return Err(KplError::Magic);
    }
    let len = data.len();
    if len < MAGIC.len() + DIGEST_BYTES {
        return Err(KplError::TooShort(len));
    }
    if len > AGGREGATE_BYTES_MAX {
        return Err(KplError::TooLarge(len));
    }
    // Within bounds: the length was checked above.
    let message = data.slice(MAGIC.len()..len - DIGEST_BYTES);
    let digest: [u8; DIGEST_BYTES] = Md5::digest(&message).into();
    if data.get(len - DIGEST_BYTES..) != Some(&digest[..]) {
        return Err(KplError::Digest);
    }
    Ok(message)
}

/// An aggregate of user records (partition key, data), the keys in a
/// table as the KPL packs them: for tests of the stages that take
/// aggregates apart.
#[cfg(test)]
pub(crate) fn aggregate(records: &[(&str, &[u8])]) -> Bytes {
    let mut table: Vec<String> = Vec::new();
    let mut raw = Vec::new();
    for (key, data) in records {
        let index = match table.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                table.push(key.to_string());
                table.len() - 1
            }
        };
        let r = UserRecordMessage {
            partition_key_index: Some(index as u64),
            explicit_hash_key_index: None,
            data: Some(Bytes::copy_from_slice(data)),
            tags: Vec::new(),
        };
        raw.push(Bytes::from(r.encode_to_vec()));
    }
    let message = AggregatedRecordMessage {
        partition_key_table: table,
        explicit_hash_key_table: Vec::new(),
        records: raw,
    }
    .encode_to_vec();
    let digest: [u8; DIGEST_BYTES] = Md5::digest(&message).into();
    [&MAGIC[..], &message, &digest[..]].concat().into()
}

#[cfg(test)]
mod tests;
