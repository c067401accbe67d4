//! The ingest stage: `PutRecordBatch` bodies of 500 records parsed and
//! base64-decoded by the daemon's own parser, what every record of a
//! Firehose workload costs before it reaches the log.

use std::time::Instant;

use anyhow::bail;
use base64::Engine;
use hydrant::ingest::firehose::parse_put_record_batch;
use hydrant::record::Record;

use super::{Stage, measured};

/// Records per request, as the suite's generator sends them.
const PER_REQUEST: usize = 500;

/// The stage over 1 KiB log records.
pub const PARSE_1K: &str = "PutRecordBatch parse (1 KiB)";
/// The stage over ~300 B clickstream events.
pub const PARSE_300: &str = "PutRecordBatch parse (300 B)";

/// The stage `name` over `records` (`raw` bytes in all).
pub fn stage(name: &str, records: &[Record], raw: usize) -> anyhow::Result<Stage> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bodies: Vec<Vec<u8>> = records
        .chunks(PER_REQUEST)
        .map(|c| {
            let recs: Vec<serde_json::Value> = c
                .iter()
                .map(|r| serde_json::json!({ "Data": b64.encode(&r.data) }))
                .collect();
            serde_json::to_vec(
                &serde_json::json!({ "DeliveryStreamName": "bench", "Records": recs }),
            )
        })
        .collect::<Result<_, _>>()?;
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
