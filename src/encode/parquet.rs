//! Parquet encoding: JSON records decoded into Arrow with the stream's
//! declared schema, written by `parquet`'s `ArrowWriter`.
//!
//! A batch is decoded in chunks of [`DECODE_ROWS`] records, each written as
//! it is decoded. A chunk of flat objects the [`flat`] decoder reads
//! exactly is decoded in one pass; any other goes through `arrow-json`, and
//! only a chunk that fails there is decoded record by record to find the
//! ones that do not fit the schema, which are returned as rejected (with
//! the reason) while the rest are written.

mod flat;

use std::io::Write;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::record::Record;

/// A stream's Parquet settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetOptions {
    pub schema: SchemaRef,
    pub row_group_rows: usize,
    /// none | snappy | gzip | zstd
    pub compression: String,
    /// gzip's level (0-9, default 6) or zstd's (1-22, default 1); the
    /// config checks the range.
    pub level: Option<i32>,
    pub dictionary: bool,
}

/// Parses a type such as `int64`, `timestamp[ms, UTC]`, `decimal(10, 2)`,
/// `list<string>`, `struct<a: int32, b: string>` or `map<string, int64>`.
pub fn parse_type(s: &str) -> Result<DataType, String> {
    let s = s.trim();
    let inner = |prefix: &str, open: char, close: char| -> Option<&str> {
        s.strip_prefix(prefix)?
            .trim_start()
            .strip_prefix(open)?
            .strip_suffix(close)
    };
    if let Some(args) = inner("list", '<', '>') {
        return Ok(DataType::List(Arc::new(Field::new(
            "item",
            parse_type(args)?,
            true,
        ))));
    }
    if let Some(args) = inner("struct", '<', '>') {
        let mut fields = Vec::new();
        for part in split_top(args) {
            let (name, ty) = part
                .split_once(':')
                .ok_or_else(|| format!("struct field `{part}` needs `name: type`"))?;
            fields.push(Field::new(name.trim(), parse_type(ty)?, true));
        }
        return Ok(DataType::Struct(Fields::from(fields)));
    }
    if let Some(args) = inner("map", '<', '>') {
        let parts = split_top(args);
        let [k, v] = parts.as_slice() else {
            return Err(format!("`{s}`: a map is map<key, value>"));
        };
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", parse_type(k)?, false),
                Field::new("values", parse_type(v)?, true),
            ])),
            false,
        );
        return Ok(DataType::Map(Arc::new(entries), false));
    }
    if let Some(args) = inner("decimal", '(', ')') {
        let parts = split_top(args);
        let [p, sc] = parts.as_slice() else {
            return Err(format!("`{s}`: a decimal is decimal(precision, scale)"));
        };
        let p: u8 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: bad precision"))?;
        let sc: i8 = sc.trim().parse().map_err(|_| format!("`{s}`: bad scale"))?;
        if !(1..=38).contains(&p) || sc < 0 || sc as u8 > p {
            return Err(format!("`{s}`: precision 1-38 and 0 <= scale <= precision"));
        }
        return Ok(DataType::Decimal128(p, sc));
    }
    if let Some(args) = inner("timestamp", '[', ']') {
        let parts = split_top(args);
        let unit = match parts.first().map(|u| u.trim()) {
            Some("s") => TimeUnit::Second,
            Some("ms") => TimeUnit::Millisecond,
            Some("us") => TimeUnit::Microsecond,
            Some("ns") => TimeUnit::Nanosecond,
            _ => return Err(format!("`{s}`: the unit is s, ms, us or ns")),
        };
        let tz = parts.get(1).map(|z| Arc::from(z.trim()));
        return Ok(DataType::Timestamp(unit, tz));
    }
    Ok(match s {
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" | "int" => DataType::Int32,
        "int64" | "long" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" | "float" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "string" | "utf8" => DataType::Utf8,
        "binary" => DataType::Binary,
        "date" | "date32" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC"))),
        other => {
            return Err(format!(
                "`{other}` is not a type (bool, int8-64, uint8-64, float32/64, string, binary, date32, timestamp[unit, zone], decimal(p, s), list<T>, struct<name: T, ...>, map<K, V>)"
            ));
        }
    })
}

/// Splits on commas that are not inside <>, () or [].
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(&s[start..]);
    }
    out
}

/// Builds the Arrow schema from (name, type, nullable) columns.
pub fn schema(columns: &[(String, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t, null)| Field::new(n, t.clone(), *null))
            .collect::<Vec<_>>(),
    ))
}

/// Records decoded into Arrow at a time. What encoding holds besides the
/// encoded output is one chunk's JSON tape and arrays, whatever the batch's
/// size; the chunks go into the same row groups as one batch would.
const DECODE_ROWS: usize = 4096;

fn decoder(schema: &SchemaRef, rows: usize) -> Result<arrow_json::reader::Decoder, String> {
    arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .build_decoder()
        .map_err(|e| e.to_string())
}

/// Decodes `records` (at most the decoder's batch size) into one batch,
/// each record exactly one row. After an error the decoder is spent.
fn decode<'a>(
    d: &mut arrow_json::reader::Decoder,
    records: impl ExactSizeIterator<Item = &'a Record>,
) -> Result<Option<RecordBatch>, String> {
    let expected = records.len();
    for r in records {
        let mut buf: &[u8] = &r.data;
        while !buf.is_empty() {
            let n = d.decode(buf).map_err(|e| e.to_string())?;
            if n == 0 {
                // The decoder is full: more values than records.
                return Err("the record holds more than one JSON value".into());
            }
            buf = &buf[n..];
        }
        d.decode(b"\n").map_err(|e| e.to_string())?;
    }
    let batch = d.flush().map_err(|e| e.to_string())?;
    let rows = batch.as_ref().map_or(0, |b| b.num_rows());
    match rows.cmp(&expected) {
        // Across a chunk, some record's doing; one by one, whose.
        std::cmp::Ordering::Less => Err("the record holds no JSON value".into()),
        std::cmp::Ordering::Greater => Err("the record holds more than one JSON value".into()),
        std::cmp::Ordering::Equal => Ok(batch),
    }
}

/// Decodes one chunk, finding the records that do not fit the schema one by
/// one if the chunk as a whole does not decode; those are added to
/// `rejected` (index in the batch, reason). The flat decoder first, where
/// the schema allows it; `arrow-json`'s decoder is made when first needed.
fn decode_chunk(
    schema: &SchemaRef,
    flat: Option<&flat::FlatDecoder>,
    general: &mut Option<arrow_json::reader::Decoder>,
    chunk: &[Record],
    base: usize,
    rejected: &mut Vec<(usize, String)>,
) -> Result<Option<RecordBatch>, String> {
    if let Some(b) = flat.and_then(|f| f.decode(chunk)) {
        return Ok(Some(b));
    }
    let d = match general {
        Some(d) => d,
        // Sized to what it decodes: its tape is allocated for this many
        // rows, and no later chunk is larger.
        None => general.insert(decoder(schema, chunk.len())?),
    };
    if let Ok(b) = decode(d, chunk.iter()) {
        return Ok(b);
    }
    let mut good = Vec::with_capacity(chunk.len());
    for (i, r) in chunk.iter().enumerate() {
        match decode(&mut decoder(schema, 1)?, std::iter::once(r)) {
            Ok(_) => good.push(r),
            Err(e) => rejected.push((base + i, format!("record does not fit the schema: {e}"))),
        }
    }
    *d = decoder(schema, DECODE_ROWS)?;
    decode(d, good.into_iter())
}

/// The flat decoder held to `arrow-json` on `records` in `schema`: if it
/// takes them, `arrow-json` reads the same rows. For the fuzz target.
pub fn flat_decoder_agrees(records: &[Record], schema: &SchemaRef) -> Result<(), String> {
    let Some(flat) = flat::FlatDecoder::new(schema) else {
        return Ok(());
    };
    let Some(taken) = flat.decode(records) else {
        return Ok(());
    };
    let mut d = decoder(schema, records.len())?;
    match decode(&mut d, records.iter()) {
        Ok(Some(general)) if general == taken => Ok(()),
        Ok(None) if taken.num_rows() == 0 => Ok(()),
        other => Err(format!("flat read {taken:?}, arrow-json {other:?}")),
    }
}

/// The Parquet writer's settings: compression, dictionary, row groups.
pub fn writer_properties(opts: &ParquetOptions) -> WriterProperties {
    let compression = match opts.compression.as_str() {
        "none" => PqCompression::UNCOMPRESSED,
        "gzip" => PqCompression::GZIP(
            opts.level
                .and_then(|l| GzipLevel::try_new(u32::try_from(l).ok()?).ok())
                .unwrap_or_default(),
        ),
        "zstd" => PqCompression::ZSTD(
            opts.level
                .and_then(|l| ZstdLevel::try_new(l).ok())
                .unwrap_or_default(),
        ),
        _ => PqCompression::SNAPPY,
    };
    WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(opts.dictionary)
        .set_max_row_group_row_count(Some(opts.row_group_rows))
        .build()
}

/// Writes the records that fit the schema as one Parquet file into `out`;
/// returns the writer and the rejected records (index, reason).
pub fn write<W: Write + Send>(
    records: &[Record],
    opts: &ParquetOptions,
    out: W,
) -> std::io::Result<(W, Vec<(usize, String)>)> {
    write_decoding(records, opts, out, true)
}

/// [`write`] with every chunk decoded by `arrow-json`, the flat decoder
/// left out: the same file, the general decoder's cost. The benchmark
/// suite keeps it as a yardstick.
pub fn write_general<W: Write + Send>(
    records: &[Record],
    opts: &ParquetOptions,
    out: W,
) -> std::io::Result<(W, Vec<(usize, String)>)> {
    write_decoding(records, opts, out, false)
}

fn write_decoding<W: Write + Send>(
    records: &[Record],
    opts: &ParquetOptions,
    out: W,
    flat: bool,
) -> std::io::Result<(W, Vec<(usize, String)>)> {
    let props = writer_properties(opts);
    let mut w = ArrowWriter::try_new(out, opts.schema.clone(), Some(props))
        .map_err(std::io::Error::other)?;
    let rejected = decode_chunks_with(records, &opts.schema, flat, |b| {
        w.write(&b).map_err(|e| e.to_string())
    })
    .map_err(std::io::Error::other)?;
    let out = w.into_inner().map_err(std::io::Error::other)?;
    Ok((out, rejected))
}

/// Decodes `records` into `schema` a chunk at a time, handing each chunk's
/// rows to `each`; returns the records that do not fit (index, reason).
/// An error from `each`, or a schema the decoder cannot take, ends it.
pub fn decode_chunks(
    records: &[Record],
    schema: &SchemaRef,
    each: impl FnMut(RecordBatch) -> Result<(), String>,
) -> Result<Vec<(usize, String)>, String> {
    decode_chunks_with(records, schema, true, each)
}

/// [`decode_chunks`], with the flat decoder or without.
fn decode_chunks_with(
    records: &[Record],
    schema: &SchemaRef,
    use_flat: bool,
    mut each: impl FnMut(RecordBatch) -> Result<(), String>,
) -> Result<Vec<(usize, String)>, String> {
    let mut rejected = Vec::new();
    let flat = use_flat.then(|| flat::FlatDecoder::new(schema)).flatten();
    let mut general = None;
    for (n, chunk) in records.chunks(DECODE_ROWS).enumerate() {
        let base = n * DECODE_ROWS;
        if let Some(b) = decode_chunk(
            schema,
            flat.as_ref(),
            &mut general,
            chunk,
            base,
            &mut rejected,
        )? {
            each(b)?;
        }
    }
    Ok(rejected)
}

/// Records decoded: the rows of those that fit, and the ones that do not
/// (index, reason).
pub type DecodedRows = (Vec<RecordBatch>, Vec<(usize, String)>);

/// Decodes `records` into `schema`: the rows of those that fit (one each,
/// in order, in batches of at most [`DECODE_ROWS`]) and the ones that do
/// not (index, reason), as [`write`] decodes a batch.
pub fn decode_all(records: &[Record], schema: &SchemaRef) -> Result<DecodedRows, String> {
    let mut batches = Vec::new();
    let rejected = decode_chunks(records, schema, |b| {
        batches.push(b);
        Ok(())
    })?;
    Ok((batches, rejected))
}

/// Writes rows already decoded into `opts.schema` as one Parquet file into
/// `out`, [`DECODE_ROWS`] at a time as [`write`] writes the records they came
/// from, so the same rows make the same file.
pub fn write_rows<W: Write + Send>(
    rows: &[RecordBatch],
    opts: &ParquetOptions,
    out: W,
) -> std::io::Result<W> {
    let props = writer_properties(opts);
    let mut w = ArrowWriter::try_new(out, opts.schema.clone(), Some(props))
        .map_err(std::io::Error::other)?;
    // Up to DECODE_ROWS rows at a time, copied together from the pieces
    // they lie in: never the whole batch twice.
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut count = 0;
    for piece in rows {
        let mut at = 0;
        while at < piece.num_rows() {
            let n = (DECODE_ROWS - count).min(piece.num_rows() - at);
            // A piece that fits whole is shared, not sliced into new arrays.
            pending.push(if n == piece.num_rows() {
                piece.clone()
            } else {
                piece.slice(at, n)
            });
            count += n;
            at += n;
            if count == DECODE_ROWS {
                write_together(&mut w, &opts.schema, &mut pending)?;
                count = 0;
            }
        }
    }
    if count > 0 {
        write_together(&mut w, &opts.schema, &mut pending)?;
    }
    w.into_inner().map_err(std::io::Error::other)
}

/// Writes `pending` as one batch, and empties it.
fn write_together<W: Write + Send>(
    w: &mut ArrowWriter<W>,
    schema: &SchemaRef,
    pending: &mut Vec<RecordBatch>,
) -> std::io::Result<()> {
    let batch = match pending.as_slice() {
        [one] => one.clone(),
        many => {
            arrow_select::concat::concat_batches(schema, many).map_err(std::io::Error::other)?
        }
    };
    pending.clear();
    w.write(&batch).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests;
