//! The log backend seam: one shard's log, whichever store holds it.
//!
//! Everything above the log (ingest, Kinesis, delivery) sees a shard only
//! through [`ShardLog`] and [`ShardReader`]: append with a durable
//! acknowledgement, seal, read from an offset, the durable end and a watch on
//! it, offsets by arrival time, and trimming. Two stores implement it: the
//! local segment files ([`DiskShard`], the embedded default) and a replicated
//! NATS JetStream stream per shard ([`JetShard`], cluster mode). Dispatch is
//! a `match`, not a trait object: both are known here, and the hot paths
//! (append, read) keep static calls.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::jetstream::{JetReader, JetShard};
use super::seal::LogCipher;
use super::{AppendRecord, DiskQuota, DiskReader, DiskShard, LogError, LogOptions};
use crate::record::Record;

/// One shard of a stream's log: its store, and the stream's encryption at
/// rest ([`LogCipher`]), which seals records on the way in and opens them on
/// the way out, whichever store holds them.
pub struct ShardLog {
    store: Store,
    cipher: Arc<LogCipher>,
}

enum Store {
    /// Segment files on this machine's disk.
    Disk(DiskShard),
    /// A replicated JetStream stream.
    JetStream(JetShard),
}

/// A cursor over one shard, from either store. Reads block: call them from
/// a blocking thread.
pub struct ShardReader {
    store: ReaderStore,
    cipher: Arc<LogCipher>,
    shard: u32,
}

enum ReaderStore {
    Disk(DiskReader),
    JetStream(JetReader),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.store {
            Store::Disk($s) => $e,
            Store::JetStream($s) => $e,
        }
    };
}

impl ShardLog {
    /// Opens (creating if needed) a shard on the local disk in `dir`, with
    /// a cipher of its own that seals nothing.
    pub fn open(
        dir: &Path,
        shard: u32,
        opts: &LogOptions,
        quota: Arc<DiskQuota>,
    ) -> Result<ShardLog, LogError> {
        let cipher = Arc::new(LogCipher::new(opts.keys.clone(), None));
        Self::open_as(dir, shard, opts, quota, false, cipher)
    }

    /// Opens a shard on the local disk; a `sealed` one refuses appends.
    pub fn open_as(
        dir: &Path,
        shard: u32,
        opts: &LogOptions,
        quota: Arc<DiskQuota>,
        sealed: bool,
        cipher: Arc<LogCipher>,
    ) -> Result<ShardLog, LogError> {
        let store = DiskShard::open_as(dir, shard, opts, quota, sealed).map(Store::Disk)?;
        Ok(ShardLog { store, cipher })
    }

    /// A shard kept in JetStream.
    pub fn jetstream(shard: JetShard, cipher: Arc<LogCipher>) -> ShardLog {
        ShardLog {
            store: Store::JetStream(shard),
            cipher,
        }
    }

    /// The JetStream shard inside, if that is the store.
    pub(crate) fn as_jetstream(&self) -> Option<&JetShard> {
        match &self.store {
            Store::JetStream(j) => Some(j),
            Store::Disk(_) => None,
        }
    }

    pub fn shard(&self) -> u32 {
        each!(self, s => s.shard())
    }

    /// The stream's encryption at rest, shared by its shards.
    pub fn cipher(&self) -> &Arc<LogCipher> {
        &self.cipher
    }

    /// The local shard inside, for the log's own tests.
    #[cfg(test)]
    pub(crate) fn disk(&self) -> &DiskShard {
        match &self.store {
            Store::Disk(s) => s,
            Store::JetStream(_) => panic!("not a local shard"),
        }
    }

    /// Appends `records` (sealed first, if the stream seals) and resolves
    /// once they are durable (on this disk, or acknowledged by a JetStream
    /// quorum), with the offsets they were given, consecutive.
    pub async fn append(&self, mut records: Vec<AppendRecord>) -> Result<Range<u64>, LogError> {
        self.cipher.seal(&mut records);
        match &self.store {
            Store::Disk(s) => s.append(records).await,
            Store::JetStream(s) => s.append(records).await,
        }
    }

    /// Seals the shard for good and answers its end offset (see
    /// [`DiskShard::seal`]).
    pub async fn seal(&self) -> Result<u64, LogError> {
        match &self.store {
            Store::Disk(s) => s.seal().await,
            Store::JetStream(s) => s.seal().await,
        }
    }

    /// Whether the shard is sealed (read-only for good).
    pub fn is_sealed(&self) -> bool {
        each!(self, s => s.is_sealed())
    }

    /// One past the newest durable offset.
    pub fn durable_end(&self) -> u64 {
        each!(self, s => s.durable_end())
    }

    /// A receiver that changes whenever more records become durable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        each!(self, s => s.subscribe())
    }

    /// A reader positioned at `from`.
    pub fn reader(&self, from: u64) -> ShardReader {
        let store = match &self.store {
            Store::Disk(s) => ReaderStore::Disk(s.reader(from)),
            Store::JetStream(s) => ReaderStore::JetStream(s.reader(from)),
        };
        ShardReader {
            store,
            cipher: self.cipher.clone(),
            shard: self.shard(),
        }
    }

    /// A reader at `from` with a position hint from an earlier reader's
    /// [`ShardReader::resume_point`] (local logs only; JetStream reads by
    /// sequence and needs none).
    pub fn reader_at(&self, from: u64, base: u64, pos: u64) -> ShardReader {
        let store = match &self.store {
            Store::Disk(s) => ReaderStore::Disk(s.reader_at(from, base, pos)),
            Store::JetStream(s) => ReaderStore::JetStream(s.reader(from)),
        };
        ShardReader {
            store,
            cipher: self.cipher.clone(),
            shard: self.shard(),
        }
    }

    /// The first offset whose record arrived at or after `arrival_ms`, or
    /// the durable end if none did. Blocking.
    pub fn offset_at_time(&self, arrival_ms: i64) -> Result<u64, LogError> {
        each!(self, s => s.offset_at_time(arrival_ms))
    }

    /// The offset below which a retention period ending at `cutoff` allows
    /// deleting. JetStream applies retention itself (the stream's max age),
    /// so there it is the oldest offset: nothing for Hydrant to delete.
    pub fn offset_written_before(&self, cutoff: std::time::SystemTime) -> u64 {
        match &self.store {
            Store::Disk(s) => s.offset_written_before(cutoff),
            Store::JetStream(s) => s.oldest_offset(),
        }
    }

    /// Where `offset` starts in a local log, if it is the durable end.
    pub fn tail_position(&self, offset: u64) -> Option<(u64, u64)> {
        match &self.store {
            Store::Disk(s) => s.tail_position(offset),
            Store::JetStream(_) => None,
        }
    }

    /// Oldest offset still held.
    pub fn oldest_offset(&self) -> u64 {
        each!(self, s => s.oldest_offset())
    }

    /// Bytes the shard holds (on this disk, or in JetStream as last seen).
    pub fn disk_bytes(&self) -> u64 {
        each!(self, s => s.disk_bytes())
    }

    /// Bytes this shard holds of the local disk quota (none in JetStream).
    pub fn quota_bytes(&self) -> u64 {
        match &self.store {
            Store::Disk(s) => s.quota_bytes(),
            Store::JetStream(_) => 0,
        }
    }

    /// Deletes what lies wholly below `offset` (whole segments locally, a
    /// purge in JetStream). Returns the bytes freed of the local quota.
    /// Blocking.
    pub fn delete_before(&self, offset: u64) -> Result<u64, LogError> {
        each!(self, s => s.delete_before(offset))
    }
}

impl ShardReader {
    /// Where the next record starts in a local log, for
    /// [`ShardLog::reader_at`]. None in JetStream.
    pub fn resume_point(&mut self) -> Option<(u64, u64)> {
        match &mut self.store {
            ReaderStore::Disk(r) => r.resume_point(),
            ReaderStore::JetStream(_) => None,
        }
    }

    /// The offset the next returned record will have.
    pub fn position(&self) -> u64 {
        match &self.store {
            ReaderStore::Disk(r) => r.position(),
            ReaderStore::JetStream(r) => r.position(),
        }
    }

    /// One past the newest durable offset of the shard.
    pub fn durable_end(&self) -> u64 {
        match &self.store {
            ReaderStore::Disk(r) => r.durable_end(),
            ReaderStore::JetStream(r) => r.durable_end(),
        }
    }

    /// Reads up to `records_max` records or about `bytes_max` bytes of data
    /// from the durable part of the shard; empty once caught up. Blocking.
    pub fn read(&mut self, records_max: usize, bytes_max: usize) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::new();
        self.read_into(&mut out, records_max, bytes_max)?;
        Ok(out)
    }

    /// [`ShardReader::read`] into `out`, which it clears first.
    pub fn read_into(
        &mut self,
        out: &mut Vec<Record>,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<(), LogError> {
        match &mut self.store {
            ReaderStore::Disk(r) => r.read_into(out, records_max, bytes_max)?,
            ReaderStore::JetStream(r) => r.read_into(out, records_max, bytes_max)?,
        }
        let shard = self.shard;
        self.cipher
            .open(out)
            .map_err(|source| LogError::Sealed { shard, source })
    }
}
