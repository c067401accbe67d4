//! Encoding of result rows into stream records, the way Kinesis Data
//! Analytics for SQL writes an in-application stream to a destination: one
//! record per row, as a JSON object keyed by the batch's field names (the
//! destination stream's column names) or as one CSV line.
//!
//! Value forms: TIMESTAMP as `yyyy-MM-dd HH:mm:ss.SSS` (UTC; finer units are
//! truncated to milliseconds, a time zone on the type is not printed), DATE
//! as `yyyy-MM-dd`, TIME as `HH:mm:ss.SSS`, DECIMAL as a JSON number with
//! its scale's digits, floats as JSON numbers (NaN and infinities as JSON
//! null; in CSV as `NaN`, `inf`, `-inf`), NULL as JSON null or an empty CSV
//! field; an empty CSV string is written `""` so it stays apart from NULL.
//! Types without a form of their own are written as Arrow displays them
//! (JSON strings). What this writes, `decode` reads back to the same batch.
//!
//! This module must not decode records, batch or deliver them, or know the
//! SQL engine; it never panics on a batch's contents.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, Float32Array, Float64Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike};
use thiserror::Error;

/// How result rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Csv {
        row_delimiter: String,
        column_delimiter: String,
    },
}

/// Why a batch could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("column {column} row {row}: {reason}")]
    Value {
        column: String,
        row: usize,
        reason: String,
    },
    #[error("column {column}: {reason}")]
    Column { column: String, reason: String },
    #[error("output format: {0}")]
    Format(String),
}

/// One record per row: JSON objects with the batch's field names as keys
/// (Kinesis Data Analytics writes the destination stream's column names),
/// or CSV lines. TIMESTAMP values as "yyyy-MM-dd HH:mm:ss.SSS" (Kinesis
/// Data Analytics' form), DATE as yyyy-MM-dd, DECIMAL as a JSON number text
/// with its scale, NULL as JSON null / empty CSV field, floats as JSON
/// numbers (NaN/inf → null). JSON records end without a newline; CSV
/// records end with the row delimiter.
pub fn encode_rows(
    batch: &RecordBatch,
    format: &OutputFormat,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let reader = Reader::new(array.as_ref()).map_err(|reason| EncodeError::Column {
            column: field.name().clone(),
            reason,
        })?;
        columns.push(ColumnWriter {
            name: field.name(),
            array: array.as_ref(),
            reader,
        });
    }
    match format {
        OutputFormat::Json => encode_json(&columns, batch.num_rows()),
        OutputFormat::Csv {
            row_delimiter,
            column_delimiter,
        } => {
            if row_delimiter.is_empty() || column_delimiter.is_empty() {
                return Err(EncodeError::Format("a csv delimiter is empty".to_string()));
            }
            let csv = Csv {
                row: row_delimiter,
                column: column_delimiter,
            };
            encode_csv(&columns, batch.num_rows(), &csv)
        }
    }
}

struct ColumnWriter<'a> {
    name: &'a str,
    array: &'a dyn Array,
    reader: Reader<'a>,
}

impl ColumnWriter<'_> {
    fn value<'s>(
        &'s self,
        row: usize,
        scratch: &'s mut String,
        json: bool,
    ) -> Result<Value<'s>, EncodeError> {
        if self.array.is_null(row) {
            return Ok(Value::Null);
        }
        scratch.clear();
        self.reader
            .value(row, scratch, json)
            .map_err(|reason| EncodeError::Value {
                column: self.name.to_string(),
                row,
                reason,
            })
    }
}

/// A value as it is to be written.
enum Value<'s> {
    Null,
    /// Written bare in JSON (numbers, booleans).
    Bare(&'s str),
    /// Written as a JSON string.
    Text(&'s str),
}

/// Reads one column's values as text.
enum Reader<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    F64(&'a Float64Array),
    F32(&'a Float32Array),
    Timestamp(&'a [i64], TimeUnit),
    Date32(&'a [i32]),
    Date64(&'a [i64]),
    Time32Second(&'a [i32]),
    Time32Milli(&'a [i32]),
    Time64Micro(&'a [i64]),
    Time64Nano(&'a [i64]),
    /// An array of the `Null` type (no validity buffer, every row NULL).
    Null,
    /// Arrow's display of the value, bare in JSON or as a string.
    Display(ArrayFormatter<'a>, bool),
}

impl<'a> Reader<'a> {
    fn new(array: &'a dyn Array) -> Result<Reader<'a>, String> {
        Ok(match array.data_type() {
            DataType::Null => Reader::Null,
            DataType::Utf8 => Reader::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Reader::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Reader::Utf8View(array.as_string_view()),
            DataType::Float64 => Reader::F64(array.as_primitive()),
            DataType::Float32 => Reader::F32(array.as_primitive()),
            DataType::Timestamp(unit, _) => {
                Reader::Timestamp(timestamp_values(array, *unit), *unit)
            }
            DataType::Date32 => Reader::Date32(array.as_primitive::<Date32Type>().values()),
            DataType::Date64 => Reader::Date64(array.as_primitive::<Date64Type>().values()),
            DataType::Time32(TimeUnit::Second) => {
                Reader::Time32Second(array.as_primitive::<Time32SecondType>().values())
            }
            DataType::Time32(TimeUnit::Millisecond) => {
                Reader::Time32Milli(array.as_primitive::<Time32MillisecondType>().values())
            }
            DataType::Time64(TimeUnit::Microsecond) => {
                Reader::Time64Micro(array.as_primitive::<Time64MicrosecondType>().values())
            }
            DataType::Time64(TimeUnit::Nanosecond) => {
                Reader::Time64Nano(array.as_primitive::<Time64NanosecondType>().values())
            }
            other => {
                let bare = other.is_integer()
                    || other.is_decimal()
                    || matches!(other, DataType::Boolean | DataType::Float16);
                let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
                    .map_err(|e| format!("cannot write {other}: {e}"))?;
                Reader::Display(formatter, bare)
            }
        })
    }

    /// The value at `row` (not null), written into `scratch` unless it can
    /// be borrowed from the array.
    fn value<'s>(
        &'s self,
        row: usize,
        scratch: &'s mut String,
        json: bool,
    ) -> Result<Value<'s>, String> {
        let text = |s: &'s str| Ok(Value::Text(s));
        match self {
            Reader::Null => return Ok(Value::Null),
            Reader::Utf8(a) => return text(a.value(row)),
            Reader::LargeUtf8(a) => return text(a.value(row)),
            Reader::Utf8View(a) => return text(a.value(row)),
            Reader::F64(a) => {
                let v = a.value(row);
                if json && !v.is_finite() {
                    return Ok(Value::Null);
                }
                write_float(scratch, v, v.abs());
                return Ok(Value::Bare(scratch));
            }
            Reader::F32(a) => {
                let v = a.value(row);
                if json && !v.is_finite() {
                    return Ok(Value::Null);
                }
                write_float(scratch, v, f64::from(v.abs()));
                return Ok(Value::Bare(scratch));
            }
            Reader::Display(formatter, bare) => {
                write!(scratch, "{}", formatter.value(row))
                    .map_err(|e| format!("cannot format: {e}"))?;
                return Ok(if *bare {
                    Value::Bare(scratch)
                } else {
                    Value::Text(scratch)
                });
            }
            _ => {}
        }
        let at = |values: &[i64]| values.get(row).copied().ok_or("row out of bounds");
        let at32 = |values: &[i32]| values.get(row).copied().ok_or("row out of bounds");
        match self {
            Reader::Timestamp(values, unit) => write_timestamp(scratch, at(values)?, *unit)?,
            Reader::Date32(values) => write_date(scratch, i64::from(at32(values)?))?,
            Reader::Date64(values) => write_date(scratch, at(values)?.div_euclid(86_400_000))?,
            Reader::Time32Second(values) => {
                write_time(scratch, i64::from(at32(values)?) * 1_000_000_000)?
            }
            Reader::Time32Milli(values) => {
                write_time(scratch, i64::from(at32(values)?) * 1_000_000)?
            }
            Reader::Time64Micro(values) => write_time(scratch, at(values)?.saturating_mul(1000))?,
            Reader::Time64Nano(values) => write_time(scratch, at(values)?)?,
            _ => return Err("unsupported column".to_string()),
        }
        Ok(Value::Text(scratch))
    }
}

fn timestamp_values(array: &dyn Array, unit: TimeUnit) -> &[i64] {
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
    }
}

/// Writes a float in its shortest exact form, with an exponent only when
/// the plain form would be long (`1e300`, `1.5e-9`).
fn write_float<F: std::fmt::Display + std::fmt::LowerExp>(buf: &mut String, v: F, magnitude: f64) {
    let plain = magnitude == 0.0 || !magnitude.is_finite() || (1e-7..1e16).contains(&magnitude);
    // Writing into a String cannot fail.
    let _ = if plain {
        write!(buf, "{v}")
    } else {
        write!(buf, "{v:e}")
    };
}

fn write_timestamp(buf: &mut String, value: i64, unit: TimeUnit) -> Result<(), String> {
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let seconds = value.div_euclid(per_second);
    let nanos = value.rem_euclid(per_second) * (1_000_000_000 / per_second);
    let at = u32::try_from(nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(seconds, n))
        .ok_or_else(|| format!("timestamp {value} is out of range"))?;
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 1_000_000
    );
    Ok(())
}

fn write_date(buf: &mut String, days: i64) -> Result<(), String> {
    let epoch = DateTime::UNIX_EPOCH.date_naive();
    let date: NaiveDate = TimeDelta::try_days(days)
        .and_then(|d| epoch.checked_add_signed(d))
        .ok_or_else(|| format!("date {days} is out of range"))?;
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    );
    Ok(())
}

/// Writes nanoseconds since midnight as `HH:mm:ss.SSS`.
fn write_time(buf: &mut String, nanos: i64) -> Result<(), String> {
    if !(0..86_400_000_000_000).contains(&nanos) {
        return Err(format!("time of {nanos} ns is outside a day"));
    }
    let ms = nanos / 1_000_000;
    let _ = write!(
        buf,
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    Ok(())
}

/// Escapes `s` as a JSON string, quotes included.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut from = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if u32::from(c) < 0x20 => "",
            _ => continue,
        };
        out.push_str(s.get(from..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        from = i + c.len_utf8();
    }
    out.push_str(s.get(from..).unwrap_or_default());
    out.push('"');
}

fn encode_json(columns: &[ColumnWriter<'_>], rows: usize) -> Result<Vec<Vec<u8>>, EncodeError> {
    let keys: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut key = String::new();
            push_json_string(&mut key, c.name);
            key.push(':');
            key
        })
        .collect();
    let mut records = Vec::with_capacity(rows);
    let mut scratch = String::new();
    let mut size_hint = 2;
    for row in 0..rows {
        let mut out = String::with_capacity(size_hint);
        out.push('{');
        for (i, (column, key)) in columns.iter().zip(&keys).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            match column.value(row, &mut scratch, true)? {
                Value::Null => out.push_str("null"),
                Value::Bare(s) => out.push_str(s),
                Value::Text(s) => push_json_string(&mut out, s),
            }
        }
        out.push('}');
        size_hint = size_hint.max(out.len());
        records.push(out.into_bytes());
    }
    Ok(records)
}

struct Csv<'d> {
    row: &'d str,
    column: &'d str,
}

impl Csv<'_> {
    fn needs_quotes(&self, s: &str) -> bool {
        s.contains(['"', '\r', '\n']) || s.contains(self.column) || s.contains(self.row)
    }

    fn push_field(&self, out: &mut String, s: &str, text: bool) {
        if (text && s.is_empty()) || self.needs_quotes(s) {
            out.push('"');
            out.push_str(&s.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(s);
        }
    }
}

fn encode_csv(
    columns: &[ColumnWriter<'_>],
    rows: usize,
    csv: &Csv<'_>,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut records = Vec::with_capacity(rows);
    let mut scratch = String::new();
    let mut size_hint = 1;
    for row in 0..rows {
        let mut out = String::with_capacity(size_hint);
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push_str(csv.column);
            }
            match column.value(row, &mut scratch, false)? {
                Value::Null => {}
                Value::Bare(s) => csv.push_field(&mut out, s, false),
                Value::Text(s) => csv.push_field(&mut out, s, true),
            }
        }
        out.push_str(csv.row);
        size_hint = size_hint.max(out.len());
        records.push(out.into_bytes());
    }
    Ok(records)
}

#[cfg(test)]
mod tests;
