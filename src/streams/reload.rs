//! A reload (SIGHUP, `hydrant reload`): a changed config file applied to
//! the running streams without pausing ingest, or refused whole.

use super::{Origin, Registry};
use crate::config::{Config, Source};

/// What a reload did, by stream name.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Streams that could not be started, with the reason.
    pub failed: Vec<String>,
}

impl Registry {
    /// Applies a new config's streams: starts added ones, drains and stops
    /// removed ones (what is not delivered within `shutdown_timeout_secs`
    /// stays in their log, delivered if the stream comes back), and restarts
    /// the delivery of changed ones on their running log, so ingest never
    /// pauses. Unchanged streams are not touched. Refused whole, with every
    /// reason, if a setting outside `streams` changed or a stream's shard
    /// count did; nothing is applied then.
    pub async fn reload(&self, new: &Config) -> Result<ReloadReport, Vec<String>> {
        let _g = self.admin.lock().await;
        let mut refused: Vec<String> = self
            .config
            .restart_only_changes(new)
            .into_iter()
            .map(|k| format!("{k}: changes need a restart"))
            .collect();
        let current = self.all();
        let mut plan = ReloadReport::default();
        for (name, cfg) in &new.streams {
            match current.iter().find(|e| &e.config.name == name) {
                None => plan.added.push(name.clone()),
                Some(e) if e.origin != Origin::Yaml => refused.push(format!(
                    "streams.{name}: a stream or channel created through the API has this name"
                )),
                Some(e) if e.config.fingerprint == cfg.fingerprint => {
                    plan.unchanged.push(name.clone())
                }
                Some(e) if e.config.shards != cfg.shards && cfg.source == Source::DirectPut => refused.push(format!(
                    "streams.{name}.shards: cannot change from {} to {} on a running log (restart with an empty log, or add a new stream)",
                    e.config.shards, cfg.shards
                )),
                Some(_) => plan.changed.push(name.clone()),
            }
        }
        for e in &current {
            if e.origin == Origin::Yaml && !new.streams.contains_key(&e.config.name) {
                plan.removed.push(e.config.name.clone());
            }
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut failed = Vec::new();
        for name in &plan.added {
            match self.start(new.streams[name].clone(), Origin::Yaml, now, None) {
                Ok(e) => {
                    self.write().insert(name.clone(), e);
                }
                Err(e) => failed.push(e.to_string()),
            }
        }
        for name in &plan.changed {
            let Some(old) = self.get(name) else { continue };
            // Stop the old delivery first: one reader per shard checkpoint.
            old.abort().await;
            match self.start_on(
                new.streams[name].clone(),
                Origin::Yaml,
                old.created_ms,
                None,
                Some(old.log.clone()),
            ) {
                Ok(e) => {
                    self.write().insert(name.clone(), e);
                }
                Err(e) => {
                    // Keep delivering with the old config rather than not at all.
                    failed.push(format!("{e} (the previous config stays)"));
                    let restarted = self.start_on(
                        (*old.config).clone(),
                        Origin::Yaml,
                        old.created_ms,
                        None,
                        Some(old.log.clone()),
                    );
                    match restarted {
                        Ok(e) => {
                            self.write().insert(name.clone(), e);
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
            }
        }
        for name in &plan.removed {
            let Some(entry) = self.write().remove(name) else {
                continue;
            };
            let drained = entry.stop(self.config.shutdown_timeout).await;
            if !drained {
                tracing::warn!(
                    stream = name,
                    "removed before all records were delivered; they stay in its log"
                );
            }
        }
        plan.failed = failed;
        Ok(plan)
    }
}
