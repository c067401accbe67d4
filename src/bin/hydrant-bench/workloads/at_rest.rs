//! W1 and W4 with their logs sealed at rest (`log_encryption: {}`, the
//! built-in key): what encryption at rest costs, beside the same workloads
//! in clear.

use std::path::Path;

use super::{Workload, w1_logs, w4_small};

/// The seal stage's names, as [`crate::stages::encrypt::seal_name`] gives
/// them.
const SEAL_1K: &str = "seal + open at rest (1 KiB)";
const SEAL_100: &str = "seal + open at rest (100 B)";

pub fn w1() -> Workload {
    Workload {
        id: "W1-at-rest",
        description: "W1 with the log sealed at rest (AES-256-GCM per record)",
        stream: w1_stream,
        stages: &[
            "append + fdatasync (1 KiB)",
            SEAL_1K,
            crate::stages::compress::GZIP,
            "PUT to Garage",
        ],
        ..w1_logs::workload()
    }
}

pub fn w4() -> Workload {
    Workload {
        id: "W4-at-rest",
        description: "W4 with the log sealed at rest (AES-256-GCM per record)",
        stream: w4_stream,
        stages: &["append + fdatasync (100 B)", SEAL_100, "zstd (100 B)"],
        ..w4_small::workload()
    }
}

fn w1_stream(bucket: &str, wasm: &Path) -> String {
    w1_logs::stream(bucket, wasm) + "    log_encryption: {}\n"
}

fn w4_stream(bucket: &str, wasm: &Path) -> String {
    w4_small::stream(bucket, wasm) + "    log_encryption: {}\n"
}
