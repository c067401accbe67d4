//! The start-up check that JetStream is safe to acknowledge on.
//!
//! By default a NATS server syncs JetStream writes to disk every two
//! minutes and acknowledges before it has: a power loss on a quorum of
//! servers then loses records Hydrant told a producer were durable. Hydrant
//! therefore reads every server's `/varz` (the HTTP monitoring endpoint) and
//! refuses to start unless each has `jetstream { sync_interval: always }`,
//! or the user opted out with `cluster.nats.allow_unsynced: true`. The
//! servers must also take a whole record: `max_payload` of at least 1 MiB
//! plus room for its headers. The account must see the number of servers a
//! stream's replicas need.

use serde::Deserialize;

use super::{ClusterError, JetStreamOptions};

/// Largest record Hydrant accepts (Kinesis: 1 MiB with its key), plus room
/// for the headers.
pub const PAYLOAD_NEEDED: i64 = (1 << 20) + 4096;

#[derive(Deserialize)]
struct Varz {
    server_name: Option<String>,
    version: Option<String>,
    max_payload: Option<i64>,
    jetstream: Option<VarzJetStream>,
}

#[derive(Deserialize)]
struct VarzJetStream {
    config: Option<VarzJsConfig>,
}

#[derive(Deserialize)]
struct VarzJsConfig {
    #[serde(default)]
    sync_always: bool,
}

/// What one server's `/varz` says against what Hydrant needs: None if fine,
/// else why not, naming the setting.
fn judge(url: &str, body: &str, allow_unsynced: bool) -> Option<String> {
    let v: Varz = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Some(format!("{url}/varz is not a NATS server's answer: {e}")),
    };
    let name = v.server_name.unwrap_or_else(|| url.to_string());
    if let Some(version) = &v.version
        && !at_least(version, (2, 12))
    {
        return Some(format!(
            "NATS server {name} ({url}) is version {version}: Hydrant needs 2.12 or later (atomic batch publish)"
        ));
    }
    let Some(config) = v.jetstream.and_then(|j| j.config) else {
        return Some(format!(
            "NATS server {name} ({url}) has no JetStream: enable it with a `jetstream {{ store_dir: ..., sync_interval: always }}` block"
        ));
    };
    if !config.sync_always && !allow_unsynced {
        return Some(format!(
            "NATS server {name} ({url}) does not sync every JetStream write before acknowledging it (jetstream.sync_interval is not `always`): an acknowledged record could be lost on power loss. Set `jetstream {{ sync_interval: always }}` on every server, or cluster.nats.allow_unsynced: true to accept that risk"
        ));
    }
    if let Some(max) = v.max_payload
        && max < PAYLOAD_NEEDED
    {
        return Some(format!(
            "NATS server {name} ({url}) has max_payload {max}, too small for a 1 MiB record with its headers: set max_payload to at least {PAYLOAD_NEEDED} (for example `max_payload: 2MB`)"
        ));
    }
    None
}

/// Whether a NATS version (`2.15.1`, `v2.12.0-beta`) is at least `min`.
fn at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}

/// Checks every monitoring endpoint. An endpoint that does not answer is an
/// error too: safety that cannot be checked is not assumed.
pub(super) async fn servers(opts: &JetStreamOptions) -> Result<(), ClusterError> {
    let http = reqwest::Client::builder()
        .timeout(opts.request_timeout)
        .build()
        .map_err(|e| ClusterError::Request(e.to_string()))?;
    for url in &opts.monitor {
        let url = url.trim_end_matches('/');
        let body = match http.get(format!("{url}/varz")).send().await {
            Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
            Ok(r) => Err(format!("answered {}", r.status())),
            Err(e) => Err(e.to_string()),
        };
        let body = match body {
            Ok(b) => b,
            Err(e) if opts.allow_unsynced => {
                tracing::warn!(monitor = url, error = %e, "cannot read a NATS server's settings; going on as cluster.nats.allow_unsynced says");
                continue;
            }
            Err(e) => {
                return Err(ClusterError::Unsafe(format!(
                    "cannot check that NATS server {url} syncs every JetStream write (cluster.nats.monitor): {url}/varz: {e}. Give each server's monitoring address (`http_port` in its config) in cluster.nats.monitor, or set cluster.nats.allow_unsynced: true"
                )));
            }
        };
        if let Some(why) = judge(url, &body, opts.allow_unsynced) {
            return Err(ClusterError::Unsafe(why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varz(sync_always: bool, max_payload: i64) -> String {
        serde_json::json!({
            "server_name": "n1",
            "max_payload": max_payload,
            "jetstream": {"config": {"sync_interval": 120000000000u64, "sync_always": sync_always}},
        })
        .to_string()
    }

    #[test]
    fn refuses_a_server_that_does_not_sync_every_write() {
        let why = judge("http://h:8222", &varz(false, 8 << 20), false).unwrap();
        assert!(why.contains("sync_interval"), "{why}");
        assert!(why.contains("allow_unsynced"), "{why}");
        assert!(judge("http://h:8222", &varz(false, 8 << 20), true).is_none());
        assert!(judge("http://h:8222", &varz(true, 8 << 20), false).is_none());
    }

    #[test]
    fn refuses_a_server_older_than_atomic_batches() {
        let old = r#"{"server_name":"n","version":"2.10.24","max_payload":9000000,"jetstream":{"config":{"sync_always":true}}}"#;
        let why = judge("u", old, false).unwrap();
        assert!(why.contains("2.12"), "{why}");
        assert!(at_least("2.15.1", (2, 12)) && at_least("v3.0.0", (2, 12)));
        assert!(!at_least("2.11.9", (2, 12)));
    }

    #[test]
    fn refuses_a_payload_limit_below_one_record() {
        let why = judge("http://h:8222", &varz(true, 1 << 20), false).unwrap();
        assert!(why.contains("max_payload"), "{why}");
    }

    #[test]
    fn refuses_a_server_without_jetstream() {
        let why = judge("u", r#"{"server_name":"n","max_payload":9000000}"#, false).unwrap();
        assert!(why.contains("no JetStream"), "{why}");
        assert!(judge("u", "<html>", false).unwrap().contains("not a NATS"));
    }
}
