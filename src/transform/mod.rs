//! The user's WebAssembly transform: a component implementing the
//! `hydrant:transform` world (`transforms/wit/`), run by wasmtime.
//!
//! One [`Transform`] per stream: the component is compiled once (and the
//! compiled form cached on disk, since a Python or JavaScript component takes
//! seconds to compile), pre-linked once (`InstancePre`), and instantiated into
//! a bounded pool that every shard draws from. An instance is reused across
//! batches until a call traps, times out or runs out of memory; then it is
//! thrown away and the next call gets a fresh one.
//!
//! Calls are blocking and CPU-bound: they run on the blocking threads that
//! read the log, never on the async runtime. Each call has a wall-clock
//! deadline (epoch interruption, one tick every [`EPOCH_TICK`]) and a memory
//! cap (store limits). WASI is linked with no preopened directories and no
//! network; stderr is inherited so a guest's diagnostics reach the daemon's.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::record::Record;

mod bindings {
    wasmtime::component::bindgen!({
        path: "transforms/wit",
        world: "transformer",
    });
}

pub use bindings::{Outcome as WitOutcome, Record as WitRecord, Transformed};

/// The world a transform implements.
pub const WORLD: &str = "hydrant:transform/transformer@0.1.0";

/// How often the epoch advances; timeouts are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A stream's transform settings, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformConfig {
    /// The component file.
    pub wasm: PathBuf,
    /// Passed to the component's `init` once per instance.
    pub config: String,
    /// Records per call.
    pub batch_records_max: usize,
    /// Bytes of record data per call.
    pub batch_bytes_max: usize,
    /// Wall-clock limit of one call.
    pub timeout: Duration,
    /// Linear memory an instance may grow to.
    pub memory_bytes_max: usize,
    /// Instances alive at once, across the stream's shards.
    pub instances_max: usize,
}

/// What became of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Continue with new data and the transform's partition keys.
    Ok {
        data: Bytes,
        keys: Vec<(String, String)>,
    },
    Dropped,
    /// The original record goes to the error output with this reason.
    Failed(String),
}

/// Why a transform could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable transform component: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("the transform's init refused its config: {0}")]
    Init(String),
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One live instance with its store.
struct Instance {
    store: Store<State>,
    bindings: bindings::Transformer,
}

struct Pool {
    idle: Vec<Instance>,
    /// Instances in existence (idle or in use).
    live: usize,
}

/// A loaded transform, shared by a stream's shards.
pub struct Transform {
    cfg: TransformConfig,
    engine: Engine,
    pre: bindings::TransformerPre<State>,
    pool: Mutex<Pool>,
    freed: Condvar,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform").field("cfg", &self.cfg).finish()
    }
}

/// Ends an instance's call: the trap, the timeout or the memory cap.
#[derive(Debug)]
enum CallError {
    /// The call ran past the deadline.
    Timeout,
    /// A trap, an out-of-memory or any other failure of the call.
    Trap(String),
    /// No instance could be started for the call.
    Unavailable(String),
}

impl Transform {
    /// Compiles (or loads from `cache_dir`) the component and checks it by
    /// instantiating one instance and calling its `init`. Blocking.
    pub fn load(cfg: TransformConfig, cache_dir: Option<&Path>) -> Result<Transform, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: cfg.wasm.clone(),
            message: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(invalid)?;
        let bytes = std::fs::read(&cfg.wasm).map_err(|source| LoadError::Read {
            path: cfg.wasm.clone(),
            source,
        })?;
        let invalid_as = |what: &str, e: wasmtime::Error| LoadError::Invalid {
            path: cfg.wasm.clone(),
            message: format!("{what}: {e:#}"),
        };
        let component = compile_cached(&engine, &bytes, cache_dir)
            .map_err(|e| invalid_as("not a WebAssembly component", e))?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(invalid)?;
        let pre: InstancePre<State> = linker.instantiate_pre(&component).map_err(|e| {
            invalid_as(
                "it imports what Hydrant does not provide (only WASI 0.2 without files or network)",
                e,
            )
        })?;
        let pre = bindings::TransformerPre::new(pre).map_err(|e| {
            invalid_as(
                &format!("it does not implement the world {WORLD} (transforms/wit/transform.wit)"),
                e,
            )
        })?;
        spawn_epoch_ticker(&engine);
        let t = Transform {
            cfg,
            engine,
            pre,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                live: 0,
            }),
            freed: Condvar::new(),
        };
        // One instance up front: a component that cannot start, or refuses its
        // config, is reported now rather than at the first record.
        let first = t.instantiate()?;
        t.release(Some(first));
        Ok(t)
    }

    pub fn config(&self) -> &TransformConfig {
        &self.cfg
    }

    fn instantiate(&self) -> Result<Instance, LoadError> {
        // No preopened directories, no sockets, no name lookups (the
        // defaults already refuse every address; this says so).
        let wasi = WasiCtx::builder()
            .inherit_stderr()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.cfg.memory_bytes_max)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            State {
                wasi,
                table: ResourceTable::new(),
                limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(self.cfg.timeout));
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: self.cfg.wasm.clone(),
            message: format!("{e:#}"),
        };
        let bindings = self.pre.instantiate(&mut store).map_err(invalid)?;
        store.set_epoch_deadline(ticks(self.cfg.timeout));
        bindings
            .call_init(&mut store, &self.cfg.config)
            .map_err(invalid)?
            .map_err(LoadError::Init)?;
        Ok(Instance { store, bindings })
    }

    /// An instance to call: an idle one, a new one while under the bound,
    /// or the next one released.
    fn acquire(&self) -> Result<Instance, LoadError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(i) = pool.idle.pop() {
                return Ok(i);
            }
            if pool.live < self.cfg.instances_max {
                pool.live += 1;
                drop(pool);
                let made = self.instantiate();
                if made.is_err() {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    pool.live -= 1;
                    self.freed.notify_one();
                }
                return made;
            }
            pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns an instance to the pool, or (None) accounts for one that was
    /// thrown away.
    fn release(&self, instance: Option<Instance>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match instance {
            Some(i) => pool.idle.push(i),
            None => pool.live = pool.live.saturating_sub(1),
        }
        self.freed.notify_one();
    }

    /// Transforms records: one outcome per input, in order. Blocking. Never
    /// fails as a whole: what cannot be transformed is a `Failed` outcome.
    pub fn run(&self, frames: &[Record]) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(frames.len());
        let mut start = 0;
        while start < frames.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < frames.len()
                && end - start < self.cfg.batch_records_max
                && (end == start || bytes + frames[end].data.len() <= self.cfg.batch_bytes_max)
            {
                bytes += frames[end].data.len();
                end += 1;
            }
            self.run_isolating(&frames[start..end], &mut out);
            start = end;
        }
        out
    }

    /// Runs one batch; if it traps, splits it to find the records that make
    /// it trap, so the rest still go through. A timeout fails the whole
    /// batch (splitting would cost a timeout per half).
    fn run_isolating(&self, frames: &[Record], out: &mut Vec<Outcome>) {
        match self.call(frames) {
            Ok(outcomes) => out.extend(outcomes),
            Err(CallError::Trap(why)) if frames.len() > 1 => {
                tracing::debug!(records = frames.len(), error = %why, "transform trapped; splitting the batch");
                let (a, b) = frames.split_at(frames.len() / 2);
                self.run_isolating(a, out);
                self.run_isolating(b, out);
            }
            Err(CallError::Trap(why)) => out.push(Outcome::Failed(why)),
            Err(CallError::Unavailable(why)) => {
                out.extend(frames.iter().map(|_| Outcome::Failed(why.clone())));
            }
            Err(CallError::Timeout) => {
                let why = format!(
                    "the transform did not finish a batch of {} records within {} ms",
                    frames.len(),
                    self.cfg.timeout.as_millis()
                );
                out.extend(frames.iter().map(|_| Outcome::Failed(why.clone())));
            }
        }
    }

    /// One call into an instance.
    fn call(&self, frames: &[Record]) -> Result<Vec<Outcome>, CallError> {
        let mut inst = self.acquire().map_err(|e| {
            CallError::Unavailable(format!("cannot start a transform instance: {e}"))
        })?;
        let batch: Vec<WitRecord> = frames
            .iter()
            .map(|f| WitRecord {
                id: f.offset,
                data: f.data.to_vec(),
                partition_key: String::from_utf8_lossy(&f.key).into_owned(),
                arrival_ms: u64::try_from(f.arrival_ms).unwrap_or(0),
            })
            .collect();
        inst.store.set_epoch_deadline(ticks(self.cfg.timeout));
        let started = Instant::now();
        let result = inst.bindings.call_transform(&mut inst.store, &batch);
        match result {
            Ok(outcomes) => {
                self.release(Some(inst));
                if outcomes.len() != frames.len() {
                    let why = format!(
                        "the transform returned {} outcomes for {} records",
                        outcomes.len(),
                        frames.len()
                    );
                    return Ok(frames
                        .iter()
                        .map(|_| Outcome::Failed(why.clone()))
                        .collect());
                }
                Ok(outcomes.into_iter().map(Outcome::from).collect())
            }
            Err(e) => {
                // The instance's state is unknown after a trap: discard it.
                self.release(None);
                let trap = e.downcast_ref::<wasmtime::Trap>().copied();
                if trap == Some(wasmtime::Trap::Interrupt) {
                    return Err(CallError::Timeout);
                }
                let msg = format!("{e:#}");
                let why = if msg.contains("forcing trap when growing memory") {
                    format!(
                        "the transform needed more than {} MiB of memory",
                        self.cfg.memory_bytes_max >> 20
                    )
                } else {
                    format!(
                        "the transform trapped after {} ms: {}",
                        started.elapsed().as_millis(),
                        first_line(&msg)
                    )
                };
                Err(CallError::Trap(why))
            }
        }
    }
}

impl From<WitOutcome> for Outcome {
    fn from(o: WitOutcome) -> Self {
        match o {
            WitOutcome::Ok(t) => Outcome::Ok {
                data: Bytes::from(t.data),
                keys: t.partition_keys,
            },
            WitOutcome::Dropped => Outcome::Dropped,
            WitOutcome::Failed(why) => Outcome::Failed(why),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// Advances the engine's epoch every tick until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("hydrant-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        // Without the ticker a call can never time out, but it still runs.
        tracing::error!(error = %e, "cannot start the transform timeout thread");
    }
}

/// The compiled component, from the cache when a previous run compiled the
/// same bytes with a compatible engine.
fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm);
    };
    let mut compat = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut h = sha2::Sha256::new();
    h.update(wasm);
    h.update(compat.finish().to_le_bytes());
    let path = dir.join(format!("{}.cwasm", hex::encode(h.finalize())));
    if path.exists() {
        // SAFETY: the file is one this function wrote with
        // `Component::serialize` for an engine of the same compatibility
        // hash, named by the hash of its source; wasmtime checks its header
        // and version again before use.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compiled transform cache unusable; recompiling");
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    let stored = component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        });
    if let Err(e) = stored {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot cache the compiled transform; it will be compiled again next start");
    }
    Ok(component)
}
