//! Enhanced fan-out's registered consumers and their subscriptions.
//!
//! A consumer is registered on a stream (persisted in its definition, so it
//! survives a restart) and is `CREATING` for a short while before it is
//! `ACTIVE`, as Kinesis's are. An active consumer holds at most one
//! subscription per shard: a second `SubscribeToShard` within 5 seconds of
//! the first is refused, a later one takes the shard over and ends the
//! first. Subscriptions are bounded per daemon; a subscription holds a
//! place until it ends, however its client went away.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{KinesisError, KinesisStream};
use crate::aws::{self, ACCOUNT};

/// Kinesis's wait before a second subscription may take a shard over.
const TAKEOVER_AFTER: Duration = Duration::from_secs(5);

/// A registered consumer, as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSpec {
    pub name: String,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A consumer's state, derived from its age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerStatus {
    Creating,
    Active,
}

impl ConsumerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerStatus::Creating => "CREATING",
            ConsumerStatus::Active => "ACTIVE",
        }
    }
}

/// A registered consumer with what the API shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub arn: String,
    pub created_ms: i64,
    pub status: ConsumerStatus,
}

/// One open subscription's place, given back when dropped.
pub struct Subscription {
    /// Cancelled when another subscription takes the shard over, or the
    /// consumer is deregistered.
    pub cancel: CancellationToken,
    key: (String, u32),
    id: u64,
    stream: std::sync::Weak<KinesisStream>,
    open: std::sync::Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(s) = self.stream.upgrade() {
            let mut subs = s.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            if subs.get(&self.key).is_some_and(|e| e.id == self.id) {
                subs.remove(&self.key);
            }
        }
    }
}

/// What the stream keeps of an open subscription.
pub(super) struct Open {
    id: u64,
    started: Instant,
    cancel: CancellationToken,
}

/// The subscriptions of one stream, by (consumer, shard).
pub(super) type Subscriptions = Mutex<BTreeMap<(String, u32), Open>>;

/// Bounds of enhanced fan-out.
#[derive(Clone, Copy, Debug)]
pub struct FanOutLimits {
    pub consumers_per_stream_max: usize,
    pub subscriptions_max: usize,
    pub activation: Duration,
}

impl KinesisStream {
    fn consumer_of(&self, spec: &ConsumerSpec, now_ms: i64, activation: Duration) -> Consumer {
        let active = now_ms - spec.created_ms >= activation.as_millis() as i64;
        Consumer {
            arn: aws::consumer_arn(&self.name, &spec.name, spec.created_ms / 1000),
            name: spec.name.clone(),
            created_ms: spec.created_ms,
            status: if active {
                ConsumerStatus::Active
            } else {
                ConsumerStatus::Creating
            },
        }
    }

    /// Every registered consumer, by name.
    pub fn consumers(&self, activation: Duration) -> Vec<Consumer> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut v: Vec<Consumer> = self
            .spec()
            .consumers
            .iter()
            .map(|c| self.consumer_of(c, now, activation))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The consumer of that name.
    pub fn consumer(&self, name: &str, activation: Duration) -> Option<Consumer> {
        self.consumers(activation)
            .into_iter()
            .find(|c| c.name == name)
    }

    /// Registers a consumer (persisted at once); it is `CREATING` until
    /// `activation` has passed.
    pub fn register_consumer(
        &self,
        name: &str,
        limits: FanOutLimits,
    ) -> Result<Consumer, KinesisError> {
        let now = chrono::Utc::now().timestamp_millis();
        let spec = ConsumerSpec {
            name: name.to_string(),
            created_ms: now,
            tags: Default::default(),
            policy: None,
        };
        self.update(|s| {
            if s.consumers.iter().any(|c| c.name == name) {
                return Err(KinesisError::InUse(format!(
                    "Consumer {name} under stream {} under account {ACCOUNT} already exists.",
                    s.name
                )));
            }
            if s.consumers.len() >= limits.consumers_per_stream_max {
                return Err(KinesisError::Limit(format!(
                    "Stream {} under account {ACCOUNT} already has {} registered consumers, the most allowed (kinesis.consumers_per_stream_max)",
                    s.name,
                    s.consumers.len()
                )));
            }
            s.consumers.push(spec.clone());
            Ok(())
        })?;
        Ok(self.consumer_of(&spec, now, limits.activation))
    }

    /// Deregisters a consumer and ends its subscriptions.
    pub fn deregister_consumer(&self, name: &str) -> Result<(), KinesisError> {
        self.update(|s| {
            let before = s.consumers.len();
            s.consumers.retain(|c| c.name != name);
            if s.consumers.len() == before {
                return Err(KinesisError::ResourceNotFound(format!(
                    "Consumer {name} under stream {} under account {ACCOUNT} not found.",
                    s.name
                )));
            }
            Ok(())
        })?;
        let subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        for ((consumer, _), open) in subs.iter() {
            if consumer == name {
                open.cancel.cancel();
            }
        }
        Ok(())
    }

    /// Takes the (consumer, shard) subscription: refused within 5 seconds of
    /// the last one (`ResourceInUseException`), else the last one is ended.
    pub fn subscribe(
        self: &std::sync::Arc<Self>,
        consumer: &str,
        shard: u32,
        open: &std::sync::Arc<AtomicUsize>,
        limits: FanOutLimits,
    ) -> Result<Subscription, KinesisError> {
        let key = (consumer.to_string(), shard);
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = subs.get(&key) {
            if prev.started.elapsed() < TAKEOVER_AFTER {
                return Err(KinesisError::InUse(format!(
                    "Another active subscription exists for consumer {consumer} on shard {} of stream {} under account {ACCOUNT}.",
                    super::position::shard_id(shard),
                    self.name
                )));
            }
            prev.cancel.cancel();
        }
        if open.fetch_add(1, Ordering::AcqRel) >= limits.subscriptions_max {
            open.fetch_sub(1, Ordering::AcqRel);
            return Err(KinesisError::Limit(format!(
                "{} subscriptions are open, the most allowed (kinesis.subscriptions_max)",
                limits.subscriptions_max
            )));
        }
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed) as u64;
        let cancel = CancellationToken::new();
        subs.insert(
            key.clone(),
            Open {
                id,
                started: Instant::now(),
                cancel: cancel.clone(),
            },
        );
        Ok(Subscription {
            cancel,
            key,
            id,
            stream: std::sync::Arc::downgrade(self),
            open: open.clone(),
        })
    }

    /// Ends every subscription of the stream (it is being deleted).
    pub fn end_subscriptions(&self) {
        let subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        for open in subs.values() {
            open.cancel.cancel();
        }
    }

    /// How many subscriptions of this stream are open.
    pub fn subscriptions_open(&self) -> usize {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
