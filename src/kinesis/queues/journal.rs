//! A queue's state on disk: `snapshot.json` (the whole state, written
//! atomically) and `journal.log`, the changes since, one line each:
//! `CRC32C-HEX {"seq":N,"e":ENTRY}`. A request's changes are written and
//! fsynced before it is answered, so what a client was told survives a
//! crash. Opening replays the journal over the snapshot, skipping entries
//! the snapshot holds, and stops at the first torn or corrupt line (only
//! the tail can be one: a line is complete before its request answers).
//! After [`COMPACT_AFTER`] entries the state is snapshotted and the journal
//! started anew.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{Entry, QueueState};
use crate::log::files::write_atomic;

/// Entries journaled before the state is snapshotted and the journal cut.
pub const COMPACT_AFTER: usize = 20_000;

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    e: Entry,
}

/// The open journal of one queue.
pub struct Journal {
    dir: PathBuf,
    file: File,
    entries: usize,
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.json")
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal.log")
}

impl Journal {
    /// Opens (or starts) the journal in `dir`: the state it holds.
    pub fn open(dir: &Path) -> io::Result<(Journal, QueueState)> {
        std::fs::create_dir_all(dir)?;
        let mut state = match std::fs::read(snapshot_path(dir)) {
            Ok(b) => serde_json::from_slice::<QueueState>(&b)
                .map_err(|e| io::Error::other(format!("{}: {e}", snapshot_path(dir).display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => QueueState::default(),
            Err(e) => return Err(e),
        };
        let (entries, good_bytes) = replay(&journal_path(dir), &mut state)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal_path(dir))?;
        // A torn tail is cut, so new lines follow the last whole one.
        if file.metadata()?.len() != good_bytes {
            file.set_len(good_bytes)?;
            file.sync_all()?;
        }
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                file,
                entries,
            },
            state,
        ))
    }

    /// Journals `entries` (fsynced), then applies them to `state`.
    pub fn append(&mut self, state: &mut QueueState, entries: &[Entry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut seq = state.seq;
        for e in entries {
            seq += 1;
            let json = serde_json::to_vec(&Line { seq, e: e.clone() }).map_err(io::Error::other)?;
            write!(buf, "{:08x} ", crc32c::crc32c(&json))?;
            buf.extend_from_slice(&json);
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        for e in entries {
            state.apply(e);
        }
        state.seq = seq;
        self.entries += entries.len();
        if self.entries >= COMPACT_AFTER {
            self.compact(state)?;
        }
        Ok(())
    }

    /// Snapshots `state` and starts an empty journal. A crash between the
    /// two leaves entries the snapshot holds, which opening skips.
    pub fn compact(&mut self, state: &QueueState) -> io::Result<()> {
        let json = serde_json::to_vec(state).map_err(io::Error::other)?;
        write_atomic(&snapshot_path(&self.dir), &json)?;
        write_atomic(&journal_path(&self.dir), b"")?;
        self.file = OpenOptions::new()
            .append(true)
            .open(journal_path(&self.dir))?;
        self.entries = 0;
        Ok(())
    }
}

/// Applies the journal's entries newer than the state's `seq`; returns
/// how many lines it read and the bytes of whole, valid lines.
fn replay(path: &Path, state: &mut QueueState) -> io::Result<(usize, u64)> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(f);
    let (mut lines, mut good) = (0, 0u64);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 || raw.last() != Some(&b'\n') {
            break;
        }
        let Some(line) = parse(&raw[..n - 1]) else {
            tracing::warn!(journal = %path.display(), at = good, "a queue journal ends in a corrupt line; cut there");
            break;
        };
        if line.seq > state.seq {
            state.apply(&line.e);
            state.seq = line.seq;
        }
        lines += 1;
        good += n as u64;
    }
    Ok((lines, good))
}

fn parse(raw: &[u8]) -> Option<Line> {
    let (crc, json) = (raw.get(..8)?, raw.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32c::crc32c(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::super::state::Cursor;
    use super::*;

    fn take(offset: u64) -> Entry {
        Entry::Take {
            shard: 0,
            offset,
            hint: Some((0, offset * 10)),
            arrival_ms: 5,
            next: Cursor {
                offset: offset + 1,
                hint: None,
            },
        }
    }

    #[test]
    fn the_state_survives_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut s) = Journal::open(dir.path()).unwrap();
        j.append(&mut s, &[take(0), take(1)]).unwrap();
        j.append(
            &mut s,
            &[Entry::Ack {
                shard: 0,
                offset: 0,
            }],
        )
        .unwrap();
        drop(j);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal_path(dir.path()))
            .unwrap();
        f.write_all(b"0badc0de {\"seq\":4,\"e\":{\"op\":\"Ack\",\"sh")
            .unwrap();
        drop(f);
        let (mut j, mut again) = Journal::open(dir.path()).unwrap();
        assert_eq!(again, s);
        assert!(again.acknowledged((0, 0)) && !again.acknowledged((0, 1)));
        // New lines follow the last whole one.
        j.append(
            &mut again,
            &[Entry::Ack {
                shard: 0,
                offset: 1,
            }],
        )
        .unwrap();
        drop(j);
        let (_, third) = Journal::open(dir.path()).unwrap();
        assert!(third.acknowledged((0, 1)));
        assert_eq!(third.seq, 4);
    }

    #[test]
    fn a_corrupt_line_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut s) = Journal::open(dir.path()).unwrap();
        j.append(&mut s, &[take(0)]).unwrap();
        j.append(&mut s, &[take(1)]).unwrap();
        drop(j);
        let text = std::fs::read_to_string(journal_path(dir.path())).unwrap();
        let (first, second) = text.split_once('\n').unwrap();
        let flipped = format!(
            "{first}\n{}",
            second.replacen("\"offset\":1", "\"offset\":9", 1)
        );
        assert_ne!(flipped, text);
        std::fs::write(journal_path(dir.path()), flipped).unwrap();
        let (_, s) = Journal::open(dir.path()).unwrap();
        assert_eq!(s.len(), 1, "the line whose checksum fails is not applied");
    }

    #[test]
    fn compaction_keeps_the_state_and_skips_what_the_snapshot_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut s) = Journal::open(dir.path()).unwrap();
        j.append(&mut s, &[take(0), take(1)]).unwrap();
        // The snapshot is written, the crash comes before the journal is cut.
        let json = serde_json::to_vec(&s).unwrap();
        write_atomic(&snapshot_path(dir.path()), &json).unwrap();
        drop(j);
        let (mut j, mut s2) = Journal::open(dir.path()).unwrap();
        assert_eq!(s2, s);
        j.compact(&s2).unwrap();
        j.append(
            &mut s2,
            &[Entry::Ack {
                shard: 0,
                offset: 1,
            }],
        )
        .unwrap();
        drop(j);
        let (_, s3) = Journal::open(dir.path()).unwrap();
        assert_eq!(s3.len(), 1);
        assert_eq!(s3.seq, 3);
    }
}
