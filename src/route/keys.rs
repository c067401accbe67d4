//! Object key layout, as Firehose writes it.
//!
//! A prefix is a template: literal text with `!{namespace:value}` expressions.
//! Without any `timestamp` expression Firehose appends `YYYY/MM/DD/HH/` (UTC)
//! to the literal prefix, inserting no slash. The object name after the prefix
//! is deterministic from (stream, shard, first offset, last offset), so a
//! retried upload overwrites the same key instead of adding a duplicate.
//! This module only computes strings; it never talks to a store.

use chrono::{DateTime, Utc};
use rand::RngExt;

/// One piece of a parsed prefix template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `!{timestamp:...}` converted to a chrono format string.
    Timestamp(String),
    RandomString,
    ErrorOutputType,
    /// `!{partitionKeyFromQuery:name}`: the value of the key at this index
    /// of the stream's `dynamic_partitioning.keys`.
    QueryKey(usize),
    /// `!{partitionKeyFromLambda:name}`: the transform's key at this index
    /// of `KeyTemplate::transform_keys`.
    TransformKey(usize),
}

/// What a template may refer to besides time and Firehose's own values.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyContext<'a> {
    /// The names of `dynamic_partitioning.keys`, if the stream partitions.
    pub query_keys: Option<&'a [String]>,
    /// Whether the stream has a transform, which may set partition keys.
    pub transform: bool,
}

/// Stands in for `!{firehose:random-string}` in a partition's prefix until
/// its object is named (key values and literals hold no control characters).
const RANDOM_PLACEHOLDER: char = '\u{1}';

/// Rendered `!{timestamp:…}` parts for the last second seen: rendering a
/// chrono format per record would cost more than the partitioning itself.
#[derive(Debug, Default)]
pub struct TimestampCache {
    second: Option<i64>,
    rendered: Vec<String>,
}

/// Where a template is used; some expressions are allowed only in one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixKind {
    Prefix,
    ErrorOutputPrefix,
}

/// A parsed `prefix` or `error_output_prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
    source: String,
    /// The transform's partition keys the template uses, in first-use order.
    transform_keys: Vec<String>,
}

/// Longest prefix accepted as configured (Firehose's limit).
pub const PREFIX_CHARS_MAX: usize = 1024;

impl KeyTemplate {
    /// Parses a template, naming the first problem in its message.
    pub fn parse(source: &str, kind: PrefixKind) -> Result<KeyTemplate, String> {
        Self::parse_with(source, kind, KeyContext::default())
    }

    /// Parses a template that may use the stream's partition keys.
    pub fn parse_with(
        source: &str,
        kind: PrefixKind,
        ctx: KeyContext<'_>,
    ) -> Result<KeyTemplate, String> {
        if source.chars().count() > PREFIX_CHARS_MAX {
            return Err(format!("must be at most {PREFIX_CHARS_MAX} characters"));
        }
        if source.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        let mut parts = Vec::new();
        let mut transform_keys: Vec<String> = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err("an expression `!{` is never closed with `}`".into());
            };
            let expr = &after[..end];
            parts.push(Self::parse_expression(
                expr,
                kind,
                ctx,
                &mut transform_keys,
            )?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        let has_expr = parts.iter().any(|p| !matches!(p, Part::Literal(_)));
        if kind == PrefixKind::ErrorOutputPrefix
            && has_expr
            && !parts.contains(&Part::ErrorOutputType)
        {
            return Err("an error_output_prefix with expressions must contain `!{firehose:error-output-type}`".into());
        }
        // Firehose's default time layout, unless the stream partitions: a
        // partitioned prefix is the layout the user wrote, exactly.
        if ctx.query_keys.is_none()
            && transform_keys.is_empty()
            && !parts.iter().any(|p| matches!(p, Part::Timestamp(_)))
        {
            parts.push(Part::Timestamp("%Y/%m/%d/%H/".into()));
        }
        Ok(KeyTemplate {
            parts,
            source: source.to_string(),
            transform_keys,
        })
    }

    /// The part an expression `!{ns:value}` stands for (`expr` is what is
    /// between the braces); a transform key it names is added to
    /// `transform_keys` if new.
    fn parse_expression(
        expr: &str,
        kind: PrefixKind,
        ctx: KeyContext<'_>,
        transform_keys: &mut Vec<String>,
    ) -> Result<Part, String> {
        let (ns, value) = expr.split_once(':').unwrap_or((expr, ""));
        let part = match (ns, value) {
            ("timestamp", fmt) => Part::Timestamp(java_time_to_chrono(fmt)?),
            ("firehose", "random-string") => Part::RandomString,
            ("firehose", "error-output-type") => {
                if kind == PrefixKind::Prefix {
                    return Err(
                        "`!{firehose:error-output-type}` is allowed only in error_output_prefix"
                            .into(),
                    );
                }
                Part::ErrorOutputType
            }
            ("partitionKeyFromQuery", name) => {
                if kind == PrefixKind::ErrorOutputPrefix {
                    return Err(format!(
                        "`!{{{expr}}}` is allowed only in prefix: a record in the error output may have no key"
                    ));
                }
                let Some(keys) = ctx.query_keys else {
                    return Err(format!(
                        "`!{{{expr}}}` needs dynamic_partitioning.keys, which this stream does not configure"
                    ));
                };
                match keys.iter().position(|k| k == name) {
                    Some(i) => Part::QueryKey(i),
                    None => {
                        return Err(format!(
                            "`{name}` in `!{{{expr}}}` is not one of dynamic_partitioning.keys ({})",
                            keys.join(", ")
                        ));
                    }
                }
            }
            ("partitionKeyFromLambda" | "partitionKeyFromTransform", name) => {
                if kind == PrefixKind::ErrorOutputPrefix {
                    return Err(format!(
                        "`!{{{expr}}}` is allowed only in prefix: a record in the error output may have no key"
                    ));
                }
                if !ctx.transform {
                    return Err(format!(
                        "`!{{{expr}}}` needs a transform that sets partition keys, which this stream does not configure"
                    ));
                }
                if name.is_empty() {
                    return Err(format!("`!{{{expr}}}` needs a key name"));
                }
                let i = match transform_keys.iter().position(|k| k == name) {
                    Some(i) => i,
                    None => {
                        transform_keys.push(name.to_string());
                        transform_keys.len() - 1
                    }
                };
                Part::TransformKey(i)
            }
            _ => return Err(format!("unknown expression `!{{{expr}}}`")),
        };
        Ok(part)
    }

    /// The template as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the template for records whose oldest arrival is `at`.
    pub fn render(&self, at: DateTime<Utc>, error_output_type: Option<&str>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Timestamp(f) => out.push_str(&at.format(f).to_string()),
                Part::RandomString => out.push_str(&random_string()),
                Part::ErrorOutputType => {
                    out.push_str(error_output_type.unwrap_or("processing-failed"))
                }
                // Validation allows these only with partitioning, which
                // renders through `render_partition`.
                Part::QueryKey(_) | Part::TransformKey(_) => {}
            }
        }
        out
    }

    /// Which partition a record belongs to: the template rendered with the
    /// record's key values and time, random strings left as placeholders so
    /// that records of one partition share it.
    /// Written into `out` (cleared first), whose room is kept from one
    /// record to the next.
    pub fn render_partition(
        &self,
        at: DateTime<Utc>,
        values: &[String],
        transform_values: &[String],
        cache: &mut TimestampCache,
        out: &mut String,
    ) {
        let second = at.timestamp();
        if cache.second != Some(second) {
            cache.rendered.clear();
            for p in &self.parts {
                if let Part::Timestamp(f) = p {
                    cache.rendered.push(at.format(f).to_string());
                }
            }
            cache.second = Some(second);
        }
        out.clear();
        let mut times = cache.rendered.iter();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Timestamp(_) => out.push_str(times.next().map_or("", |s| s.as_str())),
                Part::RandomString => out.push(RANDOM_PLACEHOLDER),
                Part::ErrorOutputType => out.push_str("processing-failed"),
                Part::QueryKey(i) => out.push_str(values.get(*i).map_or("", |s| s.as_str())),
                Part::TransformKey(i) => {
                    out.push_str(transform_values.get(*i).map_or("", |s| s.as_str()))
                }
            }
        }
    }

    /// The transform's partition keys the template uses, in first-use order.
    pub fn transform_keys(&self) -> &[String] {
        &self.transform_keys
    }

    pub fn uses_transform_keys(&self) -> bool {
        !self.transform_keys.is_empty()
    }

    /// Whether the template has a `!{timestamp:…}` expression.
    pub fn has_timestamp(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Timestamp(_)))
    }

    /// The key indexes this template uses.
    pub fn query_keys_used(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::QueryKey(i) => Some(*i),
            _ => None,
        })
    }
}

/// A partition's prefix as it goes into an object key: each random-string
/// placeholder becomes a fresh random string.
pub fn finish_partition(prefix: &str) -> String {
    if !prefix.contains(RANDOM_PLACEHOLDER) {
        return prefix.to_string();
    }
    let mut out = String::with_capacity(prefix.len() + 16);
    for c in prefix.chars() {
        if c == RANDOM_PLACEHOLDER {
            out.push_str(&random_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The default error output prefix for a destination prefix without
/// expressions: Firehose writes errors under `<prefix><error-output-type>/`.
pub fn default_error_prefix(prefix: &str) -> KeyTemplate {
    let src = format!("{prefix}!{{firehose:error-output-type}}/");
    // A literal prefix followed by the one expression always parses.
    KeyTemplate::parse(&src, PrefixKind::ErrorOutputPrefix).unwrap_or(KeyTemplate {
        parts: vec![Part::Literal(src.clone())],
        source: src,
        transform_keys: Vec::new(),
    })
}

fn random_string() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..11)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Converts the subset of Java's `DateTimeFormatter` patterns that makes
/// sense in a key (`yyyy yy MM dd HH mm ss`, and `'quoted'` literals).
fn java_time_to_chrono(fmt: &str) -> Result<String, String> {
    if fmt.is_empty() {
        return Err("`!{timestamp:}` needs a format such as yyyy/MM/dd/HH".into());
    }
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let Some(close) = chars[i + 1..].iter().position(|&x| x == '\'') else {
                return Err("unclosed quote in timestamp format".into());
            };
            for &lc in &chars[i + 1..i + 1 + close] {
                push_literal(&mut out, lc);
            }
            i += close + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let spec = match (c, run) {
            ('y', 4) | ('u', 4) => "%Y",
            ('y', 2) | ('u', 2) => "%y",
            ('M', 2) => "%m",
            ('d', 2) => "%d",
            ('H', 2) => "%H",
            ('m', 2) => "%M",
            ('s', 2) => "%S",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "timestamp pattern letter `{}` is not supported (use yyyy, yy, MM, dd, HH, mm, ss)",
                    c.to_string().repeat(run)
                ));
            }
            _ => {
                for _ in 0..run {
                    push_literal(&mut out, c);
                }
                i += run;
                continue;
            }
        };
        out.push_str(spec);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

/// The object name after the prefix: deterministic from the batch's place in
/// the log, so a retry rewrites the same key.
pub fn object_name(stream: &str, shard: u32, first: u64, last: u64, ext: &str) -> String {
    format!("{stream}-{shard}-{first:020}-{last:020}{ext}")
}

#[cfg(test)]
mod tests;
