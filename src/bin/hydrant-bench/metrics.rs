//! The daemon's Prometheus metrics, scraped: sums of series, the buckets of
//! its acknowledgement-latency histogram, and waiting until records are
//! delivered.

use std::time::{Duration, Instant};

use anyhow::bail;

/// The text of the daemon's `/metrics`.
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{url}metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// Sums the series of `name` whose labels contain `labels`.
pub fn sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sums the series of `name` (a line prefix: it may include labels) now.
pub async fn metric(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = metrics_text(http, url).await?;
    Ok(sum(&text, name, ""))
}

/// The cumulative buckets of the daemon's `put_latency_seconds` histogram for
/// one operation: (upper bound in seconds, count).
pub async fn latency_buckets(
    http: &reqwest::Client,
    url: &str,
    op: &str,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = metrics_text(http, url).await?;
    Ok(buckets(
        &text,
        "hydrant_put_latency_seconds_bucket",
        &format!("operation=\"{op}\""),
    ))
}

/// The cumulative buckets of the daemon's `log_sync_seconds` histogram (each
/// group commit's write and fdatasync): (upper bound in seconds, count).
pub async fn sync_buckets(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = metrics_text(http, url).await?;
    Ok(buckets(&text, "hydrant_log_sync_seconds_bucket", ""))
}

/// The buckets of the histogram series starting with `series` whose labels
/// contain `label`, sorted by upper bound.
fn buckets(text: &str, series: &str, label: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for l in text.lines() {
        if !l.starts_with(series) || !l.contains(label) {
            continue;
        }
        let le = l
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|x| {
                if x == "+Inf" {
                    f64::INFINITY
                } else {
                    x.parse().unwrap_or(f64::NAN)
                }
            });
        let n = l.rsplit(' ').next().and_then(|x| x.parse::<f64>().ok());
        if let (Some(le), Some(n)) = (le, n) {
            out.push((le, n));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The upper bound of the bucket holding quantile `q` of what was observed
/// between two scrapes.
pub fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let count = |b: &[(f64, f64)], le: f64| b.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1);
    let total = after.last().map_or(0.0, |x| x.1) - before.last().map_or(0.0, |x| x.1);
    for (le, n) in after {
        if total > 0.0 && (n - count(before, *le)) >= q * total {
            return *le;
        }
    }
    f64::NAN
}

/// Waits until `n` records are delivered, sent to error output or dropped by
/// the transform (counted since the daemon started); when that was seen.
pub async fn wait_delivered(http: &reqwest::Client, url: &str, n: f64) -> anyhow::Result<Instant> {
    let t = Instant::now();
    loop {
        let d = metric(http, url, "hydrant_delivery_records_total").await?
            + metric(http, url, "hydrant_error_output_records_total").await?
            + metric(
                http,
                url,
                "hydrant_transform_records_total{stream=\"bench\",outcome=\"dropped\"}",
            )
            .await?;
        if d >= n {
            return Ok(Instant::now());
        }
        if t.elapsed() > Duration::from_secs(1800) {
            bail!("only {d} of {n} records delivered after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE hydrant_log_sync_seconds histogram
hydrant_log_sync_seconds_sum 0.5
hydrant_log_sync_seconds_count 100
hydrant_log_sync_seconds_bucket{le=\"0.001\"} 90
hydrant_log_sync_seconds_bucket{le=\"0.004\"} 99
hydrant_log_sync_seconds_bucket{le=\"0.016\"} 100
hydrant_log_sync_seconds_bucket{le=\"+Inf\"} 100
hydrant_put_latency_seconds_bucket{le=\"0.001\",operation=\"PutRecordBatch\"} 7
hydrant_put_latency_seconds_bucket{le=\"+Inf\",operation=\"PutRecordBatch\"} 8
hydrant_put_latency_seconds_bucket{le=\"0.001\",operation=\"NdjsonPut\"} 1
";

    #[test]
    fn buckets_are_read_per_series_and_label_and_give_a_quantile() {
        let syncs = buckets(TEXT, "hydrant_log_sync_seconds_bucket", "");
        assert_eq!(
            syncs,
            vec![
                (0.001, 90.0),
                (0.004, 99.0),
                (0.016, 100.0),
                (f64::INFINITY, 100.0)
            ]
        );
        let puts = buckets(
            TEXT,
            "hydrant_put_latency_seconds_bucket",
            "operation=\"PutRecordBatch\"",
        );
        assert_eq!(puts, vec![(0.001, 7.0), (f64::INFINITY, 8.0)]);
        // Between an empty scrape and this one: 99 of 100 are within 4 ms.
        assert_eq!(bucket_quantile(&[], &syncs, 0.99), 0.004);
        // Between two scrapes: only what was observed in between counts.
        let before = vec![
            (0.001, 90.0),
            (0.004, 90.0),
            (0.016, 90.0),
            (f64::INFINITY, 90.0),
        ];
        assert_eq!(bucket_quantile(&before, &syncs, 0.5), 0.004);
    }
}
