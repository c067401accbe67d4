//! One pump at run time: its compiled SELECT, and for a windowed pump its
//! watermarks and open windows. A stateless pump turns each batch into its
//! output at once; a windowed pump adds each row to the windows holding
//! its time and emits a window's results when the watermark closes it.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;

use super::{EngineError, Rows};
use crate::analytics::plan::{Compiled, Kind, Windowed, timestamp_type};
use crate::analytics::state::GroupState;
use crate::analytics::window::{Late, TimeColumn, Watermarks};

fn fail(e: impl std::fmt::Display) -> EngineError {
    EngineError::Eval(e.to_string())
}

/// A row a pump could not take, by its index in the batch.
pub struct Refused {
    pub row: usize,
    pub name: &'static str,
    pub message: String,
}

pub struct Pump {
    pub name: String,
    pub source: String,
    pub target: String,
    input: SchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    kind: RunKind,
    pub output: SchemaRef,
}

enum RunKind {
    Stateless(Vec<Arc<dyn PhysicalExpr>>),
    Windowed(Box<WindowRun>),
}

struct WindowRun {
    plan: Windowed,
    state: GroupState,
    watermarks: Watermarks,
}

fn evaluate(e: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef, EngineError> {
    e.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(fail)
}

impl Pump {
    pub fn new(
        name: String,
        target: String,
        compiled: Compiled,
        delay_ms: i64,
        groups_max: usize,
    ) -> Result<Pump, EngineError> {
        let kind = match compiled.kind {
            Kind::Stateless { projection } => RunKind::Stateless(projection),
            Kind::Windowed(w) => {
                let state = GroupState::new(w.grouped.clone(), w.aggregates.clone(), groups_max)
                    .map_err(fail)?;
                let delay = match w.window.time {
                    TimeColumn::Rowtime => 0,
                    TimeColumn::Column(_) => delay_ms,
                };
                RunKind::Windowed(Box::new(WindowRun {
                    plan: *w,
                    state,
                    watermarks: Watermarks::new(delay),
                }))
            }
        };
        Ok(Pump {
            name,
            source: compiled.source,
            target,
            input: compiled.input,
            filter: compiled.filter,
            kind,
            output: compiled.output,
        })
    }

    pub fn is_windowed(&self) -> bool {
        matches!(self.kind, RunKind::Windowed(_))
    }

    pub fn watermarks(&self) -> Option<&Watermarks> {
        match &self.kind {
            RunKind::Windowed(w) => Some(&w.watermarks),
            RunKind::Stateless(_) => None,
        }
    }

    pub fn watermarks_mut(&mut self) -> Option<&mut Watermarks> {
        match &mut self.kind {
            RunKind::Windowed(w) => Some(&mut w.watermarks),
            RunKind::Stateless(_) => None,
        }
    }

    pub fn over_rowtime(&self) -> bool {
        matches!(&self.kind, RunKind::Windowed(w) if w.plan.window.time == TimeColumn::Rowtime)
    }

    pub fn state(&self) -> Option<&GroupState> {
        match &self.kind {
            RunKind::Windowed(w) => Some(&w.state),
            RunKind::Stateless(_) => None,
        }
    }

    pub fn state_mut(&mut self) -> Option<&mut GroupState> {
        match &mut self.kind {
            RunKind::Windowed(w) => Some(&mut w.state),
            RunKind::Stateless(_) => None,
        }
    }

    /// The batch this pump evaluates on: the stream's columns, ROWTIME,
    /// and placeholders for the window's bounds.
    fn input_batch(&self, rows: &Rows) -> Result<RecordBatch, EngineError> {
        let mut columns = rows.batch.columns().to_vec();
        columns.push(rows.rowtime.clone());
        if self.is_windowed() {
            columns.push(rows.rowtime.clone());
            columns.push(rows.rowtime.clone());
        }
        RecordBatch::try_new(self.input.clone(), columns).map_err(fail)
    }

    /// Runs the WHERE: the rows kept, and their indices in `rows`.
    fn filtered(
        &self,
        batch: RecordBatch,
    ) -> Result<(RecordBatch, Option<UInt32Array>), EngineError> {
        let Some(f) = &self.filter else {
            return Ok((batch, None));
        };
        let mask = evaluate(f, &batch)?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| EngineError::Eval("WHERE is not a condition".into()))?;
        let kept: Vec<u32> = (0..mask.len())
            .filter(|i| mask.is_valid(*i) && mask.value(*i))
            .map(|i| i as u32)
            .collect();
        let kept = UInt32Array::from(kept);
        let batch = arrow_select::take::take_record_batch(&batch, &kept).map_err(fail)?;
        Ok((batch, Some(kept)))
    }

    /// Takes `rows` in. A stateless pump returns its output rows (with the
    /// ROWTIME of each); a windowed one adds them to its windows. Either
    /// way, the rows it refused (late, or over the state bound).
    pub fn push(&mut self, rows: &Rows) -> Result<(Option<Rows>, Vec<Refused>), EngineError> {
        let batch = self.input_batch(rows)?;
        let (batch, kept) = self.filtered(batch)?;
        let original = |i: usize| match &kept {
            Some(k) => k.value(i) as usize,
            None => i,
        };
        let rowtime_index = self.input.fields().len() - if self.is_windowed() { 3 } else { 1 };
        let rowtime = batch.column(rowtime_index).clone();
        match &mut self.kind {
            RunKind::Stateless(projection) => {
                let columns = projection
                    .iter()
                    .map(|e| evaluate(e, &batch))
                    .collect::<Result<Vec<_>, _>>()?;
                let out = RecordBatch::try_new(self.output.clone(), columns).map_err(fail)?;
                Ok((
                    Some(Rows {
                        batch: out,
                        rowtime,
                        shard: rows.shard,
                    }),
                    Vec::new(),
                ))
            }
            RunKind::Windowed(w) => {
                let mut refused = w.add(&batch, rows.shard)?;
                for r in refused.iter_mut() {
                    r.row = original(r.row);
                }
                Ok((None, refused))
            }
        }
    }

    /// Closes the windows the watermark passed: their result rows, with
    /// ROWTIME the window's end.
    pub fn close(&mut self) -> Result<Vec<Rows>, EngineError> {
        let RunKind::Windowed(w) = &mut self.kind else {
            return Ok(Vec::new());
        };
        let Some(wm) = w.watermarks.global() else {
            return Ok(Vec::new());
        };
        let closed = w.state.close(wm).map_err(fail)?;
        w.watermarks.close_at(wm);
        let mut out = Vec::new();
        for ((end, _), grouped) in closed {
            let grouped = match &w.plan.having {
                Some(h) => {
                    let mask = evaluate(h, &grouped)?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| EngineError::Eval("HAVING is not a condition".into()))?;
                    arrow_select::filter::filter_record_batch(&grouped, mask).map_err(fail)?
                }
                None => grouped,
            };
            let columns = w
                .plan
                .projection
                .iter()
                .map(|e| evaluate(e, &grouped))
                .collect::<Result<Vec<_>, _>>()?;
            let batch = RecordBatch::try_new(self.output.clone(), columns).map_err(fail)?;
            let rowtime = timestamps(vec![end; batch.num_rows()]);
            out.push(Rows {
                batch,
                rowtime,
                shard: None,
            });
        }
        Ok(out)
    }
}

/// A ROWTIME column of `values`.
pub fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(arrow_array::TimestampMillisecondArray::from(values))
}

impl WindowRun {
    /// The time of each row: ROWTIME or the window's column.
    fn times(&self, batch: &RecordBatch) -> Result<ArrayRef, EngineError> {
        let index = match &self.plan.window.time {
            TimeColumn::Rowtime => batch.num_columns() - 3,
            TimeColumn::Column(c) => batch.schema().index_of(c).map_err(fail)?,
        };
        let col = batch.column(index);
        if col.data_type() != &timestamp_type() {
            return arrow_cast::cast(col, &timestamp_type()).map_err(fail);
        }
        Ok(col.clone())
    }

    /// Adds a filtered batch to the windows; the rows refused.
    fn add(
        &mut self,
        batch: &RecordBatch,
        shard: Option<u32>,
    ) -> Result<Vec<Refused>, EngineError> {
        let times = self.times(batch)?;
        let times = times.as_primitive::<TimestampMillisecondType>();
        let shard = shard.unwrap_or(u32::MAX);
        let spec = self.plan.window.clone();
        let mut refused = Vec::new();
        // Rows by window, in the order the windows are met.
        let mut by_window: std::collections::BTreeMap<(i64, i64), Vec<u32>> = Default::default();
        for i in 0..batch.num_rows() {
            if times.is_null(i) {
                refused.push(Refused {
                    row: i,
                    name: "Null_time",
                    message: "the window's time column is NULL".into(),
                });
                continue;
            }
            let t = times.value(i);
            let first = spec.first_start(t);
            if let Err(late) = self.watermarks.observe(shard, t, first + spec.size_ms) {
                let message = match late {
                    Late::BehindShard { watermark_ms } => {
                        format!("the row's time {t} is behind its shard's watermark {watermark_ms}")
                    }
                    Late::WindowClosed { closed_ms } => format!(
                        "the row's window closed at watermark {closed_ms} before it arrived"
                    ),
                };
                refused.push(Refused {
                    row: i,
                    name: "Late_row",
                    message,
                });
                continue;
            }
            for start in spec.starts(t) {
                by_window
                    .entry((start + spec.size_ms, start))
                    .or_default()
                    .push(i as u32);
            }
        }
        // Every expression is evaluated before any window changes, so a
        // batch that fails to evaluate leaves the windows as they were.
        type Part = (
            (i64, i64),
            Option<UInt32Array>,
            Vec<ArrayRef>,
            Vec<Vec<ArrayRef>>,
        );
        let mut parts: Vec<Part> = Vec::with_capacity(by_window.len());
        for ((end, start), indices) in by_window {
            let all = indices.len() == batch.num_rows();
            let take = UInt32Array::from(indices);
            let part = if all {
                batch.clone()
            } else {
                arrow_select::take::take_record_batch(batch, &take).map_err(fail)?
            };
            let part = with_window(part, start, end)?;
            let keys = self
                .plan
                .group_exprs
                .iter()
                .map(|e| evaluate(e, &part))
                .collect::<Result<Vec<_>, _>>()?;
            let args = self
                .plan
                .aggregates
                .iter()
                .map(|a| a.expressions().iter().map(|e| evaluate(e, &part)).collect())
                .collect::<Result<Vec<Vec<ArrayRef>>, _>>()?;
            parts.push(((end, start), (!all).then_some(take), keys, args));
        }
        for (window, take, keys, args) in parts {
            for r in self.state.update(window, &keys, &args).map_err(fail)? {
                let row = take.as_ref().map_or(r, |t| t.value(r) as usize);
                refused.push(Refused {
                    row,
                    name: "State_limit",
                    message: "the open windows hold as many groups as analytics.groups_max allows"
                        .into(),
                });
            }
        }
        Ok(refused)
    }
}

/// `batch` with its last two columns (the window's bounds) set.
fn with_window(batch: RecordBatch, start: i64, end: i64) -> Result<RecordBatch, EngineError> {
    let n = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    let len = columns.len();
    if len < 2 {
        return Err(EngineError::Eval(
            "a windowed batch has no window columns".into(),
        ));
    }
    columns[len - 2] = timestamps(vec![start; n]);
    columns[len - 1] = timestamps(vec![end; n]);
    RecordBatch::try_new(batch.schema(), columns).map_err(fail)
}

/// Epoch milliseconds of a timestamp column, for error rows.
pub fn millis(col: &ArrayRef) -> Option<Int64Array> {
    match col.data_type() {
        DataType::Timestamp(_, _) => arrow_cast::cast(col, &DataType::Int64).ok().and_then(|a| {
            a.as_primitive_opt::<arrow_array::types::Int64Type>()
                .cloned()
        }),
        _ => None,
    }
}
