//! Atomic replacement of a file.

use super::*;

#[test]
fn write_atomic_replaces_the_file_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("a.b.json");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"two");
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("a.b.json")]);
    // Two files differing only after a dot never share a temp file.
    assert_ne!(
        temp_path(&path),
        temp_path(&path.with_file_name("a.c.json"))
    );
}
