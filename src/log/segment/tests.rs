//! Unit tests of the parent module.

use super::*;
use std::io::Write;

fn write_frames(path: &Path, base: u64, n: u64) -> Vec<usize> {
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for i in 0..n {
        frame::encode(&mut buf, base + i, 0, b"", format!("record {i}").as_bytes()).unwrap();
        ends.push(buf.len());
    }
    fs::write(path, &buf).unwrap();
    ends
}

#[test]
fn clean_segment_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 10);
    let ends = write_frames(&path, 10, 5);
    let r = recover_tail(&path, 10).unwrap();
    assert_eq!(r.next_offset, 15);
    assert_eq!(r.valid_bytes as usize, *ends.last().unwrap());
    assert_eq!(r.truncated_bytes, 0);
    assert_eq!(r.reason, None);
}

#[test]
fn torn_tail_is_truncated_at_every_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 0);
    let ends = write_frames(&path, 0, 4);
    let full = fs::read(&path).unwrap();
    for cut in 0..=full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let r = recover_tail(&path, 0).unwrap();
        let whole = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(r.next_offset, whole as u64, "cut {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), r.valid_bytes);
    }
}

#[test]
fn garbage_after_valid_frames_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 0);
    let ends = write_frames(&path, 0, 3);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    let r = recover_tail(&path, 0).unwrap();
    assert_eq!(r.next_offset, 3);
    assert_eq!(r.truncated_bytes, 100);
    assert_eq!(r.valid_bytes as usize, ends[2]);
}

#[test]
fn listing_ignores_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(segment_path(dir.path(), 500), b"").unwrap();
    fs::write(segment_path(dir.path(), 0), b"").unwrap();
    fs::write(dir.path().join("notes.txt"), b"").unwrap();
    fs::write(dir.path().join("12.seg"), b"").unwrap();
    assert_eq!(list_segments(dir.path()).unwrap(), vec![0, 500]);
}

#[test]
fn a_reused_file_is_cut_after_its_new_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 500);
    write_frames(&path, 0, 50);
    let old = fs::read(&path).unwrap();
    // New frames written over the start of the old ones.
    let mut new = Vec::new();
    for i in 0..3 {
        frame::encode(&mut new, 500 + i, 0, b"", format!("NEWREC {i}").as_bytes()).unwrap();
    }
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&new).unwrap();
    drop(f);
    let r = recover_tail(&path, 500).unwrap();
    assert_eq!(r.next_offset, 503);
    assert_eq!(r.valid_bytes as usize, new.len());
    assert_eq!(r.truncated_bytes as usize, old.len() - new.len());
    assert!(r.reused);
    // Torn over old frames: the torn frame and the old ones are cut.
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&old).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&new[..new.len() - 3], 0).unwrap();
    drop(f);
    let r = recover_tail(&path, 500).unwrap();
    assert_eq!(r.next_offset, 502);
    assert!(!r.reused);
    assert_eq!(fs::metadata(&path).unwrap().len(), r.valid_bytes);
}
