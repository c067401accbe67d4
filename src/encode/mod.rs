//! Encoding and compression of a batch into the bytes of one object.
//!
//! Records are written straight into the compressor, so a batch is held once
//! as records and once as compressed output, never as an uncompressed copy.
//! This is CPU work: callers run it on a blocking thread, never on the async
//! runtime. It knows nothing about where the bytes go.

use std::io::{self, Write};

use bytes::Bytes;
use flate2::write::GzEncoder;

use crate::config::{Compression, Encoding};
use crate::log::frame::Frame;

/// Writes `records` with `encoding`, compressed with `compression`.
pub fn encode_batch(
    records: &[Frame],
    encoding: &Encoding,
    compression: Compression,
) -> io::Result<Bytes> {
    let raw_len: usize = records.iter().map(|r| r.data.len() + 1).sum();
    match compression {
        Compression::None => {
            let mut out = Vec::with_capacity(raw_len);
            write_records(&mut out, records, encoding)?;
            Ok(Bytes::from(out))
        }
        Compression::Gzip => {
            // Log lines usually compress 5-10x; start small and let it grow.
            let mut gz = GzEncoder::new(
                Vec::with_capacity(raw_len / 4 + 64),
                flate2::Compression::new(6),
            );
            write_records(&mut gz, records, encoding)?;
            Ok(Bytes::from(gz.finish()?))
        }
    }
}

fn write_records(out: &mut impl Write, records: &[Frame], encoding: &Encoding) -> io::Result<()> {
    match encoding {
        Encoding::JsonLines { delimiter } => {
            for r in records {
                out.write_all(&r.data)?;
                if !delimiter.is_empty() && !r.data.ends_with(delimiter) {
                    out.write_all(delimiter)?;
                }
            }
        }
    }
    Ok(())
}

/// The object file extension for this encoding and compression.
pub fn extension(_encoding: &Encoding, compression: Compression) -> &'static str {
    compression.extension()
}

#[cfg(test)]
mod tests {
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
}
