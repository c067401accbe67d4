//! Input schemas for streaming SQL applications, in the shape of the
//! `SourceSchema` of Kinesis Data Analytics for SQL: a record format (JSON
//! with a `RecordRowPath`, or CSV with row and column delimiters) and a list
//! of columns, each with a name, a SQL type and, for JSON, a JSONPath mapping.
//!
//! This module owns the schema model, its validation, the mapping of SQL
//! types to Arrow types, the parsers of the temporal text forms that the
//! decoder and the inference share, and schema inference from sample records
//! (`DiscoverInputSchema`). It must not decode record batches (that is
//! `decode`), write records (that is `encode`), or know the SQL engine.
//!
//! Inference rules (documented here because callers see their results):
//! - JSON objects are flattened: a nested object `{"a": {"b": 1}}` becomes
//!   the column `A_B` with mapping `$.a.b`. A column name is the path's keys
//!   joined by `_`, every character that is not an ASCII letter, digit or `_`
//!   replaced by `_`, ASCII letters upper-cased (Kinesis Data Analytics shows
//!   `TICKER_SYMBOL` for the key `ticker_symbol`); a name that would start
//!   with a digit or be empty gets the prefix `COL_`; names are cut to 248
//!   characters; a name equal (ignoring case) to an earlier one gets the
//!   suffix `_2`, `_3`, ...
//! - Arrays, and keys that hold an object in one sample and something else in
//!   another, become VARCHAR columns holding the value's JSON text.
//! - CSV columns are named `COL_1`..`COL_n`, n being the fewest columns of
//!   any sample row (extra columns of longer rows are ignored when decoding).
//! - Types widen across samples: only booleans give BOOLEAN; only integers
//!   give INTEGER, or BIGINT past 32 bits, or DECIMAL(38,0) past 64 bits
//!   (DOUBLE past 38 digits); integers mixed with fractions give DOUBLE;
//!   strings that all have a date and time form give TIMESTAMP, all
//!   `yyyy-MM-dd` give DATE; anything else (text, or kinds mixed) gives
//!   VARCHAR(n), n being the longest text seen (in characters) rounded up to
//!   a power of two, at least 4, at most 65535 (Kinesis Data Analytics gives
//!   `VARCHAR(16)` for `TECHNOLOGY`). A column seen only as null is
//!   VARCHAR(4). Digit strings stay text: they are not taken as epoch
//!   timestamps or numbers.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveTime};
use thiserror::Error;

mod infer;

pub use infer::infer;

/// Most columns a schema may have (the API's limit on `RecordColumns`).
pub const COLUMNS_MAX: usize = 1000;
/// Longest column name, in characters.
pub const COLUMN_NAME_CHARS_MAX: usize = 256;
/// Longest VARCHAR or CHAR length.
pub const CHAR_LENGTH_MAX: u32 = 65535;
/// Largest DECIMAL precision (what an Arrow `Decimal128` holds).
pub const DECIMAL_PRECISION_MAX: u8 = 38;
/// Precision and scale of a DECIMAL written without them.
pub const DECIMAL_DEFAULT: (u8, i8) = (19, 0);

/// Why a schema, a SQL type or a set of samples was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    #[error("sql type {text:?}: {reason}")]
    Type { text: String, reason: String },
    #[error("column {index} ({name}): {reason}")]
    Column {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("record format: {0}")]
    Format(String),
    #[error("schema has no columns")]
    NoColumns,
    #[error("schema has {0} columns, more than the limit of {COLUMNS_MAX}")]
    TooManyColumns(usize),
    #[error("no samples to infer a schema from")]
    NoSamples,
    #[error("sample {index}: {reason}")]
    Sample { index: usize, reason: String },
}

/// How records are laid out (`RecordFormat` with its `MappingParameters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// JSON; `row_path` (`RecordRowPath`) selects the row within a record,
    /// `$` for the whole record. A row path that selects an array makes one
    /// row per element.
    Json { row_path: String },
    /// Delimited text (`RecordRowDelimiter`, `RecordColumnDelimiter`).
    Csv {
        row_delimiter: String,
        column_delimiter: String,
    },
}

impl RecordFormat {
    /// JSON with the row path `$`.
    pub fn json() -> RecordFormat {
        RecordFormat::Json {
            row_path: "$".to_string(),
        }
    }

    /// CSV with rows ending in `\n` and columns split by `,`.
    pub fn csv() -> RecordFormat {
        RecordFormat::Csv {
            row_delimiter: "\n".to_string(),
            column_delimiter: ",".to_string(),
        }
    }
}

/// One `RecordColumn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    /// JSONPath for JSON records; `None` maps to `$.<name>` (exact key
    /// first, then a key equal ignoring case). Ignored for CSV, whose
    /// columns map by position.
    pub mapping: Option<String>,
}

/// The SQL types a column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Varchar(u32),
    Char(u32),
    Integer,
    Bigint,
    Smallint,
    Tinyint,
    Double,
    Real,
    Decimal(u8, i8),
    Boolean,
    Timestamp,
    Date,
    Time,
}

/// A `SourceSchema`: the record format and the columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSchema {
    pub format: RecordFormat,
    pub columns: Vec<Column>,
}

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// `.key`, `["key"]` or `['key']`.
    Key(String),
    /// `[n]`.
    Index(usize),
    /// `[*]` or `[0:]`: every element of an array (row paths only).
    Each,
}

/// Where a column's value is found, relative to the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ColumnPath {
    pub(super) segments: Vec<PathSegment>,
    /// Whether a key not found exactly may match ignoring case (columns
    /// without a mapping).
    pub(super) ignore_case: bool,
}

fn type_error(text: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Type {
        text: text.to_string(),
        reason: reason.into(),
    }
}

/// Splits `NAME ( args )` into the upper-cased, space-normalised name and
/// the arguments.
fn split_type(text: &str) -> Result<(String, Option<Vec<&str>>), SchemaError> {
    let (head, args) = match text.find('(') {
        Some(open) => {
            let rest = text.get(open + 1..).unwrap_or_default().trim_end();
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| type_error(text, "missing closing parenthesis"))?;
            let args: Vec<&str> = inner.split(',').map(str::trim).collect();
            (text.get(..open).unwrap_or_default(), Some(args))
        }
        None => (text, None),
    };
    let name = head
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    Ok((name, args))
}

fn parse_length(
    text: &str,
    args: Option<&[&str]>,
    default: Option<u32>,
) -> Result<u32, SchemaError> {
    let length = match args {
        None => default.ok_or_else(|| type_error(text, "a length is required"))?,
        Some([one]) => one
            .parse::<u32>()
            .map_err(|_| type_error(text, format!("length {one:?} is not a number")))?,
        Some(_) => return Err(type_error(text, "expected one length")),
    };
    check_length(length).map_err(|reason| type_error(text, reason))?;
    Ok(length)
}

fn check_length(length: u32) -> Result<(), String> {
    if length == 0 || length > CHAR_LENGTH_MAX {
        return Err(format!("length {length} is outside 1..={CHAR_LENGTH_MAX}"));
    }
    Ok(())
}

fn check_decimal(precision: u8, scale: i8) -> Result<(), String> {
    if precision == 0 || precision > DECIMAL_PRECISION_MAX {
        return Err(format!(
            "decimal precision {precision} is outside 1..={DECIMAL_PRECISION_MAX}"
        ));
    }
    if scale < 0 || i16::from(scale) > i16::from(precision) {
        return Err(format!("decimal scale {scale} is outside 0..={precision}"));
    }
    Ok(())
}

fn parse_decimal_type(text: &str, args: Option<&[&str]>) -> Result<SqlType, SchemaError> {
    let number = |s: &str| -> Result<i64, SchemaError> {
        s.parse::<i64>()
            .map_err(|_| type_error(text, format!("{s:?} is not a number")))
    };
    let (precision, scale) = match args {
        None => (i64::from(DECIMAL_DEFAULT.0), i64::from(DECIMAL_DEFAULT.1)),
        Some([p]) => (number(p)?, 0),
        Some([p, s]) => (number(p)?, number(s)?),
        Some(_) => return Err(type_error(text, "expected precision and scale")),
    };
    let precision = u8::try_from(precision).map_err(|_| {
        type_error(
            text,
            format!("decimal precision {precision} is out of range"),
        )
    })?;
    let scale = i8::try_from(scale)
        .map_err(|_| type_error(text, format!("decimal scale {scale} is out of range")))?;
    check_decimal(precision, scale).map_err(|reason| type_error(text, reason))?;
    Ok(SqlType::Decimal(precision, scale))
}

impl SqlType {
    /// Parses a SQL type as written in a `SqlType` field, ignoring case and
    /// extra spaces: `VARCHAR(n)`, `CHAR(n)`/`CHARACTER(n)` (`CHAR` alone is
    /// `CHAR(1)`), `INTEGER`/`INT`, `BIGINT`, `SMALLINT`, `TINYINT`,
    /// `DOUBLE`/`DOUBLE PRECISION`/`FLOAT`, `REAL`, `DECIMAL`/`DEC`/`NUMERIC`
    /// with `(p)` or `(p,s)` (alone: `DECIMAL(19,0)`), `BOOLEAN`,
    /// `TIMESTAMP`, `DATE`, `TIME`.
    pub fn parse(s: &str) -> Result<SqlType, SchemaError> {
        let text = s.trim();
        let (name, args) = split_type(text)?;
        let args = args.as_deref();
        let plain = |t: SqlType| match args {
            None => Ok(t),
            Some(_) => Err(type_error(text, "takes no arguments")),
        };
        match name.as_str() {
            "VARCHAR" | "CHARACTER VARYING" | "CHAR VARYING" => {
                Ok(SqlType::Varchar(parse_length(text, args, None)?))
            }
            "CHAR" | "CHARACTER" => Ok(SqlType::Char(parse_length(text, args, Some(1))?)),
            "INTEGER" | "INT" => plain(SqlType::Integer),
            "BIGINT" => plain(SqlType::Bigint),
            "SMALLINT" => plain(SqlType::Smallint),
            "TINYINT" => plain(SqlType::Tinyint),
            "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" => plain(SqlType::Double),
            "REAL" => plain(SqlType::Real),
            "DECIMAL" | "DEC" | "NUMERIC" => parse_decimal_type(text, args),
            "BOOLEAN" => plain(SqlType::Boolean),
            "TIMESTAMP" => plain(SqlType::Timestamp),
            "DATE" => plain(SqlType::Date),
            "TIME" => plain(SqlType::Time),
            _ => Err(type_error(text, "unknown type")),
        }
    }

    /// The Arrow type that holds this SQL type's values.
    pub fn arrow(&self) -> DataType {
        match *self {
            SqlType::Varchar(_) | SqlType::Char(_) => DataType::Utf8,
            SqlType::Integer => DataType::Int32,
            SqlType::Bigint => DataType::Int64,
            SqlType::Smallint => DataType::Int16,
            SqlType::Tinyint => DataType::Int8,
            SqlType::Double => DataType::Float64,
            SqlType::Real => DataType::Float32,
            SqlType::Decimal(p, s) => DataType::Decimal128(p, s),
            SqlType::Boolean => DataType::Boolean,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time32(TimeUnit::Millisecond),
        }
    }

    /// The canonical text of this type, e.g. `VARCHAR(8)` or `DECIMAL(10,2)`.
    pub fn sql(&self) -> String {
        match *self {
            SqlType::Varchar(n) => format!("VARCHAR({n})"),
            SqlType::Char(n) => format!("CHAR({n})"),
            SqlType::Integer => "INTEGER".to_string(),
            SqlType::Bigint => "BIGINT".to_string(),
            SqlType::Smallint => "SMALLINT".to_string(),
            SqlType::Tinyint => "TINYINT".to_string(),
            SqlType::Double => "DOUBLE".to_string(),
            SqlType::Real => "REAL".to_string(),
            SqlType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            SqlType::Boolean => "BOOLEAN".to_string(),
            SqlType::Timestamp => "TIMESTAMP".to_string(),
            SqlType::Date => "DATE".to_string(),
            SqlType::Time => "TIME".to_string(),
        }
    }

    /// Why this type is not usable, if it is not (lengths and precisions of
    /// a value built in code rather than parsed).
    fn check(&self) -> Result<(), String> {
        match *self {
            SqlType::Varchar(n) | SqlType::Char(n) => check_length(n),
            SqlType::Decimal(p, s) => check_decimal(p, s),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql())
    }
}

/// Parses a quoted bracket key (`"a b"` or `'a b'`, with `\` escaping the
/// quote or a backslash) starting at `chars`' front; returns the key and
/// leaves `chars` after the closing `]`.
fn parse_bracket_key(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<String, String> {
    let quote = chars.next().ok_or("unterminated bracket")?;
    let mut key = String::new();
    loop {
        match chars.next() {
            None => return Err("unterminated quoted key".to_string()),
            Some('\\') => key.push(chars.next().ok_or("unterminated quoted key")?),
            Some(c) if c == quote => break,
            Some(c) => key.push(c),
        }
    }
    match chars.next() {
        Some(']') => Ok(key),
        _ => Err("expected ] after quoted key".to_string()),
    }
}

fn parse_bracket(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<PathSegment, String> {
    if matches!(chars.peek(), Some('"' | '\'')) {
        return parse_bracket_key(chars).map(PathSegment::Key);
    }
    let mut inner = String::new();
    loop {
        match chars.next() {
            None => return Err("unterminated bracket".to_string()),
            Some(']') => break,
            Some(c) => inner.push(c),
        }
    }
    match inner.trim() {
        "*" | "0:" => Ok(PathSegment::Each),
        digits => digits
            .parse::<usize>()
            .map(PathSegment::Index)
            .map_err(|_| format!("unsupported bracket [{inner}]")),
    }
}

/// Parses a JSONPath of the supported form: `$`, then any of `.key`,
/// `["key"]`, `['key']`, `[n]`, and `[*]`/`[0:]` (every element).
pub fn parse_json_path(path: &str) -> Result<Vec<PathSegment>, String> {
    let mut chars = path.trim().chars().peekable();
    if chars.next() != Some('$') {
        return Err(format!("path {path:?} does not start with $"));
    }
    let mut segments = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&k) = chars.peek() {
                    if k == '.' || k == '[' {
                        break;
                    }
                    if k == ']' || k.is_whitespace() || k == '*' {
                        return Err(format!("path {path:?} has {k:?} in a key"));
                    }
                    key.push(k);
                    chars.next();
                }
                if key.is_empty() {
                    return Err(format!("path {path:?} has an empty key"));
                }
                segments.push(PathSegment::Key(key));
            }
            '[' => {
                segments.push(parse_bracket(&mut chars).map_err(|e| format!("path {path:?}: {e}"))?)
            }
            other => return Err(format!("path {path:?} has unexpected {other:?}")),
        }
    }
    Ok(segments)
}

/// Writes segments back as JSONPath text (`$.a["b c"][0]`).
pub fn json_path_text(segments: &[PathSegment]) -> String {
    let mut text = String::from("$");
    for segment in segments {
        match segment {
            PathSegment::Key(key) if is_plain_key(key) => {
                text.push('.');
                text.push_str(key);
            }
            PathSegment::Key(key) => {
                text.push_str("[\"");
                for c in key.chars() {
                    if c == '"' || c == '\\' {
                        text.push('\\');
                    }
                    text.push(c);
                }
                text.push_str("\"]");
            }
            PathSegment::Index(i) => text.push_str(&format!("[{i}]")),
            PathSegment::Each => text.push_str("[0:]"),
        }
    }
    text
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl InputSchema {
    /// The Arrow schema of decoded batches: one nullable field per column,
    /// named as the column.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name.as_str(), c.sql_type.arrow(), true))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Checks the format and every column; the error names the first
    /// column at fault by index and name.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.columns.is_empty() {
            return Err(SchemaError::NoColumns);
        }
        if self.columns.len() > COLUMNS_MAX {
            return Err(SchemaError::TooManyColumns(self.columns.len()));
        }
        self.validate_format()?;
        let mut seen: Vec<String> = Vec::with_capacity(self.columns.len());
        for (index, column) in self.columns.iter().enumerate() {
            let fail = |reason: String| SchemaError::Column {
                index,
                name: column.name.clone(),
                reason,
            };
            check_name(&column.name).map_err(fail)?;
            let folded = column.name.to_lowercase();
            if let Some(first) = seen.iter().position(|s| *s == folded) {
                return Err(fail(format!("name duplicates column {first}")));
            }
            seen.push(folded);
            column.sql_type.check().map_err(fail)?;
        }
        match self.format {
            // CSV columns map by position; their mappings are not read.
            RecordFormat::Csv { .. } => Ok(()),
            RecordFormat::Json { .. } => self.column_paths().map(|_| ()),
        }
    }

    fn validate_format(&self) -> Result<(), SchemaError> {
        match &self.format {
            RecordFormat::Json { .. } => self.row_path().map(|_| ()),
            RecordFormat::Csv {
                row_delimiter,
                column_delimiter,
            } => {
                for (what, d) in [("row", row_delimiter), ("column", column_delimiter)] {
                    if d.is_empty() {
                        return Err(SchemaError::Format(format!("{what} delimiter is empty")));
                    }
                    if d.contains('"') {
                        return Err(SchemaError::Format(format!(
                            "{what} delimiter contains a quote"
                        )));
                    }
                }
                if row_delimiter == column_delimiter {
                    return Err(SchemaError::Format(
                        "row and column delimiters are the same".to_string(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The parsed row path (`$` for CSV). At most one `[*]`/`[0:]`, last.
    pub(super) fn row_path(&self) -> Result<Vec<PathSegment>, SchemaError> {
        let RecordFormat::Json { row_path } = &self.format else {
            return Ok(Vec::new());
        };
        let segments = parse_json_path(row_path).map_err(SchemaError::Format)?;
        let each = segments.iter().filter(|s| **s == PathSegment::Each).count();
        if each > 1 || (each == 1 && segments.last() != Some(&PathSegment::Each)) {
            return Err(SchemaError::Format(format!(
                "row path {row_path:?}: only one [*] or [0:], at the end, is supported"
            )));
        }
        Ok(segments)
    }

    /// Each column's path relative to the row. A mapping that starts with
    /// the row path is taken after it (`$.a[0:].b` under the row path
    /// `$.a[0:]` is `b`); any other mapping is relative to the row.
    pub(super) fn column_paths(&self) -> Result<Vec<ColumnPath>, SchemaError> {
        let row = self.row_path()?;
        let mut paths = Vec::with_capacity(self.columns.len());
        for (index, column) in self.columns.iter().enumerate() {
            let mapping = column
                .mapping
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty());
            let path = match mapping {
                None => ColumnPath {
                    segments: vec![PathSegment::Key(column.name.clone())],
                    ignore_case: true,
                },
                Some(text) => {
                    let fail = |reason: String| SchemaError::Column {
                        index,
                        name: column.name.clone(),
                        reason,
                    };
                    let mut segments = parse_json_path(text).map_err(fail)?;
                    if !row.is_empty() && segments.starts_with(&row) {
                        segments.drain(..row.len());
                    }
                    if segments.contains(&PathSegment::Each) {
                        return Err(fail(format!(
                            "mapping {text:?} has [*] or [0:] outside the row path"
                        )));
                    }
                    ColumnPath {
                        segments,
                        ignore_case: false,
                    }
                }
            };
            paths.push(path);
        }
        Ok(paths)
    }
}

/// Checks a column name: not empty, at most 256 characters, not starting
/// with a digit, and (as the API's `RecordColumn` pattern `[^-\s<>&]*`
/// says) without `-`, `<`, `>`, `&`, whitespace or control characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > COLUMN_NAME_CHARS_MAX {
        return Err(format!(
            "name is longer than {COLUMN_NAME_CHARS_MAX} characters"
        ));
    }
    let bad = |c: char| matches!(c, '-' | '<' | '>' | '&') || c.is_whitespace() || c.is_control();
    match name.chars().next() {
        None => Err("name is empty".to_string()),
        Some(c) if c.is_ascii_digit() => Err("name starts with a digit".to_string()),
        Some(_) => match name.chars().find(|c| bad(*c)) {
            Some(c) => Err(format!("name has {c:?}, which a column name may not have")),
            None => Ok(()),
        },
    }
}

fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    digits(b, at, 2)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at.checked_add(n)?)?;
    part.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}

fn date_at(b: &[u8]) -> Option<NaiveDate> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = i32::try_from(digits(b, 0, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, two_digits(b, 5)?, two_digits(b, 8)?)
}

/// Parses `HH:mm`, `HH:mm:ss` or `HH:mm:ss.f` (1 to 9 fraction digits,
/// truncated to milliseconds) at the start of `b`; returns the time and the
/// bytes used.
fn time_at(b: &[u8]) -> Option<(NaiveTime, usize)> {
    if b.get(2) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (two_digits(b, 0)?, two_digits(b, 3)?);
    let (mut second, mut milli, mut used) = (0, 0, 5);
    if b.get(5) == Some(&b':') {
        second = two_digits(b, 6)?;
        used = 8;
        if b.get(8) == Some(&b'.') {
            let count = b.iter().skip(9).take_while(|d| d.is_ascii_digit()).count();
            if count == 0 || count > 9 {
                return None;
            }
            let kept = count.min(3);
            milli = digits(b, 9, kept)? * 10u32.pow(3 - u32::try_from(kept).ok()?);
            used = 9 + count;
        }
    }
    Some((
        NaiveTime::from_hms_milli_opt(hour, minute, second, milli)?,
        used,
    ))
}

/// Parses a zone suffix: `Z`, `+HH`, `+HH:mm` or `+HHmm` (or `-`); returns
/// its offset east of UTC in seconds.
fn zone_seconds(b: &[u8]) -> Option<i64> {
    match b {
        [] => Some(0),
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let hours = i64::from(two_digits(rest, 0)?);
            let minutes = match rest.len() {
                2 => 0,
                4 => i64::from(two_digits(rest, 2)?),
                5 if rest.get(2) == Some(&b':') => i64::from(two_digits(rest, 3)?),
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

/// Parses a timestamp with a date and a time into epoch milliseconds (UTC):
/// `yyyy-MM-dd HH:mm:ss[.f]` or `yyyy-MM-ddTHH:mm:ss[.f]`, seconds
/// optional, 1 to 9 fraction digits (truncated to milliseconds), then
/// optionally `Z` or an offset (`+HH:mm`, `+HHmm`, `+HH`), which is applied.
pub(super) fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let date = date_at(b)?;
    if !matches!(b.get(10), Some(b' ' | b'T' | b't')) {
        return None;
    }
    let rest = b.get(11..)?;
    let (time, used) = time_at(rest)?;
    let offset = zone_seconds(rest.get(used..)?)?;
    let local = date.and_time(time).and_utc().timestamp_millis();
    local.checked_sub(offset.checked_mul(1000)?)
}

/// Parses epoch milliseconds written as digits, with an optional `-`.
pub(super) fn parse_epoch_ms(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    t.parse::<i64>().ok()
}

/// Parses `yyyy-MM-dd` into days since 1970-01-01.
pub(super) fn parse_date_days(s: &str) -> Option<i32> {
    let b = s.trim().as_bytes();
    if b.len() != 10 {
        return None;
    }
    let epoch = chrono::DateTime::UNIX_EPOCH.date_naive();
    let days = date_at(b)?.signed_duration_since(epoch).num_days();
    i32::try_from(days).ok()
}

/// Parses `HH:mm[:ss[.f]]` into milliseconds since midnight.
pub(super) fn parse_time_ms(s: &str) -> Option<i32> {
    let b = s.trim().as_bytes();
    let (time, used) = time_at(b)?;
    if used != b.len() {
        return None;
    }
    let ms = time
        .signed_duration_since(NaiveTime::MIN)
        .num_milliseconds();
    i32::try_from(ms).ok()
}

#[cfg(test)]
mod tests;
