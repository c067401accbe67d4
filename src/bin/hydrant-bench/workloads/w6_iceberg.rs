//! W6: W2's clickstream into an Iceberg table on Garage (a SQL catalog on
//! SQLite, the warehouse in the workload's bucket), partitioned by
//! identity(country) and identity(device), committed every 10 s. Records
//! count as delivered when the commit holding them is confirmed.
//! Freshness is not measured: data files are visible in the bucket before
//! the commit that makes them part of the table.

use std::path::Path;

use super::Workload;
use crate::records::click_record;

pub fn workload() -> Workload {
    Workload {
        id: "W6",
        description: "clickstream, ~300 B JSON -> Iceberg table (Parquet zstd, identity(country), identity(device)) on S3, commits every 10 s",
        record_bytes: 300,
        ndjson: false,
        make: click_record,
        stream,
        stages: &[
            "append + fdatasync (300 B)",
            "Parquet zstd (clickstream)",
            "PUT to Garage",
        ],
        s3: true,
        iceberg: true,
    }
}

fn stream(_bucket: &str, _wasm: &Path) -> String {
    let cols = [
        "ts", "user_id", "session", "event", "page", "country", "device", "referrer",
    ]
    .map(|c| format!("        - {{ name: {c}, type: string }}\n"))
    .concat();
    format!(
        "    encoding:\n      format: parquet\n      compression: zstd\n      schema:\n{cols}        - {{ name: duration_ms, type: int64 }}\n    destination:\n      type: iceberg\n      catalog: lake\n      namespace: bench\n      table: clicks\n      partition_by: [\"identity(country)\", \"identity(device)\"]\n      commit_interval_secs: 10\n"
    )
}
