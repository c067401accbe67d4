//! A stream's log: its shards, by number, and the log's identity. Shards
//! are added while the log runs (a Kinesis reshard opens its children) and
//! never removed from a running log. The shards live on the local disk or,
//! in cluster mode, in JetStream ([`Store`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::jetstream::{Cluster, JetShard, Leases, lease_key, lease_prefix};
use super::seal::{Keyring, LogCipher, SealError};
use super::{DiskQuota, LogError, LogOptions, ShardLog, files, io_err};

/// Where a log's shards are kept.
#[derive(Clone)]
enum Store {
    Disk {
        opts: LogOptions,
        quota: Arc<DiskQuota>,
    },
    JetStream {
        cluster: Arc<Cluster>,
        /// The log's name in JetStream ([`super::jetstream::log_name`]).
        name: String,
        /// The retention JetStream applies, for shards opened later too.
        max_age: Arc<RwLock<Option<std::time::Duration>>>,
    },
}

/// All shards of one stream's log. A stream may gain shards while it runs
/// (a Kinesis stream's split or merge opens new ones); a shard is never
/// removed from a running log.
pub struct StreamLog {
    dir: PathBuf,
    id: String,
    store: Store,
    shards: RwLock<Vec<Arc<ShardLog>>>,
    /// Encryption at rest, shared by every shard.
    cipher: Arc<LogCipher>,
}

/// Reads the log's identity, creating it with a new random id the first time.
/// Destinations key what they loaded by it, so a log that is deleted and
/// created again under the same name (its offsets start at 0 again) is never
/// mistaken for the old one.
fn log_id(dir: &Path) -> Result<String, LogError> {
    let path = dir.join("log-id");
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(0, &path)(e)),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    files::write_atomic(&path, id.as_bytes()).map_err(io_err(0, &path))?;
    Ok(id)
}

/// The directory of shard `i` of the log in `dir`.
pub fn shard_dir(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("shard-{i}"))
}

impl StreamLog {
    /// Opens `shards` shards under `dir` (`dir/shard-N`).
    pub fn open(
        dir: &Path,
        shards: u32,
        opts: &LogOptions,
        quota: Arc<DiskQuota>,
    ) -> Result<StreamLog, LogError> {
        Self::open_with_sealed(dir, shards, opts, quota, |_| false)
    }

    /// Opens `shards` shards under `dir`, those `sealed` says read-only.
    pub fn open_with_sealed(
        dir: &Path,
        shards: u32,
        opts: &LogOptions,
        quota: Arc<DiskQuota>,
        sealed: impl Fn(u32) -> bool,
    ) -> Result<StreamLog, LogError> {
        fs::create_dir_all(dir).map_err(io_err(0, dir))?;
        let id = log_id(dir)?;
        let cipher = Arc::new(LogCipher::new(opts.keys.clone(), Some(dir)));
        cipher
            .verify()
            .map_err(|source| LogError::Sealed { shard: 0, source })?;
        let mut v = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            v.push(Arc::new(ShardLog::open_as(
                &shard_dir(dir, shard),
                shard,
                opts,
                quota.clone(),
                sealed(shard),
                cipher.clone(),
            )?));
        }
        Ok(StreamLog {
            cipher,
            dir: dir.to_path_buf(),
            id,
            store: Store::Disk {
                opts: opts.clone(),
                quota,
            },
            shards: RwLock::new(v),
        })
    }

    /// Opens `shards` shards of the log `name` (a
    /// [`log_name`](super::jetstream::log_name)) in JetStream, creating the
    /// streams that do not exist, those `sealed` says read-only. `dir` keeps
    /// what stays on this node (checkpoints); `max_age` is the retention
    /// JetStream applies (None: until delivery trims). The log's identity is
    /// the one shard 0's stream holds, so every node sees the same. `keys`
    /// open sealed records (the keys that sealed them are not recorded:
    /// nodes keep nothing of a log but checkpoints).
    pub fn open_jetstream(
        cluster: Arc<Cluster>,
        name: &str,
        dir: &Path,
        shards: u32,
        max_age: Option<std::time::Duration>,
        sealed: impl Fn(u32) -> bool,
        keys: Arc<Keyring>,
    ) -> Result<StreamLog, LogError> {
        fs::create_dir_all(dir).map_err(io_err(0, dir))?;
        let cipher = Arc::new(LogCipher::new(keys, None));
        let mut id = uuid::Uuid::new_v4().simple().to_string();
        let mut v = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            let (log, held) = cluster.block_on(JetShard::open(
                cluster.clone(),
                name,
                shard,
                &id,
                max_age,
                sealed(shard),
            ))?;
            if shard == 0 {
                id = held;
            }
            v.push(Arc::new(ShardLog::jetstream(log, cipher.clone())));
        }
        Ok(StreamLog {
            cipher,
            dir: dir.to_path_buf(),
            id,
            store: Store::JetStream {
                cluster,
                name: name.to_string(),
                max_age: Arc::new(RwLock::new(max_age)),
            },
            shards: RwLock::new(v),
        })
    }

    /// Sets the retention JetStream applies to every shard (a Kinesis
    /// stream's retention period changed). Nothing for a local log, whose
    /// retention its owner applies. Blocking.
    pub fn set_max_age(&self, age: std::time::Duration) -> Result<(), LogError> {
        let Store::JetStream { max_age, .. } = &self.store else {
            return Ok(());
        };
        *max_age.write().unwrap_or_else(|p| p.into_inner()) = Some(age);
        for s in self.shards() {
            if let Some(j) = s.as_jetstream() {
                j.set_max_age(age)?;
            }
        }
        Ok(())
    }

    /// Whether the log is kept in JetStream.
    pub fn is_clustered(&self) -> bool {
        matches!(self.store, Store::JetStream { .. })
    }

    /// In cluster mode, makes a new reader `consumer` start at the log's
    /// end: if no shard has a lease for it yet, each gets a first
    /// checkpoint at its durable end. False for a local log (its
    /// checkpoints are files, the caller's). Blocking.
    pub fn start_consumer_at_end(&self, consumer: &str) -> Result<bool, LogError> {
        let Store::JetStream { cluster, .. } = &self.store else {
            return Ok(false);
        };
        let shards = self.shards();
        cluster.block_on(async {
            let mut keys = Vec::new();
            for s in &shards {
                let (leases, key) = self
                    .lease(consumer, s.shard())
                    .ok_or(LogError::Closed { shard: s.shard() })?;
                let known = leases.peek(&key).await.map_err(|e| LogError::Cluster {
                    shard: s.shard(),
                    message: e.to_string(),
                })?;
                if known.is_some() {
                    return Ok(true);
                }
                keys.push((leases, key, s.durable_end(), s.shard()));
            }
            for (leases, key, end, shard) in keys {
                leases
                    .seed(&key, end)
                    .await
                    .map_err(|e| LogError::Cluster {
                        shard,
                        message: e.to_string(),
                    })?;
            }
            Ok(true)
        })
    }

    /// In cluster mode, the lease bucket and the start of the keys of
    /// `consumer`'s leases on this log (every consumer's, for None).
    pub fn leases_of(&self, consumer: Option<&str>) -> Option<(Arc<Leases>, String)> {
        match &self.store {
            Store::JetStream { cluster, name, .. } => {
                Some((cluster.leases.clone(), lease_prefix(name, consumer)))
            }
            Store::Disk { .. } => None,
        }
    }

    /// In cluster mode, the lease bucket and the key of shard `shard`'s
    /// delivery lease for `consumer` (see [`super::jetstream::Leases`]).
    pub fn lease(&self, consumer: &str, shard: u32) -> Option<(Arc<Leases>, String)> {
        match &self.store {
            Store::JetStream { cluster, name, .. } => {
                Some((cluster.leases.clone(), lease_key(name, consumer, shard)))
            }
            Store::Disk { .. } => None,
        }
    }

    /// Deletes the log's JetStream streams (a deleted stream's log); the
    /// local directory is the caller's. Nothing to do for a local log.
    pub fn destroy(&self) -> Result<(), LogError> {
        let Store::JetStream { cluster, name, .. } = &self.store else {
            return Ok(());
        };
        let n = self.shard_count();
        cluster.block_on(async {
            for i in 0..n {
                let (stream, _) = super::jetstream::shard_names(name, i);
                if let Err(e) = cluster.js.delete_stream(&stream).await {
                    tracing::warn!(stream, error = %e, "cannot delete a JetStream stream");
                }
            }
            // Its readers' checkpoints go with it.
            if let Err(e) = cluster.leases.forget(&lease_prefix(name, None)).await {
                tracing::warn!(log = name, error = %e, "cannot remove a deleted log's leases");
            }
        });
        Ok(())
    }

    /// The key new records are sealed with (None: stored in clear).
    pub fn sealing_key(&self) -> Option<String> {
        self.cipher.sealing_key()
    }

    /// Seals new records with key `id` from now on, on every shard (None:
    /// stores them in clear). Records already stored stay as they are, and
    /// readable while their key is configured. Blocking (records the key).
    pub fn set_sealing(&self, id: Option<&str>) -> Result<(), SealError> {
        self.cipher.set_sealing(id)
    }

    /// The keys this log's records are opened with.
    pub fn keyring(&self) -> &Arc<Keyring> {
        self.cipher.keyring()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's identity (random, fixed for the life of its directory).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ShardLog>>> {
        self.shards.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every shard, by number.
    pub fn shards(&self) -> Vec<Arc<ShardLog>> {
        self.read().clone()
    }

    /// How many shards the log has.
    pub fn shard_count(&self) -> u32 {
        self.read().len() as u32
    }

    /// Bytes the whole log holds of the disk quota, to give back when its
    /// directory is removed.
    pub fn quota_bytes(&self) -> u64 {
        self.read().iter().map(|s| s.quota_bytes()).sum()
    }

    pub fn shard(&self, i: u32) -> Option<Arc<ShardLog>> {
        self.read().get(i as usize).cloned()
    }

    /// Opens the next shard (`shard-N` for a log of N shards), empty: a
    /// directory of that name left by a change that never completed holds
    /// nothing anyone could read, and is removed first.
    pub fn add_shard(&self) -> Result<Arc<ShardLog>, LogError> {
        let mut shards = self.shards.write().unwrap_or_else(|p| p.into_inner());
        let i = shards.len() as u32;
        let log = match &self.store {
            Store::Disk { opts, quota } => {
                let dir = shard_dir(&self.dir, i);
                match fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(i, &dir)(e)),
                }
                ShardLog::open_as(&dir, i, opts, quota.clone(), false, self.cipher.clone())?
            }
            Store::JetStream {
                cluster,
                name,
                max_age,
            } => {
                // Opened without the shards' lock: it is a round trip to
                // JetStream, and every read of the log takes that lock.
                drop(shards);
                let age = *max_age.read().unwrap_or_else(|p| p.into_inner());
                let (log, _) = cluster.block_on(JetShard::open(
                    cluster.clone(),
                    name,
                    i,
                    &self.id,
                    age,
                    false,
                ))?;
                shards = self.shards.write().unwrap_or_else(|p| p.into_inner());
                if shards.len() as u32 != i {
                    return Err(LogError::Cluster {
                        shard: i,
                        message: "another change added a shard meanwhile".into(),
                    });
                }
                ShardLog::jetstream(log, self.cipher.clone())
            }
        };
        let log = Arc::new(log);
        shards.push(log.clone());
        Ok(log)
    }

    /// Removes the directories of shards past the log's `shards` that a
    /// change left behind before it completed (see [`Self::add_shard`]).
    pub fn remove_unused_shards(dir: &Path, shards: u32) -> io::Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(i) = name
                .to_str()
                .and_then(|n| n.strip_prefix("shard-"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if i >= shards {
                tracing::warn!(dir = %e.path().display(), "removing a shard a reshard left unfinished");
                fs::remove_dir_all(e.path())?;
            }
        }
        Ok(())
    }
}
