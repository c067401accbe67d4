//! W4: 100-byte records over NDJSON, to zstd JSON lines in files (the suite
//! adds the file destination).

use std::path::Path;

use super::Workload;
use crate::records::small_record;

pub fn workload() -> Workload {
    Workload {
        id: "W4",
        description: "100-byte records over NDJSON -> zstd JSON lines -> files",
        record_bytes: 100,
        ndjson: true,
        make: small_record,
        stream,
        stages: &["append + fdatasync (100 B)", "zstd (100 B)"],
        s3: false,
        iceberg: false,
    }
}

pub(super) fn stream(_bucket: &str, _wasm: &Path) -> String {
    "    compression: zstd\n".to_string()
}
