//! Kinesis Video streams: each a definition (`stream.json`) and a one-shard
//! log of fragments under `data_dir/video/NAME/`. A fragment (one MKV
//! cluster that starts with a key frame, cut by [`mkv`]) is one record of
//! the log ([`fragment`]); its number is derived from its offset, so the log
//! is the only index that must survive a crash, and the in-memory index of
//! fragments by time ([`index`]) is rebuilt from it at start.
//!
//! The APIs that drive this live in `ingest/video/`; this module knows
//! nothing of HTTP.

pub mod fragment;
pub mod index;
pub mod mkv;
pub mod mp4;
pub mod spec;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::VideoOptions;
use crate::log::{DiskQuota, LogOptions, StreamLog};
pub use spec::{Spec, VideoError};

const SPEC_FILE: &str = "stream.json";

/// One video stream: its definition, its log and its fragment index.
pub struct VideoStream {
    pub name: String,
    pub log: Arc<StreamLog>,
    pub index: index::Index,
    spec: Mutex<Spec>,
    dir: PathBuf,
    /// PutMedia sessions open now.
    pub sessions: std::sync::atomic::AtomicUsize,
    /// GetMedia and GetMediaForFragmentList responses open now.
    pub readers: std::sync::atomic::AtomicUsize,
    /// Serializes appends, so fragment numbers follow ingestion order and
    /// the index stays sorted.
    pub appending: tokio::sync::Mutex<()>,
    /// The offset below which every fragment is archived (`u64::MAX`: the
    /// stream is not archived); retention never deletes past it.
    pub archived: std::sync::atomic::AtomicU64,
    /// Cancelled when the stream is deleted: its tasks end.
    pub deleted: tokio_util::sync::CancellationToken,
}

impl VideoStream {
    /// The stream's directory (its definition, log and archive checkpoint).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> Spec {
        self.spec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the definition and persists it; nothing changes if `f`
    /// refuses or the write fails. Every change gets a new version.
    pub fn update(
        &self,
        f: impl FnOnce(&mut Spec) -> Result<(), VideoError>,
    ) -> Result<(), VideoError> {
        let mut g = self.spec.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = g.clone();
        f(&mut next)?;
        next.version = spec::new_version();
        spec::save(&self.dir.join(SPEC_FILE), &next)?;
        *g = next;
        Ok(())
    }

    /// The log directory's fragments that retention no longer keeps are
    /// deleted (whole segments); the index forgets them. Blocking.
    pub fn trim(&self, now_ms: i64) {
        let hours = self.spec().retention_hours;
        let keep_ms = if hours == 0 {
            spec::UNRETAINED_KEEP_MS
        } else {
            i64::from(hours) * 3_600_000
        };
        let cutoff = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis((now_ms - keep_ms).max(0) as u64);
        let Some(shard) = self.log.shard(0) else {
            return;
        };
        let archived = self.archived.load(std::sync::atomic::Ordering::Acquire);
        let below = shard.offset_written_before(cutoff).min(archived);
        match shard.delete_before(below) {
            Ok(_) => self.index.forget_before(shard.oldest_offset()),
            Err(e) => tracing::warn!(stream = self.name, error = %e, "cannot trim a video stream"),
        }
    }
}

/// Every video stream of the daemon.
pub struct VideoStreams {
    dir: PathBuf,
    pub opts: VideoOptions,
    log_opts: LogOptions,
    quota: Arc<DiskQuota>,
    streams: RwLock<BTreeMap<String, Arc<VideoStream>>>,
}

impl VideoStreams {
    pub fn new(
        data_dir: &Path,
        opts: VideoOptions,
        log_opts: LogOptions,
        quota: Arc<DiskQuota>,
    ) -> Self {
        VideoStreams {
            dir: data_dir.join("video"),
            opts,
            log_opts,
            quota,
            streams: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<VideoStream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every stream, by name.
    pub fn all(&self) -> Vec<Arc<VideoStream>> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn open(&self, spec: Spec) -> Result<Arc<VideoStream>, VideoError> {
        let dir = self.dir.join(&spec.name);
        let io = |e: String| VideoError::Io {
            stream: spec.name.clone(),
            message: e,
        };
        let log = StreamLog::open(&dir.join("log"), 1, &self.log_opts, self.quota.clone())
            .map_err(|e| io(e.to_string()))?;
        log.set_sealing(spec.log_key.as_deref())
            .map_err(|e| io(format!("its encryption at rest: {e}")))?;
        let index = index::Index::rebuild(&log).map_err(|e| io(e.to_string()))?;
        Ok(Arc::new(VideoStream {
            name: spec.name.clone(),
            log: Arc::new(log),
            index,
            spec: Mutex::new(spec),
            dir,
            sessions: 0.into(),
            readers: 0.into(),
            archived: u64::MAX.into(),
            deleted: tokio_util::sync::CancellationToken::new(),
            appending: tokio::sync::Mutex::new(()),
        }))
    }

    /// Opens every stream found under `data_dir/video`; a directory without
    /// a definition is a creation cut short and is removed. Blocking.
    pub fn load(&self) -> Result<(), VideoError> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for e in rd.flatten().filter(|e| e.path().is_dir()) {
            let path = e.path().join(SPEC_FILE);
            match spec::read(&path)? {
                Some(s) => {
                    let opened = self.open(s)?;
                    self.insert(opened);
                }
                None => {
                    tracing::warn!(dir = %e.path().display(), "removing a video stream directory without a definition");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    fn insert(&self, s: Arc<VideoStream>) {
        self.streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(s.name.clone(), s);
    }

    /// Creates a stream: its log, then its definition (which makes it exist
    /// across restarts). Blocking.
    pub fn create(&self, spec: Spec) -> Result<Arc<VideoStream>, VideoError> {
        let mut all = self.streams.write().unwrap_or_else(|p| p.into_inner());
        if all.contains_key(&spec.name) {
            return Err(VideoError::Exists(spec.name));
        }
        if all.len() >= self.opts.streams_max {
            return Err(VideoError::Limit(format!(
                "the account already has {} video streams (video.streams_max)",
                all.len()
            )));
        }
        let dir = self.dir.join(&spec.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| VideoError::Io {
                stream: spec.name.clone(),
                message: e.to_string(),
            })?;
        }
        let s = self.open(spec.clone())?;
        spec::save(&dir.join(SPEC_FILE), &spec)?;
        all.insert(spec.name.clone(), s.clone());
        Ok(s)
    }

    /// Deletes a stream: gone for the API at once; its directory renamed
    /// aside, then removed. Blocking.
    pub fn delete(&self, name: &str) -> Result<(), VideoError> {
        let s = self
            .streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| VideoError::NotFound(name.to_string()))?;
        let dir = self.dir.join(name);
        let aside = self
            .dir
            .join(format!(".deleted-{name}-{}", uuid::Uuid::new_v4().simple()));
        let freed = s.log.quota_bytes();
        s.deleted.cancel();
        drop(s);
        if let Err(e) = std::fs::rename(&dir, &aside) {
            tracing::warn!(stream = name, error = %e, "cannot move a deleted video stream aside");
            return Ok(());
        }
        if let Err(e) = std::fs::remove_dir_all(&aside) {
            tracing::warn!(stream = name, error = %e, "cannot remove a deleted video stream");
        }
        self.quota.release(freed);
        Ok(())
    }

    /// Applies every stream's retention. Blocking.
    pub fn trim(&self) {
        let now = chrono::Utc::now().timestamp_millis();
        for s in self.all() {
            s.trim(now);
        }
    }
}

#[cfg(test)]
mod tests;
