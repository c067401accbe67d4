//! The ingest stage: `PutRecordBatch` bodies of 500 records parsed and
//! base64-decoded by the daemon's own parser, what every record of a
//! Firehose workload costs before it reaches the log.

use std::time::Instant;

use anyhow::bail;
use hydrant::ingest::firehose::parse_put_record_batch;
use hydrant::record::Record;

use super::{Stage, measured};
use crate::records::put_record_batch_body;

/// Records per request, as the suite's generator sends them.
const PER_REQUEST: usize = 500;

/// The stage over 1 KiB log records.
pub const PARSE_1K: &str = "PutRecordBatch parse (1 KiB)";
/// The stage over ~300 B clickstream events.
pub const PARSE_300: &str = "PutRecordBatch parse (300 B)";

/// The stage `name` over `records` (`raw` bytes in all).
pub fn stage(name: &str, records: &[Record], raw: usize) -> anyhow::Result<Stage> {
    let bodies: Vec<Vec<u8>> = records
        .chunks(PER_REQUEST)
        .map(|c| put_record_batch_body(&c.iter().map(|r| &r.data[..]).collect::<Vec<_>>()))
        .collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    let mut decoded = 0usize;
    for b in &bodies {
        let req = parse_put_record_batch(b).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        decoded += req.records.iter().map(|r| r.len()).sum::<usize>();
    }
    let el = t.elapsed();
    if decoded != raw {
        bail!("PutRecordBatch parse decoded {decoded} bytes of {raw}");
    }
    Ok(measured(name, raw, records.len(), el, true))
}
