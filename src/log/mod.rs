//! The durable shard log: the only place an acknowledged record lives until
//! its destination has confirmed it.
//!
//! A stream's log is `shards` directories, each a sequence of segment files
//! ([`segment`]) of CRC-checked frames ([`frame`]). One writer thread per shard
//! does group commit ([`writer`]): it drains its bounded queue, writes every
//! pending frame, calls `fdatasync` once, and only then completes the appends,
//! so the ingest layer can acknowledge a producer only after its records are
//! on disk. Readers ([`reader`]) see only records that are already durable.
//! Consumers record progress in [`checkpoint`] files, and segments wholly
//! below every consumer's checkpoint are deleted.
//!
//! This module knows nothing of HTTP, delivery or destinations.

pub mod checkpoint;
pub mod files;
pub mod frame;
pub mod jetstream;
pub mod reader;
pub mod seal;
pub mod segment;
mod shard;
mod stream;
pub mod writer;

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use reader::DiskReader;
pub use shard::{ShardLog, ShardReader};
pub use stream::{StreamLog, shard_dir};

/// Settings of the log that are fixed for the life of a shard.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment is rolled once it has reached this many bytes.
    pub segment_bytes: u64,
    /// Appends waiting for the writer; a full queue makes ingest wait.
    pub append_queue_max: usize,
    /// Most bytes one group commit writes before it syncs.
    pub group_commit_bytes_max: usize,
    /// Bytes of puts a stream sends to one shard before the next, so that
    /// puts arriving together share a group commit; 0: each put to the
    /// next shard.
    pub put_run_bytes: u64,
    /// The keys sealed records are opened with, and streams seal with
    /// (`log.keys`, and the built-in key once the daemon has added it).
    pub keys: Arc<seal::Keyring>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            append_queue_max: 1024,
            group_commit_bytes_max: 16 << 20,
            put_run_bytes: 4 << 20,
            keys: Arc::default(),
        }
    }
}

/// The daemon-wide limit on bytes held by all logs. Shared by every shard.
#[derive(Debug)]
pub struct DiskQuota {
    used: AtomicU64,
    limit: u64,
}

impl DiskQuota {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(DiskQuota {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// Reserves `bytes`, or returns false if that would pass the limit.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let new = used.checked_add(bytes)?;
                (new <= self.limit).then_some(new)
            })
            .is_ok()
    }

    /// Counts bytes found on disk at start-up, even past the limit.
    pub fn add_existing(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(bytes))
            });
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Errors of the shard log, each naming the shard it happened on.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("shard {shard}: i/o error on {path}: {source}")]
    Io {
        shard: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "log disk quota of {limit} bytes reached ({used} bytes in use); retry once delivery frees space"
    )]
    QuotaExceeded { used: u64, limit: u64 },
    #[error("shard {shard}: a record cannot be framed: {source}")]
    Frame {
        shard: u32,
        #[source]
        source: frame::EncodeError,
    },
    #[error("shard {shard}: the log writer has stopped after an unrecoverable write error")]
    WriterFailed { shard: u32 },
    #[error("shard {shard}: the log is closed")]
    Closed { shard: u32 },
    #[error("shard {shard}: {message}")]
    Cluster { shard: u32, message: String },
    #[error("shard {shard}: corrupt log at offset {offset} in {path}: {reason}")]
    Corrupt {
        shard: u32,
        offset: u64,
        path: PathBuf,
        reason: String,
    },
    #[error("shard {shard}: {source}")]
    Sealed {
        shard: u32,
        #[source]
        source: seal::SealError,
    },
    #[error("shard {shard}: offset {offset} is no longer in the log (oldest is {oldest})")]
    Trimmed {
        shard: u32,
        offset: u64,
        oldest: u64,
    },
}

impl LogError {
    /// True when the producer should simply retry later (the request was not
    /// written, and nothing is wrong with it).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LogError::QuotaExceeded { .. }
                | LogError::Io { .. }
                | LogError::WriterFailed { .. }
                | LogError::Closed { .. }
                | LogError::Cluster { .. }
        )
    }
}

pub(crate) fn io_err(shard: u32, path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        shard,
        path: path.to_path_buf(),
        source,
    }
}

/// One record to append.
#[derive(Clone, Debug)]
pub struct AppendRecord {
    pub key: Bytes,
    pub data: Bytes,
    pub arrival_ms: i64,
}

pub(crate) struct AppendRequest {
    pub records: Vec<AppendRecord>,
    pub reply: oneshot::Sender<Result<Range<u64>, LogError>>,
}

/// State of a shard shared by its writer, its readers and the segment cleaner.
pub(crate) struct ShardShared {
    pub shard: u32,
    pub dir: PathBuf,
    /// Base offsets of the segments on disk, sorted; the last is being written.
    pub segments: RwLock<Vec<u64>>,
    /// One past the last durable offset.
    pub durable: watch::Sender<u64>,
    /// Bytes of this shard's segments on disk.
    pub bytes: AtomicU64,
    pub quota: Arc<DiskQuota>,
    pub failed: AtomicBool,
    /// Where the durable end is: (its offset, segment base, byte position),
    /// set by the writer before it publishes `durable`.
    pub tail: Tail,
    /// A finished segment is kept as the spare only if it is this long.
    pub segment_bytes: u64,
    /// Bytes of the spare segment ([`segment::spare_path`]), 0 if there is
    /// none. They stay counted by the quota until the writer takes it.
    pub spare: std::sync::Mutex<u64>,
    /// Set once the shard is sealed: its writer has stopped and no record
    /// will ever be added.
    pub sealed: AtomicBool,
}

/// Where the durable end is: (its offset, segment base, byte position).
/// Written by the shard's one writer thread after each sync, read by every
/// reader; a sequence lock, so that a reader (at delivery's low priority)
/// can never hold up the writer, which acknowledges producers.
pub(crate) struct Tail {
    /// Odd while the writer is updating the values.
    seq: AtomicU64,
    next: AtomicU64,
    base: AtomicU64,
    pos: AtomicU64,
}

impl Tail {
    fn new(next: u64, base: u64, pos: u64) -> Self {
        Tail {
            seq: AtomicU64::new(0),
            next: AtomicU64::new(next),
            base: AtomicU64::new(base),
            pos: AtomicU64::new(pos),
        }
    }

    /// Only the shard's writer calls this.
    pub(crate) fn set(&self, next: u64, base: u64, pos: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        self.next.store(next, Ordering::Relaxed);
        self.base.store(base, Ordering::Relaxed);
        self.pos.store(pos, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    pub(crate) fn get(&self) -> (u64, u64, u64) {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::thread::yield_now();
                continue;
            }
            let v = (
                self.next.load(Ordering::Relaxed),
                self.base.load(Ordering::Relaxed),
                self.pos.load(Ordering::Relaxed),
            );
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return v;
            }
        }
    }
}

impl ShardShared {
    fn segment_bases(&self) -> Vec<u64> {
        match self.segments.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The base of the segment that follows the one based at `base`, if
    /// there is one yet.
    fn base_after(&self, base: u64) -> Option<u64> {
        let find = |segs: &Vec<u64>| segs.iter().copied().find(|b| *b > base);
        match self.segments.read() {
            Ok(g) => find(&g),
            Err(poisoned) => find(&poisoned.into_inner()),
        }
    }

    /// The durable length of the segment based at `base` if it is the one
    /// being written (its bytes past it may be a write not durable yet, or
    /// old frames of a reused file); None for a finished segment.
    fn durable_len(&self, base: u64) -> Option<u64> {
        let (_, tail_base, pos) = self.tail.get();
        (tail_base == base).then_some(pos)
    }

    fn spare_bytes(&self) -> std::sync::MutexGuard<'_, u64> {
        match self.spare.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Keeps `path`, a segment of `len` bytes just dropped from the list, as
    /// the spare instead of deleting it, if there is no spare yet and it is a
    /// full segment. True if it was kept.
    fn keep_as_spare(&self, path: &Path, len: u64) -> io::Result<bool> {
        if len < self.segment_bytes {
            return Ok(false);
        }
        let mut spare = self.spare_bytes();
        if *spare != 0 {
            return Ok(false);
        }
        fs::rename(path, segment::spare_path(&self.dir))?;
        *spare = len;
        Ok(true)
    }

    /// Renames the spare, if there is one, to `to` and gives its bytes back
    /// to the quota (the writer reserves them again as it writes over it).
    /// A spare that cannot be renamed is deleted.
    fn take_spare(&self, to: &Path) {
        let mut spare = self.spare_bytes();
        if *spare == 0 {
            return;
        }
        let from = segment::spare_path(&self.dir);
        if let Err(e) = fs::rename(&from, to) {
            tracing::warn!(shard = self.shard, error = %e, "cannot reuse the spare segment; deleting it");
            let _ = fs::remove_file(&from);
        }
        self.quota.release(*spare);
        *spare = 0;
    }

    /// Deletes the spare so its bytes count no more. True if there was one.
    fn drop_spare(&self) -> bool {
        let mut spare = self.spare_bytes();
        if *spare == 0 {
            return false;
        }
        match fs::remove_file(segment::spare_path(&self.dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(shard = self.shard, error = %e, "cannot delete the spare segment");
                return false;
            }
        }
        self.quota.release(*spare);
        *spare = 0;
        true
    }

    /// Reserves `bytes` of the quota, deleting the spare first if that is
    /// what it takes.
    fn reserve(&self, bytes: u64) -> bool {
        self.quota.try_reserve(bytes) || (self.drop_spare() && self.quota.try_reserve(bytes))
    }
}

/// One shard of a stream's log: append to it, read from it, trim it.
pub struct DiskShard {
    shared: Arc<ShardShared>,
    tx: mpsc::Sender<writer::WriterMsg>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DiskShard {
    /// Closes the append queue and waits for the writer to finish what was
    /// queued and cut a reused segment to its frames, so that the shard is
    /// closed when this returns and can be opened again at once.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, closed));
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(shard = self.shared.shard, "the log writer panicked");
        }
    }
}

impl DiskShard {
    /// Opens (creating if needed) the shard in `dir`, recovers a torn tail and
    /// starts its writer thread.
    pub fn open(
        dir: &Path,
        shard: u32,
        opts: &LogOptions,
        quota: Arc<DiskQuota>,
    ) -> Result<DiskShard, LogError> {
        Self::open_as(dir, shard, opts, quota, false)
    }

    /// Opens the shard in `dir`; a `sealed` shard gets no writer and refuses
    /// every append (see [`Self::seal`]).
    pub fn open_as(
        dir: &Path,
        shard: u32,
        opts: &LogOptions,
        quota: Arc<DiskQuota>,
        sealed: bool,
    ) -> Result<DiskShard, LogError> {
        fs::create_dir_all(dir).map_err(io_err(shard, dir))?;
        let mut bases = segment::list_segments(dir).map_err(io_err(shard, dir))?;
        let (next, active_len) = match bases.last() {
            None => {
                let path = segment::segment_path(dir, 0);
                fs::File::create(&path).map_err(io_err(shard, &path))?;
                files::sync_dir(dir).map_err(io_err(shard, dir))?;
                bases.push(0);
                (0, 0)
            }
            Some(&base) => {
                let path = segment::segment_path(dir, base);
                let r = segment::recover_tail(&path, base).map_err(io_err(shard, &path))?;
                if r.reused {
                    tracing::debug!(
                        shard,
                        segment = %path.display(),
                        cut_bytes = r.truncated_bytes,
                        "cut a reused segment to its frames"
                    );
                } else if r.truncated_bytes > 0 {
                    tracing::warn!(
                        shard,
                        segment = %path.display(),
                        truncated_bytes = r.truncated_bytes,
                        reason = r.reason.unwrap_or(""),
                        "cut the log after its last whole frame: an unacknowledged torn write, or old frames of a reused segment"
                    );
                }
                (r.next_offset, r.valid_bytes)
            }
        };
        let mut total = 0u64;
        for base in &bases {
            let path = segment::segment_path(dir, *base);
            total += fs::metadata(&path).map_err(io_err(shard, &path))?.len();
        }
        quota.add_existing(total);
        let spare_path = segment::spare_path(dir);
        let spare = match fs::metadata(&spare_path) {
            Ok(m) if m.len() >= opts.segment_bytes => m.len(),
            Ok(_) => {
                fs::remove_file(&spare_path).map_err(io_err(shard, &spare_path))?;
                0
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(shard, &spare_path)(e)),
        };
        quota.add_existing(spare);
        let (durable, _) = watch::channel(next);
        let active_base = bases.last().copied().unwrap_or(0);
        let shared = Arc::new(ShardShared {
            shard,
            dir: dir.to_path_buf(),
            segments: RwLock::new(bases),
            durable,
            bytes: AtomicU64::new(total),
            quota,
            failed: AtomicBool::new(false),
            tail: Tail::new(next, active_base, active_len),
            segment_bytes: opts.segment_bytes,
            spare: std::sync::Mutex::new(spare),
            sealed: AtomicBool::new(sealed),
        });
        let (tx, rx) = mpsc::channel(opts.append_queue_max.max(1));
        if sealed {
            drop(rx);
            return Ok(DiskShard {
                shared,
                tx,
                writer: None,
            });
        }
        let writer = writer::spawn(shared.clone(), rx, opts.clone(), next, active_len)?;
        Ok(DiskShard {
            shared,
            tx,
            writer: Some(writer),
        })
    }

    pub fn shard(&self) -> u32 {
        self.shared.shard
    }

    /// Appends `records` and resolves once they are durable on disk, with the
    /// offsets they were given. Waits while the writer's queue is full.
    pub async fn append(&self, records: Vec<AppendRecord>) -> Result<Range<u64>, LogError> {
        let shard = self.shared.shard;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(writer::WriterMsg::Append(AppendRequest { records, reply }))
            .await
            .map_err(|_| LogError::Closed { shard })?;
        rx.await.map_err(|_| LogError::Closed { shard })?
    }

    /// Seals the shard: the appends queued before this are written, later
    /// ones are refused ([`LogError::Closed`]), the writer thread stops, and
    /// the shard stays readable. Resolves with the shard's end offset, which
    /// no record will ever reach. Sealing a sealed shard answers its end.
    pub async fn seal(&self) -> Result<u64, LogError> {
        let shard = self.shared.shard;
        if self.is_sealed() {
            return Ok(self.durable_end());
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.send(writer::WriterMsg::Seal(reply)).await.is_err() {
            // The writer stopped: sealed meanwhile, or failed.
            return if self.is_sealed() {
                Ok(self.durable_end())
            } else {
                Err(LogError::Closed { shard })
            };
        }
        rx.await.map_err(|_| LogError::Closed { shard })
    }

    /// Whether the shard is sealed (read-only for good).
    pub fn is_sealed(&self) -> bool {
        self.shared.sealed.load(Ordering::Acquire)
    }

    /// One past the newest durable offset.
    pub fn durable_end(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// A receiver that changes whenever more records become durable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    /// A reader positioned at `from`.
    pub fn reader(&self, from: u64) -> DiskReader {
        DiskReader::new(self.shared.clone(), from)
    }

    /// A reader at `from`, which starts at byte `pos` of the segment based at
    /// `base`, as an earlier reader's [`ShardReader::resume_point`] said.
    pub fn reader_at(&self, from: u64, base: u64, pos: u64) -> DiskReader {
        DiskReader::with_hint(self.shared.clone(), from, base, pos)
    }

    /// The first offset whose record arrived at or after `arrival_ms`, or the
    /// durable end if none did. Arrival times grow with offsets (to the
    /// millisecond, give or take concurrent appends), so this reads the first
    /// record of each segment and then scans one segment. Blocking.
    pub fn offset_at_time(&self, arrival_ms: i64) -> Result<u64, LogError> {
        let end = self.durable_end();
        let mut start = self.oldest_offset();
        for base in self.shared.segment_bases() {
            if base >= end {
                break;
            }
            match self.reader(base).read(1, 1).map(|v| v.into_iter().next()) {
                Ok(Some(f)) if f.arrival_ms < arrival_ms => start = base,
                Ok(Some(_)) => break,
                Ok(None) => break,
                // Deleted under us by retention: the next one decides.
                Err(LogError::Trimmed { .. } | LogError::Io { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        let mut reader = self.reader(start.max(self.oldest_offset()));
        loop {
            let frames = reader.read(10_000, 4 << 20)?;
            if frames.is_empty() {
                return Ok(reader.position());
            }
            if let Some(f) = frames.iter().find(|f| f.arrival_ms >= arrival_ms) {
                return Ok(f.offset);
            }
        }
    }

    /// The offset below which every segment was last written before
    /// `cutoff` (the segment being written is never counted): what a
    /// retention period allows to delete.
    pub fn offset_written_before(&self, cutoff: std::time::SystemTime) -> u64 {
        let bases = self.shared.segment_bases();
        let mut below = bases.first().copied().unwrap_or(0);
        for w in bases.windows(2) {
            let path = segment::segment_path(&self.shared.dir, w[0]);
            match fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(t) if t < cutoff => below = w[1],
                _ => break,
            }
        }
        below
    }

    /// Where `offset` starts in the log, if it is the durable end: the
    /// (segment base, byte position) for [`reader_at`](Self::reader_at).
    pub fn tail_position(&self, offset: u64) -> Option<(u64, u64)> {
        let (next, base, pos) = self.shared.tail.get();
        (next == offset).then_some((base, pos))
    }

    /// Oldest offset still on disk.
    pub fn oldest_offset(&self) -> u64 {
        self.shared.segment_bases().first().copied().unwrap_or(0)
    }

    /// Bytes of this shard's segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// Bytes this shard holds of the quota: its segments and its spare.
    pub fn quota_bytes(&self) -> u64 {
        self.disk_bytes() + *self.shared.spare_bytes()
    }

    /// Deletes every segment whose records are all below `offset`, keeping the
    /// segment being written. Returns the bytes the log no longer holds. The
    /// first full one becomes the shard's spare when it has none, to be
    /// written over as the next segment ([`segment::spare_path`]).
    pub fn delete_before(&self, offset: u64) -> Result<u64, LogError> {
        let shard = self.shared.shard;
        let doomed: Vec<u64> = {
            let segs = self.shared.segment_bases();
            segs.windows(2)
                .filter(|w| w[1] <= offset)
                .map(|w| w[0])
                .collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let (mut freed, mut kept) = (0, 0);
        for base in &doomed {
            let path = segment::segment_path(&self.shared.dir, *base);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            // Drop it from the list first so no new reader opens it.
            if let Ok(mut segs) = self.shared.segments.write() {
                segs.retain(|b| b != base);
            }
            freed += len;
            // A sealed shard never rolls again: it has no use for a spare.
            let spare = if self.is_sealed() {
                Ok(false)
            } else {
                self.shared.keep_as_spare(&path, len)
            };
            match spare {
                Ok(true) => {
                    kept = len;
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(shard, error = %e, "cannot keep a segment as the spare")
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(shard, &path)(e)),
            }
        }
        files::sync_dir(&self.shared.dir).map_err(io_err(shard, &self.shared.dir))?;
        self.shared
            .bytes
            .fetch_sub(freed.min(self.disk_bytes()), Ordering::AcqRel);
        // A segment kept as the spare still takes its space.
        self.shared.quota.release(freed - kept);
        Ok(freed)
    }
}

#[cfg(test)]
mod tests;
