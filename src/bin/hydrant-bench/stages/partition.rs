//! The dynamic partitioning stages: each record's two keys read (by one
//! scan, or by jq) and the prefix rendered, with the partitioner the daemon builds
//! from a config.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use hydrant::record::Record;
use hydrant::route::partition::{Partitioner, RouteScratch};

use super::{Stage, measured};

/// The partitioner of a stream partitioned by `keys` (YAML map of name to jq)
/// under `prefix`, as the daemon builds it from a config.
pub fn partitioner(keys: &str, prefix: &str) -> anyhow::Result<Arc<Partitioner>> {
    let cfg = hydrant::config::parse(&format!(
        "streams:\n  s:\n    dynamic_partitioning: {{ keys: {keys} }}\n    destination: {{ type: file, path: /tmp/x, prefix: \"{prefix}\", error_output_prefix: \"e/!{{firehose:error-output-type}}/\" }}\n"
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.streams["s"]
        .partitioning
        .clone()
        .context("partitioning")
}

/// The clickstream by country and device, as W2 partitions it: its keys are
/// plain paths, read in one scan of each record (`partition keys (2 plain
/// paths)`); and the same two keys through jq (`jq partitioning (2 keys)`,
/// what any other expression costs: the record parsed into jq's values and
/// the expression run on them).
pub fn stages(clicks: &[Record], clicks_raw: usize) -> anyhow::Result<Vec<Stage>> {
    let prefix = "country=!{partitionKeyFromQuery:country}/device=!{partitionKeyFromQuery:device}/!{timestamp:yyyy/MM/dd/HH}/";
    Ok(vec![
        route_stage(
            "partition keys (2 plain paths)",
            &*partitioner("{ country: .country, device: .device }", prefix)?,
            clicks,
            clicks_raw,
        )?,
        route_stage(
            "jq partitioning (2 keys)",
            // `tostring` keeps jq in the path; the values are the same.
            &*partitioner(
                "{ country: \".country | tostring\", device: \".device | tostring\" }",
                prefix,
            )?,
            clicks,
            clicks_raw,
        )?,
    ])
}

fn route_stage(
    name: &str,
    part: &Partitioner,
    clicks: &[Record],
    clicks_raw: usize,
) -> anyhow::Result<Stage> {
    let mut scratch = RouteScratch::default();
    let t = Instant::now();
    for f in clicks {
        if let Err(e) = part.route(f, &[], &mut scratch) {
            bail!("{name}: partitioning failed: {e}");
        }
    }
    Ok(measured(name, clicks_raw, clicks.len(), t.elapsed(), true))
}

/// The last row of `hydrant-bench stages`: the log lines by service and
/// level, and how many partitions that made.
pub fn print_logs_row(frames: &[Record], raw: usize) -> anyhow::Result<()> {
    let n = frames.len();
    let part = partitioner(
        "{ service: .service, level: .level }",
        "service=!{partitionKeyFromQuery:service}/level=!{partitionKeyFromQuery:level}/!{timestamp:yyyy/MM/dd}/",
    )?;
    let mut scratch = RouteScratch::default();
    let t = Instant::now();
    let mut prefixes = HashSet::new();
    for f in frames {
        match part.route(f, &[], &mut scratch) {
            Ok(p) => {
                prefixes.insert(p);
            }
            Err(e) => bail!("partitioning failed: {e}"),
        }
    }
    let el = t.elapsed().as_secs_f64();
    println!(
        "| dynamic partitioning, 2 jq keys ({} partitions) | {:.0} | {:.0} | - |",
        prefixes.len(),
        raw as f64 / el / 1e6,
        n as f64 / el
    );
    Ok(())
}
