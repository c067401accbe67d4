//! Destinations. A [`Sink`] delivers one batch and says whether it worked;
//! it does not retry, buffer or checkpoint. Retries live in one place,
//! [`retry`], around any sink.
//!
//! A sink reports success only once the destination confirmed the batch is
//! stored: the delivery stage moves the checkpoint on that answer alone.

pub mod http;
pub mod iceberg;
pub mod object;
pub mod postgres;
pub mod retry;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::{Destination, ObjectDestination};

use crate::record::Record;

/// One batch on its way to a destination.
pub struct Batch<'a> {
    pub stream: &'a str,
    /// The identity of the stream's log: with (shard, offsets) it names the
    /// batch uniquely, even across a stream deleted and created again.
    pub log_id: &'a str,
    pub shard: u32,
    /// Offsets of the first and last record in the batch.
    pub first_offset: u64,
    pub last_offset: u64,
    /// The object key, for destinations that store objects.
    pub key: &'a str,
    /// The encoded (and compressed) object.
    pub body: &'a Bytes,
    /// The records themselves, for destinations that take them one by one.
    pub records: &'a [Record],
}

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    /// False when retrying cannot help (the request itself is wrong); the
    /// batch still goes through the retry window before the error output, as
    /// a bucket can be created or a permission granted meanwhile.
    pub retryable: bool,
}

/// What the destination confirmed.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Records the destination refused for good while taking the rest (a
    /// row violating a constraint): (index into `Batch::records`, reason).
    /// They go to the error output; retrying cannot help them.
    pub rejected: Vec<(usize, String)>,
    /// The error output type of `rejected` when it is not the
    /// destination's own failure (`format-conversion-failed`).
    pub rejected_type: Option<&'static str>,
    /// For a destination that commits many batches at once (Iceberg): the
    /// batch is written and waits for its commit, which this resolves to.
    /// The batch is delivered only when it resolves Ok.
    pub pending: Option<Pending>,
}

/// A batch written and waiting for the commit that makes it visible.
pub struct Pending(pub futures::future::BoxFuture<'static, Result<(), PendingError>>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

/// Why a written batch was not committed.
#[derive(Debug)]
pub enum PendingError {
    /// Part of it is in the destination already (written by another
    /// writer meanwhile): deliver it again, and what is already there is
    /// left out.
    Replay(String),
    /// The commit failed until the retry window closed, and the
    /// destination was seen not to hold the batch.
    Failed(SinkError),
}

/// The sink that delivers to `destination`.
pub fn build(destination: &Destination, stream: &Stream<'_>) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match destination {
        Destination::Object(d) => object(d)?,
        Destination::Http(h) => Arc::new(http::HttpSink::new(h)?),
        Destination::Postgres(p) => Arc::new(postgres::PostgresSink::new(p)?),
        Destination::Iceberg(i) => Arc::new(iceberg::IcebergSink::new(i, stream)),
    })
}

/// What a sink knows of the stream it delivers for.
pub struct Stream<'a> {
    pub name: &'a str,
    /// How long a commit is retried before its batch goes to the error output.
    pub retry_duration: std::time::Duration,
    /// This node, as writers name themselves (commit summaries).
    pub writer_id: &'a str,
    pub metrics: &'a crate::metrics::Metrics,
    /// The daemon's encoding slots (`limits.encoders_max`), for a sink
    /// that encodes batches itself.
    pub encoders: &'a Arc<tokio::sync::Semaphore>,
}

/// The sink that stores objects in `destination`'s bucket: a stream's
/// destination, its error output or its backup.
pub fn object(destination: &ObjectDestination) -> Result<Arc<object::ObjectSink>, SinkError> {
    object::ObjectSink::new(&destination.store, &destination.bucket).map(Arc::new)
}

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Delivers `batch`; Ok only once the destination has confirmed every
    /// record it did not reject.
    async fn deliver(&self, batch: &Batch<'_>) -> Result<Delivered, SinkError>;

    /// What this sink writes to, for logs and errors (`s3://bucket`).
    fn describe(&self) -> String;

    /// The stream is draining: commit what waits for a commit now, and
    /// from now on at once.
    fn flush(&self) {}
}
