//! W5: W1 with AES-256-GCM (the suite puts the key file in place of
//! `KEYFILE`).

use std::path::Path;

use super::{Workload, errors_prefix};
use crate::records::{LOG_BYTES, log_record};
use crate::stages::compress::GZIP;

pub fn workload() -> Workload {
    Workload {
        id: "W5",
        description: "W1 with AES-256-GCM",
        record_bytes: LOG_BYTES,
        ndjson: false,
        make: log_record,
        stream,
        stages: &[
            "append + fdatasync (1 KiB)",
            GZIP,
            "AES-256-GCM",
            "PUT to Garage",
        ],
        s3: true,
        iceberg: false,
    }
}

fn stream(bucket: &str, _wasm: &Path) -> String {
    format!(
        "    compression: gzip\n    encryption: {{ keys: [{{ id: bench, file: KEYFILE }}] }}\n    destination: {{ type: s3, bucket: {bucket}, prefix: logs/, {} }}\n",
        errors_prefix()
    )
}
