//! Kinesis queues: a stream consumed as a queue. Each record is delivered
//! to one receiver at a time, redelivered when its visibility timeout
//! passes without an acknowledgement, and set aside as a dead letter after
//! `MaxReceiveCount` receives. A queue is another reader of its stream's
//! log: it takes fresh records from a cursor per shard and tracks only what
//! it handed out and was not acknowledged, so its state is bounded by the
//! records in flight (`kinesis.queue_in_flight_max`), not by the stream.
//!
//! Each queue lives in `data_dir/queues/NAME/`: `queue.json` (its
//! definition, written atomically) and its state ([`journal`]), where every
//! change is fsynced before the request that made it is answered: an
//! acknowledged record is never delivered again after a crash, and one
//! handed out and not acknowledged always is. Records the stream's
//! retention removes stop being delivered. Queues run on a local log only
//! (in cluster mode each node would hold its own state).

pub mod handle;
mod journal;
mod ops;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

pub use ops::{Received, Settle, SettleError};

use super::{KinesisError, KinesisStream};
use crate::log::files::write_atomic;
use journal::Journal;
use state::QueueState;

/// Where a new queue starts in its stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    TrimHorizon,
    Latest,
    AtTimestamp(i64),
}

/// A queue's definition, as `queue.json` holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    /// Random, in the queue's ARN and its receipt handles.
    pub id: String,
    pub stream: String,
    /// The stream's incarnation: a queue of a deleted stream is not one of
    /// a new stream of the same name.
    pub incarnation: u32,
    pub created_ms: i64,
    pub start: Start,
    pub visibility_secs: u32,
    /// None: dead-letter handling off.
    pub max_receive: Option<u32>,
    pub tags: BTreeMap<String, String>,
    /// The resource policy (stored and returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl QueueDef {
    /// The id as the number receipt handles carry.
    pub fn id_number(&self) -> u128 {
        u128::from_str_radix(&self.id, 16).unwrap_or_default()
    }
}

/// Bounds of the queues (`kinesis.queues_max`, `kinesis.queue_in_flight_max`,
/// `kinesis.queue_long_polls_max`).
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    pub queues_max: usize,
    pub in_flight_max: usize,
    pub long_polls_max: usize,
}

/// One queue.
pub struct Queue {
    def: RwLock<QueueDef>,
    dir: PathBuf,
    pub stream: Arc<KinesisStream>,
    inner: Mutex<Inner>,
    in_flight_max: usize,
    /// The shard fresh reads start from next, so every shard gets its turn.
    next_shard: AtomicUsize,
}

struct Inner {
    journal: Journal,
    state: QueueState,
}

impl Queue {
    pub fn def(&self) -> QueueDef {
        self.def.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (records in flight, dead letters) now.
    pub fn counts(&self) -> (usize, usize) {
        self.inner()
            .state
            .counts(chrono::Utc::now().timestamp_millis())
    }

    /// Sets the visibility timeout and dead-letter handling (persisted).
    pub fn update(
        &self,
        visibility_secs: Option<u32>,
        max_receive: Option<Option<u32>>,
    ) -> Result<QueueDef, KinesisError> {
        self.change(|next| {
            if let Some(v) = visibility_secs {
                next.visibility_secs = v;
            }
            if let Some(m) = max_receive {
                next.max_receive = m;
            }
            Ok(())
        })
    }

    /// Changes the definition (persisted before it applies).
    pub fn change(
        &self,
        f: impl FnOnce(&mut QueueDef) -> Result<(), KinesisError>,
    ) -> Result<QueueDef, KinesisError> {
        let mut def = self.def.write().unwrap_or_else(|p| p.into_inner());
        let mut next = def.clone();
        f(&mut next)?;
        write_def(&self.dir, &next)?;
        *def = next.clone();
        Ok(next)
    }
}

fn io_error(what: &str, e: impl std::fmt::Display) -> KinesisError {
    KinesisError::Io {
        stream: what.to_string(),
        message: e.to_string(),
    }
}

fn write_def(dir: &Path, def: &QueueDef) -> Result<(), KinesisError> {
    let json = serde_json::to_vec_pretty(def).map_err(|e| io_error(&def.name, e))?;
    write_atomic(&dir.join("queue.json"), &json).map_err(|e| io_error(&def.name, e))
}

/// Every queue of the daemon, by name.
pub struct Queues {
    dir: PathBuf,
    pub limits: QueueLimits,
    queues: RwLock<BTreeMap<String, Arc<Queue>>>,
    /// `ReceiveQueueRecords` calls waiting at once.
    pub long_polls: Arc<tokio::sync::Semaphore>,
}

impl Queues {
    pub fn new(data_dir: &Path, limits: QueueLimits) -> Queues {
        Queues {
            dir: data_dir.join("queues"),
            limits,
            queues: RwLock::new(BTreeMap::new()),
            long_polls: Arc::new(tokio::sync::Semaphore::new(limits.long_polls_max)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Queue>>> {
        self.queues.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Queue>>> {
        self.queues.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Queue>> {
        self.read().get(name).cloned()
    }

    /// The queue whose id is `id`.
    pub fn by_id(&self, id: &str) -> Option<Arc<Queue>> {
        self.read().values().find(|q| q.def().id == id).cloned()
    }

    /// Every queue, by name.
    pub fn all(&self) -> Vec<Arc<Queue>> {
        self.read().values().cloned().collect()
    }

    /// The names of the queues on stream `name`.
    pub fn on_stream(&self, name: &str) -> Vec<String> {
        self.read()
            .values()
            .filter(|q| q.stream.name == name)
            .map(|q| q.def().name)
            .collect()
    }

    /// Opens every queue under `data_dir/queues` whose stream is in
    /// `streams`; a queue whose stream is gone is removed. Blocking.
    pub fn load(&self, streams: &[Arc<KinesisStream>]) -> Result<(), KinesisError> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in rd.flatten() {
            let dir = entry.path();
            let def = match std::fs::read(dir.join("queue.json")) {
                Ok(b) => serde_json::from_slice::<QueueDef>(&b)
                    .map_err(|e| io_error(&dir.display().to_string(), e))?,
                Err(_) => {
                    // A creation cut short: nothing was ever received from it.
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
            };
            let stream = streams
                .iter()
                .find(|s| s.name == def.stream && s.incarnation == def.incarnation);
            let Some(stream) = stream else {
                tracing::info!(queue = def.name, "removing a queue whose stream is gone");
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            };
            let q = open(dir, def, stream.clone(), self.limits.in_flight_max)?;
            self.write().insert(q.def().name, Arc::new(q));
        }
        Ok(())
    }

    /// Creates a queue on `stream`, its cursors at `start`. Blocking.
    pub fn create(
        &self,
        stream: Arc<KinesisStream>,
        def: QueueDef,
    ) -> Result<Arc<Queue>, KinesisError> {
        let mut queues = self.write();
        if queues.contains_key(&def.name) {
            return Err(KinesisError::InUse(format!(
                "Queue {} under account {} already exists.",
                def.name,
                crate::aws::ACCOUNT
            )));
        }
        if queues.len() >= self.limits.queues_max {
            return Err(KinesisError::Limit(format!(
                "the limit of {} queues (kinesis.queues_max) is reached",
                self.limits.queues_max
            )));
        }
        let dir = self.dir.join(&def.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_error(&def.name, e))?;
        }
        // The cursors first, the definition last: a queue exists once it
        // has both.
        let (mut journal, mut state) = Journal::open(&dir).map_err(|e| io_error(&def.name, e))?;
        let entries =
            ops::start_cursors(&stream, &def.start).map_err(|e| io_error(&def.name, e))?;
        journal
            .append(&mut state, &entries)
            .map_err(|e| io_error(&def.name, e))?;
        write_def(&dir, &def)?;
        let q = Arc::new(Queue {
            def: RwLock::new(def.clone()),
            dir,
            stream,
            inner: Mutex::new(Inner { journal, state }),
            in_flight_max: self.limits.in_flight_max,
            next_shard: AtomicUsize::new(0),
        });
        queues.insert(def.name, q.clone());
        Ok(q)
    }

    /// Deletes a queue: its receipt handles stop being valid at once.
    pub fn delete(&self, name: &str) -> Result<(), KinesisError> {
        let q = self
            .write()
            .remove(name)
            .ok_or_else(|| KinesisError::ResourceNotFound(format!("Queue {name} not found.")))?;
        // Set aside first, so a new queue of the name starts empty.
        let gone = self
            .dir
            .join(format!(".deleted-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(&q.dir, &gone)
            .and_then(|()| std::fs::remove_dir_all(&gone))
            .map_err(|e| io_error(name, e))
    }
}

fn open(
    dir: PathBuf,
    def: QueueDef,
    stream: Arc<KinesisStream>,
    in_flight_max: usize,
) -> Result<Queue, KinesisError> {
    let (journal, state) = Journal::open(&dir).map_err(|e| io_error(&def.name, e))?;
    Ok(Queue {
        def: RwLock::new(def),
        dir,
        stream,
        inner: Mutex::new(Inner { journal, state }),
        in_flight_max,
        next_shard: AtomicUsize::new(0),
    })
}
