//! W3: W1 through the Rust example WebAssembly transform.

use std::path::Path;

use super::{Workload, errors_prefix};
use crate::records::{LOG_BYTES, log_record};
use crate::stages::compress::GZIP;

pub fn workload() -> Workload {
    Workload {
        id: "W3",
        description: "W1 through the Rust example WASM transform",
        record_bytes: LOG_BYTES,
        ndjson: false,
        make: log_record,
        stream,
        stages: &[
            "append + fdatasync (1 KiB)",
            "WASM call (Rust example)",
            GZIP,
            "PUT to Garage",
        ],
        s3: true,
        iceberg: false,
    }
}

fn stream(bucket: &str, wasm: &Path) -> String {
    format!(
        "    compression: gzip\n    transform: {{ wasm: {}, config: '{{\"env\":\"bench\",\"drop_levels\":[]}}' }}\n    destination: {{ type: s3, bucket: {bucket}, prefix: logs/, {} }}\n",
        wasm.display(),
        errors_prefix()
    )
}
