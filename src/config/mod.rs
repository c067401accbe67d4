//! Configuration: YAML pipelines parsed into raw structs ([`raw`]), then
//! validated into the typed [`Config`] the daemon runs.
//!
//! Every error names its YAML path (`streams.app.buffering.size_mb`) and the
//! reason; validation reports all of them at once. `${VAR}` (and
//! `${VAR:-default}`, `$$` for a literal `$`) is replaced from the environment
//! before parsing, so secrets need not sit in the file. Nothing downstream ever
//! sees an invalid value: this is the only place config is checked.

pub mod analytics;
pub mod at_rest;
mod auth;
pub mod channel;
mod cluster;
mod destination;
mod encoding;
mod env;
pub mod firehose;
mod http;
pub mod iceberg;
mod kinesis;
mod limits;
mod partitioning;
mod policy;
mod postgres;
pub mod raw;
mod store;
mod stream;
mod transform;
mod video;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use analytics::{AnalyticsOptions, ApplicationConfig};
pub use auth::AccessKey;
pub use cluster::ClusterConfig;
pub use destination::{Backup, BackupMode, Destination, ObjectDestination};
pub use env::interpolate_env;
pub use http::HttpDestination;
pub use iceberg::{CatalogDatabase, IcebergCatalog, IcebergDestination, Warehouse};
pub use kinesis::{KinesisOptions, KinesisStreamConfig};
pub use limits::Limits;
pub use policy::{Policy, parse as parse_policy};
pub use postgres::{ColumnMap, ColumnMapping, PostgresDestination, PostgresTls};
pub use store::{S3Store, StoreConfig};
pub use stream::{Source, StreamConfig};
pub use video::{VideoArchive, VideoOptions};

use crate::aws;
use crate::log::LogOptions;
use raw::RawConfig;

/// One problem in the config: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The validated configuration of the daemon.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The HTTPS listener, beside `listen`.
    pub listen_tls: Option<ListenTls>,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub access_keys: Vec<AccessKey>,
    pub limits: Limits,
    pub log: LogOptions,
    pub disk_quota_bytes: u64,
    /// Where the buckets of streams created through the API live.
    pub object_store: StoreConfig,
    pub kinesis: KinesisOptions,
    /// The Kinesis Video Streams API's bounds.
    pub video: VideoOptions,
    /// SQL applications and their bounds.
    pub analytics: AnalyticsOptions,
    /// Cluster mode: the logs and shared state in NATS JetStream.
    pub cluster: Option<ClusterConfig>,
    /// Iceberg catalogs by name, the default `hydrant` among them.
    pub iceberg_catalogs: BTreeMap<String, IcebergCatalog>,
    pub streams: BTreeMap<String, StreamConfig>,
}

impl Config {
    /// The embedded default: one stream `default` writing JSON lines to
    /// `./hydrant-data/out`.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        let yaml = "streams:\n  default:\n    buffering: { size_mb: 5, interval_secs: 10 }\n    destination:\n      type: file\n      path: ./hydrant-data/out\n";
        parse(yaml)
    }

    /// Reads, interpolates and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        parse(&text)
    }
}

pub(crate) fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let text =
        interpolate_env(text, |k| std::env::var(k).ok()).map_err(|e| ConfigErrors(vec![e]))?;
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        let de = serde_norway::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.to_string();
            // serde_norway starts with its own path (the enclosing map's for
            // an unknown key) and appends " at line L column C"; the path is
            // already given, the position helps.
            if let Some((head, rest)) = message.split_once(": ")
                && !head.contains(' ')
                && path.starts_with(head)
            {
                message = rest.to_string();
            }
            ConfigErrors(vec![err(
                if path == "." { String::new() } else { path },
                message,
            )])
        })?
    };
    let mut config = validate(raw)?;
    let tree: serde_norway::Value = serde_norway::from_str(&text).unwrap_or_default();
    for (name, stream) in config.streams.iter_mut() {
        let yaml = tree
            .get("streams")
            .and_then(|s| s.get(name.as_str()))
            .cloned()
            .unwrap_or_default();
        stream.fingerprint = fingerprint(stream, &yaml);
    }
    Ok(config)
}

/// See [`StreamConfig::fingerprint`].
fn fingerprint(stream: &StreamConfig, yaml: &serde_norway::Value) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(serde_json::to_string(yaml).unwrap_or_default());
    h.update(format!("{:?}", stream.destination));
    h.update(format!("{:?}", stream.error_output));
    h.update(format!("{:?}", stream.backup));
    if let Some(t) = &stream.transform {
        h.update(std::fs::read(&t.wasm).unwrap_or_default());
    }
    if let Some(e) = &stream.encryption {
        for (id, key) in &e.keys {
            h.update(id);
            h.update(key.0);
        }
    }
    hex::encode(h.finalize())
}

impl Config {
    /// The settings a reload cannot change (they need a restart), by name,
    /// where `other` differs from `self`.
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listen != other.listen {
            out.push("listen");
        }
        if self.listen_tls.as_ref().map(|t| t.address)
            != other.listen_tls.as_ref().map(|t| t.address)
        {
            out.push("listen_tls.address");
        }
        if self.data_dir != other.data_dir {
            out.push("data_dir");
        }
        if format!("{:?}", self.log) != format!("{:?}", other.log)
            || self.disk_quota_bytes != other.disk_quota_bytes
        {
            out.push("log");
        }
        if format!("{:?}", self.video) != format!("{:?}", other.video) {
            out.push("video");
        }
        if format!("{:?}", self.analytics) != format!("{:?}", other.analytics) {
            out.push("analytics");
        }
        if format!("{:?}", self.limits) != format!("{:?}", other.limits) {
            out.push("limits");
        }
        if self.access_keys != other.access_keys {
            out.push("auth");
        }
        if format!("{:?}", self.object_store) != format!("{:?}", other.object_store) {
            out.push("object_store");
        }
        if self.shutdown_timeout != other.shutdown_timeout {
            out.push("shutdown_timeout_secs");
        }
        if self.kinesis != other.kinesis {
            out.push("kinesis");
        }
        if self.cluster != other.cluster {
            out.push("cluster");
        }
        if self.iceberg_catalogs != other.iceberg_catalogs {
            out.push("iceberg");
        }
        out
    }
}

pub(crate) fn range_check<T: PartialOrd + fmt::Display + Copy>(
    errors: &mut Vec<ConfigError>,
    path: &str,
    value: T,
    min: T,
    max: T,
) -> T {
    if value < min || value > max {
        errors.push(err(
            path,
            format!("{value} is out of range ({min} to {max})"),
        ));
    }
    value
}

/// The HTTPS listener: its address, and its certificate, key and client CA,
/// each read and checked now, so a bad file is a config error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenTls {
    pub address: SocketAddr,
    pub files: crate::tls::TlsFiles,
}

fn listen_tls(
    errors: &mut Vec<ConfigError>,
    raw: raw::RawListenTls,
    listen: SocketAddr,
) -> Option<ListenTls> {
    let address = match raw.address.parse::<SocketAddr>() {
        Ok(a) if a == listen && a.port() != 0 => {
            errors.push(err(
                "listen_tls.address",
                format!("`{a}` is also `listen`; HTTP and HTTPS need their own ports"),
            ));
            return None;
        }
        Ok(a) => a,
        Err(e) => {
            errors.push(err(
                "listen_tls.address",
                format!("`{}` is not an address:port ({e})", raw.address),
            ));
            return None;
        }
    };
    let files = crate::tls::TlsFiles {
        cert_file: PathBuf::from(raw.cert_file),
        key_file: PathBuf::from(raw.key_file),
        client_ca_file: raw.client_ca_file.map(PathBuf::from),
    };
    if let Err(e) = crate::tls::server_config(&files) {
        errors.push(err("listen_tls", e));
        return None;
    }
    Some(ListenTls { address, files })
}

/// Validates a parsed file section by section, collecting every error.
fn validate(raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let listen_src = raw.listen.as_deref().unwrap_or("127.0.0.1:4573");
    let listen = match listen_src.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(e) => {
            errors.push(err(
                "listen",
                format!("`{listen_src}` is not an address:port ({e})"),
            ));
            SocketAddr::from(([127, 0, 0, 1], 4573))
        }
    };
    let data_dir = PathBuf::from(raw.data_dir.as_deref().unwrap_or("./hydrant-data"));
    let shutdown_secs = range_check(
        &mut errors,
        "shutdown_timeout_secs",
        raw.shutdown_timeout_secs.unwrap_or(30),
        1,
        3600,
    );
    let listen_tls = raw
        .listen_tls
        .and_then(|t| listen_tls(&mut errors, t, listen));
    let exposed = match &listen_tls {
        Some(t) if !t.address.ip().is_loopback() => t.address,
        _ => listen,
    };
    let access_keys = auth::access_keys(&mut errors, raw.auth, exposed);
    let limits = limits::limits(&mut errors, raw.limits.unwrap_or_default());
    let (log, disk_quota_bytes) = limits::log(&mut errors, raw.log.unwrap_or_default());
    let object_store = match raw.object_store {
        None => StoreConfig::File {
            root: data_dir.join("buckets"),
        },
        Some(s) => store::store_config(&mut errors, "object_store", &s, &data_dir),
    };
    let cluster = raw.cluster.and_then(|c| cluster::cluster(&mut errors, c));
    let mut raw_kinesis = raw.kinesis.unwrap_or_default();
    let declared = std::mem::take(&mut raw_kinesis.streams);
    let mut kinesis = kinesis::kinesis(&mut errors, raw_kinesis);
    kinesis.streams = kinesis::declared(
        &mut errors,
        declared,
        kinesis.shards_max,
        (&log.keys, cluster.is_some()),
    );
    let iceberg_catalogs = iceberg::catalogs(&mut errors, raw.iceberg, &data_dir, &object_store);
    let video = video::video(&mut errors, raw.video.unwrap_or_default(), &object_store);
    let analytics = analytics::analytics(
        &mut errors,
        raw.analytics.unwrap_or_default(),
        cluster.is_some(),
    );
    let mut streams = BTreeMap::new();
    for (name, s) in raw.streams {
        let path = format!("streams.{name}");
        if !aws::valid_delivery_stream_name(&name) {
            errors.push(err(
                &path,
                "a stream name is 1 to 64 characters of letters, digits, `_`, `.` and `-`",
            ));
        }
        if let Some(sc) = stream::stream_config(
            &mut errors,
            &path,
            &name,
            s,
            &stream::Defaults {
                store: &object_store,
                data_dir: &data_dir,
                catalogs: &iceberg_catalogs,
                log_keys: &log.keys,
                clustered: cluster.is_some(),
            },
        ) {
            streams.insert(name, sc);
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        listen,
        listen_tls,
        data_dir,
        shutdown_timeout: Duration::from_secs(shutdown_secs),
        access_keys,
        limits,
        log,
        disk_quota_bytes,
        object_store,
        kinesis,
        video,
        analytics,
        cluster,
        iceberg_catalogs,
        streams,
    })
}

#[cfg(test)]
mod tests;
