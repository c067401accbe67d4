//! The media model the video modules share: tracks as a stream's MKV
//! header declares them, and frames as its clusters carry them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

/// One track of a stream, from its MKV `TrackEntry`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// `TrackNumber`: what blocks name.
    pub number: u64,
    /// `TrackUID` (0 when absent).
    pub uid: u64,
    pub kind: TrackKind,
    /// `CodecID` as sent: `V_MPEG4/ISO/AVC`, `V_MPEGH/ISO/HEVC`, `A_AAC`, ...
    pub codec_id: String,
    /// `CodecPrivate`: avcC, hvcC or the AAC AudioSpecificConfig (empty when absent).
    pub codec_private: Vec<u8>,
    pub name: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sample_rate: Option<f64>,
    pub channels: Option<u32>,
    /// `DefaultDuration`, nanoseconds per frame.
    pub default_duration_ns: Option<u64>,
}

/// One frame: an MKV SimpleBlock or Block (lacing undone: one frame each).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The track it belongs to (`TrackInfo::number`).
    pub track: u64,
    /// Presentation time in nanoseconds on the stream's own clock
    /// ((cluster timecode + block offset) × TimecodeScale).
    pub pts_ns: i64,
    /// `BlockDuration` or the track's `DefaultDuration`, if known.
    pub duration_ns: Option<u64>,
    pub keyframe: bool,
    /// The frame's bytes as stored in MKV (H.264/H.265: length-prefixed NAL units).
    pub data: Bytes,
}
