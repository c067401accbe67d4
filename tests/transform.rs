//! The wasmtime host with real components: the Rust example transform and a
//! transform that traps, loops, exhausts memory or miscounts on request.

#[path = "guests/mod.rs"]
mod guests;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hydrant::record::Record;
use hydrant::transform::{LoadError, Outcome, Transform, TransformConfig};

fn config(wasm: std::path::PathBuf, init: &str) -> TransformConfig {
    TransformConfig {
        wasm,
        config: init.into(),
        batch_records_max: 10_000,
        batch_bytes_max: 4 << 20,
        timeout: Duration::from_millis(500),
        memory_bytes_max: 64 << 20,
        instances_max: 2,
    }
}

fn frames(data: &[&str]) -> Vec<Record> {
    data.iter()
        .enumerate()
        .map(|(i, d)| Record {
            offset: i as u64,
            arrival_ms: 1_795_515_630_000,
            key: Bytes::new(),
            data: Bytes::from(d.to_string()),
        })
        .collect()
}

fn ok_data(o: &Outcome) -> String {
    match o {
        Outcome::Ok { data, .. } => String::from_utf8_lossy(data).into_owned(),
        other => panic!("expected ok, got {other:?}"),
    }
}

#[test]
fn the_rust_example_parses_drops_redacts_and_partitions() {
    let t = Transform::load(config(guests::example(), r#"{"env":"prod"}"#), None).unwrap();
    let out = t.run(&frames(&[
        r#"{"level":"INFO","service":"auth","msg":"login by ann@example.com with Bearer abc.def"}"#,
        r#"{"level":"debug","service":"auth","msg":"noise"}"#,
        "not json",
        r#"{"level":"warn","msg":"no service"}"#,
    ]));
    assert_eq!(out.len(), 4);
    let first: serde_json::Value = serde_json::from_str(&ok_data(&out[0])).unwrap();
    assert_eq!(first["msg"], "login by <email> with Bearer <token>");
    assert_eq!(first["env"], "prod");
    match &out[0] {
        Outcome::Ok { keys, data } => {
            assert_eq!(keys, &[("service".to_string(), "auth".to_string())]);
            assert!(data.ends_with(b"\n"));
        }
        _ => unreachable!(),
    }
    assert_eq!(out[1], Outcome::Dropped);
    assert!(
        matches!(&out[2], Outcome::Failed(why) if why.contains("not JSON")),
        "{:?}",
        out[2]
    );
    match &out[3] {
        Outcome::Ok { keys, .. } => assert_eq!(keys[0].1, "unknown"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_config_the_component_refuses_stops_the_load() {
    let e = Transform::load(config(guests::example(), "{not json"), None).unwrap_err();
    assert!(
        matches!(e, LoadError::Init(ref m) if m.contains("config is not JSON")),
        "{e}"
    );
    let e = Transform::load(config(guests::misbehave(), "refuse"), None).unwrap_err();
    assert!(
        e.to_string()
            .contains("refused: this config is not acceptable"),
        "{e}"
    );
}

#[test]
fn missing_and_invalid_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = Transform::load(config(dir.path().join("nope.wasm"), ""), None).unwrap_err();
    assert!(matches!(e, LoadError::Read { .. }), "{e}");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let e = Transform::load(config(junk.clone(), ""), None).unwrap_err();
    assert!(
        e.to_string()
            .contains("is not a usable transform component"),
        "{e}"
    );
}

#[test]
fn a_trap_fails_only_the_record_that_caused_it() {
    let t = Transform::load(config(guests::misbehave(), ""), None).unwrap();
    let mut input: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    input[37] = "trap".into();
    input[80] = "fail".into();
    input[90] = "drop".into();
    let refs: Vec<&str> = input.iter().map(String::as_str).collect();
    let out = t.run(&frames(&refs));
    assert_eq!(out.len(), 100);
    for (i, o) in out.iter().enumerate() {
        match i {
            37 => assert!(
                matches!(o, Outcome::Failed(w) if w.contains("trapped")),
                "{o:?}"
            ),
            80 => assert_eq!(o, &Outcome::Failed("asked to fail".into())),
            90 => assert_eq!(o, &Outcome::Dropped),
            _ => assert_eq!(ok_data(o), format!("R{i}")),
        }
    }
    // The pool replaced the trapped instances: the next call works.
    assert_eq!(ok_data(&t.run(&frames(&["again"]))[0]), "AGAIN");
}

#[test]
fn a_call_past_its_deadline_is_stopped_and_the_next_one_runs() {
    let t = Transform::load(config(guests::misbehave(), ""), None).unwrap();
    let started = Instant::now();
    let out = t.run(&frames(&["a", "loop", "b"]));
    let took = started.elapsed();
    assert!(
        out.iter()
            .all(|o| matches!(o, Outcome::Failed(w) if w.contains("within 500 ms"))),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(ok_data(&t.run(&frames(&["c"]))[0]), "C");
}

#[test]
fn memory_past_the_cap_fails_the_record() {
    let t = Transform::load(config(guests::misbehave(), ""), None).unwrap();
    let out = t.run(&frames(&["oom"]));
    assert!(
        matches!(&out[0], Outcome::Failed(w) if w.contains("more than 64 MiB")),
        "{out:?}"
    );
    assert_eq!(ok_data(&t.run(&frames(&["x"]))[0]), "X");
}

#[test]
fn a_wrong_number_of_outcomes_fails_the_whole_batch() {
    let t = Transform::load(config(guests::misbehave(), "short"), None).unwrap();
    let out = t.run(&frames(&["a", "b", "c"]));
    assert!(
        out.iter().all(
            |o| matches!(o, Outcome::Failed(w) if w.contains("returned 2 outcomes for 3 records"))
        ),
        "{out:?}"
    );
}

#[test]
fn batches_are_split_by_records_and_bytes() {
    let mut cfg = config(guests::misbehave(), "short");
    // With one outcome missing per call, the number of failures shows the
    // number of calls: 10 records in calls of 3 -> 4 calls, all failing.
    cfg.batch_records_max = 3;
    let t = Transform::load(cfg, None).unwrap();
    let input: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = input.iter().map(String::as_str).collect();
    let out = t.run(&frames(&refs));
    let msgs: std::collections::BTreeSet<String> = out
        .iter()
        .map(|o| match o {
            Outcome::Failed(w) => w.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        msgs.contains("the transform returned 2 outcomes for 3 records"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains("the transform returned 0 outcomes for 1 records"),
        "{msgs:?}"
    );
}

#[test]
fn the_compiled_component_is_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let t = Transform::load(config(guests::example(), ""), Some(&cache)).unwrap();
    drop(t);
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].path().extension().is_some_and(|e| e == "cwasm"));
    // Loaded from the cache, it still works.
    let t = Transform::load(config(guests::example(), ""), Some(&cache)).unwrap();
    let out = t.run(&frames(&[r#"{"level":"info","service":"s","msg":"m"}"#]));
    assert!(matches!(out[0], Outcome::Ok { .. }));
}

#[test]
fn instances_are_shared_by_threads_within_the_bound() {
    let t = std::sync::Arc::new(Transform::load(config(guests::misbehave(), ""), None).unwrap());
    let handles: Vec<_> = (0..6)
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                let input: Vec<String> = (0..200).map(|i| format!("t{n}-{i}")).collect();
                let refs: Vec<&str> = input.iter().map(String::as_str).collect();
                let out = t.run(&frames(&refs));
                out.iter()
                    .enumerate()
                    .all(|(i, o)| ok_data(o) == format!("T{n}-{i}"))
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

#[test]
fn a_component_of_another_world_is_refused_with_the_world_named() {
    let e = Transform::load(config(guests::wrong_world(), ""), None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("does not implement the world hydrant:transform/transformer@0.1.0"),
        "{msg}"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let e = Transform::load(config(core, ""), None).unwrap_err();
    assert!(e.to_string().contains("not a WebAssembly component"), "{e}");
}
