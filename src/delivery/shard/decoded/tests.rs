//! Unit tests of the parent module: a chunk decoded once goes where routing
//! each record from its JSON sends it, with the same reasons, and its rows
//! make the same Parquet files as the records they came from.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{Field, Schema};
use bytes::Bytes;

use super::*;
use crate::encode::parquet::{ParquetOptions, write, write_rows};

const PREFIX: &str = "country=!{partitionKeyFromQuery:country}/device=!{partitionKeyFromQuery:device}/!{timestamp:yyyy/MM/dd/HH}/";

fn partitioner(keys: &[(&str, &str)]) -> Partitioner {
    Partitioner::for_tests(PREFIX, keys, None, false)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]))
}

fn once(part: &Partitioner) -> DecodeOnce {
    let schema = schema();
    let key_columns = part
        .top_level_fields()
        .unwrap()
        .into_iter()
        .map(|f| schema.index_of(f).unwrap())
        .collect();
    DecodeOnce {
        schema,
        key_columns,
    }
}

fn records(data: &[String]) -> Vec<Record> {
    data.iter()
        .enumerate()
        .map(|(i, d)| Record {
            offset: 100 + i as u64,
            // An hour apart every 1,000 records.
            arrival_ms: 1_795_515_630_000 + (i as i64 / 1000) * 3_600_000,
            key: Bytes::new(),
            data: Bytes::from(d.clone()),
        })
        .collect()
}

fn good(i: usize) -> String {
    let countries = ["US", "DE", "JP", "Zürich \\u00e9"];
    let devices = ["ios", "android", "web"];
    format!(
        r#"{{"id": {i}, "country": "{}", "device": "{}", "n": {}}}"#,
        countries[i % 4],
        devices[i % 3],
        i * 7
    )
}

/// Records that go another way than the common one, each for its reason.
fn odd() -> Vec<String> {
    [
        "not json at all",
        r#"{"id": 1, "device": "ios"}"#,
        r#"{"id": 2, "country": null, "device": "ios"}"#,
        r#"{"id": 3, "country": "a/b", "device": "ios"}"#,
        r#"{"id": 4, "country": "", "device": "ios"}"#,
        r#"{"id": "seven", "country": "US", "device": "ios"}"#,
        r#"{"id": 5, "country": 7, "device": "ios"}"#,
        r#"{"id": 6, "country": "US", "device": "web"} {"id": 7}"#,
        r#"[1, 2]"#,
        r#"{"country": "US", "device": "ios"}"#,
        r#"{"id": 8, "country": "US", "device": "ios", "extra": {"a": [1]}}"#,
        // A key named twice: jq, and so the scan's fallback, takes the last.
        r#"{"id": 9, "country": "US", "device": "ios", "country": "FR"}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// What routing each record from its JSON and then encoding each
/// partition's records does: partition -> offsets, and the failures.
#[allow(clippy::type_complexity)]
fn the_records_way(
    part: &Partitioner,
    recs: &[Record],
) -> (
    BTreeMap<String, Vec<Record>>,
    Vec<(u64, String)>,
    Vec<(u64, String)>,
) {
    let mut scratch = RouteScratch::default();
    let mut parts: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut unpartitioned = Vec::new();
    for r in recs {
        match part.route(r, &[], &mut scratch) {
            Ok(p) => parts.entry(p.to_string()).or_default().push(r.clone()),
            Err(why) => unpartitioned.push((r.offset, why)),
        }
    }
    let mut unfit = Vec::new();
    let opts = options();
    for rs in parts.values_mut() {
        let (_, rejected) = write(rs, &opts, Vec::new()).unwrap();
        for (i, why) in rejected.iter().rev() {
            unfit.push((rs[*i].offset, why.clone()));
            rs.remove(*i);
        }
    }
    parts.retain(|_, rs| !rs.is_empty());
    unfit.sort();
    (parts, unpartitioned, unfit)
}

fn options() -> ParquetOptions {
    ParquetOptions {
        schema: schema(),
        row_group_rows: 128 * 1024,
        compression: "zstd".into(),
        level: None,
        dictionary: true,
    }
}

#[test]
fn a_chunk_decoded_once_goes_where_each_record_routed_from_its_json_goes() {
    let part = partitioner(&[("country", ".country"), ("device", ".device")]);
    let d = once(&part);
    let mut data: Vec<String> = (0..9000).map(good).collect();
    // The odd ones among the good, in different decode chunks.
    for (k, o) in odd().into_iter().enumerate() {
        data.insert(k * 800 + 3, o);
    }
    let recs = records(&data);
    let decoded = d
        .decode(&recs, &part, &mut RouteScratch::default())
        .unwrap();
    let (parts, unpartitioned, unfit) = the_records_way(&part, &recs);

    let by_offset = |v: &[(Record, String)]| -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> = v.iter().map(|(r, w)| (r.offset, w.clone())).collect();
        out.sort();
        out
    };
    assert_eq!(by_offset(&decoded.unpartitioned), unpartitioned);
    assert_eq!(by_offset(&decoded.unfit), unfit);
    assert_eq!(unpartitioned.len(), 7, "{unpartitioned:?}");
    assert_eq!(unfit.len(), 3, "{unfit:?}");
    assert!(
        unfit
            .iter()
            .all(|(_, w)| w.starts_with("record does not fit the schema"))
    );

    // Each partition's rows: the same records, in order, making the same file.
    let mut got: BTreeMap<String, (Vec<RecordBatch>, Vec<RowOf>)> = BTreeMap::new();
    for (prefix, piece) in decoded.parts {
        let e = got.entry(prefix.to_string()).or_default();
        e.0.push(piece.batch);
        e.1.extend(piece.records);
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        parts.keys().collect::<Vec<_>>()
    );
    assert!(parts.len() > 12 * 2, "{} partitions", parts.len());
    let opts = options();
    for (prefix, rs) in &parts {
        let (batches, rows) = &got[prefix];
        let want: Vec<RowOf> = rs
            .iter()
            .map(|r| RowOf {
                offset: r.offset,
                arrival_ms: r.arrival_ms,
                bytes: r.data.len() as u32,
            })
            .collect();
        assert_eq!(rows, &want, "{prefix}");
        let (from_records, rejected) = write(rs, &opts, Vec::new()).unwrap();
        assert!(rejected.is_empty());
        assert_eq!(
            write_rows(batches, &opts, Vec::new()).unwrap(),
            from_records,
            "{prefix}"
        );
    }
}

#[test]
fn keys_read_from_columns_are_the_keys_the_json_has() {
    let part = partitioner(&[("country", ".country"), ("device", ".device")]);
    let d = once(&part);
    let recs = records(&[
        r#"{"id": 1, "country": "S\u00e3o Paulo \"x\"", "device": "a\tb"}"#.to_string(),
        r#"{"id": 2, "device": "web", "country": "FR", "country2": "x"}"#.to_string(),
    ]);
    let decoded = d
        .decode(&recs, &part, &mut RouteScratch::default())
        .unwrap();
    let mut scratch = RouteScratch::default();
    // A tab cannot be part of a key: the first goes the records' way, with its reason.
    assert_eq!(decoded.unpartitioned.len(), 1);
    assert_eq!(
        Err(decoded.unpartitioned[0].1.clone()),
        part.route(&recs[0], &[], &mut scratch)
            .map(|p| p.to_string())
    );
    assert_eq!(decoded.parts.len(), 1);
    assert_eq!(
        decoded.parts[0].0,
        part.route(&recs[1], &[], &mut scratch).unwrap()
    );
    assert!(
        decoded.parts[0]
            .0
            .starts_with("country=FR/device=web/2026/11/24/10/")
    );
}

#[test]
fn only_plain_top_level_string_keys_are_read_from_columns() {
    assert!(
        partitioner(&[("country", ".country"), ("device", ".device")])
            .top_level_fields()
            .is_some()
    );
    assert_eq!(
        partitioner(&[("country", ".[\"country\"]"), ("device", ".device")]).top_level_fields(),
        Some(vec!["country", "device"])
    );
    for keys in [
        [
            ("country", ".country | ascii_downcase"),
            ("device", ".device"),
        ],
        [("country", ".geo.country"), ("device", ".device")],
    ] {
        assert_eq!(partitioner(&keys).top_level_fields(), None, "{keys:?}");
    }
}

#[test]
fn a_prefix_is_routed_once_per_arrival_and_key_values() {
    let mut memo = PrefixMemo::default();
    let mut routed = 0;
    let mut get = |memo: &mut PrefixMemo, ms: i64, values: &[&str], give: bool| {
        memo.get_or_route(ms, values.iter().copied(), |v| {
            routed += 1;
            give.then(|| Arc::from(v.collect::<Vec<_>>().join("/").as_str()))
        })
    };
    let a = get(&mut memo, 7, &["US", "ios"], true).unwrap();
    assert_eq!(&*a, "US/ios");
    // The same again: the same shared prefix, not routed again.
    let b = get(&mut memo, 7, &["US", "ios"], true).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // Another arrival, other values, or values that join alike: routed.
    assert_eq!(&*get(&mut memo, 8, &["US", "ios"], true).unwrap(), "US/ios");
    assert_eq!(&*get(&mut memo, 7, &["US", "web"], true).unwrap(), "US/web");
    assert_eq!(&*get(&mut memo, 7, &["USi", "os"], true).unwrap(), "USi/os");
    // A row with no prefix is not remembered as one.
    assert!(get(&mut memo, 9, &["", "x"], false).is_none());
    assert_eq!(&*get(&mut memo, 9, &["", "x"], true).unwrap(), "/x");
    memo.clear();
    assert_eq!(&*get(&mut memo, 7, &["US", "ios"], true).unwrap(), "US/ios");
    assert_eq!(routed, 7);
}
