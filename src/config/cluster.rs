//! `cluster`: the node's name and the NATS JetStream cluster that holds the
//! logs, the shared definitions and the delivery leases. Without the
//! section Hydrant runs alone on its local disk.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawCluster, RawNats};
use super::{ConfigError, err, range_check};
use crate::log::jetstream::JetStreamOptions;

/// The validated `cluster` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster: it owns leases by it.
    pub node_id: String,
    pub nats: JetStreamOptions,
    /// How long a delivery lease lasts without renewal: a node that stops
    /// loses its shards to another after this long.
    pub lease: Duration,
}

/// The monitoring endpoint NATS serves by default beside `server`
/// (`nats://HOST:PORT` → `http://HOST:8222`).
fn default_monitor(server: &str) -> Option<String> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => hostport,
    };
    (!host.is_empty()).then(|| format!("http://{host}:8222"))
}

/// Validates `cluster`.
pub(super) fn cluster(errors: &mut Vec<ConfigError>, rc: RawCluster) -> Option<ClusterConfig> {
    let node_id = rc.node_id.unwrap_or_default();
    if node_id.is_empty()
        || node_id.len() > 64
        || !node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        errors.push(err(
            "cluster.node_id",
            "is required: 1 to 64 letters, digits, `_` or `-`, unique in the cluster",
        ));
    }
    let Some(n) = rc.nats else {
        errors.push(err(
            "cluster.nats",
            "is required: `nats: { servers: [nats://HOST:PORT, ...] }`",
        ));
        return None;
    };
    let nats = nats(errors, n);
    let lease_secs = range_check(
        errors,
        "cluster.lease_secs",
        rc.lease_secs.unwrap_or(10),
        2,
        3600,
    );
    Some(ClusterConfig {
        node_id,
        nats,
        lease: Duration::from_secs(lease_secs),
    })
}

/// Validates `cluster.nats`.
fn nats(errors: &mut Vec<ConfigError>, n: RawNats) -> JetStreamOptions {
    if n.servers.is_empty() {
        errors.push(err(
            "cluster.nats.servers",
            "is required: at least one nats://HOST:PORT",
        ));
    }
    for (i, s) in n.servers.iter().enumerate() {
        if s.parse::<async_nats::ServerAddr>().is_err() {
            errors.push(err(
                format!("cluster.nats.servers[{i}]"),
                format!("`{s}` is not a NATS server address (nats://HOST:PORT)"),
            ));
        }
    }
    let monitor = match n.monitor {
        Some(m) => m,
        None => n
            .servers
            .iter()
            .filter_map(|s| default_monitor(s))
            .collect(),
    };
    for (i, m) in monitor.iter().enumerate() {
        if !(m.starts_with("http://") || m.starts_with("https://")) {
            errors.push(err(
                format!("cluster.nats.monitor[{i}]"),
                format!("`{m}` is not an http:// or https:// address"),
            ));
        }
    }
    if n.password.is_some() != n.user.is_some() {
        errors.push(err(
            "cluster.nats.password",
            "user and password go together",
        ));
    }
    let replicas = range_check(
        errors,
        "cluster.nats.replicas",
        n.replicas.unwrap_or(3),
        1,
        5,
    );
    let publishes_in_flight = range_check(
        errors,
        "cluster.nats.publishes_in_flight",
        n.publishes_in_flight.unwrap_or(32),
        1,
        50,
    );
    // 0: no bound per shard; the servers' JetStream storage bounds them all.
    let shard_bytes_max = n.shard_bytes_max.unwrap_or(0);
    if shard_bytes_max != 0 && shard_bytes_max < 1 << 20 {
        errors.push(err(
            "cluster.nats.shard_bytes_max",
            format!("{shard_bytes_max} is below 1 MiB (1048576), or 0 for no bound per shard"),
        ));
    }
    let timeout_ms = range_check(
        errors,
        "cluster.nats.request_timeout_ms",
        n.request_timeout_ms.unwrap_or(5_000),
        100,
        600_000,
    );
    let start_wait_secs = range_check(
        errors,
        "cluster.nats.start_wait_secs",
        n.start_wait_secs.unwrap_or(60),
        1,
        3600,
    );
    let patience_secs = range_check(
        errors,
        "cluster.nats.patience_secs",
        n.patience_secs.unwrap_or(30),
        1,
        3600,
    );
    JetStreamOptions {
        servers: n.servers,
        replicas,
        monitor,
        allow_unsynced: n.allow_unsynced.unwrap_or(false),
        publishes_in_flight,
        shard_bytes_max,
        request_timeout: Duration::from_millis(timeout_ms),
        start_wait: Duration::from_secs(start_wait_secs),
        patience: Duration::from_secs(patience_secs),
        credentials_file: n.credentials_file.map(PathBuf::from),
        user: n.user.zip(n.password),
        token: n.token,
        tls_ca_file: n.tls_ca_file.map(PathBuf::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_defaults_to_port_8222_of_each_server() {
        assert_eq!(
            default_monitor("nats://10.0.0.1:4222").as_deref(),
            Some("http://10.0.0.1:8222")
        );
        assert_eq!(
            default_monitor("nats://u:p@nats-0.nats:4222").as_deref(),
            Some("http://nats-0.nats:8222")
        );
        assert_eq!(
            default_monitor("nats-1").as_deref(),
            Some("http://nats-1:8222")
        );
    }

    fn errors(yaml: &str) -> Vec<String> {
        match crate::config::parse(yaml) {
            Ok(_) => panic!("expected errors for:\n{yaml}"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_shortest_cluster_section_gets_every_default() {
        let c = crate::config::parse(
            "cluster: { node_id: a, nats: { servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222], replicas: 3 } }\n",
        )
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.node_id, "a");
        assert_eq!(cl.lease, Duration::from_secs(10));
        assert_eq!(cl.nats.replicas, 3);
        assert_eq!(
            cl.nats.monitor,
            ["http://10.0.0.1:8222", "http://10.0.0.2:8222"]
        );
        assert!(!cl.nats.allow_unsynced);
        assert_eq!(cl.nats.publishes_in_flight, 32);
        assert_eq!(cl.nats.shard_bytes_max, 0);
        assert_eq!(cl.nats.start_wait, Duration::from_secs(60));
        assert_eq!(cl.nats.patience, Duration::from_secs(30));
        assert!(
            crate::config::parse("streams: {}\n")
                .unwrap()
                .cluster
                .is_none()
        );
    }

    #[test]
    fn each_cluster_error_names_its_path() {
        let all = errors(
            "cluster: { node_id: 'a b', nats: { servers: [ 'nats://x:notaport' ], replicas: 7, publishes_in_flight: 51, user: u, start_wait_secs: 0, patience_secs: 3601 } }\n",
        )
        .join("\n");
        for path in [
            "cluster.node_id",
            "cluster.nats.servers[0]",
            "cluster.nats.replicas",
            "cluster.nats.publishes_in_flight",
            "cluster.nats.password",
            "cluster.nats.start_wait_secs",
            "cluster.nats.patience_secs",
        ] {
            assert!(all.contains(path), "no error names {path}:\n{all}");
        }
        let e = errors("cluster: { node_id: a }\n").join("\n");
        assert!(e.contains("cluster.nats"), "{e}");
        let e = errors("cluster: { node_id: a, nats: { servers: [nats://h:1], replica: 3 } }\n")
            .join("\n");
        assert!(e.contains("replica"), "{e}");
    }
}
