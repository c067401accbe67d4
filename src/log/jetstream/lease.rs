//! Delivery leases with fenced checkpoints, in a JetStream key-value bucket.
//!
//! Each (log, consumer, shard) has one key whose value says which node
//! delivers the shard, until when, and the shard's checkpoint. Every write
//! is a compare-and-swap on the key's revision: a node takes a free or
//! expired lease by writing over the revision it read, renews and moves the
//! checkpoint by writing over the revision it last wrote. Once another node
//! has taken the lease, the old owner's next write finds a newer revision
//! and is refused — it is fenced, and stops delivering the shard. A lease
//! expires `ttl` after its last renewal by the owner's wall clock; nodes'
//! clocks must agree to well within the ttl.
//!
//! The same bucket holds each node's heartbeat (`node.<id>`), for `status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The bucket's name.
const BUCKET: &str = "hydrant_leases";

/// A lease key's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseState {
    /// The node delivering the shard; empty when released.
    pub owner: String,
    /// When the lease lapses unless renewed (epoch ms).
    pub expires_ms: i64,
    /// The shard's checkpoint: delivery resumes here.
    pub offset: Option<u64>,
}

impl LeaseState {
    /// Whether some node holds the lease now.
    pub fn is_held(&self) -> bool {
        !self.owner.is_empty() && self.expires_ms > now_ms()
    }

    /// Whether a node other than `node` holds the lease now.
    pub fn held_by_other(&self, node: &str) -> bool {
        self.is_held() && self.owner != node
    }
}

/// Why a lease write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease on {0} was taken by another node")]
    Fenced(String),
    #[error("lease {key}: {message}")]
    Store { key: String, message: String },
}

/// The node's handle on the lease bucket.
pub struct Leases {
    kv: kv::Store,
    node: String,
    ttl: Duration,
    /// How long a listing of the leases is asked again.
    patience: Duration,
    /// Leases this node holds now.
    held_here: AtomicUsize,
    /// Leases per live node, rounded up, as last counted (0: not yet).
    share: AtomicUsize,
    /// Set while one of this node's shards gives its lease up to even the
    /// load out: one at a time.
    shedding: AtomicBool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The key of shard `shard` of consumer `consumer` on the log `log`.
pub fn lease_key(log: &str, consumer: &str, shard: u32) -> String {
    format!("{}{shard}", lease_prefix(log, Some(consumer)))
}

/// The start of every lease key of `consumer` on the log `log` (of every
/// consumer's, for None).
pub fn lease_prefix(log: &str, consumer: Option<&str>) -> String {
    let Some(consumer) = consumer else {
        return format!("lease.{log}.");
    };
    let consumer: String = consumer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '='
            }
        })
        .collect();
    format!("lease.{log}.{consumer}.")
}

impl Leases {
    /// Opens (creating if needed) the bucket, replicated as the logs are.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        opts: &super::JetStreamOptions,
        node: &str,
        ttl: Duration,
    ) -> Result<Leases, String> {
        let kv =
            super::defs::open_bucket(js, opts, BUCKET, "Hydrant delivery leases and checkpoints")
                .await?;
        Ok(Leases {
            kv,
            node: node.to_string(),
            ttl,
            patience: opts.patience,
            held_here: AtomicUsize::new(0),
            share: AtomicUsize::new(0),
            shedding: AtomicBool::new(false),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn store_err(key: &str, e: impl std::fmt::Display) -> LeaseError {
        LeaseError::Store {
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    /// The key's state and revision, if it has one.
    pub async fn peek(&self, key: &str) -> Result<Option<(LeaseState, u64)>, LeaseError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| Self::store_err(key, e))?;
        Ok(entry.and_then(|e| {
            if e.operation != kv::Operation::Put {
                return None;
            }
            let state = serde_json::from_slice(&e.value).unwrap_or_default();
            Some((state, e.revision))
        }))
    }

    /// Takes the lease on `key` if it is free, expired, or already this
    /// node's; None if another node holds it.
    pub async fn try_acquire(self: &Arc<Self>, key: &str) -> Result<Option<Lease>, LeaseError> {
        let current = self.peek(key).await?;
        self.try_take(key, current).await
    }

    /// [`Self::try_acquire`] from the key's state and revision as just read
    /// ([`Self::peek`]); the write is refused if it changed since.
    pub async fn try_take(
        self: &Arc<Self>,
        key: &str,
        current: Option<(LeaseState, u64)>,
    ) -> Result<Option<Lease>, LeaseError> {
        let offset = current.as_ref().and_then(|(s, _)| s.offset);
        if current
            .as_ref()
            .is_some_and(|(s, _)| s.held_by_other(&self.node))
        {
            return Ok(None);
        }
        let state = LeaseState {
            owner: self.node.clone(),
            expires_ms: now_ms() + self.ttl.as_millis() as i64,
            offset,
        };
        let value = Bytes::from(serde_json::to_vec(&state).unwrap_or_default());
        let written = match &current {
            Some((_, rev)) => self
                .kv
                .update(key, value, *rev)
                .await
                .map_err(|e| e.to_string()),
            None => self.kv.create(key, value).await.map_err(|e| e.to_string()),
        };
        match written {
            Ok(revision) => Ok(Some(Lease::new(
                self.clone(),
                key.to_string(),
                state,
                revision,
            ))),
            // Another node was quicker.
            Err(_) => Ok(None),
        }
    }

    /// Whether this node holds its share of the leases or more: it then
    /// leaves a free lease to a node with fewer.
    pub fn at_share(&self) -> bool {
        let share = self.share.load(Ordering::Acquire);
        share > 0 && self.held_here.load(Ordering::Acquire) >= share
    }

    /// Starts giving one lease up if this node holds more than its share
    /// and is not giving one up already; true if the caller should.
    pub fn start_shedding(&self) -> bool {
        let share = self.share.load(Ordering::Acquire);
        share > 0
            && self.held_here.load(Ordering::Acquire) > share
            && self
                .shedding
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    pub fn done_shedding(&self) {
        self.shedding.store(false, Ordering::Release);
    }

    /// Counts the leases and the live nodes again: each node's share is
    /// the leases over the nodes, rounded up.
    pub async fn count_shares(&self) -> Result<(), LeaseError> {
        let now = now_ms();
        let all = self.all().await?;
        let leases = all.iter().filter(|(k, _)| k.starts_with("lease.")).count();
        let nodes = all
            .iter()
            .filter(|(k, s)| k.starts_with("node.") && s.expires_ms > now)
            .count()
            .max(1);
        self.share.store(leases.div_ceil(nodes), Ordering::Release);
        Ok(())
    }

    /// Gives `key` a first checkpoint at `offset`, unowned, unless it has a
    /// state already. Answers whether it wrote.
    pub async fn seed(&self, key: &str, offset: u64) -> Result<bool, LeaseError> {
        let state = LeaseState {
            offset: Some(offset),
            ..Default::default()
        };
        let value = Bytes::from(serde_json::to_vec(&state).unwrap_or_default());
        let attempt = || {
            let value = value.clone();
            async move {
                match self.kv.create(key, value).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    // Two nodes seeding at once: the loser may see the race
                    // as another error ("wrong last sequence"), and a replica
                    // may not show the winner's entry yet: look again, every
                    // 100 ms for up to `cluster.nats.patience_secs`.
                    Err(e) => match self.peek(key).await {
                        Ok(Some(_)) => Ok(false),
                        _ => Err(e),
                    },
                }
            }
        };
        super::patiently(
            self.patience,
            Duration::from_millis(100),
            attempt,
            |e| tracing::debug!(key, error = %e, "seeding a lease raced; looking again"),
        )
        .await
        .map_err(|e| Self::store_err(key, e))
    }

    /// Every lease and node heartbeat, for `status`.
    pub async fn all(&self) -> Result<Vec<(String, LeaseState)>, LeaseError> {
        let names = super::defs::list_keys(&self.kv, BUCKET, self.patience)
            .await
            .map_err(|e| Self::store_err(BUCKET, e))?;
        let mut out = Vec::new();
        for k in names {
            if let Some((s, _)) = self.peek(&k).await? {
                out.push((k, s));
            }
        }
        Ok(out)
    }

    /// How many leases under `prefix` some node holds now.
    pub async fn held(&self, prefix: &str) -> Result<usize, LeaseError> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .filter(|(k, s)| k.starts_with(prefix) && s.is_held())
            .count())
    }

    /// Removes every lease under `prefix`, checkpoints and all (a deleted
    /// stream's, so that one created again under its name starts afresh).
    pub async fn forget(&self, prefix: &str) -> Result<(), LeaseError> {
        for (k, _) in self.all().await? {
            if k.starts_with(prefix) {
                self.kv
                    .purge(&k)
                    .await
                    .map_err(|e| Self::store_err(&k, e))?;
            }
        }
        Ok(())
    }

    /// Writes this node's heartbeat (`node.<id>`), valid for one ttl.
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        let key = format!("node.{}", self.node);
        let state = LeaseState {
            owner: self.node.clone(),
            expires_ms: now_ms() + self.ttl.as_millis() as i64,
            offset: None,
        };
        self.kv
            .put(
                &key,
                Bytes::from(serde_json::to_vec(&state).unwrap_or_default()),
            )
            .await
            .map(|_| ())
            .map_err(|e| Self::store_err(&key, e))
    }
}

/// A lease this node holds (counted in its node's share while it lives).
pub struct Lease {
    leases: Arc<Leases>,
    key: String,
    /// The state last written and its revision: the next write must find
    /// exactly this revision.
    state: tokio::sync::Mutex<(LeaseState, u64)>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leases.held_here.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lease {
    fn new(leases: Arc<Leases>, key: String, state: LeaseState, revision: u64) -> Lease {
        leases.held_here.fetch_add(1, Ordering::AcqRel);
        Lease {
            leases,
            key,
            state: tokio::sync::Mutex::new((state, revision)),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The checkpoint the lease held when it was taken.
    pub async fn offset(&self) -> Option<u64> {
        self.state.lock().await.0.offset
    }

    /// Writes `f`'s change of the state over the revision last written,
    /// with the expiry pushed out by a ttl.
    async fn write(&self, f: impl FnOnce(&mut LeaseState)) -> Result<(), LeaseError> {
        let mut g = self.state.lock().await;
        let mut next = g.0.clone();
        f(&mut next);
        if !next.owner.is_empty() {
            next.expires_ms = now_ms() + self.leases.ttl.as_millis() as i64;
        }
        let value = Bytes::from(serde_json::to_vec(&next).unwrap_or_default());
        match self.leases.kv.update(&self.key, value, g.1).await {
            Ok(revision) => {
                *g = (next, revision);
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Fenced(self.key.clone()))
            }
            Err(e) => Err(Leases::store_err(&self.key, e)),
        }
    }

    /// Extends the lease by a ttl.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        self.write(|_| {}).await
    }

    /// Moves the checkpoint to `offset` (and renews): refused once another
    /// node took the lease.
    pub async fn checkpoint(&self, offset: u64) -> Result<(), LeaseError> {
        self.write(|s| s.offset = Some(offset)).await
    }

    /// Gives the lease up, keeping the checkpoint, so another node may take
    /// it at once.
    pub async fn release(&self) -> Result<(), LeaseError> {
        self.write(|s| {
            s.owner.clear();
            s.expires_ms = 0;
        })
        .await
    }
}
