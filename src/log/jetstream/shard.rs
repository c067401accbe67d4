//! One shard as a replicated JetStream stream: open it, append to it with
//! quorum acknowledgement, seal it, follow its end, trim it.
//!
//! The durable end other nodes' appends move is learned from a headers-only
//! ordered consumer that every node keeps on every shard it has open: a
//! consumer sees a message only once the stream stored it, after quorum, so
//! the end it reports is durable. Stream state (first sequence, bytes,
//! sealed) is refreshed from the stream's info every few seconds.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};

use super::{Cluster, JetReader, shard_names};
use crate::log::{AppendRecord, LogError};

/// Most messages JetStream takes in one atomic batch.
const BATCH_MAX: usize = 1000;
/// How often stream state is read again.
const REFRESH: Duration = Duration::from_secs(5);
/// The metadata key holding the log's identity on every shard's stream.
pub(crate) const LOG_ID: &str = "hydrant_log_id";
pub(crate) const KEY: &str = "Hydrant-Key";
pub(crate) const KEY_B64: &str = "Hydrant-Key-Base64";
pub(crate) const ARRIVAL: &str = "Hydrant-Arrival";

/// What readers and the follower share.
pub(crate) struct Shared {
    pub cluster: Arc<Cluster>,
    pub shard: u32,
    pub stream: String,
    pub durable: watch::Sender<u64>,
    pub oldest: AtomicU64,
    pub bytes: AtomicU64,
    pub sealed: AtomicBool,
}

impl Shared {
    fn advance(&self, end: u64) {
        self.durable.send_if_modified(|v| {
            let more = end > *v;
            if more {
                *v = end;
            }
            more
        });
    }

    fn note(&self, state: &stream::State, sealed: bool) {
        self.advance(state.last_sequence);
        self.oldest
            .store(state.first_sequence.saturating_sub(1), Ordering::Release);
        self.bytes.store(state.bytes, Ordering::Release);
        if sealed {
            self.sealed.store(true, Ordering::Release);
        }
    }

    pub(crate) fn err(&self, message: impl std::fmt::Display) -> LogError {
        LogError::Cluster {
            shard: self.shard,
            message: format!("JetStream stream {}: {message}", self.stream),
        }
    }
}

/// One shard of a log held in JetStream.
pub struct JetShard {
    shared: Arc<Shared>,
    subject: String,
    inflight: Semaphore,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for JetShard {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// The answer to a publish: an acknowledgement or JetStream's error.
#[derive(Deserialize)]
struct PubReply {
    seq: Option<u64>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// JetStream's error code for a write to a sealed stream.
const ERR_SEALED: u64 = 10109;

impl JetShard {
    /// Opens shard `shard` of the log `log` (a [`super::log_name`]),
    /// creating its stream if there is none, with `log_id` as its identity
    /// and `max_age` as its retention (None: until trimmed). A `sealed`
    /// shard is sealed now if a crash left it open. Returns the shard and
    /// the identity its stream holds (the first creator's).
    pub async fn open(
        cluster: Arc<Cluster>,
        log: &str,
        shard: u32,
        log_id: &str,
        max_age: Option<Duration>,
        sealed: bool,
    ) -> Result<(JetShard, String), LogError> {
        let (name, subject) = shard_names(log, shard);
        let fail = |m: String| LogError::Cluster {
            shard,
            message: format!("JetStream stream {name}: {m}"),
        };
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: cluster.opts.replicas,
            retention: stream::RetentionPolicy::Limits,
            // Full: refuse new records, never drop undelivered ones.
            discard: stream::DiscardPolicy::New,
            max_bytes: match cluster.opts.shard_bytes_max {
                0 => -1,
                n => i64::try_from(n).unwrap_or(i64::MAX),
            },
            max_age: max_age.unwrap_or_default(),
            allow_direct: true,
            allow_atomic_publish: true,
            metadata: [(LOG_ID.to_string(), log_id.to_string())].into(),
            description: Some(format!("Hydrant log {log}, shard {shard}")),
            ..Default::default()
        };
        // Another node may be creating it at this moment (the stream is
        // not found, yet creating it is refused), and a stream just
        // created may not answer yet (not found): try again, every quarter
        // second for the cluster's patience.
        let opened = || async {
            let mut s = match cluster.js.get_stream(&name).await {
                Ok(s) => s,
                Err(_) => {
                    (cluster.js.create_stream(config.clone()).await).map_err(|e| e.to_string())?
                }
            };
            s.info().await.cloned().map_err(|e| e.to_string())
        };
        let info = super::patiently(
            cluster.opts.patience,
            Duration::from_millis(250),
            opened,
            |e| tracing::debug!(stream = name, error = %e, "opening the shard's stream again"),
        )
        .await
        .map_err(fail)?;
        let info = apply_settings(&cluster.js, info, &config)
            .await
            .map_err(|e| fail(format!("cannot apply the settings: {e}")))?;
        let id = info
            .config
            .metadata
            .get(LOG_ID)
            .cloned()
            .unwrap_or_else(|| log_id.to_string());
        let (durable, _) = watch::channel(info.state.last_sequence);
        let shared = Arc::new(Shared {
            cluster: cluster.clone(),
            shard,
            stream: name,
            durable,
            oldest: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
        });
        shared.note(&info.state, info.config.sealed);
        let follower = tokio::spawn(follow(shared.clone(), subject.clone()));
        let js = JetShard {
            shared,
            subject,
            inflight: Semaphore::new(cluster.opts.publishes_in_flight.max(1)),
            follower,
        };
        if sealed && !js.is_sealed() {
            js.seal().await?;
        }
        Ok((js, id))
    }

    pub fn shard(&self) -> u32 {
        self.shared.shard
    }

    /// Appends `records` as one atomic batch (or a run of them, for more
    /// than JetStream takes in one) and resolves once JetStream acknowledged
    /// every record: stored by a quorum of replicas.
    pub async fn append(&self, records: Vec<AppendRecord>) -> Result<Range<u64>, LogError> {
        let shard = self.shared.shard;
        if records.is_empty() {
            let end = self.durable_end();
            return Ok(end..end);
        }
        if self.is_sealed() {
            return Err(LogError::Closed { shard });
        }
        let _permit = self
            .inflight
            .acquire()
            .await
            .map_err(|_| LogError::Closed { shard })?;
        let mut first = None;
        let mut last = 0;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<AppendRecord> = records.by_ref().take(BATCH_MAX).collect();
            let n = chunk.len() as u64;
            let seq = self.publish_batch(chunk).await?;
            first.get_or_insert(seq.saturating_sub(n));
            last = seq;
        }
        self.shared.advance(last);
        Ok(first.unwrap_or(last)..last)
    }

    /// Publishes one batch of at most [`BATCH_MAX`] records; answers the
    /// sequence of its last.
    async fn publish_batch(&self, chunk: Vec<AppendRecord>) -> Result<u64, LogError> {
        let client = &self.shared.cluster.client;
        let n = chunk.len();
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let mut reply = None;
        for (i, r) in chunk.into_iter().enumerate() {
            let mut h = headers(&r);
            if n > 1 {
                h.insert("Nats-Batch-Id", batch.as_str());
                h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
                if i + 1 == n {
                    h.insert("Nats-Batch-Commit", "1");
                }
            }
            // The first message opens the batch and the last commits it:
            // both are requests, so a refusal is heard; the others are sent
            // without waiting (a gap makes the commit fail).
            if i == 0 || i + 1 == n {
                let m = self.request(h, r.data, i == 0).await?;
                if i + 1 == n {
                    reply = Some(m.payload);
                } else if !m.payload.is_empty() {
                    self.check_reply(&m.payload)?;
                }
            } else {
                client
                    .publish_with_headers(self.subject.clone(), h, r.data)
                    .await
                    .map_err(|e| self.shared.err(format!("publish: {e}")))?;
            }
        }
        let payload = reply.ok_or_else(|| self.shared.err("no acknowledgement"))?;
        self.check_reply(&payload)?
            .ok_or_else(|| self.shared.err("an acknowledgement without a sequence"))
    }

    /// Sends one message of a batch as a request. The first of a batch
    /// (`first`) that no server takes yet — a stream just made, whose
    /// subject the servers have not all learned — reached no one and
    /// stored nothing, so it is sent again every 50 ms for up to
    /// `cluster.nats.request_timeout_ms`.
    async fn request(
        &self,
        h: HeaderMap,
        data: Bytes,
        first: bool,
    ) -> Result<async_nats::Message, LogError> {
        let client = &self.shared.cluster.client;
        let send = || client.request_with_headers(self.subject.clone(), h.clone(), data.clone());
        let sent = if first {
            // Only "no responders" is asked again; any other answer is final.
            super::patiently(
                self.shared.cluster.opts.request_timeout,
                Duration::from_millis(50),
                || async {
                    match send().await {
                        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(e),
                        answered => Ok(answered),
                    }
                },
                |_| {
                    tracing::debug!(
                        stream = self.shared.stream,
                        "no server takes the publish yet; sending it again"
                    )
                },
            )
            .await
            .unwrap_or_else(Err)
        } else {
            send().await
        };
        sent.map_err(|e| self.shared.err(format!("publish: {e}")))
    }

    /// Reads a publish reply: the sequence acknowledged, or the error.
    fn check_reply(&self, payload: &[u8]) -> Result<Option<u64>, LogError> {
        let r: PubReply = serde_json::from_slice(payload).map_err(|e| {
            self.shared
                .err(format!("an unreadable acknowledgement: {e}"))
        })?;
        match r.error {
            Some(e) if e.err_code == ERR_SEALED => {
                self.shared.sealed.store(true, Ordering::Release);
                Err(LogError::Closed {
                    shard: self.shared.shard,
                })
            }
            Some(e) => Err(self.shared.err(e.description)),
            None => Ok(r.seq),
        }
    }

    /// Seals the stream: JetStream refuses every later write, on every
    /// node. Answers the end offset.
    pub async fn seal(&self) -> Result<u64, LogError> {
        let js = &self.shared.cluster.js;
        let mut s = js
            .get_stream(&self.shared.stream)
            .await
            .map_err(|e| self.shared.err(e))?;
        let info = s.info().await.map_err(|e| self.shared.err(e))?.clone();
        let end = if info.config.sealed {
            info.state.last_sequence
        } else {
            let mut config = info.config.clone();
            config.sealed = true;
            js.update_stream(config)
                .await
                .map_err(|e| self.shared.err(format!("seal: {e}")))?
                .state
                .last_sequence
        };
        self.shared.advance(end);
        self.shared.sealed.store(true, Ordering::Release);
        Ok(end)
    }

    /// Changes the stream's retention. Blocking.
    pub fn set_max_age(&self, age: Duration) -> Result<(), LogError> {
        let shared = &self.shared;
        shared.cluster.block_on(async {
            let js = &shared.cluster.js;
            let mut s = js
                .get_stream(&shared.stream)
                .await
                .map_err(|e| shared.err(e))?;
            let mut config = s.info().await.map_err(|e| shared.err(e))?.config.clone();
            if config.max_age == age || config.sealed {
                return Ok(());
            }
            config.max_age = age;
            js.update_stream(config)
                .await
                .map(|_| ())
                .map_err(|e| shared.err(format!("retention: {e}")))
        })
    }

    pub fn is_sealed(&self) -> bool {
        self.shared.sealed.load(Ordering::Acquire)
    }

    pub fn durable_end(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    pub fn reader(&self, from: u64) -> JetReader {
        JetReader::new(self.shared.clone(), from)
    }

    /// The first offset whose record arrived at or after `arrival_ms`.
    /// JetStream finds the first message stored at or after a time; the
    /// reader then steps to the record whose own arrival time is there
    /// (nodes' clocks and the servers' may differ a little). Blocking.
    pub fn offset_at_time(&self, arrival_ms: i64) -> Result<u64, LogError> {
        let start = self
            .reader(0)
            .first_at_time(arrival_ms.saturating_sub(2_000))?;
        let mut reader = self.reader(start.max(self.oldest_offset()));
        let mut out = Vec::new();
        loop {
            reader.read_into(&mut out, 1_000, 4 << 20)?;
            if out.is_empty() {
                return Ok(reader.position());
            }
            if let Some(r) = out.iter().find(|r| r.arrival_ms >= arrival_ms) {
                return Ok(r.offset);
            }
        }
    }

    pub fn oldest_offset(&self) -> u64 {
        self.shared.oldest.load(Ordering::Acquire)
    }

    pub fn disk_bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Purges every record below `offset`. Blocking. Frees nothing of the
    /// local disk quota, so answers 0.
    pub fn delete_before(&self, offset: u64) -> Result<u64, LogError> {
        if offset <= self.oldest_offset() {
            return Ok(0);
        }
        let shared = &self.shared;
        shared.cluster.block_on(async {
            let s = shared
                .cluster
                .js
                .get_stream_no_info(&shared.stream)
                .await
                .map_err(|e| shared.err(e))?;
            s.purge()
                .sequence(offset + 1)
                .await
                .map_err(|e| shared.err(format!("purge: {e}")))?;
            shared.oldest.fetch_max(offset, Ordering::AcqRel);
            Ok(0)
        })
    }
}

/// A stream made under other settings takes this node's: replicas, size
/// bound, retention. A closed shard's stream is sealed, and stays as it was.
async fn apply_settings(
    js: &jetstream::Context,
    info: stream::Info,
    config: &stream::Config,
) -> Result<stream::Info, String> {
    let c = &info.config;
    if c.sealed
        || (c.num_replicas == config.num_replicas
            && c.max_bytes == config.max_bytes
            && c.discard == config.discard
            && c.max_age == config.max_age
            && c.allow_direct
            && c.allow_atomic_publish)
    {
        return Ok(info);
    }
    let mut next = c.clone();
    next.num_replicas = config.num_replicas;
    next.max_bytes = config.max_bytes;
    next.discard = config.discard;
    next.max_age = config.max_age;
    next.allow_direct = true;
    next.allow_atomic_publish = true;
    js.update_stream(next).await.map_err(|e| e.to_string())
}

/// The headers of one record: its partition key (as is when printable
/// ASCII, else in base64) and its arrival time.
fn headers(r: &AppendRecord) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !r.key.is_empty() {
        if r.key.iter().all(|b| (0x20..0x7f).contains(b)) {
            if let Ok(k) = std::str::from_utf8(&r.key) {
                h.insert(KEY, k);
            }
        } else {
            use base64::Engine as _;
            let k = base64::engine::general_purpose::STANDARD.encode(&r.key);
            h.insert(KEY_B64, k.as_str());
        }
    }
    h.insert(ARRIVAL, r.arrival_ms.to_string().as_str());
    h
}

/// The key a record's headers carry.
pub(crate) fn key_of(h: Option<&HeaderMap>) -> Bytes {
    let Some(h) = h else { return Bytes::new() };
    if let Some(k) = h.get(KEY) {
        return Bytes::copy_from_slice(k.as_str().as_bytes());
    }
    if let Some(k) = h.get(KEY_B64) {
        use base64::Engine as _;
        if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(k.as_str()) {
            return Bytes::from(v);
        }
    }
    Bytes::new()
}

/// Keeps the shard's durable end, oldest offset and sealed flag current
/// while the shard is open, whoever writes to it.
async fn follow(shared: Arc<Shared>, subject: String) {
    loop {
        if let Err(e) = follow_once(&shared, &subject).await {
            tracing::debug!(stream = shared.stream, error = %e, "following a JetStream shard; again in a second");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(shared: &Shared, subject: &str) -> Result<(), String> {
    let js = &shared.cluster.js;
    let mut s = js
        .get_stream(&shared.stream)
        .await
        .map_err(|e| e.to_string())?;
    let info = s.info().await.map_err(|e| e.to_string())?.clone();
    shared.note(&info.state, info.config.sealed);
    let consumer = s
        .create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: shared.cluster.client.new_inbox(),
            filter_subject: subject.to_string(),
            headers_only: true,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: info.state.last_sequence + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut refresh = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            m = messages.next() => match m {
                Some(Ok(m)) => {
                    if let Ok(i) = m.info() {
                        shared.advance(i.stream_sequence);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the consumer ended".into()),
            },
            _ = refresh.tick() => {
                if let Ok(info) = s.info().await {
                    let (state, sealed) = (info.state.clone(), info.config.sealed);
                    shared.note(&state, sealed);
                }
            }
        }
    }
}
