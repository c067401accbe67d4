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
    let want = format!("operation=\"{op}\"");
    let mut out = Vec::new();
    for l in text.lines() {
        if !l.starts_with("hydrant_put_latency_seconds_bucket") || !l.contains(&want) {
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
    Ok(out)
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
