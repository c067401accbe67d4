//! JSON parsed once on the partitioned Parquet path. A chunk read from the
//! log is decoded into the stream's Parquet schema as it is read; each
//! row's partition keys are read from its decoded key columns, not from a
//! scan of its JSON, and the rows are split by partition (`take`) and
//! batched as rows. The object is written from them, so no record is
//! parsed twice.
//!
//! It applies where it changes nothing a user can see: Parquet objects,
//! every partition key a top-level field of the schema read as a string,
//! the time the record's arrival, no transform, no KPL aggregates, and a
//! log that keeps the records until the checkpoint passes them (the stream's
//! own), since the batch then holds only their offsets for the error
//! output ([`super::held`]). Whatever does not go the common way goes the
//! way it always did, with the same outcome and the same reason: a record
//! that does not fit the schema is routed from its JSON, and goes to the
//! error output as a partitioning failure if that fails, else as a format
//! conversion failure; a row with a null key, or a key that cannot be part
//! of an object key, is routed from its JSON too.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, SchemaRef};

use crate::config::Destination;
use crate::delivery::StreamContext;
use crate::delivery::batcher::{RowOf, RowsPiece};
use crate::encode::Encoding;
use crate::encode::parquet::decode_all;
use crate::record::Record;
use crate::route::partition::{Partitioner, RouteScratch};

/// A stream whose chunks are decoded once: its schema and, per partition
/// key in key order, the schema's column holding it.
#[derive(Debug)]
pub(super) struct DecodeOnce {
    schema: SchemaRef,
    key_columns: Vec<usize>,
}

/// A chunk decoded and routed.
#[derive(Default)]
pub(super) struct Decoded {
    /// Each partition's rows, pieces in the order their partitions first
    /// came and their rows in offset order.
    pub parts: Vec<(Arc<str>, RowsPiece)>,
    /// Records that cannot be partitioned, with why.
    pub unpartitioned: Vec<(Record, String)>,
    /// Records that do not fit the schema, with why.
    pub unfit: Vec<(Record, String)>,
}

impl DecodeOnce {
    /// For a stream that qualifies (see the module's documentation).
    pub(super) fn for_stream(
        ctx: &StreamContext,
        part: Option<&Partitioner>,
    ) -> Option<DecodeOnce> {
        // The batch holds only offsets: the records must come back whole
        // from the log.
        if !matches!(ctx.config.destination, Destination::Object(_)) || !ctx.offsets_suffice() {
            return None;
        }
        let opts = ctx.config.encode_options();
        let Encoding::Parquet(p) = &opts.encoding else {
            return None;
        };
        let key_columns = part?
            .top_level_fields()?
            .into_iter()
            .map(|name| {
                let (i, field) = p.schema.column_with_name(name)?;
                (field.data_type() == &DataType::Utf8).then_some(i)
            })
            .collect::<Option<Vec<usize>>>()?;
        Some(DecodeOnce {
            schema: p.schema.clone(),
            key_columns,
        })
    }

    /// Decodes and routes a chunk just read. Err: the chunk cannot be
    /// decoded here (the schema, or a key column not of strings); it goes
    /// the way every chunk did, untouched.
    pub(super) fn decode(
        &self,
        frames: &[Record],
        part: &Partitioner,
        scratch: &mut RouteScratch,
    ) -> Result<Decoded, String> {
        let (batches, rejected) = decode_all(frames, &self.schema)?;
        let mut out = Decoded::default();
        let mut accepted = Vec::with_capacity(frames.len() - rejected.len());
        let mut rejected = rejected.into_iter().peekable();
        for (i, f) in frames.iter().enumerate() {
            let Some((_, why)) = rejected.next_if(|(at, _)| *at == i) else {
                accepted.push(f);
                continue;
            };
            match part.route(f, &[], scratch) {
                Err(why) => out.unpartitioned.push((f.clone(), why)),
                Ok(_) => out.unfit.push((f.clone(), why)),
            }
        }
        let mut records = accepted.into_iter();
        let mut routed = Vec::new();
        let mut memo = PrefixMemo::default();
        for batch in &batches {
            memo.clear();
            let keys = self
                .key_columns
                .iter()
                .map(|&c| {
                    batch
                        .column(c)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| format!("column {c} does not hold strings"))
                })
                .collect::<Result<Vec<&StringArray>, String>>()?;
            routed.clear();
            for row in 0..batch.num_rows() {
                let Some(f) = records.next() else {
                    return Err("fewer records than decoded rows".into());
                };
                let values_known = keys.iter().all(|k| k.is_valid(row));
                let prefix = values_known
                    .then(|| {
                        memo.get_or_route(f.arrival_ms, keys.iter().map(|k| k.value(row)), |v| {
                            part.route_values(v, f.arrival_ms, scratch)
                        })
                    })
                    .flatten();
                let prefix = match prefix {
                    Some(p) => p,
                    // The way it always was, for what it says.
                    None => match part.route(f, &[], scratch) {
                        Ok(p) => p,
                        Err(why) => {
                            out.unpartitioned.push((f.clone(), why));
                            continue;
                        }
                    },
                };
                routed.push((row as u32, f, prefix));
            }
            split(batch, &routed, &mut out.parts)?;
        }
        if records.next().is_some() {
            return Err("more records than decoded rows".into());
        }
        Ok(out)
    }
}

/// The prefixes a batch's rows were routed to, by arrival time and key
/// values: the records of one put share their arrival, and partition keys
/// repeat, so most rows find theirs here instead of rendering it again.
/// Holds at most one entry per row of the batch it is cleared for.
#[derive(Default)]
struct PrefixMemo {
    prefixes: foldhash::HashMap<Vec<u8>, Arc<str>>,
    /// The key being looked up: the arrival, then each value's length and
    /// bytes.
    key: Vec<u8>,
}

impl PrefixMemo {
    fn clear(&mut self) {
        self.prefixes.clear();
    }

    /// The prefix of a row arrived at `arrival_ms` with key `values`: the one
    /// routed before for the same, else `route`'s (kept if there is one).
    fn get_or_route<'v, I>(
        &mut self,
        arrival_ms: i64,
        values: I,
        route: impl FnOnce(I) -> Option<Arc<str>>,
    ) -> Option<Arc<str>>
    where
        I: Iterator<Item = &'v str> + Clone,
    {
        self.key.clear();
        self.key.extend_from_slice(&arrival_ms.to_le_bytes());
        for v in values.clone() {
            self.key
                .extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
            self.key.extend_from_slice(v.as_bytes());
        }
        if let Some(p) = self.prefixes.get(self.key.as_slice()) {
            return Some(p.clone());
        }
        let p = route(values)?;
        self.prefixes.insert(self.key.clone(), p.clone());
        Some(p)
    }
}

/// Splits a batch's routed rows by partition into `parts`, one piece per
/// partition, in the order the partitions first came.
fn split(
    batch: &RecordBatch,
    routed: &[(u32, &Record, Arc<str>)],
    parts: &mut Vec<(Arc<str>, RowsPiece)>,
) -> Result<(), String> {
    // Interned prefixes: one `Arc` per prefix, so its address names it.
    let mut index: foldhash::HashMap<*const u8, usize> = foldhash::HashMap::default();
    let mut groups: Vec<(Arc<str>, Vec<u32>, Vec<RowOf>)> = Vec::new();
    for (row, f, prefix) in routed {
        let g = *index.entry(prefix.as_ptr()).or_insert_with(|| {
            groups.push((prefix.clone(), Vec::new(), Vec::new()));
            groups.len() - 1
        });
        if let Some((_, rows, records)) = groups.get_mut(g) {
            rows.push(*row);
            records.push(RowOf {
                offset: f.offset,
                arrival_ms: f.arrival_ms,
                bytes: u32::try_from(f.data.len()).unwrap_or(u32::MAX),
            });
        }
    }
    for (prefix, rows, records) in groups {
        let batch = if rows.len() == batch.num_rows() {
            batch.clone()
        } else {
            arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| e.to_string())?
        };
        parts.push((prefix, RowsPiece { batch, records }));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
