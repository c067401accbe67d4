//! Applications made through the API, kept across restarts: one
//! `data_dir/analytics/NAME/app.json` each, holding the request as updates
//! changed it, its version and timestamps, and whether it runs. Replaced
//! atomically; the config is derived from the request again at load, so
//! the file and the API can never disagree.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ApplicationConfig;
use crate::log::files::write_atomic;

/// What the API knows of an application.
#[derive(Clone, Debug)]
pub struct AppRecord {
    pub config: ApplicationConfig,
    pub description: String,
    /// `ApplicationVersionId`: 1 at creation, +1 per change.
    pub version: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The API request as changed since (None for YAML applications).
    pub request: Option<Value>,
    /// Whether it runs (and starts again with the daemon).
    pub running: bool,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    request: Value,
    description: String,
    version: u64,
    created_ms: i64,
    updated_ms: i64,
    running: bool,
}

const FILE: &str = "app.json";

/// Saves an API application's record under `dir`. Blocking.
pub fn save(dir: &Path, r: &AppRecord) -> std::io::Result<()> {
    let Some(request) = &r.request else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let saved = Saved {
        request: request.clone(),
        description: r.description.clone(),
        version: r.version,
        created_ms: r.created_ms,
        updated_ms: r.updated_ms,
        running: r.running,
    };
    let bytes = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(FILE), &bytes)
}

/// Forgets an application: its record, checkpoint and everything else.
pub fn delete(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every saved application under `root`, its config derived from its
/// request by `derive`; one that cannot be read is reported and skipped.
pub fn load_all(
    root: &Path,
    derive: impl Fn(&str, &Value) -> Result<ApplicationConfig, String>,
) -> Vec<AppRecord> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path().join(FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let saved: Saved = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(app = name, path = %path.display(), error = %err, "cannot read a saved application");
                continue;
            }
        };
        match derive(&name, &saved.request) {
            Ok(config) => out.push(AppRecord {
                config,
                description: saved.description,
                version: saved.version,
                created_ms: saved.created_ms,
                updated_ms: saved.updated_ms,
                request: Some(saved.request),
                running: saved.running,
            }),
            Err(err) => {
                tracing::error!(app = name, error = %err, "a saved application is no longer valid")
            }
        }
    }
    out
}
