//! The Apache Iceberg destination: a stream's batches become Parquet data
//! files of one table, committed in snapshots, exactly once.
//!
//! A delivery writes its batch's files (named deterministically from the
//! stream, its log, the shard and the offsets) and hands them to the
//! table's [`commit::Committer`]; the batch counts as delivered, and the
//! checkpoint passes it, only when the commit holding it is confirmed in
//! the table. Offsets the table already holds (committed before a crash,
//! the checkpoint not yet moved) are left out of the files, as the
//! [`ledger`] read from the snapshots says.
//!
//! `catalog.rs` opens the SQL catalog, `storage.rs` is the file I/O on
//! Hydrant's object store client, `table.rs` finds, creates and evolves the
//! table, `files.rs` writes and describes data files, `orphans.rs` finds
//! files no snapshot references.

pub mod catalog;
pub mod commit;
pub mod files;
pub mod ledger;
pub mod orphans;
pub mod storage;
pub mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use iceberg::io::Storage;
use tokio::sync::{OnceCell, oneshot};

use super::{Batch, Delivered, Pending, PendingError, Sink, SinkError, Stream};
use crate::config::IcebergDestination;
use crate::metrics::{IcebergMetrics, TableLabel};
use crate::record::Record;
use commit::{Committer, Settings, Staged};
use files::TableShape;
use ledger::Ledger;

/// Delivers a stream's batches into an Iceberg table.
pub struct IcebergSink {
    cfg: Arc<IcebergDestination>,
    retry_duration: Duration,
    writer_id: String,
    metrics: IcebergMetrics,
    label: TableLabel,
    state: OnceCell<State>,
    flushing: AtomicBool,
    describe: String,
}

/// The open table: its storage, its shape, its committer.
struct State {
    storage: storage::ObjectStorage,
    shape: Arc<TableShape>,
    committer: Committer,
}

impl IcebergSink {
    pub fn new(cfg: &IcebergDestination, stream: &Stream<'_>) -> IcebergSink {
        let table = format!("{}.{}", cfg.namespace, cfg.table);
        IcebergSink {
            describe: format!("iceberg://{}/{table}", cfg.catalog.name),
            label: IcebergMetrics::table(&cfg.catalog.name, &table),
            cfg: Arc::new(cfg.clone()),
            retry_duration: stream.retry_duration,
            writer_id: stream.writer_id.to_string(),
            metrics: stream.metrics.iceberg.clone(),
            state: OnceCell::new(),
            flushing: AtomicBool::new(false),
        }
    }

    /// Opens the catalog and the table, reads the table's ledger and starts
    /// its committer.
    async fn open(&self) -> Result<State, SinkError> {
        let cat = catalog::open(&self.cfg.catalog).await?;
        let table = table::open(cat.catalog.as_ref(), &self.cfg).await?;
        let meta = table.metadata();
        let schema = meta.current_schema().clone();
        let shape = TableShape {
            arrow: files::arrow_schema(&schema).map_err(|e| SinkError {
                message: format!("the table's schema has no Arrow form: {e}"),
                retryable: false,
            })?,
            schema,
            spec: meta.default_partition_spec().clone(),
            data_location: meta
                .properties()
                .get("write.data.path")
                .cloned()
                .unwrap_or_else(|| format!("{}/data", meta.location().trim_end_matches('/'))),
            declared: self.cfg.parquet.clone(),
            file_bytes_max: self.cfg.file_bytes_max,
        };
        let ledger =
            Ledger::from_summaries(meta.snapshots().map(|s| &s.summary().additional_properties));
        let committer = Committer::start(
            Settings {
                catalog: cat.catalog.clone(),
                ident: table.identifier().clone(),
                interval: self.cfg.commit_interval,
                snapshots: self.cfg.snapshots,
                writer_id: self.writer_id.clone(),
                metrics: self.metrics.clone(),
                label: self.label.clone(),
                queue_max: self.cfg.awaiting_commit_max,
            },
            ledger,
        );
        if self.flushing.load(Ordering::Acquire) {
            committer.flush();
        }
        Ok(State {
            storage: cat.storage,
            shape: Arc::new(shape),
            committer,
        })
    }
}

/// Whether `offset` is in one of `spans` (sorted, disjoint).
fn in_spans(offset: u64, spans: &[(u64, u64)]) -> bool {
    let i = spans.partition_point(|&(_, last)| last < offset);
    spans.get(i).is_some_and(|&(first, _)| first <= offset)
}

/// A short, stable tag of a log id for file names.
fn log_tag(log_id: &str) -> String {
    log_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect()
}

#[async_trait]
impl Sink for IcebergSink {
    async fn deliver(&self, batch: &Batch<'_>) -> Result<Delivered, SinkError> {
        let st = self.state.get_or_try_init(|| self.open()).await?;
        let (Some(first), Some(last)) = (
            batch.records.first().map(|r| r.offset),
            batch.records.last().map(|r| r.offset),
        ) else {
            return Ok(Delivered::default());
        };
        let source = ledger::source_key(batch.stream, batch.log_id, batch.shard);
        let spans = st.committer.uncovered(&source, (first, last));
        if spans.is_empty() {
            // Committed before (the checkpoint had not moved past it).
            return Ok(Delivered::default());
        }
        let keep: Vec<usize> = (0..batch.records.len())
            .filter(|&i| in_spans(batch.records[i].offset, &spans))
            .collect();
        let records: Vec<Record> = keep.iter().map(|&i| batch.records[i].clone()).collect();
        let (Some(a), Some(b)) = (records.first(), records.last()) else {
            return Ok(Delivered::default());
        };
        let name = format!(
            "{}-{}-{:05}-{:020}-{:020}",
            batch.stream,
            log_tag(batch.log_id),
            batch.shard,
            a.offset,
            b.offset
        );
        let shape = st.shape.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            crate::sched::background_thread();
            files::encode(&records, &shape, &name)
        })
        .await
        .map_err(|e| SinkError {
            message: format!("encoding task failed: {e}"),
            retryable: true,
        })?
        .map_err(|e| SinkError {
            message: format!("cannot write the data files: {e}"),
            retryable: false,
        })?;
        let rejected: Vec<(usize, String)> = encoded
            .rejected
            .into_iter()
            .filter_map(|(i, why)| keep.get(i).map(|&j| (j, why)))
            .collect();
        for f in &encoded.files {
            st.storage
                .write(&f.location, f.body.clone())
                .await
                .map_err(|e| SinkError {
                    message: format!("cannot store {}: {e}", f.location),
                    retryable: true,
                })?;
        }
        if encoded.files.is_empty() {
            return Ok(Delivered {
                rejected,
                rejected_type: Some("format-conversion-failed"),
                pending: None,
            });
        }
        let (reply, outcome) = oneshot::channel();
        st.committer
            .stage(Staged {
                files: encoded.files.into_iter().map(|f| f.file).collect(),
                ranges: BTreeMap::from([(source, spans)]),
                deadline: tokio::time::Instant::now() + self.retry_duration,
                reply,
            })
            .await?;
        let pending = Pending(Box::pin(async move {
            outcome
                .await
                .unwrap_or_else(|_| Err(PendingError::Replay("the committer stopped".into())))
        }));
        Ok(Delivered {
            rejected,
            rejected_type: Some("format-conversion-failed"),
            pending: Some(pending),
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn flush(&self) {
        self.flushing.store(true, Ordering::Release);
        if let Some(st) = self.state.get() {
            st.committer.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_found_in_sorted_spans() {
        let spans = [(0, 9), (20, 29)];
        assert!(in_spans(0, &spans));
        assert!(in_spans(9, &spans));
        assert!(!in_spans(10, &spans));
        assert!(in_spans(25, &spans));
        assert!(!in_spans(30, &spans));
        assert!(!in_spans(5, &[]));
    }
}
