//! `ListFragments`: a stream's fragments in a time range on the producer's
//! or the server's clock, in pages of at most 1,000, from the index.

use serde_json::{Value, json};

use super::{invalid, opt_str, seconds, stream_of, timestamp_ms};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::video::index::Clock;

/// Fragments per page (the model's `MaxResults` bound and default).
const PAGE_MAX: u64 = 1000;

pub(super) fn list_fragments(state: &AppState, req: &Value) -> Result<Value, ApiError> {
    let s = stream_of(state, req)?;
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => PAGE_MAX,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| invalid("MaxResults must be 1 to 1000"))?,
    } as usize;
    let (clock, start, end) = match req.get("FragmentSelector").filter(|v| !v.is_null()) {
        None => (Clock::Server, i64::MIN, i64::MAX),
        Some(sel) => {
            let clock = match sel.get("FragmentSelectorType").and_then(Value::as_str) {
                Some("PRODUCER_TIMESTAMP") => Clock::Producer,
                Some("SERVER_TIMESTAMP") => Clock::Server,
                _ => {
                    return Err(invalid(
                        "FragmentSelector.FragmentSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP",
                    ));
                }
            };
            let range = sel
                .get("TimestampRange")
                .ok_or_else(|| invalid("FragmentSelector.TimestampRange is required"))?;
            let at = |f: &str| {
                let v = range.get(f).ok_or_else(|| {
                    invalid(format!("FragmentSelector.TimestampRange.{f} is required"))
                })?;
                timestamp_ms(v, &format!("FragmentSelector.TimestampRange.{f}"))
            };
            let (start, end) = (at("StartTimestamp")?, at("EndTimestamp")?);
            if end < start {
                return Err(invalid(
                    "TimestampRange.EndTimestamp is before its StartTimestamp",
                ));
            }
            (clock, start, end)
        }
    };
    // The token is how many fragments of this same selection came before.
    let skip = match opt_str(req, "NextToken")? {
        None => 0,
        Some(t) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("skip:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| invalid("NextToken is not one ListFragments gave"))?
        }
    };
    let page = s.index.in_range(clock, start, end, skip, max + 1);
    let more = page.len() > max;
    let fragments: Vec<Value> = page
        .iter()
        .take(max)
        .map(|e| {
            json!({
                "FragmentNumber": s.index.numbering.number(e.offset),
                "FragmentSizeInBytes": e.size,
                "ProducerTimestamp": seconds(e.producer_ms),
                "ServerTimestamp": seconds(e.server_ms),
                "FragmentLengthInMilliseconds": e.duration_ms,
            })
        })
        .collect();
    let mut out = json!({ "Fragments": fragments });
    if more && let Some(o) = out.as_object_mut() {
        use base64::Engine;
        let token = format!("skip:{}", skip + max);
        o.insert(
            "NextToken".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(token)),
        );
    }
    Ok(out)
}
