//! Rows of `error_stream`, in KDA's columns: ERROR_TIME, ERROR_LEVEL,
//! ERROR_NAME, MESSAGE, DATA_ROWTIME, DATA_ROW, PUMP_NAME. DATA_ROW holds
//! the record's text (or its hex when it is not UTF-8) for input that does
//! not fit the schema, and the row as JSON for a row a pump refused.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::pump::{Refused, timestamps};
use super::{EngineError, Rows};
use crate::analytics::decode::Reject;
use crate::analytics::encode::{OutputFormat, encode_rows};
use crate::analytics::plan::timestamp_type;
use crate::analytics::state::WindowKey;
use crate::record::Record;

/// The in-application stream errors go to.
pub const ERROR_STREAM: &str = "error_stream";

/// Longest DATA_ROW kept, as KDA.
const DATA_ROW_CHARS_MAX: usize = 49_152;

pub fn error_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ERROR_TIME", timestamp_type(), false),
        Field::new("ERROR_LEVEL", DataType::Utf8, false),
        Field::new("ERROR_NAME", DataType::Utf8, false),
        Field::new("MESSAGE", DataType::Utf8, false),
        Field::new("DATA_ROWTIME", timestamp_type(), true),
        Field::new("DATA_ROW", DataType::Utf8, true),
        Field::new("PUMP_NAME", DataType::Utf8, true),
    ]))
}

struct ErrorRow {
    name: String,
    message: String,
    rowtime: Option<i64>,
    data: Option<String>,
    pump: Option<String>,
}

fn bounded(mut s: String) -> String {
    if s.len() > DATA_ROW_CHARS_MAX {
        let mut cut = DATA_ROW_CHARS_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn batch(rows: Vec<ErrorRow>, now_ms: i64) -> Result<Rows, EngineError> {
    let n = rows.len();
    let strings = |f: &dyn Fn(&ErrorRow) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let data_rowtime: ArrayRef = Arc::new(
        rows.iter()
            .map(|r| r.rowtime)
            .collect::<arrow_array::TimestampMillisecondArray>(),
    );
    let columns = vec![
        timestamps(vec![now_ms; n]),
        strings(&|_| Some("ERROR".to_string())),
        strings(&|r| Some(r.name.clone())),
        strings(&|r| Some(r.message.clone())),
        data_rowtime,
        strings(&|r| r.data.clone()),
        strings(&|r| r.pump.clone()),
    ];
    let batch = RecordBatch::try_new(error_schema(), columns)
        .map_err(|e| EngineError::Eval(e.to_string()))?;
    Ok(Rows {
        batch,
        rowtime: timestamps(vec![now_ms; n]),
        shard: None,
    })
}

/// Records that do not fit the input schema.
pub fn parse_errors(
    rejects: &[Reject],
    records: &[Record],
    rowtimes: &[i64],
    now_ms: i64,
) -> Result<Rows, EngineError> {
    let rows = rejects
        .iter()
        .map(|r| {
            let data = records
                .get(r.index)
                .map(|rec| match std::str::from_utf8(&rec.data) {
                    Ok(s) => bounded(s.to_string()),
                    Err(_) => bounded(hex::encode(&rec.data)),
                });
            ErrorRow {
                name: "Error_parsing_input".into(),
                message: match &r.column {
                    Some(c) => format!("column {c}: {}", r.message),
                    None => r.message.clone(),
                },
                rowtime: rowtimes.get(r.index).copied(),
                data,
                pump: None,
            }
        })
        .collect();
    batch(rows, now_ms)
}

/// Each row of `rows` as JSON text.
fn rows_json(rows: &Rows) -> Vec<Option<String>> {
    match encode_rows(&rows.batch, &OutputFormat::Json) {
        Ok(v) => v
            .into_iter()
            .map(|b| Some(bounded(String::from_utf8_lossy(&b).into_owned())))
            .collect(),
        Err(_) => vec![None; rows.batch.num_rows()],
    }
}

fn rowtime_of(rows: &Rows, i: usize) -> Option<i64> {
    let t = rows
        .rowtime
        .as_primitive_opt::<TimestampMillisecondType>()?;
    (i < t.len() && t.is_valid(i)).then(|| t.value(i))
}

/// Rows a pump refused (late, over the state bound).
pub fn refused_rows(
    rows: &Rows,
    refused: &[Refused],
    pump: &str,
    now_ms: i64,
) -> Result<Rows, EngineError> {
    let json = rows_json(rows);
    let out = refused
        .iter()
        .map(|r| ErrorRow {
            name: r.name.to_string(),
            message: r.message.clone(),
            rowtime: rowtime_of(rows, r.row),
            data: json.get(r.row).cloned().flatten(),
            pump: Some(pump.to_string()),
        })
        .collect();
    batch(out, now_ms)
}

/// Every row of `rows`, failed by `message`.
pub fn row_errors(
    rows: &Rows,
    name: &str,
    message: &str,
    pump: &str,
    now_ms: i64,
) -> Result<Rows, EngineError> {
    let json = rows_json(rows);
    let out = (0..rows.batch.num_rows())
        .map(|i| ErrorRow {
            name: name.to_string(),
            message: message.to_string(),
            rowtime: rowtime_of(rows, i),
            data: json.get(i).cloned().flatten(),
            pump: Some(pump.to_string()),
        })
        .collect();
    batch(out, now_ms)
}

/// The window of a snapshot batch, from its first two key columns
/// (`window_start`, `window_end`).
pub fn window_of(keys: &[ArrayRef]) -> Option<WindowKey> {
    let start = keys
        .first()?
        .as_primitive_opt::<TimestampMillisecondType>()?;
    let end = keys
        .get(1)?
        .as_primitive_opt::<TimestampMillisecondType>()?;
    (!start.is_empty() && !end.is_empty()).then(|| (end.value(0), start.value(0)))
}
