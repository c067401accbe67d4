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
pub mod infer;
pub mod ledger;
pub mod orphans;
pub mod storage;
pub mod table;
mod tables;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use iceberg::io::Storage;
use tokio::sync::{OnceCell, oneshot};

use super::{Batch, Delivered, Pending, PendingError, Sink, SinkError, Stream};
use crate::config::IcebergDestination;
use crate::encode::parquet::ParquetOptions;
use crate::metrics::IcebergMetrics;
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
    /// Encoding holds a slot, as object destinations' does.
    encoders: Arc<tokio::sync::Semaphore>,
    catalog: OnceCell<catalog::OpenCatalog>,
    tables: tables::Tables<State>,
    flushing: AtomicBool,
    describe: String,
}

/// An open table: its catalog and storage, its shape, its committer.
struct State {
    ident: iceberg::TableIdent,
    catalog: Arc<dyn iceberg::Catalog>,
    storage: storage::ObjectStorage,
    shape: std::sync::RwLock<Arc<TableShape>>,
    /// Held while columns are added for new fields.
    evolving: tokio::sync::Mutex<()>,
    committer: Committer,
}

impl State {
    fn shape(&self) -> Arc<TableShape> {
        self.shape.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl IcebergSink {
    pub fn new(cfg: &IcebergDestination, stream: &Stream<'_>) -> IcebergSink {
        let table = format!("{}.{}", cfg.namespace, cfg.table);
        let describe = match cfg.route {
            None => format!("iceberg://{}/{table}", cfg.catalog.name),
            Some(_) => format!("iceberg://{}/(routed)", cfg.catalog.name),
        };
        IcebergSink {
            describe,
            tables: tables::Tables::new(cfg.tables_open_max),
            catalog: OnceCell::new(),
            cfg: Arc::new(cfg.clone()),
            retry_duration: stream.retry_duration,
            writer_id: stream.writer_id.to_string(),
            metrics: stream.metrics.iceberg.clone(),
            encoders: stream.encoders.clone(),
            flushing: AtomicBool::new(false),
        }
    }

    /// What writing into `table` needs of it.
    fn shape(&self, table: &iceberg::table::Table) -> Result<TableShape, SinkError> {
        let meta = table.metadata();
        let schema = meta.current_schema().clone();
        let arrow = files::arrow_schema(&schema).map_err(|e| SinkError {
            message: format!("the table's schema has no Arrow form: {e}"),
            retryable: false,
        })?;
        let decode = match &self.cfg.columns {
            Some(c) => c.parquet.clone(),
            None => ParquetOptions {
                schema: arrow.clone(),
                row_group_rows: 1_000_000,
                compression: self.cfg.compression.clone(),
                level: None,
                dictionary: true,
            },
        };
        Ok(TableShape {
            arrow,
            schema,
            spec: meta.default_partition_spec().clone(),
            data_location: meta
                .properties()
                .get("write.data.path")
                .cloned()
                .unwrap_or_else(|| format!("{}/data", meta.location().trim_end_matches('/'))),
            declared: decode,
            file_bytes_max: self.cfg.file_bytes_max,
        })
    }

    /// Opens the catalog and the table (created from `first`, the first
    /// batch's records, if it must be and no columns are declared), reads
    /// the table's ledger and starts its committer.
    async fn open(
        &self,
        ident: &iceberg::TableIdent,
        first: &[Record],
    ) -> Result<State, SinkError> {
        let cat = self
            .catalog
            .get_or_try_init(|| catalog::open(&self.cfg.catalog))
            .await?;
        let table = table::open(cat.catalog.as_ref(), &self.cfg, ident, first).await?;
        let shape = self.shape(&table)?;
        let ledger = Ledger::from_summaries(
            table
                .metadata()
                .snapshots()
                .map(|s| &s.summary().additional_properties),
        );
        let committer = Committer::start(
            Settings {
                catalog: cat.catalog.clone(),
                ident: table.identifier().clone(),
                interval: self.cfg.commit_interval,
                snapshots: self.cfg.snapshots,
                writer_id: self.writer_id.clone(),
                metrics: self.metrics.clone(),
                label: IcebergMetrics::table(
                    &self.cfg.catalog.name,
                    &format!("{}.{}", ident.namespace().join("."), ident.name()),
                ),
                queue_max: self.cfg.awaiting_commit_max,
            },
            ledger,
        );
        if self.flushing.load(Ordering::Acquire) {
            committer.flush();
        }
        Ok(State {
            ident: ident.clone(),
            catalog: cat.catalog.clone(),
            storage: cat.storage.clone(),
            shape: std::sync::RwLock::new(Arc::new(shape)),
            evolving: tokio::sync::Mutex::new(()),
            committer,
        })
    }

    /// Encodes `records` into data files (holding an encoding slot, on a
    /// blocking thread) and stores them.
    async fn write(
        &self,
        st: &State,
        records: Vec<Record>,
        name: String,
    ) -> Result<files::Encoded, SinkError> {
        let shape = st.shape();
        let slot = self
            .encoders
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| SinkError {
                message: format!("no encoding slot: {e}"),
                retryable: true,
            })?;
        let encoded = tokio::task::spawn_blocking(move || {
            let _slot = slot;
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
        // A batch's files (one per partition) are stored a few at a time.
        let writes: Vec<_> = encoded
            .files
            .iter()
            .map(|f| write_file(st.storage.clone(), f.location.clone(), f.body.clone()))
            .collect();
        futures::stream::iter(writes)
            .buffer_unordered(FILE_WRITES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(encoded)
    }

    /// Without declared columns: adds a column for each top-level field of
    /// `records` the table lacks (with schema evolution on).
    async fn evolve(&self, st: &State, records: &[Record]) -> Result<(), SinkError> {
        if self.cfg.columns.is_some() || !self.cfg.evolve_schema {
            return Ok(());
        }
        let recs = records.to_vec();
        let fields = tokio::task::spawn_blocking(move || infer::fields(&recs))
            .await
            .map_err(|e| SinkError {
                message: format!("schema inference task failed: {e}"),
                retryable: true,
            })?
            .unwrap_or_default();
        let known = |s: &TableShape| {
            fields
                .iter()
                .all(|f| s.schema.field_by_name(f.name()).is_some())
        };
        if known(&st.shape()) {
            return Ok(());
        }
        let _one = st.evolving.lock().await;
        if known(&st.shape()) {
            return Ok(());
        }
        let table = st
            .catalog
            .load_table(&st.ident)
            .await
            .map_err(|e| SinkError {
                message: format!("cannot load the table: {e}"),
                retryable: true,
            })?;
        let table = table::evolve_from_records(st.catalog.as_ref(), table, &fields).await?;
        let shape = Arc::new(self.shape(&table)?);
        *st.shape.write().unwrap_or_else(|p| p.into_inner()) = shape;
        Ok(())
    }
}

impl IcebergSink {
    /// The table of a batch: the destination's, or, routed, its partition
    /// `namespace/table`. None: the route gave names no table can have.
    fn table_of(&self, key: &str) -> Option<iceberg::TableIdent> {
        let (ns, table) = match self.cfg.route {
            None => (self.cfg.namespace.as_str(), self.cfg.table.as_str()),
            Some(_) => key.split_once('/')?,
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 255
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        (ok(ns) && ok(table) && self.cfg.allows(ns, table)).then(|| {
            iceberg::TableIdent::new(
                iceberg::NamespaceIdent::new(ns.to_string()),
                table.to_string(),
            )
        })
    }
}

/// Data files of one batch stored at once.
const FILE_WRITES_IN_FLIGHT: usize = 8;

/// Stores one data file.
async fn write_file(
    storage: storage::ObjectStorage,
    location: String,
    body: bytes::Bytes,
) -> Result<(), SinkError> {
    storage.write(&location, body).await.map_err(|e| SinkError {
        message: format!("cannot store {location}: {e}"),
        retryable: true,
    })
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
        let Some(ident) = self.table_of(batch.key) else {
            let why = format!(
                "the route gives `{}`, which is not NAMESPACE/TABLE of names{}",
                batch.key,
                if self.cfg.tables.is_some() {
                    " of a table in DestinationTableConfigurationList"
                } else {
                    ""
                }
            );
            return Ok(Delivered {
                rejected: (0..batch.records.len()).map(|i| (i, why.clone())).collect(),
                rejected_type: Some("partitioning-failed"),
                pending: None,
            });
        };
        let slot = self.tables.slot(&ident);
        let st = slot
            .get_or_try_init(|| async {
                let st = self.open(&ident, batch.records).await?;
                Ok::<_, SinkError>(Arc::new(st))
            })
            .await?
            .clone();
        let st = &*st;
        self.evolve(st, batch.records).await?;
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
        let encoded = self.write(st, records, name).await?;
        let rejected: Vec<(usize, String)> = encoded
            .rejected
            .into_iter()
            .filter_map(|(i, why)| keep.get(i).map(|&j| (j, why)))
            .collect();
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
        self.tables.each(|st| st.committer.flush());
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
