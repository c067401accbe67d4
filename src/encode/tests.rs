//! Unit tests of the parent module.

use super::*;
use std::io::Read;

fn frames(data: &[&str]) -> Vec<Frame> {
    data.iter()
        .enumerate()
        .map(|(i, d)| Frame {
            offset: i as u64,
            arrival_ms: 0,
            key: Bytes::new(),
            data: Bytes::copy_from_slice(d.as_bytes()),
        })
        .collect()
}

fn lines() -> Encoding {
    Encoding::JsonLines {
        delimiter: b"\n".to_vec(),
    }
}

#[test]
fn json_lines_adds_a_newline_only_where_missing() {
    let out = encode_batch(
        &frames(&["{\"a\":1}", "{\"b\":2}\n"]),
        &lines(),
        Compression::None,
    )
    .unwrap();
    assert_eq!(&out[..], b"{\"a\":1}\n{\"b\":2}\n");
}

#[test]
fn empty_delimiter_is_raw_concatenation() {
    let enc = Encoding::JsonLines {
        delimiter: Vec::new(),
    };
    let out = encode_batch(&frames(&["ab", "cd"]), &enc, Compression::None).unwrap();
    assert_eq!(&out[..], b"abcd");
}

#[test]
fn gzip_round_trips() {
    let recs: Vec<String> = (0..1000).map(|i| format!("{{\"n\":{i}}}")).collect();
    let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
    let out = encode_batch(&frames(&refs), &lines(), Compression::Gzip).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&out[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(text.lines().nth(999), Some("{\"n\":999}"));
    assert_eq!(extension(&lines(), Compression::Gzip), ".gz");
}
