//! How a stream's objects are written: `encoding` (JSON lines or Parquet
//! with a declared schema), `compression` and its level, and `encryption`
//! (the keys, from files or the environment, and the chunk size).

use super::raw::{RawEncoding, RawEncryption};
use super::{ConfigError, err, range_check};
use crate::encode::encrypt::Encryption;
use crate::encode::{Compression, Encoding, parquet};

/// Validates `encoding`; JSON lines unless `format` says otherwise.
pub(super) fn encoding(errors: &mut Vec<ConfigError>, path: &str, enc: RawEncoding) -> Encoding {
    match enc.format.as_deref().unwrap_or("json_lines") {
        "json_lines" => {
            for (f, set) in [
                ("schema", enc.schema.is_some()),
                ("row_group_rows", enc.row_group_rows.is_some()),
                ("compression", enc.compression.is_some()),
                ("compression_level", enc.compression_level.is_some()),
                ("dictionary", enc.dictionary.is_some()),
            ] {
                if set {
                    errors.push(err(
                        format!("{path}.encoding.{f}"),
                        "applies only to `format: parquet`",
                    ));
                }
            }
            Encoding::JsonLines {
                delimiter: enc.delimiter.unwrap_or_else(|| "\n".into()).into_bytes(),
            }
        }
        "parquet" => Encoding::Parquet(parquet_options(errors, path, enc)),
        other => {
            errors.push(err(
                format!("{path}.encoding.format"),
                format!("`{other}` is not a format (json_lines, parquet)"),
            ));
            Encoding::JsonLines {
                delimiter: b"\n".to_vec(),
            }
        }
    }
}

/// `format: parquet`: the schema's columns, row groups, and the compression
/// inside the file.
fn parquet_options(
    errors: &mut Vec<ConfigError>,
    path: &str,
    enc: RawEncoding,
) -> parquet::ParquetOptions {
    if enc.delimiter.is_some() {
        errors.push(err(
            format!("{path}.encoding.delimiter"),
            "applies only to `format: json_lines`",
        ));
    }
    let mut cols = Vec::new();
    match enc.schema {
        None => errors.push(err(
            format!("{path}.encoding.schema"),
            "missing: parquet needs the columns' names and types",
        )),
        Some(list) if list.is_empty() => errors.push(err(
            format!("{path}.encoding.schema"),
            "must list at least one column",
        )),
        Some(list) => {
            for (i, c) in list.into_iter().enumerate() {
                if cols
                    .iter()
                    .any(|(n, _, _): &(String, _, bool)| *n == c.name)
                {
                    errors.push(err(
                        format!("{path}.encoding.schema[{i}].name"),
                        format!("`{}` is listed twice", c.name),
                    ));
                }
                match parquet::parse_type(&c.kind) {
                    Ok(t) => cols.push((c.name, t, c.nullable.unwrap_or(true))),
                    Err(e) => errors.push(err(format!("{path}.encoding.schema[{i}].type"), e)),
                }
            }
        }
    }
    let compression = enc.compression.unwrap_or_else(|| "snappy".into());
    if !["none", "snappy", "gzip", "zstd"].contains(&compression.as_str()) {
        errors.push(err(
            format!("{path}.encoding.compression"),
            format!("`{compression}` is not a Parquet compression (none, snappy, gzip, zstd)"),
        ));
    }
    // The column codec's level has the same ranges as the object's.
    let codec = match compression.as_str() {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        _ => Compression::None,
    };
    let level = compression_level(
        errors,
        &format!("{path}.encoding"),
        enc.compression_level,
        codec,
    );
    parquet::ParquetOptions {
        schema: parquet::schema(&cols),
        row_group_rows: range_check(
            errors,
            &format!("{path}.encoding.row_group_rows"),
            enc.row_group_rows.unwrap_or(1_000_000),
            1,
            100_000_000,
        ),
        compression,
        level,
        dictionary: enc.dictionary.unwrap_or(true),
    }
}

/// Validates `compression` (of the whole object; Parquet compresses inside).
pub(super) fn compression(
    errors: &mut Vec<ConfigError>,
    path: &str,
    name: Option<&str>,
) -> Compression {
    match name.unwrap_or("none") {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "snappy" => Compression::Snappy,
        other => {
            errors.push(err(
                format!("{path}.compression"),
                format!("`{other}` is not a compression (none, gzip, zstd, snappy)"),
            ));
            Compression::None
        }
    }
}

/// Validates `compression_level` against the compression's own range.
pub(super) fn compression_level(
    errors: &mut Vec<ConfigError>,
    path: &str,
    level: Option<i32>,
    compression: Compression,
) -> Option<i32> {
    match (level, compression) {
        (None, _) => None,
        (Some(l), Compression::Gzip) => Some(range_check(
            errors,
            &format!("{path}.compression_level"),
            l,
            0,
            9,
        )),
        (Some(l), Compression::Zstd) => Some(range_check(
            errors,
            &format!("{path}.compression_level"),
            l,
            1,
            22,
        )),
        (Some(_), _) => {
            errors.push(err(
                format!("{path}.compression_level"),
                "applies only to gzip and zstd",
            ));
            None
        }
    }
}

/// Validates `encryption` and reads its keys.
pub(super) fn encryption(
    errors: &mut Vec<ConfigError>,
    path: &str,
    e: RawEncryption,
) -> Option<Encryption> {
    use crate::encode::encrypt::{CHUNK_BYTES_MAX, CHUNK_BYTES_MIN, DEFAULT_CHUNK_BYTES};
    let chunk_bytes = range_check(
        errors,
        &format!("{path}.chunk_bytes"),
        e.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES),
        CHUNK_BYTES_MIN,
        CHUNK_BYTES_MAX,
    );
    if e.keys.is_empty() {
        errors.push(err(
            format!("{path}.keys"),
            "must list at least one key (the first encrypts)",
        ));
        return None;
    }
    let keys = read_keys(errors, path, e.keys);
    (!keys.is_empty()).then_some(Encryption { keys, chunk_bytes })
}

/// Reads the keys of a `keys` list (`PATH.keys[i]`): ids unique, 1 to 255
/// printable ASCII characters, each key from exactly one of `file` or
/// `env`. Keys that cannot be read are reported and left out.
pub(super) fn read_keys(
    errors: &mut Vec<ConfigError>,
    path: &str,
    raw: Vec<crate::config::raw::RawKey>,
) -> Vec<(String, crate::encode::encrypt::SecretKey)> {
    use crate::encode::encrypt::SecretKey;
    let mut keys = Vec::new();
    for (i, k) in raw.into_iter().enumerate() {
        let kpath = format!("{path}.keys[{i}]");
        if k.id.is_empty() || k.id.len() > 255 || !k.id.chars().all(|c| c.is_ascii_graphic()) {
            errors.push(err(
                format!("{kpath}.id"),
                "must be 1 to 255 printable ASCII characters",
            ));
        }
        if keys.iter().any(|(id, _): &(String, SecretKey)| *id == k.id) {
            errors.push(err(
                format!("{kpath}.id"),
                format!("`{}` is listed twice", k.id),
            ));
        }
        let material = match (&k.file, &k.env) {
            (Some(f), None) => std::fs::read(f)
                .map_err(|e| (format!("{kpath}.file"), format!("cannot read {f}: {e}"))),
            (None, Some(v)) => std::env::var(v).map(String::into_bytes).map_err(|_| {
                (
                    format!("{kpath}.env"),
                    format!("environment variable {v} is not set"),
                )
            }),
            _ => Err((
                kpath.clone(),
                "give exactly one of `file` or `env`".to_string(),
            )),
        };
        let field = if k.file.is_some() { "file" } else { "env" };
        match material
            .and_then(|m| SecretKey::parse(&m).map_err(|e| (format!("{kpath}.{field}"), e)))
        {
            Ok(key) => keys.push((k.id, key)),
            Err((p, m)) => errors.push(err(p, m)),
        }
    }
    keys
}
