//! Segment files of one shard: naming, listing, and torn-tail recovery.
//!
//! A segment is named by the offset of its first frame
//! (`00000000000000000000.seg`). Only the last segment of a shard can hold a
//! torn write: every earlier one was fsynced in full before the next was
//! created. This module never decides what is acknowledged; it only finds the
//! longest valid prefix of the last segment.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::frame::{self, Decoded};

pub const SEGMENT_SUFFIX: &str = ".seg";

/// A deleted segment kept for reuse as the next one (see [`spare_path`]).
pub const SPARE_NAME: &str = "spare.seg.reuse";

/// Path of the shard's spare: a finished segment that delivery no longer
/// needs, renamed instead of deleted. The writer renames it to the next
/// segment's name and writes over it from the start, so appends change no
/// file size and allocate no blocks: `fdatasync` then flushes data alone,
/// without waiting for a journal commit (which other files' metadata, a
/// directory sync or a large delete can hold up for tens of milliseconds).
/// Its old frames carry offsets below the new base, so neither recovery nor a
/// reader can take them for new ones.
pub fn spare_path(dir: &Path) -> PathBuf {
    dir.join(SPARE_NAME)
}

/// Path of the segment whose first frame has `base` as its offset.
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// The base offsets of every segment in `dir`, sorted. Files that do not look
/// like segments are ignored (a leftover temp file is not data).
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// What recovery found in the last segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Length of the valid prefix; the file has been truncated to it.
    pub valid_bytes: u64,
    /// Offset the next appended frame gets.
    pub next_offset: u64,
    /// Bytes cut off the end (a torn or corrupt tail), 0 if the file was clean.
    pub truncated_bytes: u64,
    /// Why the scan stopped early, if it did.
    pub reason: Option<&'static str>,
    /// The bytes cut off were whole frames from the file's earlier use as
    /// another segment (it was the spare): nothing was torn.
    pub reused: bool,
}

/// Scans a segment from its start, truncates it after the last valid frame
/// whose offsets follow on from `base`, and syncs the truncation.
///
/// A frame past the valid prefix can only be an unacknowledged write: the
/// writer answers producers after `fdatasync`, and a frame that was synced is
/// whole and in sequence.
pub fn recover_tail(path: &Path, base: u64) -> io::Result<Recovered> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
    file.read_to_end(&mut buf)?;
    let mut pos = 0usize;
    let mut next = base;
    let mut reason = None;
    let mut reused = false;
    while pos < buf.len() {
        match frame::decode(&buf[pos..]) {
            Decoded::Frame { frame, consumed } => {
                if frame.offset < base {
                    reused = true;
                    reason = Some("frames of the file's earlier use");
                    break;
                }
                if frame.offset != next {
                    reason = Some("frame offset out of sequence");
                    break;
                }
                next += 1;
                pos += consumed;
            }
            Decoded::Incomplete => {
                reason = Some("incomplete frame at end of segment");
                break;
            }
            Decoded::Corrupt(why) => {
                reason = Some(why);
                break;
            }
        }
    }
    let valid = pos as u64;
    if valid < len {
        file.set_len(valid)?;
        file.sync_all()?;
    }
    Ok(Recovered {
        valid_bytes: valid,
        next_offset: next,
        truncated_bytes: len - valid,
        reason,
        reused,
    })
}

#[cfg(test)]
mod tests;
