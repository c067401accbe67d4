//! The Parquet stage: the clickstream in a Parquet file with zstd, as W2
//! writes it; and the log lines' Parquet encoding for `hydrant-bench stages`.

use hydrant::encode::EncodeOptions;
use hydrant::encode::parquet::{ParquetOptions, schema};
use hydrant::encode::{Compression, Encoding};
use hydrant::record::Record;

use super::{Stage, encode_stage, encoding_stage, measured};

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
        level: None,
        dictionary: true,
    })
}

/// `Parquet zstd (clickstream)`: W2's schema over the clickstream events.
pub fn clickstream_stage(clicks: &[Record], clicks_raw: usize) -> anyhow::Result<Stage> {
    let pq = EncodeOptions {
        encoding: Encoding::Parquet(clickstream_options()),
        compression: Compression::None,
        level: None,
        encryption: None,
    };
    encode_stage("Parquet zstd (clickstream)", clicks, clicks_raw, &pq)
}

/// `Parquet zstd (clickstream, arrow-json)`: the same file with every
/// record decoded by `arrow-json`, as the daemon decoded them before the
/// flat decoder. W2's yardstick, as zlib level 6 is W1's: a stage that
/// speeds up with the daemon cannot say how much faster the daemon got.
pub fn clickstream_general_stage(clicks: &[Record], clicks_raw: usize) -> anyhow::Result<Stage> {
    let opts = clickstream_options();
    encoding_stage(
        "Parquet zstd (clickstream, arrow-json)",
        clicks.len(),
        clicks_raw,
        || {
            let (out, rejected) =
                hydrant::encode::parquet::write_general(clicks, &opts, Vec::new())?;
            Ok((out, rejected.len()))
        },
    )
}

/// W2's schema: eight string columns and `duration_ms`.
fn clickstream_options() -> ParquetOptions {
    let cols = [
        "ts", "user_id", "session", "event", "page", "country", "device", "referrer",
    ];
    let mut columns: Vec<(String, arrow_schema::DataType, bool)> = cols
        .iter()
        .map(|c| (c.to_string(), arrow_schema::DataType::Utf8, true))
        .collect();
    columns.push(("duration_ms".into(), arrow_schema::DataType::Int64, true));
    ParquetOptions {
        schema: schema(&columns),
        row_group_rows: 1_000_000,
        compression: "zstd".into(),
        level: None,
        dictionary: true,
    }
}

/// W2's delivery as a whole, one Parquet file per partition, two ways.
/// `partitioned Parquet, keys scanned (the daemon's)` is what the daemon
/// does: each record's keys read by the plain-path scan and its prefix
/// rendered, its partition's records decoded into Arrow when the partition
/// is written. `partitioned Parquet, one decode (a design)` decodes every
/// record once, reads the keys from the decoded columns and splits the rows
/// by them (`take`), writing each partition's rows from there; it renders
/// no prefix (one per partition and chunk would do). The two side by side
/// say what parsing JSON once per record would save. They must write the
/// same bytes.
pub fn partitioned_stages(clicks: &[Record], clicks_raw: usize) -> anyhow::Result<Vec<Stage>> {
    use std::collections::HashMap;
    use std::time::Instant;

    use anyhow::Context;
    use arrow_array::{Array, RecordBatch, StringArray, UInt32Array};
    use hydrant::route::partition::RouteScratch;
    use parquet::arrow::ArrowWriter;

    let pq = clickstream_options();
    let props = hydrant::encode::parquet::writer_properties(&pq);
    let prefix = "country=!{partitionKeyFromQuery:country}/device=!{partitionKeyFromQuery:device}/!{timestamp:yyyy/MM/dd/HH}/";
    let part = super::partition::partitioner("{ country: .country, device: .device }", prefix)?;
    let mut out = Vec::new();

    // Today's: route, group, then decode and write each partition.
    let t = Instant::now();
    let mut scratch = RouteScratch::default();
    let mut parts: HashMap<std::sync::Arc<str>, Vec<Record>> = HashMap::new();
    for r in clicks {
        let p = part
            .route(r, &[], &mut scratch)
            .map_err(|e| anyhow::anyhow!("partitioning failed: {e}"))?;
        parts.entry(p).or_default().push(r.clone());
    }
    let mut bytes_scanned = 0;
    for records in parts.values() {
        let (body, rejected) = hydrant::encode::parquet::write(records, &pq, Vec::new())?;
        anyhow::ensure!(rejected.is_empty(), "records rejected");
        bytes_scanned += body.len();
    }
    let n_parts = parts.len();
    drop(parts);
    out.push(measured(
        "partitioned Parquet, keys scanned (the daemon's)",
        clicks_raw,
        clicks.len(),
        t.elapsed(),
        true,
    ));

    // One decode: the keys come from the decoded columns.
    let t = Instant::now();
    let col = |b: &RecordBatch, name: &str| -> anyhow::Result<StringArray> {
        let i = b.schema().index_of(name)?;
        b.column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .context("a string column")
    };
    let mut split: HashMap<(String, String), Vec<RecordBatch>> = HashMap::new();
    let rejected = hydrant::encode::parquet::decode_chunks(clicks, &pq.schema, |b| {
        let (country, device) = (
            col(&b, "country").map_err(|e| e.to_string())?,
            col(&b, "device").map_err(|e| e.to_string())?,
        );
        let mut rows: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        for i in 0..b.num_rows() {
            if country.is_null(i) || device.is_null(i) {
                return Err("a key is null".into());
            }
            rows.entry((country.value(i), device.value(i)))
                .or_default()
                .push(i as u32);
        }
        for ((c, d), idx) in rows.drain() {
            let taken = arrow_select::take::take_record_batch(&b, &UInt32Array::from(idx))
                .map_err(|e| e.to_string())?;
            split
                .entry((c.to_string(), d.to_string()))
                .or_default()
                .push(taken);
        }
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(rejected.is_empty(), "records rejected");
    let mut bytes_once = 0;
    for batches in split.values() {
        let mut w = ArrowWriter::try_new(Vec::new(), pq.schema.clone(), Some(props.clone()))?;
        for b in batches {
            w.write(b)?;
        }
        bytes_once += w.into_inner()?.len();
    }
    anyhow::ensure!(
        split.len() == n_parts,
        "{} partitions by one decode, {n_parts} by the scan",
        split.len()
    );
    out.push(measured(
        "partitioned Parquet, one decode (a design)",
        clicks_raw,
        clicks.len(),
        t.elapsed(),
        true,
    ));
    // The same rows in the same partitions, in the same order: the same files.
    anyhow::ensure!(
        bytes_once == bytes_scanned,
        "{bytes_once} bytes of Parquet by one decode, {bytes_scanned} by the scan"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{click_record, frames_of};

    #[test]
    fn both_clickstream_stages_take_every_record_and_a_rejected_one_fails_them() {
        let (clicks, raw) = frames_of(2_000, click_record);
        for st in [
            clickstream_stage(&clicks, raw).unwrap(),
            clickstream_general_stage(&clicks, raw).unwrap(),
        ] {
            assert!(st.per_core && st.mb_per_sec > 0.0, "{}", st.name);
            assert!(st.records_per_sec > 0.0, "{}", st.name);
        }
        let mut bad = clicks.clone();
        bad[7].data = bytes::Bytes::from_static(b"{\"ts\": 1");
        for e in [
            clickstream_stage(&bad, raw).unwrap_err(),
            clickstream_general_stage(&bad, raw).unwrap_err(),
        ] {
            assert!(e.to_string().ends_with(": 1 records rejected"), "{e}");
        }
    }
}
