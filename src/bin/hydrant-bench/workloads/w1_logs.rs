//! W1: application logs, ~1 KiB JSON, to gzip JSON lines in S3.

use std::path::Path;

use super::{Workload, errors_prefix};
use crate::records::{LOG_BYTES, log_record};
use crate::stages::compress::GZIP;

pub fn workload() -> Workload {
    Workload {
        id: "W1",
        description: "application logs, ~1 KiB JSON -> gzip JSON lines -> S3",
        record_bytes: LOG_BYTES,
        ndjson: false,
        make: log_record,
        stream,
        stages: &["append + fdatasync (1 KiB)", GZIP, "PUT to Garage"],
        s3: true,
        iceberg: false,
    }
}

pub(super) fn stream(bucket: &str, _wasm: &Path) -> String {
    format!(
        "    compression: gzip\n    destination: {{ type: s3, bucket: {bucket}, prefix: logs/, {} }}\n",
        errors_prefix()
    )
}
