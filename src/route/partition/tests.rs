//! Unit tests of the parent module.

use super::*;
use crate::route::keys::finish_partition;
use bytes::Bytes;

fn frame(data: &str) -> Record {
    Record {
        offset: 0,
        // 2026-11-24T10:20:30Z
        arrival_ms: 1_795_515_630_000,
        key: Bytes::new(),
        data: Bytes::from(data.to_string()),
    }
}

fn partitioner(prefix: &str, keys: &[(&str, &str)], time: Option<(&str, &str)>) -> Partitioner {
    Partitioner::for_tests(prefix, keys, time, true)
}

fn route(p: &Partitioner, data: &str) -> Result<String, String> {
    p.route(&frame(data), &[], &mut RouteScratch::default())
        .map(|p| p.to_string())
}

#[test]
fn two_keys_and_the_record_time_make_the_prefix() {
    let p = partitioner(
        "logs/customer=!{partitionKeyFromQuery:customer}/level=!{partitionKeyFromQuery:level}/!{timestamp:'year='yyyy'/month='MM'/day='dd}/",
        &[
            ("customer", ".customer.id"),
            ("level", ".level | ascii_downcase"),
        ],
        Some((".ts", "rfc3339")),
    );
    let got = route(
        &p,
        r#"{"customer":{"id":"acme"},"level":"WARN","ts":"2025-03-04T23:59:59+02:00"}"#,
    );
    assert_eq!(
        got.as_deref(),
        Ok("logs/customer=acme/level=warn/year=2025/month=03/day=04/")
    );
}

#[test]
fn without_a_record_time_the_arrival_decides() {
    let p = partitioner(
        "k=!{partitionKeyFromQuery:k}/!{timestamp:yyyy-MM-dd HH}/",
        &[("k", ".k")],
        None,
    );
    assert_eq!(
        route(&p, r#"{"k":42}"#).as_deref(),
        Ok("k=42/2026-11-24 10/")
    );
    assert_eq!(
        route(&p, r#"{"k":true}"#).as_deref(),
        Ok("k=true/2026-11-24 10/")
    );
}

#[test]
fn jq_functions_work_in_keys() {
    let p = partitioner(
        "!{partitionKeyFromQuery:day}/",
        &[("day", r#".ts | fromdateiso8601 | strftime("%Y%m%d")"#)],
        None,
    );
    assert_eq!(
        route(&p, r#"{"ts":"2026-01-02T03:04:05Z"}"#).as_deref(),
        Ok("20260102/")
    );
}

#[test]
fn records_that_cannot_be_partitioned_get_a_reason() {
    let p = partitioner("!{partitionKeyFromQuery:k}/", &[("k", ".k")], None);
    let cases = [
        ("not json at all", "not JSON"),
        (r#"{"other":1}"#, "yields null"),
        (r#"{"k":""}"#, "empty string"),
        (r#"{"k":"a/b"}"#, "cannot be part of an object key"),
        (r#"{"k":".."}"#, "cannot be part of an object key"),
        (r#"{"k":"x\ny"}"#, "cannot be part of an object key"),
        (r#"{"k":[1]}"#, "yields an array"),
        (r#"{"k":{"a":1}}"#, "yields an object"),
    ];
    for (data, want) in cases {
        let e = route(&p, data).expect_err(data);
        assert!(e.contains(want), "{data}: {e}");
        if want != "not JSON" {
            assert!(e.contains("partition key `k` (`.k`)"), "{e}");
        }
    }
    let long = format!(r#"{{"k":"{}"}}"#, "x".repeat(KEY_VALUE_BYTES_MAX + 1));
    assert!(route(&p, &long).unwrap_err().contains("at most 512"));
}

#[test]
fn an_expression_must_yield_exactly_one_value() {
    let p = partitioner("!{partitionKeyFromQuery:k}/", &[("k", ".k[]")], None);
    assert!(
        route(&p, r#"{"k":[]}"#)
            .unwrap_err()
            .contains("yields no value")
    );
    assert!(
        route(&p, r#"{"k":["a","b"]}"#)
            .unwrap_err()
            .contains("more than one value")
    );
    let p = partitioner(
        "!{partitionKeyFromQuery:k}/",
        &[("k", r#"error("nope")"#)],
        None,
    );
    assert!(route(&p, "{}").unwrap_err().contains("nope"));
    // `halt` must not end the process.
    let p = partitioner("!{partitionKeyFromQuery:k}/", &[("k", "halt")], None);
    assert!(route(&p, "{}").unwrap_err().contains("halt"));
}

#[test]
fn invalid_expressions_are_refused_when_compiled() {
    for (src, want) in [
        (".a |", "expected"),
        ("{a: }", "expected"),
        ("nosuchfunction(1)", "undefined"),
        ("$undefined_var", "undefined"),
    ] {
        let e = Query::compile(src).expect_err(src);
        assert!(
            e.contains("not a valid jq expression") && e.contains(want),
            "{src}: {e}"
        );
    }
}

#[test]
fn record_times_in_every_format() {
    let cases = [
        ("rfc3339", r#""2026-02-03T04:05:06.789Z""#, "2026-02-03 04"),
        ("epoch_seconds", "1770091506", "2026-02-03 04"),
        ("epoch_seconds", r#""1770091506.5""#, "2026-02-03 04"),
        ("epoch_millis", "1770091506789", "2026-02-03 04"),
        (
            "%d/%b/%Y:%H:%M:%S %z",
            r#""03/Feb/2026:05:05:06 +0100""#,
            "2026-02-03 04",
        ),
        (
            "%Y-%m-%d %H:%M:%S",
            r#""2026-02-03 04:05:06""#,
            "2026-02-03 04",
        ),
        ("%Y-%m-%d", r#""2026-02-03""#, "2026-02-03 00"),
    ];
    for (format, value, want) in cases {
        let p = partitioner("!{timestamp:yyyy-MM-dd HH}/", &[], Some((".t", format)));
        let got = route(&p, &format!(r#"{{"t":{value}}}"#));
        assert_eq!(got, Ok(format!("{want}/")), "{format} {value}");
    }
}

#[test]
fn bad_record_times_get_a_reason() {
    let p = partitioner("!{timestamp:yyyy}/", &[], Some((".t", "rfc3339")));
    for (data, want) in [
        (r#"{"t":"yesterday"}"#, "is not a rfc3339 time"),
        (r#"{"t":12}"#, "a string is expected"),
        (r#"{}"#, "is not a rfc3339 time"),
    ] {
        let e = route(&p, data).expect_err(data);
        assert!(
            e.contains("record time (`.t`)") && e.contains(want),
            "{data}: {e}"
        );
    }
    let p = partitioner("!{timestamp:yyyy}/", &[], Some((".t", "epoch_millis")));
    assert!(
        route(&p, r#"{"t":1e300}"#)
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        route(&p, r#"{"t":"soon"}"#)
            .unwrap_err()
            .contains("a number is expected")
    );
}

#[test]
fn time_formats_are_checked_in_config() {
    assert!(TimeFormat::parse("rfc3339").is_ok());
    assert!(TimeFormat::parse("%Y-%m-%d").is_ok());
    assert!(
        TimeFormat::parse("iso")
            .unwrap_err()
            .contains("not a time format")
    );
    assert!(
        TimeFormat::parse("%Y-%Q")
            .unwrap_err()
            .contains("not a valid strftime")
    );
}

#[test]
fn random_strings_are_drawn_per_object_not_per_record() {
    let p = partitioner(
        "!{partitionKeyFromQuery:k}/!{firehose:random-string}/",
        &[("k", ".k")],
        None,
    );
    let a = route(&p, r#"{"k":"x"}"#).unwrap();
    let b = route(&p, r#"{"k":"x"}"#).unwrap();
    assert_eq!(a, b, "records of one partition share a prefix");
    let one = finish_partition(&a);
    let two = finish_partition(&a);
    assert!(
        one.starts_with("x/") && one.len() == "x/".len() + 11 + 1,
        "{one}"
    );
    assert_ne!(one, two);
}

#[test]
fn compiled_queries_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Partitioner>();
}

#[test]
fn the_transforms_keys_fill_their_expressions() {
    let p = partitioner(
        "svc=!{partitionKeyFromLambda:service}/k=!{partitionKeyFromQuery:k}/!{partitionKeyFromTransform:service}/",
        &[("k", ".k")],
        None,
    );
    let keys = vec![("service".to_string(), "auth".to_string())];
    let got = p.route(&frame(r#"{"k":1}"#), &keys, &mut RouteScratch::default());
    assert_eq!(got.as_deref(), Ok("svc=auth/k=1/auth/"));
    let e = p
        .route(&frame(r#"{"k":1}"#), &[], &mut RouteScratch::default())
        .unwrap_err();
    assert!(
        e.contains("the transform set no partition key `service`"),
        "{e}"
    );
    let bad = vec![("service".to_string(), "a/b".to_string())];
    let e = p
        .route(&frame(r#"{"k":1}"#), &bad, &mut RouteScratch::default())
        .unwrap_err();
    assert!(e.contains("cannot be part of an object key"), "{e}");
}

/// What jq makes of `source` on `data` as a key, or its error.
fn by_jq(source: &str, data: &str) -> Result<String, String> {
    let q = Query::compile(source)?;
    let record = jaq_json::read::parse_single(data.as_bytes()).map_err(|e| e.to_string())?;
    key_value(&q.eval_one(&record)?)
}

#[test]
fn plain_paths_are_recognised_and_other_expressions_are_left_to_jq() {
    let p = |s: &str| path::simple_path(s);
    let v = |xs: &[&str]| Some(xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    assert_eq!(p(".country"), v(&["country"]));
    assert_eq!(p(" .user.tier "), v(&["user", "tier"]));
    assert_eq!(p(r#".["page id"].x"#), v(&["page id", "x"]));
    assert_eq!(p(r#"."a\"b""#), v(&["a\"b"]));
    assert_eq!(p(r#"({c: .country, "d": .a.b}) | .["d"]"#), v(&["a", "b"]));
    assert_eq!(
        p(r#"{country, device: .d} | .["country"]"#),
        v(&["country"])
    );
    for other in [
        ".",
        ".a | ascii_downcase",
        ".a[0]",
        ".a?",
        ".a // \"x\"",
        "(.a)",
        "{c: .a | tostring} | .[\"c\"]",
        "{c: .a} | .[\"z\"]",
        ".a.b.",
        "1",
    ] {
        assert_eq!(p(other), None, "{other}");
    }
}

#[test]
fn the_one_scan_gives_what_jq_gives_or_leaves_the_record_to_jq() {
    let queries = [
        ".country",
        ".a.b",
        r#".["x y"]"#,
        r#"({c: .country, d: .a.b}) | .["d"]"#,
    ];
    let records = [
        r#"{"country":"NO","a":{"b":"deep"},"x y":"sp"}"#,
        r#"{"a":{"b":7},"country":true,"x y":-12}"#,
        r#"{"country":"esc\u00e9\"q","a":{"z":1,"b":"x"}}"#,
        r#"{"country":1.5,"a":{"b":null}}"#,
        r#"{"country":"dup","country":"last"}"#,
        r#"{"a":{"b":"one"},"a":{"c":"two"}}"#,
        r#"{"a":"not an object"}"#,
        r#"{"country":["NO"],"a":{"b":{"c":1}}}"#,
        r#"{"country":"a/b"}"#,
        r#"{"country":18446744073709551615}"#,
        r#"["country"]"#,
        r#"{"country":"NO"} trailing"#,
        "not json",
        "",
    ];
    let mut fast = 0;
    for data in records {
        let paths: Vec<Vec<String>> = queries
            .iter()
            .map(|q| path::simple_path(q).unwrap_or_default())
            .collect();
        let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
        for (i, q) in queries.iter().enumerate() {
            // Values no key may hold are refused by the partitioner, after.
            if let Some(values) = path::read(data.as_bytes(), &refs[i..=i])
                && check_key_value(&values[0]).is_ok()
            {
                fast += 1;
                assert_eq!(Ok(values[0].clone()), by_jq(q, data), "{q} on {data}");
            }
        }
        // All keys in one scan agree with each alone.
        if let Some(all) = path::read(data.as_bytes(), &refs) {
            for (i, q) in queries.iter().enumerate() {
                if check_key_value(&all[i]).is_err() {
                    continue;
                }
                assert_eq!(Ok(all[i].clone()), by_jq(q, data), "{q} on {data}");
            }
        }
    }
    assert!(fast >= 9, "the common records take the scan ({fast})");
    // And through the partitioner, fast or not, the prefix is jq's.
    let p = partitioner(
        "c=!{partitionKeyFromQuery:c}/d=!{partitionKeyFromQuery:d}/",
        &[("c", ".country"), ("d", ".a.b")],
        None,
    );
    assert_eq!(
        route(&p, r#"{"country":"NO","a":{"b":"deep"}}"#),
        Ok("c=NO/d=deep/".to_string())
    );
    let e = route(&p, r#"{"country":"NO","a":{"b":null}}"#).unwrap_err();
    assert!(e.contains("`d` (`.a.b`) yields null"), "{e}");
    let e = route(&p, r#"{"country":"a/b","a":{"b":"x"}}"#).unwrap_err();
    assert!(e.contains("cannot be part of an object key"), "{e}");
}

#[test]
fn a_scratch_kept_from_record_to_record_routes_as_a_new_one_and_shares_prefixes() {
    // Fast (plain paths), jq (a float, a repeated key), refused (missing,
    // null, not JSON) records, in turn, through one scratch.
    let p = partitioner(
        "c=!{partitionKeyFromQuery:c}/d=!{partitionKeyFromQuery:d}/!{timestamp:HH}/",
        &[("c", ".country"), ("d", ".a.b"), ("c2", ".country")],
        None,
    );
    let records = [
        r#"{"country":"NO","a":{"b":"deep"}}"#,
        r#"{"country":"SE","a":{"b":7}}"#,
        r#"{"country":"NO","a":{"b":"deep"}}"#,
        r#"{"country":1.5,"a":{"b":"x"}}"#,
        r#"{"a":{"b":"only"}}"#,
        r#"{"country":"NO","a":{"b":null}}"#,
        r#"{"country":"dup","country":"DK","a":{"b":"deep"}}"#,
        "not json",
        r#"{"country":"SE","a":{"b":7}}"#,
        r#"{"country":true,"a":{"b":-3}}"#,
    ];
    let mut kept = RouteScratch::default();
    let mut shared: Vec<(String, Arc<str>)> = Vec::new();
    for data in records {
        let got = p.route(&frame(data), &[], &mut kept);
        let fresh = route(&p, data);
        assert_eq!(got.clone().map(|p| p.to_string()), fresh, "{data}");
        if let Ok(prefix) = got {
            if let Some((_, first)) = shared.iter().find(|(s, _)| s == &*prefix) {
                assert!(Arc::ptr_eq(first, &prefix), "{data}: not shared");
            } else {
                shared.push((prefix.to_string(), prefix));
            }
        }
    }
    let prefixes: Vec<&str> = shared.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        prefixes,
        [
            "c=NO/d=deep/10/",
            "c=SE/d=7/10/",
            "c=1.5/d=x/10/",
            "c=DK/d=deep/10/",
            "c=true/d=-3/10/"
        ]
    );
}

#[test]
fn plain_paths_read_into_kept_strings_as_into_new_ones() {
    let paths: Vec<Vec<String>> = [".a", ".b.c", ".a"]
        .iter()
        .map(|q| path::simple_path(q).unwrap_or_default())
        .collect();
    let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    for data in [
        r#"{"a":"long value here","b":{"c":1}}"#,
        r#"{"a":"x","b":{"c":"y"}}"#,
        r#"{"a":"x"}"#,
        r#"{"b":{"c":false},"a":12}"#,
        r#"{"a":"x","a":"y","b":{"c":1}}"#,
    ] {
        let kept = path::read_into(data.as_bytes(), &refs, &mut out).then(|| out.clone());
        assert_eq!(kept, path::read(data.as_bytes(), &refs), "{data}");
    }
    assert_eq!(
        path::read(br#"{"b":{"c":false},"a":12}"#, &refs),
        Some(vec!["12".to_string(), "false".into(), "12".into()])
    );
    let many: Vec<&[String]> = vec![refs[0]; path::PATHS_MAX + 1];
    assert!(
        !path::read_into(br#"{"a":"x"}"#, &many, &mut out),
        "past 64 paths, jq decides"
    );
}
