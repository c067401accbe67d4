//! Unit tests of the parent module.

use super::*;
use axum::http::HeaderValue;

// The example from AWS's SigV4 documentation (IAM ListUsers, GET).
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn keys() -> Vec<AccessKey> {
    vec![AccessKey {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: SECRET.into(),
        policy: None,
    }]
}

fn example() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    h.insert("authorization", HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"));
    h
}

fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
}

#[test]
fn aws_documentation_example_verifies() {
    verify(
        &Method::GET,
        "/",
        "Action=ListUsers&Version=2010-05-08",
        &example(),
        b"",
        &keys(),
        at("20150830T123600Z"),
    )
    .unwrap();
}

#[test]
fn wrong_secret_is_invalid_signature() {
    let mut k = keys();
    k[0].secret_access_key = "nope".into();
    let e = verify(
        &Method::GET,
        "/",
        "Action=ListUsers&Version=2010-05-08",
        &example(),
        b"",
        &k,
        at("20150830T123600Z"),
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidSignatureException");
}

#[test]
fn tampered_body_or_query_fails() {
    let e = verify(
        &Method::GET,
        "/",
        "Action=ListUsers&Version=2010-05-09",
        &example(),
        b"",
        &keys(),
        at("20150830T123600Z"),
    )
    .unwrap_err();
    assert_eq!(e.kind, "InvalidSignatureException");
}

#[test]
fn unknown_key_is_unrecognized_client() {
    let mut k = keys();
    k[0].access_key_id = "OTHER".into();
    let e = verify(
        &Method::GET,
        "/",
        "Action=ListUsers&Version=2010-05-08",
        &example(),
        b"",
        &k,
        at("20150830T123600Z"),
    )
    .unwrap_err();
    assert_eq!(e.kind, "UnrecognizedClientException");
}

#[test]
fn clock_skew_window_is_five_minutes() {
    let q = "Action=ListUsers&Version=2010-05-08";
    verify(
        &Method::GET,
        "/",
        q,
        &example(),
        b"",
        &keys(),
        at("20150830T124059Z"),
    )
    .unwrap();
    let e = verify(
        &Method::GET,
        "/",
        q,
        &example(),
        b"",
        &keys(),
        at("20150830T124101Z"),
    )
    .unwrap_err();
    assert!(e.message.starts_with("Signature expired"), "{}", e.message);
    let e = verify(
        &Method::GET,
        "/",
        q,
        &example(),
        b"",
        &keys(),
        at("20150830T123059Z"),
    )
    .unwrap_err();
    assert!(
        e.message.starts_with("Signature not yet current"),
        "{}",
        e.message
    );
}

#[test]
fn missing_authorization_is_missing_token() {
    let e = verify(
        &Method::POST,
        "/",
        "",
        &HeaderMap::new(),
        b"",
        &keys(),
        Utc::now(),
    )
    .unwrap_err();
    assert_eq!(e.kind, "MissingAuthenticationTokenException");
}

#[test]
fn malformed_authorization_is_incomplete() {
    let mut h = example();
    h.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request",
        ),
    );
    let e = verify(
        &Method::GET,
        "/",
        "",
        &h,
        b"",
        &keys(),
        at("20150830T123600Z"),
    )
    .unwrap_err();
    assert_eq!(e.kind, "IncompleteSignatureException");
}
