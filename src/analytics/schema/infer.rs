//! Schema inference from sample records (`DiscoverInputSchema`): detects
//! JSON or CSV, flattens JSON objects into columns and widens each column's
//! type across the samples, by the rules in the `schema` module's docs.
//!
//! It must not decode batches or guess beyond the samples: a column seen
//! only as null is VARCHAR(4), and digit strings stay text.

use super::super::decode::{CsvRows, JsonNode, JsonTape, Rows, find_rows, split_csv};
use super::{
    CHAR_LENGTH_MAX, COLUMN_NAME_CHARS_MAX, Column, InputSchema, PathSegment, RecordFormat,
    SchemaError, SqlType, json_path_text, parse_date_days, parse_json_path, parse_timestamp_ms,
};

/// Infers a schema from sample records, in the format of `format_hint`
/// when given; otherwise JSON when the first sample starts with `{` or `[`,
/// else CSV with `\n` and `,`. Fails on no samples, and names the first
/// sample that is not valid UTF-8, is empty, or does not parse.
pub fn infer(
    samples: &[&[u8]],
    format_hint: Option<&RecordFormat>,
) -> Result<InputSchema, SchemaError> {
    if samples.is_empty() {
        return Err(SchemaError::NoSamples);
    }
    let mut texts = Vec::with_capacity(samples.len());
    for (index, sample) in samples.iter().enumerate() {
        let text = std::str::from_utf8(sample).map_err(|e| SchemaError::Sample {
            index,
            reason: format!("not valid utf-8: {e}"),
        })?;
        if text.trim().is_empty() {
            return Err(SchemaError::Sample {
                index,
                reason: "sample is empty".to_string(),
            });
        }
        texts.push(text);
    }
    let format = match format_hint {
        Some(format) => format.clone(),
        None if texts
            .first()
            .is_some_and(|t| t.trim_start().starts_with(['{', '['])) =>
        {
            RecordFormat::json()
        }
        None => RecordFormat::csv(),
    };
    let columns = match &format {
        RecordFormat::Json { row_path } => infer_json(&texts, row_path)?,
        RecordFormat::Csv {
            row_delimiter,
            column_delimiter,
        } => infer_csv(&texts, row_delimiter, column_delimiter)?,
    };
    let schema = InputSchema { format, columns };
    schema.validate()?;
    Ok(schema)
}

/// What was seen of one column's values.
#[derive(Debug, Default)]
struct Stats {
    bools: bool,
    ints: bool,
    floats: bool,
    texts: bool,
    containers: bool,
    /// 0: fits INTEGER, 1: BIGINT, 2: up to 38 digits.
    int_width: u8,
    not_all_timestamps: bool,
    not_all_dates: bool,
    /// Longest value text, in characters.
    chars_max: usize,
}

impl Stats {
    fn text(&mut self, s: &str) {
        self.texts = true;
        self.not_all_timestamps |= parse_timestamp_ms(s).is_none();
        self.not_all_dates |= parse_date_days(s).is_none();
        self.length(s);
    }

    fn number(&mut self, s: &str) {
        if s.contains(['.', 'e', 'E']) {
            self.floats = true;
        } else if let Ok(v) = s.parse::<i64>() {
            self.ints = true;
            let width = if i32::try_from(v).is_ok() { 0 } else { 1 };
            self.int_width = self.int_width.max(width);
        } else if s.trim_start_matches(['-', '+']).len() <= 38 {
            self.ints = true;
            self.int_width = 2;
        } else {
            self.floats = true;
        }
        self.length(s);
    }

    fn boolean(&mut self, s: &str) {
        self.bools = true;
        self.length(s);
    }

    fn container(&mut self, s: &str) {
        self.containers = true;
        self.length(s);
    }

    fn length(&mut self, s: &str) {
        self.chars_max = self.chars_max.max(s.chars().count());
    }

    /// A CSV field: booleans and numbers by their text, else text.
    fn field(&mut self, s: &str) {
        let t = s.trim();
        if t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false") {
            self.boolean(t);
        } else if looks_numeric(t) {
            self.number(t);
        } else {
            self.text(s);
        }
    }

    fn resolve(&self) -> SqlType {
        let numbers = self.ints || self.floats;
        let mixed =
            self.containers || (self.texts && (self.bools || numbers)) || (self.bools && numbers);
        if mixed {
            return SqlType::Varchar(varchar_length(self.chars_max));
        }
        if self.texts {
            return match (self.not_all_timestamps, self.not_all_dates) {
                (false, _) => SqlType::Timestamp,
                (true, false) => SqlType::Date,
                (true, true) => SqlType::Varchar(varchar_length(self.chars_max)),
            };
        }
        match (self.bools, self.floats, self.ints, self.int_width) {
            (true, _, _, _) => SqlType::Boolean,
            (_, true, _, _) => SqlType::Double,
            (_, _, true, 0) => SqlType::Integer,
            (_, _, true, 1) => SqlType::Bigint,
            (_, _, true, _) => SqlType::Decimal(38, 0),
            _ => SqlType::Varchar(varchar_length(0)),
        }
    }
}

/// Whether text is a plain number (digits, sign, point, exponent).
fn looks_numeric(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && t.parse::<f64>().is_ok()
}

/// The longest length rounded up to a power of two, at least 4, at most
/// the VARCHAR limit.
fn varchar_length(chars: usize) -> u32 {
    let rounded = chars
        .max(4)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX);
    u32::try_from(rounded)
        .unwrap_or(u32::MAX)
        .min(CHAR_LENGTH_MAX)
}

/// One key of the merged JSON shape.
#[derive(Debug, Default)]
struct Shape {
    children: Vec<(String, Shape)>,
    objects: bool,
    others: bool,
    stats: Stats,
}

impl Shape {
    /// Whether the key is flattened: only objects (or nulls) were seen.
    fn flat(&self) -> bool {
        self.objects && !self.others
    }

    fn child(&mut self, key: &str) -> Option<&mut Shape> {
        let at = match self.children.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                self.children.push((key.to_string(), Shape::default()));
                self.children.len() - 1
            }
        };
        self.children.get_mut(at).map(|(_, shape)| shape)
    }

    /// First pass: which keys hold objects, which hold anything else.
    fn observe(&mut self, tape: &JsonTape, text: &str, at: usize) {
        for key in tape.children(at) {
            let (Some(name), Some(value)) = (tape.node(key), tape.node(key + 1)) else {
                continue;
            };
            let Some(child) = self.child(tape.text(text, name)) else {
                continue;
            };
            match value {
                JsonNode::Null => {}
                JsonNode::Object { .. } => {
                    child.objects = true;
                    child.observe(tape, text, key + 1);
                }
                _ => child.others = true,
            }
        }
    }

    /// Second pass: the values of the keys that are columns.
    fn collect(&mut self, tape: &JsonTape, text: &str, at: usize) {
        for key in tape.children(at) {
            let (Some(name), Some(value)) = (tape.node(key), tape.node(key + 1)) else {
                continue;
            };
            let Some(child) = self.child(tape.text(text, name)) else {
                continue;
            };
            let raw = tape.text(text, value);
            match value {
                JsonNode::Null => {}
                JsonNode::Object { .. } if child.flat() => child.collect(tape, text, key + 1),
                JsonNode::Object { .. } | JsonNode::Array { .. } => child.stats.container(raw),
                JsonNode::String { .. } => child.stats.text(raw),
                JsonNode::Number { .. } => child.stats.number(raw),
                JsonNode::Bool(_) => child.stats.boolean(raw),
            }
        }
    }

    /// The columns under this shape, in first-seen key order.
    fn columns(&self, path: &mut Vec<PathSegment>, names: &mut Vec<String>, out: &mut Vec<Column>) {
        for (key, shape) in &self.children {
            path.push(PathSegment::Key(key.clone()));
            names.push(key.clone());
            if shape.flat() {
                shape.columns(path, names, out);
            } else {
                out.push(Column {
                    name: column_name(names, out),
                    sql_type: shape.stats.resolve(),
                    mapping: Some(json_path_text(path)),
                });
            }
            path.pop();
            names.pop();
        }
    }
}

/// A column name from a key path: keys joined by `_`, other characters than
/// ASCII letters, digits and `_` made `_`, letters upper-cased, `COL_` before
/// a leading digit, cut to 248 characters, `_2`, `_3`... after a name
/// already taken.
fn column_name(keys: &[String], taken: &[Column]) -> String {
    let mut name: String = keys
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "COL_");
    }
    // All ASCII by now; room is left for a `_n` suffix.
    name.truncate(COLUMN_NAME_CHARS_MAX - 8);
    let used = |n: &str| taken.iter().any(|c| c.name.eq_ignore_ascii_case(n));
    if !used(&name) {
        return name;
    }
    (2..)
        .map(|i| format!("{name}_{i}"))
        .find(|n| !used(n))
        .unwrap_or(name)
}

fn sample_error(index: usize, reason: impl Into<String>) -> SchemaError {
    SchemaError::Sample {
        index,
        reason: reason.into(),
    }
}

fn infer_json(texts: &[&str], row_path: &str) -> Result<Vec<Column>, SchemaError> {
    let mut row = parse_json_path(row_path).map_err(SchemaError::Format)?;
    let each = row.last() == Some(&PathSegment::Each);
    if each {
        row.pop();
    }
    let mut tape = JsonTape::default();
    let mut shape = Shape::default();
    for pass in [false, true] {
        for (index, text) in texts.iter().enumerate() {
            tape.parse(text).map_err(|e| sample_error(index, e))?;
            let rows = find_rows(&tape, text, &row, each).map_err(|e| sample_error(index, e))?;
            let nodes: Vec<usize> = match rows {
                Rows::One(at) => vec![at],
                Rows::Elements(at) => tape.children(at).collect(),
            };
            for at in nodes {
                if !matches!(tape.node(at), Some(JsonNode::Object { .. })) {
                    return Err(sample_error(index, "a row is not a json object"));
                }
                if pass {
                    shape.collect(&tape, text, at);
                } else {
                    shape.observe(&tape, text, at);
                }
            }
        }
    }
    let mut prefix = row;
    if each {
        prefix.push(PathSegment::Each);
    }
    let mut columns = Vec::new();
    shape.columns(&mut prefix, &mut Vec::new(), &mut columns);
    Ok(columns)
}

fn infer_csv(
    texts: &[&str],
    row_delimiter: &str,
    column_delimiter: &str,
) -> Result<Vec<Column>, SchemaError> {
    let mut rows = CsvRows::default();
    let mut stats: Vec<Stats> = Vec::new();
    let mut width: Option<usize> = None;
    for (index, text) in texts.iter().enumerate() {
        split_csv(text, row_delimiter, column_delimiter, &mut rows)
            .map_err(|e| sample_error(index, e))?;
        let mut any = false;
        for fields in rows.rows() {
            if matches!(fields, [f] if f.is_null()) {
                continue;
            }
            any = true;
            width = Some(width.map_or(fields.len(), |w| w.min(fields.len())));
            if stats.len() < fields.len() {
                stats.resize_with(fields.len(), Stats::default);
            }
            for (field, stat) in fields.iter().zip(stats.iter_mut()) {
                if let Some(value) = rows.field(text, field) {
                    stat.field(value);
                }
            }
        }
        if !any {
            return Err(sample_error(index, "sample has no csv rows"));
        }
    }
    stats.truncate(width.unwrap_or(0));
    let columns = stats
        .iter()
        .enumerate()
        .map(|(i, stat)| Column {
            name: format!("COL_{}", i + 1),
            sql_type: stat.resolve(),
            mapping: None,
        })
        .collect();
    Ok(columns)
}
