//! Matroska (MKV) as Kinesis Video Streams uses it: the upload a producer
//! streams through `PutMedia`, cut into fragments, and the MKV served back.
//!
//! A `PutMedia` body is one MKV segment: an EBML header, then a Segment of
//! unknown size holding Info, Tracks and an open-ended run of Clusters, each
//! usually of unknown size too. Each Cluster that starts with a key frame is
//! one fragment. [`MkvReader`] is a push parser over that body: it takes the
//! bytes in chunks of any size, never holds more than the header and one
//! fragment, and reports the header, each fragment as it completes and each
//! violation as a Kinesis Video error code ([`KvsError`]). A violation
//! confined to one fragment drops that fragment only; bytes that cannot be
//! parsed at all end the stream.
//!
//! The [`writer`] functions go the other way: a stored fragment (its Cluster
//! re-encoded with a known size) plus the stream's header make a standalone
//! MKV, or a `GetMedia` chunk with the service's tags around the cluster.
//!
//! The format is read by hand ([`ebml`]): the subset Kinesis Video needs is
//! small, and a hand-written reader is what bounds memory and work per byte.

mod block;
mod ebml;
mod fragment;
mod header;
mod reader;
mod tags;
pub mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::types::{Frame, TrackInfo};

pub use reader::MkvReader;
pub use writer::{fragment_chunk, seconds, standalone, tags_element};

/// Tag names that are the service's own: a producer's tags never start with
/// this, and readers of `GetMedia` output treat only these as metadata from
/// the service.
pub const SERVICE_TAG_PREFIX: &str = "AWS_KINESISVIDEO";
/// The producer's tag that closes the current fragment at once.
pub const END_OF_FRAGMENT_TAG: &str = "AWS_KINESISVIDEO_END_OF_FRAGMENT";

/// The error codes Kinesis Video Streams acknowledges a `PutMedia` fragment
/// with (`ErrorId` and the `ErrorCode` name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvsError {
    StreamReadError,
    MaxFragmentSizeReached,
    MaxFragmentDurationReached,
    MaxConnectionDurationReached,
    FragmentTimecodeLesserThanPrevious,
    /// 4005, the deprecated code for too many tracks; 4012 replaced it.
    MoreThanAllowedTracksFoundDeprecated,
    InvalidMkvData,
    InvalidProducerTimestamp,
    StreamNotActive,
    FragmentMetadataLimitReached,
    TrackNumberMismatch,
    FramesMissingForTrack,
    MoreThanAllowedTracksFound,
}

impl KvsError {
    /// Every code, in `ErrorId` order.
    pub const ALL: [KvsError; 13] = [
        KvsError::StreamReadError,
        KvsError::MaxFragmentSizeReached,
        KvsError::MaxFragmentDurationReached,
        KvsError::MaxConnectionDurationReached,
        KvsError::FragmentTimecodeLesserThanPrevious,
        KvsError::MoreThanAllowedTracksFoundDeprecated,
        KvsError::InvalidMkvData,
        KvsError::InvalidProducerTimestamp,
        KvsError::StreamNotActive,
        KvsError::FragmentMetadataLimitReached,
        KvsError::TrackNumberMismatch,
        KvsError::FramesMissingForTrack,
        KvsError::MoreThanAllowedTracksFound,
    ];

    /// The acknowledgement's `ErrorId`.
    pub fn id(self) -> u32 {
        match self {
            KvsError::StreamReadError => 4000,
            KvsError::MaxFragmentSizeReached => 4001,
            KvsError::MaxFragmentDurationReached => 4002,
            KvsError::MaxConnectionDurationReached => 4003,
            KvsError::FragmentTimecodeLesserThanPrevious => 4004,
            KvsError::MoreThanAllowedTracksFoundDeprecated => 4005,
            KvsError::InvalidMkvData => 4006,
            KvsError::InvalidProducerTimestamp => 4007,
            KvsError::StreamNotActive => 4008,
            KvsError::FragmentMetadataLimitReached => 4009,
            KvsError::TrackNumberMismatch => 4010,
            KvsError::FramesMissingForTrack => 4011,
            KvsError::MoreThanAllowedTracksFound => 4012,
        }
    }

    /// The acknowledgement's `ErrorCode` name.
    pub fn name(self) -> &'static str {
        match self {
            KvsError::StreamReadError => "STREAM_READ_ERROR",
            KvsError::MaxFragmentSizeReached => "MAX_FRAGMENT_SIZE_REACHED",
            KvsError::MaxFragmentDurationReached => "MAX_FRAGMENT_DURATION_REACHED",
            KvsError::MaxConnectionDurationReached => "MAX_CONNECTION_DURATION_REACHED",
            KvsError::FragmentTimecodeLesserThanPrevious => {
                "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS"
            }
            KvsError::MoreThanAllowedTracksFoundDeprecated
            | KvsError::MoreThanAllowedTracksFound => "MORE_THAN_ALLOWED_TRACKS_FOUND",
            KvsError::InvalidMkvData => "INVALID_MKV_DATA",
            KvsError::InvalidProducerTimestamp => "INVALID_PRODUCER_TIMESTAMP",
            KvsError::StreamNotActive => "STREAM_NOT_ACTIVE",
            KvsError::FragmentMetadataLimitReached => "FRAGMENT_METADATA_LIMIT_REACHED",
            KvsError::TrackNumberMismatch => "TRACK_NUMBER_MISMATCH",
            KvsError::FramesMissingForTrack => "FRAMES_MISSING_FOR_TRACK",
        }
    }

    /// The code with this `ErrorId`, if there is one.
    pub fn from_id(id: u32) -> Option<KvsError> {
        KvsError::ALL.into_iter().find(|e| e.id() == id)
    }
}

impl fmt::Display for KvsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.id())
    }
}

/// What one upload may hold. The defaults are Kinesis Video's quotas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderLimits {
    /// The largest fragment (its Cluster as stored); 4001 above it.
    pub fragment_bytes_max: usize,
    /// The longest fragment; 4002 above it.
    pub fragment_duration_max: Duration,
    /// The most tracks a stream may declare; 4012 above it.
    pub tracks_max: usize,
    /// The most bytes the EBML header, Info and Tracks may take together,
    /// and the largest Tags element; larger ones are refused with 4006.
    pub header_bytes_max: usize,
    /// The most producer tags one fragment may carry; 4009 above it.
    pub tags_per_fragment_max: usize,
    /// The most frames one fragment may hold; 4001 above it. Each frame
    /// costs memory beyond its bytes, so without this a fragment of empty
    /// frames could take many times its size.
    pub frames_per_fragment_max: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            fragment_bytes_max: 50 * 1024 * 1024,
            fragment_duration_max: Duration::from_secs(10),
            tracks_max: 3,
            header_bytes_max: 1024 * 1024,
            tags_per_fragment_max: 10,
            // Ten thousand frames a second for ten seconds: beyond any
            // camera or audio codec.
            frames_per_fragment_max: 100_000,
        }
    }
}

/// A stream's header as its producer declared it.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamHeader {
    pub tracks: Vec<TrackInfo>,
    /// Nanoseconds per timecode tick (`TimecodeScale`, 1,000,000 by default).
    pub timecode_scale_ns: u64,
    /// An MKV header ready to put before any of the stream's clusters: the
    /// EBML header, a Segment start of unknown size, Info (without a
    /// `Duration`, which would be wrong for a fragment) and Tracks as sent.
    pub bytes: Bytes,
}

/// One complete, valid fragment.
#[derive(Clone, Debug, PartialEq)]
pub struct Fragment {
    /// The Cluster's Timecode, in `TimecodeScale` ticks, as the producer sent it.
    pub timecode: i64,
    /// The same instant in nanoseconds.
    pub start_ns: i64,
    /// Up to the next cluster's start when one follows within the duration
    /// limit, else up to the end of the fragment's last frame.
    pub duration_ns: u64,
    /// The Cluster element re-encoded with a known (8-byte) size: its
    /// Timecode, SimpleBlocks and BlockGroups as sent.
    pub cluster: Bytes,
    /// The frames in stored (decode) order; their data are slices of `cluster`.
    pub frames: Vec<Frame>,
    /// The producer's metadata tags that preceded the fragment.
    pub tags: Vec<(String, String)>,
}

/// What the reader found in the bytes pushed so far.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadEvent {
    /// The stream's header, once, before any fragment.
    Header(StreamHeader),
    /// A cluster's Timecode was read and the fragment passed the checks made
    /// at its start. Exactly one `Fragment` or `Error` with this timecode
    /// follows (unless a fatal error ends the stream first).
    FragmentStarted { timecode: i64 },
    /// A fragment is complete and valid.
    Fragment(Fragment),
    /// A violation. When `fatal` is false only the fragment at `timecode`
    /// was dropped and reading goes on; when true the reader ignores the
    /// rest of the body.
    Error {
        error: KvsError,
        timecode: Option<i64>,
        message: String,
        fatal: bool,
    },
}

/// A violation found while reading, before it becomes a [`ReadEvent::Error`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Violation {
    error: KvsError,
    message: String,
}

impl Violation {
    fn new(error: KvsError, message: impl Into<String>) -> Violation {
        Violation {
            error,
            message: message.into(),
        }
    }

    /// A violation of the MKV format itself (4006).
    fn invalid(message: impl Into<String>) -> Violation {
        Violation::new(KvsError::InvalidMkvData, message)
    }
}

impl From<ebml::Malformed> for Violation {
    fn from(m: ebml::Malformed) -> Violation {
        Violation::invalid(m.0)
    }
}
