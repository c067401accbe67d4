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

    /// Copies the engine's numbers.
    pub fn note_engine(&self, e: &Engine) {
        let s = &e.stats;
        self.records_in.store(s.records_in, Ordering::Relaxed);
        self.bytes_in.store(s.bytes_in, Ordering::Relaxed);
        self.records_out.store(s.records_out, Ordering::Relaxed);
        self.late_rows.store(s.late_rows, Ordering::Relaxed);
        self.error_rows.store(s.error_rows, Ordering::Relaxed);
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
