//! Sealing and opening records, key checks at open, the built-in key.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::log::{DiskQuota, LogOptions, StreamLog};

fn keyring(keys: &[(&str, u8)]) -> Arc<Keyring> {
    let keys: Vec<(String, SecretKey)> = keys
        .iter()
        .map(|(id, b)| (id.to_string(), SecretKey([*b; 32])))
        .collect();
    Arc::new(Keyring::new(&keys))
}

fn rec(key: &str, data: &str) -> AppendRecord {
    AppendRecord {
        key: Bytes::from(key.to_string()),
        data: Bytes::from(data.to_string()),
        arrival_ms: 1_700_000_000_123,
    }
}

fn stored(r: &AppendRecord, offset: u64) -> Record {
    Record {
        offset,
        arrival_ms: r.arrival_ms,
        key: r.key.clone(),
        data: r.data.clone(),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sealed_records_hide_key_and_data_and_open_to_the_original() {
    let c = LogCipher::new(keyring(&[("k1", 1)]), None);
    c.set_sealing(Some("k1")).unwrap();
    let mut recs = vec![rec("user-42", "secret marker one"), rec("", "second")];
    c.seal(&mut recs);
    assert!(is_sealed(&recs[0].key) && is_sealed(&recs[1].key));
    assert_eq!(&recs[0].key[1..], b"k1");
    assert!(!contains(&recs[0].data, b"secret marker"));
    assert!(!contains(&recs[0].data, b"user-42"));
    let mut out: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| stored(r, i as u64))
        .collect();
    c.open(&mut out).unwrap();
    assert_eq!(&out[0].key[..], b"user-42");
    assert_eq!(&out[0].data[..], b"secret marker one");
    assert_eq!(&out[1].key[..], b"");
    assert_eq!(&out[1].data[..], b"second");
}

#[test]
fn a_stream_that_does_not_seal_stores_records_as_given() {
    let c = LogCipher::new(keyring(&[("k1", 1)]), None);
    let mut recs = vec![rec("k", "plain")];
    c.seal(&mut recs);
    assert_eq!(&recs[0].data[..], b"plain");
    c.set_sealing(Some("k1")).unwrap();
    c.set_sealing(None).unwrap();
    c.seal(&mut recs);
    assert_eq!(&recs[0].data[..], b"plain");
}

#[test]
fn a_wrong_key_a_missing_key_or_a_changed_byte_is_an_error_never_data() {
    let writer = LogCipher::new(keyring(&[("k1", 1)]), None);
    writer.set_sealing(Some("k1")).unwrap();
    let mut recs = vec![rec("p", "payload")];
    writer.seal(&mut recs);
    let sealed = stored(&recs[0], 7);

    let wrong = LogCipher::new(keyring(&[("k1", 2)]), None);
    let mut r = vec![sealed.clone()];
    assert_eq!(wrong.open(&mut r), Err(SealError::Tampered(7)));

    let missing = LogCipher::new(keyring(&[("k2", 1)]), None);
    let mut r = vec![sealed.clone()];
    assert_eq!(
        missing.open(&mut r),
        Err(SealError::MissingKey("k1".into()))
    );

    for i in 0..sealed.data.len() {
        let mut data = sealed.data.to_vec();
        data[i] ^= 0x01;
        let mut r = vec![Record {
            data: Bytes::from(data),
            ..sealed.clone()
        }];
        assert_eq!(writer.open(&mut r), Err(SealError::Tampered(7)), "byte {i}");
    }
    let mut moved = vec![Record {
        arrival_ms: sealed.arrival_ms + 1,
        ..sealed.clone()
    }];
    assert_eq!(writer.open(&mut moved), Err(SealError::Tampered(7)));
    let mut short = vec![Record {
        data: sealed.data.slice(..20),
        ..sealed
    }];
    assert_eq!(writer.open(&mut short), Err(SealError::Tampered(7)));
}

#[test]
fn nonces_never_repeat_even_when_the_counter_wraps() {
    let s = Sealer::new(keyring(&[("k", 1)]).get("k").unwrap().clone());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let (p, c) = s.reserve(3);
        for i in 0..3u32 {
            assert!(seen.insert((p, c + i)));
        }
    }
    s.nonces.lock().unwrap().1 = u32::MAX - 3;
    let (p1, c1) = s.reserve(2);
    let (p2, c2) = s.reserve(5);
    // Two counters left under the prefix are too few for five: a new one.
    assert_eq!(c1, u32::MAX - 3);
    assert_ne!(p1, p2);
    assert_eq!(c2, 0);
}

#[test]
fn a_log_refuses_to_open_without_the_key_that_sealed_it_or_with_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |keys| LogOptions {
        keys,
        ..LogOptions::default()
    };
    let quota = || DiskQuota::new(u64::MAX);
    {
        let log = StreamLog::open(dir.path(), 1, &opts(keyring(&[("k1", 1)])), quota()).unwrap();
        log.set_sealing(Some("k1")).unwrap();
    }
    let err = |r: Result<StreamLog, crate::log::LogError>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened"),
    };
    let missing = err(StreamLog::open(
        dir.path(),
        1,
        &opts(keyring(&[("k2", 2)])),
        quota(),
    ));
    assert!(
        missing.contains("`k1`") && missing.contains("not configured"),
        "{missing}"
    );
    let wrong = err(StreamLog::open(
        dir.path(),
        1,
        &opts(keyring(&[("k1", 9)])),
        quota(),
    ));
    assert!(
        wrong.contains("`k1`") && wrong.contains("check value"),
        "{wrong}"
    );
    // Rotated: a new key added in front, the old one still listed.
    let log = StreamLog::open(
        dir.path(),
        1,
        &opts(keyring(&[("k2", 2), ("k1", 1)])),
        quota(),
    )
    .unwrap();
    log.set_sealing(Some("k2")).unwrap();
    assert_eq!(log.sealing_key().as_deref(), Some("k2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_segments_hold_no_record_in_clear_and_read_back_across_key_changes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keys: keyring(&[("new", 2), ("old", 1)]),
        ..LogOptions::default()
    };
    let log = StreamLog::open(dir.path(), 1, &opts, DiskQuota::new(u64::MAX)).unwrap();
    let shard = log.shard(0).unwrap();
    shard.append(vec![rec("a", "clear-before")]).await.unwrap();
    log.set_sealing(Some("old")).unwrap();
    shard
        .append(vec![rec("b", "MARKER-old-7f3a")])
        .await
        .unwrap();
    log.set_sealing(Some("new")).unwrap();
    shard
        .append(vec![rec("c", "MARKER-new-91c2")])
        .await
        .unwrap();
    log.set_sealing(None).unwrap();
    shard.append(vec![rec("d", "clear-after")]).await.unwrap();

    let mut all = Vec::new();
    for e in walkdir(dir.path()) {
        all.extend(std::fs::read(e).unwrap());
    }
    assert!(
        !contains(&all, b"MARKER-"),
        "a sealed record is on disk in clear"
    );
    assert!(contains(&all, b"clear-before") && contains(&all, b"clear-after"));

    let got: Vec<(String, String)> = tokio::task::spawn_blocking(move || {
        let mut r = shard.reader(0);
        r.read(100, 1 << 20).unwrap()
    })
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            String::from_utf8(r.key.to_vec()).unwrap(),
            String::from_utf8(r.data.to_vec()).unwrap(),
        )
    })
    .collect();
    let want = [
        ("a", "clear-before"),
        ("b", "MARKER-old-7f3a"),
        ("c", "MARKER-new-91c2"),
        ("d", "clear-after"),
    ];
    assert_eq!(
        got,
        want.map(|(k, d)| (k.to_string(), d.to_string())).to_vec()
    );
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_builtin_key_is_generated_once_and_readable_only_by_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let a = Keyring::default().with_builtin(dir.path()).unwrap();
    let b = Keyring::default().with_builtin(dir.path()).unwrap();
    assert_eq!(
        a.get(BUILTIN_KEY).unwrap().check,
        b.get(BUILTIN_KEY).unwrap().check
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("keys")), 0o700);
        assert_eq!(mode(&dir.path().join("keys/builtin.key")), 0o600);
    }
    // Not configuration: a reload compares configs without it.
    assert_eq!(format!("{a:?}"), "[]");
    let other = tempfile::tempdir().unwrap();
    let c = Keyring::default().with_builtin(other.path()).unwrap();
    assert_ne!(
        a.get(BUILTIN_KEY).unwrap().check,
        c.get(BUILTIN_KEY).unwrap().check
    );
}
