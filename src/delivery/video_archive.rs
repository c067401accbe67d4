//! Video archives: each persisted fragment of an archived stream written
//! as a playable MKV object (the upload's header and the fragment's
//! cluster) to `video.archive.destination`, under `PREFIX STREAM/NUMBER.mkv`,
//! the prefix rendered at the fragment's producer time as Firehose renders
//! prefixes (`YYYY/MM/DD/HH/` appended unless it has `!{timestamp:…}`). The
//! archiver reads the stream's log from its checkpoint, writes each object
//! until the store confirms it (retrying as long as it takes), then moves
//! the checkpoint on: at least once, and a key names one fragment, so a
//! fragment written again after a crash replaces itself. Retention never
//! deletes a fragment not archived yet.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::ObjectDestination;
use crate::log::checkpoint;
use crate::sink::object::ObjectSink;
use crate::sink::retry::{Outcome, retry_forever};
use crate::video::{VideoStream, fragment};

/// Fragments read from the log at once.
const READ_FRAGMENTS_MAX: usize = 16;

fn checkpoint_path(s: &VideoStream) -> std::path::PathBuf {
    s.dir().join("archive.checkpoint")
}

/// The object key of the fragment at `offset`, which arrived at `producer_ms`.
pub fn key(dest: &ObjectDestination, s: &VideoStream, offset: u64, producer_ms: i64) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(producer_ms).unwrap_or_else(Utc::now);
    format!(
        "{}{}/{}.mkv",
        dest.prefix.render(at, None),
        s.name,
        s.index.numbering.number(offset)
    )
}

/// Archives `s` until it is deleted. Blocking reads go to blocking threads.
pub async fn run(s: Arc<VideoStream>, dest: ObjectDestination, sink: Arc<ObjectSink>) {
    let path = checkpoint_path(&s);
    let mut next = match tokio::task::block_in_place(|| checkpoint::read(&path)) {
        Ok(n) => n.unwrap_or(0),
        Err(e) => {
            tracing::error!(stream = s.name, error = %e, "cannot read the video archive checkpoint; archiving stops");
            return;
        }
    };
    s.archived.store(next, Ordering::Release);
    let Some(shard) = s.log.shard(0) else { return };
    let mut durable = shard.subscribe();
    while !s.deleted.is_cancelled() {
        let sh = shard.clone();
        let from = next.max(shard.oldest_offset());
        let read =
            tokio::task::spawn_blocking(move || sh.reader(from).read(READ_FRAGMENTS_MAX, 64 << 20))
                .await;
        let records = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(stream = s.name, error = %e, "the video archive cannot read the log; again in a second");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        if records.is_empty() {
            tokio::select! {
                _ = durable.changed() => {}
                _ = s.deleted.cancelled() => return,
            }
            continue;
        }
        for r in records {
            if let Some(f) = fragment::decode(&r.data) {
                let k = key(&dest, &s, r.offset, f.meta.producer_ms);
                let mut body = Vec::with_capacity(f.header.len() + f.cluster.len());
                body.extend_from_slice(&f.header);
                body.extend_from_slice(&f.cluster);
                let body = Bytes::from(body);
                let stored = retry_forever(
                    &s.deleted,
                    |attempt, e| tracing::warn!(stream = s.name, key = k, attempt, error = %e, "cannot archive a fragment; retrying"),
                    || sink.put(&k, body.clone()),
                )
                .await;
                if !matches!(stored, Outcome::Delivered { .. }) {
                    return;
                }
            }
            next = r.offset + 1;
        }
        let p = path.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || checkpoint::write(&p, next))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        {
            tracing::warn!(stream = s.name, error = %e, "cannot write the video archive checkpoint");
            continue;
        }
        s.archived.store(next, Ordering::Release);
    }
}
