//! Destinations. A [`Sink`] delivers one batch and says whether it worked;
//! it does not retry, buffer or checkpoint. Retries live in one place,
//! [`retry`], around any sink.
//!
//! A sink reports success only once the destination confirmed the batch is
//! stored: the delivery stage moves the checkpoint on that answer alone.

pub mod http;
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
}

/// The sink that delivers to `destination`.
pub fn build(destination: &Destination) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match destination {
        Destination::Object(d) => object(d)?,
        Destination::Http(h) => Arc::new(http::HttpSink::new(h)?),
        Destination::Postgres(p) => Arc::new(postgres::PostgresSink::new(p)?),
    })
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
}
