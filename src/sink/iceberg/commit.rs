//! The committer of one table: data files written by every shard wait here
//! and go into one snapshot per interval (a commit per batch would flood
//! the table with snapshots), and each batch's delivery learns the outcome.
//!
//! Exactly once: before committing, the committer reloads the table and
//! reads its [`Ledger`]; a batch the table already holds is confirmed
//! without committing it again, one it holds in part is sent back to be
//! delivered anew (what is already there is left out then). After a commit,
//! whatever the library answered, the table is read again and the commit's
//! marker looked up: only a commit found there is confirmed. A commit whose
//! outcome is unknown is never given up on blindly: its batches stay until
//! the table can be read, and only a batch seen not to be in the table goes
//! to the error output once its retry window closed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::ledger::{self, COMMIT_PROP, Held, Ledger, RANGES_PROP, WRITER_PROP};
use crate::config::iceberg::SnapshotPolicy;
use crate::metrics::{IcebergMetrics, TableLabel};
use crate::sink::{PendingError, SinkError};

/// A batch's files, waiting for a commit.
pub struct Staged {
    pub files: Vec<DataFile>,
    /// The offsets the files hold, by source.
    pub ranges: BTreeMap<String, Vec<(u64, u64)>>,
    /// After this, a batch seen not to be in the table fails.
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<(), PendingError>>,
}

/// The handle of a table's committer task.
pub struct Committer {
    tx: mpsc::Sender<Staged>,
    flush: Arc<Notify>,
    /// What the table holds, as last read (and as committed since).
    pub ledger: Arc<Mutex<Ledger>>,
}

/// What the committer task needs.
pub struct Settings {
    pub catalog: Arc<dyn Catalog>,
    pub ident: TableIdent,
    pub interval: Duration,
    pub snapshots: SnapshotPolicy,
    pub writer_id: String,
    pub metrics: IcebergMetrics,
    pub label: TableLabel,
    /// Batches waiting at once, over every shard.
    pub queue_max: usize,
}

impl Committer {
    /// Starts the committer of a table whose ledger is `ledger`.
    pub fn start(settings: Settings, ledger: Ledger) -> Committer {
        let (tx, rx) = mpsc::channel(settings.queue_max.max(1));
        let flush = Arc::new(Notify::new());
        let ledger = Arc::new(Mutex::new(ledger));
        let task = Task {
            s: settings,
            rx,
            flush: flush.clone(),
            ledger: ledger.clone(),
            pending: Vec::new(),
            flushing: false,
        };
        tokio::spawn(task.run());
        Committer { tx, flush, ledger }
    }

    /// Hands a batch's files over; the receiver learns the outcome.
    pub async fn stage(&self, staged: Staged) -> Result<(), SinkError> {
        self.tx.send(staged).await.map_err(|_| SinkError {
            message: "the table's committer stopped".into(),
            retryable: true,
        })
    }

    /// Commits what waits now, and from now on at once.
    pub fn flush(&self) {
        self.flush.notify_one();
    }

    /// The parts of `span` of `source` the table does not hold.
    pub fn uncovered(&self, source: &str, span: (u64, u64)) -> Vec<(u64, u64)> {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .uncovered(source, span)
    }
}

struct Task {
    s: Settings,
    rx: mpsc::Receiver<Staged>,
    flush: Arc<Notify>,
    ledger: Arc<Mutex<Ledger>>,
    pending: Vec<Staged>,
    flushing: bool,
}

/// Longest pause between two attempts after a failed commit.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Task {
    async fn run(mut self) {
        let mut due: Option<Instant> = None;
        let mut backoff = Duration::from_millis(500);
        // The table closed (no delivery holds it): what waits is committed,
        // then the task ends.
        let mut closed = false;
        loop {
            if closed {
                self.pending.retain(|p| !p.reply.is_closed());
                if self.pending.is_empty() {
                    break;
                }
            }
            tokio::select! {
                m = self.rx.recv(), if !closed => {
                    let Some(staged) = m else {
                        closed = true;
                        self.flushing = true;
                        due = Some(Instant::now());
                        continue;
                    };
                    self.pending.push(staged);
                    if self.flushing {
                        due = Some(Instant::now());
                    } else if due.is_none() {
                        due = Some(Instant::now() + self.s.interval);
                    }
                }
                _ = self.flush.notified() => {
                    self.flushing = true;
                    due = Some(Instant::now());
                }
                _ = sleep_until(due), if due.is_some() => {
                    // Take what else arrived meanwhile into the same commit.
                    while let Ok(staged) = self.rx.try_recv() {
                        self.pending.push(staged);
                    }
                    match self.commit().await {
                        Ok(()) => {
                            backoff = Duration::from_millis(500);
                            due = None;
                        }
                        Err(e) => {
                            tracing::warn!(table = %self.s.ident, error = %e, retry_in_ms = backoff.as_millis() as u64, "iceberg commit failed; retrying");
                            self.s.metrics.commit_failures.get_or_create(&self.s.label).inc();
                            due = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                    if self.pending.is_empty() && !self.flushing {
                        due = None;
                    }
                }
            }
        }
    }

    /// Reads the table, settles what it already holds, and commits the rest
    /// in one snapshot. Err: nothing is settled for the batches left.
    async fn commit(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let table = self.load().await?;
        self.settle();
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let commit_id = uuid::Uuid::new_v4();
        let files: Vec<DataFile> = self
            .pending
            .iter()
            .flat_map(|p| p.files.iter().cloned())
            .collect();
        let all = ranges_of(&self.pending);
        let (n_files, bytes, records) = (
            files.len() as u64,
            files.iter().map(|f| f.file_size_in_bytes()).sum::<u64>(),
            files.iter().map(|f| f.record_count()).sum::<u64>(),
        );
        let props = HashMap::from([
            (WRITER_PROP.to_string(), self.s.writer_id.clone()),
            (COMMIT_PROP.to_string(), commit_id.to_string()),
            (RANGES_PROP.to_string(), ledger::encode(&all)),
        ]);
        crate::failpoint::hit("iceberg-before-commit");
        let tx = Transaction::new(&table);
        let outcome = match tx
            .fast_append()
            .set_commit_uuid(commit_id)
            .set_snapshot_properties(props)
            .add_data_files(files)
            .apply(tx)
        {
            Ok(tx) => tx.commit(self.s.catalog.as_ref()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        // Whatever the answer, only the table says whether it landed (the
        // SQL catalog can report success for a write its database dropped).
        let table = self.load().await.map_err(|e| match &outcome {
            Err(c) => format!("{c}; then, reading the table: {e}"),
            Ok(()) => format!("committed, then reading the table failed: {e}"),
        })?;
        let landed = table.metadata().snapshots().any(|s| {
            s.summary().additional_properties.get(COMMIT_PROP) == Some(&commit_id.to_string())
        });
        if !landed {
            return Err(match outcome {
                Err(e) => e.to_string(),
                Ok(()) => "the commit is not in the table".into(),
            });
        }
        crate::failpoint::hit("iceberg-committed");
        let m = &self.s.metrics;
        m.commits.get_or_create(&self.s.label).inc();
        m.commit_seconds
            .get_or_create(&self.s.label)
            .observe(started.elapsed().as_secs_f64());
        m.committed_files
            .get_or_create(&self.s.label)
            .inc_by(n_files);
        m.committed_bytes.get_or_create(&self.s.label).inc_by(bytes);
        m.committed_records
            .get_or_create(&self.s.label)
            .inc_by(records);
        tracing::debug!(table = %self.s.ident, files = n_files, bytes, records, ms = started.elapsed().as_millis() as u64, "iceberg commit");
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(&all);
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Ok(()));
        }
        self.expire(table).await;
        Ok(())
    }

    /// Loads the table and takes its snapshots' ranges into the ledger.
    async fn load(&self) -> Result<Table, String> {
        let table = self
            .s
            .catalog
            .load_table(&self.s.ident)
            .await
            .map_err(|e| format!("cannot load the table: {e}"))?;
        let read = Ledger::from_summaries(
            table
                .metadata()
                .snapshots()
                .map(|s| &s.summary().additional_properties),
        );
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(read.sources());
        Ok(table)
    }

    /// Answers the batches the ledger settles: held whole (committed
    /// before, by this writer or another), held in part (deliver again),
    /// or past their deadline and not held (failed).
    fn settle(&mut self) {
        let now = Instant::now();
        let l = self
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut keep = Vec::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            match l.holds(&p.ranges) {
                Held::All => {
                    let _ = p.reply.send(Ok(()));
                }
                Held::Part => {
                    self.s
                        .metrics
                        .abandoned_files
                        .get_or_create(&self.s.label)
                        .inc_by(p.files.len() as u64);
                    let _ = p.reply.send(Err(PendingError::Replay(
                        "part of the batch is in the table already".into(),
                    )));
                }
                Held::None if now >= p.deadline => {
                    self.s
                        .metrics
                        .abandoned_files
                        .get_or_create(&self.s.label)
                        .inc_by(p.files.len() as u64);
                    let _ = p.reply.send(Err(PendingError::Failed(SinkError {
                        message: "the commit failed until the retry window closed".into(),
                        retryable: true,
                    })));
                }
                Held::None => keep.push(p),
            }
        }
        self.pending = keep;
    }

    /// Expires snapshots as the policy says (metadata only; files stay
    /// until `hydrant iceberg clean-orphans`). Failure is logged: the next
    /// commit tries again.
    async fn expire(&self, table: Table) {
        let count = table.metadata().snapshots().count();
        let label = &self.s.label;
        let older_than =
            chrono::Utc::now().timestamp_millis() - self.s.snapshots.max_age.as_millis() as i64;
        let oldest = table
            .metadata()
            .snapshots()
            .map(|s| s.timestamp_ms())
            .min()
            .unwrap_or(i64::MAX);
        if count <= self.s.snapshots.keep_min || oldest >= older_than {
            self.s
                .metrics
                .snapshots
                .get_or_create(label)
                .set(count as i64);
            return;
        }
        let tx = Transaction::new(&table);
        let res = match tx
            .expire_snapshots()
            .expire_older_than_ms(older_than)
            .retain_last(self.s.snapshots.keep_min)
            .apply(tx)
        {
            Ok(tx) => tx.commit(self.s.catalog.as_ref()).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(t) => {
                let n = t.metadata().snapshots().count();
                self.s.metrics.snapshots.get_or_create(label).set(n as i64);
            }
            Err(e) => {
                tracing::warn!(table = %self.s.ident, error = %e, "expiring snapshots failed");
                self.s
                    .metrics
                    .snapshots
                    .get_or_create(label)
                    .set(count as i64);
            }
        }
    }
}

/// The ranges of every pending batch, by source.
fn ranges_of(pending: &[Staged]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut l = Ledger::default();
    for p in pending {
        l.merge(&p.ranges);
    }
    l.sources().clone()
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
