//! Compression stages of the suite: gzip and zstd of JSON lines, over log
//! lines and over 100-byte records.

use hydrant::encode::EncodeOptions;
use hydrant::encode::encrypt::Encryption;
use hydrant::encode::{Compression, Encoding};
use hydrant::record::Record;

use super::{Stage, encode_stage};

/// JSON lines (newline-delimited) with `compression` and `encryption`.
pub fn json_lines(compression: Compression, encryption: Option<Encryption>) -> EncodeOptions {
    EncodeOptions {
        encoding: Encoding::JsonLines {
            delimiter: b"\n".to_vec(),
        },
        compression,
        level: None,
        encryption,
    }
}

/// `gzip` and `zstd` over the log lines, `zstd (100 B)` over the small
/// records.
pub fn stages(
    logs: &[Record],
    logs_raw: usize,
    small: &[Record],
    small_raw: usize,
) -> anyhow::Result<Vec<Stage>> {
    Ok(vec![
        encode_stage("gzip", logs, logs_raw, &json_lines(Compression::Gzip, None))?,
        encode_stage("zstd", logs, logs_raw, &json_lines(Compression::Zstd, None))?,
        encode_stage(
            "zstd (100 B)",
            small,
            small_raw,
            &json_lines(Compression::Zstd, None),
        )?,
    ])
}
