//! Kinesis Data Analytics: SQL applications that read a stream as another
//! consumer, evaluate continuous SQL (DataFusion for expressions, types,
//! functions and accumulators; windows, watermarks and checkpoints here),
//! and write their results into Hydrant streams exactly once.
//!
//! An application comes from YAML (`analytics.applications`) or the
//! KinesisAnalytics API; this module plans it (every problem found before
//! anything runs), runs each one on a thread of its own (`runner`), and
//! keeps the API's applications across restarts. It must not serve HTTP:
//! `ingest::analytics` is the API.

pub mod checkpoint;
pub mod decode;
pub mod encode;
pub mod engine;
pub mod kda;
pub mod plan;
pub mod runner;
pub mod schema;
pub mod state;
pub mod status;
pub mod store;
pub mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::analytics::{AppFormat, AppStream, ApplicationConfig, StartingPosition};
use crate::streams::Registry;
use engine::{Engine, EngineDef, EngineError, OutputDef};
use runner::io::StreamRef;
use runner::{RunOptions, Runner, StartAt};
use status::AppStatus;

/// Why an application cannot be made or run, as the API answers it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The SQL cannot run (`CodeValidationException`).
    #[error("{0}")]
    Code(String),
    /// A field is wrong (`InvalidArgumentException`), named.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A stream or application that does not exist
    /// (`ResourceNotFoundException`).
    #[error("{0}")]
    NotFound(String),
    /// In use or in the wrong state (`ResourceInUseException`).
    #[error("{0}")]
    InUse(String),
    /// Over `analytics.applications_max` (`LimitExceededException`).
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Io(String),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> AppError {
    AppError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The schema an input config declares.
pub fn input_schema(c: &ApplicationConfig) -> Result<schema::InputSchema, AppError> {
    let mut columns = Vec::new();
    for (i, col) in c.input.columns.iter().enumerate() {
        let sql_type = schema::SqlType::parse(&col.sql_type)
            .map_err(|e| invalid(format!("input.columns[{i}].type"), e.to_string()))?;
        columns.push(schema::Column {
            name: col.name.clone(),
            sql_type,
            mapping: col.mapping.clone(),
        });
    }
    let format = match &c.input.format {
        AppFormat::Json { row_path } => schema::RecordFormat::Json {
            row_path: row_path.clone(),
        },
        AppFormat::Csv {
            row_delimiter,
            column_delimiter,
        } => schema::RecordFormat::Csv {
            row_delimiter: row_delimiter.clone(),
            column_delimiter: column_delimiter.clone(),
        },
    };
    let s = schema::InputSchema { format, columns };
    s.validate()
        .map_err(|e| invalid("input.columns", e.to_string()))?;
    Ok(s)
}

fn output_format(f: &AppFormat) -> encode::OutputFormat {
    match f {
        AppFormat::Json { .. } => encode::OutputFormat::Json,
        AppFormat::Csv {
            row_delimiter,
            column_delimiter,
        } => encode::OutputFormat::Csv {
            row_delimiter: row_delimiter.clone(),
            column_delimiter: column_delimiter.clone(),
        },
    }
}

pub fn stream_ref(s: &AppStream) -> StreamRef {
    match s {
        AppStream::Kinesis(n) => StreamRef::Kinesis(n.clone()),
        AppStream::Delivery(n) => StreamRef::Delivery(n.clone()),
    }
}

/// Plans an application: its engine, and where each output goes by the
/// exact name of its in-application stream.
pub fn build(
    c: &ApplicationConfig,
    groups_max: usize,
) -> Result<(Engine, BTreeMap<String, StreamRef>), AppError> {
    let schema = input_schema(c)?;
    let program = kda::parse_program(&c.sql).map_err(|e| AppError::Code(e.to_string()))?;
    let input_stream = format!("{}_001", c.input.name_prefix);
    // Outputs name in-application streams case-insensitively.
    let known: Vec<String> = program
        .streams
        .iter()
        .map(|s| s.name.clone())
        .chain(program.pumps.iter().map(|p| p.target.clone()))
        .chain([engine::ERROR_STREAM.to_string()])
        .collect();
    let mut outputs = BTreeMap::new();
    let mut defs = BTreeMap::new();
    // The code is checked first: an output naming no stream is reported
    // once the code is known to be right.
    let mut unknown = None;
    for (name, o) in &c.outputs {
        let Some(exact) = known
            .iter()
            .find(|k| *k == name)
            .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(name)))
            .cloned()
        else {
            unknown.get_or_insert_with(|| {
                invalid(
                    format!("outputs.{name}"),
                    "names no in-application stream a pump inserts into",
                )
            });
            continue;
        };
        if stream_ref(&o.stream) == stream_ref(&c.input.stream) {
            return Err(invalid(
                format!("outputs.{name}"),
                "is the application's input",
            ));
        }
        defs.insert(
            exact.clone(),
            OutputDef {
                format: output_format(&o.format),
                partition_key: o.partition_key.clone(),
            },
        );
        outputs.insert(exact, stream_ref(&o.stream));
    }
    let engine = Engine::new(EngineDef {
        input_stream,
        schema,
        program,
        outputs: defs,
        delay_ms: c.max_out_of_order.as_millis() as i64,
        groups_max,
    })
    .map_err(|e| match e {
        EngineError::Code { .. } => AppError::Code(e.to_string()),
        EngineError::Eval(m) => AppError::Code(m),
    })?;
    if let Some(e) = unknown {
        return Err(e);
    }
    for (name, o) in &c.outputs {
        let Some(key) = &o.partition_key else {
            continue;
        };
        let columns = outputs
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .map(|k| engine.columns_of(k))
            .unwrap_or_default();
        if !columns.iter().any(|c| c == key) {
            return Err(invalid(
                format!("outputs.{name}.partition_key"),
                format!(
                    "{key} is not a column of {name} (its columns: {})",
                    columns.join(", ")
                ),
            ));
        }
    }
    Ok((engine, outputs))
}

/// A digest of what an application's state depends on: its SQL, input
/// schema and window settings.
fn program_digest(c: &ApplicationConfig) -> String {
    use sha2::Digest;
    let text = format!(
        "{}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{:?}",
        c.sql, c.input.columns, c.input.format, c.input.name_prefix, c.max_out_of_order
    );
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Where an application came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Yaml,
    Api,
}

struct Running {
    stop: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

/// One application.
pub struct App {
    pub origin: Origin,
    pub status: Arc<AppStatus>,
    /// The API's description of it (its request, version, timestamps).
    pub record: Mutex<store::AppRecord>,
    running: Mutex<Option<Running>>,
}

impl App {
    pub fn config(&self) -> ApplicationConfig {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
    }

    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|r| !r.thread.is_finished())
    }
}

/// Every application of the daemon.
pub struct Applications {
    pub registry: Arc<Registry>,
    dir: PathBuf,
    apps: Mutex<BTreeMap<String, Arc<App>>>,
    /// Serializes create, update, start, stop and delete.
    pub admin: tokio::sync::Mutex<()>,
}

impl Applications {
    pub fn new(registry: Arc<Registry>) -> Arc<Applications> {
        let dir = registry.config.data_dir.join("analytics");
        Arc::new(Applications {
            registry,
            dir,
            apps: Mutex::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        })
    }

    fn apps(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<App>>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<App>> {
        self.apps().get(name).cloned()
    }

    pub fn all(&self) -> Vec<(String, Arc<App>)> {
        self.apps()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn groups_max(&self) -> usize {
        self.registry.config.analytics.groups_max
    }

    pub fn app_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The application that writes to `stream`, if one does: its outputs
    /// are its alone, so producers' puts to it are refused.
    pub fn owner_of(&self, stream: &StreamRef) -> Option<String> {
        self.apps()
            .iter()
            .find(|(_, a)| {
                // On every put: the config is looked at, not copied.
                let r = a.record.lock().unwrap_or_else(|p| p.into_inner());
                r.config
                    .outputs
                    .values()
                    .any(|o| stream_ref(&o.stream) == *stream)
            })
            .map(|(n, _)| n.clone())
    }

    /// Checks an application's streams exist and that no other
    /// application writes its outputs.
    pub fn check_streams(&self, c: &ApplicationConfig) -> Result<(), AppError> {
        let exists = |s: &AppStream| match s {
            AppStream::Kinesis(n) => self.registry.kinesis.get(n).is_some(),
            AppStream::Delivery(n) => self.registry.get(n).is_some(),
        };
        if !exists(&c.input.stream) {
            return Err(AppError::NotFound(format!(
                "the input {} does not exist",
                stream_ref(&c.input.stream).key()
            )));
        }
        for (name, o) in &c.outputs {
            if let AppStream::Delivery(d) = &o.stream
                && self
                    .registry
                    .get(d)
                    .is_some_and(|e| e.config.source != crate::config::Source::DirectPut)
            {
                return Err(invalid(
                    format!("outputs.{name}"),
                    format!(
                        "delivery stream {d} reads a Kinesis stream; write to that stream instead"
                    ),
                ));
            }
            if !exists(&o.stream) {
                return Err(AppError::NotFound(format!(
                    "the output {name}'s stream {} does not exist",
                    stream_ref(&o.stream).key()
                )));
            }
            let r = stream_ref(&o.stream);
            if let Some(owner) = self.owner_of(&r).filter(|o| *o != c.name) {
                return Err(AppError::InUse(format!(
                    "{} is already the output of application {owner}",
                    r.key()
                )));
            }
        }
        Ok(())
    }

    /// Adds an application (not started).
    pub fn insert(&self, origin: Origin, record: store::AppRecord) -> Arc<App> {
        let name = record.config.name.clone();
        let app = Arc::new(App {
            origin,
            status: Arc::new(AppStatus::new("READY")),
            record: Mutex::new(record),
            running: Mutex::new(None),
        });
        self.apps().insert(name, app.clone());
        app
    }

    /// Removes an application (stopped first).
    pub fn remove(&self, name: &str) -> Option<Arc<App>> {
        self.apps().remove(name)
    }

    /// Starts `app` reading from `start`.
    pub fn start(&self, app: &Arc<App>, start: StartingPosition) -> Result<(), AppError> {
        let c = app.config();
        if self.registry.cluster.is_some() {
            return Err(invalid(
                "ApplicationName",
                "SQL applications run on a single node; cluster mode does not run them yet",
            ));
        }
        self.check_streams(&c)?;
        let (engine, outputs) = build(&c, self.groups_max())?;
        let stop = CancellationToken::new();
        let status = app.status.clone();
        status.rebase();
        status.set_state("STARTING");
        status.set_error(None);
        let dir = self.app_dir(&c.name);
        std::fs::create_dir_all(&dir).map_err(|e| AppError::Io(e.to_string()))?;
        let runner = Runner {
            name: c.name.clone(),
            registry: self.registry.clone(),
            rt: tokio::runtime::Handle::current(),
            engine,
            input: stream_ref(&c.input.stream),
            outputs,
            path: dir.join("checkpoint"),
            consumer: format!("analytics-{}", c.name),
            program: program_digest(&c),
            options: RunOptions {
                checkpoint_interval: c.checkpoint_interval,
                output_interval: c.output_interval,
                idle: c.idle,
                read_records_max: 4096,
                read_bytes_max: 4 << 20,
            },
            status: status.clone(),
            stop: stop.clone(),
        };
        let at = match start {
            StartingPosition::Now => StartAt::Now,
            StartingPosition::TrimHorizon => StartAt::TrimHorizon,
            StartingPosition::LastStoppedPoint => StartAt::LastStopped,
        };
        let name = c.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("analytics-{name}"))
            .spawn(move || {
                let st = runner.status.clone();
                match runner.run(at) {
                    Ok(()) => st.set_state("READY"),
                    Err(e) => {
                        tracing::error!(app = name, error = %e, "application stopped");
                        st.set_error(Some(e.to_string()));
                        st.set_state("READY");
                    }
                }
            })
            .map_err(|e| AppError::Io(e.to_string()))?;
        *app.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { stop, thread });
        Ok(())
    }

    /// Stops `app`: it publishes what it processed and checkpoints, so a
    /// start from LAST_STOPPED_POINT continues there.
    pub async fn stop(&self, app: &Arc<App>) {
        let running = app.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = running {
            app.status.set_state("STOPPING");
            r.stop.cancel();
            let _ = tokio::task::spawn_blocking(move || r.thread.join()).await;
        }
        app.status.set_state("READY");
    }

    /// Copies every application's numbers into the metrics.
    pub fn note_metrics(&self) {
        for (name, app) in self.all() {
            self.registry
                .metrics
                .analytics
                .note(&name, &app.status.numbers());
        }
    }

    /// Every application's state and numbers, for `/v1/status`.
    pub fn status_json(&self) -> Vec<serde_json::Value> {
        self.all()
            .into_iter()
            .map(|(name, app)| {
                let mut v = app.status.json();
                v["name"] = serde_json::json!(name);
                v["origin"] = serde_json::json!(format!("{:?}", app.origin).to_lowercase());
                v
            })
            .collect()
    }

    /// Stops every application (at shutdown).
    pub async fn stop_all(&self) {
        for (_, app) in self.all() {
            self.stop(&app).await;
        }
    }
}

impl Applications {
    /// Starts the YAML applications (a problem in one stops the daemon,
    /// named by its YAML path) and the API's that were running (a problem
    /// there is logged). `derive` turns a saved API request into a config.
    pub fn start_all(
        &self,
        derive: impl Fn(&str, &serde_json::Value) -> Result<ApplicationConfig, String>,
    ) -> Result<(), String> {
        let now = chrono::Utc::now().timestamp_millis();
        for (name, c) in &self.registry.config.analytics.applications {
            let path = format!("analytics.applications.{name}");
            self.check_streams(c).map_err(|e| format!("{path}: {e}"))?;
            build(c, self.groups_max()).map_err(|e| format!("{path}: {e}"))?;
            let app = self.insert(
                Origin::Yaml,
                store::AppRecord {
                    config: c.clone(),
                    description: String::new(),
                    version: 1,
                    created_ms: now,
                    updated_ms: now,
                    request: None,
                    running: true,
                },
            );
            let at = if self.app_dir(name).join("checkpoint").exists() {
                StartingPosition::LastStoppedPoint
            } else {
                c.input.starting_position
            };
            self.start(&app, at).map_err(|e| format!("{path}: {e}"))?;
        }
        for record in store::load_all(&self.dir, derive) {
            let name = record.config.name.clone();
            if self.get(&name).is_some() {
                tracing::error!(
                    app = name,
                    "an API application has the name of a YAML one; not started"
                );
                continue;
            }
            let running = record.running;
            let app = self.insert(Origin::Api, record);
            if running && let Err(e) = self.start(&app, StartingPosition::LastStoppedPoint) {
                tracing::error!(app = name, error = %e, "cannot start an application");
                app.status.set_error(Some(e.to_string()));
            }
        }
        self.release_retention_of_gone();
        Ok(())
    }

    /// Removes the retention checkpoints of applications that no longer
    /// exist (taken out of the config): they would hold their input's
    /// records for ever.
    fn release_retention_of_gone(&self) {
        let logs = self
            .registry
            .kinesis
            .all()
            .into_iter()
            .map(|k| k.log.dir().to_path_buf())
            .chain(
                self.registry
                    .all()
                    .into_iter()
                    .map(|e| e.log.dir().to_path_buf()),
            );
        for dir in logs {
            let Ok(consumers) = std::fs::read_dir(dir.join("checkpoints")) else {
                continue;
            };
            for c in consumers.flatten() {
                let name = c.file_name().to_string_lossy().into_owned();
                let Some(app) = name.strip_prefix("analytics-") else {
                    continue;
                };
                if self.get(app).is_none() {
                    tracing::info!(app, log = %dir.display(), "releasing the retention a removed application held");
                    if let Err(e) = std::fs::remove_dir_all(c.path()) {
                        tracing::warn!(app, error = %e, "cannot remove a removed application's checkpoints");
                    }
                }
            }
        }
    }
}

impl Applications {
    /// Forgets a stopped application: its record, its checkpoint, and the
    /// consumer checkpoints by which it held its input's retention.
    pub fn forget(&self, name: &str) -> Result<(), AppError> {
        let Some(app) = self.remove(name) else {
            return Ok(());
        };
        if let Ok(view) =
            runner::io::input_view(&self.registry, &stream_ref(&app.config().input.stream))
        {
            let consumer = view
                .log
                .dir()
                .join("checkpoints")
                .join(format!("analytics-{name}"));
            if let Err(e) = std::fs::remove_dir_all(&consumer)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(app = name, error = %e, "cannot remove the input's retention checkpoints");
            }
        }
        store::delete(&self.app_dir(name)).map_err(|e| AppError::Io(e.to_string()))
    }
}
