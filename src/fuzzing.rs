//! Entry points for the fuzz targets in `fuzz/` and for the test that replays
//! their corpora on every run. Each function feeds outside bytes to a parser
//! and panics only if an invariant is broken; any input at all must be
//! handled without a panic.

use crate::ingest::firehose::{self, BATCH_BYTES_MAX, BATCH_RECORDS_MAX, RECORD_BYTES_MAX};
use crate::log::frame::{self, Decoded};

/// The frame reader: decoding never panics, and whatever decodes re-encodes
/// to exactly the bytes it was read from.
pub fn frame_reader(data: &[u8]) {
    let (frames, used, _) = frame::decode_all(data);
    assert!(used <= data.len());
    let mut again = Vec::new();
    for f in &frames {
        if frame::encode(&mut again, f.offset, f.arrival_ms, &f.key, &f.data).is_err() {
            panic!("a decoded frame does not re-encode");
        }
    }
    assert_eq!(
        &again[..],
        &data[..used],
        "decoded frames differ from their bytes"
    );
    if let Decoded::Frame { consumed, .. } = frame::decode(data) {
        assert!(consumed <= data.len());
    }
}

/// The Firehose request parser: any body is either refused with an error or
/// accepted within Firehose's limits.
pub fn firehose_request(data: &[u8]) {
    if let Ok(req) = firehose::parse_put_record_batch(data) {
        assert!(!req.records.is_empty() && req.records.len() <= BATCH_RECORDS_MAX);
        assert!(req.records.iter().all(|r| r.len() <= RECORD_BYTES_MAX));
        assert!(req.records.iter().map(|r| r.len()).sum::<usize>() <= BATCH_BYTES_MAX);
        assert!(crate::aws::valid_delivery_stream_name(&req.stream));
    }
    if let Ok(req) = firehose::parse_put_record(data) {
        assert!(req.data.len() <= RECORD_BYTES_MAX);
        assert!(crate::aws::valid_delivery_stream_name(&req.stream));
    }
}

/// The KPL de-aggregator: any data, and any data behind the magic with a
/// valid MD5 (so that it reaches the protobuf decoder), is either refused
/// whole or taken apart into user records that keep the aggregate's place
/// and whose data lies within the aggregate's.
pub fn kpl_aggregate(data: &[u8]) {
    use crate::kinesis::kpl;
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(data).into();
    let wrapped = [&kpl::MAGIC[..], data, &digest[..]].concat();
    for bytes in [data.to_vec(), wrapped] {
        let agg = crate::record::Record {
            offset: 42,
            arrival_ms: 7,
            key: bytes::Bytes::from_static(b"k"),
            data: bytes::Bytes::from(bytes),
        };
        let mut out = Vec::new();
        match kpl::deaggregate_into(&agg, &mut out) {
            Ok(n) => {
                assert_eq!(n, out.len());
                assert!(n <= kpl::USER_RECORDS_MAX);
                let within = agg.data.as_ptr_range();
                for r in &out {
                    assert_eq!((r.offset, r.arrival_ms), (42, 7));
                    assert!(r.data.is_empty() || within.contains(&r.data.as_ptr()));
                }
            }
            Err(_) => assert!(out.is_empty(), "a refused aggregate left user records"),
        }
    }
}

/// Queue receipt handles: any text is refused or names a record of the
/// queue it was checked against, and a handle decodes to what it encodes.
pub fn queue_receipt_handle(data: &[u8]) {
    use crate::kinesis::queues::handle::Handle;
    let queue = 0x5eed_u128;
    let text = String::from_utf8_lossy(data);
    if let Ok(h) = Handle::decode(&text, queue) {
        assert_eq!(h.queue, queue);
        assert_eq!(Handle::decode(&h.encode(), queue), Ok(h));
    }
    if data.len() >= 17 {
        let h = Handle {
            dead_letter: data[0] & 1 == 1,
            queue: u128::from_le_bytes(data[1..17].try_into().unwrap_or_default()),
            shard: u32::from(data[0]),
            offset: data.len() as u64,
            serial: 1,
        };
        assert_eq!(Handle::decode(&h.encode(), h.queue), Ok(h));
        assert!(Handle::decode(&h.encode(), h.queue ^ 1).is_err());
    }
}

/// Access key policies: any JSON document is refused with a reason or
/// evaluated without a panic, and a policy of only denials allows nothing.
pub fn iam_policy(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(p) = crate::config::parse_policy(&doc) {
        let resource = "arn:aws:firehose:us-east-1:000000000000:deliverystream/logs-app";
        let allowed = p.allows("firehose:PutRecord", resource);
        if p.statements.iter().all(|s| !s.allow) {
            assert!(!allowed, "a policy of denials allowed a call");
        }
        let _ = p.allows("kinesis:GetRecords", "*");
    }
}

/// `CreateChannel` requests: any JSON is refused with a reason or becomes a
/// delivery stream reading a validly named Kinesis stream.
pub fn channel_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(cfg) = crate::config::Config::embedded_default() else {
        return;
    };
    if let Ok(s) = crate::config::channel::stream_from_channel("c", &req, &cfg) {
        match &s.source {
            crate::config::Source::Kinesis { stream } => {
                assert!(crate::aws::valid_kinesis_stream_name(stream));
            }
            crate::config::Source::DirectPut => panic!("a channel that reads no stream"),
        }
    }
}

/// The opener of records sealed at rest: bytes read back from the log as a
/// sealed record's data either fail authentication or are exactly what a
/// sealer produced; a genuinely sealed record opens to what was sealed,
/// and any change to it is refused.
pub fn sealed_record(data: &[u8]) {
    use crate::log::AppendRecord;
    use crate::log::seal::{Keyring, LogCipher, SealError};
    use crate::record::Record;
    use crate::secret::SecretKey;
    let keys = std::sync::Arc::new(Keyring::new(&[("k".to_string(), SecretKey([7; 32]))]));
    let cipher = LogCipher::new(keys, None);
    let stored = |key: bytes::Bytes, data: bytes::Bytes| Record {
        offset: 1,
        arrival_ms: 2,
        key,
        data,
    };
    let forged = stored(
        bytes::Bytes::from_static(b"\xffk"),
        bytes::Bytes::copy_from_slice(data),
    );
    let mut r = vec![forged];
    assert!(
        matches!(cipher.open(&mut r), Err(SealError::Tampered(1))),
        "arbitrary bytes opened as a sealed record"
    );
    if cipher.set_sealing(Some("k")).is_err() {
        panic!("the key just configured is unknown");
    }
    let split = data.len().min(data.first().map_or(0, |b| usize::from(*b)));
    let mut rec = vec![AppendRecord {
        key: bytes::Bytes::copy_from_slice(&data[..split]),
        data: bytes::Bytes::copy_from_slice(&data[split..]),
        arrival_ms: 2,
    }];
    cipher.seal(&mut rec);
    let mut r = vec![stored(rec[0].key.clone(), rec[0].data.clone())];
    assert!(cipher.open(&mut r).is_ok(), "a sealed record does not open");
    assert_eq!(
        (&r[0].key[..], &r[0].data[..]),
        (&data[..split], &data[split..])
    );
    let mut changed = rec[0].data.to_vec();
    let at = data.len() % changed.len();
    changed[at] ^= 0x80;
    let mut r = vec![stored(rec[0].key.clone(), bytes::Bytes::from(changed))];
    assert!(
        cipher.open(&mut r).is_err(),
        "a changed sealed record opened"
    );
}

/// The PutMedia MKV reader: any bytes, however they are cut into pushes,
/// give the same events as one push, never panic, and every fragment it
/// accepts is within its limits.
pub fn mkv_reader(data: &[u8]) {
    use crate::video::mkv::{MkvReader, ReadEvent, ReaderLimits};
    let limits = ReaderLimits {
        fragment_bytes_max: 1 << 20,
        ..ReaderLimits::default()
    };
    let mut whole = MkvReader::new(limits.clone());
    let mut once = whole.push(data);
    once.extend(whole.finish());
    let step = 1 + data.first().map_or(0, |b| usize::from(*b) % 61);
    let mut cut = MkvReader::new(limits.clone());
    let mut pieces = Vec::new();
    for chunk in data.chunks(step) {
        pieces.extend(cut.push(chunk));
    }
    pieces.extend(cut.finish());
    assert_eq!(once, pieces, "events depend on how the body was cut");
    for e in &once {
        if let ReadEvent::Fragment(f) = e {
            assert!(f.cluster.len() <= limits.fragment_bytes_max + 16);
            assert!(f.duration_ns <= limits.fragment_duration_max.as_nanos() as u64);
        }
    }
}

/// The Kinesis request parsers (`PutRecords` in JSON and in CBOR): any body
/// is refused with an error or gives records within Kinesis's limits.
pub fn kinesis_request(data: &[u8]) {
    const MAX: usize = 1 << 20;
    for cbor in [false, true] {
        if let Ok(records) = crate::ingest::kinesis::parse_put_records(data, cbor, MAX) {
            assert!(!records.is_empty() && records.len() <= 500);
            for (key, bytes) in records {
                assert!((1..=1024).contains(&key), "partition key of {key} bytes");
                assert!(bytes <= MAX);
            }
        }
    }
}

/// The fast paths of the record-carrying requests (Firehose's
/// `PutRecordBatch`, Kinesis's `PutRecords` in JSON and in CBOR), held to
/// the full parses they step aside for: whatever a fast path accepts, the
/// full parse accepts and reads alike (and for `PutRecordBatch`, the full
/// parse accepts nothing the fast path leaves to it).
pub fn fast_paths(data: &[u8]) {
    if let Err(e) = firehose::put_record_batch_fast_path_agrees(data) {
        panic!("PutRecordBatch: {e}");
    }
    for cbor in [false, true] {
        for max in [1 << 20, 16] {
            if let Err(e) = crate::ingest::kinesis::put_records_fast_path_agrees(data, cbor, max) {
                panic!("PutRecords (cbor: {cbor}, records up to {max} bytes): {e}");
            }
        }
    }
}

/// The NDJSON body splitter: every record it accepts is one non-blank JSON
/// line within the record limit, and the lines are the body's.
pub fn ndjson_body(data: &[u8]) {
    use crate::ingest::firehose::RECORD_BYTES_MAX;
    let body = bytes::Bytes::copy_from_slice(data);
    if let Ok(lines) = crate::ingest::ndjson::split_lines(&body) {
        for l in &lines {
            assert!(!l.is_empty() && l.len() <= RECORD_BYTES_MAX);
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
            assert!(!l.contains(&b'\n'));
        }
        assert!(lines.iter().map(|l| l.len()).sum::<usize>() <= data.len());
    }
}

/// The config file: any text is refused with errors naming their paths, or
/// gives a config whose streams have valid names.
pub fn config_yaml(data: &[u8]) {
    match crate::config::parse(&String::from_utf8_lossy(data)) {
        Ok(c) => assert!(
            c.streams
                .keys()
                .all(|n| crate::aws::valid_delivery_stream_name(n))
        ),
        Err(e) => assert!(!e.0.is_empty()),
    }
}

/// The video API's request parsing (`CreateStream`, every field checked):
/// any body is refused or defines a stream within Kinesis Video's rules.
pub fn video_request(data: &[u8]) {
    if let Ok(spec) = crate::ingest::video::parse_create_stream(data) {
        assert!(crate::video::spec::valid_name(&spec.name));
        assert!(spec.retention_hours <= crate::video::spec::RETENTION_HOURS_MAX);
        assert!(spec.tags.len() <= crate::video::spec::TAGS_MAX);
        assert!(
            spec.log_key
                .as_deref()
                .is_none_or(|k| k == crate::log::seal::BUILTIN_KEY)
        );
    }
}

/// A SQL application's code: any text is refused with a code error placed
/// in the text (statement, line and column from 1), or plans into an
/// engine over a fixed input schema.
pub fn analytics_sql(data: &[u8]) {
    use crate::analytics::engine::{Engine, EngineDef, EngineError};
    use crate::analytics::schema::{Column, InputSchema, RecordFormat, SqlType};
    let code = String::from_utf8_lossy(data);
    let program = match crate::analytics::kda::parse_program(&code) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.statement() >= 1 && e.line() >= 1 && e.column() >= 1);
            return;
        }
    };
    let column = |name: &str, sql_type| Column {
        name: name.into(),
        sql_type,
        mapping: None,
    };
    let schema = InputSchema {
        format: RecordFormat::json(),
        columns: vec![
            column("TICKER", SqlType::Varchar(8)),
            column("PRICE", SqlType::Double),
            column("EVENT_TIME", SqlType::Timestamp),
        ],
    };
    let made = Engine::new(EngineDef {
        input_stream: "SOURCE_SQL_STREAM_001".into(),
        schema,
        program,
        outputs: Default::default(),
        delay_ms: 0,
        groups_max: 10,
    });
    if let Err(EngineError::Code {
        statement, line, ..
    }) = made
    {
        assert!(statement >= 1 && line >= 1);
    }
}

/// The KinesisAnalytics API's application request (`CreateApplication`):
/// any body is refused naming a field, or gives an application within
/// KDA's bounds.
pub fn analytics_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match crate::config::analytics::api::from_request("fuzz", &req) {
        Ok(c) => {
            assert!(c.outputs.len() <= 3);
            assert!(!c.input.columns.is_empty());
            assert!(c.sql.len() <= crate::config::analytics::SQL_BYTES_MAX);
            let _ = crate::analytics::input_schema(&c);
        }
        Err(e) => assert!(!e.field.is_empty()),
    }
}

/// The flat JSON decoder of the Parquet encoding: the input split at each
/// newline into records, in a schema of two `Int64` and two `Utf8` columns
/// (one not nullable): whatever it takes, `arrow-json` reads alike.
pub fn flat_records(data: &[u8]) {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let records: Vec<crate::record::Record> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| crate::record::Record {
            offset: i as u64,
            arrival_ms: 0,
            key: bytes::Bytes::new(),
            data: bytes::Bytes::copy_from_slice(line),
        })
        .collect();
    if let Err(e) = crate::encode::parquet::flat_decoder_agrees(&records, &schema) {
        panic!("{e}");
    }
}
