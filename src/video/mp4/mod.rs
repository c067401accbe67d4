//! Remuxing a video stream's frames, as its MKV fragments carry them, into
//! ISO BMFF: fragmented MP4 for HLS (one init segment, then one `moof` +
//! `mdat` media segment per fragment) and progressive MP4 for clips, plus
//! the HLS playlists that point at the segments.
//!
//! H.264 (`V_MPEG4/ISO/AVC`), H.265 (`V_MPEGH/ISO/HEVC`) and AAC (`A_AAC`)
//! are supported; their MKV `CodecPrivate` (avcC, hvcC, AudioSpecificConfig)
//! is exactly what the MP4 sample entries carry, and H.264/H.265 blocks are
//! already length-prefixed, so frame bytes are copied unchanged.
//!
//! Segments are produced independently of each other: a media segment's
//! decode times derive only from its own frames' timestamps and a fixed
//! [`Timeline`], so segments made in any order play back to back.

mod clip;
mod codec;
mod hls;
mod init;
mod segment;
mod timing;

#[cfg(test)]
mod tests;

pub use clip::clip;
pub use codec::{codecs_string, timescale};
pub use hls::{MediaPlaylist, Segment, master_playlist, media_playlist};
pub use init::init_segment;
pub use segment::media_segment;
pub use timing::Timeline;

// The shared stream model, named through this module so that the files
// below refer to it the same way wherever the directory is placed.
use super::types;

/// Why a stream cannot be remuxed. The variants named after Kinesis Video
/// exceptions are the cases its HLS, DASH and GetClip APIs report with
/// them; [`RemuxError::kvs_exception`] gives the name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemuxError {
    /// A video or audio track's codec has no MP4 mapping here.
    #[error("track {track}: codec {codec_id:?} is not supported (H.264, H.265 and AAC are)")]
    UnsupportedStreamMediaType { track: u64, codec_id: String },
    /// A track's codec needs `CodecPrivate` and the track has none.
    #[error("track {track}: the codec private data is missing")]
    MissingCodecPrivateData { track: u64 },
    /// A track's `CodecPrivate` cannot be parsed as its codec requires.
    #[error("track {track}: invalid codec private data: {reason}")]
    InvalidCodecPrivateData { track: u64, reason: String },
    /// No track is video or audio, so there is nothing to put in an MP4.
    #[error("no video or audio track")]
    NoMediaTracks,
    /// No frame belongs to a video or audio track.
    #[error("no frames to remux")]
    NoFrames,
    /// Timestamps lie too far apart for MP4's 32-bit durations and offsets.
    #[error("track {track}: timestamps out of the range MP4 can express")]
    TimestampOutOfRange { track: u64 },
    /// A frame or the whole output exceeds what the boxes can address.
    #[error("the media is too large for one MP4 file or segment")]
    TooLarge,
    /// The box encoder refused a box; the message is its error.
    #[error("cannot encode MP4 boxes: {0}")]
    Encode(String),
}

impl RemuxError {
    /// The name of the Kinesis Video exception that reports this error,
    /// for the variants that have one.
    pub fn kvs_exception(&self) -> Option<&'static str> {
        match self {
            Self::UnsupportedStreamMediaType { .. } | Self::NoMediaTracks => {
                Some("UnsupportedStreamMediaTypeException")
            }
            Self::MissingCodecPrivateData { .. } => Some("MissingCodecPrivateDataException"),
            Self::InvalidCodecPrivateData { .. } => Some("InvalidCodecPrivateDataException"),
            Self::NoFrames => Some("ResourceNotFoundException"),
            Self::TimestampOutOfRange { .. } | Self::TooLarge | Self::Encode(_) => None,
        }
    }
}

impl From<mp4_atom::Error> for RemuxError {
    fn from(err: mp4_atom::Error) -> Self {
        Self::Encode(err.to_string())
    }
}
