//! The clustered log: each shard is one replicated NATS JetStream stream.
//!
//! A shard's records are JetStream messages on the shard's own subject, with
//! the partition key and arrival time as headers and the data as the
//! payload; a record's offset is its JetStream sequence minus one, so offsets
//! (and the Kinesis sequence numbers and iterators made of them) mean the
//! same on every node. An append is acknowledged only once JetStream has
//! acknowledged every record of it, which it does after a quorum of the
//! stream's replicas stored it; a batch of records is published as one
//! atomic batch (ADR-50), so it gets consecutive offsets or none.
//!
//! [`Cluster`] is the connection every shard of the node shares, and checks
//! at start that every server syncs each write to disk before acknowledging
//! it ([`check`]). [`JetShard`] and [`JetReader`] implement the log seam
//! ([`super::ShardLog`]).

mod check;
mod defs;
mod lease;
mod reader;
mod shard;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

pub use defs::{DefChange, Defs};
pub use lease::{Lease, LeaseError, LeaseState, Leases, lease_key, lease_prefix};
pub use reader::JetReader;
pub use shard::JetShard;

/// How to reach the NATS cluster and how to use it. Built by the config's
/// `cluster.nats` section.
#[derive(Clone, Debug, PartialEq)]
pub struct JetStreamOptions {
    /// `nats://HOST:PORT` of the servers; the client fails over between them.
    pub servers: Vec<String>,
    /// Replicas of every shard's stream (JetStream allows 1 to 5).
    pub replicas: usize,
    /// The servers' HTTP monitoring endpoints (`http://HOST:8222`), read at
    /// start to check that JetStream syncs every write.
    pub monitor: Vec<String>,
    /// Start even if a server's JetStream does not sync every write.
    pub allow_unsynced: bool,
    /// Appends in flight per shard from this node (JetStream takes at most
    /// 50 atomic batches in flight per stream).
    pub publishes_in_flight: usize,
    /// Bytes one shard's stream may hold (0: no bound of its own); past
    /// them JetStream refuses appends (producers get a retryable error)
    /// rather than drop records. JetStream reserves the bound, times the
    /// replicas, of its servers' storage for every shard.
    pub shard_bytes_max: u64,
    /// How long a publish or read may wait for JetStream.
    pub request_timeout: Duration,
    /// How long a node starting waits for JetStream to answer at all (a
    /// cluster starting beside it may still be electing its leader).
    pub start_wait: Duration,
    /// How long a node asks again when JetStream does not answer yet: a
    /// bucket being created or just created, a listing of its keys, a
    /// shard's stream another node is creating or just created.
    pub patience: Duration,
    /// A NATS credentials file (JWT and seed), if the servers want one.
    pub credentials_file: Option<std::path::PathBuf>,
    /// User and password, if the servers want them.
    pub user: Option<(String, String)>,
    /// A token, if the servers want one.
    pub token: Option<String>,
    /// A PEM file of CA certificates to verify the servers' TLS with; TLS is
    /// required when it is set.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// Why the cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("{0}")]
    Unsafe(String),
    #[error("{0}")]
    Request(String),
}

/// The node's connection to JetStream, shared by all its shards.
pub struct Cluster {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) opts: JetStreamOptions,
    /// Delivery leases and checkpoints, and node heartbeats.
    pub leases: Arc<Leases>,
    /// Kinesis streams' definitions, shared by every node.
    pub kinesis_defs: Arc<Defs>,
    /// Delivery streams created through the API, shared by every node.
    pub stream_defs: Arc<Defs>,
    /// This node's name.
    pub node_id: String,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("servers", &self.opts.servers)
            .finish()
    }
}

impl Cluster {
    /// Connects, then checks that JetStream is there and safe to use
    /// ([`check::servers`]).
    pub async fn connect(
        node_id: &str,
        opts: JetStreamOptions,
        lease_ttl: Duration,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let servers = opts.servers.join(",");
        let fail = |reason: String| ClusterError::Connect {
            servers: servers.clone(),
            reason,
        };
        let mut co = async_nats::ConnectOptions::new()
            .name(format!("hydrant-{node_id}"))
            .request_timeout(Some(opts.request_timeout))
            .connection_timeout(opts.request_timeout);
        if let Some(path) = &opts.credentials_file {
            co = co
                .credentials_file(path)
                .await
                .map_err(|e| fail(format!("credentials_file {}: {e}", path.display())))?;
        }
        if let Some((user, password)) = &opts.user {
            co = co.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &opts.token {
            co = co.token(token.clone());
        }
        if let Some(ca) = &opts.tls_ca_file {
            co = co.add_root_certificates(ca.clone()).require_tls(true);
        }
        let addrs = opts
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        let client = co.connect(addrs).await.map_err(|e| fail(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(opts.request_timeout);
        // A cluster starting beside Hydrant may still be electing its
        // JetStream leader: wait for it a while.
        patiently(
            opts.start_wait,
            Duration::from_millis(500),
            || js.query_account(),
            |e| tracing::info!(error = %e, "waiting for JetStream"),
        )
        .await
        .map_err(|e| {
            fail(format!(
                "JetStream is not enabled or not reachable after {:?} (cluster.nats.start_wait_secs): {e}",
                opts.start_wait
            ))
        })?;
        check::servers(&opts).await?;
        let leases = Leases::open(&js, &opts, node_id, lease_ttl)
            .await
            .map_err(ClusterError::Request)?;
        let kinesis_defs = Defs::open(
            &js,
            &opts,
            "hydrant_kinesis",
            "Hydrant's Kinesis stream definitions",
        )
        .await
        .map_err(ClusterError::Request)?;
        let stream_defs = Defs::open(
            &js,
            &opts,
            "hydrant_streams",
            "Hydrant's delivery streams created through the API",
        )
        .await
        .map_err(ClusterError::Request)?;
        Ok(Arc::new(Cluster {
            kinesis_defs: Arc::new(kinesis_defs),
            stream_defs: Arc::new(stream_defs),
            node_id: node_id.to_string(),
            client,
            js,
            opts,
            leases: Arc::new(leases),
            handle: tokio::runtime::Handle::current(),
        }))
    }

    /// Runs `f` to completion from synchronous code: a blocking thread, or a
    /// worker of the (multi-threaded) runtime, which it steps aside from.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(f))
            }
            _ => self.handle.block_on(f),
        }
    }

    /// Whether the node's connection to NATS is up.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The servers the client knows of.
    pub fn servers(&self) -> &[String] {
        &self.opts.servers
    }

    /// The cluster as this node sees it, for `status`: its connection,
    /// JetStream's account usage, the nodes alive (by heartbeat) and who
    /// holds each delivery lease.
    pub async fn status(&self) -> serde_json::Value {
        use serde_json::json;
        let now = chrono::Utc::now().timestamp_millis();
        let jetstream = match self.js.query_account().await {
            Ok(a) => json!({
                "ok": true,
                "streams": a.streams,
                "consumers": a.consumers,
                "storage_bytes": a.storage,
            }),
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        };
        let (mut nodes, mut leases) = (Vec::new(), Vec::new());
        match self.leases.all().await {
            Ok(mut all) => {
                all.sort_by(|a, b| a.0.cmp(&b.0));
                for (key, s) in all {
                    if let Some(node) = key.strip_prefix("node.") {
                        nodes.push(json!({
                            "node": node,
                            "alive": s.expires_ms > now,
                            "seen_ms_ago": (now - (s.expires_ms - self.leases.ttl().as_millis() as i64)).max(0),
                        }));
                    } else if let Some(lease) = key.strip_prefix("lease.") {
                        let held = s.is_held();
                        leases.push(json!({
                            "lease": lease,
                            "owner": if held { Some(s.owner) } else { None },
                            "checkpoint": s.offset,
                        }));
                    }
                }
            }
            Err(e) => leases.push(json!({ "error": e.to_string() })),
        }
        json!({
            "node": self.node_id,
            "connected": self.connected(),
            "servers": self.opts.servers,
            "replicas": self.opts.replicas,
            "jetstream": jetstream,
            "nodes": nodes,
            "leases": leases,
        })
    }
}

/// A log's name in JetStream: `kind` keeps the namespaces apart (delivery
/// streams and Kinesis streams may share a name), and the characters a
/// stream name allows but JetStream does not (`.`) are escaped as `=XX`.
pub fn log_name(kind: &str, name: &str) -> String {
    let mut out = format!("hydrant_{kind}_");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("={b:02X}"));
            }
        }
    }
    out
}

/// The JetStream stream of shard `shard` of the log named `log` (a
/// [`log_name`]), and the subject its records are published on.
pub(crate) fn shard_names(log: &str, shard: u32) -> (String, String) {
    (format!("{log}_{shard}"), format!("{log}.{shard}"))
}

/// Tries `attempt` until it succeeds or `patience` has passed since the
/// first try, pausing `pause` between tries and telling `again` each error
/// it tries again after; the last error once out of patience.
async fn patiently<T, E, F: Future<Output = Result<T, E>>>(
    patience: Duration,
    pause: Duration,
    mut attempt: impl FnMut() -> F,
    again: impl Fn(&E),
) -> Result<T, E> {
    let started = std::time::Instant::now();
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < patience => {
                again(&e);
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_dots_and_keep_namespaces_apart() {
        assert_eq!(log_name("kds", "app.logs-1"), "hydrant_kds_app=2Elogs-1");
        assert_ne!(log_name("kds", "a"), log_name("fh", "a"));
        let (stream, subject) = shard_names(&log_name("fh", "x_y"), 3);
        assert_eq!(stream, "hydrant_fh_x_y_3");
        assert_eq!(subject, "hydrant_fh_x_y.3");
        // No character JetStream refuses in a stream name.
        assert!(!stream.contains(['.', '*', '>', '/', '\\', ' ']));
    }
}
