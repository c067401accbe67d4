//! Entry points for the fuzz targets in `fuzz/` and for the test that replays
//! their corpora on every run. Each function feeds outside bytes to a parser
//! and panics only if an invariant is broken; any input at all must be
//! handled without a panic.

use crate::ingest::firehose::{self, BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_BYTES_MAX};
use crate::log::frame::{self, Decoded};

/// The frame reader: decoding never panics, and whatever decodes re-encodes
/// to exactly the bytes it was read from.
pub fn frame_reader(data: &[u8]) {
    let (frames, used, _) = frame::decode_all(data);
    assert!(used <= data.len());
    let mut again = Vec::new();
    for f in &frames {
        if frame::encode(&mut again, f.offset, f.arrival_ms, &f.key, &f.data).is_err() {
            panic!("a decoded frame does not re-encode");
        }
    }
    assert_eq!(
        &again[..],
        &data[..used],
        "decoded frames differ from their bytes"
    );
    if let Decoded::Frame { consumed, .. } = frame::decode(data) {
        assert!(consumed <= data.len());
    }
}

/// The Firehose request parser: any body is either refused with an error or
/// accepted within Firehose's limits.
pub fn firehose_request(data: &[u8]) {
    if let Ok(req) = firehose::parse_put_record_batch(data) {
        assert!(!req.records.is_empty() && req.records.len() <= BATCH_RECORDS_MAX);
        assert!(req.records.iter().all(|r| r.len() <= RECORD_BYTES_MAX));
        assert!(req.records.iter().map(|r| r.len()).sum::<usize>() <= BATCH_BYTES_MAX);
        assert!(crate::aws::valid_delivery_stream_name(&req.stream));
    }
    if let Ok(req) = firehose::parse_put_record(data) {
        assert!(req.data.len() <= RECORD_BYTES_MAX);
        assert!(crate::aws::valid_delivery_stream_name(&req.stream));
    }
}

/// The KPL de-aggregator: any data, and any data behind the magic with a
/// valid MD5 (so that it reaches the protobuf decoder), is either refused
/// whole or taken apart into user records that keep the aggregate's place
/// and whose data lies within the aggregate's.
pub fn kpl_aggregate(data: &[u8]) {
    use crate::kinesis::kpl;
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(data).into();
    let wrapped = [&kpl::MAGIC[..], data, &digest[..]].concat();
    for bytes in [data.to_vec(), wrapped] {
        let agg = crate::record::Record {
            offset: 42,
            arrival_ms: 7,
            key: bytes::Bytes::from_static(b"k"),
            data: bytes::Bytes::from(bytes),
        };
        let mut out = Vec::new();
        match kpl::deaggregate_into(&agg, &mut out) {
            Ok(n) => {
                assert_eq!(n, out.len());
                assert!(n <= kpl::USER_RECORDS_MAX);
                let within = agg.data.as_ptr_range();
                for r in &out {
                    assert_eq!((r.offset, r.arrival_ms), (42, 7));
                    assert!(r.data.is_empty() || within.contains(&r.data.as_ptr()));
                }
            }
            Err(_) => assert!(out.is_empty(), "a refused aggregate left user records"),
        }
    }
}
