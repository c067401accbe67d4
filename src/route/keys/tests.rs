//! Unit tests of the parent module.

use super::*;
use chrono::TimeZone;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
}

#[test]
fn literal_prefix_gets_hour_path_without_slash() {
    let t = KeyTemplate::parse("logs", PrefixKind::Prefix).unwrap();
    assert_eq!(t.render(at(), None), "logs2026/03/04/05/");
    let t = KeyTemplate::parse("logs/", PrefixKind::Prefix).unwrap();
    assert_eq!(t.render(at(), None), "logs/2026/03/04/05/");
    let t = KeyTemplate::parse("", PrefixKind::Prefix).unwrap();
    assert_eq!(t.render(at(), None), "2026/03/04/05/");
}

#[test]
fn timestamp_expression_replaces_the_default_path() {
    let t =
        KeyTemplate::parse("y=!{timestamp:yyyy}/m=!{timestamp:MM}/", PrefixKind::Prefix).unwrap();
    assert_eq!(t.render(at(), None), "y=2026/m=03/");
    let t = KeyTemplate::parse("!{timestamp:yyyy-MM-dd'T'HH}/", PrefixKind::Prefix).unwrap();
    assert_eq!(t.render(at(), None), "2026-03-04T05/");
}

#[test]
fn error_output_type_only_in_error_prefix() {
    assert!(KeyTemplate::parse("!{firehose:error-output-type}/", PrefixKind::Prefix).is_err());
    let t = KeyTemplate::parse(
        "err/!{firehose:error-output-type}/",
        PrefixKind::ErrorOutputPrefix,
    )
    .unwrap();
    assert_eq!(
        t.render(at(), Some("s3-failed")),
        "err/s3-failed/2026/03/04/05/"
    );
}

#[test]
fn error_prefix_with_expressions_needs_the_type() {
    let e =
        KeyTemplate::parse("err/!{timestamp:yyyy}/", PrefixKind::ErrorOutputPrefix).unwrap_err();
    assert!(e.contains("error-output-type"), "{e}");
}

#[test]
fn bad_templates_say_why() {
    assert!(
        KeyTemplate::parse("a/!{timestamp:yyyy", PrefixKind::Prefix)
            .unwrap_err()
            .contains("never closed")
    );
    assert!(
        KeyTemplate::parse("!{nope:x}", PrefixKind::Prefix)
            .unwrap_err()
            .contains("unknown expression")
    );
    assert!(
        KeyTemplate::parse("!{timestamp:EEE}", PrefixKind::Prefix)
            .unwrap_err()
            .contains("EEE")
    );
    assert!(KeyTemplate::parse(&"x".repeat(1025), PrefixKind::Prefix).is_err());
}

#[test]
fn random_string_is_eleven_chars_and_varies() {
    let t = KeyTemplate::parse("!{firehose:random-string}/", PrefixKind::Prefix).unwrap();
    let a = t.render(at(), None);
    let b = t.render(at(), None);
    assert_eq!(a.len(), 12 + "2026/03/04/05/".len());
    assert_ne!(a, b);
}

#[test]
fn object_names_are_deterministic_and_sort_by_offset() {
    assert_eq!(
        object_name("s", 2, 10, 19, ".gz"),
        "s-2-00000000000000000010-00000000000000000019.gz"
    );
    assert!(object_name("s", 0, 9, 9, "") < object_name("s", 0, 10, 10, ""));
}
