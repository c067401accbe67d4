//! Generated records: application log lines, clickstream events and small
//! records, deterministic in their index; as log records and as
//! `PutRecordBatch` bodies.

use base64::Engine;

/// The size of a generated log line in the suite's log workloads.
pub const LOG_BYTES: usize = 1024;

/// A log line of about `bytes` bytes that compresses like real application
/// logs (varied words, ids and numbers), not like a repeated pattern.
pub fn json_record(i: usize, bytes: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "user",
        "order",
        "payment",
        "failed",
        "accepted",
        "retry",
        "cache",
        "miss",
        "hit",
        "upstream",
        "timeout",
        "request",
        "session",
        "token",
        "refresh",
        "checkout",
        "cart",
        "item",
        "added",
        "removed",
        "inventory",
        "warehouse",
        "shipment",
        "label",
        "printed",
        "queue",
        "latency",
        "slow",
        "db",
        "query",
    ];
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let levels = ["info", "warn", "error", "debug"];
    let services = [
        "checkout",
        "cart",
        "auth",
        "search",
        "payments",
        "inventory",
        "shipping",
        "profile",
    ];
    let head = format!(
        r#"{{"ts":"2026-11-24T12:{:02}:{:02}.{:03}Z","level":"{}","service":"{}","request_id":"{:016x}","latency_ms":{},"msg":""#,
        next() % 60,
        next() % 60,
        next() % 1000,
        levels[(next() % 4) as usize],
        services[(next() % 8) as usize],
        next(),
        next() % 5000
    );
    let mut s = head.into_bytes();
    while s.len() + 3 < bytes {
        let w = WORDS[(next() % WORDS.len() as u64) as usize];
        s.extend_from_slice(w.as_bytes());
        s.push(b' ');
        if next() % 5 == 0 {
            s.extend_from_slice(format!("{} ", next() % 100_000).as_bytes());
        }
    }
    s.truncate(
        bytes
            .saturating_sub(3)
            .max(s.len().min(bytes.saturating_sub(3))),
    );
    s.extend_from_slice(b"\"}\n");
    s
}

/// A log line of [`LOG_BYTES`].
pub fn log_record(i: usize) -> Vec<u8> {
    json_record(i, LOG_BYTES)
}

/// A clickstream event of about 300 bytes.
pub fn click_record(i: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let countries = ["de", "fr", "us", "br", "in", "jp"];
    let devices = ["mobile", "desktop", "tablet"];
    let events = ["view", "click", "add_to_cart", "purchase", "scroll"];
    let pages = [
        "/",
        "/search",
        "/item",
        "/cart",
        "/checkout",
        "/account",
        "/help",
    ];
    format!(
        r#"{{"ts":"2026-11-24T12:{:02}:{:02}.{:03}Z","user_id":"u{:08}","session":"{:016x}","event":"{}","page":"{}{}","country":"{}","device":"{}","referrer":"https://ref{}.example/","duration_ms":{}}}"#,
        next() % 60,
        next() % 60,
        next() % 1000,
        next() % 1_000_000,
        next(),
        events[(next() % 5) as usize],
        pages[(next() % 7) as usize],
        if next() % 2 == 0 {
            format!("?q={}", next() % 10_000)
        } else {
            String::new()
        },
        countries[(next() % 6) as usize],
        devices[(next() % 3) as usize],
        next() % 50,
        next() % 60_000
    )
    .into_bytes()
}

/// A 100-byte record.
pub fn small_record(i: usize) -> Vec<u8> {
    let mut r = format!(
        r#"{{"n":{i},"k":"{:x}","v":""#,
        (i as u64).wrapping_mul(0x9E37_79B9)
    )
    .into_bytes();
    while r.len() < 97 {
        r.push(b'a' + (r.len() % 26) as u8);
    }
    r.extend_from_slice(b"\"}\n");
    r.truncate(100);
    r
}

/// `n` generated records as log frames (offsets 0..n), and their total bytes.
pub fn frames_of(
    n: usize,
    make: impl Fn(usize) -> Vec<u8>,
) -> (Vec<hydrant::record::Record>, usize) {
    let frames: Vec<hydrant::record::Record> = (0..n)
        .map(|i| hydrant::record::Record {
            offset: i as u64,
            arrival_ms: 1_764_000_000_000,
            key: bytes::Bytes::new(),
            data: bytes::Bytes::from(make(i)),
        })
        .collect();
    let raw = frames.iter().map(|f| f.data.len()).sum();
    (frames, raw)
}

/// A PutRecordBatch body of `n` JSON records of about `bytes` each.
pub fn batch_body(n: usize, bytes: usize) -> anyhow::Result<bytes::Bytes> {
    let records: Vec<Vec<u8>> = (0..n).map(|i| json_record(i, bytes)).collect();
    Ok(bytes::Bytes::from(put_record_batch_body(&records)?))
}

/// The `PutRecordBatch` body for the stream `bench` of `records`, each
/// base64-encoded as `Data`.
pub fn put_record_batch_body<R: AsRef<[u8]>>(records: &[R]) -> anyhow::Result<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::json!({ "Data": b64.encode(r) }))
        .collect();
    Ok(serde_json::to_vec(
        &serde_json::json!({ "DeliveryStreamName": "bench", "Records": records }),
    )?)
}
