//! The engine of one application, without I/O: records of the input go in
//! by shard, are decoded by the input schema into the source stream's rows
//! (with ROWTIME, the arrival time made monotonic per shard), and flow
//! through the pumps; rows reaching a stream mapped to an output become
//! output records, waiting in `pending` until the runner publishes them.
//! Rows that do not fit the schema, arrive late or cannot be evaluated
//! become rows of `error_stream` (KDA's columns), never dropped silently.
//!
//! Given the same records per shard, the engine produces the same results
//! whatever the interleaving of shards (see `window`), and its state
//! (watermarks, open windows, output sequence) snapshots and restores.

mod errors;
pub mod pump;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};

use super::decode::Decoder;
use super::encode::{OutputFormat, encode_rows};
use super::kda::Program;
use super::plan::{Catalog, PlanError, compile};
use super::schema::{InputSchema, SqlType};
use super::window::Watermarks;
use crate::record::Record;
pub use errors::{ERROR_STREAM, error_schema};
use pump::{Pump, timestamps};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The code cannot run: which statement, and why.
    #[error("statement {statement} (line {line}, column {column}): {reason}")]
    Code {
        statement: usize,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{0}")]
    Eval(String),
}

/// Rows of one in-application stream on their way.
pub struct Rows {
    pub batch: RecordBatch,
    /// ROWTIME of each row.
    pub rowtime: ArrayRef,
    /// The input shard they came from, while they come from one (through
    /// stateless pumps); windows' results come from none.
    pub shard: Option<u32>,
}

/// How an in-application stream is written out.
#[derive(Clone, Debug)]
pub struct OutputDef {
    pub format: OutputFormat,
    /// A column whose value is each record's partition key; by default a
    /// sequence number, spreading records over the shards.
    pub partition_key: Option<String>,
}

/// One record for an output, by the in-application stream it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    pub stream: String,
    pub key: String,
    pub data: Vec<u8>,
}

/// What the engine runs.
pub struct EngineDef {
    /// The in-application stream the input becomes (`SOURCE_SQL_STREAM_001`).
    pub input_stream: String,
    pub schema: InputSchema,
    pub program: Program,
    pub outputs: BTreeMap<String, OutputDef>,
    /// Out-of-orderness allowed per shard for event-time windows.
    pub delay_ms: i64,
    /// Open groups per windowed pump.
    pub groups_max: usize,
}

/// Counters since start.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub late_rows: u64,
    pub error_rows: u64,
}

/// The state to checkpoint.
pub struct EngineState {
    pub rowclock: Watermarks,
    pub seq: u64,
    /// Per pump: its watermarks and open windows (windowed pumps only).
    pub pumps: Vec<Option<(Watermarks, Vec<RecordBatch>)>>,
}

pub struct Engine {
    decoder: Decoder,
    input_stream: String,
    /// Declared column types of streams rows are inserted into.
    declared: HashMap<String, SchemaRef>,
    pumps: Vec<Pump>,
    outputs: BTreeMap<String, OutputDef>,
    rowclock: Watermarks,
    pending: Vec<OutRecord>,
    seq: u64,
    pub stats: EngineStats,
}

/// A planning error at its place in the original code: positions within
/// a pump's query are relative to where the query starts.
fn code(statement: usize, at: (usize, usize), e: PlanError) -> EngineError {
    let (line, column) = match e.at {
        Some((1, c)) => (at.0, at.1 + (c as usize).saturating_sub(1)),
        Some((l, c)) => (at.0 + (l as usize).saturating_sub(1), c as usize),
        None => at,
    };
    EngineError::Code {
        statement,
        line,
        column,
        reason: e.reason,
    }
}

fn declared_schema(
    columns: &[super::kda::ColumnDecl],
    statement: usize,
    line: usize,
) -> Result<SchemaRef, EngineError> {
    let mut fields = Vec::new();
    for c in columns {
        let t = SqlType::parse(&c.sql_type).map_err(|e| EngineError::Code {
            statement,
            line,
            column: 1,
            reason: format!("column {}: {e}", c.name),
        })?;
        fields.push(Field::new(&c.name, t.arrow(), true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A window needs rows that come from an input shard (for its per-shard
/// watermark): the input's, or a stateless pump's of such rows. A window's
/// results come from no shard, so a window over them (directly or through
/// stateless pumps) is refused.
fn windows_read_shards(pumps: &[Pump], defs: &[super::kda::Pump]) -> Result<(), EngineError> {
    let mut unsharded: std::collections::HashSet<&str> = Default::default();
    loop {
        let before = unsharded.len();
        for p in pumps {
            if p.is_windowed() || unsharded.contains(p.source.as_str()) {
                unsharded.insert(p.target.as_str());
            }
        }
        if unsharded.len() == before {
            break;
        }
    }
    for (p, d) in pumps.iter().zip(defs) {
        if p.is_windowed() && unsharded.contains(p.source.as_str()) {
            return Err(EngineError::Code {
                statement: d.statement,
                line: d.line,
                column: 1,
                reason: format!(
                    "{} windows rows of {}, which come from a window: windows over windows are not supported",
                    p.name, p.source
                ),
            });
        }
    }
    Ok(())
}

impl Engine {
    /// Plans every pump; the first problem is a code error.
    pub fn new(def: EngineDef) -> Result<Engine, EngineError> {
        let decoder = Decoder::new(&def.schema).map_err(|e| EngineError::Eval(e.to_string()))?;
        let mut streams: HashMap<String, SchemaRef> = HashMap::new();
        streams.insert(def.input_stream.clone(), decoder.schema());
        let mut declared = HashMap::new();
        for (i, s) in def.program.streams.iter().enumerate() {
            let schema = declared_schema(&s.columns, i + 1, s.line)?;
            streams.insert(s.name.clone(), schema.clone());
            declared.insert(s.name.clone(), schema);
        }
        let mut catalog = Catalog::new(streams);
        let mut pumps = Vec::new();
        for p in &def.program.pumps {
            let compiled =
                compile(&p.select, &mut catalog).map_err(|e| code(p.statement, p.select_at, e))?;
            let fail = |reason: String| EngineError::Code {
                statement: p.statement,
                line: p.line,
                column: 1,
                reason,
            };
            let target = match catalog
                .streams
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&p.target))
            {
                Some(t) if declared.contains_key(t) => t.clone(),
                _ => p.target.clone(),
            };
            if target == def.input_stream {
                return Err(fail(format!(
                    "{target} is the input; a pump cannot insert into it"
                )));
            }
            match declared.get(&target) {
                Some(d) if d.fields().len() != compiled.output.fields().len() => {
                    return Err(fail(format!(
                        "{target} has {} columns and the SELECT gives {}",
                        d.fields().len(),
                        compiled.output.fields().len()
                    )));
                }
                Some(_) => {}
                // Inserting into an undeclared stream declares it as selected.
                None => {
                    catalog
                        .streams
                        .entry(target.clone())
                        .or_insert_with(|| compiled.output.clone());
                }
            }
            let pump = Pump::new(
                p.name.clone(),
                target,
                compiled,
                def.delay_ms,
                def.groups_max,
            )?;
            pumps.push(pump);
        }
        windows_read_shards(&pumps, &def.program.pumps)?;
        Ok(Engine {
            decoder,
            input_stream: def.input_stream,
            declared,
            pumps,
            outputs: def.outputs,
            rowclock: Watermarks::new(0),
            pending: Vec::new(),
            seq: 0,
            stats: EngineStats::default(),
        })
    }

    /// The names of the streams pumps insert into, and the input's.
    pub fn streams(&self) -> Vec<String> {
        let mut out: Vec<String> = self.pumps.iter().map(|p| p.target.clone()).collect();
        out.push(self.input_stream.clone());
        out.push(ERROR_STREAM.to_string());
        out.sort();
        out.dedup();
        out
    }

    /// The columns of the in-application stream `stream` (its declared
    /// ones, else those of the pump inserting into it).
    pub fn columns_of(&self, stream: &str) -> Vec<String> {
        let schema = self.declared.get(stream).cloned().or_else(|| {
            self.pumps
                .iter()
                .find(|p| p.target == stream)
                .map(|p| p.output.clone())
        });
        schema.map_or_else(Vec::new, |s| {
            s.fields().iter().map(|f| f.name().clone()).collect()
        })
    }

    /// Makes `shard` one whose watermark windows wait for.
    pub fn track(&mut self, shard: u32) {
        self.rowclock.track(shard);
        for p in self.pumps.iter_mut() {
            if let Some(w) = p.watermarks_mut() {
                w.track(shard);
            }
        }
    }

    /// `shard` is read to the end of its log now; `idle` when it has been
    /// for the idle time (event-time windows stop waiting for it).
    pub fn caught_up(&mut self, shard: u32, now_ms: i64, idle: bool) {
        self.rowclock.caught_up(shard, now_ms, true);
        let clock = self.rowclock.shards.get(&shard).and_then(|c| c.max_ms);
        for p in self.pumps.iter_mut() {
            let rowtime = p.over_rowtime();
            if let Some(w) = p.watermarks_mut() {
                if rowtime {
                    if let Some(c) = clock {
                        w.caught_up(shard, c, true);
                    }
                } else if idle {
                    w.caught_up(shard, now_ms, false);
                }
            }
        }
    }

    /// `shard` is closed and read to its end.
    pub fn finished(&mut self, shard: u32) {
        self.rowclock.finished(shard);
        for p in self.pumps.iter_mut() {
            if let Some(w) = p.watermarks_mut() {
                w.finished(shard);
            }
        }
    }

    /// Takes records of `shard` in, in log order.
    pub fn push(&mut self, shard: u32, records: &[Record], now_ms: i64) -> Result<(), EngineError> {
        if records.is_empty() {
            return Ok(());
        }
        let rowtimes: Vec<i64> = records
            .iter()
            .map(|r| self.rowclock.rowtime(shard, r.arrival_ms))
            .collect();
        self.stats.records_in += records.len() as u64;
        self.stats.bytes_in += records.iter().map(|r| r.data.len() as u64).sum::<u64>();
        let data: Vec<&[u8]> = records.iter().map(|r| r.data.as_ref()).collect();
        let (batch, accepted, rejects) = self.decoder.decode(&data);
        if !rejects.is_empty() {
            let errors = errors::parse_errors(&rejects, records, &rowtimes, now_ms)?;
            self.flow(ERROR_STREAM, errors, now_ms)?;
        }
        let rowtime = timestamps(
            accepted
                .iter()
                .map(|i| rowtimes.get(*i).copied().unwrap_or_default())
                .collect(),
        );
        let rows = Rows {
            batch,
            rowtime,
            shard: Some(shard),
        };
        let input = self.input_stream.clone();
        self.flow(&input, rows, now_ms)
    }

    /// Closes every window the watermarks passed, emitting the results.
    pub fn close_windows(&mut self, now_ms: i64) -> Result<usize, EngineError> {
        let mut emitted = 0;
        for i in 0..self.pumps.len() {
            let closed = match self.pumps.get_mut(i) {
                Some(p) => p.close()?,
                None => continue,
            };
            for rows in closed {
                emitted += rows.batch.num_rows();
                let target = self
                    .pumps
                    .get(i)
                    .map(|p| p.target.clone())
                    .unwrap_or_default();
                let rows = self.conform(&target, rows)?;
                self.flow(&target, rows, now_ms)?;
            }
        }
        Ok(emitted)
    }

    /// Rows inserted into a declared stream take its names and types.
    fn conform(&self, target: &str, rows: Rows) -> Result<Rows, EngineError> {
        let Some(schema) = self.declared.get(target) else {
            return Ok(rows);
        };
        let columns = rows
            .batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow_cast::cast(c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Eval(format!("inserting into {target}: {e}")))?;
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| EngineError::Eval(format!("inserting into {target}: {e}")))?;
        Ok(Rows { batch, ..rows })
    }

    /// Sends `rows` of `stream` to its output and to the pumps reading it.
    fn flow(&mut self, stream: &str, rows: Rows, now_ms: i64) -> Result<(), EngineError> {
        if rows.batch.num_rows() == 0 {
            return Ok(());
        }
        if stream == ERROR_STREAM {
            self.stats.error_rows += rows.batch.num_rows() as u64;
        }
        if let Some(out) = self.outputs.get(stream).cloned() {
            self.emit(stream, &rows.batch, &out)?;
        }
        for i in 0..self.pumps.len() {
            if self.pumps.get(i).is_none_or(|p| p.source != stream) {
                continue;
            }
            self.pump(i, &rows, now_ms, true)?;
        }
        Ok(())
    }

    /// Pushes `rows` through pump `i`, its results and refused rows flowing
    /// on. When the batch fails to evaluate and `split`, each row is tried
    /// alone, so only the rows that fail go to error_stream.
    fn pump(&mut self, i: usize, rows: &Rows, now_ms: i64, split: bool) -> Result<(), EngineError> {
        let (name, target) = match self.pumps.get(i) {
            Some(p) => (p.name.clone(), p.target.clone()),
            None => return Ok(()),
        };
        let result = match self.pumps.get_mut(i) {
            Some(p) => p.push(rows),
            None => return Ok(()),
        };
        let (out, refused) = match result {
            Ok(r) => r,
            Err(EngineError::Eval(_)) if split && rows.batch.num_rows() > 1 => {
                for r in 0..rows.batch.num_rows() {
                    let one = Rows {
                        batch: rows.batch.slice(r, 1),
                        rowtime: rows.rowtime.slice(r, 1),
                        shard: rows.shard,
                    };
                    self.pump(i, &one, now_ms, false)?;
                }
                return Ok(());
            }
            Err(EngineError::Eval(message)) => {
                let e = errors::row_errors(rows, "Evaluation_error", &message, &name, now_ms)?;
                return self.flow(ERROR_STREAM, e, now_ms);
            }
            Err(e) => return Err(e),
        };
        if !refused.is_empty() {
            self.stats.late_rows += refused.iter().filter(|r| r.name == "Late_row").count() as u64;
            let e = errors::refused_rows(rows, &refused, &name, now_ms)?;
            self.flow(ERROR_STREAM, e, now_ms)?;
        }
        if let Some(out) = out {
            let out = self.conform(&target, out)?;
            self.flow(&target, out, now_ms)?;
        }
        Ok(())
    }

    fn emit(
        &mut self,
        stream: &str,
        batch: &RecordBatch,
        out: &OutputDef,
    ) -> Result<(), EngineError> {
        let records =
            encode_rows(batch, &out.format).map_err(|e| EngineError::Eval(e.to_string()))?;
        let keys = out
            .partition_key
            .as_ref()
            .and_then(|k| batch.schema().index_of(k).ok())
            .and_then(|i| arrow_cast::cast(batch.column(i), &arrow_schema::DataType::Utf8).ok());
        for (i, data) in records.into_iter().enumerate() {
            self.seq += 1;
            let key = keys
                .as_ref()
                .and_then(|k| {
                    k.as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .cloned()
                })
                .filter(|k| k.is_valid(i) && !k.value(i).is_empty())
                .map(|k| k.value(i).chars().take(256).collect())
                .unwrap_or_else(|| self.seq.to_string());
            self.pending.push(OutRecord {
                stream: stream.to_string(),
                key,
                data,
            });
        }
        Ok(())
    }

    /// Output records waiting to be published.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes the output records produced since the last take.
    pub fn take_pending(&mut self) -> Vec<OutRecord> {
        self.stats.records_out += self.pending.len() as u64;
        std::mem::take(&mut self.pending)
    }

    /// Open windows and groups over every pump, and their bytes.
    pub fn open_state(&self) -> (usize, usize, usize) {
        self.pumps
            .iter()
            .filter_map(|p| p.state())
            .fold((0, 0, 0), |(w, g, b), s| {
                (w + s.windows(), g + s.groups(), b + s.bytes())
            })
    }

    /// The smallest watermark over the windowed pumps, for metrics.
    pub fn watermark(&self) -> Option<i64> {
        self.pumps
            .iter()
            .filter_map(|p| p.watermarks().and_then(Watermarks::global))
            .min()
    }

    /// The state to checkpoint (pending outputs are taken separately).
    pub fn snapshot(&mut self) -> Result<EngineState, EngineError> {
        let mut pumps = Vec::new();
        for p in self.pumps.iter_mut() {
            let wm = p.watermarks().cloned();
            let windows = match p.state_mut() {
                Some(s) => Some(s.snapshot().map_err(|e| EngineError::Eval(e.to_string()))?),
                None => None,
            };
            pumps.push(wm.zip(windows));
        }
        Ok(EngineState {
            rowclock: self.rowclock.clone(),
            seq: self.seq,
            pumps,
        })
    }

    /// Continues from a checkpointed state.
    pub fn restore(&mut self, state: EngineState) -> Result<(), EngineError> {
        self.rowclock = state.rowclock;
        self.seq = state.seq;
        for (p, s) in self.pumps.iter_mut().zip(state.pumps) {
            let Some((wm, windows)) = s else { continue };
            if let Some(w) = p.watermarks_mut() {
                *w = wm;
            }
            if let Some(st) = p.state_mut() {
                st.restore(&windows, errors::window_of)
                    .map_err(|e| EngineError::Eval(e.to_string()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
