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

/// Something that names a plain path (a key's query, or the path itself).
pub trait PathOf {
    fn path(&self) -> &[String];
}

impl PathOf for &[String] {
    fn path(&self) -> &[String] {
        self
    }
}

/// Most paths one scan follows (one bit each); with more, jq decides.
pub const PATHS_MAX: usize = 64;

/// The text of each path's value in `data`, in the order of `paths`, as jq
/// would make a key of it, or `None` when jq must decide.
#[cfg(test)]
pub fn read(data: &[u8], paths: &[&[String]]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    read_into(data, paths, &mut out).then_some(out)
}

/// [`read`] into `out` (one string per path, written over), allocating
/// nothing once `out`'s strings have room: called for every record. False
/// when jq must decide (then `out` holds nothing of use).
pub fn read_into<P: PathOf>(data: &[u8], paths: &[P], out: &mut Vec<String>) -> bool {
    if paths.is_empty() || paths.len() > PATHS_MAX {
        return false;
    }
    out.resize_with(paths.len(), String::new);
    out.iter_mut().for_each(String::clear);
    let all = u64::MAX >> (PATHS_MAX - paths.len());
    let mut found = 0u64;
    let mut de = serde_json::Deserializer::from_slice(data);
    let scanned = Level {
        paths,
        depth: 0,
        active: all,
        found: &mut found,
        out,
    }
    .deserialize(&mut de)
    .is_ok();
    scanned && de.end().is_ok() && found == all
}

/// The indexes of the bits set in `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// One object level of the scan: the paths still followed at this depth
/// (a bit each), and where their values go.
struct Level<'p, 'f, P> {
    paths: &'p [P],
    depth: usize,
    active: u64,
    found: &'f mut u64,
    out: &'f mut [String],
}

/// Why the scan gives up (jq decides instead).
const GIVE_UP: &str = "not a plain value";

impl<'de, P: PathOf> DeserializeSeed<'de> for Level<'_, '_, P> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, P: PathOf> Visitor<'de> for Level<'_, '_, P> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (paths, depth) = (self.paths, self.depth);
        // The paths a key of this object already led to: a key seen twice
        // leads to the same ones again, and jq takes the last, so it decides.
        let mut taken = 0u64;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let here = bits(self.active)
                .filter(|&i| paths[i].path().get(depth).is_some_and(|p| *p == key))
                .fold(0u64, |m, i| m | 1 << i);
            if here == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if taken & here != 0 {
                return Err(de::Error::custom(GIVE_UP));
            }
            taken |= here;
            let leaves = bits(here)
                .filter(|&i| paths[i].path().len() == depth + 1)
                .fold(0u64, |m, i| m | 1 << i);
            let deeper = here & !leaves;
            if leaves == 0 {
                map.next_value_seed(Level {
                    paths,
                    depth: depth + 1,
                    active: deeper,
                    found: &mut *self.found,
                    out: &mut *self.out,
                })?;
            } else if deeper == 0 {
                let first = leaves.trailing_zeros() as usize;
                let Some(slot) = self.out.get_mut(first) else {
                    return Err(de::Error::custom(GIVE_UP));
                };
                map.next_value_seed(PlainInto(slot))?;
                // Two keys with the same path: the same text.
                for i in bits(leaves & !(1 << first)) {
                    let [a, b] = self
                        .out
                        .get_disjoint_mut([first, i])
                        .map_err(de::Error::custom)?;
                    b.clone_from(a);
                }
                *self.found |= leaves;
            } else {
                // One path ends where another goes on: jq decides.
                return Err(de::Error::custom(GIVE_UP));
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

/// A string, a boolean or an integer, as jq writes it into a key, written
/// onto the end of the string it holds.
struct PlainInto<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for PlainInto<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for PlainInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, boolean or integer")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        use std::fmt::Write;
        write!(self.0, "{v}").map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        // Past i64, jq's own number text decides.
        let v = i64::try_from(v).map_err(|_| E::custom(GIVE_UP))?;
        self.visit_i64(v)
    }
}
