//! Phase 3 of a workload, freshness: during the half-load phase a watcher
//! lists the destination every 50 ms; each record's freshness is the time
//! its object became visible minus its scheduled send time. Records are
//! matched to objects by (shard, offset): the put's answer gives them,
//! object names carry them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStore;

use crate::files::walk;

/// Objects seen in the destination: per shard, (first, last, when seen).
pub type Seen = Arc<Mutex<BTreeMap<u32, Vec<(u64, u64, Instant)>>>>;

/// Parses `bench-<shard>-<first>-<last><ext>` from an object's name.
fn object_range(key: &str) -> Option<(u32, u64, u64)> {
    let name = key.rsplit('/').next()?;
    let rest = name.strip_prefix("bench-")?;
    let mut parts = rest.splitn(3, '-');
    let shard = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((shard, first, last.parse().ok()?))
}

/// Lists the destination every 50 ms, noting when each object appeared.
pub fn watch(
    store: Option<Arc<dyn ObjectStore>>,
    dir: PathBuf,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut known = std::collections::HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            let keys: Vec<String> = match &store {
                Some(s) => {
                    s.list(None)
                        .filter_map(|m| async move { m.ok().map(|m| m.location.to_string()) })
                        .collect()
                        .await
                }
                None => walk(&dir),
            };
            let now = Instant::now();
            for k in keys {
                if known.insert(k.clone())
                    && let Some((shard, first, last)) = object_range(&k)
                    && let Ok(mut g) = seen.lock()
                {
                    g.entry(shard).or_default().push((first, last, now));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// The freshness of about 200,000 of the records `placed` (sampled evenly
/// among `records`), sorted: when the latest-seen object holding each
/// appeared, minus when it was scheduled.
pub fn freshness(
    seen: &Seen,
    placed: &[((u32, u64), usize, Instant)],
    records: u64,
) -> Vec<Duration> {
    let mut fresh = Vec::new();
    // About 200,000 records sampled evenly.
    let step = (records / 200_000).max(1) as usize;
    if let Ok(g) = seen.lock() {
        for ((shard, first), n, due) in placed {
            let Some(objs) = g.get(shard) else { continue };
            for off in (*first..*first + *n as u64).step_by(step) {
                // The latest-seen object holding the offset: exact without
                // partitions, an upper bound with them.
                let at = objs
                    .iter()
                    .filter(|(a, b, _)| *a <= off && off <= *b)
                    .map(|(_, _, t)| *t)
                    .max();
                if let Some(at) = at {
                    fresh.push(at.saturating_duration_since(*due));
                }
            }
        }
    }
    fresh.sort();
    fresh
}
