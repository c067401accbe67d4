//! Compression stages of the suite: gzip and zstd of JSON lines, over log
//! lines and over 100-byte records. gzip twice: with libdeflate, what
//! Hydrant runs, and with zlib (flate2 on zlib-rs) at level 6, the
//! yardstick the suite compares W1 against.

use std::io::Write;
use std::time::Instant;

use hydrant::encode::EncodeOptions;
use hydrant::encode::encrypt::Encryption;
use hydrant::encode::{Compression, Encoding};
use hydrant::record::Record;

use super::{Stage, encode_stage, measured};

/// The stage of the gzip Hydrant runs (libdeflate, `encode_batch`).
pub const GZIP: &str = "gzip (libdeflate level 6)";
/// The yardstick: zlib at level 6 (flate2 on zlib-rs, streamed line by
/// line, as Hydrant compressed before libdeflate).
pub const ZLIB_6: &str = "gzip (zlib level 6)";

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

/// gzip (libdeflate, then zlib) and `zstd` over the log lines, `zstd
/// (100 B)` over the small records.
pub fn stages(
    logs: &[Record],
    logs_raw: usize,
    small: &[Record],
    small_raw: usize,
) -> anyhow::Result<Vec<Stage>> {
    Ok(vec![
        encode_stage(GZIP, logs, logs_raw, &json_lines(Compression::Gzip, None))?,
        zlib_level_6(logs, logs_raw)?,
        encode_stage("zstd", logs, logs_raw, &json_lines(Compression::Zstd, None))?,
        encode_stage(
            "zstd (100 B)",
            small,
            small_raw,
            &json_lines(Compression::Zstd, None),
        )?,
    ])
}

/// [`ZLIB_6`] over `logs` as one gzip stream.
fn zlib_level_6(logs: &[Record], raw: usize) -> anyhow::Result<Stage> {
    let t = Instant::now();
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(raw / 4), flate2::Compression::new(6));
    for r in logs {
        gz.write_all(&r.data)?;
        if !r.data.ends_with(b"\n") {
            gz.write_all(b"\n")?;
        }
    }
    gz.finish()?;
    Ok(measured(ZLIB_6, raw, logs.len(), t.elapsed(), true))
}
