//! SQL applications' series, by application: records and bytes in and
//! out, late and error rows (counters), and the watermark's lag, how far
//! behind the input's newest record the application reads, open windows
//! and groups, state bytes and the last checkpoint's duration (gauges).
//! The values are copied from each application's own counters when
//! `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub application: String,
}

/// One application's numbers, as read from it.
pub struct AppNumbers {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub late_rows: u64,
    pub error_rows: u64,
    pub watermark_lag_ms: i64,
    pub millis_behind_latest: i64,
    pub open_windows: i64,
    pub open_groups: i64,
    pub state_bytes: i64,
    pub checkpoint_ms: i64,
}

#[derive(Clone, Default)]
pub struct AnalyticsMetrics {
    records_in: Family<AppLabel, Counter>,
    bytes_in: Family<AppLabel, Counter>,
    records_out: Family<AppLabel, Counter>,
    late_rows: Family<AppLabel, Counter>,
    error_rows: Family<AppLabel, Counter>,
    watermark_lag_seconds: Family<AppLabel, Gauge>,
    millis_behind_latest: Family<AppLabel, Gauge>,
    open_windows: Family<AppLabel, Gauge>,
    open_groups: Family<AppLabel, Gauge>,
    state_bytes: Family<AppLabel, Gauge>,
    checkpoint_milliseconds: Family<AppLabel, Gauge>,
}

/// Moves a counter up to `total` (it never goes down).
fn to(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl AnalyticsMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        for (name, help, f) in [
            (
                "analytics_input_records",
                "Records an application read",
                &self.records_in,
            ),
            (
                "analytics_input_bytes",
                "Bytes of the records an application read",
                &self.bytes_in,
            ),
            (
                "analytics_output_records",
                "Result records an application published",
                &self.records_out,
            ),
            (
                "analytics_late_rows",
                "Rows behind their shard's watermark or their closed window (to error_stream)",
                &self.late_rows,
            ),
            (
                "analytics_error_rows",
                "Rows of error_stream (late, not fitting the schema, over the state bound, failed)",
                &self.error_rows,
            ),
        ] {
            r.register(name, help, f.clone());
        }
        for (name, help, f) in [
            (
                "analytics_watermark_lag_seconds",
                "Now less the smallest watermark of an application's windows",
                &self.watermark_lag_seconds,
            ),
            (
                "analytics_millis_behind_latest",
                "How far the records an application reads are behind the input's newest",
                &self.millis_behind_latest,
            ),
            (
                "analytics_open_windows",
                "Windows open over an application's pumps",
                &self.open_windows,
            ),
            (
                "analytics_open_groups",
                "Groups (window × keys) open over an application's pumps (bound: analytics.groups_max per pump)",
                &self.open_groups,
            ),
            (
                "analytics_state_bytes",
                "Bytes of an application's open windows, about",
                &self.state_bytes,
            ),
            (
                "analytics_checkpoint_milliseconds",
                "How long an application's last checkpoint and publication took",
                &self.checkpoint_milliseconds,
            ),
        ] {
            r.register(name, help, f.clone());
        }
    }

    /// Copies `n` into the series of `application`.
    pub fn note(&self, application: &str, n: &AppNumbers) {
        let l = AppLabel {
            application: application.to_string(),
        };
        to(&self.records_in.get_or_create(&l), n.records_in);
        to(&self.bytes_in.get_or_create(&l), n.bytes_in);
        to(&self.records_out.get_or_create(&l), n.records_out);
        to(&self.late_rows.get_or_create(&l), n.late_rows);
        to(&self.error_rows.get_or_create(&l), n.error_rows);
        self.watermark_lag_seconds
            .get_or_create(&l)
            .set(n.watermark_lag_ms / 1000);
        self.millis_behind_latest
            .get_or_create(&l)
            .set(n.millis_behind_latest);
        self.open_windows.get_or_create(&l).set(n.open_windows);
        self.open_groups.get_or_create(&l).set(n.open_groups);
        self.state_bytes.get_or_create(&l).set(n.state_bytes);
        self.checkpoint_milliseconds
            .get_or_create(&l)
            .set(n.checkpoint_ms);
    }
}
