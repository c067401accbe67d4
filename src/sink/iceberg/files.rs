//! Records into Iceberg data files, on a blocking thread: decoded with the
//! stream's declared schema by Hydrant's Parquet decoder (a record that
//! does not fit is refused, with the reason), cast to the table's column
//! types and field ids, split by the table's partition spec, written one
//! Parquet file per partition (rolled over at the size bound), and each
//! described to Iceberg from its footer: value, null and size counts and
//! lower/upper bounds per column, so readers can prune.
//!
//! File names are deterministic: the caller's name (stream, log, shard,
//! offsets) and a roll number, under the partition's directory.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::SchemaRef as ArrowSchemaRef;
use bytes::Bytes;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, PartitionKey,
    PartitionSpecRef, PrimitiveType, SchemaRef, Struct, Type,
};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;

use crate::encode::parquet::{ParquetOptions, decode_chunks, writer_properties};
use crate::record::Record;

/// What writing a table's data files needs of it.
pub struct TableShape {
    pub schema: SchemaRef,
    pub spec: PartitionSpecRef,
    /// The table's schema in Arrow, each field with its Iceberg id.
    pub arrow: ArrowSchemaRef,
    /// Where data files go: the table's `data` directory.
    pub data_location: String,
    /// The stream's declared columns, which records are decoded with.
    pub declared: ParquetOptions,
    pub file_bytes_max: u64,
}

/// One data file, written in memory and described.
pub struct DataFileOut {
    pub location: String,
    pub body: Bytes,
    pub file: DataFile,
}

/// What encoding a batch made: its files, and the records refused
/// (index into the records given, reason).
pub struct Encoded {
    pub files: Vec<DataFileOut>,
    pub rejected: Vec<(usize, String)>,
}

/// Rows handed to a file's writer at a time, so that a file is rolled
/// over near its size bound.
const WRITE_ROWS: usize = 65_536;

/// Writes `records` as data files named `{name}-{roll}.parquet`: the
/// batch is decoded whole, split by partition once, and each partition's
/// rows written in large slices (small writes make Parquet slow).
pub fn encode(records: &[Record], shape: &TableShape, name: &str) -> Result<Encoded, String> {
    let mut decoded = Vec::new();
    let rejected = decode_chunks(records, &shape.declared.schema, |batch| {
        decoded.push(to_table(&batch, &shape.arrow)?);
        Ok(())
    })?;
    if decoded.is_empty() {
        return Ok(Encoded {
            files: Vec::new(),
            rejected,
        });
    }
    let all =
        arrow_select::concat::concat_batches(&shape.arrow, &decoded).map_err(|e| e.to_string())?;
    drop(decoded);
    let parts = if shape.spec.is_unpartitioned() {
        vec![(None, all)]
    } else {
        RecordBatchPartitionSplitter::try_new_with_computed_values(
            shape.schema.clone(),
            shape.spec.clone(),
        )
        .and_then(|s| s.split(&all))
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(k, b)| (Some(k), b))
        .collect()
    };
    let props = writer_properties(&shape.declared);
    let mut files = Vec::new();
    for (key, part) in parts {
        let dir = key.as_ref().map(|k| k.to_path()).unwrap_or_default();
        let mut writer = new_writer(shape, &props)?;
        let mut roll = 0;
        let mut at = 0;
        while at < part.num_rows() {
            let n = WRITE_ROWS.min(part.num_rows() - at);
            writer
                .write(&part.slice(at, n))
                .map_err(|e| e.to_string())?;
            at += n;
            let size = (writer.bytes_written() + writer.in_progress_size()) as u64;
            if size >= shape.file_bytes_max && at < part.num_rows() {
                let full = std::mem::replace(&mut writer, new_writer(shape, &props)?);
                files.push(finish(shape, &dir, name, key.as_ref(), roll, full)?);
                roll += 1;
            }
        }
        files.push(finish(shape, &dir, name, key.as_ref(), roll, writer)?);
    }
    Ok(Encoded { files, rejected })
}

fn new_writer(
    shape: &TableShape,
    props: &WriterProperties,
) -> Result<ArrowWriter<Vec<u8>>, String> {
    ArrowWriter::try_new(Vec::new(), shape.arrow.clone(), Some(props.clone()))
        .map_err(|e| e.to_string())
}

/// A decoded batch in the table's columns: each declared column cast to
/// the table's type, a table column not declared all null.
fn to_table(batch: &RecordBatch, table: &ArrowSchemaRef) -> Result<RecordBatch, String> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(table.fields().len());
    for f in table.fields() {
        let col = match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => arrow_cast::cast(c, f.data_type())
                .map_err(|e| format!("column `{}`: {e}", f.name()))?,
            None if f.is_nullable() => new_null_array(f.data_type(), batch.num_rows()),
            None => {
                return Err(format!(
                    "the table's column `{}` is required and not in encoding.schema",
                    f.name()
                ));
            }
        };
        cols.push(col);
    }
    RecordBatch::try_new(table.clone(), cols).map_err(|e| e.to_string())
}

/// Closes a partition's file and describes it.
fn finish(
    shape: &TableShape,
    dir: &str,
    name: &str,
    key: Option<&PartitionKey>,
    roll: u32,
    mut writer: ArrowWriter<Vec<u8>>,
) -> Result<DataFileOut, String> {
    let md = writer.finish().map_err(|e| e.to_string())?;
    let body = Bytes::from(std::mem::take(writer.inner_mut()));
    let location = if dir.is_empty() {
        format!("{}/{name}-{roll:03}.parquet", shape.data_location)
    } else {
        format!("{}/{dir}/{name}-{roll:03}.parquet", shape.data_location)
    };
    let partition = key.map(|k| k.data().clone()).unwrap_or_else(Struct::empty);
    let file = describe(
        &shape.schema,
        &md,
        location.clone(),
        body.len() as u64,
        partition,
        shape.spec.spec_id(),
    )?;
    Ok(DataFileOut {
        location,
        body,
        file,
    })
}

/// A data file's entry, from its Parquet footer.
fn describe(
    schema: &iceberg::spec::Schema,
    md: &ParquetMetaData,
    path: String,
    size: u64,
    partition: Struct,
    spec_id: i32,
) -> Result<DataFile, String> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    let mut no_bounds: Vec<i32> = Vec::new();
    for rg in md.row_groups() {
        for col in rg.columns() {
            let info = col.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            *sizes.entry(id).or_default() += col.compressed_size().max(0) as u64;
            *values.entry(id).or_default() += col.num_values().max(0) as u64;
            let Some(st) = col.statistics() else {
                no_bounds.push(id);
                continue;
            };
            if let Some(n) = st.null_count_opt() {
                *nulls.entry(id).or_default() += n;
            }
            let Some(Type::Primitive(pt)) = schema.field_by_id(id).map(|f| f.field_type.as_ref())
            else {
                continue;
            };
            let (lo, hi) = bounds(pt, st);
            match lo {
                Some(lo) => {
                    let e = lower.entry(id).or_insert_with(|| lo.clone());
                    if lo < *e {
                        *e = lo;
                    }
                }
                None => no_bounds.push(id),
            }
            match hi {
                Some(hi) => {
                    let e = upper.entry(id).or_insert_with(|| hi.clone());
                    if hi > *e {
                        *e = hi;
                    }
                }
                None => no_bounds.push(id),
            }
        }
    }
    // A column without bounds in one row group has no bounds for the file,
    // unless that row group held only nulls for it.
    for id in no_bounds {
        let all_null = nulls.get(&id) == values.get(&id);
        if !all_null {
            lower.remove(&id);
            upper.remove(&id);
        }
    }
    DataFileBuilder::default()
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(partition)
        .partition_spec_id(spec_id)
        .record_count(md.file_metadata().num_rows().max(0) as u64)
        .file_size_in_bytes(size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(
            md.row_groups()
                .iter()
                .filter_map(|rg| rg.file_offset())
                .collect(),
        ))
        .build()
        .map_err(|e| e.to_string())
}

/// A column chunk's (lower, upper) bounds as Iceberg values of type `ty`:
/// only exact ones, except a truncated string minimum, which is still a
/// lower bound.
fn bounds(ty: &PrimitiveType, st: &Statistics) -> (Option<Datum>, Option<Datum>) {
    use PrimitiveType as P;
    use Statistics as S;
    let (lo, hi) = match (ty, st) {
        (P::Boolean, S::Boolean(s)) => (
            s.min_opt().map(|v| Datum::bool(*v)),
            s.max_opt().map(|v| Datum::bool(*v)),
        ),
        (P::Int, S::Int32(s)) => (
            s.min_opt().map(|v| Datum::int(*v)),
            s.max_opt().map(|v| Datum::int(*v)),
        ),
        (P::Date, S::Int32(s)) => (
            s.min_opt().map(|v| Datum::date(*v)),
            s.max_opt().map(|v| Datum::date(*v)),
        ),
        (P::Long, S::Int64(s)) => (
            s.min_opt().map(|v| Datum::long(*v)),
            s.max_opt().map(|v| Datum::long(*v)),
        ),
        (P::Timestamp, S::Int64(s)) => (
            s.min_opt().map(|v| Datum::timestamp_micros(*v)),
            s.max_opt().map(|v| Datum::timestamp_micros(*v)),
        ),
        (P::Timestamptz, S::Int64(s)) => (
            s.min_opt().map(|v| Datum::timestamptz_micros(*v)),
            s.max_opt().map(|v| Datum::timestamptz_micros(*v)),
        ),
        (P::Float, S::Float(s)) => (
            s.min_opt()
                .filter(|v| !v.is_nan())
                .map(|v| Datum::float(*v)),
            s.max_opt()
                .filter(|v| !v.is_nan())
                .map(|v| Datum::float(*v)),
        ),
        (P::Double, S::Double(s)) => (
            s.min_opt()
                .filter(|v| !v.is_nan())
                .map(|v| Datum::double(*v)),
            s.max_opt()
                .filter(|v| !v.is_nan())
                .map(|v| Datum::double(*v)),
        ),
        (P::String, S::ByteArray(s)) => (
            s.min_opt()
                .and_then(|v| v.as_utf8().ok())
                .map(Datum::string),
            s.max_opt()
                .and_then(|v| v.as_utf8().ok())
                .map(Datum::string),
        ),
        _ => (None, None),
    };
    let exact_min = st.min_is_exact() || matches!(ty, P::String);
    (lo.filter(|_| exact_min), hi.filter(|_| st.max_is_exact()))
}

/// The Iceberg schema of a table as Arrow, with field ids.
pub fn arrow_schema(schema: &iceberg::spec::Schema) -> Result<ArrowSchemaRef, String> {
    iceberg::arrow::schema_to_arrow_schema(schema)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}
