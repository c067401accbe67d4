//! The fastest reading of a `PutRecords` JSON body: one pass over its bytes
//! for the shape the SDKs send, `{"StreamName":"…","Records":[{"Data":"…",
//! "PartitionKey":"…"},…]}` (or `StreamARN`, and `ExplicitHashKey` in a
//! record), with any JSON whitespace and members in any order. Each record
//! is three slices of the body; nothing is built per record.
//!
//! It reads only what it can read exactly: keys and strings without escapes
//! or control characters, members it knows once each, at least one record,
//! `Data` and `PartitionKey` in every one. At anything else it answers None
//! and the serde fast path reads the body, so whatever this accepts, that
//! accepts alike (held by `fast_path_agrees`). The checks of the records
//! themselves (base64, sizes, keys) are the fast path's own, made after.

use crate::ingest::fast::Cursor;

/// A record as scanned: `Data` as sent, `PartitionKey`, `ExplicitHashKey`.
pub(super) type Part<'a> = (&'a [u8], &'a str, Option<&'a str>);

/// A body as scanned: `StreamName`, `StreamARN` and the records.
pub(super) struct Scanned<'a> {
    pub name: Option<&'a str>,
    pub arn: Option<&'a str>,
    pub records: Vec<Part<'a>>,
}

/// Reads a body of the common shape in one pass; None for anything else.
pub(super) fn scan_put_records(body: &[u8]) -> Option<Scanned<'_>> {
    let mut c = Cursor::new(body);
    let (mut name, mut arn, mut records) = (None, None, None);
    c.eat(b'{')?;
    loop {
        match c.key()? {
            b"StreamName" if name.is_none() => name = Some(text(&mut c)?),
            b"StreamARN" if arn.is_none() => arn = Some(text(&mut c)?),
            b"Records" if records.is_none() => records = Some(scan_records(&mut c)?),
            _ => return None,
        }
        if !c.next_or_close(b'}')? {
            break;
        }
    }
    c.end()?;
    Some(Scanned {
        name,
        arn,
        records: records?,
    })
}

/// A string without escapes or control characters, as UTF-8 text.
fn text<'a>(c: &mut Cursor<'a>) -> Option<&'a str> {
    let s = c.plain_string()?;
    if s.iter().any(|&b| b < 0x20) {
        return None;
    }
    std::str::from_utf8(s).ok()
}

/// The `Records` array, at least one record.
fn scan_records<'a>(c: &mut Cursor<'a>) -> Option<Vec<Part<'a>>> {
    c.eat(b'[')?;
    let mut out = Vec::new();
    loop {
        out.push(scan_record(c)?);
        if !c.next_or_close(b']')? {
            break;
        }
    }
    Some(out)
}

/// One record: `Data` and `PartitionKey`, and `ExplicitHashKey` if sent.
fn scan_record<'a>(c: &mut Cursor<'a>) -> Option<Part<'a>> {
    c.eat(b'{')?;
    let (mut data, mut key, mut hash) = (None, None, None);
    loop {
        match c.key()? {
            // Base64's decoder refuses anything but its alphabet.
            b"Data" if data.is_none() => data = Some(c.plain_string()?),
            b"PartitionKey" if key.is_none() => key = Some(text(c)?),
            b"ExplicitHashKey" if hash.is_none() => hash = Some(text(c)?),
            _ => return None,
        }
        if !c.next_or_close(b'}')? {
            break;
        }
    }
    Some((data?, key?, hash))
}

#[cfg(test)]
mod tests {
    use super::scan_put_records;

    #[test]
    fn the_common_shape_is_read_in_one_pass() {
        let body = r#" { "Records" : [ {"PartitionKey":"k\u00e9","Data":"aGk="} ,
            { "Data" : "", "ExplicitHashKey": "7", "PartitionKey": "é" }], "StreamName":"s" } "#;
        // An escaped key is left to the serde fast path.
        assert!(scan_put_records(body.as_bytes()).is_none());
        let body = body.replace("k\\u00e9", "kk");
        let got = scan_put_records(body.as_bytes()).unwrap_or_else(|| panic!("not read"));
        assert_eq!((got.name, got.arn), (Some("s"), None));
        assert_eq!(
            got.records,
            vec![(&b"aGk="[..], "kk", None), (&b""[..], "é", Some("7"))]
        );
    }

    #[test]
    fn anything_else_is_left_to_the_next_reading() {
        for body in [
            &br#"{"StreamName":"s","Records":[]}"#[..],
            br#"{"StreamName":"s"}"#,
            br#"{"StreamName":"s","Records":[{"Data":"aGk="}]}"#,
            br#"{"StreamName":"s","Records":[{"PartitionKey":"k"}]}"#,
            br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k","PartitionKey":"j"}]}"#,
            br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k","Other":1}]}"#,
            br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k","ExplicitHashKey":null}]}"#,
            b"{\"StreamName\":\"s\",\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\x01\"}]}",
            br#"{"StreamName":null,"Records":[{"Data":"aGk=","PartitionKey":"k"}]}"#,
            br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k"}]} ]"#,
            br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k"},]}"#,
        ] {
            assert!(scan_put_records(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }
}
