//! Firehose's HTTP endpoint delivery: a JSON body of base64 records with
//! `requestId` and `timestamp`, the `X-Amz-Firehose-*` headers, optional gzip,
//! and a response that must be 200 with JSON echoing the `requestId`.
//! Anything else is an error for the retry loop; this sink never retries.
//!
//! The request id is derived from (stream, shard, offsets), so it stays the
//! same across retries and restarts and receivers can use it to deduplicate.
//! The user records of a KPL aggregate share its offset; a request that
//! begins part way through them has that in its id too, so no two requests
//! of a batch share one.

use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Batch, Delivered, Sink, SinkError};
use crate::aws::delivery_stream_arn;
use crate::config::HttpDestination;
use crate::record::Record;

/// Largest response body read (Firehose's limit).
const RESPONSE_BYTES_MAX: usize = 1 << 20;

pub struct HttpSink {
    client: reqwest::Client,
    cfg: HttpDestination,
    common_attributes: Option<String>,
}

impl HttpSink {
    pub fn new(cfg: &HttpDestination) -> Result<HttpSink, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError {
                message: format!("cannot build the http client: {e}"),
                retryable: false,
            })?;
        let common_attributes = (!cfg.common_attributes.is_empty())
            .then(|| serde_json::json!({ "commonAttributes": cfg.common_attributes }).to_string());
        Ok(HttpSink {
            client,
            cfg: cfg.clone(),
            common_attributes,
        })
    }
}

/// A GUID derived from the request's place in the log: its first and last
/// offsets and, for a request that begins part way through the user
/// records of an aggregate, how many of them came before it.
pub fn request_id(
    log_id: &str,
    stream: &str,
    shard: u32,
    (first, last): (u64, u64),
    into: usize,
) -> String {
    let place = match into {
        0 => format!("{log_id}/{stream}/{shard}/{first}/{last}"),
        n => format!("{log_id}/{stream}/{shard}/{first}/{last}/{n}"),
    };
    let h = Sha256::digest(place.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// `records` as requests of at most `per` records, each with how many
/// records of its first offset came before it in the batch: 0 but where the
/// user records of an aggregate run on from the request before.
fn requests(records: &[Record], per: usize) -> impl Iterator<Item = (&[Record], usize)> {
    let per = per.max(1);
    records.chunks(per).enumerate().map(move |(i, chunk)| {
        let before = records.get(..i * per).unwrap_or_default();
        let into = chunk.first().map_or(0, |f| {
            before
                .iter()
                .rev()
                .take_while(|r| r.offset == f.offset)
                .count()
        });
        (chunk, into)
    })
}

fn fail(message: String) -> SinkError {
    SinkError {
        message,
        retryable: true,
    }
}

impl HttpSink {
    async fn send(
        &self,
        batch: &Batch<'_>,
        into: usize,
        records: &[crate::record::Record],
    ) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let id = request_id(
            batch.log_id,
            batch.stream,
            batch.shard,
            (first.offset, last.offset),
            into,
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({
            "requestId": id,
            "timestamp": chrono::Utc::now().timestamp_millis(),
            "records": records.iter().map(|r| serde_json::json!({ "data": b64.encode(&r.data) })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", &id)
            .header(
                "X-Amz-Firehose-Source-Arn",
                delivery_stream_arn(batch.stream),
            );
        if let Some(k) = &self.cfg.access_key {
            req = req.header("X-Amz-Firehose-Access-Key", k);
        }
        if let Some(a) = &self.common_attributes {
            req = req.header("X-Amz-Firehose-Common-Attributes", a);
        }
        let body = if self.cfg.gzip {
            req = req.header("Content-Encoding", "gzip");
            gzip(body).await?
        } else {
            body
        };
        let resp = req.body(body).send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "HttpEndpoint.RequestTimeout"
            } else {
                "HttpEndpoint.ConnectionFailed"
            };
            fail(format!("{what}: POST {} failed: {e}", self.cfg.url))
        })?;
        let status = resp.status();
        let is_json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let text = read_body(resp).await?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
        if status.as_u16() != 200 {
            let msg = parsed
                .as_ref()
                .and_then(|v| v.get("errorMessage"))
                .and_then(|m| m.as_str())
                .map(String::from)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&text[..text.len().min(512)]).into_owned()
                });
            return Err(SinkError {
                message: format!(
                    "HttpEndpoint.DestinationException: the endpoint answered {status}: {msg}"
                ),
                // 413 means the request can never be accepted as it is.
                retryable: status.as_u16() != 413,
            });
        }
        let echoed = parsed
            .as_ref()
            .and_then(|v| v.get("requestId"))
            .and_then(|v| v.as_str());
        if !is_json || echoed != Some(id.as_str()) {
            return Err(fail(format!(
                "HttpEndpoint.InvalidResponseFromDestination: expected a JSON response with requestId {id}, got {}",
                String::from_utf8_lossy(&text[..text.len().min(512)])
            )));
        }
        Ok(())
    }
}

/// `body` gzip at level 6, on a blocking thread at delivery's priority. One
/// gzip member whatever its size: many HTTP servers' `Content-Encoding`
/// decoders stop at the end of the first member, and the body is whole in
/// memory already.
async fn gzip(body: Vec<u8>) -> Result<Vec<u8>, SinkError> {
    tokio::task::spawn_blocking(move || {
        crate::sched::background_thread();
        let one_member = crate::encode::gzip::GzipLimits {
            member_bytes: body.len().max(1),
            threads_max: 1,
        };
        crate::encode::gzip::compress(&body, 6, one_member, Vec::new())
    })
    .await
    .map_err(|e| fail(format!("gzip task failed: {e}")))?
    .map_err(|e| fail(format!("gzip failed: {e}")))
}

/// The response body, refused past [`RESPONSE_BYTES_MAX`].
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, SinkError> {
    let mut text = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        fail(format!(
            "HttpEndpoint.ConnectionReset: reading the response failed: {e}"
        ))
    })? {
        if text.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(fail(
                "HttpEndpoint.ResponseTooLarge: the response exceeds 1 MiB".into(),
            ));
        }
        text.extend_from_slice(&chunk);
    }
    Ok(text)
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&self, batch: &Batch<'_>) -> Result<Delivered, SinkError> {
        // Firehose sends at most 10,000 records per request; larger batches
        // go as several requests, each with its own (stable) request id.
        for (chunk, into) in requests(batch.records, self.cfg.records_per_request_max) {
            self.send(batch, into, chunk).await?;
        }
        Ok(Delivered::default())
    }

    fn describe(&self) -> String {
        self.cfg.url.clone()
    }
}

#[cfg(test)]
mod tests;
