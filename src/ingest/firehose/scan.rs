//! The fastest reading of a `PutRecordBatch` body: one pass over its bytes
//! for the shape every SDK sends, `{"DeliveryStreamName":"…","Records":
//! [{"Data":"…"},…]}` with any JSON whitespace, each `Data` decoded from
//! base64 as it is found. Nothing is built per record but its range in the
//! one buffer of decoded bytes.
//!
//! It reads only what it can read exactly: keys and strings without
//! escapes, a valid stream name, members it knows once each, valid base64
//! within the limits. At anything else it answers None and the serde fast
//! path ([`super::put::parse_valid_batch`]) reads the body, so whatever this
//! accepts, that accepts alike (held by `put_record_batch_fast_path_agrees`).

use super::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_BYTES_MAX};
use crate::aws;
use crate::ingest::fast::Cursor;

/// A batch as scanned: the stream's name, the decoded bytes of every
/// record, and each record's range in them.
pub(super) struct Scanned {
    pub stream: String,
    pub buf: Vec<u8>,
    pub ranges: Vec<std::ops::Range<usize>>,
}

/// Reads a body of the common shape in one pass; None for anything else.
pub(super) fn scan_batch(body: &[u8]) -> Option<Scanned> {
    let mut c = Cursor::new(body);
    let mut stream = None;
    let mut records = None;
    c.eat(b'{')?;
    loop {
        match c.key()? {
            b"DeliveryStreamName" if stream.is_none() => stream = Some(name(&mut c)?),
            b"Records" if records.is_none() => records = Some(scan_records(&mut c, body.len())?),
            _ => return None,
        }
        if !c.next_or_close(b'}')? {
            break;
        }
    }
    c.end()?;
    let (buf, ranges) = records?;
    Some(Scanned {
        stream: stream?,
        buf,
        ranges,
    })
}

/// A stream name that passes Firehose's check as it stands.
fn name(c: &mut Cursor) -> Option<String> {
    let s = c.plain_string()?;
    let s = std::str::from_utf8(s).ok()?;
    (!s.is_empty() && aws::valid_delivery_stream_name(s)).then(|| s.to_string())
}

type Decoded = (Vec<u8>, Vec<std::ops::Range<usize>>);

/// The `Records` array: every `Data` decoded into one buffer, within the
/// limits; at least one record.
fn scan_records(c: &mut Cursor, body_len: usize) -> Option<Decoded> {
    c.eat(b'[')?;
    let mut buf = Vec::with_capacity(body_len / 4 * 3);
    let mut ranges = Vec::with_capacity(BATCH_RECORDS_MAX.min(body_len / 16 + 1));
    loop {
        if ranges.len() == BATCH_RECORDS_MAX {
            return None;
        }
        c.eat(b'{')?;
        if c.key()? != b"Data" {
            return None;
        }
        let text = c.plain_string()?;
        let start = buf.len();
        crate::ingest::decode_base64_onto(text, &mut buf).ok()?;
        if buf.len() - start > RECORD_BYTES_MAX {
            return None;
        }
        ranges.push(start..buf.len());
        c.eat(b'}')?;
        if !c.next_or_close(b']')? {
            break;
        }
    }
    (buf.len() <= BATCH_BYTES_MAX).then_some((buf, ranges))
}

#[cfg(test)]
mod tests {
    use super::scan_batch;

    #[test]
    fn the_common_shape_is_read_in_one_pass() {
        let body = br#" { "Records" : [ {"Data":"aGk="} ,{ "Data" : "" }],
            "DeliveryStreamName":"s-1.a_b" } "#;
        let req = scan_batch(body).unwrap_or_else(|| panic!("not read"));
        assert_eq!(req.stream, "s-1.a_b");
        let got: Vec<&[u8]> = req.ranges.iter().map(|r| &req.buf[r.clone()]).collect();
        assert_eq!(got, vec![&b"hi"[..], b""]);
    }

    #[test]
    fn anything_else_is_left_to_the_next_reading() {
        for body in [
            &br#"{"DeliveryStreamName":"s","Records":[]}"#[..],
            br#"{"DeliveryStreamName":"s"}"#,
            br#"{"Records":[{"Data":"aGk="}]}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGk="}]} x"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"a\/k="}]}"#,
            br#"{"DeliveryStreamName":"s\u0031","Records":[{"Data":"aGk="}]}"#,
            br#"{"DeliveryStreamName":"s","DeliveryStreamName":"t","Records":[{"Data":"aGk="}]}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGk=","Other":1}]}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":null}]}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGk"}]}"#,
            br#"{"DeliveryStreamName":"s t","Records":[{"Data":"aGk="}]}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGk="},]}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGk="}],}"#,
            br#"{"DeliveryStreamName":"s","Records":[{"Data":"aGk="}]"#,
        ] {
            assert!(
                scan_batch(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let many = format!(
            r#"{{"DeliveryStreamName":"s","Records":[{}]}}"#,
            vec![r#"{"Data":"YQ=="}"#; 501].join(",")
        );
        assert!(scan_batch(many.as_bytes()).is_none());
    }
}
