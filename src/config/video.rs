//! `video`: the Kinesis Video Streams API's bounds.

use std::time::Duration;

use super::destination::{ObjectDestination, destination_for_objects};
use super::raw::RawVideo;
use super::store::StoreConfig;
use super::{ConfigError, err, range_check};

/// Where fragments are archived, each as a playable MKV object.
#[derive(Clone, Debug)]
pub struct VideoArchive {
    /// An s3 or file destination; its `prefix` starts every key.
    pub destination: ObjectDestination,
    /// The streams archived: names, `*` matching any run of characters.
    pub streams: Vec<String>,
}

impl VideoArchive {
    /// Whether `stream` is archived.
    pub fn covers(&self, stream: &str) -> bool {
        self.streams.iter().any(|p| glob(p, stream))
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            s.starts_with(head)
                && (0..=s.len() - head.len())
                    .any(|i| s.is_char_boundary(head.len() + i) && glob(rest, &s[head.len() + i..]))
        }
    }
}

/// Bounds of the video streams and their sessions.
#[derive(Clone, Debug)]
pub struct VideoOptions {
    /// Video streams `CreateStream` may create.
    pub streams_max: usize,
    /// PutMedia sessions open at once on one stream; more are refused
    /// (`ConnectionLimitExceededException`).
    pub sessions_per_stream_max: usize,
    /// Bytes per second one PutMedia session may send (Kinesis Video's 12.5
    /// MB/s); a faster producer is slowed by reading its body more slowly.
    pub session_bytes_per_sec: u64,
    /// Largest fragment (4001 above it); also what one session holds.
    pub fragment_bytes_max: usize,
    /// Longest fragment (4002 above it).
    pub fragment_duration: Duration,
    /// A session that sends nothing this long is ended.
    pub session_idle: Duration,
    /// GetMedia readers open at once on one stream.
    pub readers_per_stream_max: usize,
    /// Fragments archived as objects, if configured.
    pub archive: Option<VideoArchive>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            streams_max: 100,
            sessions_per_stream_max: 5,
            session_bytes_per_sec: 12_500_000,
            fragment_bytes_max: 50_000_000,
            fragment_duration: Duration::from_secs(10),
            session_idle: Duration::from_secs(30),
            readers_per_stream_max: 10,
            archive: None,
        }
    }
}

/// Validates `video`.
pub(super) fn video(
    errors: &mut Vec<ConfigError>,
    rv: RawVideo,
    default_store: &StoreConfig,
) -> VideoOptions {
    let d = VideoOptions::default();
    let archive = rv.archive.and_then(|a| {
        let streams = a.streams.unwrap_or_else(|| vec!["*".to_string()]);
        if streams.is_empty() {
            errors.push(err(
                "video.archive.streams",
                "lists no stream; leave it out to archive every stream",
            ));
        }
        destination_for_objects(
            errors,
            "video.archive.destination",
            a.destination,
            default_store,
        )
        .map(|destination| VideoArchive {
            destination,
            streams,
        })
    });
    VideoOptions {
        streams_max: range_check(
            errors,
            "video.streams_max",
            rv.streams_max.unwrap_or(d.streams_max),
            1,
            100_000,
        ),
        sessions_per_stream_max: range_check(
            errors,
            "video.sessions_per_stream_max",
            rv.sessions_per_stream_max
                .unwrap_or(d.sessions_per_stream_max),
            1,
            1_000,
        ),
        session_bytes_per_sec: range_check(
            errors,
            "video.session_bytes_per_sec",
            rv.session_bytes_per_sec.unwrap_or(d.session_bytes_per_sec),
            10_000,
            10_000_000_000,
        ),
        fragment_bytes_max: range_check(
            errors,
            "video.fragment_bytes_max",
            rv.fragment_bytes_max.unwrap_or(d.fragment_bytes_max),
            64 << 10,
            256 << 20,
        ),
        fragment_duration: Duration::from_secs(range_check(
            errors,
            "video.fragment_duration_secs",
            rv.fragment_duration_secs.unwrap_or(10),
            1,
            60,
        )),
        session_idle: Duration::from_secs(range_check(
            errors,
            "video.session_idle_secs",
            rv.session_idle_secs.unwrap_or(30),
            1,
            3600,
        )),
        readers_per_stream_max: range_check(
            errors,
            "video.readers_per_stream_max",
            rv.readers_per_stream_max
                .unwrap_or(d.readers_per_stream_max),
            1,
            10_000,
        ),
        archive,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn archive_patterns_match_stream_names() {
        use super::glob;
        assert!(glob("*", "cam-1"));
        assert!(glob("cam-*", "cam-1") && !glob("cam-*", "door-1"));
        assert!(glob("*-1", "cam-1") && glob("c*m*1", "cam-1") && !glob("c*x", "cam-1"));
        assert!(glob("cam-1", "cam-1") && !glob("cam-1", "cam-12"));
    }
}
