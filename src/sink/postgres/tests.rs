//! Unit tests of the parent module.

use super::*;
use crate::config::ColumnMap;

fn cols(names: &[(&str, &str)]) -> ColumnMapping {
    ColumnMapping::Columns(
        names
            .iter()
            .map(|(c, f)| ColumnMap {
                column: c.to_string(),
                field: f.split('.').map(String::from).collect(),
            })
            .collect(),
    )
}

#[test]
fn maps_fields_including_nested_and_missing() {
    let m = cols(&[
        ("id", "id"),
        ("city", "addr.city"),
        ("tags", "tags"),
        ("gone", "nope"),
    ]);
    let (row, obj) = to_row(
        &m,
        br#"{"id": 7, "addr": {"city": "Oslo"}, "tags": ["a","b"]}"#,
    )
    .unwrap();
    assert_eq!(
        row,
        vec![
            Some("7".into()),
            Some("Oslo".into()),
            Some(r#"["a","b"]"#.into()),
            None
        ]
    );
    assert_eq!(obj["city"], "Oslo");
}

#[test]
fn rejects_what_cannot_load() {
    let m = cols(&[("id", "id")]);
    assert!(to_row(&m, b"not json").unwrap_err().contains("not JSON"));
    assert!(
        to_row(&m, b"[1,2]")
            .unwrap_err()
            .contains("not a JSON object")
    );
    assert!(
        to_row(&m, br#"{"id": "a\u0000b"}"#)
            .unwrap_err()
            .contains("NUL")
    );
}

#[test]
fn copy_text_escapes_specials() {
    let mut out = Vec::new();
    push_copy_row(&mut out, &[Some("a\tb\nc\\d\re".into()), None]);
    assert_eq!(out, b"a\\tb\\nc\\\\d\\re\t\\N\n");
}

#[test]
fn offset_runs() {
    assert_eq!(runs(&[1, 2, 3, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
    assert!(runs(&[]).is_empty());
}

#[test]
fn user_records_sharing_an_offset_make_one_run() {
    // Offsets 2 and 5 are KPL aggregates: their user records share them.
    assert_eq!(runs(&[1, 2, 2, 2, 3, 5, 5]), vec![(1, 3), (5, 5)]);
}

#[test]
fn identifiers_are_quoted() {
    assert_eq!(quote_ident("public.events"), "\"public\".\"events\"");
}
