//! What a running application reports: its state, its counters and
//! gauges, shared between its thread, the API and the metrics endpoint.
//! Plain atomics; nothing here blocks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::engine::Engine;

/// One application's live numbers.
#[derive(Default)]
pub struct AppStatus {
    state: Mutex<String>,
    error: Mutex<Option<String>>,
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub records_out: AtomicU64,
    pub late_rows: AtomicU64,
    pub error_rows: AtomicU64,
    /// Epoch ms; i64::MIN while none.
    pub watermark_ms: AtomicI64,
    pub open_windows: AtomicU64,
    pub open_groups: AtomicU64,
    pub state_bytes: AtomicU64,
    pub checkpoint_ms: AtomicU64,
    pub checkpoints: AtomicU64,
    /// How far behind the newest input record the application reads.
    pub millis_behind_latest: AtomicI64,
    /// The totals when the running engine started (its own count from 0).
    base: Mutex<[u64; 5]>,
}

impl AppStatus {
    pub fn new(state: &str) -> AppStatus {
        let s = AppStatus {
            watermark_ms: AtomicI64::new(i64::MIN),
            ..AppStatus::default()
        };
        s.set_state(state);
        s
    }

    pub fn set_state(&self, state: &str) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state.to_string();
    }

    pub fn state(&self) -> String {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn counters(&self) -> [&AtomicU64; 5] {
        [
            &self.records_in,
            &self.bytes_in,
            &self.records_out,
            &self.late_rows,
            &self.error_rows,
        ]
    }

    /// A new engine starts counting from 0: the totals go on from here.
    pub fn rebase(&self) {
        let mut base = self.base.lock().unwrap_or_else(|p| p.into_inner());
        for (b, c) in base.iter_mut().zip(self.counters()) {
            *b = c.load(Ordering::Relaxed);
        }
    }

    /// Copies the engine's numbers.
    pub fn note_engine(&self, e: &Engine) {
        let s = &e.stats;
        let base = *self.base.lock().unwrap_or_else(|p| p.into_inner());
        let now = [
            s.records_in,
            s.bytes_in,
            s.records_out,
            s.late_rows,
            s.error_rows,
        ];
        for ((c, b), n) in self.counters().into_iter().zip(base).zip(now) {
            c.store(b + n, Ordering::Relaxed);
        }
        self.watermark_ms
            .store(e.watermark().unwrap_or(i64::MIN), Ordering::Relaxed);
        let (windows, groups, bytes) = e.open_state();
        self.open_windows.store(windows as u64, Ordering::Relaxed);
        self.open_groups.store(groups as u64, Ordering::Relaxed);
        self.state_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    pub fn note_checkpoint(&self, took: Duration) {
        self.checkpoint_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// The numbers for the metrics endpoint.
    pub fn numbers(&self) -> crate::metrics::analytics::AppNumbers {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauge = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let wm = self.watermark_ms.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        crate::metrics::analytics::AppNumbers {
            records_in: load(&self.records_in),
            bytes_in: load(&self.bytes_in),
            records_out: load(&self.records_out),
            late_rows: load(&self.late_rows),
            error_rows: load(&self.error_rows),
            watermark_lag_ms: if wm == i64::MIN {
                0
            } else {
                now.saturating_sub(wm)
            },
            millis_behind_latest: self.millis_behind_latest.load(Ordering::Relaxed),
            open_windows: gauge(&self.open_windows),
            open_groups: gauge(&self.open_groups),
            state_bytes: gauge(&self.state_bytes),
            checkpoint_ms: gauge(&self.checkpoint_ms),
        }
    }

    /// The numbers as JSON, for `/v1/status`.
    pub fn json(&self) -> serde_json::Value {
        let wm = self.watermark_ms.load(Ordering::Relaxed);
        serde_json::json!({
            "state": self.state(),
            "error": self.error(),
            "records_in": self.records_in.load(Ordering::Relaxed),
            "bytes_in": self.bytes_in.load(Ordering::Relaxed),
            "records_out": self.records_out.load(Ordering::Relaxed),
            "late_rows": self.late_rows.load(Ordering::Relaxed),
            "error_rows": self.error_rows.load(Ordering::Relaxed),
            "watermark_ms": (wm != i64::MIN).then_some(wm),
            "millis_behind_latest": self.millis_behind_latest.load(Ordering::Relaxed),
            "open_windows": self.open_windows.load(Ordering::Relaxed),
            "open_groups": self.open_groups.load(Ordering::Relaxed),
            "state_bytes": self.state_bytes.load(Ordering::Relaxed),
            "checkpoint_ms": self.checkpoint_ms.load(Ordering::Relaxed),
            "checkpoints": self.checkpoints.load(Ordering::Relaxed),
        })
    }
}
