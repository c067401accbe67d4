//! `SubscribeToShard`: enhanced fan-out's push. The answer is an
//! `application/vnd.amazon.eventstream` body (HTTP/1.1 chunked, or an
//! HTTP/2 stream) that opens with an `initial-response` event and then
//! carries a `SubscribeToShardEvent` whenever records become durable, and at
//! least every few seconds when none do, each with the records, the
//! sequence number to continue after and how far behind the tip it is. At a
//! closed shard's end the last event names its children and the body ends;
//! otherwise it ends after the subscription's duration (5 minutes), or with
//! an exception event when another subscription takes the shard over.
//!
//! Memory is bounded per subscription: a pump task reads at most one
//! event's worth at a time and waits while the client has
//! `kinesis.subscription_queue_events` events not yet taken.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::consumers::named_consumer;
use super::iterators::{
    Position, ShardRead, Start, child_shards, read_shard, records_json_len, shard_of, start_at,
    write_records,
};
use super::{Req, from_kinesis, missing, now_ms, sequence};
use crate::aws::ACCOUNT;
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::kinesis::KinesisStream;
use crate::kinesis::consumers::{ConsumerStatus, Subscription};
use crate::kinesis::position::before_first;
use crate::metrics::{ConsumerShardLabel, Metrics};

/// Records in one event, at most.
const EVENT_RECORDS_MAX: usize = 10_000;
/// Bytes of record data in one event, at most (one shard's fan-out rate
/// for half a second).
const EVENT_BYTES_MAX: usize = 1 << 20;
/// An event goes out at least this often, with no records if none came.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Answers a `SubscribeToShard` request with its event stream.
pub async fn subscribe_to_shard(state: &AppState, body: &Value) -> Result<Response, ApiError> {
    let empty = serde_json::Map::new();
    let req = Req(body.as_object().unwrap_or(&empty));
    req.required_str("ConsumerARN", "consumerARN")?;
    let (s, consumer) = named_consumer(state, &req)?;
    if consumer.status != ConsumerStatus::Active {
        return Err(ApiError::in_use(format!(
            "Consumer {} under stream {} under account {ACCOUNT} is not ACTIVE.",
            consumer.name, s.name
        )));
    }
    let id = req.required_str("ShardId", "shardId")?;
    let shard = shard_of(&s, id)?;
    let position = req
        .0
        .get("StartingPosition")
        .filter(|p| !p.is_null())
        .ok_or_else(|| missing("startingPosition"))?;
    let field = |k: &str| position.get(k).filter(|v| !v.is_null());
    let kind = field("Type")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("startingPosition.type"))?;
    let start = start_at(
        &s,
        shard,
        id,
        Position {
            op: "SubscribeToShard",
            kind,
            kind_field: "startingPosition.type",
            sequence: field("SequenceNumber").and_then(Value::as_str),
            sequence_field: "StartingPosition.SequenceNumber",
            timestamp: field("Timestamp"),
        },
    )
    .await?;
    let sub = state
        .registry
        .kinesis
        .subscribe(&s, &consumer.name, shard)
        .map_err(from_kinesis)?;
    let opts = state.registry.kinesis.options();
    let (tx, rx) = mpsc::channel(opts.subscription_queue_events);
    let pump = Pump {
        metrics: state.registry.metrics.clone(),
        label: ConsumerShardLabel {
            stream: s.name.clone(),
            consumer: consumer.name.clone(),
            shard: shard.to_string(),
        },
        s,
        shard,
        sub,
        tx,
        until: Instant::now() + opts.subscription_duration,
    };
    tokio::spawn(pump.run(start));
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Body::from_stream(stream))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                e.to_string(),
            )
        })
}

/// One event-stream message: string headers and a JSON payload.
fn frame(headers: &[(&str, &str)], payload: Vec<u8>) -> Bytes {
    let mut m = Message::new(payload);
    for (name, value) in headers {
        m = m.add_header(Header::new(
            name.to_string(),
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut out = Vec::new();
    if let Err(e) = aws_smithy_eventstream::frame::write_message_to(&m, &mut out) {
        tracing::error!(error = %e, "cannot frame an event");
    }
    Bytes::from(out)
}

fn event(kind: &str, payload: Vec<u8>) -> Bytes {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        payload,
    )
}

fn exception(kind: &str, message: &str) -> Bytes {
    frame(
        &[
            (":message-type", "exception"),
            (":exception-type", kind),
            (":content-type", "application/json"),
        ],
        json!({ "message": message }).to_string().into_bytes(),
    )
}

/// The task that reads a shard for one subscription and sends its events.
struct Pump {
    s: Arc<KinesisStream>,
    shard: u32,
    sub: Subscription,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    until: Instant,
    metrics: Arc<Metrics>,
    label: ConsumerShardLabel,
}

impl Pump {
    async fn run(self, start: Start) {
        let open = self
            .metrics
            .kinesis_subscriptions_open
            .get_or_create(&Metrics::shard(&self.s.name, self.shard))
            .clone();
        open.inc();
        self.pump(start).await;
        open.dec();
    }

    async fn pump(&self, start: Start) {
        if !self.send(event("initial-response", b"{}".to_vec())).await {
            return;
        }
        let Some(log) = self.s.log.shard(self.shard) else {
            return;
        };
        let mut durable = log.subscribe();
        let (mut offset, mut position) = (start.offset, start.position);
        // The first event goes out at once, records or not.
        let mut last_sent: Option<Instant> = None;
        loop {
            if self.sub.cancel.is_cancelled() {
                self.taken_over().await;
                return;
            }
            let read = match read_shard(
                self.s.clone(),
                self.shard,
                offset,
                position,
                EVENT_RECORDS_MAX,
                EVENT_BYTES_MAX,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    self.send(exception("InternalFailureException", &e.message))
                        .await;
                    return;
                }
            };
            let layout = self.s.layout();
            let ended = layout
                .map
                .get(self.shard)
                .and_then(|x| x.closed)
                .is_some_and(|c| read.next >= c.end_offset);
            (offset, position) = (read.next, read.resume);
            let due = last_sent.is_none_or(|t| t.elapsed() >= HEARTBEAT);
            if !read.frames.is_empty() || ended || due {
                let children = ended.then(|| child_shards(&layout.map, self.shard));
                if !self.send(self.event(read, children)).await {
                    return;
                }
                last_sent = Some(Instant::now());
                if ended {
                    return;
                }
                continue;
            }
            let heartbeat =
                tokio::time::sleep_until(last_sent.map_or_else(Instant::now, |t| t + HEARTBEAT));
            tokio::select! {
                r = durable.changed() => if r.is_err() { return },
                _ = heartbeat => {}
                _ = tokio::time::sleep_until(self.until) => return,
                _ = self.sub.cancel.cancelled() => {
                    self.taken_over().await;
                    return;
                }
                _ = self.tx.closed() => return,
            }
            if Instant::now() >= self.until {
                return;
            }
        }
    }

    /// A `SubscribeToShardEvent` for what was read; counts it.
    fn event(&self, read: ShardRead, children: Option<Vec<Value>>) -> Bytes {
        let (s, shard) = (&self.s, self.shard);
        let now = now_ms();
        let behind = match read.frames.last() {
            Some(f) if read.next < read.end => (now - f.arrival_ms).max(0),
            _ => 0,
        };
        let continuation = match read.next.checked_sub(1) {
            Some(last) => sequence(s, shard, last),
            None => before_first(s.incarnation, shard),
        };
        let bytes: u64 = read.frames.iter().map(|f| f.data.len() as u64).sum();
        let m = &self.metrics;
        m.kinesis_subscription_events
            .get_or_create(&self.label)
            .inc();
        m.kinesis_subscription_records
            .get_or_create(&self.label)
            .inc_by(read.frames.len() as u64);
        m.kinesis_subscription_bytes
            .get_or_create(&self.label)
            .inc_by(bytes);
        m.kinesis_subscription_millis_behind
            .get_or_create(&self.label)
            .set(behind);
        // Written straight into the payload, as GetRecords answers: no JSON
        // value per record.
        let mut payload = String::with_capacity(records_json_len(&read.frames) + 256);
        payload.push_str("{\"Records\":");
        write_records(&mut payload, s.incarnation, shard, &read.frames);
        payload.push_str(",\"ContinuationSequenceNumber\":");
        payload.push_str(&Value::String(continuation).to_string());
        payload.push_str(&format!(",\"MillisBehindLatest\":{behind}"));
        if let Some(children) = children {
            payload.push_str(",\"ChildShards\":");
            payload.push_str(&Value::Array(children).to_string());
        }
        payload.push('}');
        event("SubscribeToShardEvent", payload.into_bytes())
    }

    /// Sends a frame, waiting while the client is behind; false once the
    /// client is gone, the subscription has run its time, or another took
    /// the shard over (which the client is told).
    async fn send(&self, frame: Bytes) -> bool {
        tokio::select! {
            r = self.tx.send(Ok(frame)) => r.is_ok(),
            _ = tokio::time::sleep_until(self.until) => false,
            _ = self.sub.cancel.cancelled() => {
                self.taken_over().await;
                false
            }
        }
    }

    /// Ends the subscription with Kinesis's exception event: another
    /// subscription took the shard over, or the consumer is gone. Waits at
    /// most a second for the client to take it.
    async fn taken_over(&self) {
        let frame = exception(
            "ResourceInUseException",
            &format!(
                "Another subscription took shard {} of stream {} over, or its consumer was deregistered.",
                crate::kinesis::position::shard_id(self.shard),
                self.s.name
            ),
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tx.send(Ok(frame))).await;
    }
}
