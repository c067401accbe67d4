//! Dynamic partitioning: which prefix a record goes under, from its content.
//!
//! Partition keys come from jq expressions run on the record (Firehose's
//! `partitionKeyFromQuery`), evaluated by jaq, a jq implementation. The
//! record's time for `!{timestamp:…}` is its arrival, or, when configured, a
//! field of the record. A record that is not JSON, or whose expression fails,
//! yields no value or yields something that cannot be part of a key, gets a
//! reason instead of a prefix; delivery sends it to the error output.
//!
//! Everything here is pure CPU work on one record at a time; it runs on
//! blocking threads beside the log reads, never on the async runtime.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;

use super::keys::{KeyTemplate, TimestampCache};
use crate::record::Record;

/// A compiled jq filter. Values (`Val`) are not `Send`, but the compiled
/// program is: it is shared by every shard and run on any thread.
type JqFilter = jaq_core::Filter<data::JustLut<Val>>;

/// Longest partition key value, in bytes.
pub const KEY_VALUE_BYTES_MAX: usize = 512;

/// One jq expression, compiled.
pub struct Query {
    source: String,
    filter: JqFilter,
    /// The field it reads, when it is a plain path ([`path::simple_path`]).
    path: Option<Vec<String>>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Query").field(&self.source).finish()
    }
}

impl Query {
    /// Parses and compiles a jq expression; the error says what is wrong
    /// and where.
    pub fn compile(source: &str) -> Result<Query, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let modules = loader
            .load(
                &arena,
                File {
                    code: source,
                    path: (),
                },
            )
            .map_err(|errs| describe_load_errors(source, &errs))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| {
                let names: Vec<String> = errs
                    .iter()
                    .flat_map(|(_, es)| es.iter())
                    .map(|(name, undef)| format!("{} `{name}`", undef.as_str()))
                    .collect();
                format!(
                    "is not a valid jq expression: undefined {}",
                    names.join(", ")
                )
            })?;
        Ok(Query {
            source: source.to_string(),
            filter,
            path: path::simple_path(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the expression on a record; exactly one output is expected.
    fn eval_one(&self, input: &Val) -> Result<Val, String> {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, input.clone()));
        let first = match out.next() {
            None => return Err("yields no value".into()),
            Some(Ok(v)) => v,
            Some(Err(exn)) => {
                return Err(match exn.get_err() {
                    Ok(e) => format!("fails: {e}"),
                    Err(_) => "stops with `halt`, which is not allowed here".into(),
                });
            }
        };
        if out.next().is_some() {
            return Err("yields more than one value".into());
        }
        Ok(first)
    }
}

fn describe_load_errors(source: &str, errs: &jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut parts = Vec::new();
    for (_, e) in errs {
        match e {
            Error::Io(v) => parts.extend(v.iter().map(|(p, m)| format!("cannot load `{p}`: {m}"))),
            Error::Lex(v) => parts.extend(v.iter().map(|(expect, at)| {
                format!("expected {} at {}", expect.as_str(), position(source, at))
            })),
            Error::Parse(v) => parts.extend(v.iter().map(|(expect, at)| {
                format!("expected {} at {}", expect.as_str(), position(source, at))
            })),
        }
    }
    format!("is not a valid jq expression: {}", parts.join("; "))
}

/// Where a slice of the source begins, for error messages: `column N` or
/// `the end`.
fn position(source: &str, at: &str) -> String {
    let start = at.as_ptr() as usize;
    let base = source.as_ptr() as usize;
    match start.checked_sub(base) {
        Some(off) if off < source.len() => format!("column {}", off + 1),
        _ => "the end".into(),
    }
}

/// How the record's time field is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// `2026-11-24T10:00:00Z`, `2026-11-24T10:00:00.123+01:00`.
    Rfc3339,
    /// A number (or numeric string) of seconds since the epoch; fractions allowed.
    EpochSeconds,
    /// A number (or numeric string) of milliseconds since the epoch.
    EpochMillis,
    /// A chrono/strftime pattern such as `%d/%b/%Y:%H:%M:%S %z`; without a
    /// zone the time is UTC.
    Pattern(String),
}

impl TimeFormat {
    /// Reads a configured format, checking a pattern's syntax.
    pub fn parse(s: &str) -> Result<TimeFormat, String> {
        match s {
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            "epoch_seconds" => Ok(TimeFormat::EpochSeconds),
            "epoch_millis" => Ok(TimeFormat::EpochMillis),
            p if p.contains('%') => {
                use chrono::format::{Item, StrftimeItems};
                if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                    return Err(format!("`{p}` is not a valid strftime pattern"));
                }
                Ok(TimeFormat::Pattern(p.to_string()))
            }
            other => Err(format!(
                "`{other}` is not a time format (rfc3339, epoch_seconds, epoch_millis, or a strftime pattern with %)"
            )),
        }
    }

    fn name(&self) -> &str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::EpochSeconds => "epoch_seconds",
            TimeFormat::EpochMillis => "epoch_millis",
            TimeFormat::Pattern(p) => p,
        }
    }

    fn read(&self, v: &Val) -> Result<DateTime<Utc>, String> {
        let text = val_text(v);
        let bad = |why: &str| format!("`{}` is not a {} time{why}", display(v), self.name());
        match self {
            TimeFormat::Rfc3339 => {
                let s = text.ok_or_else(|| bad(": a string is expected"))?;
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| bad(&format!(" ({e})")))
            }
            TimeFormat::EpochSeconds | TimeFormat::EpochMillis => {
                let n = match v {
                    Val::Num(_) => jaq_std::ValT::as_f64(v),
                    _ => text.and_then(|s| s.trim().parse::<f64>().ok()),
                }
                .filter(|n| n.is_finite())
                .ok_or_else(|| bad(": a number is expected"))?;
                let ms = if *self == TimeFormat::EpochSeconds {
                    n * 1000.0
                } else {
                    n
                };
                // Outside chrono's range (about ±262,000 years) is refused.
                if ms.abs() > 8.0e15 {
                    return Err(bad(": out of range"));
                }
                DateTime::<Utc>::from_timestamp_millis(ms.floor() as i64)
                    .ok_or_else(|| bad(": out of range"))
            }
            TimeFormat::Pattern(p) => {
                let s = text.ok_or_else(|| bad(": a string is expected"))?;
                if let Ok(t) = DateTime::parse_from_str(&s, p) {
                    return Ok(t.with_timezone(&Utc));
                }
                if let Ok(t) = NaiveDateTime::parse_from_str(&s, p) {
                    return Ok(t.and_utc());
                }
                NaiveDate::parse_from_str(&s, p)
                    .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                    .map_err(|e| bad(&format!(" ({e})")))
            }
        }
    }
}

/// The record's own time, for `!{timestamp:…}`.
#[derive(Debug)]
pub struct RecordTime {
    pub query: Query,
    pub format: TimeFormat,
}

/// A stream's dynamic partitioning, compiled.
#[derive(Debug)]
pub struct Partitioner {
    /// (name, expression), in the order `partitionKeyFromQuery` indexes them.
    pub keys: Vec<(String, Query)>,
    pub time: Option<RecordTime>,
    /// The destination prefix the keys are rendered into.
    pub template: KeyTemplate,
    /// Open partitions per shard; opening one more flushes the oldest.
    pub open_partitions_max: usize,
    /// Bytes held by one shard's open partitions together; past it, the
    /// oldest partitions are flushed.
    pub open_bytes_max: u64,
    /// Where each record's JSON is parsed once, how many records a read
    /// waits to gather.
    pub read_gather: ReadGather,
}

/// How many durable records a shard gathers before it reads them, where
/// each chunk read is decoded and split by partition as a whole: what that
/// costs per chunk (a decoder, a piece per partition) is worth it only over
/// many records. A read waits for `records_min` records, or until the first
/// of them has waited `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadGather {
    pub records_min: u64,
    pub wait: std::time::Duration,
}

impl ReadGather {
    /// 2,048 records or 50 ms: a small part of any buffering interval.
    pub const DEFAULT: ReadGather = ReadGather {
        records_min: 2048,
        wait: std::time::Duration::from_millis(50),
    };
}

/// Per-thread scratch for [`Partitioner::route`], kept from one record to
/// the next so that routing a record allocates nothing in the common case:
/// its key values and its prefix are written over the last record's, and
/// a prefix already made is shared, not made again.
#[derive(Default)]
pub struct RouteScratch {
    times: TimestampCache,
    values: Vec<String>,
    transform_values: Vec<String>,
    prefix: String,
    /// The prefixes made so far, at most [`INTERNED_MAX`]; foldhash, not
    /// SipHash, as it is asked once per record and bounded.
    interned: foldhash::HashSet<Arc<str>>,
}

/// Most prefixes a [`RouteScratch`] keeps to share; past it, it starts over.
pub const INTERNED_MAX: usize = 4096;

impl RouteScratch {
    /// Renders `template` with the key values in `values` and
    /// `transform_values` at time `at`: the prefix, shared.
    fn render(&mut self, template: &KeyTemplate, at: DateTime<Utc>) -> Arc<str> {
        template.render_partition(
            at,
            &self.values,
            &self.transform_values,
            &mut self.times,
            &mut self.prefix,
        );
        self.intern()
    }

    /// The prefix just rendered, shared with the records before it that
    /// had the same.
    fn intern(&mut self) -> Arc<str> {
        if let Some(p) = self.interned.get(self.prefix.as_str()) {
            return p.clone();
        }
        if self.interned.len() >= INTERNED_MAX {
            self.interned.clear();
        }
        let p: Arc<str> = Arc::from(self.prefix.as_str());
        self.interned.insert(p.clone());
        p
    }
}

impl path::PathOf for (String, Query) {
    fn path(&self) -> &[String] {
        self.1.path.as_deref().unwrap_or_default()
    }
}

/// Whether `name` may name a partition key (`!{partitionKeyFromQuery:name}`):
/// letters, digits, `_` and `-`.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Partitioner {
    /// The prefix this record goes under, or why it cannot be partitioned.
    /// The prefix may hold random-string placeholders that
    /// [`KeyTemplate::finish_partition`] fills in when the object is named.
    pub fn route(
        &self,
        frame: &Record,
        transform_keys: &[(String, String)],
        scratch: &mut RouteScratch,
    ) -> Result<Arc<str>, String> {
        scratch.transform_values.clear();
        for name in self.template.transform_keys() {
            let Some((_, v)) = transform_keys.iter().find(|(k, _)| k == name) else {
                return Err(format!("the transform set no partition key `{name}`"));
            };
            check_key_value(v)
                .map_err(|e| format!("the transform's partition key `{name}` {e}"))?;
            scratch.transform_values.push(v.clone());
        }
        let needs_json = !self.keys.is_empty() || self.time.is_some();
        if needs_json && self.time.is_none() && self.fast_keys(frame, scratch) {
            return Ok(scratch.render(&self.template, arrival(frame)));
        }
        scratch.values.clear();
        let at = if needs_json {
            let record = jaq_json::read::parse_single(&frame.data).map_err(|e| {
                format!("record is not JSON ({e}); dynamic partitioning reads JSON records")
            })?;
            for (name, q) in &self.keys {
                let v = q
                    .eval_one(&record)
                    .map_err(|e| format!("partition key `{name}` (`{}`) {e}", q.source()))?;
                let s = key_value(&v)
                    .map_err(|e| format!("partition key `{name}` (`{}`) {e}", q.source()))?;
                scratch.values.push(s);
            }
            match &self.time {
                Some(t) => {
                    let v = t
                        .query
                        .eval_one(&record)
                        .map_err(|e| format!("record time (`{}`) {e}", t.query.source()))?;
                    t.format
                        .read(&v)
                        .map_err(|e| format!("record time (`{}`): {e}", t.query.source()))?
                }
                None => arrival(frame),
            }
        } else {
            arrival(frame)
        };
        Ok(scratch.render(&self.template, at))
    }
}

impl Partitioner {
    /// Each key's top-level field name, in key order, when every key is a
    /// plain path one level deep, the time is the arrival's and no key comes
    /// from a transform: then a record's keys are those fields' values, and
    /// [`Partitioner::route_values`] can route it from them without reading
    /// its JSON. None otherwise.
    pub fn top_level_fields(&self) -> Option<Vec<&str>> {
        if self.time.is_some() || self.template.uses_transform_keys() || self.keys.is_empty() {
            return None;
        }
        self.keys
            .iter()
            .map(|(_, q)| match q.path.as_deref() {
                Some([one]) => Some(one.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The prefix of a record whose keys are `values` (strings, in key
    /// order, as [`Partitioner::top_level_fields`] names them) and which
    /// arrived at `arrival_ms`: what [`Partitioner::route`] gives the same
    /// record. None when a value cannot be part of a key; `route` then says
    /// why.
    pub fn route_values<'v>(
        &self,
        values: impl IntoIterator<Item = &'v str>,
        arrival_ms: i64,
        scratch: &mut RouteScratch,
    ) -> Option<Arc<str>> {
        scratch.values.truncate(self.keys.len());
        let mut n = 0;
        for v in values {
            check_key_value(v).ok()?;
            match scratch.values.get_mut(n) {
                Some(s) => {
                    s.clear();
                    s.push_str(v);
                }
                None => scratch.values.push(v.to_string()),
            }
            n += 1;
        }
        if n != self.keys.len() {
            return None;
        }
        let at = DateTime::<Utc>::from_timestamp_millis(arrival_ms).unwrap_or_else(Utc::now);
        scratch.transform_values.clear();
        Some(scratch.render(&self.template, at))
    }
}

impl Partitioner {
    /// The keys from one scan of the record when every key is a plain path
    /// and each value one jq would key by as it is; false (nothing kept)
    /// when jq must run instead.
    fn fast_keys(&self, frame: &Record, scratch: &mut RouteScratch) -> bool {
        self.keys.iter().all(|(_, q)| q.path.is_some())
            && path::read_into(&frame.data, &self.keys, &mut scratch.values)
            && scratch.values.iter().all(|v| check_key_value(v).is_ok())
    }
}

fn arrival(frame: &Record) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(frame.arrival_ms).unwrap_or_else(Utc::now)
}

/// The text of a string value.
fn val_text(v: &Val) -> Option<String> {
    match v {
        Val::TStr(b) | Val::BStr(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn display(v: &Val) -> String {
    let s = val_text(v).unwrap_or_else(|| v.to_string());
    if s.chars().count() > 64 {
        let cut: String = s.chars().take(64).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// A key value as it goes into an object key: strings as they are, numbers
/// and booleans as JSON writes them. Refused: null, arrays, objects, empty
/// strings, `.`/`..`, and anything with `/`, `\` or control characters, which
/// would add or escape path levels.
fn key_value(v: &Val) -> Result<String, String> {
    let s = match v {
        Val::TStr(_) | Val::BStr(_) => val_text(v).unwrap_or_default(),
        Val::Num(_) | Val::Bool(_) => v.to_string(),
        Val::Null => return Err("yields null".into()),
        Val::Arr(_) => return Err("yields an array, not a string, number or boolean".into()),
        Val::Obj(_) => return Err("yields an object, not a string, number or boolean".into()),
    };
    check_key_value(&s)?;
    Ok(s)
}

/// The rules every key value follows, whatever set it.
fn check_key_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("yields an empty string".into());
    }
    if s.len() > KEY_VALUE_BYTES_MAX {
        return Err(format!(
            "yields {} bytes; a key value is at most {KEY_VALUE_BYTES_MAX}",
            s.len()
        ));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        let shown: String = s.chars().take(64).collect();
        return Err(format!(
            "yields `{shown}`, which cannot be part of an object key (no /, \\, control characters, . or ..)"
        ));
    }
    Ok(())
}

mod path;

#[cfg(test)]
impl Partitioner {
    /// A partitioner for tests: `keys` as (name, jq expression) rendered
    /// into `prefix`, the record's own time from `time` (query, format) if
    /// given, transform keys allowed in the prefix if `transform`, and
    /// small bounds. Test code only: it panics on a prefix, query or format
    /// that does not parse, which is a mistake in the test itself.
    pub(crate) fn for_tests(
        prefix: &str,
        keys: &[(&str, &str)],
        time: Option<(&str, &str)>,
        transform: bool,
    ) -> Partitioner {
        let names: Vec<String> = keys.iter().map(|(n, _)| n.to_string()).collect();
        let template = KeyTemplate::parse_with(
            prefix,
            crate::route::keys::PrefixKind::Prefix,
            crate::route::keys::KeyContext {
                query_keys: Some(&names),
                transform,
            },
        )
        .unwrap();
        Partitioner {
            keys: keys
                .iter()
                .map(|(n, q)| (n.to_string(), Query::compile(q).unwrap()))
                .collect(),
            time: time.map(|(q, f)| RecordTime {
                query: Query::compile(q).unwrap(),
                format: TimeFormat::parse(f).unwrap(),
            }),
            template,
            open_partitions_max: 500,
            open_bytes_max: 1 << 20,
            read_gather: ReadGather::DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests;
