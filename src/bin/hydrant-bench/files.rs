//! What a destination directory holds: files and bytes, JSON lines in its
//! (compressed) files, and the names of its files.

use std::path::Path;

/// Files and bytes under a directory.
pub fn dir_stats(dir: &Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_stats(&p)
            } else {
                (1, e.metadata().map(|m| m.len()).unwrap_or(0))
            }
        })
        .fold((0, 0), |(f, b), (f2, b2)| (f + f2, b + b2))
}

/// Bytes under a directory.
pub fn dir_bytes(dir: &Path) -> u64 {
    dir_stats(dir).1
}

/// Lines in the files under a directory, each decompressed by its extension
/// (`.gz`, `.zst`, `.snappy`); a file that does not decode counts for none.
pub fn count_lines(dir: &Path) -> u64 {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            n += count_lines(&p);
        } else if let Ok(bytes) = std::fs::read(&p) {
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            let mut text = Vec::new();
            let decoded = match ext {
                "gz" => std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&bytes[..]),
                    &mut text,
                )
                .map(|_| ()),
                "zst" => zstd::stream::copy_decode(&bytes[..], &mut text),
                "snappy" => std::io::Read::read_to_end(
                    &mut snap::read::FrameDecoder::new(&bytes[..]),
                    &mut text,
                )
                .map(|_| ()),
                _ => {
                    text = bytes;
                    Ok(())
                }
            };
            if decoded.is_err() {
                continue;
            }
            n += text.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
    n
}

/// The paths of the files under a directory.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
