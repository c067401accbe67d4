//! `dynamic_partitioning`: the jq expressions that give a record its
//! partition keys, the record time for `!{timestamp:…}`, and the bounds on
//! open partitions. YAML and the `CreateDeliveryStream` API both compile
//! their partitioning here.

use std::sync::Arc;

use super::raw::RawPartitioning;
use super::{ConfigError, ObjectDestination, err, range_check};
use crate::route::partition::{
    Partitioner, Query, ReadGather, RecordTime, TimeFormat, is_key_name,
};

/// Firehose's default bound on open partitions.
pub(crate) const DEFAULT_OPEN_PARTITIONS: usize = 500;

/// Default bytes of a shard's open partitions: four full batches, at most 256 MiB.
pub(crate) fn default_open_mb(size_mb: u64) -> u64 {
    (4 * size_mb).min(256)
}

/// Partitioning by the keys a transform returns alone, with the defaults.
pub(super) fn transform_keys_only(dest: &ObjectDestination, size_mb: u64) -> Arc<Partitioner> {
    Arc::new(Partitioner {
        keys: Vec::new(),
        time: None,
        template: dest.prefix.clone(),
        open_partitions_max: DEFAULT_OPEN_PARTITIONS,
        open_bytes_max: default_open_mb(size_mb) << 20,
        read_gather: ReadGather::DEFAULT,
    })
}

/// Validates and compiles `dynamic_partitioning` for an object destination
/// whose prefix has been parsed with the key names.
pub(crate) fn partitioning(
    errors: &mut Vec<ConfigError>,
    path: &str,
    prefix_path: &str,
    p: RawPartitioning,
    dest: &ObjectDestination,
    size_mb: u64,
) -> Option<Partitioner> {
    let before = errors.len();
    let mut keys = Vec::new();
    for (name, src) in &p.keys {
        if !is_key_name(name) {
            errors.push(err(
                format!("{path}.keys.{name}"),
                "a key name is letters, digits, `_` and `-`",
            ));
            continue;
        }
        match Query::compile(src) {
            Ok(q) => keys.push((name.clone(), q)),
            Err(e) => errors.push(err(format!("{path}.keys.{name}"), format!("`{src}` {e}"))),
        }
    }
    let time = match &p.timestamp {
        None => None,
        Some(t) => {
            let query = Query::compile(&t.query)
                .map_err(|e| {
                    errors.push(err(
                        format!("{path}.timestamp.query"),
                        format!("`{}` {e}", t.query),
                    ))
                })
                .ok();
            let format = TimeFormat::parse(t.format.as_deref().unwrap_or("rfc3339"))
                .map_err(|e| errors.push(err(format!("{path}.timestamp.format"), e)))
                .ok();
            match (query, format) {
                (Some(query), Some(format)) => Some(RecordTime { query, format }),
                _ => None,
            }
        }
    };
    if p.keys.is_empty()
        && time.is_none()
        && !dest.prefix.uses_transform_keys()
        && errors.len() == before
    {
        errors.push(err(
            path,
            "needs `keys` (jq expressions) or `timestamp`: there is nothing to partition by",
        ));
    }
    if time.is_some() && !dest.prefix.has_timestamp() {
        errors.push(err(
            format!("{path}.timestamp"),
            format!("is not used: {prefix_path} has no `!{{timestamp:…}}` expression"),
        ));
    }
    let used: std::collections::BTreeSet<usize> = dest.prefix.query_keys_used().collect();
    for (i, name) in p.keys.keys().enumerate() {
        if !used.contains(&i) {
            errors.push(err(
                format!("{path}.keys.{name}"),
                format!("is not used in {prefix_path} (add `!{{partitionKeyFromQuery:{name}}}`)"),
            ));
        }
    }
    let (open_partitions_max, open_bytes_max, read_gather) = bounds(errors, path, &p, size_mb);
    if errors.len() > before {
        return None;
    }
    Some(Partitioner {
        keys,
        time,
        template: dest.prefix.clone(),
        open_partitions_max,
        open_bytes_max,
        read_gather,
    })
}

/// Validates the bounds of `dynamic_partitioning` at `path`: open
/// partitions, their bytes (by default four batches of `size_mb`) and the
/// read gather.
fn bounds(
    errors: &mut Vec<ConfigError>,
    path: &str,
    p: &RawPartitioning,
    size_mb: u64,
) -> (usize, u64, ReadGather) {
    let open_partitions_max = range_check(
        errors,
        &format!("{path}.open_partitions_max"),
        p.open_partitions_max.unwrap_or(DEFAULT_OPEN_PARTITIONS),
        1,
        100_000,
    );
    let open_mb = range_check(
        errors,
        &format!("{path}.open_buffer_mb_max"),
        p.open_buffer_mb_max
            .unwrap_or_else(|| default_open_mb(size_mb)),
        1,
        4096,
    );
    let read_gather = ReadGather {
        records_min: range_check(
            errors,
            &format!("{path}.read_records_min"),
            p.read_records_min
                .unwrap_or(ReadGather::DEFAULT.records_min),
            1,
            1_000_000,
        ),
        wait: std::time::Duration::from_millis(range_check(
            errors,
            &format!("{path}.read_wait_ms"),
            p.read_wait_ms
                .unwrap_or(ReadGather::DEFAULT.wait.as_millis() as u64),
            0,
            60_000,
        )),
    };
    (open_partitions_max, open_mb << 20, read_gather)
}
