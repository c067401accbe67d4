//! Unit tests of the parent module.

use super::*;
use std::io::Read;

fn frames(data: &[&str]) -> Vec<Record> {
    data.iter()
        .enumerate()
        .map(|(i, d)| Record {
            offset: i as u64,
            arrival_ms: 0,
            key: Bytes::new(),
            data: Bytes::copy_from_slice(d.as_bytes()),
        })
        .collect()
}

fn opts(compression: Compression) -> EncodeOptions {
    EncodeOptions {
        encoding: Encoding::JsonLines {
            delimiter: b"\n".to_vec(),
        },
        compression,
        level: None,
        encryption: None,
    }
}

fn many() -> (Vec<Record>, String) {
    let recs: Vec<String> = (0..1000).map(|i| format!("{{\"n\":{i}}}")).collect();
    let refs: Vec<&str> = recs.iter().map(String::as_str).collect();
    (frames(&refs), recs.join("\n") + "\n")
}

#[test]
fn json_lines_adds_a_newline_only_where_missing() {
    let out = encode_batch(
        &frames(&["{\"a\":1}", "{\"b\":2}\n"]),
        &opts(Compression::None),
    )
    .unwrap()
    .body;
    assert_eq!(&out[..], b"{\"a\":1}\n{\"b\":2}\n");
}

#[test]
fn empty_delimiter_is_raw_concatenation() {
    let mut o = opts(Compression::None);
    o.encoding = Encoding::JsonLines {
        delimiter: Vec::new(),
    };
    assert_eq!(
        &encode_batch(&frames(&["ab", "cd"]), &o).unwrap().body[..],
        b"abcd"
    );
}

#[test]
fn every_compression_round_trips() {
    let (recs, expected) = many();
    let gz = encode_batch(&recs, &opts(Compression::Gzip)).unwrap().body;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, expected);
    let zs = encode_batch(&recs, &opts(Compression::Zstd)).unwrap().body;
    assert_eq!(zstd::decode_all(&zs[..]).unwrap(), expected.as_bytes());
    let sn = encode_batch(&recs, &opts(Compression::Snappy))
        .unwrap()
        .body;
    let mut out = Vec::new();
    snap::read::FrameDecoder::new(&sn[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, expected.as_bytes());
    assert_eq!(opts(Compression::Zstd).extension(), ".zst");
    assert_eq!(opts(Compression::Snappy).extension(), ".snappy");
}

#[test]
fn levels_change_the_output() {
    let (recs, _) = many();
    let mut fast = opts(Compression::Zstd);
    fast.level = Some(1);
    let mut best = opts(Compression::Zstd);
    best.level = Some(19);
    assert!(
        encode_batch(&recs, &best).unwrap().body.len()
            <= encode_batch(&recs, &fast).unwrap().body.len()
    );
}

#[test]
fn encrypted_gzip_decrypts_then_decompresses() {
    let (recs, expected) = many();
    let mut o = opts(Compression::Gzip);
    o.encryption = Some(Encryption {
        keys: vec![
            ("new".into(), encrypt::SecretKey([1; 32])),
            ("old".into(), encrypt::SecretKey([2; 32])),
        ],
        chunk_bytes: 1024,
    });
    assert_eq!(o.extension(), ".gz.enc");
    let sealed = encode_batch(&recs, &o).unwrap().body;
    assert_eq!(
        encrypt::key_id(&sealed).unwrap(),
        "new",
        "the first key encrypts"
    );
    let enc = o.encryption.as_ref().unwrap();
    let plain = encrypt::decrypt(&sealed, |id| enc.key(id).cloned()).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&plain[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, expected);
}

#[test]
fn encrypted_gzip_of_many_members_decrypts_then_decompresses() {
    let (recs, expected) = many();
    let enc = Encryption {
        keys: vec![("k".into(), encrypt::SecretKey([3; 32]))],
        chunk_bytes: 1024,
    };
    let (id, key) = enc.current();
    let limits = gzip::GzipLimits {
        member_bytes: 1000,
        threads_max: 2,
    };
    let w = EncryptingWriter::new(Vec::new(), id, key, enc.chunk_bytes).unwrap();
    let sealed = gzip::compress_lines(&recs, b"\n", 6, limits, w)
        .unwrap()
        .finish()
        .unwrap();
    let plain = encrypt::decrypt(&sealed, |id| enc.key(id).cloned()).unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&plain[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, expected);
    let mut first = String::new();
    flate2::read::GzDecoder::new(&plain[..])
        .read_to_string(&mut first)
        .unwrap();
    assert!(first.len() < expected.len(), "one member only");
}

#[test]
fn rows_decoded_once_encode_and_encrypt_as_their_records_do() {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};
    let (recs, _) = many();
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let mut o = EncodeOptions {
        encoding: Encoding::Parquet(parquet::ParquetOptions {
            schema: schema.clone(),
            row_group_rows: 1 << 17,
            compression: "zstd".into(),
            level: None,
            dictionary: true,
        }),
        compression: Compression::None,
        level: None,
        encryption: None,
    };
    let (rows, rejected) = parquet::decode_all(&recs, &schema).unwrap();
    assert!(rejected.is_empty());
    let from_records = encode_batch(&recs, &o).unwrap().body;
    assert_eq!(encode_rows(&rows, &o).unwrap(), from_records);
    // Split into uneven pieces, as open partitions hold them: the same file.
    let all = &rows[0];
    let pieces = [all.slice(0, 3), all.slice(3, 500), all.slice(503, 497)];
    assert_eq!(encode_rows(&pieces, &o).unwrap(), from_records);

    o.encryption = Some(Encryption {
        keys: vec![("k".into(), encrypt::SecretKey([7; 32]))],
        chunk_bytes: 1024,
    });
    let sealed = encode_rows(&rows, &o).unwrap();
    let enc = o.encryption.as_ref().unwrap();
    let plain = encrypt::decrypt(&sealed, |id| enc.key(id).cloned()).unwrap();
    assert_eq!(plain, from_records);
    let lines = Encoding::JsonLines { delimiter: vec![] };
    o.encoding = lines;
    assert!(
        encode_rows(&rows, &o).is_err(),
        "rows are written only as Parquet"
    );
}
