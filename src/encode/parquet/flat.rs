//! Flat JSON objects decoded straight into Arrow columns, in one pass over
//! each record: the common shape of log and event records (an object of
//! strings and integers) without a tape in between.
//!
//! It takes only what it reads exactly as the general decoder
//! (`arrow_json`) does: a schema of `Utf8` and `Int64` columns, each record
//! one object whose keys hold no escapes, whose strings hold no control
//! characters and only the escapes `arrow_json` reads (unescaped as it
//! unescapes them), whose integers fit, whose members each appear once,
//! and whose members outside the schema are scalars. Anything else (a
//! float, a nested value, a duplicate, a missing non-nullable field, an
//! escaped key, invalid UTF-8 or escape) and the whole chunk goes to the
//! general decoder, which gives the same rows or says why a record does
//! not fit.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};

use crate::record::Record;

/// Fields in a schema it takes: which members a record has is one bit each.
const FIELDS_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Utf8,
    Int64,
}

/// A schema's columns as the flat decoder reads them.
#[derive(Debug)]
pub(crate) struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<Box<[u8]>>,
    kinds: Vec<Kind>,
    nullable: Vec<bool>,
}

enum Column {
    Utf8(StringBuilder),
    Int64(Int64Builder),
}

impl Column {
    fn append_null(&mut self) {
        match self {
            Column::Utf8(c) => c.append_null(),
            Column::Int64(c) => c.append_null(),
        }
    }
}

impl FlatDecoder {
    /// For a schema of `Utf8` and `Int64` columns only (at most 64).
    pub(crate) fn new(schema: &SchemaRef) -> Option<FlatDecoder> {
        if schema.fields().is_empty() || schema.fields().len() > FIELDS_MAX {
            return None;
        }
        let mut kinds = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            kinds.push(match f.data_type() {
                DataType::Utf8 => Kind::Utf8,
                DataType::Int64 => Kind::Int64,
                _ => return None,
            });
        }
        Some(FlatDecoder {
            schema: schema.clone(),
            names: schema
                .fields()
                .iter()
                .map(|f| f.name().as_bytes().into())
                .collect(),
            kinds,
            nullable: schema.fields().iter().map(|f| f.is_nullable()).collect(),
        })
    }

    /// The records as one batch, one row each; None: some record is not
    /// one this decoder reads exactly (see the module's documentation).
    pub(crate) fn decode(&self, records: &[Record]) -> Option<RecordBatch> {
        let bytes: usize = records.iter().map(|r| r.data.len()).sum();
        // Offsets are i32: a chunk this large goes the general way.
        if bytes > i32::MAX as usize {
            return None;
        }
        let n = records.len();
        let mut cols: Vec<Column> = self
            .kinds
            .iter()
            .map(|k| match k {
                Kind::Utf8 => Column::Utf8(StringBuilder::with_capacity(
                    n,
                    bytes / self.kinds.len().max(1),
                )),
                Kind::Int64 => Column::Int64(Int64Builder::with_capacity(n)),
            })
            .collect();
        let mut scratch = String::new();
        for r in records {
            let text = simdutf8::basic::from_utf8(&r.data).ok()?;
            self.record(text, &mut cols, &mut scratch)?;
        }
        let arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| -> ArrayRef {
                match c {
                    Column::Utf8(mut b) => Arc::new(b.finish()),
                    Column::Int64(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), arrays).ok()
    }

    /// Reads one record's object into the columns, one value each.
    fn record(&self, text: &str, cols: &mut [Column], scratch: &mut String) -> Option<()> {
        let b = text.as_bytes();
        let mut at = ws(b, 0);
        if b.get(at) != Some(&b'{') {
            return None;
        }
        at = ws(b, at + 1);
        let mut seen: u64 = 0;
        // Members usually come in the schema's order: try the next first.
        let mut next = 0;
        if b.get(at) == Some(&b'}') {
            at += 1;
        } else {
            loop {
                let (key, after) = plain_string(b, at)?;
                at = ws(b, after);
                if b.get(at) != Some(&b':') {
                    return None;
                }
                at = ws(b, at + 1);
                let field = self.field(&b[key.clone()], next);
                match field {
                    Some(i) => {
                        if seen & (1 << i) != 0 {
                            return None;
                        }
                        seen |= 1 << i;
                        next = i + 1;
                        at = self.value(text, at, i, &mut cols[i], scratch)?;
                    }
                    None => at = skip_scalar(text, at, scratch)?,
                }
                at = ws(b, at);
                match b.get(at) {
                    Some(b',') => at = ws(b, at + 1),
                    Some(b'}') => {
                        at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if ws(b, at) != b.len() {
            return None;
        }
        // The members left out: null, where the schema allows it.
        for (i, col) in cols.iter_mut().enumerate() {
            if seen & (1 << i) == 0 {
                if !self.nullable[i] {
                    return None;
                }
                col.append_null();
            }
        }
        Some(())
    }

    /// The schema's field named `key`, trying `hint` first.
    fn field(&self, key: &[u8], hint: usize) -> Option<usize> {
        if self.names.get(hint).is_some_and(|n| **n == *key) {
            return Some(hint);
        }
        self.names.iter().position(|n| **n == *key)
    }

    /// Reads the value at `at` into column `i`; where it ends.
    fn value(
        &self,
        text: &str,
        at: usize,
        i: usize,
        col: &mut Column,
        scratch: &mut String,
    ) -> Option<usize> {
        let b = text.as_bytes();
        if b[at..].starts_with(b"null") {
            if !self.nullable[i] {
                return None;
            }
            col.append_null();
            return Some(at + 4);
        }
        match col {
            Column::Utf8(c) => match plain_string(b, at) {
                Some((r, after)) => {
                    c.append_value(text.get(r)?);
                    Some(after)
                }
                None => {
                    let after = escaped_string(text, at, scratch)?;
                    c.append_value(scratch.as_str());
                    Some(after)
                }
            },
            Column::Int64(c) => {
                let (v, after) = integer(b, at)?;
                c.append_value(v);
                Some(after)
            }
        }
    }
}

/// Past JSON whitespace from `at`.
fn ws(b: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(at) {
        at += 1;
    }
    at
}

/// A string at `at` with no escape and no control character: the range of
/// its contents, and where it ends.
fn plain_string(b: &[u8], at: usize) -> Option<(std::ops::Range<usize>, usize)> {
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let end = start + string_end(b.get(start..)?)?;
    Some((start..end, end + 1))
}

/// Where the closing quote of a string's contents `s` is, if no escape and
/// no control character comes before it.
fn string_end(s: &[u8]) -> Option<usize> {
    let i = special(s)?;
    (s.get(i) == Some(&b'"')).then_some(i)
}

/// Where the first quote, backslash or control character of `s` is: the
/// end of a string's plain run. Eight bytes at a time: the strings of
/// records are short, too short for a vector search to set up.
fn special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(word) = s.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let v = u64::from_le_bytes(w);
        // A byte's high bit set where it is below 0x20, a quote or a
        // backslash; exact up to the first such byte, which is all that
        // is read.
        let below = v.wrapping_sub(ONES * 0x20) & !v;
        let quote =
            (v ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(v ^ (ONES * u64::from(b'"')));
        let slash =
            (v ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(v ^ (ONES * u64::from(b'\\')));
        let hit = (below | quote | slash) & HIGH;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    s.get(at..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|i| at + i)
}

/// A JSON integer at `at` that fits an i64, and where it ends; None for any
/// other number (a fraction, an exponent, a leading zero) or none.
fn integer(b: &[u8], at: usize) -> Option<(i64, usize)> {
    let neg = b.get(at) == Some(&b'-');
    let digits = if neg { at + 1 } else { at };
    let mut end = digits;
    while b.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let n = end - digits;
    if n == 0 || (n > 1 && b[digits] == b'0') || n > 19 {
        return None;
    }
    if let Some(b'.' | b'e' | b'E') = b.get(end) {
        return None;
    }
    // i64's range, with the sign: parse the digits as i128.
    let mut v: i128 = 0;
    for &d in &b[digits..end] {
        v = v * 10 + i128::from(d - b'0');
    }
    let v = if neg { -v } else { v };
    Some((i64::try_from(v).ok()?, end))
}

/// A string at `at` with escapes, unescaped into `out` as `arrow_json`
/// unescapes it; where it ends. None: no string there, a control
/// character, or an escape `arrow_json` refuses (which it then explains).
fn escaped_string(text: &str, at: usize, out: &mut String) -> Option<usize> {
    let b = text.as_bytes();
    if b.get(at) != Some(&b'"') {
        return None;
    }
    out.clear();
    let mut from = at + 1;
    loop {
        let run = special(b.get(from..)?)?;
        out.push_str(text.get(from..from + run)?);
        let at = from + run;
        match b[at] {
            b'"' => return Some(at + 1),
            b'\\' => {}
            _ => return None,
        }
        let (c, len) = match b.get(at + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let high = hex4(b.get(at + 2..at + 6)?)?;
                match char::from_u32(u32::from(high)) {
                    Some(c) => (c, 6),
                    None => {
                        // A surrogate: its pair must follow, as `\uXXXX`.
                        if b.get(at + 6..at + 8)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(b.get(at + 8..at + 12)?)?;
                        if !(0xD800..=0xDBFF).contains(&high) || !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        let n = ((u32::from(high) - 0xD800) << 10)
                            | (u32::from(low) - 0xDC00 + 0x1_0000);
                        (char::from_u32(n)?, 12)
                    }
                }
            }
            _ => return None,
        };
        out.push(c);
        from = at + len;
    }
}

/// Four hex digits, either case.
fn hex4(h: &[u8]) -> Option<u16> {
    h.iter().try_fold(0u16, |v, &d| {
        Some((v << 4) | u16::try_from(char::from(d).to_digit(16)?).ok()?)
    })
}

/// Past a scalar at `at` (a string, a number, true, false or null); None
/// for an object, an array or anything not JSON.
fn skip_scalar(text: &str, at: usize, scratch: &mut String) -> Option<usize> {
    let b = text.as_bytes();
    match b.get(at)? {
        b'"' => match plain_string(b, at) {
            Some((_, after)) => Some(after),
            // Its escapes must be ones `arrow_json` reads.
            None => escaped_string(text, at, scratch),
        },
        b't' if b[at..].starts_with(b"true") => Some(at + 4),
        b'f' if b[at..].starts_with(b"false") => Some(at + 5),
        b'n' if b[at..].starts_with(b"null") => Some(at + 4),
        b'-' | b'0'..=b'9' => number(b, at),
        _ => None,
    }
}

/// Past a JSON number at `at` (RFC 8259's grammar), or None.
fn number(b: &[u8], mut at: usize) -> Option<usize> {
    let digits = |b: &[u8], mut at: usize| {
        let from = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        (at > from).then_some(at)
    };
    if b.get(at) == Some(&b'-') {
        at += 1;
    }
    match b.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => at = digits(b, at)?,
        _ => return None,
    }
    if b.get(at) == Some(&b'.') {
        at = digits(b, at + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = b.get(at) {
            at += 1;
        }
        at = digits(b, at)?;
    }
    Some(at)
}

#[cfg(test)]
mod tests;
