//! Sequential reader of one shard, from any offset still on disk.
//!
//! Reads only records below the durable end, so it never sees a frame that a
//! crash could still take back: in the segment being written it reads no
//! byte past the durable end's position, so what it has buffered stays valid
//! from one read to the next. Every frame is checksum-verified again on the
//! way out. Reads are blocking file I/O: call them from a blocking thread.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::frame::{self, Decoded};
use super::{LogError, ShardShared, io_err, segment};
use crate::record::Record;

const READ_CHUNK_BYTES: usize = 1 << 20;

struct OpenSegment {
    base: u64,
    file: File,
    /// The file's read position.
    pos: u64,
    /// Base of the segment after it, once there is one: the reader moves on
    /// at that offset without looking at what follows the last frame (a
    /// reused segment holds old frames there).
    end: Option<u64>,
}

/// A cursor over one shard.
pub struct DiskReader {
    shared: Arc<ShardShared>,
    next: u64,
    seg: Option<OpenSegment>,
    buf: BytesMut,
    /// Where `next` starts, if known: (segment base, byte position). Saves
    /// scanning the segment from its start to find it.
    hint: Option<(u64, u64)>,
}

impl DiskReader {
    pub(crate) fn new(shared: Arc<ShardShared>, from: u64) -> Self {
        DiskReader {
            shared,
            next: from,
            seg: None,
            buf: BytesMut::new(),
            hint: None,
        }
    }

    /// A reader at `from`, which starts at byte `pos` of the segment based at
    /// `base` (a [`resume_point`](Self::resume_point) of an earlier reader).
    /// A hint that does not hold is noticed by the frame checks, and the
    /// reader then finds `from` by scanning the segment instead.
    pub(crate) fn with_hint(shared: Arc<ShardShared>, from: u64, base: u64, pos: u64) -> Self {
        let mut r = Self::new(shared, from);
        r.hint = Some((base, pos));
        r
    }

    /// Where the next record starts: its segment's base and byte position,
    /// for [`DiskShard::reader_at`](super::DiskShard::reader_at). None when the
    /// reader has no segment open.
    pub fn resume_point(&mut self) -> Option<(u64, u64)> {
        let seg = self.seg.as_ref()?;
        Some((seg.base, seg.pos - self.buf.len() as u64))
    }

    /// The offset the next returned record will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// One past the newest durable offset of the shard.
    pub fn durable_end(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    fn open_segment_for(&mut self, offset: u64) -> Result<(), LogError> {
        let shard = self.shared.shard;
        let bases = self.shared.segment_bases();
        let Some(&base) = bases.iter().rev().find(|b| **b <= offset) else {
            return Err(LogError::Trimmed {
                shard,
                offset,
                oldest: bases.first().copied().unwrap_or(0),
            });
        };
        let path = segment::segment_path(&self.shared.dir, base);
        let mut file = File::open(&path).map_err(io_err(shard, &path))?;
        let start = match self.hint.take() {
            Some((b, pos)) if b == base => pos,
            _ => 0,
        };
        file.seek(SeekFrom::Start(start))
            .map_err(io_err(shard, &path))?;
        let end = self.shared.base_after(base);
        self.seg = Some(OpenSegment {
            base,
            file,
            pos: start,
            end,
        });
        self.buf.clear();
        Ok(())
    }

    /// Reads up to `records_max` records or about `bytes_max` bytes of data,
    /// whichever comes first, from the durable part of the shard. Returns an
    /// empty vector when the reader has caught up.
    ///
    /// Bytes read past the last returned record stay buffered for the next
    /// call: they are durable (see the module's note), and the records of
    /// consecutive calls then share read buffers instead of each call
    /// starting a new one (a batch of small records held twice the memory).
    pub fn read(&mut self, records_max: usize, bytes_max: usize) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::new();
        self.read_into(&mut out, records_max, bytes_max)?;
        Ok(out)
    }

    /// [`DiskReader::read`] into `out`, which it clears first: a reader
    /// polled again and again keeps one vector instead of growing a new one
    /// by doubling each time (the sizes freed along the way fragment the
    /// heap). On an error `out` is left empty.
    pub fn read_into(
        &mut self,
        out: &mut Vec<Record>,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<(), LogError> {
        let hinted = self.hint.is_some();
        let start = self.next;
        out.clear();
        let mut result = self.read_inner(out, records_max, bytes_max);
        if hinted && matches!(result, Err(LogError::Corrupt { .. })) {
            // The hint pointed somewhere wrong; find the offset by scanning,
            // from where this read began.
            self.seg = None;
            self.buf.clear();
            self.next = start;
            out.clear();
            result = self.read_inner(out, records_max, bytes_max);
        }
        if result.is_err() {
            // Start again from the file at the next read.
            self.seg = None;
            self.buf.clear();
            out.clear();
        }
        result
    }

    fn read_inner(
        &mut self,
        out: &mut Vec<Record>,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<(), LogError> {
        let shard = self.shared.shard;
        let end = self.durable_end();
        // Every segment holding offsets below `end` is listed by now: the
        // writer lists a segment before it publishes offsets in it.
        if let Some(seg) = self.seg.as_mut()
            && seg.end.is_none()
        {
            seg.end = self.shared.base_after(seg.base);
        }
        let mut bytes = 0usize;
        while self.next < end && out.len() < records_max && bytes < bytes_max {
            if self
                .seg
                .as_ref()
                .is_some_and(|s| s.end.is_some_and(|e| self.next >= e))
            {
                self.seg = None;
                self.buf.clear();
            }
            if self.seg.is_none() {
                self.open_segment_for(self.next)?;
            }
            let Some(seg) = self.seg.as_mut() else {
                continue;
            };
            match frame::decode(&self.buf) {
                Decoded::Frame { frame: f, consumed } => {
                    let chunk = self.buf.split_to(consumed).freeze();
                    if f.offset < self.next {
                        continue; // positioning inside the segment
                    }
                    if f.offset != self.next {
                        return Err(LogError::Corrupt {
                            shard,
                            offset: self.next,
                            path: segment::segment_path(&self.shared.dir, seg.base),
                            reason: format!("expected offset {}, found {}", self.next, f.offset),
                        });
                    }
                    bytes += f.data.len();
                    out.push(Record {
                        offset: f.offset,
                        arrival_ms: f.arrival_ms,
                        key: slice(&chunk, f.key),
                        data: slice(&chunk, f.data),
                    });
                    self.next += 1;
                }
                Decoded::Incomplete => self.read_more_of_segment()?,
                Decoded::Corrupt(why) => {
                    return Err(LogError::Corrupt {
                        shard,
                        offset: self.next,
                        path: segment::segment_path(&self.shared.dir, seg.base),
                        reason: why.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads more of the open segment into the buffer, for a frame that is
    /// not whole yet: up to the durable end in the segment being written. At
    /// the end of a segment that the next one follows, closes it.
    fn read_more_of_segment(&mut self) -> Result<(), LogError> {
        let shard = self.shared.shard;
        let Some(seg) = self.seg.as_mut() else {
            return Ok(());
        };
        let path = segment::segment_path(&self.shared.dir, seg.base);
        let mut want = needed_bytes(&self.buf).max(READ_CHUNK_BYTES);
        match self.shared.durable_len(seg.base) {
            // The segment being written: up to its durable end,
            // and a buffer no larger than what is there.
            Some(len) => want = want.min(len.saturating_sub(seg.pos) as usize),
            // A finished one: to its end, where the next begins
            // (it may have been finished since this read began).
            None if seg.end.is_none() => seg.end = self.shared.base_after(seg.base),
            None => {}
        }
        let n = if want == 0 {
            0
        } else {
            read_more(&mut seg.file, &mut self.buf, want).map_err(io_err(shard, &path))?
        };
        seg.pos += n as u64;
        if n == 0 {
            // End of this segment: move on to the one starting here.
            let bases = self.shared.segment_bases();
            if self.buf.is_empty() && bases.contains(&self.next) && self.next != seg.base {
                self.seg = None;
                return Ok(());
            }
            return Err(LogError::Corrupt {
                shard,
                offset: self.next,
                path,
                reason: "segment ends before the durable end".into(),
            });
        }
        Ok(())
    }
}

fn slice(chunk: &Bytes, r: std::ops::Range<usize>) -> Bytes {
    chunk.slice(r)
}

/// Bytes the frame at the start of `buf` needs in all, when its length is known.
fn needed_bytes(buf: &[u8]) -> usize {
    match buf.get(0..4) {
        Some(len) => {
            let body = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            (frame::HEADER_BYTES + body.min(frame::BODY_BYTES_MAX)).saturating_sub(buf.len())
        }
        None => 0,
    }
}

fn read_more(file: &mut File, buf: &mut BytesMut, want: usize) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // Read into the buffer's spare capacity: zeroing it first, only for the
    // read to write over the zeros, cost a pass over every byte read.
    let start = buf.len();
    buf.reserve(want);
    let mut filled = 0;
    while filled < want {
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(want - filled);
        // SAFETY: read(2) writes at most `len` bytes at `spare`, which is
        // writable memory of at least that length owned by `buf`, not
        // otherwise borrowed during the call.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            buf.truncate(start);
            return Err(e);
        }
        let n = n as usize;
        if n == 0 {
            break;
        }
        // SAFETY: the read initialised the first `n` (<= `len`) bytes of the
        // spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        filled += n;
    }
    Ok(filled)
}
