//! The encryption stage: AES-256-GCM of uncompressed JSON lines, with the
//! key the bench uses everywhere.

use hydrant::encode::Compression;
use hydrant::encode::encrypt::Encryption;
use hydrant::encode::encrypt::SecretKey;
use hydrant::record::Record;

use super::{Stage, compress::json_lines, encode_stage};

/// One key of nines, in chunks of 64 KiB.
pub fn key() -> Encryption {
    Encryption {
        keys: vec![("bench".into(), SecretKey([9; 32]))],
        chunk_bytes: 64 << 10,
    }
}

/// `AES-256-GCM` over the log lines.
pub fn stage(logs: &[Record], logs_raw: usize) -> anyhow::Result<Stage> {
    encode_stage(
        "AES-256-GCM",
        logs,
        logs_raw,
        &json_lines(Compression::None, Some(key())),
    )
}
