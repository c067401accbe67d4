//! Reading a JetStream shard by offset, from any node.
//!
//! A read is one batched direct get (`$JS.API.DIRECT.GET.<stream>` with
//! `seq`, `batch` and `max_bytes`): any replica answers with the messages
//! from that sequence on, then an end-of-batch status. Only offsets below the
//! durable end the shard knows are asked for, so a reader never sees a
//! record before its append was acknowledged. Reads block (the log seam's
//! readers are called from blocking threads).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::StatusCode;
use futures::StreamExt;

use super::shard::{ARRIVAL, Shared, key_of};
use crate::log::LogError;
use crate::record::Record;

/// A cursor over one JetStream shard.
pub struct JetReader {
    shared: Arc<Shared>,
    next: u64,
}

/// One message of a direct get's answer.
struct Got {
    seq: u64,
    msg: async_nats::Message,
}

impl JetReader {
    pub(crate) fn new(shared: Arc<Shared>, from: u64) -> JetReader {
        JetReader { shared, next: from }
    }

    pub fn position(&self) -> u64 {
        self.next
    }

    pub fn durable_end(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// Reads up to `records_max` records or about `bytes_max` bytes (at
    /// least one record) below the durable end into `out`, which it clears.
    pub fn read_into(
        &mut self,
        out: &mut Vec<Record>,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<(), LogError> {
        out.clear();
        let end = self.durable_end();
        if self.next >= end || records_max == 0 {
            return Ok(());
        }
        let batch = (end - self.next).min(records_max as u64);
        let got = self.shared.cluster.block_on(get(
            &self.shared,
            serde_json::json!({"seq": self.next + 1, "batch": batch, "max_bytes": bytes_max.max(1)}),
        ))?;
        let Some(first) = got.first() else {
            return Ok(());
        };
        if first.seq > self.next + 1 {
            let oldest = self
                .shared
                .oldest
                .load(Ordering::Acquire)
                .max(first.seq - 1);
            return Err(LogError::Trimmed {
                shard: self.shared.shard,
                offset: self.next,
                oldest,
            });
        }
        for g in got {
            if g.seq > end {
                break;
            }
            let h = g.msg.headers.as_ref();
            let arrival_ms = h
                .and_then(|h| h.get(ARRIVAL))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0);
            out.push(Record {
                offset: g.seq - 1,
                arrival_ms,
                key: key_of(h),
                data: g.msg.payload,
            });
            self.next = g.seq;
        }
        Ok(())
    }

    /// The offset of the first message JetStream stored at or after
    /// `ms` (epoch milliseconds), or the durable end if there is none.
    pub(crate) fn first_at_time(&self, ms: i64) -> Result<u64, LogError> {
        let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
            return Ok(self.shared.oldest.load(Ordering::Acquire));
        };
        let got = self.shared.cluster.block_on(get(
            &self.shared,
            serde_json::json!({"start_time": t.to_rfc3339(), "batch": 1}),
        ))?;
        Ok(got
            .first()
            .map(|g| g.seq - 1)
            .unwrap_or_else(|| self.durable_end()))
    }
}

/// Sends one direct get and gathers its answer. A get no server takes yet
/// (a stream just made, whose subject the servers have not all learned) is
/// sent again every 50 ms for up to `cluster.nats.request_timeout_ms`.
async fn get(shared: &Shared, request: serde_json::Value) -> Result<Vec<Got>, LogError> {
    // Only "no server took it" is asked again; any other answer is final.
    let taken = super::patiently(
        shared.cluster.opts.request_timeout,
        std::time::Duration::from_millis(50),
        || async {
            match get_once(shared, &request).await {
                Ok(None) => Err(()),
                answered => Ok(answered),
            }
        },
        |()| {},
    )
    .await;
    // Still no server after the patience: as if the last try found none.
    let got = match taken {
        Ok(answered) => answered?,
        Err(()) => None,
    };
    got.ok_or_else(|| shared.err("read: no JetStream server answers for the stream"))
}

/// One direct get: its messages, or None if no server took it.
async fn get_once(
    shared: &Shared,
    request: &serde_json::Value,
) -> Result<Option<Vec<Got>>, LogError> {
    let client = &shared.cluster.client;
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| shared.err(format!("read: {e}")))?;
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", shared.stream),
            inbox,
            request.to_string().into(),
        )
        .await
        .map_err(|e| shared.err(format!("read: {e}")))?;
    let timeout = shared.cluster.opts.request_timeout;
    let mut out = Vec::new();
    loop {
        let m = match tokio::time::timeout(timeout, sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(shared.err("read: the subscription ended")),
            Err(_) => return Err(shared.err(format!("read: no answer within {timeout:?}"))),
        };
        match m.status {
            // End of the batch.
            Some(s) if s.as_u16() == 204 => break,
            // Nothing at or after that sequence or time.
            Some(StatusCode::NOT_FOUND) => break,
            Some(StatusCode::NO_RESPONDERS) => {
                let _ = sub.unsubscribe().await;
                return Ok(None);
            }
            Some(s) if s != StatusCode::OK => {
                return Err(shared.err(format!(
                    "read: {} {}",
                    s,
                    m.description.as_deref().unwrap_or("")
                )));
            }
            _ => {}
        }
        let seq = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| shared.err("read: a message without its sequence"))?;
        out.push(Got { seq, msg: m });
    }
    let _ = sub.unsubscribe().await;
    Ok(Some(out))
}
