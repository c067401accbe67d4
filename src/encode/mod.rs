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
mod tests;
