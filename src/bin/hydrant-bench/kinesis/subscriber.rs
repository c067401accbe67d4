//! One enhanced fan-out subscriber as the bench runs it: `SubscribeToShard`
//! over HTTP/1.1, its `application/vnd.amazon.eventstream` body read chunk
//! by chunk as it arrives and decoded message by message, and when each
//! record's event arrived. Records are told apart by the id the producer
//! wrote in the first 16 bytes of their data.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use base64::Engine;
use bytes::BytesMut;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Digits of the record id at the start of every fan-out record's data.
pub const ID_DIGITS: usize = 16;

/// An open subscription whose `initial-response` has arrived.
pub struct Subscription {
    resp: reqwest::Response,
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    /// When the last chunk of the body arrived.
    at: Instant,
}

/// What one subscriber saw in a round.
pub struct Received {
    /// For each record id below the round's count, when its event arrived
    /// (the first time).
    pub at: Vec<Option<Instant>>,
    /// Records seen again, or with an id out of the round.
    pub unexpected: u64,
    /// `SubscribeToShardEvent`s received (with records or not).
    pub events: u64,
}

/// Subscribes `consumer_arn` to `shard_id` from `LATEST`; returns once the
/// `initial-response` event arrived, so every record put after that is
/// delivered to it.
pub async fn subscribe(
    http: &reqwest::Client,
    url: &str,
    consumer_arn: &str,
    shard_id: &str,
) -> anyhow::Result<Subscription> {
    let body = json!({
        "ConsumerARN": consumer_arn,
        "ShardId": shard_id,
        "StartingPosition": { "Type": "LATEST" },
    });
    let resp = http
        .post(url)
        .header("X-Amz-Target", "Kinesis_20131202.SubscribeToShard")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .context("SubscribeToShard")?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("SubscribeToShard: {status}: {text}");
    }
    let kind = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if kind != "application/vnd.amazon.eventstream" {
        bail!("SubscribeToShard answered with content-type {kind:?}");
    }
    let mut sub = Subscription {
        resp,
        buf: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        at: Instant::now(),
    };
    let (first, _) = sub
        .next()
        .await?
        .context("SubscribeToShard's body ended before its initial-response")?;
    let event = header(&first, ":event-type");
    if event != Some("initial-response") {
        bail!("SubscribeToShard's first message is {event:?}, not initial-response");
    }
    Ok(sub)
}

impl Subscription {
    /// The next message and when the chunk that completed it arrived; `None`
    /// at the end of the body.
    async fn next(&mut self) -> anyhow::Result<Option<(Message, Instant)>> {
        loop {
            if let DecodedFrame::Complete(m) = self
                .decoder
                .decode_frame(&mut self.buf)
                .context("a malformed event-stream message")?
            {
                return Ok(Some((m, self.at)));
            }
            match self
                .resp
                .chunk()
                .await
                .context("reading the event stream")?
            {
                Some(chunk) => {
                    self.at = Instant::now();
                    self.buf.extend_from_slice(&chunk);
                }
                None if self.buf.is_empty() => return Ok(None),
                None => bail!("the event stream ended inside a message"),
            }
        }
    }

    /// Reads events until `stop` is cancelled, recording when each record
    /// with an id below `count` arrived; `progress` counts the distinct ones.
    /// An exception event, or a body that ends first, is an error.
    pub async fn receive(
        mut self,
        count: usize,
        progress: Arc<AtomicUsize>,
        stop: CancellationToken,
    ) -> anyhow::Result<Received> {
        let mut got = Received {
            at: vec![None; count],
            unexpected: 0,
            events: 0,
        };
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Ok(got),
                m = self.next() => m?,
            };
            let Some((m, at)) = next else {
                bail!("the subscription ended before the round did");
            };
            if header(&m, ":message-type") != Some("event") {
                bail!(
                    "exception event {:?}: {}",
                    header(&m, ":exception-type"),
                    String::from_utf8_lossy(m.payload())
                );
            }
            if header(&m, ":event-type") != Some("SubscribeToShardEvent") {
                continue;
            }
            got.events += 1;
            for id in record_ids(m.payload())? {
                match got.at.get_mut(id) {
                    Some(slot @ None) => {
                        *slot = Some(at);
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => got.unexpected += 1,
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    records: Vec<EventRecord>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventRecord {
    data: String,
}

/// The ids of a `SubscribeToShardEvent`'s records (`usize::MAX` for a
/// record that carries none).
fn record_ids(payload: &[u8]) -> anyhow::Result<Vec<usize>> {
    let event: Event = serde_json::from_slice(payload).with_context(|| {
        format!(
            "a SubscribeToShardEvent's payload: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(300)])
        )
    })?;
    let b64 = base64::engine::general_purpose::STANDARD;
    event
        .records
        .iter()
        .map(|r| {
            let data = b64.decode(&r.data).context("a record's Data")?;
            Ok(data
                .get(..ID_DIGITS)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok())
                .unwrap_or(usize::MAX))
        })
        .collect()
}

/// A string header's value.
fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}
