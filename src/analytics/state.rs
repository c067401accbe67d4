//! The open windows of one windowed pump: per window, its groups (by the
//! row-encoded group key) and one DataFusion groups accumulator per
//! aggregate. Closing a window evaluates its groups in key order; a
//! snapshot is each window's keys with its accumulators' partial states,
//! which restore merges back. The number of open groups is bounded: a row
//! that would open one more is refused and the caller routes it to the
//! error stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_row::{OwnedRow, RowConverter, SortField};
use arrow_schema::{Field, Schema, SchemaRef};
use datafusion_expr::{EmitTo, GroupsAccumulator};
use datafusion_physical_expr::GroupsAccumulatorAdapter;
use datafusion_physical_expr::aggregate::AggregateFunctionExpr;

/// A failure of an accumulator or a kernel.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

fn fail(e: impl std::fmt::Display) -> StateError {
    StateError(e.to_string())
}

/// A window by (end, start): closing goes by end.
pub type WindowKey = (i64, i64);

struct Open {
    index: HashMap<Box<[u8]>, u32>,
    rows: Vec<OwnedRow>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
}

/// `window`, opened if it is not.
fn open_window<'a>(
    windows: &'a mut BTreeMap<WindowKey, Open>,
    aggregates: &[Arc<AggregateFunctionExpr>],
    window: WindowKey,
) -> Result<&'a mut Open, StateError> {
    match windows.entry(window) {
        std::collections::btree_map::Entry::Occupied(o) => Ok(o.into_mut()),
        std::collections::btree_map::Entry::Vacant(v) => {
            let accs = aggregates
                .iter()
                .map(accumulator)
                .collect::<Result<_, _>>()?;
            Ok(v.insert(Open {
                index: HashMap::new(),
                rows: Vec::new(),
                accs,
            }))
        }
    }
}

/// The open windows of one pump.
pub struct GroupState {
    converter: RowConverter,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The aggregate's output: keys, then one column per aggregate.
    grouped: SchemaRef,
    windows: BTreeMap<WindowKey, Open>,
    groups: usize,
    groups_max: usize,
}

fn accumulator(a: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>, StateError> {
    if a.groups_accumulator_supported() {
        return a.create_groups_accumulator().map_err(fail);
    }
    let a = a.clone();
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
        a.create_accumulator()
    })))
}

impl GroupState {
    /// `grouped` is the aggregate's output schema; its first
    /// `grouped.len() - aggregates.len()` fields are the group keys.
    pub fn new(
        grouped: SchemaRef,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        groups_max: usize,
    ) -> Result<GroupState, StateError> {
        let keys = grouped.fields().len().saturating_sub(aggregates.len());
        let fields = grouped
            .fields()
            .iter()
            .take(keys)
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(GroupState {
            converter: RowConverter::new(fields).map_err(fail)?,
            aggregates,
            grouped,
            windows: BTreeMap::new(),
            groups: 0,
            groups_max,
        })
    }

    /// Open groups over every window.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Open windows.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Bytes the accumulators and keys hold, about.
    pub fn bytes(&self) -> usize {
        self.windows
            .values()
            .map(|o| {
                o.accs.iter().map(|a| a.size()).sum::<usize>()
                    + o.rows.iter().map(|r| r.as_ref().len() + 48).sum::<usize>()
            })
            .sum()
    }

    /// Adds rows to `window`: `keys` are the group key columns, `args` the
    /// arguments of each aggregate. Returns the rows refused because the
    /// open groups reached their bound (their aggregates are untouched).
    pub fn update(
        &mut self,
        window: WindowKey,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
    ) -> Result<Vec<usize>, StateError> {
        let rows = self.converter.convert_columns(keys).map_err(fail)?;
        let (mut groups, max) = (self.groups, self.groups_max);
        let open = open_window(&mut self.windows, &self.aggregates, window)?;
        let mut indices = Vec::with_capacity(rows.num_rows());
        let mut refused = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if let Some(g) = open.index.get(row.as_ref()) {
                indices.push(*g);
            } else if groups < max {
                let g = open.rows.len() as u32;
                open.index.insert(row.as_ref().into(), g);
                open.rows.push(row.owned());
                groups += 1;
                indices.push(g);
            } else {
                refused.push(i);
            }
        }
        self.groups = groups;
        let total = open.rows.len();
        if total == 0 {
            return Ok(refused);
        }
        let taken;
        let (args, indices): (&[Vec<ArrayRef>], Vec<usize>) = if refused.is_empty() {
            (args, indices.iter().map(|g| *g as usize).collect())
        } else {
            let keep: Vec<u32> = (0..rows.num_rows() as u32)
                .filter(|i| refused.binary_search(&(*i as usize)).is_err())
                .collect();
            let keep = UInt32Array::from(keep);
            taken = args
                .iter()
                .map(|cols| {
                    cols.iter()
                        .map(|c| arrow_select::take::take(c.as_ref(), &keep, None))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            (&taken, indices.iter().map(|g| *g as usize).collect())
        };
        for (acc, values) in open.accs.iter_mut().zip(args) {
            acc.update_batch(values, &indices, None, total)
                .map_err(fail)?;
        }
        Ok(refused)
    }

    /// Removes the windows ending at or before `watermark` and returns each
    /// one's groups, in key order, as batches of the aggregate's output.
    pub fn close(&mut self, watermark: i64) -> Result<Vec<(WindowKey, RecordBatch)>, StateError> {
        let closing: Vec<WindowKey> = self
            .windows
            .range(..=(watermark, i64::MAX))
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for key in closing {
            let Some(mut open) = self.windows.remove(&key) else {
                continue;
            };
            self.groups = self.groups.saturating_sub(open.rows.len());
            let mut columns = self
                .converter
                .convert_rows(open.rows.iter().map(|r| r.row()))
                .map_err(fail)?;
            for acc in open.accs.iter_mut() {
                columns.push(acc.evaluate(EmitTo::All).map_err(fail)?);
            }
            let batch = RecordBatch::try_new(self.grouped.clone(), columns).map_err(fail)?;
            out.push((key, in_key_order(&open.rows, batch)?));
        }
        Ok(out)
    }

    /// The partial state of every open window, one batch each: the group
    /// keys, then each aggregate's state columns. The windows stay open.
    pub fn snapshot(&mut self) -> Result<Vec<RecordBatch>, StateError> {
        let mut out = Vec::new();
        let aggregates = self.aggregates.clone();
        for open in self.windows.values_mut() {
            let mut columns = self
                .converter
                .convert_rows(open.rows.iter().map(|r| r.row()))
                .map_err(fail)?;
            let mut fields: Vec<Field> = self
                .grouped
                .fields()
                .iter()
                .take(columns.len())
                .map(|f| f.as_ref().clone())
                .collect();
            let indices: Vec<usize> = (0..open.rows.len()).collect();
            for (j, (acc, agg)) in open.accs.iter_mut().zip(&aggregates).enumerate() {
                let state = acc.state(EmitTo::All).map_err(fail)?;
                // Taking the state empties the accumulator: merge it back.
                let mut fresh = accumulator(agg)?;
                fresh
                    .merge_batch(&state, &indices, None, open.rows.len())
                    .map_err(fail)?;
                *acc = fresh;
                for (k, col) in state.into_iter().enumerate() {
                    fields.push(Field::new(
                        format!("s{j}_{k}"),
                        col.data_type().clone(),
                        true,
                    ));
                    columns.push(col);
                }
            }
            let schema = Arc::new(Schema::new(fields));
            out.push(RecordBatch::try_new(schema, columns).map_err(fail)?);
        }
        Ok(out)
    }

    /// Opens the windows a snapshot holds; `window_of` tells a batch's
    /// window from its key columns.
    pub fn restore(
        &mut self,
        batches: &[RecordBatch],
        mut window_of: impl FnMut(&[ArrayRef]) -> Option<WindowKey>,
    ) -> Result<(), StateError> {
        let keys = self.converter_fields();
        for batch in batches {
            let columns = batch.columns();
            let key_cols = columns
                .get(..keys)
                .ok_or_else(|| StateError("a snapshot misses its keys".into()))?;
            let Some(window) = window_of(key_cols) else {
                continue;
            };
            let rows = self.converter.convert_columns(key_cols).map_err(fail)?;
            let n = rows.num_rows();
            let mut states = columns.get(keys..).unwrap_or(&[]).iter();
            let counts: Vec<usize> = self
                .aggregates
                .iter()
                .map(|a| a.state_fields().map(|f| f.len()))
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            self.groups += n;
            let open = open_window(&mut self.windows, &self.aggregates, window)?;
            for row in rows.iter() {
                let g = open.rows.len() as u32;
                open.index.insert(row.as_ref().into(), g);
                open.rows.push(row.owned());
            }
            let indices: Vec<usize> = (0..n).collect();
            for (acc, count) in open.accs.iter_mut().zip(counts) {
                let state: Vec<ArrayRef> = states.by_ref().take(count).cloned().collect();
                acc.merge_batch(&state, &indices, None, n).map_err(fail)?;
            }
        }
        Ok(())
    }

    fn converter_fields(&self) -> usize {
        self.grouped
            .fields()
            .len()
            .saturating_sub(self.aggregates.len())
    }
}

/// `batch` (one row per entry of `rows`) sorted by the row-encoded keys.
fn in_key_order(rows: &[OwnedRow], batch: RecordBatch) -> Result<RecordBatch, StateError> {
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_by(|a, b| rows[*a as usize].cmp(&rows[*b as usize]));
    if order.iter().enumerate().all(|(i, o)| i as u32 == *o) {
        return Ok(batch);
    }
    let order = UInt32Array::from(order);
    arrow_select::take::take_record_batch(&batch, &order).map_err(fail)
}

#[cfg(test)]
mod tests;
