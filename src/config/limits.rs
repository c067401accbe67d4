//! `limits` and `log`: the daemon's bounds on requests, encoders and memory,
//! and the shard log's settings and disk quota.

use super::raw::{RawLimits, RawLog};
use super::{ConfigError, err, range_check};
use crate::encode::gzip::{GzipLimits, MEMBER_BYTES_DEFAULT, THREADS_MAX_DEFAULT};
use crate::log::LogOptions;

/// Bounds of the daemon as a whole.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest HTTP request body accepted.
    pub request_bytes_max: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub requests_in_flight_max: usize,
    /// Streams that `CreateDeliveryStream` may create.
    pub api_streams_max: usize,
    /// Batches encoded (and compressed, encrypted) at once, over all streams:
    /// each holds its records in memory, and more than the machine has cores
    /// buys no speed.
    pub encoders_max: usize,
    /// gzip's bounds on one batch: the input of one member, and the threads
    /// that compress one batch's members at once.
    pub gzip: GzipLimits,
    /// glibc malloc arenas (`M_ARENA_MAX`). glibc's own default, 8 per core,
    /// lets freed buffers of many threads pile up in separate arenas; one per
    /// core keeps peak RSS down at no cost in speed measured here.
    pub malloc_arenas: usize,
    /// The time slice, in microseconds, the threads that acknowledge
    /// producers ask the kernel for (see [`crate::sched`]); 0: the kernel's.
    pub ack_slice_us: u64,
    /// How long a TLS client may take to finish its handshake.
    pub tls_handshake_timeout: std::time::Duration,
    /// TLS handshakes in progress at once; more wait to be accepted.
    pub tls_handshakes_max: usize,
    /// Connections open at once (HTTP and HTTPS each); more wait in the
    /// listen backlog.
    pub connections_max: usize,
    /// How long a client may take to send a request's headers; also how
    /// long a keep-alive connection may sit idle.
    pub header_read_timeout: std::time::Duration,
    /// How long a client may take to send a request's body.
    pub body_read_timeout: std::time::Duration,
}

/// The number of cores, the default of bounds that scale with them.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Validates `limits`.
pub(super) fn limits(errors: &mut Vec<ConfigError>, l: RawLimits) -> Limits {
    Limits {
        request_bytes_max: range_check(
            errors,
            "limits.request_bytes_max",
            l.request_bytes_max.unwrap_or(8 << 20),
            1 << 20,
            64 << 20,
        ) as usize,
        requests_in_flight_max: range_check(
            errors,
            "limits.requests_in_flight_max",
            l.requests_in_flight_max.unwrap_or(1024),
            1,
            65_536,
        ),
        api_streams_max: range_check(
            errors,
            "limits.api_streams_max",
            l.api_streams_max.unwrap_or(50),
            0,
            5000,
        ),
        encoders_max: range_check(
            errors,
            "limits.encoders_max",
            l.encoders_max.unwrap_or_else(cores),
            1,
            1024,
        ),
        gzip: gzip_limits(errors, &l),
        malloc_arenas: range_check(
            errors,
            "limits.malloc_arenas",
            l.malloc_arenas.unwrap_or_else(cores),
            1,
            1024,
        ),
        ack_slice_us: range_check(
            errors,
            "limits.ack_slice_us",
            l.ack_slice_us.unwrap_or(100),
            0,
            100_000,
        ),
        tls_handshake_timeout: std::time::Duration::from_secs(range_check(
            errors,
            "limits.tls_handshake_timeout_secs",
            l.tls_handshake_timeout_secs.unwrap_or(10),
            1,
            300,
        )),
        tls_handshakes_max: range_check(
            errors,
            "limits.tls_handshakes_max",
            l.tls_handshakes_max.unwrap_or(1024),
            1,
            65_536,
        ),
        connections_max: range_check(
            errors,
            "limits.connections_max",
            l.connections_max.unwrap_or(4096),
            1,
            1_000_000,
        ),
        header_read_timeout: std::time::Duration::from_secs(range_check(
            errors,
            "limits.header_read_timeout_secs",
            l.header_read_timeout_secs.unwrap_or(20),
            1,
            3600,
        )),
        body_read_timeout: std::time::Duration::from_secs(range_check(
            errors,
            "limits.body_read_timeout_secs",
            l.body_read_timeout_secs.unwrap_or(60),
            1,
            3600,
        )),
    }
}

/// Validates `limits.gzip_member_bytes` and `limits.gzip_threads_max`.
fn gzip_limits(errors: &mut Vec<ConfigError>, l: &RawLimits) -> GzipLimits {
    GzipLimits {
        member_bytes: range_check(
            errors,
            "limits.gzip_member_bytes",
            l.gzip_member_bytes.unwrap_or(MEMBER_BYTES_DEFAULT),
            64 << 10,
            128 << 20,
        ),
        threads_max: range_check(
            errors,
            "limits.gzip_threads_max",
            l.gzip_threads_max.unwrap_or(THREADS_MAX_DEFAULT),
            1,
            1024,
        ),
    }
}

/// Validates `log`: the shard log's options and the disk quota in bytes.
pub(super) fn log(errors: &mut Vec<ConfigError>, rl: RawLog) -> (LogOptions, u64) {
    let log = LogOptions {
        segment_bytes: range_check(
            errors,
            "log.segment_bytes",
            rl.segment_bytes.unwrap_or(64 << 20),
            1 << 20,
            1 << 30,
        ),
        append_queue_max: range_check(
            errors,
            "log.append_queue_max",
            rl.append_queue_max.unwrap_or(1024),
            1,
            1 << 20,
        ),
        group_commit_bytes_max: range_check(
            errors,
            "log.group_commit_bytes_max",
            rl.group_commit_bytes_max.unwrap_or(16 << 20),
            64 << 10,
            256 << 20,
        ),
        put_run_bytes: range_check(
            errors,
            "log.put_run_bytes",
            rl.put_run_bytes.unwrap_or(4 << 20),
            0,
            1 << 30,
        ),
        keys: std::sync::Arc::new(super::at_rest::keys(errors, rl.keys)),
    };
    let disk_quota_bytes = range_check(
        errors,
        "log.disk_quota_bytes",
        rl.disk_quota_bytes.unwrap_or(10 << 30),
        16 << 20,
        u64::MAX,
    );
    if let Some(f) = rl.fsync.as_deref()
        && f != "always"
    {
        errors.push(err("log.fsync", format!("`{f}` is not supported: the only mode is `always` (every acknowledged record is fsynced)")));
    }
    (log, disk_quota_bytes)
}
