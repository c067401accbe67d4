//! The group-commit writer of one shard, on a thread of its own.
//!
//! It blocks for the first pending append, takes every other append already
//! queued (up to `group_commit_bytes_max`), writes their frames with one
//! `write`, calls `fdatasync` once, publishes the new durable end and only then
//! answers every waiting append. It must never answer an append before the
//! sync returned, and never leave a partial write in the file after an error.
//!
//! A seal ([`WriterMsg::Seal`]) is taken in queue order: the appends queued
//! before it are written, then the writer answers with the shard's end
//! offset, refuses whatever was queued after it, and stops; the shard is
//! read-only from then on.
//!
//! Frames are written at the segment's known length, not appended at the
//! file's end: a segment made from the spare is already longer than its
//! frames, with old frames past them (see [`segment::spare_path`]).

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use tokio::sync::oneshot;

use super::{AppendRequest, LogError, LogOptions, ShardShared, frame, io_err, segment};

/// What the writer's queue carries.
pub(crate) enum WriterMsg {
    Append(AppendRequest),
    /// Write what was queued before, then answer with the end offset and stop.
    Seal(oneshot::Sender<u64>),
}

struct Writer {
    shared: Arc<ShardShared>,
    opts: LogOptions,
    file: File,
    active_base: u64,
    active_len: u64,
    next_offset: u64,
    buf: Vec<u8>,
}

pub(crate) fn spawn(
    shared: Arc<ShardShared>,
    rx: mpsc::Receiver<WriterMsg>,
    opts: LogOptions,
    next_offset: u64,
    active_len: u64,
) -> Result<std::thread::JoinHandle<()>, LogError> {
    let shard = shared.shard;
    let active_base = shared.segment_bases().last().copied().unwrap_or(0);
    let path = segment::segment_path(&shared.dir, active_base);
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err(shard, &path))?;
    let mut w = Writer {
        shared,
        opts,
        file,
        active_base,
        active_len,
        next_offset,
        buf: Vec::new(),
    };
    std::thread::Builder::new()
        .name(format!("log-writer-{shard}"))
        .spawn(move || {
            crate::sched::ack_thread();
            w.run(rx)
        })
        .map_err(io_err(shard, &path))
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut seal = None;
        while seal.is_none() {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut group = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Append(req) => {
                        bytes += request_bytes(&req);
                        group.push(req);
                    }
                    WriterMsg::Seal(reply) => seal = Some(reply),
                }
                if seal.is_none() && bytes < self.opts.group_commit_bytes_max {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
        }
        // Closed or sealed: cut a reused segment to its frames, so that the
        // next start finds nothing after them to report.
        self.cut_to_frames(true);
        if let Some(reply) = seal {
            self.shared.sealed.store(true, Ordering::Release);
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    WriterMsg::Append(req) => {
                        let _ = req.reply.send(Err(LogError::Closed {
                            shard: self.shared.shard,
                        }));
                    }
                    WriterMsg::Seal(r) => {
                        let _ = r.send(self.next_offset);
                    }
                }
            }
            let _ = reply.send(self.next_offset);
        }
    }

    /// Cuts the active file to its frames if it is longer (made from the
    /// spare, it has old frames past them), syncing the cut if asked.
    fn cut_to_frames(&self, sync: bool) {
        let cut = self.file.metadata().and_then(|m| {
            if m.len() <= self.active_len {
                return Ok(());
            }
            self.file.set_len(self.active_len)?;
            if sync { self.file.sync_all() } else { Ok(()) }
        });
        if let Err(e) = cut {
            tracing::warn!(shard = self.shared.shard, error = %e, "cannot cut a reused segment to its frames");
        }
    }

    fn commit(&mut self, group: Vec<AppendRequest>) {
        let shard = self.shared.shard;
        if self.shared.failed.load(Ordering::Acquire) {
            for req in group {
                let _ = req.reply.send(Err(LogError::WriterFailed { shard }));
            }
            return;
        }
        if self.active_len >= self.opts.segment_bytes
            && let Err(e) = self.roll()
        {
            tracing::error!(shard, error = %e, "cannot roll segment");
            for req in group {
                let _ = req.reply.send(Err(LogError::WriterFailed { shard }));
            }
            return;
        }
        let (accepted, next, reserved) = self.encode_group(group);
        if accepted.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let result = self
            .file
            .write_all_at(&self.buf, self.active_len)
            .and_then(|()| self.file.sync_data());
        crate::metrics::log_sync_seconds().observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.active_len += self.buf.len() as u64;
                self.next_offset = next;
                self.shared
                    .bytes
                    .fetch_add(self.buf.len() as u64, Ordering::AcqRel);
                self.shared
                    .tail
                    .set(next, self.active_base, self.active_len);
                self.shared.durable.send_replace(next);
                for (req, range) in accepted {
                    let _ = req.reply.send(Ok(range));
                }
            }
            Err(e) => self.write_failed(e, accepted, reserved),
        }
    }

    /// Encodes the frames of every request of `group` into the buffer at
    /// the next offsets, answering at once each request whose records cannot
    /// be framed or whose bytes exceed the quota. Returns the accepted
    /// requests with their offset ranges, the next offset after them and
    /// the quota bytes reserved for them.
    fn encode_group(
        &mut self,
        group: Vec<AppendRequest>,
    ) -> (Vec<(AppendRequest, Range<u64>)>, u64, u64) {
        let shard = self.shared.shard;
        self.buf.clear();
        let mut accepted: Vec<(AppendRequest, Range<u64>)> = Vec::with_capacity(group.len());
        let mut next = self.next_offset;
        let mut reserved = 0u64;
        for req in group {
            let start_len = self.buf.len();
            let first = next;
            let mut bad = None;
            for r in &req.records {
                if let Err(source) =
                    frame::encode(&mut self.buf, next, r.arrival_ms, &r.key, &r.data)
                {
                    bad = Some(source);
                    break;
                }
                next += 1;
            }
            if let Some(source) = bad {
                self.buf.truncate(start_len);
                next = first;
                let _ = req.reply.send(Err(LogError::Frame { shard, source }));
                continue;
            }
            let req_bytes = (self.buf.len() - start_len) as u64;
            if !self.shared.reserve(req_bytes) {
                self.buf.truncate(start_len);
                next = first;
                let _ = req.reply.send(Err(LogError::QuotaExceeded {
                    used: self.shared.quota.used(),
                    limit: self.shared.quota.limit(),
                }));
                continue;
            }
            reserved += req_bytes;
            accepted.push((req, first..next));
        }
        (accepted, next, reserved)
    }

    /// After a failed write: gives back the reserved quota, cuts the partial
    /// write off and answers every accepted request with the error.
    fn write_failed(
        &mut self,
        e: std::io::Error,
        accepted: Vec<(AppendRequest, Range<u64>)>,
        reserved: u64,
    ) {
        let shard = self.shared.shard;
        let path = segment::segment_path(&self.shared.dir, self.active_base);
        self.shared.quota.release(reserved);
        // Cut the partial write off so the file stays a clean sequence
        // of acknowledged frames; if even that fails, stop writing.
        let truncated = self
            .file
            .set_len(self.active_len)
            .and_then(|()| self.file.sync_all());
        if let Err(te) = truncated {
            tracing::error!(shard, error = %te, "cannot truncate after a failed write; shard stops accepting");
            self.shared.failed.store(true, Ordering::Release);
        }
        tracing::warn!(shard, error = %e, "log write failed; appends answered as unavailable");
        let kind = e.kind();
        let msg = e.to_string();
        for (req, _) in accepted {
            let _ = req.reply.send(Err(io_err(shard, &path)(std::io::Error::new(
                kind,
                msg.clone(),
            ))));
        }
    }

    fn roll(&mut self) -> std::io::Result<()> {
        // The active file was synced at the end of the previous group. Its
        // cut is not synced: only readers that stop at the next base ever
        // look past its frames.
        self.cut_to_frames(false);
        let base = self.next_offset;
        let path = segment::segment_path(&self.shared.dir, base);
        self.shared.take_spare(&path);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        super::files::sync_dir(&self.shared.dir)?;
        self.file = file;
        self.active_base = base;
        self.active_len = 0;
        match self.shared.segments.write() {
            Ok(mut segs) => segs.push(base),
            Err(poisoned) => poisoned.into_inner().push(base),
        }
        Ok(())
    }
}

fn request_bytes(req: &AppendRequest) -> usize {
    req.records
        .iter()
        .map(|r| frame::encoded_len(r.key.len(), r.data.len()))
        .sum()
}
