//! The requests a workload sends: a pool of bodies built ahead of time
//! (`PutRecordBatch` or NDJSON), and sending one, noting where its records
//! went and when the answer arrived.

use std::time::Instant;

use super::Workload;
use crate::records::put_record_batch_body;

/// A request to send: its body and how many records it holds.
#[derive(Clone)]
pub struct Request {
    pub body: bytes::Bytes,
    pub records: usize,
    pub bytes: usize,
}

/// `count` requests of `per_request` of the workload's records, numbered
/// on from one request to the next.
pub fn requests(w: &Workload, count: usize, per_request: usize) -> anyhow::Result<Vec<Request>> {
    let mut out = Vec::with_capacity(count);
    for r in 0..count {
        let recs: Vec<Vec<u8>> = (0..per_request)
            .map(|i| (w.make)(r * per_request + i))
            .collect();
        let bytes = recs.iter().map(Vec::len).sum();
        let body = if w.ndjson {
            let mut b = Vec::with_capacity(bytes + per_request);
            for rec in &recs {
                b.extend_from_slice(rec);
                if rec.last() != Some(&b'\n') {
                    b.push(b'\n');
                }
            }
            b
        } else {
            put_record_batch_body(&recs)?
        };
        out.push(Request {
            body: bytes::Bytes::from(body),
            records: per_request,
            bytes,
        });
    }
    Ok(out)
}

/// Sends one request; on success, where its records went (shard, first
/// offset) and when the whole answer had arrived (before it is parsed: the
/// acknowledgement is the answer, not the generator's work on it).
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    ndjson: bool,
    body: bytes::Bytes,
) -> Option<((u32, u64), Instant)> {
    let req = if ndjson {
        http.post(format!("{url}v1/streams/bench/records"))
            .body(body)
    } else {
        http.post(url)
            .header("X-Amz-Target", "Firehose_20150804.PutRecordBatch")
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body)
    };
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let answer = resp.bytes().await.ok()?;
    let at = Instant::now();
    Some((placed(&answer, ndjson)?, at))
}

/// Where an answer says its records went: (shard, first offset). Read from
/// the answer's text rather than a JSON value of it: at saturation the
/// generator shares the daemon's cores, and a `PutRecordBatch` answer holds
/// a `RecordId` per record: a JSON value of each would be CPU the daemon
/// under test loses. None if any record failed.
fn placed(answer: &[u8], ndjson: bool) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(answer).ok()?;
    if ndjson {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        return Some((v["shard"].as_u64()? as u32, v["first_offset"].as_u64()?));
    }
    let failed = text.split_once("\"FailedPutCount\":")?.1;
    let digits = failed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(failed.len());
    if failed[..digits].parse::<u64>().ok()? != 0 {
        return None;
    }
    // RecordId: creation ms (20 digits), shard (4), offset (20).
    let id = text.split_once("\"RecordId\":\"")?.1.get(..44)?;
    Some((id.get(20..24)?.parse().ok()?, id.get(24..44)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::placed;

    #[test]
    fn an_answer_gives_its_first_records_place_or_none_if_any_failed() {
        let ok = br#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":[{"RecordId":"00000001764000000000000300000000000000000042"},{"RecordId":"00000001764000000000000300000000000000000043"}]}"#;
        assert_eq!(placed(ok, false), Some((3, 42)));
        let failed = br#"{"FailedPutCount":2,"Encrypted":false,"RequestResponses":[]}"#;
        assert_eq!(placed(failed, false), None);
        assert_eq!(placed(b"not json", false), None);
        assert_eq!(
            placed(br#"{"shard":1,"first_offset":7}"#, true),
            Some((1, 7))
        );
    }
}
