//! Runs one application on a thread of its own: reads its input shards in
//! lineage order, feeds the engine, and publishes results in cycles.
//!
//! A cycle (when windows close, when stateless results have waited the
//! output interval, and at least every checkpoint interval) takes the
//! engine's pending records, routes them to output shards, writes the
//! checkpoint (input offsets, watermarks, open windows, the pending
//! records and where each output shard ended before them), appends the
//! records, and only then moves the input consumer checkpoints that hold
//! the input's retention. After a crash, the records past a shard's
//! recorded end are a prefix of what the checkpoint says went there (the
//! outputs are the application's alone), so recovery appends only the
//! rest: every result lands exactly once.

pub mod io;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, Pending};
use super::engine::{Engine, EngineState};
use super::status::AppStatus;
use crate::log::{LogError, ShardReader};
use crate::streams::Registry;
use io::{StreamRef, hold, input_view};

/// Where a started application begins reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Now,
    TrimHorizon,
    /// Where it stopped (its checkpoint); the oldest record if it never ran.
    LastStopped,
}

/// Timings and bounds of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub checkpoint_interval: Duration,
    pub output_interval: Duration,
    pub idle: Duration,
    pub read_records_max: usize,
    pub read_bytes_max: usize,
}

pub struct Runner {
    pub name: String,
    pub registry: Arc<Registry>,
    pub rt: tokio::runtime::Handle,
    pub engine: Engine,
    pub input: StreamRef,
    /// In-application stream → the stream its records go to.
    pub outputs: BTreeMap<String, StreamRef>,
    /// The checkpoint file.
    pub path: PathBuf,
    /// The consumer whose checkpoints hold the input's retention.
    pub consumer: String,
    /// A digest of the application's SQL and schemas: a checkpoint's open
    /// windows are restored only into the program they belong to.
    pub program: String,
    pub options: RunOptions,
    pub status: Arc<AppStatus>,
    pub stop: CancellationToken,
}

struct Progress {
    input_id: String,
    offsets: BTreeMap<u32, u64>,
    done: BTreeSet<u32>,
    readers: BTreeMap<u32, ShardReader>,
    caught_up_since: BTreeMap<u32, Instant>,
    last_cycle: Instant,
    last_checkpoint: Instant,
    dirty: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Io(#[from] io::IoError),
    #[error("{0}")]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    #[error("{0}")]
    Engine(#[from] super::engine::EngineError),
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("stopped")]
    Stopped,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Runner {
    /// Runs until stopped or failed. Blocking: call on its own thread.
    pub fn run(mut self, start: StartAt) -> Result<(), RunError> {
        let mut p = self.recover(start)?;
        self.status.set_state("RUNNING");
        let result = self.run_loop(&mut p);
        // Stopping (or failing): publish what is done, so a start from
        // LAST_STOPPED_POINT continues exactly here.
        if !matches!(result, Err(RunError::Io(_))) {
            let final_cycle = self.cycle(&mut p);
            if result.is_ok() {
                final_cycle?;
            }
        }
        result
    }

    fn run_loop(&mut self, p: &mut Progress) -> Result<(), RunError> {
        while !self.stop.is_cancelled() {
            let read = self.read_round(p)?;
            let closed = self.engine.close_windows(now_ms())?;
            let due = closed > 0
                || (self.engine.pending() > 0
                    && p.last_cycle.elapsed() >= self.options.output_interval)
                || (p.dirty && p.last_checkpoint.elapsed() >= self.options.checkpoint_interval);
            if due {
                self.cycle(p)?;
            }
            self.status.note_engine(&self.engine);
            if !read {
                self.wait(p);
            }
        }
        Ok(())
    }

    /// Waits for a record on any shard being read, a timer, or the stop.
    fn wait(&self, p: &Progress) {
        let log = input_view(&self.registry, &self.input).ok().map(|v| v.log);
        let mut watches: Vec<tokio::sync::watch::Receiver<u64>> = p
            .readers
            .keys()
            .filter_map(|i| log.as_ref().and_then(|l| l.shard(*i)))
            .map(|s| s.subscribe())
            .collect();
        let tick = self.options.output_interval.min(Duration::from_millis(250));
        let stop = self.stop.clone();
        self.rt.block_on(async move {
            let sleep = tokio::time::sleep(tick);
            if watches.is_empty() {
                tokio::select! {
                    _ = sleep => {}
                    _ = stop.cancelled() => {}
                }
                return;
            }
            let changed = futures::future::select_all(
                watches
                    .iter_mut()
                    .map(|w| Box::pin(async move { w.changed().await })),
            );
            tokio::select! {
                _ = changed => {}
                _ = sleep => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Reads once from every shard that may be read; true if any gave
    /// records.
    fn read_round(&mut self, p: &mut Progress) -> Result<bool, RunError> {
        let view = input_view(&self.registry, &self.input)?;
        if view.log.id() != p.input_id {
            return Err(RunError::Io(io::IoError::Missing(format!(
                "the input {} was deleted and created again",
                self.input.name()
            ))));
        }
        let mut any = false;
        let mut behind = 0i64;
        for shard in &view.shards {
            let i = shard.index;
            if p.done.contains(&i) || !shard.parents.iter().all(|x| p.done.contains(x)) {
                continue;
            }
            if !p.readers.contains_key(&i) {
                let Some(log) = view.log.shard(i) else {
                    continue;
                };
                let from = *p.offsets.entry(i).or_insert_with(|| log.oldest_offset());
                p.readers
                    .insert(i, log.reader(from.max(log.oldest_offset())));
                self.engine.track(i);
            }
            let Some(reader) = p.readers.get_mut(&i) else {
                continue;
            };
            let records =
                match reader.read(self.options.read_records_max, self.options.read_bytes_max) {
                    Ok(r) => r,
                    Err(LogError::Trimmed { oldest, .. }) => {
                        tracing::warn!(
                            app = self.name,
                            shard = i,
                            oldest,
                            "records expired before the application read them"
                        );
                        if let Some(log) = view.log.shard(i) {
                            p.readers.insert(i, log.reader(oldest));
                        }
                        p.offsets.insert(i, oldest);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
            let now = now_ms();
            if let Some(last) = records.last() {
                if reader.position() < reader.durable_end() {
                    behind = behind.max(now - last.arrival_ms);
                }
                any = true;
                p.dirty = true;
                p.caught_up_since.remove(&i);
                self.engine.push(i, &records, now)?;
                p.offsets.insert(i, last.offset + 1);
                continue;
            }
            let at = p.offsets.get(&i).copied().unwrap_or(0);
            if shard.end.is_some_and(|e| at >= e) {
                self.engine.finished(i);
                p.done.insert(i);
                p.readers.remove(&i);
                p.dirty = true;
                continue;
            }
            let since = *p.caught_up_since.entry(i).or_insert_with(Instant::now);
            self.engine
                .caught_up(i, now, since.elapsed() >= self.options.idle);
        }
        self.status
            .millis_behind_latest
            .store(behind, std::sync::atomic::Ordering::Relaxed);
        Ok(any)
    }

    /// Publishes the pending results with a checkpoint.
    fn cycle(&mut self, p: &mut Progress) -> Result<(), RunError> {
        let started = Instant::now();
        let pending = self.engine.take_pending();
        let state = self.engine.snapshot()?;
        let records: Vec<(StreamRef, String, Vec<u8>)> = pending
            .into_iter()
            .filter_map(|r| {
                let dest = self.outputs.get(&r.stream)?.clone();
                Some((dest, r.key, r.data))
            })
            .collect();
        self.publish(p, records, state)?;
        p.last_cycle = Instant::now();
        p.last_checkpoint = p.last_cycle;
        p.dirty = false;
        self.hold_retention(p);
        self.status.note_checkpoint(started.elapsed());
        Ok(())
    }

    /// Routes, checkpoints and appends `records`.
    fn publish(
        &self,
        p: &Progress,
        records: Vec<(StreamRef, String, Vec<u8>)>,
        state: EngineState,
    ) -> Result<(), RunError> {
        let registry = self.registry.clone();
        let dests: BTreeSet<StreamRef> = self.outputs.values().cloned().collect();
        let mut holds = BTreeMap::new();
        for d in &dests {
            holds.insert(d.clone(), hold(&registry, d)?);
        }
        let ckpt_path = self.path.clone();
        let stop = self.stop.clone();
        let name = self.name.clone();
        let input = p.input_id.clone();
        let program = self.program.clone();
        let (offsets, done) = (p.offsets.clone(), p.done.clone());
        self.rt.block_on(async move {
            let mut gates = Vec::new();
            for h in holds.values() {
                if let Some(k) = &h.kinesis {
                    gates.push(k.gate.read().await);
                }
            }
            let pending: Vec<Pending> = records
                .into_iter()
                .filter_map(|(d, key, data)| {
                    let h = holds.get(&d)?;
                    Some(Pending {
                        shard: h.route(&key),
                        dest: d.key(),
                        key,
                        data,
                    })
                })
                .collect();
            let ends = holds.iter().map(|(d, h)| (d.key(), h.ends())).collect();
            let ckpt = Checkpoint {
                input,
                program,
                offsets,
                done,
                ends,
                pending,
                state,
            };
            // This thread is the application's own: blocking it is fine.
            ckpt.write(&ckpt_path)?;
            let any = !ckpt.pending.is_empty();
            if any {
                crate::failpoint::hit("analytics.after_checkpoint");
            }
            append_all(&name, &holds, ckpt.pending, &stop).await?;
            if any {
                crate::failpoint::hit("analytics.after_append");
            }
            drop(gates);
            Ok(())
        })
    }

    /// Moves the input consumer checkpoints (retention) to the offsets.
    fn hold_retention(&self, p: &Progress) {
        let Ok(view) = input_view(&self.registry, &self.input) else {
            return;
        };
        for (shard, offset) in &p.offsets {
            let path =
                crate::log::checkpoint::checkpoint_path(view.log.dir(), &self.consumer, *shard);
            if let Err(e) = crate::log::checkpoint::write(&path, *offset) {
                tracing::warn!(app = self.name, shard, error = %e, "cannot move the input's retention checkpoint");
            }
        }
    }

    /// Publishes what a checkpoint left pending, then continues from it
    /// (or, for NOW and TRIM_HORIZON, starts afresh).
    fn recover(&mut self, start: StartAt) -> Result<Progress, RunError> {
        let view = input_view(&self.registry, &self.input)?;
        let input_id = view.log.id().to_string();
        let found = Checkpoint::read(&self.path)?.filter(|c| c.input == input_id);
        let mut p = Progress {
            input_id,
            offsets: BTreeMap::new(),
            done: BTreeSet::new(),
            readers: BTreeMap::new(),
            caught_up_since: BTreeMap::new(),
            last_cycle: Instant::now(),
            last_checkpoint: Instant::now(),
            dirty: true,
        };
        if let Some(c) = found {
            let left = self.not_yet_durable(&c)?;
            p.offsets = c.offsets.clone();
            p.done = c.done.clone();
            if start == StartAt::LastStopped && c.program == self.program {
                self.engine.restore(c.state)?;
            } else if start == StartAt::LastStopped {
                tracing::info!(
                    app = self.name,
                    "the SQL or schema changed: continuing from the checkpoint's offsets with new state"
                );
            }
            let state = self.engine.snapshot()?;
            self.publish(&p, left, state)?;
            if start == StartAt::LastStopped {
                self.hold_retention(&p);
                return Ok(p);
            }
            p.offsets.clear();
            p.done.clear();
        }
        for s in &view.shards {
            let Some(log) = view.log.shard(s.index) else {
                continue;
            };
            let at = match start {
                StartAt::Now => log.durable_end(),
                StartAt::TrimHorizon | StartAt::LastStopped => log.oldest_offset(),
            };
            p.offsets.insert(s.index, at);
        }
        self.cycle(&mut p)?;
        Ok(p)
    }

    /// The records a checkpoint left pending that did not become durable.
    fn not_yet_durable(
        &self,
        c: &Checkpoint,
    ) -> Result<Vec<(StreamRef, String, Vec<u8>)>, RunError> {
        let mut durable: BTreeMap<(String, u32), u64> = BTreeMap::new();
        let dests: BTreeMap<String, StreamRef> = self
            .outputs
            .values()
            .map(|d| (d.key(), d.clone()))
            .collect();
        for (key, d) in &dests {
            let Ok(h) = hold(&self.registry, d) else {
                continue;
            };
            for (shard, end) in h.ends() {
                let before = c
                    .ends
                    .get(key)
                    .and_then(|e| e.get(&shard))
                    .copied()
                    .unwrap_or(end);
                durable.insert((key.clone(), shard), end.saturating_sub(before));
            }
        }
        let mut left = Vec::new();
        for r in &c.pending {
            let n = durable.entry((r.dest.clone(), r.shard)).or_default();
            if *n > 0 {
                *n -= 1;
                continue;
            }
            if let Some(d) = dests.get(&r.dest) {
                left.push((d.clone(), r.key.clone(), r.data.clone()));
            }
        }
        Ok(left)
    }
}

/// Appends each shard's records in order; retries a full log until stopped.
async fn append_all(
    app: &str,
    holds: &BTreeMap<StreamRef, io::OutputHold>,
    pending: Vec<Pending>,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    type Records = Vec<(String, Vec<u8>)>;
    let mut groups: BTreeMap<(String, u32), Records> = BTreeMap::new();
    for r in pending {
        groups
            .entry((r.dest, r.shard))
            .or_default()
            .push((r.key, r.data));
    }
    for ((dest, shard), records) in groups {
        let Some(h) = holds.iter().find(|(d, _)| d.key() == dest).map(|(_, h)| h) else {
            continue;
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            match h.append(shard, records.clone(), now_ms()).await {
                Ok(()) => break,
                Err(e) if e.is_unavailable() && !stop.is_cancelled() => {
                    tracing::warn!(app, dest, shard, error = %e, "output full; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
