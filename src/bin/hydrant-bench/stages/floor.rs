//! The machine's latency floor, measured in the same run as the workloads,
//! before any of them starts:
//!
//! - **wake-up**: how late a thread wakes from a 1 ms sleep on an idle
//!   machine. An acknowledgement crosses several wake-ups (the connection's
//!   worker, the shard's log writer, the worker again, the client), and on a
//!   virtual machine whose idle cores halt, each can cost what the
//!   hypervisor takes to run a halted core again;
//! - **write + fdatasync**: a 512 KiB write and its `fdatasync` on an idle
//!   disk, one every 5 ms, as the log writer commits a group.
//!
//! An acknowledgement's p99 at half load is read beside them: it cannot be
//! far below the slowest of its steps on the same machine.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::percentile;

/// The latency floor of the machine the suite ran on (milliseconds).
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    pub wake_p50_ms: f64,
    pub wake_p99_ms: f64,
    pub wake_p999_ms: f64,
    pub sync_p50_ms: f64,
    pub sync_p99_ms: f64,
    pub sync_max_ms: f64,
}

impl Floor {
    /// The wake-ups' p50 / p99 / p99.9 and the syncs' p50 / p99 / max, as
    /// printed (ms).
    pub fn cells(&self) -> (String, String) {
        (
            format!(
                "{:.2} / {:.2} / {:.2}",
                self.wake_p50_ms, self.wake_p99_ms, self.wake_p999_ms
            ),
            format!(
                "{:.2} / {:.2} / {:.2}",
                self.sync_p50_ms, self.sync_p99_ms, self.sync_max_ms
            ),
        )
    }
}

/// Measures both for about `secs` seconds each.
pub fn measure(dir: &Path, secs: u64) -> anyhow::Result<Floor> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut wake = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        wake.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    wake.sort();

    std::fs::create_dir_all(dir)?;
    let path = dir.join("floor.seg");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 512 << 10];
    let mut sync = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        sync.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(f);
    std::fs::remove_file(&path)?;
    sync.sort();

    let floor = Floor {
        wake_p50_ms: ms(percentile(&wake, 0.5)),
        wake_p99_ms: ms(percentile(&wake, 0.99)),
        wake_p999_ms: ms(percentile(&wake, 0.999)),
        sync_p50_ms: ms(percentile(&sync, 0.5)),
        sync_p99_ms: ms(percentile(&sync, 0.99)),
        sync_max_ms: sync.last().copied().map_or(0.0, ms),
    };
    let (wake, sync) = floor.cells();
    eprintln!(
        "  floor: wake-up after a 1 ms sleep p50 / p99 / p99.9 {wake} ms; 512 KiB write + fdatasync p50 / p99 / max {sync} ms"
    );
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_measurement_has_ordered_percentiles() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = measure(dir.path(), 1)?;
        assert!(f.wake_p50_ms <= f.wake_p99_ms && f.wake_p99_ms <= f.wake_p999_ms);
        assert!(f.sync_p50_ms > 0.0 && f.sync_p50_ms <= f.sync_p99_ms);
        assert!(f.sync_p99_ms <= f.sync_max_ms);
        assert!(!dir.path().join("floor.seg").exists());
        Ok(())
    }
}
