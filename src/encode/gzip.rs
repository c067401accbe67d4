//! gzip of a whole batch in memory, with libdeflate.
//!
//! libdeflate compresses a buffer in one call, 2.3-2.7 times as fast as
//! zlib (zlib-rs, zlib-ng) at the same level on the suite's log lines
//! (docs/performance.md), but it has no streaming interface: its input must
//! be whole in memory. So a batch is cut into members of at most
//! `limits.gzip_member_bytes` of input (records are never split: a larger
//! record is a member alone), and each is compressed into a complete gzip
//! member (header, deflate stream, CRC-32 and length). Their concatenation is
//! one valid gzip file (RFC 1952, 2.2; what `cat a.gz b.gz` makes), which
//! `gzip -d`, zcat and Python's `gzip` read whole. Up to
//! `limits.gzip_threads_max` members of one batch are compressed at once, a
//! round at a time, each on a thread of its own, and written out in order:
//! memory holds at most that many members' input and output beside the
//! finished object. The output is standard gzip at the configured level
//! (0 to 9; libdeflate's levels follow zlib's scale).
//!
//! This is CPU work: callers run it on a blocking thread, never on the async
//! runtime. It knows nothing about where the bytes go.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::OnceLock;

use libdeflater::{CompressionLvl, Compressor};

use super::delimiter_len;
use crate::record::Record;

/// Default of `limits.gzip_member_bytes`: 1 MiB of input per member costs
/// 0.2% of the compressed size against one member per 8 MiB batch on the
/// suite's log lines, and lets two cores share a batch.
pub const MEMBER_BYTES_DEFAULT: usize = 1 << 20;

/// How one batch is cut and how many threads compress it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GzipLimits {
    /// Input bytes of one member (a larger record is a member alone).
    pub member_bytes: usize,
    /// Members of one batch compressed at once, each on a thread of its own.
    pub threads_max: usize,
}

/// Default of `limits.gzip_threads_max`: one thread per batch. Under load
/// `limits.encoders_max` batches already keep every core busy, and two
/// threads per batch on two cores cost W1 acknowledgement tail latency
/// (docs/configuration.md) for no throughput beyond the runs' spread.
pub const THREADS_MAX_DEFAULT: usize = 1;

impl Default for GzipLimits {
    /// [`MEMBER_BYTES_DEFAULT`], [`THREADS_MAX_DEFAULT`].
    fn default() -> Self {
        GzipLimits {
            member_bytes: MEMBER_BYTES_DEFAULT,
            threads_max: THREADS_MAX_DEFAULT,
        }
    }
}

/// The process's limits, set once at start (`limits` need a restart).
static LIMITS: OnceLock<GzipLimits> = OnceLock::new();

impl GzipLimits {
    /// The limits given to [`GzipLimits::set`], else the defaults.
    pub fn current() -> GzipLimits {
        *LIMITS.get_or_init(GzipLimits::default)
    }

    /// Makes these the process's limits (`limits.gzip_member_bytes`,
    /// `limits.gzip_threads_max`). Only the first call counts, and only if
    /// nothing was compressed before it; false otherwise.
    pub fn set(self) -> bool {
        LIMITS
            .set(GzipLimits {
                member_bytes: self.member_bytes.max(1),
                threads_max: self.threads_max.max(1),
            })
            .is_ok()
    }
}

/// `records` as lines (each followed by `delimiter` unless it already ends
/// with it), gzip at `level`, written to `out` as members of at most
/// `limits.member_bytes` of input.
pub fn compress_lines<W: Write>(
    records: &[Record],
    delimiter: &[u8],
    level: u32,
    limits: GzipLimits,
    out: W,
) -> io::Result<W> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, r) in records.iter().enumerate() {
        let len = r.data.len() + delimiter_len(&r.data, delimiter);
        if i > start && bytes + len > limits.member_bytes {
            runs.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    runs.push(start..records.len());
    let input = Input::Lines {
        records,
        delimiter,
        runs,
    };
    compress_input(&input, level, limits.threads_max, out)
}

/// `data` gzip at `level`, written to `out` as members of at most
/// `limits.member_bytes`.
pub fn compress<W: Write>(data: &[u8], level: u32, limits: GzipLimits, out: W) -> io::Result<W> {
    let input = Input::Bytes {
        data,
        member_bytes: limits.member_bytes.max(1),
    };
    compress_input(&input, level, limits.threads_max, out)
}

/// The input of one gzip file, cut into members.
enum Input<'a> {
    /// One buffer, cut every `member_bytes`.
    Bytes { data: &'a [u8], member_bytes: usize },
    /// Records as lines; each member is a run of whole records.
    Lines {
        records: &'a [Record],
        delimiter: &'a [u8],
        runs: Vec<Range<usize>>,
    },
}

impl Input<'_> {
    /// How many members (at least one: an empty input is one empty member,
    /// so that the output is still a gzip file).
    fn members(&self) -> usize {
        match self {
            Input::Bytes { data, member_bytes } => data.len().div_ceil(*member_bytes).max(1),
            Input::Lines { runs, .. } => runs.len(),
        }
    }

    /// Member `i`'s bytes: borrowed from the buffer, or the records' lines
    /// copied into `buf`.
    fn member<'b>(&'b self, i: usize, buf: &'b mut Vec<u8>) -> &'b [u8] {
        match self {
            Input::Bytes { data, member_bytes } => {
                let start = i.saturating_mul(*member_bytes).min(data.len());
                let end = start.saturating_add(*member_bytes).min(data.len());
                data.get(start..end).unwrap_or_default()
            }
            Input::Lines {
                records,
                delimiter,
                runs,
            } => {
                buf.clear();
                let run = runs.get(i).cloned().unwrap_or_default();
                for r in records.get(run).unwrap_or_default() {
                    buf.extend_from_slice(&r.data);
                    if delimiter_len(&r.data, delimiter) > 0 {
                        buf.extend_from_slice(delimiter);
                    }
                }
                buf
            }
        }
    }
}

/// One thread's compressor and buffers, kept from member to member.
struct Worker {
    compressor: Compressor,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Worker {
    /// Compresses member `i` of `input` into `self.output`.
    fn compress(&mut self, input: &Input<'_>, i: usize) -> io::Result<()> {
        let data = input.member(i, &mut self.input);
        let bound = self.compressor.gzip_compress_bound(data.len());
        self.output.resize(bound, 0);
        let n = self
            .compressor
            .gzip_compress(data, &mut self.output)
            .map_err(|e| io::Error::other(format!("gzip: {e}")))?;
        self.output.truncate(n);
        Ok(())
    }
}

/// Every member of `input`, `threads_max` at a time, written to `out` in
/// order.
fn compress_input<W: Write>(
    input: &Input<'_>,
    level: u32,
    threads_max: usize,
    mut out: W,
) -> io::Result<W> {
    let lvl = CompressionLvl::new(level.min(9) as i32)
        .map_err(|_| io::Error::other(format!("gzip level {level} is not 0 to 9")))?;
    let n = input.members();
    let threads = threads_max.clamp(1, n);
    let mut workers: Vec<Worker> = (0..threads)
        .map(|_| Worker {
            compressor: Compressor::new(lvl),
            input: Vec::new(),
            output: Vec::new(),
        })
        .collect();
    let mut first = 0;
    while first < n {
        let round = (n - first).min(threads);
        let round_workers = workers.get_mut(..round).unwrap_or_default();
        compress_round(input, first, round_workers)?;
        for w in workers.iter().take(round) {
            out.write_all(&w.output)?;
        }
        first += round;
    }
    Ok(out)
}

/// Members `first..` of `input`, one per worker: the calling thread
/// compresses the first, a scoped thread each of the others (or the calling
/// thread too, after its own, if a thread cannot be started).
fn compress_round(input: &Input<'_>, first: usize, workers: &mut [Worker]) -> io::Result<()> {
    let Some((mine, others)) = workers.split_first_mut() else {
        return Ok(());
    };
    let not_started = std::thread::scope(|s| {
        let mut spawned = Vec::new();
        let mut not_started = Vec::new();
        for (k, w) in others.iter_mut().enumerate() {
            let i = first + 1 + k;
            match std::thread::Builder::new()
                .name("gzip".into())
                .spawn_scoped(s, move || w.compress(input, i))
            {
                Ok(handle) => spawned.push(handle),
                Err(_) => not_started.push(1 + k),
            }
        }
        let mut result = mine.compress(input, first);
        for handle in spawned {
            let r = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a gzip thread panicked")));
            result = result.and(r);
        }
        result.map(|()| not_started)
    })?;
    for k in not_started {
        if let Some(w) = workers.get_mut(k) {
            w.compress(input, first + k)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Read;

    fn records(n: usize) -> (Vec<Record>, Vec<u8>) {
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                offset: i as u64,
                arrival_ms: 0,
                key: Bytes::new(),
                data: Bytes::from(format!(
                    "{{\"n\":{i},\"msg\":\"request {} took {} ms\"}}",
                    i * 7919 % 10007,
                    i % 313
                )),
            })
            .collect();
        let mut text = Vec::new();
        for r in &recs {
            text.extend_from_slice(&r.data);
            text.push(b'\n');
        }
        (recs, text)
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// How many gzip members `gz` holds, read one at a time.
    fn members(gz: &[u8]) -> usize {
        let mut rest = gz;
        let mut n = 0;
        while !rest.is_empty() {
            let mut d = flate2::bufread::GzDecoder::new(rest);
            io::copy(&mut d, &mut io::sink()).unwrap();
            rest = d.into_inner();
            n += 1;
        }
        n
    }

    fn limits(member_bytes: usize, threads_max: usize) -> GzipLimits {
        GzipLimits {
            member_bytes,
            threads_max,
        }
    }

    #[test]
    fn many_members_decode_to_the_exact_input_on_any_threads() {
        let (recs, text) = records(5000);
        for threads in [1, 2, 3, 8] {
            let gz =
                compress_lines(&recs, b"\n", 6, limits(16 << 10, threads), Vec::new()).unwrap();
            assert_eq!(gunzip(&gz), text, "{threads} threads");
            assert_eq!(members(&gz), text.len().div_ceil(16 << 10).max(2));
        }
    }

    #[test]
    fn a_batch_over_the_member_bound_is_several_members() {
        let (recs, text) = records(5000);
        let one = compress_lines(&recs, b"\n", 6, limits(1 << 30, 2), Vec::new()).unwrap();
        assert_eq!(members(&one), 1);
        let many = compress_lines(&recs, b"\n", 6, limits(64 << 10, 2), Vec::new()).unwrap();
        assert!(members(&many) > 1, "{} members", members(&many));
        assert_eq!(gunzip(&many), text);
        let bytes = compress(&text, 6, limits(64 << 10, 2), Vec::new()).unwrap();
        assert_eq!(members(&bytes), text.len().div_ceil(64 << 10));
        assert_eq!(gunzip(&bytes), text);
    }

    #[test]
    fn every_level_decodes() {
        let (recs, text) = records(2000);
        let mut sizes = Vec::new();
        for level in 0..=9 {
            let gz = compress_lines(&recs, b"\n", level, limits(32 << 10, 2), Vec::new()).unwrap();
            assert_eq!(gunzip(&gz), text, "level {level}");
            sizes.push(gz.len());
        }
        assert!(sizes[0] > text.len(), "level 0 stores: {sizes:?}");
        assert!(sizes[9] < sizes[1], "{sizes:?}");
    }

    #[test]
    fn an_empty_batch_is_one_empty_member() {
        for gz in [
            compress_lines(&[], b"\n", 6, GzipLimits::default(), Vec::new()).unwrap(),
            compress(&[], 6, GzipLimits::default(), Vec::new()).unwrap(),
        ] {
            assert_eq!(members(&gz), 1);
            assert!(gunzip(&gz).is_empty());
        }
    }

    #[test]
    fn a_record_larger_than_a_member_is_a_member_alone() {
        let big = Record {
            offset: 0,
            arrival_ms: 0,
            key: Bytes::new(),
            data: Bytes::from(vec![b'x'; 10_000]),
        };
        let recs = vec![big.clone(), big.clone(), big];
        let gz = compress_lines(&recs, b"\n", 6, limits(4096, 2), Vec::new()).unwrap();
        assert_eq!(members(&gz), 3);
        assert_eq!(gunzip(&gz).len(), 3 * 10_001);
    }

    #[test]
    fn lines_keep_a_delimiter_they_end_with() {
        let recs: Vec<Record> = ["a\r\n", "b"]
            .iter()
            .map(|d| Record {
                offset: 0,
                arrival_ms: 0,
                key: Bytes::new(),
                data: Bytes::from_static(d.as_bytes()),
            })
            .collect();
        let gz = compress_lines(&recs, b"\r\n", 6, limits(1, 1), Vec::new()).unwrap();
        assert_eq!(gunzip(&gz), b"a\r\nb\r\n");
        assert_eq!(members(&gz), 2);
    }
}
