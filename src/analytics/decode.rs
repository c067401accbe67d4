//! Decoding of stream records into Arrow record batches by an input schema
//! (`super::schema::InputSchema`), the way Kinesis Data Analytics for SQL
//! reads its streaming source: JSON located by JSONPath, or delimited text.
//!
//! A record that does not fit the schema becomes a [`Reject`] (the caller
//! sends it to the error stream) and is left out of the batch; the rest are
//! decoded. A record is decoded whole or not at all: when a JSON row path
//! selects an array, one bad element rejects the record and none of its rows
//! enter the batch. This module must not panic on any input, allocate per
//! value where a borrow of the record will do, know the SQL engine, or write
//! records (that is `encode`).
//!
//! Value rules:
//! - A missing JSON field, a path through a non-object, and JSON `null` are
//!   NULL; so is an empty CSV field that is not quoted. For non-text columns
//!   an empty (or all-blank) string is NULL too.
//! - Numbers may come as JSON numbers or as strings that parse; integers out
//!   of the column's range, fractions for integer columns, and numbers past
//!   a DECIMAL's precision are rejected; extra DECIMAL fraction digits round
//!   half away from zero.
//! - VARCHAR(n) and CHAR(n) take any JSON scalar as its text, and objects and
//!   arrays as their JSON text as written in the record; text longer than n
//!   characters is rejected, to the error stream, rather than truncated
//!   (CHAR is not padded either).
//! - TIMESTAMP takes the forms of `parse_timestamp_ms` (`yyyy-MM-dd
//!   HH:mm:ss[.f]`, ISO 8601 with `T` and an optional `Z` or offset, which is
//!   applied) and epoch milliseconds as a JSON integer or digit string;
//!   DATE takes `yyyy-MM-dd`; TIME takes `HH:mm[:ss[.f]]`; BOOLEAN takes
//!   `true`/`false`, also as strings in any case.
//! - CSV rows split on the row delimiter (a record may hold several rows; a
//!   `\n` delimiter also takes `\r\n`), fields on the column delimiter, with
//!   `"quoted"` fields in which `""` is a quote. A row with fewer fields than
//!   the schema has columns is rejected; fields past the last column are
//!   ignored (Kinesis Data Analytics imports the first columns of a longer
//!   row). A blank row is skipped, or is a NULL row for a one-column schema.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time32MillisecondBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;

mod csv;
mod json;

pub(super) use csv::{CsvRows, split_csv};
pub(super) use json::{JsonNode, JsonTape};

use super::schema::{
    ColumnPath, InputSchema, PathSegment, RecordFormat, SchemaError, SqlType, parse_date_days,
    parse_epoch_ms, parse_time_ms, parse_timestamp_ms,
};

/// Characters of a value quoted in a reject message.
const SHOWN_CHARS_MAX: usize = 100;

/// A record that was left out of the batch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Position of the record in the slice given to [`Decoder::decode`].
    pub index: usize,
    /// The column whose value did not fit, when one is to blame.
    pub column: Option<String>,
    pub message: String,
}

/// Decodes records into batches of one schema; built once, reused per batch.
pub struct Decoder {
    schema: SchemaRef,
    types: Vec<SqlType>,
    names: Vec<String>,
    layout: Layout,
    builders: Vec<ColumnBuilder>,
    tape: JsonTape,
    csv: CsvRows,
}

enum Layout {
    Json {
        row: Vec<PathSegment>,
        each: bool,
        paths: Vec<ColumnPath>,
    },
    Csv {
        row_delimiter: String,
        column_delimiter: String,
    },
}

/// Why a record was rejected: the column at fault, if any, and the message.
type Fail = (Option<String>, String);

impl Decoder {
    /// Checks the schema and prepares its column builders.
    pub fn new(schema: &InputSchema) -> Result<Decoder, SchemaError> {
        schema.validate()?;
        let layout = match &schema.format {
            RecordFormat::Json { .. } => {
                let mut row = schema.row_path()?;
                let each = row.last() == Some(&PathSegment::Each);
                if each {
                    row.pop();
                }
                let paths = schema.column_paths()?;
                Layout::Json { row, each, paths }
            }
            RecordFormat::Csv {
                row_delimiter,
                column_delimiter,
            } => Layout::Csv {
                row_delimiter: row_delimiter.clone(),
                column_delimiter: column_delimiter.clone(),
            },
        };
        let types: Vec<SqlType> = schema.columns.iter().map(|c| c.sql_type).collect();
        let builders = types
            .iter()
            .map(|t| ColumnBuilder::new(*t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Decoder {
            schema: schema.arrow_schema(),
            names: schema.columns.iter().map(|c| c.name.clone()).collect(),
            types,
            layout,
            builders,
            tape: JsonTape::default(),
            csv: CsvRows::default(),
        })
    }

    /// The Arrow schema of the batches this decoder makes.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Decodes each record; a record that does not fit becomes a Reject and
    /// is left out; the batch has one row per accepted record, and
    /// `accepted[i]` is the input index of row i. For JSON with a
    /// RecordRowPath that selects an array, one record may produce several
    /// rows: then `accepted` holds that record's index once per row (and a
    /// record whose array is empty produces no row and no reject).
    pub fn decode(&mut self, records: &[&[u8]]) -> (RecordBatch, Vec<usize>, Vec<Reject>) {
        let mut accepted = Vec::with_capacity(records.len());
        let mut rejects = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match self.decode_record(record) {
                Ok(rows) => accepted.extend(std::iter::repeat_n(index, rows)),
                Err((column, message)) => rejects.push(Reject {
                    index,
                    column,
                    message,
                }),
            }
        }
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        match RecordBatch::try_new(self.schema.clone(), arrays) {
            Ok(batch) => (batch, accepted, rejects),
            Err(e) => {
                // Every builder gets one value per accepted row, so this is
                // not expected; if it happens, no record is lost silently.
                debug_assert!(false, "batch assembly failed: {e}");
                let mut seen = accepted;
                seen.dedup();
                rejects.extend(seen.into_iter().map(|index| Reject {
                    index,
                    column: None,
                    message: format!("internal error assembling the batch: {e}"),
                }));
                rejects.sort_by_key(|r| r.index);
                (
                    RecordBatch::new_empty(self.schema.clone()),
                    Vec::new(),
                    rejects,
                )
            }
        }
    }

    fn decode_record(&mut self, record: &[u8]) -> Result<usize, Fail> {
        let text = std::str::from_utf8(record)
            .map_err(|e| (None, format!("record is not valid utf-8: {e}")))?;
        if text.is_empty() {
            return Err((None, "record is empty".to_string()));
        }
        if u32::try_from(text.len()).is_err() {
            return Err((None, "record is larger than 4 GiB".to_string()));
        }
        let ncols = self.types.len();
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(ncols);
        match &self.layout {
            Layout::Json { row, each, paths } => {
                self.tape.parse(text).map_err(|e| (None, e))?;
                let ctx = JsonRow {
                    tape: &self.tape,
                    text,
                    paths,
                    types: &self.types,
                    names: &self.names,
                };
                ctx.cells(row, *each, &mut cells)?;
            }
            Layout::Csv {
                row_delimiter,
                column_delimiter,
            } => {
                split_csv(text, row_delimiter, column_delimiter, &mut self.csv)
                    .map_err(|e| (None, e))?;
                csv_cells(&self.csv, text, &self.types, &self.names, &mut cells)?;
            }
        }
        let rows = cells.len().checked_div(ncols).unwrap_or(0);
        for chunk in cells.chunks(ncols.max(1)) {
            for (builder, cell) in self.builders.iter_mut().zip(chunk) {
                builder.append(*cell);
            }
        }
        Ok(rows)
    }
}

/// Where a JSON record's rows are: one node, or each element of an array.
pub(super) enum Rows {
    One(usize),
    Elements(usize),
}

/// Follows the row path (without its trailing `[*]`, given as `each`)
/// from the root of a parsed record.
pub(super) fn find_rows(
    tape: &JsonTape,
    text: &str,
    row: &[PathSegment],
    each: bool,
) -> Result<Rows, String> {
    let mut at = Some(0);
    for segment in row {
        at = at.and_then(|i| tape.get(text, i, segment, false));
    }
    let missing = || "record row path selected nothing".to_string();
    let at = at.ok_or_else(missing)?;
    match tape.node(at) {
        None | Some(JsonNode::Null) => Err(missing()),
        Some(JsonNode::Array { .. }) => Ok(Rows::Elements(at)),
        Some(_) if each => Err("record row path did not select an array".to_string()),
        Some(_) => Ok(Rows::One(at)),
    }
}

/// What a JSON record's rows are read with.
struct JsonRow<'a> {
    tape: &'a JsonTape,
    text: &'a str,
    paths: &'a [ColumnPath],
    types: &'a [SqlType],
    names: &'a [String],
}

impl<'a> JsonRow<'a> {
    /// Finds the rows by the row path and converts each row's columns.
    fn cells(
        &self,
        row: &[PathSegment],
        each: bool,
        cells: &mut Vec<Cell<'a>>,
    ) -> Result<(), Fail> {
        match find_rows(self.tape, self.text, row, each).map_err(|m| (None, m))? {
            Rows::One(at) => self.row_cells(at, cells),
            Rows::Elements(at) => {
                for element in self.tape.children(at) {
                    self.row_cells(element, cells)?;
                }
                Ok(())
            }
        }
    }

    fn row_cells(&self, row: usize, cells: &mut Vec<Cell<'a>>) -> Result<(), Fail> {
        for ((path, ty), name) in self.paths.iter().zip(self.types).zip(self.names) {
            let mut at = Some(row);
            for segment in &path.segments {
                at = at.and_then(|i| self.tape.get(self.text, i, segment, path.ignore_case));
            }
            let node = at.and_then(|i| self.tape.node(i));
            let cell =
                from_json(*ty, self.tape, self.text, node).map_err(|m| (Some(name.clone()), m))?;
            cells.push(cell);
        }
        Ok(())
    }
}

fn csv_cells<'a>(
    csv: &'a CsvRows,
    text: &'a str,
    types: &[SqlType],
    names: &[String],
    cells: &mut Vec<Cell<'a>>,
) -> Result<(), Fail> {
    for (number, row) in csv.rows().enumerate() {
        let blank = matches!(row, [f] if f.is_null());
        if blank && types.len() > 1 {
            continue;
        }
        if row.len() < types.len() {
            let message = format!(
                "row {number} has {} columns, the schema has {}",
                row.len(),
                types.len()
            );
            return Err((None, message));
        }
        for ((field, ty), name) in row.iter().zip(types).zip(names) {
            let cell = match csv.field(text, field) {
                None => Cell::Null,
                Some(value) => from_text(*ty, value).map_err(|m| (Some(name.clone()), m))?,
            };
            cells.push(cell);
        }
    }
    Ok(())
}

/// A value converted to its column's type, borrowing text from the record.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Null,
    Bool(bool),
    /// Integers, and TIMESTAMP (epoch ms), DATE (days) and TIME (ms).
    Int(i64),
    Float(f64),
    Decimal(i128),
    Text(&'a str),
}

/// The message for a value that does not fit a type.
fn mismatch(ty: SqlType, value: &str, reason: &str) -> String {
    let shown: String = value.chars().take(SHOWN_CHARS_MAX).collect();
    let more = if value.chars().nth(SHOWN_CHARS_MAX).is_some() {
        "..."
    } else {
        ""
    };
    format!("value {shown:?}{more} does not fit {}: {reason}", ty.sql())
}

fn from_json<'a>(
    ty: SqlType,
    tape: &'a JsonTape,
    text: &'a str,
    node: Option<JsonNode>,
) -> Result<Cell<'a>, String> {
    let Some(node) = node else {
        return Ok(Cell::Null);
    };
    let value = tape.text(text, node);
    match (node, ty) {
        (JsonNode::Null, _) => Ok(Cell::Null),
        (JsonNode::String { .. } | JsonNode::Number { .. }, _) => from_text(ty, value),
        (_, SqlType::Varchar(n) | SqlType::Char(n)) => fit_text(ty, n, value),
        (JsonNode::Bool(b), SqlType::Boolean) => Ok(Cell::Bool(b)),
        (JsonNode::Bool(_), _) => Err(mismatch(ty, value, "a boolean")),
        (JsonNode::Object { .. }, _) => Err(mismatch(ty, value, "an object")),
        (JsonNode::Array { .. }, _) => Err(mismatch(ty, value, "an array")),
    }
}

/// Converts text (a CSV field, a JSON string or a JSON number's text).
fn from_text(ty: SqlType, value: &str) -> Result<Cell<'_>, String> {
    let t = value.trim();
    let fail = |reason: &str| mismatch(ty, value, reason);
    match ty {
        SqlType::Varchar(n) | SqlType::Char(n) => fit_text(ty, n, value),
        _ if t.is_empty() => Ok(Cell::Null),
        SqlType::Tinyint => int_in(t, i64::from(i8::MIN), i64::from(i8::MAX)).map_err(fail),
        SqlType::Smallint => int_in(t, i64::from(i16::MIN), i64::from(i16::MAX)).map_err(fail),
        SqlType::Integer => int_in(t, i64::from(i32::MIN), i64::from(i32::MAX)).map_err(fail),
        SqlType::Bigint => int_in(t, i64::MIN, i64::MAX).map_err(fail),
        SqlType::Double => parse_float(t).map(Cell::Float).map_err(fail),
        SqlType::Real => parse_real(t).map(Cell::Float).map_err(fail),
        SqlType::Decimal(p, s) => parse_decimal(t, p, s).map(Cell::Decimal).map_err(fail),
        SqlType::Boolean if t.eq_ignore_ascii_case("true") => Ok(Cell::Bool(true)),
        SqlType::Boolean if t.eq_ignore_ascii_case("false") => Ok(Cell::Bool(false)),
        SqlType::Boolean => Err(fail("not true or false")),
        SqlType::Timestamp => parse_timestamp_ms(t)
            .or_else(|| parse_epoch_ms(t))
            .map(Cell::Int)
            .ok_or_else(|| fail("not a timestamp (yyyy-MM-dd HH:mm:ss.SSS, ISO 8601 or epoch ms)")),
        SqlType::Date => parse_date_days(t)
            .map(|d| Cell::Int(i64::from(d)))
            .ok_or_else(|| fail("not a date (yyyy-MM-dd)")),
        SqlType::Time => parse_time_ms(t)
            .map(|ms| Cell::Int(i64::from(ms)))
            .ok_or_else(|| fail("not a time (HH:mm:ss.SSS)")),
    }
}

fn fit_text(ty: SqlType, n: u32, value: &str) -> Result<Cell<'_>, String> {
    let limit = usize::try_from(n).unwrap_or(usize::MAX);
    if value.len() > limit && value.chars().count() > limit {
        return Err(mismatch(ty, value, &format!("longer than {n} characters")));
    }
    Ok(Cell::Text(value))
}

/// Parses an integer in `min..=max`; an integral number written with a
/// fraction or exponent (`5.0`, `1e3`) counts when exact.
fn int_in(t: &str, min: i64, max: i64) -> Result<Cell<'static>, &'static str> {
    let value = match t.parse::<i64>() {
        Ok(v) => v,
        Err(_) => {
            let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("out of range");
            }
            let f = t.parse::<f64>().map_err(|_| "not a number")?;
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if !f.is_finite() || f.fract() != 0.0 {
                return Err("not an integer");
            }
            if f.abs() > EXACT {
                return Err("out of range");
            }
            // Exact: integral and within 2^53.
            f as i64
        }
    };
    if value < min || value > max {
        return Err("out of range");
    }
    Ok(Cell::Int(value))
}

/// Parses a DOUBLE; `NaN` and `inf` are taken, a finite number too large
/// for a double is not.
fn parse_float(t: &str) -> Result<f64, &'static str> {
    let v = t.parse::<f64>().map_err(|_| "not a number")?;
    if v.is_infinite() && t.bytes().any(|b| b.is_ascii_digit()) {
        return Err("out of range");
    }
    Ok(v)
}

/// Parses a REAL straight from the text (no double rounding).
fn parse_real(t: &str) -> Result<f64, &'static str> {
    let v = t.parse::<f32>().map_err(|_| "not a number")?;
    if v.is_infinite() && t.bytes().any(|b| b.is_ascii_digit()) {
        return Err("out of range");
    }
    Ok(f64::from(v))
}

/// Parses decimal text (`-12.345`, `1.5e3`) into an integer scaled by
/// `scale`, rounding half away from zero; fails past `precision` digits.
fn parse_decimal(t: &str, precision: u8, scale: i8) -> Result<i128, &'static str> {
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => {
            let exp = body.get(at + 1..).unwrap_or_default();
            let exp = exp.parse::<i32>().map_err(|_| "not a number")?;
            (body.get(..at).unwrap_or_default(), exp)
        }
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err("not a number");
    }
    // value = digits * 10^shift, where digits are whole then fraction.
    let fraction_len = i32::try_from(fraction.len()).map_err(|_| "too many digits")?;
    let shift = exponent
        .checked_sub(fraction_len)
        .and_then(|e| e.checked_add(i32::from(scale)))
        .ok_or("out of range")?;
    let significant = || {
        whole
            .bytes()
            .chain(fraction.bytes())
            .skip_while(|b| *b == b'0')
    };
    let count = i64::try_from(significant().count()).map_err(|_| "too many digits")?;
    // Digits kept before the point of the scaled value; the rest round.
    let keep = count + i64::from(shift.min(0));
    let kept = usize::try_from(keep).unwrap_or(0);
    let mut value: i128 = 0;
    for d in significant().take(kept) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d - b'0')))
            .ok_or("out of range")?;
    }
    if keep >= 0 && significant().nth(kept).is_some_and(|d| d >= b'5') {
        value = value.checked_add(1).ok_or("out of range")?;
    }
    if shift > 0 && value != 0 {
        let scale_up = 10i128.checked_pow(u32::try_from(shift).unwrap_or(u32::MAX));
        value = scale_up
            .and_then(|m| value.checked_mul(m))
            .ok_or("out of range")?;
    }
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .ok_or("out of range")?;
    if value >= limit {
        return Err("out of range");
    }
    Ok(if negative { -value } else { value })
}

/// Converts an offset known to be below 4 GiB (the text was checked).
fn offset(pos: usize) -> u32 {
    u32::try_from(pos).unwrap_or(u32::MAX)
}

/// An Arrow builder for one column.
enum ColumnBuilder {
    Text(StringBuilder),
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder),
    Timestamp(TimestampMillisecondBuilder),
    Date(Date32Builder),
    Time(Time32MillisecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: SqlType) -> Result<ColumnBuilder, SchemaError> {
        Ok(match ty {
            SqlType::Varchar(_) | SqlType::Char(_) => ColumnBuilder::Text(StringBuilder::new()),
            SqlType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
            SqlType::Tinyint => ColumnBuilder::I8(Int8Builder::new()),
            SqlType::Smallint => ColumnBuilder::I16(Int16Builder::new()),
            SqlType::Integer => ColumnBuilder::I32(Int32Builder::new()),
            SqlType::Bigint => ColumnBuilder::I64(Int64Builder::new()),
            SqlType::Real => ColumnBuilder::F32(Float32Builder::new()),
            SqlType::Double => ColumnBuilder::F64(Float64Builder::new()),
            SqlType::Decimal(p, s) => ColumnBuilder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(p, s)
                    .map_err(|e| SchemaError::Type {
                        text: ty.sql(),
                        reason: e.to_string(),
                    })?,
            ),
            SqlType::Timestamp => ColumnBuilder::Timestamp(TimestampMillisecondBuilder::new()),
            SqlType::Date => ColumnBuilder::Date(Date32Builder::new()),
            SqlType::Time => ColumnBuilder::Time(Time32MillisecondBuilder::new()),
        })
    }

    /// Appends a cell; a cell of another kind than the column's (which the
    /// conversions never make) appends NULL.
    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Text(b), Cell::Text(v)) => b.append_value(v),
            (ColumnBuilder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (ColumnBuilder::I8(b), Cell::Int(v)) => b.append_option(i8::try_from(v).ok()),
            (ColumnBuilder::I16(b), Cell::Int(v)) => b.append_option(i16::try_from(v).ok()),
            (ColumnBuilder::I32(b), Cell::Int(v)) => b.append_option(i32::try_from(v).ok()),
            (ColumnBuilder::I64(b), Cell::Int(v)) => b.append_value(v),
            // Exact: REAL cells were parsed as f32.
            (ColumnBuilder::F32(b), Cell::Float(v)) => b.append_value(v as f32),
            (ColumnBuilder::F64(b), Cell::Float(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b), Cell::Decimal(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Cell::Int(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Cell::Int(v)) => b.append_option(i32::try_from(v).ok()),
            (ColumnBuilder::Time(b), Cell::Int(v)) => b.append_option(i32::try_from(v).ok()),
            (builder, cell) => {
                debug_assert_eq!(cell, Cell::Null, "cell of the wrong kind");
                builder.append_null();
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::I8(b) => b.append_null(),
            ColumnBuilder::I16(b) => b.append_null(),
            ColumnBuilder::I32(b) => b.append_null(),
            ColumnBuilder::I64(b) => b.append_null(),
            ColumnBuilder::F32(b) => b.append_null(),
            ColumnBuilder::F64(b) => b.append_null(),
            ColumnBuilder::Decimal(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::I8(b) => Arc::new(b.finish()),
            ColumnBuilder::I16(b) => Arc::new(b.finish()),
            ColumnBuilder::I32(b) => Arc::new(b.finish()),
            ColumnBuilder::I64(b) => Arc::new(b.finish()),
            ColumnBuilder::F32(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests;
