//! One `PutMedia` session as the bench runs it: a raw TCP connection, the
//! HTTP/1.1 request written by hand with a chunked body paced at the
//! media's bitrate, and the acknowledgements read from the same socket
//! while the body is still being sent (the daemon answers 200 at once and
//! streams a line of JSON per acknowledgement, itself chunked).
//!
//! For each fragment it records when the chunk carrying its last byte (and
//! the next Cluster's Timecode, which completes it) was written, and when
//! its `PERSISTED` acknowledgement arrived; fragments are told apart by
//! their `FragmentTimecode`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use super::media::{Chunk, Media};

/// How long the acknowledgements may stay silent before the session is
/// given up (the daemon sends `IDLE` every second while it waits).
const SILENCE_MAX: Duration = Duration::from_secs(30);

/// The largest chunk of acknowledgements read (they are lines of JSON).
const CHUNK_MAX: usize = 1 << 20;

/// What an upload sends: the media's chunks, and what names and sizes its
/// fragments.
pub struct Plan {
    pub chunks: Vec<Chunk>,
    /// Each fragment's Cluster Timecode and its bytes.
    pub timecodes: Vec<i64>,
    pub fragment_bytes: Vec<u64>,
}

impl Plan {
    pub fn new(media: &Media, chunk_bytes: usize) -> Plan {
        Plan {
            chunks: super::media::chunks(media, chunk_bytes),
            timecodes: media.clusters.iter().map(|c| c.timecode).collect(),
            fragment_bytes: media
                .clusters
                .iter()
                .map(|c| (c.end - c.start) as u64)
                .collect(),
        }
    }
}

/// What one session saw.
pub struct Outcome {
    /// When the session was due to start sending.
    pub start: Instant,
    /// Per fragment: when the chunk that completes it was written.
    pub completed: Vec<Option<Instant>>,
    /// Per fragment: when its `PERSISTED` arrived.
    pub persisted: Vec<Option<Instant>>,
    /// Per fragment: whether an `ERROR` named it.
    pub refused: Vec<bool>,
    /// `ERROR` acknowledgements, whether they named a fragment or not.
    pub error_acks: u64,
    /// How late each chunk's write began after its scheduled time.
    pub lag: Vec<Duration>,
    /// Why the upload or the acknowledgements ended early, if they did.
    pub broken: Option<String>,
}

/// What the acknowledgements said.
#[derive(Default)]
struct Acks {
    persisted: Vec<Option<Instant>>,
    refused: Vec<bool>,
    errors: u64,
}

/// One upload of `plan` to `stream`, sending at `bytes_per_sec` from
/// `start` (an infinite rate sends as fast as the daemon reads).
pub async fn put_media(
    addr: SocketAddr,
    stream: &str,
    plan: Arc<Plan>,
    bytes_per_sec: f64,
    start: tokio::time::Instant,
) -> anyhow::Result<Outcome> {
    tokio::time::sleep_until(start).await;
    let sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let (rd, mut wr) = sock.into_split();
    let producer_start = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let head = format!(
        "POST /putMedia HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nx-amzn-stream-name: {stream}\r\nx-amzn-fragment-timecode-type: RELATIVE\r\nx-amzn-producer-start-timestamp: {producer_start:.3}\r\nx-amzn-fragment-acknowledgment-required: 1\r\n\r\n"
    );
    wr.write_all(head.as_bytes()).await?;
    let index: HashMap<i64, usize> = plan
        .timecodes
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i))
        .collect();
    let reader = tokio::spawn(read_acks(rd, index));
    let fragments = plan.timecodes.len();
    let mut out = Outcome {
        start: start.into_std(),
        completed: vec![None; fragments],
        persisted: Vec::new(),
        refused: Vec::new(),
        error_acks: 0,
        lag: Vec::with_capacity(plan.chunks.len()),
        broken: None,
    };
    for chunk in &plan.chunks {
        let due = start + Duration::from_secs_f64(chunk.end as f64 / bytes_per_sec);
        tokio::time::sleep_until(due).await;
        out.lag
            .push(tokio::time::Instant::now().saturating_duration_since(due));
        if let Err(e) = wr.write_all(&chunk.framed).await {
            out.broken = Some(format!("the upload was cut: {e}"));
            break;
        }
        if let Some(k) = chunk.completes {
            out.completed[k] = Some(Instant::now());
        }
    }
    // The write half stays open until the acknowledgements end: a closed
    // write side may close the whole connection.
    let acks = match reader.await? {
        Ok(a) => a,
        Err((a, e)) => {
            out.broken.get_or_insert(format!("{e:#}"));
            a
        }
    };
    drop(wr);
    out.persisted = acks.persisted;
    out.persisted.resize(fragments, None);
    out.refused = acks.refused;
    out.refused.resize(fragments, false);
    out.error_acks = acks.errors;
    Ok(out)
}

/// Reads the response: the status line and headers, then the chunked body
/// line by line, until it ends (or stays silent for `SILENCE_MAX`). What
/// was read, with the error if it ended otherwise.
async fn read_acks(
    rd: OwnedReadHalf,
    index: HashMap<i64, usize>,
) -> Result<Acks, (Acks, anyhow::Error)> {
    let mut acks = Acks {
        persisted: vec![None; index.len()],
        refused: vec![false; index.len()],
        errors: 0,
    };
    let mut rd = BufReader::new(rd);
    let read = async {
        response_head(&mut rd).await?;
        let mut pending = Vec::new();
        while let Some(data) = body_chunk(&mut rd).await? {
            let at = Instant::now();
            pending.extend_from_slice(&data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                ack(&mut acks, &index, &line, at)?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    match read {
        Ok(()) => Ok(acks),
        Err(e) => Err((acks, e)),
    }
}

/// Notes one acknowledgement line.
fn ack(
    acks: &mut Acks,
    index: &HashMap<i64, usize>,
    line: &[u8],
    at: Instant,
) -> anyhow::Result<()> {
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(line)
        .with_context(|| format!("an acknowledgement: {}", String::from_utf8_lossy(line)))?;
    let fragment = v["FragmentTimecode"].as_i64().and_then(|t| index.get(&t));
    match v["EventType"].as_str() {
        Some("PERSISTED") => {
            if let Some(slot) = fragment.and_then(|&k| acks.persisted.get_mut(k)) {
                slot.get_or_insert(at);
            }
        }
        Some("ERROR") => {
            acks.errors += 1;
            if let Some(slot) = fragment.and_then(|&k| acks.refused.get_mut(k)) {
                *slot = true;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One line of the response head, without its CRLF.
async fn line(rd: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<String> {
    let mut s = String::new();
    let n = tokio::time::timeout(SILENCE_MAX, rd.read_line(&mut s))
        .await
        .context("no acknowledgement for 30 s")??;
    if n == 0 {
        bail!("the connection closed");
    }
    Ok(s.trim_end().to_string())
}

/// The status line and headers; an error with the body unless the status
/// is 200 and the body chunked.
async fn response_head(rd: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<()> {
    let status = line(rd).await?;
    let mut chunked = false;
    let mut length = 0usize;
    loop {
        let h = line(rd).await?.to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("transfer-encoding:") {
            chunked = v.contains("chunked");
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    if status.split_whitespace().nth(1) == Some("200") && chunked {
        return Ok(());
    }
    let mut body = vec![0; length.min(64 << 10)];
    let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_exact(&mut body)).await;
    bail!(
        "PutMedia answered {status}: {}",
        String::from_utf8_lossy(&body)
    )
}

/// The next chunk of a chunked body; None at its end.
async fn body_chunk(rd: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<Option<Vec<u8>>> {
    let size = line(rd).await?;
    let hex = size.split(';').next().unwrap_or_default().trim();
    let size = usize::from_str_radix(hex, 16).with_context(|| format!("a chunk size {size:?}"))?;
    if size == 0 {
        return Ok(None);
    }
    if size > CHUNK_MAX {
        bail!("a chunk of {size} bytes in the acknowledgements");
    }
    let mut data = vec![0; size];
    tokio::time::timeout(SILENCE_MAX, rd.read_exact(&mut data))
        .await
        .context("a chunk stalled for 30 s")??;
    line(rd).await?;
    Ok(Some(data))
}
