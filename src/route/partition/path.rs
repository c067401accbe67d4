//! Partition keys that are plain paths into the record (`.country`,
//! `.user.tier`, `.["page id"]`, and Firehose's `{k: .a, …} | .["k"]`),
//! read in one scan of the record that keeps only the values they name.
//!
//! jq builds the whole record as a tree of values (every field allocated)
//! and then runs the expression on it; for a plain path the answer is just
//! the field, so the scan skips everything else without allocating. It
//! answers only the common case, a string, a boolean or an integer at each
//! path of a JSON object record with no key repeated on the way; anything
//! else (not JSON, a missing field, null, a float, an array, a repeated
//! key) returns `None` and the caller runs jq, so every key and every error
//! message stays exactly what jq gives.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The path a jq expression reads, if it is a plain path: a `.` followed by
/// names (`.a.b`), quoted names (`."a b"`, `.["a b"]`), or an object
/// construction of plain paths indexed by one of its keys (what a Firehose
/// `MetadataExtractionQuery` becomes: `({a: .x, b: .y.z}) | .["b"]`).
pub fn simple_path(source: &str) -> Option<Vec<String>> {
    let s = source.trim();
    if let Some((object, index)) = s.rsplit_once('|') {
        let name = single_index(index.trim())?;
        let object = object.trim();
        let object = object
            .strip_prefix('(')
            .and_then(|o| o.strip_suffix(')'))
            .unwrap_or(object);
        return object_field(object.trim(), &name);
    }
    let path = path(s)?;
    (!path.is_empty()).then_some(path)
}

/// `.["name"]` or `."name"` or `.name`: the one name.
fn single_index(s: &str) -> Option<String> {
    match path(s)?.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The path `{k1: P1, k2, …}` gives for key `name` (`{k}` is `{k: .k}`).
fn object_field(s: &str, name: &str) -> Option<Vec<String>> {
    let body = s.strip_prefix('{')?.strip_suffix('}')?;
    for entry in split_top(body)? {
        let entry = entry.trim();
        let (key, value) = match entry.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (entry, None),
        };
        let key = if key.starts_with('"') {
            serde_json::from_str::<String>(key).ok()?
        } else if is_ident(key) {
            key.to_string()
        } else {
            return None;
        };
        if key == name {
            return match value {
                Some(v) => simple_path(v).filter(|p| !p.is_empty()),
                None => Some(vec![key]),
            };
        }
    }
    None
}

/// Splits an object body at its commas (none may sit inside a string).
fn split_top(body: &str) -> Option<Vec<&str>> {
    if body.contains(['(', '[', '{', '|']) {
        return None;
    }
    let mut out = Vec::new();
    let (mut start, mut in_string, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ',' if !in_string => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&body[start..]);
    Some(out)
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `.a.b`, `."a b"`, `.["a b"]` and their mixes; `.` alone is the empty
/// path (the record itself), which is not a key.
fn path(s: &str) -> Option<Vec<String>> {
    let mut rest = s.strip_prefix('.')?;
    let mut out = Vec::new();
    let mut first = true;
    while !rest.is_empty() {
        if !first {
            rest = rest.strip_prefix('.').unwrap_or(rest);
        }
        first = false;
        if let Some(r) = rest.strip_prefix("[\"") {
            let end = closing_quote(r)?;
            out.push(serde_json::from_str::<String>(&rest[1..end + 3]).ok()?);
            rest = r[end + 1..].strip_prefix(']')?;
        } else if rest.starts_with('"') {
            let end = closing_quote(&rest[1..])?;
            out.push(serde_json::from_str::<String>(&rest[..end + 2]).ok()?);
            rest = &rest[end + 2..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            if !is_ident(name) {
                return None;
            }
            out.push(name.to_string());
            rest = &rest[end..];
            if !(rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')) {
                return None;
            }
        }
    }
    Some(out)
}

/// Where the string starting after a `"` ends (the index of its closing
/// quote), escapes skipped.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// The text of each path's value in `data`, in the order of `paths`, as jq
/// would make a key of it, or `None` when jq must decide.
pub fn read(data: &[u8], paths: &[&[String]]) -> Option<Vec<String>> {
    let mut found: Vec<Option<String>> = vec![None; paths.len()];
    let mut de = serde_json::Deserializer::from_slice(data);
    let active: Vec<usize> = (0..paths.len()).collect();
    Level {
        paths,
        depth: 0,
        active: &active,
        found: &mut found,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    found.into_iter().collect()
}

/// One object level of the scan: the paths still followed at this depth.
struct Level<'p, 'f> {
    paths: &'p [&'p [String]],
    depth: usize,
    active: &'p [usize],
    found: &'f mut [Option<String>],
}

/// Why the scan gives up (jq decides instead).
const GIVE_UP: &str = "not a plain value";

impl<'de> DeserializeSeed<'de> for Level<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Level<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let found = self.found;
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let here: Vec<usize> = self
                .active
                .iter()
                .copied()
                .filter(|&i| self.paths[i][self.depth] == key)
                .collect();
            if here.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen.contains(&key) {
                return Err(de::Error::custom(GIVE_UP));
            }
            seen.push(key);
            let (leaves, deeper): (Vec<usize>, Vec<usize>) = here
                .into_iter()
                .partition(|&i| self.paths[i].len() == self.depth + 1);
            match (leaves.as_slice(), deeper.is_empty()) {
                ([], false) => map.next_value_seed(Level {
                    paths: self.paths,
                    depth: self.depth + 1,
                    active: &deeper,
                    found: &mut *found,
                })?,
                (_, true) => {
                    let text = map.next_value::<Plain>()?.0;
                    for i in leaves {
                        found[i] = Some(text.clone());
                    }
                }
                // One path ends where another goes on: jq decides.
                _ => return Err(de::Error::custom(GIVE_UP)),
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the record unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }
}

/// A string, a boolean or an integer, as jq writes it into a key.
struct Plain(String);

impl<'de> de::Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Plain, D::Error> {
        d.deserialize_any(PlainVisitor)
    }
}

struct PlainVisitor;

impl Visitor<'_> for PlainVisitor {
    type Value = Plain;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, boolean or integer")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Plain, E> {
        Ok(Plain(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Plain, E> {
        Ok(Plain(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Plain, E> {
        Ok(Plain(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Plain, E> {
        // Past i64, jq's own number text decides.
        i64::try_from(v)
            .map(|v| Plain(v.to_string()))
            .map_err(|_| E::custom(GIVE_UP))
    }
}
