//! A JSON parser for the decoder and schema inference: it checks a record
//! against RFC 8259 and lays it out as a flat tape of nodes whose strings and
//! numbers point into the record, so that columns read their values without
//! copying and a decimal keeps every digit it was written with.
//!
//! It must not allocate per value once warm (escaped strings share one
//! buffer), recurse deeper than 128 levels, or panic on any input.

use super::{PathSegment, offset};

/// Deepest nesting of JSON arrays and objects accepted.
const JSON_DEPTH_MAX: usize = 128;

/// One JSON value in a [`JsonTape`]. Spans are byte offsets into the parsed
/// text, except escaped strings, whose resolved text lives in the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonNode {
    Null,
    Bool(bool),
    Number {
        start: u32,
        end: u32,
    },
    String {
        start: u32,
        end: u32,
        escaped: bool,
    },
    /// `len` entries follow, each a key node then its value; `next` is the
    /// index of the first node after the object.
    Object {
        start: u32,
        end: u32,
        len: u32,
        next: u32,
    },
    /// `len` values follow; `next` as for objects.
    Array {
        start: u32,
        end: u32,
        len: u32,
        next: u32,
    },
}

/// A parsed JSON text as a flat list of nodes in document order, reused
/// across records so that parsing allocates nothing once warm.
#[derive(Debug, Default)]
pub struct JsonTape {
    nodes: Vec<JsonNode>,
    /// Resolved text of strings that had escapes.
    unescaped: String,
}

impl JsonTape {
    /// Parses one JSON value (RFC 8259, nesting at most 128 deep) with
    /// nothing but whitespace around it.
    pub fn parse(&mut self, text: &str) -> Result<(), String> {
        self.nodes.clear();
        self.unescaped.clear();
        if u32::try_from(text.len()).is_err() {
            return Err("json text is larger than 4 GiB".to_string());
        }
        let mut parser = JsonParser {
            text,
            b: text.as_bytes(),
            pos: 0,
            tape: self,
        };
        parser.value(0)?;
        parser.whitespace();
        if parser.pos != parser.b.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(())
    }

    pub fn node(&self, at: usize) -> Option<JsonNode> {
        self.nodes.get(at).copied()
    }

    /// The index of the first node after the value at `at`.
    fn after(&self, at: usize) -> usize {
        match self.node(at) {
            Some(JsonNode::Object { next, .. } | JsonNode::Array { next, .. }) => next as usize,
            _ => at + 1,
        }
    }

    /// The text of a node: a string's value, a number's digits, or the
    /// JSON text of a literal, object or array as written.
    pub fn text<'a>(&'a self, input: &'a str, node: JsonNode) -> &'a str {
        let span =
            |start: u32, end: u32| input.get(start as usize..end as usize).unwrap_or_default();
        match node {
            JsonNode::Null => "null",
            JsonNode::Bool(true) => "true",
            JsonNode::Bool(false) => "false",
            JsonNode::String {
                start,
                end,
                escaped: true,
            } => self
                .unescaped
                .get(start as usize..end as usize)
                .unwrap_or_default(),
            JsonNode::Number { start, end }
            | JsonNode::String { start, end, .. }
            | JsonNode::Object { start, end, .. }
            | JsonNode::Array { start, end, .. } => span(start, end),
        }
    }

    /// The nodes directly inside the object or array at `at`: for an object
    /// the key nodes (each value is at key + 1), for an array the values.
    pub fn children(&self, at: usize) -> Children<'_> {
        let left = match self.node(at) {
            Some(JsonNode::Object { len, .. } | JsonNode::Array { len, .. }) => len,
            _ => 0,
        };
        let object = matches!(self.node(at), Some(JsonNode::Object { .. }));
        Children {
            tape: self,
            next: at + 1,
            left,
            object,
        }
    }

    /// Follows one path step from the value at `at`; `None` when the step
    /// finds nothing. With `ignore_case`, a key not found exactly matches
    /// the first key equal to it ignoring case.
    pub fn get(
        &self,
        input: &str,
        at: usize,
        segment: &PathSegment,
        ignore_case: bool,
    ) -> Option<usize> {
        match (self.node(at)?, segment) {
            (JsonNode::Object { .. }, PathSegment::Key(key)) => {
                let mut loose = None;
                for k in self.children(at) {
                    let name = self.text(input, self.node(k)?);
                    if name == key {
                        return Some(k + 1);
                    }
                    if ignore_case && loose.is_none() && same_ignoring_case(name, key) {
                        loose = Some(k + 1);
                    }
                }
                loose
            }
            (JsonNode::Array { .. }, PathSegment::Index(i)) => self.children(at).nth(*i),
            _ => None,
        }
    }
}

fn same_ignoring_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Iterator over the children of a tape object or array.
pub struct Children<'t> {
    tape: &'t JsonTape,
    next: usize,
    left: u32,
    object: bool,
}

impl Iterator for Children<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let at = self.next;
        let value = if self.object { at + 1 } else { at };
        self.next = self.tape.after(value);
        Some(at)
    }
}

struct JsonParser<'a, 't> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    tape: &'t mut JsonTape,
}

impl JsonParser<'_, '_> {
    fn error(&self, what: &str) -> String {
        format!("invalid json at byte {}: {what}", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        self.whitespace();
        match self.peek() {
            Some(b'{') => self.container(depth, true),
            Some(b'[') => self.container(depth, false),
            Some(b'"') => {
                let node = self.string()?;
                self.tape.nodes.push(node);
                Ok(())
            }
            Some(b't') => self.literal("true", JsonNode::Bool(true)),
            Some(b'f') => self.literal("false", JsonNode::Bool(false)),
            Some(b'n') => self.literal("null", JsonNode::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn literal(&mut self, word: &str, node: JsonNode) -> Result<(), String> {
        if !self
            .b
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()))
        {
            return Err(self.error("expected a value"));
        }
        self.pos += word.len();
        self.tape.nodes.push(node);
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - from
    }

    fn number(&mut self) -> Result<(), String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        let (start, end) = (offset(start), offset(self.pos));
        self.tape.nodes.push(JsonNode::Number { start, end });
        Ok(())
    }

    fn container(&mut self, depth: usize, object: bool) -> Result<(), String> {
        if depth >= JSON_DEPTH_MAX {
            return Err(self.error("nesting too deep"));
        }
        let at = self.tape.nodes.len();
        let start = offset(self.pos);
        self.tape.nodes.push(JsonNode::Null);
        self.pos += 1;
        let close = if object { b'}' } else { b']' };
        let mut len: u32 = 0;
        self.whitespace();
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                if object {
                    self.key()?;
                }
                self.value(depth + 1)?;
                len = len.saturating_add(1);
                self.whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(c) if c == close => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error("expected , or a closing bracket")),
                }
            }
        }
        let (end, next) = (offset(self.pos), offset(self.tape.nodes.len()));
        let node = if object {
            JsonNode::Object {
                start,
                end,
                len,
                next,
            }
        } else {
            JsonNode::Array {
                start,
                end,
                len,
                next,
            }
        };
        if let Some(slot) = self.tape.nodes.get_mut(at) {
            *slot = node;
        }
        Ok(())
    }

    fn key(&mut self) -> Result<(), String> {
        self.whitespace();
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key"));
        }
        let node = self.string()?;
        self.tape.nodes.push(node);
        self.whitespace();
        if self.peek() != Some(b':') {
            return Err(self.error("expected :"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Position of the next `"`, `\` or control character from `pos`.
    fn next_special(&self) -> Option<usize> {
        let rest = self.b.get(self.pos..)?;
        Some(self.pos + special_in(rest)?)
    }

    fn string(&mut self) -> Result<JsonNode, String> {
        self.pos += 1;
        let start = self.pos;
        self.pos = self
            .next_special()
            .ok_or_else(|| self.error("unterminated string"))?;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let (start, end) = (offset(start), offset(self.pos - 1));
                Ok(JsonNode::String {
                    start,
                    end,
                    escaped: false,
                })
            }
            Some(b'\\') => self.escaped_string(start),
            _ => Err(self.error("control character in string")),
        }
    }

    /// Continues a string at its first `\`, resolving escapes into the tape.
    fn escaped_string(&mut self, start: usize) -> Result<JsonNode, String> {
        let from = offset(self.tape.unescaped.len());
        let mut segment = start;
        loop {
            let piece = self.text.get(segment..self.pos).unwrap_or_default();
            self.tape.unescaped.push_str(piece);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    let end = offset(self.tape.unescaped.len());
                    return Ok(JsonNode::String {
                        start: from,
                        end,
                        escaped: true,
                    });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    self.tape.unescaped.push(c);
                }
                _ => return Err(self.error("control character in string")),
            }
            segment = self.pos;
            self.pos = self
                .next_special()
                .ok_or_else(|| self.error("unterminated string"))?;
        }
    }

    /// Reads the escape after a `\` (at `pos`).
    fn escape(&mut self) -> Result<char, String> {
        let c = self
            .peek()
            .ok_or_else(|| self.error("unterminated string"))?;
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return Err(self.error("invalid escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .b
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        let mut value = 0;
        for d in digits {
            let v = char::from(*d)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            value = value * 16 + v;
        }
        self.pos += 4;
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error("lone surrogate in \\u escape"));
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("lone surrogate in \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone surrogate in \\u escape")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }
}

/// Position of the first `"`, `\\` or control character in `bytes`,
/// looking at eight bytes at a time while there is none.
pub(super) fn special_in(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let is_special = |c: &u8| *c == b'"' || *c == b'\\' || *c < 0x20;
    let mut chunks = bytes.chunks_exact(8);
    let mut skipped = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = has_zero(w ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        if quote | backslash | control != 0
            && let Some(i) = chunk.iter().position(is_special)
        {
            return Some(skipped + i);
        }
        skipped += 8;
    }
    let tail = chunks.remainder().iter().position(is_special)?;
    Some(skipped + tail)
}
