//! Golden cases (`tests/analytics/golden/*.yaml`: SQL, input records by
//! shard, the expected rows of each output) and the property that results
//! do not depend on how shards' reads interleave.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::analytics::schema::{Column, RecordFormat};

/// The time error rows are stamped with in these tests.
const NOW_MS: i64 = 1_700_000_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// `NAME TYPE [mapping], …`
    columns: Vec<String>,
    #[serde(default)]
    delay_ms: i64,
    #[serde(default = "groups_max")]
    groups_max: usize,
    sql: String,
    outputs: Vec<String>,
    input: Vec<In>,
    expected: BTreeMap<String, Vec<Value>>,
}

fn groups_max() -> usize {
    1000
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct In {
    shard: u32,
    at: i64,
    data: String,
}

fn schema(columns: &[String]) -> InputSchema {
    InputSchema {
        format: RecordFormat::Json {
            row_path: "$".into(),
        },
        columns: columns
            .iter()
            .map(|c| {
                let mut parts = c.split_whitespace();
                let name = parts.next().unwrap_or_default().to_string();
                let sql_type = SqlType::parse(parts.next().unwrap_or_default()).unwrap();
                Column {
                    name,
                    sql_type,
                    mapping: parts.next().map(str::to_string),
                }
            })
            .collect(),
    }
}

fn engine(case: &Case) -> Result<Engine, EngineError> {
    let outputs = case
        .outputs
        .iter()
        .map(|o| {
            (
                o.clone(),
                OutputDef {
                    format: OutputFormat::Json,
                    partition_key: None,
                },
            )
        })
        .collect();
    Engine::new(EngineDef {
        input_stream: "SOURCE_SQL_STREAM_001".into(),
        schema: schema(&case.columns),
        program: crate::analytics::kda::parse_program(&case.sql)
            .map_err(|e| EngineError::Eval(e.to_string()))?,
        outputs,
        delay_ms: case.delay_ms,
        groups_max: case.groups_max,
    })
}

fn record(i: &In, offset: u64) -> Record {
    Record {
        offset,
        arrival_ms: i.at,
        key: Bytes::new(),
        data: Bytes::from(i.data.clone().into_bytes()),
    }
}

/// Runs `input` (in this order) and closes every shard: the output rows
/// by stream.
fn run(case: &Case, input: &[In]) -> BTreeMap<String, Vec<Value>> {
    let mut e = engine(case).unwrap();
    let shards: std::collections::BTreeSet<u32> = case.input.iter().map(|i| i.shard).collect();
    for s in &shards {
        e.track(*s);
    }
    let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
    for i in input {
        let o = offsets.entry(i.shard).or_default();
        e.push(i.shard, &[record(i, *o)], NOW_MS).unwrap();
        *o += 1;
        e.close_windows(NOW_MS).unwrap();
    }
    for s in &shards {
        e.finished(*s);
    }
    e.close_windows(NOW_MS).unwrap();
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in e.take_pending() {
        out.entry(r.stream)
            .or_default()
            .push(serde_json::from_slice(&r.data).unwrap());
    }
    out
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/analytics/golden")
}

fn load(name: &str) -> Case {
    let path = golden_dir().join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Numbers as f64, so `12` and `12.0` compare equal.
fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(v.clone(), |f| serde_json::json!(f)),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

/// Every expected row matches the actual one: error rows in the fields
/// listed, other rows exactly.
fn check(name: &str, got: &BTreeMap<String, Vec<Value>>, expected: &BTreeMap<String, Vec<Value>>) {
    for (stream, want) in expected {
        let have = got.get(stream).cloned().unwrap_or_default();
        assert_eq!(
            have.len(),
            want.len(),
            "{name}: {stream} has {have:#?}, expected {want:#?}"
        );
        for (h, w) in have.iter().zip(want) {
            if stream == ERROR_STREAM {
                for (k, v) in w.as_object().unwrap() {
                    assert_eq!(
                        h.get(k).map(norm),
                        Some(norm(v)),
                        "{name}: {stream} field {k} of {h}"
                    );
                }
            } else {
                assert_eq!(norm(h), norm(w), "{name}: {stream}");
            }
        }
    }
    for stream in got.keys() {
        assert!(
            expected.contains_key(stream),
            "{name}: unexpected output {stream}: {got:#?}"
        );
    }
}

#[test]
fn a_row_failing_in_a_batch_fails_alone() {
    let case = load("evaluation_errors_row_by_row");
    let mut e = engine(&case).unwrap();
    e.track(0);
    let records: Vec<Record> = case
        .input
        .iter()
        .enumerate()
        .map(|(o, i)| record(i, o as u64))
        .collect();
    e.push(0, &records, NOW_MS).unwrap();
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in e.take_pending() {
        got.entry(r.stream)
            .or_default()
            .push(serde_json::from_slice(&r.data).unwrap());
    }
    check(
        "evaluation_errors_row_by_row (one batch)",
        &got,
        &case.expected,
    );
}

#[test]
fn golden_cases() {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "yaml" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8, "golden cases: {names:?}");
    for name in names {
        let case = load(&name);
        let got = run(&case, &case.input);
        check(&name, &got, &case.expected);
    }
}

/// An interleaving of the case's records that keeps each shard's order.
fn interleave(input: &[In], picks: &[u8]) -> Vec<In> {
    let mut by_shard: BTreeMap<u32, std::collections::VecDeque<In>> = BTreeMap::new();
    for i in input {
        by_shard.entry(i.shard).or_default().push_back(i.clone());
    }
    let mut out = Vec::new();
    let mut k = 0;
    while by_shard.values().any(|q| !q.is_empty()) {
        let live: Vec<u32> = by_shard
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(s, _)| *s)
            .collect();
        let pick = picks.get(k).copied().unwrap_or(0) as usize % live.len();
        k += 1;
        if let Some(i) = by_shard.get_mut(&live[pick]).and_then(|q| q.pop_front()) {
            out.push(i);
        }
    }
    out
}

fn sorted(mut m: BTreeMap<String, Vec<Value>>) -> BTreeMap<String, Vec<String>> {
    m.iter_mut()
        .map(|(k, v)| {
            let mut s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            s.sort();
            (k.clone(), s)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn results_do_not_depend_on_how_shards_interleave(picks in proptest::collection::vec(any::<u8>(), 0..80)) {
        let case = load("interleaving_event_time_lateness");
        let reference = sorted(run(&case, &case.input));
        let mixed = interleave(&case.input, &picks);
        prop_assert_eq!(sorted(run(&case, &mixed)), reference);
    }
}

#[test]
fn a_snapshot_restores_open_windows_and_watermarks() {
    let case = load("interleaving_event_time_lateness");
    let (first, second) = case.input.split_at(case.input.len() / 2);
    let expected = sorted(run(&case, &case.input));
    let mut e = engine(&case).unwrap();
    let shards: std::collections::BTreeSet<u32> = case.input.iter().map(|i| i.shard).collect();
    for s in &shards {
        e.track(*s);
    }
    let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
    let mut feed = |e: &mut Engine, input: &[In]| {
        for i in input {
            let o = offsets.entry(i.shard).or_default();
            e.push(i.shard, &[record(i, *o)], NOW_MS).unwrap();
            *o += 1;
            e.close_windows(NOW_MS).unwrap();
        }
    };
    feed(&mut e, first);
    let mut before = e.take_pending();
    let state = e.snapshot().unwrap();
    // A new engine from the snapshot continues where the first stopped.
    let mut again = engine(&case).unwrap();
    again.restore(state).unwrap();
    feed(&mut again, second);
    for s in &shards {
        again.finished(*s);
    }
    again.close_windows(NOW_MS).unwrap();
    before.extend(again.take_pending());
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in before {
        got.entry(r.stream)
            .or_default()
            .push(serde_json::from_slice(&r.data).unwrap());
    }
    assert_eq!(sorted(got), expected);
}

#[test]
fn code_errors_name_the_statement_line_and_reason() {
    let mut case = load("kda_tumbling_count_rowtime");
    case.sql = "CREATE OR REPLACE STREAM \"D\" (T VARCHAR(4), N INTEGER);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\nSELECT STREAM NOPE, COUNT(*) FROM \"SOURCE_SQL_STREAM_001\"\nGROUP BY NOPE, STEP(\"SOURCE_SQL_STREAM_001\".ROWTIME BY INTERVAL '60' SECOND);".into();
    let Err(EngineError::Code {
        statement,
        line,
        reason,
        ..
    }) = engine(&case)
    else {
        panic!("an unknown column is a code error");
    };
    assert_eq!(statement, 2);
    assert_eq!(line, 3, "the line of the unknown column");
    assert!(
        reason.to_lowercase().contains("no field named nope"),
        "{reason}"
    );
    case.sql =
        "INSERT INTO out SELECT TICKER_SYMBOL FROM \"SOURCE_SQL_STREAM_001\" GROUP BY TICKER_SYMBOL;".into();
    let Err(EngineError::Code { reason, .. }) = engine(&case) else {
        panic!("GROUP BY without a window is a code error");
    };
    assert!(reason.contains("needs a window"), "{reason}");
    case.sql = "INSERT INTO out SELECT TICKER_SYMBOL + 1 FROM \"SOURCE_SQL_STREAM_001\";".into();
    assert!(
        matches!(engine(&case), Err(EngineError::Code { .. })),
        "text plus a number mixes types"
    );
}
