//! Where records go that are not delivered: the error output (with each
//! record's reason) and the backup of source records, as JSON lines, named
//! by the offsets they hold and encrypted as the stream's own objects are.
//! Each is retried until stored or a hard stop comes: never dropped.

use base64::Engine;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use tokio_util::sync::CancellationToken;

use crate::delivery::StreamContext;
use crate::encode::encrypt::{DEFAULT_CHUNK_BYTES, EncryptingWriter, Encryption};
use crate::metrics::Metrics;
use crate::record::Record;
use crate::route::keys::object_name;
use crate::sink::retry::{Outcome, retry_forever};

/// Where records bound for the error output or the backup come from: their
/// shard and, for a batch that was to be delivered, its partition.
#[derive(Clone, Copy)]
pub(super) struct Origin<'a> {
    pub(super) shard: u32,
    pub(super) partition: Option<&'a str>,
}

impl Origin<'_> {
    /// Records of a chunk read from the log (failed before batching, or
    /// its source records).
    pub(super) fn chunk(shard: u32) -> Origin<'static> {
        Origin {
            shard,
            partition: None,
        }
    }

    /// The name of the error output or backup object (`output`: its type,
    /// or `backup`) holding records from `first` to `last`. A delivery
    /// stream reading a Kinesis stream adds a tag of the partition and the
    /// output: the user records of a KPL aggregate share its offset, so
    /// records of two partitions, or the records of one batch refused by the
    /// format and the rest of it, can begin and end at the same offsets,
    /// and would otherwise be written under one name, the later over the
    /// earlier.
    pub(super) fn object_name(
        &self,
        ctx: &StreamContext,
        first: u64,
        last: u64,
        output: &str,
    ) -> String {
        let tag = ctx
            .deaggregates()
            .then(|| (self.partition.unwrap_or_default(), output));
        output_object_name(&ctx.config.name, self.shard, (first, last), tag)
    }
}

/// [`object_name`] of an error output or backup object, with the tag of
/// `(partition, output)` if given (see [`Origin::object_name`]).
pub(super) fn output_object_name(
    stream: &str,
    shard: u32,
    (first, last): (u64, u64),
    tag: Option<(&str, &str)>,
) -> String {
    let name = object_name(stream, shard, first, last, "");
    let Some((partition, output)) = tag else {
        return name;
    };
    let digest: [u8; 16] = Md5::digest(format!("{partition}\n{output}").as_bytes()).into();
    format!(
        "{name}-{}",
        hex::encode(digest.get(..8).unwrap_or_default())
    )
}

/// Writes one JSON line per record to the error output, with its reason,
/// retrying until it is stored or a hard stop comes: never dropped.
pub(super) async fn write_error_output(
    ctx: &StreamContext,
    origin: Origin<'_>,
    records: &[(&Record, String)],
    output_type: &str,
    attempts: u32,
    stop: &CancellationToken,
) -> bool {
    let (cfg, shard) = (&ctx.config, origin.shard);
    let (Some((first, _)), Some((last, _))) = (records.first(), records.last()) else {
        return true;
    };
    let now_ms = Utc::now().timestamp_millis();
    let mut body = Vec::new();
    for (r, reason) in records {
        let line = serde_json::json!({
            "attemptsMade": attempts,
            "arrivalTimestamp": r.arrival_ms,
            "errorCode": output_type,
            "errorMessage": reason,
            "attemptEndingTimestamp": now_ms,
            "rawData": base64::engine::general_purpose::STANDARD.encode(&r.data),
            "deliveryStreamName": cfg.name,
            "shard": shard,
            "offset": r.offset,
        });
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    let at = DateTime::<Utc>::from_timestamp_millis(first.arrival_ms).unwrap_or_else(Utc::now);
    let key = format!(
        "{}{}",
        cfg.error_output
            .error_output_prefix
            .render(at, Some(output_type)),
        origin.object_name(ctx, first.offset, last.offset, output_type)
    );
    let Some((key, body)) = side_object(ctx, key, body).await else {
        return false;
    };
    let stored = put_until_stored(&ctx.errors, &key, body, stop, &cfg.name, shard).await;
    if stored {
        ctx.metrics
            .error_output_records
            .get_or_create(&Metrics::stream(&cfg.name))
            .inc_by(records.len() as u64);
    }
    stored
}

/// Writes the source records, as JSON lines, to the backup store.
pub(super) async fn write_backup(
    ctx: &StreamContext,
    origin: Origin<'_>,
    records: &[&Record],
    stop: &CancellationToken,
) -> bool {
    let (cfg, shard) = (&ctx.config, origin.shard);
    let (Some(backup), Some(sink)) = (&cfg.backup, &ctx.backup) else {
        return true;
    };
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return true;
    };
    let mut body = Vec::new();
    for r in records {
        body.extend_from_slice(&r.data);
        if !r.data.ends_with(b"\n") {
            body.push(b'\n');
        }
    }
    let at = DateTime::<Utc>::from_timestamp_millis(first.arrival_ms).unwrap_or_else(Utc::now);
    let key = format!(
        "{}{}",
        backup.target.prefix.render(at, None),
        origin.object_name(ctx, first.offset, last.offset, "backup")
    );
    let Some((key, body)) = side_object(ctx, key, body).await else {
        return false;
    };
    put_until_stored(sink, &key, body, stop, &cfg.name, shard).await
}

/// How the error output and backups of this stream are encrypted: with
/// its objects' keys when it encrypts its objects, else with the key its
/// log is sealed with, so records sealed at rest are never written out in
/// clear beside it. None: in clear, as the stream's own objects.
fn side_encryption(ctx: &StreamContext) -> Option<Encryption> {
    if let Some(e) = &ctx.config.encryption {
        return Some(e.clone());
    }
    let id = ctx.log.sealing_key()?;
    let secret = ctx.log.keyring().secret(&id)?.clone();
    Some(Encryption {
        keys: vec![(id, secret)],
        chunk_bytes: DEFAULT_CHUNK_BYTES,
    })
}

/// `body` as the error output or backup object `key` holds it: encrypted
/// (named `….enc`) when [`side_encryption`] says so. None only if
/// encrypting failed, which is never written in clear instead.
async fn side_object(
    ctx: &StreamContext,
    key: String,
    body: Vec<u8>,
) -> Option<(String, bytes::Bytes)> {
    let Some(enc) = side_encryption(ctx) else {
        return Some((key, bytes::Bytes::from(body)));
    };
    let sealed = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let (id, secret) = enc.current();
        let mut w = EncryptingWriter::new(Vec::new(), id, secret, enc.chunk_bytes)?;
        std::io::Write::write_all(&mut w, &body)?;
        w.finish()
    })
    .await;
    let error = match sealed {
        Ok(Ok(b)) => return Some((format!("{key}.enc"), bytes::Bytes::from(b))),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(
        stream = ctx.config.name,
        key,
        error,
        "cannot encrypt an error output or backup object; its records stay in the log"
    );
    None
}

pub(super) async fn put_until_stored(
    sink: &crate::sink::object::ObjectSink,
    key: &str,
    body: bytes::Bytes,
    stop: &CancellationToken,
    stream: &str,
    shard: u32,
) -> bool {
    let outcome = retry_forever(
        stop,
        |attempt, e| tracing::error!(stream, shard, key, attempt, error = %e, "cannot write to the error output or backup; retrying"),
        || sink.put(key, body.clone()),
    )
    .await;
    matches!(outcome, Outcome::Delivered { .. })
}
