//! Consumer checkpoints: one small file per (consumer, shard) holding the next
//! offset that consumer has not yet finished with.
//!
//! A checkpoint is replaced atomically (write a temp file, fsync, rename, fsync
//! the directory), so after a crash it holds either the old or the new value,
//! never a mix. It must only ever be written with an offset whose records the
//! destination has confirmed; this module cannot check that, its callers must.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::files::write_atomic;

const CHECKPOINT_BYTES: usize = 12;

/// Path of the checkpoint for `consumer` on `shard` under a stream's log dir.
pub fn checkpoint_path(stream_dir: &Path, consumer: &str, shard: u32) -> PathBuf {
    stream_dir
        .join("checkpoints")
        .join(consumer)
        .join(format!("shard-{shard}.ckpt"))
}

/// Reads a checkpoint; a missing file means the consumer starts at 0.
pub fn read(path: &Path) -> io::Result<Option<u64>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (Some(off), Some(crc)) = (bytes.get(0..8), bytes.get(8..12)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "checkpoint {} is {} bytes, expected {CHECKPOINT_BYTES}",
                path.display(),
                bytes.len()
            ),
        ));
    };
    let crc_stored = u32::from_le_bytes(crc.try_into().map_err(io::Error::other)?);
    if crc32c::crc32c(off) != crc_stored || bytes.len() != CHECKPOINT_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("checkpoint {} fails its checksum", path.display()),
        ));
    }
    Ok(Some(u64::from_le_bytes(
        off.try_into().map_err(io::Error::other)?,
    )))
}

/// Atomically replaces the checkpoint with `offset`.
pub fn write(path: &Path, offset: u64) -> io::Result<()> {
    let mut buf = [0u8; CHECKPOINT_BYTES];
    buf[0..8].copy_from_slice(&offset.to_le_bytes());
    buf[8..12].copy_from_slice(&crc32c::crc32c(&offset.to_le_bytes()).to_le_bytes());
    write_atomic(path, &buf)
}

/// The lowest checkpoint on `shard` of every consumer of the log at
/// `stream_dir` but `except` (a consumer's name): what the other readers
/// still need. None if no other consumer has checkpointed the shard.
pub fn lowest_of_others(stream_dir: &Path, shard: u32, except: &str) -> Option<u64> {
    let dirs = fs::read_dir(stream_dir.join("checkpoints")).ok()?;
    dirs.flatten()
        .filter(|d| d.file_name().to_str() != Some(except))
        .filter_map(|d| {
            read(&d.path().join(format!("shard-{shard}.ckpt")))
                .ok()
                .flatten()
        })
        .min()
}

#[cfg(test)]
mod tests;
