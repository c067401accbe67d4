//! An application's checkpoint: where it is in each input shard, its
//! watermarks and open windows, and the output records of the cycle being
//! published with where each output shard ended before them. Written
//! atomically (temp file, fsync, rename, directory fsync) before those
//! records are appended, so after a crash recovery appends exactly the
//! ones not yet durable.
//!
//! Layout: `HAC1`, a little-endian u32 and that many bytes of JSON (the
//! header), then each blob (pending records' data, then each windowed
//! pump's open windows as an Arrow IPC stream) as a u64 length and its
//! bytes, then a CRC-32C of everything before it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::engine::EngineState;
use super::window::Watermarks;
use crate::log::files::write_atomic;

const MAGIC: &[u8; 4] = b"HAC1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read or write {path}: {message}")]
    Io { path: String, message: String },
    #[error("checkpoint {path} is damaged: {message}")]
    Damaged { path: String, message: String },
}

/// An output record of the cycle being published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The output's destination key (`kinesis:NAME` or `firehose:NAME`).
    pub dest: String,
    pub shard: u32,
    pub key: String,
    pub data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct PendingMeta {
    dest: String,
    shard: u32,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// The input's identity (log id): a checkpoint of another input is
    /// not this one's.
    input: String,
    /// The program's: open windows of other SQL are not restored.
    #[serde(default)]
    program: String,
    offsets: BTreeMap<u32, u64>,
    done: BTreeSet<u32>,
    ends: BTreeMap<String, BTreeMap<u32, u64>>,
    pending: Vec<PendingMeta>,
    rowclock: Watermarks,
    seq: u64,
    /// Per pump: its watermarks if windowed.
    pumps: Vec<Option<Watermarks>>,
}

/// What a checkpoint holds.
pub struct Checkpoint {
    pub input: String,
    /// A digest of the SQL and schemas the state belongs to.
    pub program: String,
    /// The next offset to read, per input shard.
    pub offsets: BTreeMap<u32, u64>,
    /// Closed input shards read to their end.
    pub done: BTreeSet<u32>,
    /// Where each output shard ended before `pending` was appended.
    pub ends: BTreeMap<String, BTreeMap<u32, u64>>,
    pub pending: Vec<Pending>,
    pub state: EngineState,
}

fn ipc(batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &first.schema())
        .map_err(|e| e.to_string())?;
    for b in batches {
        // Each window's state has its own schema (state columns vary by
        // type), so each is a stream of its own inside one blob.
        if b.schema() != first.schema() {
            return Err("windows of one pump differ in their state schema".into());
        }
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(out)
}

fn from_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let r = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| e.to_string())?;
    r.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

impl Checkpoint {
    /// Encodes the checkpoint.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let header = Header {
            input: self.input.clone(),
            program: self.program.clone(),
            offsets: self.offsets.clone(),
            done: self.done.clone(),
            ends: self.ends.clone(),
            pending: self
                .pending
                .iter()
                .map(|p| PendingMeta {
                    dest: p.dest.clone(),
                    shard: p.shard,
                    key: p.key.clone(),
                })
                .collect(),
            rowclock: self.state.rowclock.clone(),
            seq: self.state.seq,
            pumps: self
                .state
                .pumps
                .iter()
                .map(|p| p.as_ref().map(|(w, _)| w.clone()))
                .collect(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(json.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        let mut blob = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        };
        for p in &self.pending {
            blob(&p.data);
        }
        for p in self.state.pumps.iter().flatten() {
            blob(&ipc(&p.1)?);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decodes a checkpoint `encode` wrote.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or("shorter than its checksum")?;
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("its checksum does not match".into());
        }
        let rest = body
            .strip_prefix(MAGIC)
            .ok_or("it does not start with HAC1")?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or("no header length")?;
        let len = u32::from_le_bytes(*len) as usize;
        let (json, mut rest) = rest.split_at_checked(len).ok_or("a short header")?;
        let header: Header = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let mut blob = || -> Result<&[u8], String> {
            let (len, r) = rest.split_first_chunk::<8>().ok_or("a short blob length")?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| e.to_string())?;
            let (b, r) = r.split_at_checked(len).ok_or("a short blob")?;
            rest = r;
            Ok(b)
        };
        let mut pending = Vec::with_capacity(header.pending.len());
        for p in header.pending {
            pending.push(Pending {
                dest: p.dest,
                shard: p.shard,
                key: p.key,
                data: blob()?.to_vec(),
            });
        }
        let mut pumps = Vec::with_capacity(header.pumps.len());
        for p in header.pumps {
            pumps.push(match p {
                Some(w) => Some((w, from_ipc(blob()?)?)),
                None => None,
            });
        }
        Ok(Checkpoint {
            input: header.input,
            program: header.program,
            offsets: header.offsets,
            done: header.done,
            ends: header.ends,
            pending,
            state: EngineState {
                rowclock: header.rowclock,
                seq: header.seq,
                pumps,
            },
        })
    }

    /// Writes the checkpoint to `path`, atomically. Blocking.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self.encode().map_err(|message| CheckpointError::Io {
            path: path.display().to_string(),
            message,
        })?;
        write_atomic(path, &bytes).map_err(|e| CheckpointError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads the checkpoint at `path`, if there is one. Blocking.
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CheckpointError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        Checkpoint::decode(&bytes)
            .map(Some)
            .map_err(|message| CheckpointError::Damaged {
                path: path.display().to_string(),
                message,
            })
    }
}
