//! Encoding, compression and encryption of a batch into one object's bytes.
//!
//! Records are written straight through the compressor into the encryptor,
//! so a batch is held once as records and once as finished output, never as
//! an intermediate uncompressed or unencrypted copy; gzip (`gzip.rs`)
//! compresses whole members and so holds at most `limits.gzip_member_bytes`
//! of uncompressed input per thread compressing it. This is CPU work:
//! callers run it on a blocking thread, never on the async runtime. It knows
//! nothing about where the bytes go.

pub mod encrypt;
pub mod gzip;
pub mod parquet;

use std::io::{self, Write};

use bytes::Bytes;

use crate::record::Record;
use encrypt::{EncryptingWriter, Encryption};

/// How a batch's records are laid out in its object.
#[derive(Clone, Debug, PartialEq)]
pub enum Encoding {
    /// Records one after another, each followed by `delimiter` unless it
    /// already ends with it. An empty delimiter is Firehose's raw concatenation.
    JsonLines { delimiter: Vec<u8> },
    /// JSON records converted to Parquet with a declared schema.
    Parquet(parquet::ParquetOptions),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// The Snappy framing format (what Python's `snappy.stream_decompress` reads).
    Snappy,
}

impl Compression {
    /// Firehose's file extension for this compression.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
            Compression::Snappy => ".snappy",
        }
    }
}

/// How a stream turns records into an object.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    pub encoding: Encoding,
    pub compression: Compression,
    pub level: Option<i32>,
    pub encryption: Option<Encryption>,
}

impl EncodeOptions {
    /// The object's file extension: Firehose's for the compression, then
    /// `.enc` when encrypted.
    pub fn extension(&self) -> String {
        let mut ext = match self.encoding {
            Encoding::Parquet(_) => ".parquet".to_string(),
            Encoding::JsonLines { .. } => self.compression.extension().to_string(),
        };
        if self.encryption.is_some() {
            ext.push_str(".enc");
        }
        ext
    }
}

/// One encoded object, and the records that could not be part of it.
#[derive(Debug)]
pub struct Encoded {
    pub body: Bytes,
    /// (index into the batch, reason): records the format refused (a JSON
    /// record that does not fit the Parquet schema).
    pub rejected: Vec<(usize, String)>,
}

/// An object's body as it is written: the bytes themselves, or, where the
/// stream encrypts its objects, their sealed chunks.
enum Body {
    Plain(Vec<u8>),
    Sealed(Box<EncryptingWriter<Vec<u8>>>),
}

impl Body {
    /// A body for `opts`, its buffer sized for about `cap` bytes.
    fn new(opts: &EncodeOptions, cap: usize) -> io::Result<Body> {
        Ok(match &opts.encryption {
            None => Body::Plain(Vec::with_capacity(cap)),
            Some(enc) => {
                let (id, key) = enc.current();
                Body::Sealed(Box::new(EncryptingWriter::new(
                    Vec::with_capacity(cap + cap / 1000 + 64),
                    id,
                    key,
                    enc.chunk_bytes,
                )?))
            }
        })
    }

    /// The object's bytes (the last chunk sealed).
    fn finish(self) -> io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Body::Plain(v) => v,
            Body::Sealed(w) => (*w).finish()?,
        }))
    }
}

impl Write for Body {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Body::Plain(v) => v.write(buf),
            Body::Sealed(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Body::Plain(v) => v.flush(),
            Body::Sealed(w) => w.flush(),
        }
    }
}

/// Writes `records` as one object.
pub fn encode_batch(records: &[Record], opts: &EncodeOptions) -> io::Result<Encoded> {
    if let Encoding::Parquet(p) = &opts.encoding {
        let (body, rejected) = parquet::write(records, p, Body::new(opts, 0)?)?;
        return Ok(Encoded {
            body: body.finish()?,
            rejected,
        });
    }
    let raw_len: usize = records.iter().map(|r| r.data.len() + 1).sum();
    // Compressed log lines are usually 5-10x smaller; start there and grow.
    let cap = if opts.compression == Compression::None {
        raw_len
    } else {
        raw_len / 4 + 64
    };
    Ok(Encoded {
        body: compress_into(records, Body::new(opts, cap)?, opts)?.finish()?,
        rejected: Vec::new(),
    })
}

/// Writes rows already decoded into a Parquet stream's schema as one
/// object (`opts` must be Parquet's).
pub fn encode_rows(rows: &[arrow_array::RecordBatch], opts: &EncodeOptions) -> io::Result<Bytes> {
    let Encoding::Parquet(p) = &opts.encoding else {
        return Err(io::Error::other("decoded rows are written only as Parquet"));
    };
    parquet::write_rows(rows, p, Body::new(opts, 0)?)?.finish()
}

fn compress_into<W: Write>(records: &[Record], out: W, opts: &EncodeOptions) -> io::Result<W> {
    match opts.compression {
        Compression::None => {
            let mut w = out;
            write_records(&mut w, records, &opts.encoding)?;
            Ok(w)
        }
        Compression::Gzip => {
            let Encoding::JsonLines { delimiter } = &opts.encoding else {
                return Err(not_lines());
            };
            let level = opts.level.unwrap_or(6).clamp(0, 9) as u32;
            gzip::compress_lines(records, delimiter, level, gzip::GzipLimits::current(), out)
        }
        Compression::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(out, opts.level.unwrap_or(3))?;
            write_records(&mut z, records, &opts.encoding)?;
            z.finish()
        }
        Compression::Snappy => {
            let mut s = snap::write::FrameEncoder::new(out);
            write_records(&mut s, records, &opts.encoding)?;
            s.into_inner().map_err(|e| io::Error::other(e.to_string()))
        }
    }
}

fn write_records(out: &mut impl Write, records: &[Record], encoding: &Encoding) -> io::Result<()> {
    match encoding {
        Encoding::Parquet(_) => return Err(not_lines()),
        Encoding::JsonLines { delimiter } => {
            for r in records {
                out.write_all(&r.data)?;
                if delimiter_len(&r.data, delimiter) > 0 {
                    out.write_all(delimiter)?;
                }
            }
        }
    }
    Ok(())
}

/// How many bytes of `delimiter` follow `data` as a line: none if it is
/// empty or `data` already ends with it.
fn delimiter_len(data: &[u8], delimiter: &[u8]) -> usize {
    if delimiter.is_empty() || data.ends_with(delimiter) {
        0
    } else {
        delimiter.len()
    }
}

/// Parquet asked of a line writer; never happens: encode_batch writes
/// Parquet whole.
fn not_lines() -> io::Error {
    io::Error::other("parquet is not a line format")
}

#[cfg(test)]
mod tests;
