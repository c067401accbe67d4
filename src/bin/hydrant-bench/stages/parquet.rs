//! The Parquet stage: the clickstream in a Parquet file with zstd, as W2
//! writes it; and the log lines' Parquet encoding for `hydrant-bench stages`.

use hydrant::encode::EncodeOptions;
use hydrant::encode::parquet::{ParquetOptions, schema};
use hydrant::encode::{Compression, Encoding};
use hydrant::record::Record;

use super::{Stage, encode_stage};

/// The log lines' five string columns, zstd, one row group.
pub fn logs_encoding() -> Encoding {
    Encoding::Parquet(ParquetOptions {
        schema: schema(&[
            ("ts".into(), arrow_schema::DataType::Utf8, true),
            ("level".into(), arrow_schema::DataType::Utf8, true),
            ("service".into(), arrow_schema::DataType::Utf8, true),
            ("request_id".into(), arrow_schema::DataType::Utf8, true),
            ("msg".into(), arrow_schema::DataType::Utf8, true),
        ]),
        row_group_rows: 1_000_000,
        compression: "zstd".into(),
        dictionary: true,
    })
}

/// `Parquet zstd (clickstream)`: W2's schema over the clickstream events.
pub fn clickstream_stage(clicks: &[Record], clicks_raw: usize) -> anyhow::Result<Stage> {
    let cols = [
        "ts", "user_id", "session", "event", "page", "country", "device", "referrer",
    ];
    let mut columns: Vec<(String, arrow_schema::DataType, bool)> = cols
        .iter()
        .map(|c| (c.to_string(), arrow_schema::DataType::Utf8, true))
        .collect();
    columns.push(("duration_ms".into(), arrow_schema::DataType::Int64, true));
    let pq = EncodeOptions {
        encoding: Encoding::Parquet(ParquetOptions {
            schema: schema(&columns),
            row_group_rows: 1_000_000,
            compression: "zstd".into(),
            dictionary: true,
        }),
        compression: Compression::None,
        level: None,
        encryption: None,
    };
    encode_stage("Parquet zstd (clickstream)", clicks, clicks_raw, &pq)
}
