//! `transform`: the stream's WebAssembly component and the bounds of each
//! call (batch size, timeout, memory, instances).

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawTransform;
use super::{ConfigError, err, range_check};
use crate::transform::TransformConfig;

/// Validates `transform`; the component must be a readable file (it is
/// compiled when the stream starts).
pub(super) fn transform(
    errors: &mut Vec<ConfigError>,
    path: &str,
    t: RawTransform,
    shards: u32,
) -> Option<TransformConfig> {
    let before = errors.len();
    let wasm = PathBuf::from(&t.wasm);
    match std::fs::metadata(&wasm) {
        Ok(m) if m.is_file() => {}
        Ok(_) => errors.push(err(
            format!("{path}.wasm"),
            format!("{} is not a file", t.wasm),
        )),
        Err(e) => errors.push(err(
            format!("{path}.wasm"),
            format!("cannot read {}: {e}", t.wasm),
        )),
    }
    let config = match t.config {
        None => String::new(),
        Some(serde_norway::Value::String(s)) => s,
        Some(v) => match serde_json::to_string(&v) {
            Ok(s) => s,
            Err(e) => {
                errors.push(err(
                    format!("{path}.config"),
                    format!("cannot be given as JSON: {e}"),
                ));
                String::new()
            }
        },
    };
    let batch_records_max = range_check(
        errors,
        &format!("{path}.batch_records_max"),
        t.batch_records_max.unwrap_or(10_000),
        1,
        100_000,
    );
    let batch_mb = range_check(
        errors,
        &format!("{path}.batch_mb_max"),
        t.batch_mb_max.unwrap_or(4),
        1,
        64,
    );
    let timeout_ms = range_check(
        errors,
        &format!("{path}.timeout_ms"),
        t.timeout_ms.unwrap_or(10_000),
        10,
        300_000,
    );
    let memory_mb = range_check(
        errors,
        &format!("{path}.memory_mb_max"),
        t.memory_mb_max.unwrap_or(256),
        16,
        4096,
    );
    let instances_max = range_check(
        errors,
        &format!("{path}.instances_max"),
        t.instances_max.unwrap_or(shards as usize),
        1,
        256,
    );
    if errors.len() > before {
        return None;
    }
    Some(TransformConfig {
        wasm,
        config,
        batch_records_max,
        batch_bytes_max: (batch_mb << 20) as usize,
        timeout: Duration::from_millis(timeout_ms),
        memory_bytes_max: (memory_mb << 20) as usize,
        instances_max,
    })
}
