//! File helpers the log's durability rests on: replacing a small file
//! atomically and making a directory entry durable.
//!
//! [`write_atomic`] is the one way Hydrant replaces a file it must find whole
//! after a crash (checkpoints, the log's identity, stream definitions): write
//! a temporary file beside it, fsync it, rename it over the old one, fsync
//! the directory. After a crash the file holds the old bytes or the new ones,
//! never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// fsyncs a directory so that a created, renamed or deleted entry is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The temporary file [`write_atomic`] writes before renaming it to `path`:
/// the same name with `.tmp` appended, in the same directory.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces the file at `path` with `bytes` atomically, creating its
/// directory if needed: temp file, fsync, rename, fsync directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", path.display())))?;
    if path.file_name().is_none() {
        return Err(io::Error::other(format!(
            "{} names no file",
            path.display()
        )));
    }
    fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests;
