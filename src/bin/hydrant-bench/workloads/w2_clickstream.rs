//! W2: clickstream events, ~300 B JSON, to Parquet with zstd in S3,
//! partitioned by country, device and hour.

use std::path::Path;

use super::{Workload, errors_prefix};
use crate::records::click_record;

pub fn workload() -> Workload {
    Workload {
        id: "W2",
        description: "clickstream, ~300 B JSON -> Parquet zstd partitioned by country, device and hour -> S3",
        record_bytes: 300,
        ndjson: false,
        make: click_record,
        stream,
        stages: &[
            "append + fdatasync (300 B)",
            // Its keys are plain paths: one scan of each record's JSON.
            "partition keys (2 plain paths)",
            // The yardstick W2 was set against: decoding with arrow-json,
            // as W1's is zlib level 6. `Parquet zstd (clickstream)`, with
            // the daemon's own decoder, is in the results beside it.
            "Parquet zstd (clickstream, arrow-json)",
            "PUT to Garage",
        ],
        s3: true,
        iceberg: false,
    }
}

fn stream(bucket: &str, _wasm: &Path) -> String {
    let cols = [
        "ts", "user_id", "session", "event", "page", "country", "device", "referrer",
    ]
    .map(|c| format!("        - {{ name: {c}, type: string }}\n"))
    .concat();
    format!(
        "    encoding:\n      format: parquet\n      compression: zstd\n      schema:\n{cols}        - {{ name: duration_ms, type: int64 }}\n    dynamic_partitioning:\n      keys: {{ country: .country, device: .device }}\n    destination: {{ type: s3, bucket: {bucket}, prefix: \"clicks/country=!{{partitionKeyFromQuery:country}}/device=!{{partitionKeyFromQuery:device}}/!{{timestamp:yyyy/MM/dd/HH}}/\", {} }}\n",
        errors_prefix()
    )
}
