//! Unit tests of the parent module.

use super::*;

#[test]
fn splits_lines_and_skips_blank_ones() {
    let body = Bytes::from_static(b"{\"a\":1}\n\n  \r\n[1,2]\r\n\"s\"");
    let r = split_lines(&body).unwrap();
    assert_eq!(
        r,
        vec![
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"[1,2]"),
            Bytes::from_static(b"\"s\"")
        ]
    );
}

#[test]
fn names_the_bad_line() {
    let body = Bytes::from_static(b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n");
    let (line, msg) = split_lines(&body).unwrap_err();
    assert_eq!(line, 2);
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn empty_body_is_no_records() {
    assert!(split_lines(&Bytes::new()).unwrap().is_empty());
}
