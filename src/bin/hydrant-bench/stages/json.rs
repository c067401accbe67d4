//! The JSON parse stage: each record parsed to a value, what partitioning
//! and Parquet must do at least.

use std::time::Instant;

use anyhow::bail;
use hydrant::record::Record;

use super::{Stage, measured};

/// `JSON parse` over the clickstream events.
pub fn stage(clicks: &[Record], clicks_raw: usize) -> anyhow::Result<Stage> {
    let t = Instant::now();
    let mut fields = 0usize;
    for f in clicks {
        let v: serde_json::Value = serde_json::from_slice(&f.data)?;
        fields += v.as_object().map_or(0, |o| o.len());
    }
    if fields == 0 {
        bail!("JSON parse saw no fields");
    }
    Ok(measured(
        "JSON parse",
        clicks_raw,
        clicks.len(),
        t.elapsed(),
        true,
    ))
}
