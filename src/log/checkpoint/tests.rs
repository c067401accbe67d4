//! Unit tests of the parent module.

use super::*;

#[test]
fn missing_checkpoint_reads_as_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        read(&checkpoint_path(dir.path(), "delivery", 0)).unwrap(),
        None
    );
}

#[test]
fn write_then_read_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let p = checkpoint_path(dir.path(), "delivery", 3);
    write(&p, 17).unwrap();
    assert_eq!(read(&p).unwrap(), Some(17));
    write(&p, 1 << 40).unwrap();
    assert_eq!(read(&p).unwrap(), Some(1 << 40));
    assert!(!p.with_extension("ckpt.tmp").exists());
}

#[test]
fn corrupt_checkpoint_is_an_error_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = checkpoint_path(dir.path(), "delivery", 0);
    write(&p, 99).unwrap();
    let mut b = fs::read(&p).unwrap();
    b[0] ^= 1;
    fs::write(&p, &b).unwrap();
    assert!(read(&p).is_err());
}
