//! Sample timing: turning frames' presentation timestamps (MKV stores
//! only those) into MP4 decode times, durations and composition offsets.
//!
//! MP4 times samples by decode time, and a sample's presentation time is
//! its decode time plus a composition offset. With B-frames, frames come in
//! decode order but their timestamps are out of order, so decode times are
//! rebuilt: the i-th frame in decode order gets the i-th smallest
//! presentation time, moved earlier by a shift large enough that no frame
//! is presented before it is decoded. Decode times then rise by exactly
//! the frame spacing, and a fragment's first decode time depends only on
//! its own first presentation time, so fragments remuxed separately line
//! up with each other.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::RemuxError;
use super::codec::{AAC_FRAME_SAMPLES, Codec, Media};
use super::types::{Frame, TrackInfo, TrackKind};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// The fixed timing every segment of one stream shares, so that segments
/// made independently, in any order, continue each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The presentation timestamp (nanoseconds, the frames' clock) that
    /// decode time zero stands for: usually the first frame's.
    pub origin_ns: i64,
    /// How much earlier than presented video frames are decoded, at most:
    /// the B-frame reorder delay. Presentation times start this much after
    /// the origin on every track, which keeps video decode times from going
    /// below zero. A fragment that reorders by more uses its own, larger
    /// shift, so its offsets stay non-negative at the cost of a decode-time
    /// overlap with the fragment before it.
    pub decode_delay_ns: u64,
}

impl Timeline {
    /// A timeline with the given origin and decode delay (see the fields).
    /// Every segment of one playback session must use the same timeline.
    pub fn new(origin_ns: i64, decode_delay_ns: u64) -> Self {
        Self {
            origin_ns,
            decode_delay_ns,
        }
    }

    /// The timeline of a stream that starts with `frames` (its first
    /// fragment, or all of it): the origin is the earliest presentation
    /// timestamp of a video or audio frame, the decode delay the largest
    /// reorder delay of a video track among them.
    pub fn from_frames(tracks: &[TrackInfo], frames: &[Frame]) -> Self {
        let is_media = |number: u64| {
            tracks
                .iter()
                .any(|t| t.number == number && t.kind != TrackKind::Other)
        };
        let origin_ns = frames
            .iter()
            .filter(|f| is_media(f.track))
            .map(|f| f.pts_ns)
            .min()
            .unwrap_or(0);
        let decode_delay_ns = tracks
            .iter()
            .filter(|t| t.kind == TrackKind::Video)
            .map(|t| {
                let pts: Vec<i128> = frames
                    .iter()
                    .filter(|f| f.track == t.number)
                    .map(|f| i128::from(f.pts_ns))
                    .collect();
                reorder_delay(&pts)
            })
            .max()
            .unwrap_or(0);
        Self {
            origin_ns,
            decode_delay_ns: u64::try_from(decode_delay_ns).unwrap_or(u64::MAX),
        }
    }
}

/// One sample, timed in its track's timescale.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sample {
    pub decode_time: u64,
    pub duration: u32,
    /// Presentation time minus decode time.
    pub offset: i32,
    pub size: u32,
    /// Whether decoding can start here (a key frame; every audio frame).
    pub sync: bool,
    pub data: Bytes,
}

/// Each media track's frames, in the order given (decode order), indexed
/// like `medias`; frames of other tracks are dropped.
pub(super) fn frames_by_track<'f>(medias: &[Media], frames: &'f [Frame]) -> Vec<Vec<&'f Frame>> {
    let mut grouped = vec![Vec::new(); medias.len()];
    for frame in frames {
        if let Some(group) = track_index(medias, frame).and_then(|i| grouped.get_mut(i)) {
            group.push(frame);
        }
    }
    grouped
}

/// The position in `medias` of the track a frame belongs to, if it is one
/// of them.
pub(super) fn track_index(medias: &[Media], frame: &Frame) -> Option<usize> {
    medias.iter().position(|m| m.info.number == frame.track)
}

/// The samples of one track's frames (in decode order), timed on
/// `timeline`; empty when there are no frames.
pub(super) fn samples(
    media: &Media,
    frames: &[&Frame],
    timeline: &Timeline,
) -> Result<Vec<Sample>, RemuxError> {
    let out_of_range = || RemuxError::TimestampOutOfRange {
        track: media.info.number,
    };
    let scale = media.timescale;
    let delay = i128::from(timeline.decode_delay_ns);
    let origin = i128::from(timeline.origin_ns);
    let pts: Vec<i128> = frames
        .iter()
        .map(|f| ticks(i128::from(f.pts_ns) - origin + delay, scale))
        .collect();
    let mut sorted = pts.clone();
    sorted.sort_unstable();
    let Some(&first) = sorted.first() else {
        return Ok(Vec::new());
    };
    let measured = reorder_delay(&pts);
    let wanted = if media.reorders() {
        measured.max(ticks(delay, scale))
    } else {
        measured
    };
    // Decode times cannot be negative: a fragment that starts too close to
    // the origin for the whole shift takes less, and its offsets may then
    // be negative, which version 1 `trun` and `ctts` boxes allow.
    let shift = wanted.min(first);
    let dts: Vec<i128> = sorted.iter().map(|q| q - shift).collect();
    let last = last_duration(media, frames, &dts);
    let mut out = Vec::with_capacity(frames.len());
    for (i, ((frame, &decode), &present)) in frames.iter().zip(&dts).zip(&pts).enumerate() {
        let duration = dts.get(i + 1).map_or(last, |next| next - decode);
        out.push(Sample {
            decode_time: u64::try_from(decode).map_err(|_| out_of_range())?,
            duration: u32::try_from(duration).map_err(|_| out_of_range())?,
            offset: i32::try_from(present - decode).map_err(|_| out_of_range())?,
            size: u32::try_from(frame.data.len()).map_err(|_| RemuxError::TooLarge)?,
            sync: frame.keyframe || !media.reorders(),
            data: frame.data.clone(),
        });
    }
    Ok(out)
}

/// The largest amount by which a frame's presentation time exceeds the
/// presentation time at its decode position: how far decode times must
/// move earlier so that no frame is presented before it is decoded.
fn reorder_delay(pts: &[i128]) -> i128 {
    let mut sorted = pts.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .zip(pts)
        .map(|(q, p)| q - p)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// The duration of a track's last sample in a run, which no following
/// decode time bounds: the frame's own duration if MKV gave one, one AAC
/// frame for AAC, the track's default duration, the spacing of the
/// samples before it, and as a last resort a thirtieth of a second.
fn last_duration(media: &Media, frames: &[&Frame], dts: &[i128]) -> i128 {
    let scale = media.timescale;
    let positive = |d: u64| (d > 0).then(|| ticks(i128::from(d), scale));
    if let Some(d) = frames.last().and_then(|f| f.duration_ns).and_then(positive) {
        return d;
    }
    if matches!(media.codec, Codec::Aac(_)) {
        return i128::from(AAC_FRAME_SAMPLES);
    }
    if let Some(d) = media.info.default_duration_ns.and_then(positive) {
        return d;
    }
    match dts {
        [.., before, last] => last - before,
        _ => i128::from(scale / 30),
    }
}

/// Nanoseconds in ticks of `scale` per second, rounded to the nearest
/// tick. Every time is converted from its distance to the fixed origin, so
/// the same frame gets the same tick in every segment.
pub(super) fn ticks(ns: i128, scale: u32) -> i128 {
    (ns * i128::from(scale) + NANOS_PER_SECOND / 2).div_euclid(NANOS_PER_SECOND)
}
