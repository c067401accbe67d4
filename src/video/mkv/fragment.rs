//! One fragment while its Cluster is being read: the children kept (the
//! Timecode and the blocks, copied into a Cluster of known size as they
//! arrive), the frames found in them, and the checks each block must pass.
//!
//! The re-encoded Cluster is the fragment's only copy of its media: frames
//! are recorded as ranges into it and become slices of it when the fragment
//! completes, so a fragment costs its own size once.

use bytes::Bytes;

use super::super::types::{Frame, TrackInfo, TrackKind};
use super::ebml::{self, children, id};
use super::{Fragment, KvsError, Violation, block};

/// Where a Cluster's size field sits in the re-encoded element: after its
/// 4-byte ID.
const SIZE_AT: usize = 4;
/// The re-encoded Cluster's header: its ID and an 8-byte size.
const HEADER_BYTES: usize = SIZE_AT + 8;

/// What the blocks of a stream are checked against.
pub(super) struct Context<'a> {
    pub tracks: &'a [TrackInfo],
    pub timecode_scale_ns: u64,
    pub duration_max_ns: i64,
    pub frames_max: usize,
}

/// A frame found in the cluster, its data still a range of the cluster.
#[derive(Clone, Debug)]
struct Span {
    track: u64,
    pts_ns: i64,
    duration_ns: Option<u64>,
    keyframe: bool,
    start: usize,
    len: usize,
}

/// A Cluster being read.
#[derive(Debug)]
pub(super) struct OpenCluster {
    /// Where the Cluster ends in the body, when its size is known.
    pub end: Option<u64>,
    /// The Timecode, once read.
    pub timecode: Option<i64>,
    /// Set when the fragment was dropped: its remaining children are skipped.
    pub rejected: bool,
    /// The producer tags that preceded the Cluster, or the limit they broke.
    pub tags: Result<Vec<(String, String)>, Violation>,
    start_ns: i64,
    body: Vec<u8>,
    spans: Vec<Span>,
    /// The latest frame end seen (pts plus duration), in nanoseconds.
    end_ns: i64,
}

impl OpenCluster {
    pub fn new(end: Option<u64>, tags: Result<Vec<(String, String)>, Violation>) -> OpenCluster {
        let mut body = Vec::new();
        ebml::put_id(&mut body, id::CLUSTER);
        ebml::put_size8(&mut body, 0);
        OpenCluster {
            end,
            timecode: None,
            rejected: false,
            tags,
            start_ns: 0,
            body,
            spans: Vec::new(),
            end_ns: 0,
        }
    }

    /// The bytes the re-encoded Cluster takes so far.
    pub fn bytes(&self) -> usize {
        self.body.len()
    }

    /// Drops what was kept: the fragment will not be stored.
    pub fn reject(&mut self) {
        self.rejected = true;
        self.body = Vec::new();
        self.spans = Vec::new();
    }

    /// Keeps the Timecode element (as sent) and starts the fragment's clock.
    pub fn set_timecode(&mut self, element: &[u8], timecode: i64, timecode_scale_ns: u64) {
        self.timecode = Some(timecode);
        self.start_ns = ticks_to_ns(i128::from(timecode), timecode_scale_ns);
        self.end_ns = self.start_ns;
        self.body.extend_from_slice(element);
    }

    /// Takes a SimpleBlock or BlockGroup element (`head_len` bytes of ID
    /// and size, then its payload): checks its frames and keeps it.
    pub fn add_block(
        &mut self,
        ctx: &Context<'_>,
        element: &[u8],
        head_len: usize,
        group: bool,
    ) -> Result<(), Violation> {
        let timecode = self
            .timecode
            .ok_or_else(|| Violation::invalid("a block comes before the Cluster's Timecode"))?;
        let payload = element.get(head_len..).unwrap_or(&[]);
        let found = if group {
            read_group(payload)?
        } else {
            let block = block::parse(payload)?;
            let keyframe = block.keyframe_flag;
            Found {
                block,
                offset: 0,
                keyframe,
                duration_ticks: None,
            }
        };
        let Some(track) = ctx.tracks.iter().find(|t| t.number == found.block.track) else {
            return Err(Violation::new(
                KvsError::TrackNumberMismatch,
                format!(
                    "a block names track {}, which is not declared",
                    found.block.track
                ),
            ));
        };
        let base = self.body.len() + head_len + found.offset;
        let spans = self.spans_of(ctx, track, &found, timecode, base);
        self.check_start(track, found.keyframe)?;
        // Each frame costs memory beyond its bytes; a cap on their number
        // keeps a fragment of tiny frames within its size too.
        if self.spans.len() + spans.len() > ctx.frames_max {
            return Err(Violation::new(
                KvsError::MaxFragmentSizeReached,
                format!("the fragment has more than {} frames", ctx.frames_max),
            ));
        }
        let end_ns = spans.iter().map(span_end).max().unwrap_or(self.end_ns);
        if i128::from(end_ns) - i128::from(self.start_ns) > i128::from(ctx.duration_max_ns) {
            return Err(Violation::new(
                KvsError::MaxFragmentDurationReached,
                format!(
                    "the fragment lasts more than {} ms",
                    ctx.duration_max_ns / 1_000_000
                ),
            ));
        }
        self.end_ns = self.end_ns.max(end_ns);
        self.spans.extend(spans);
        self.body.extend_from_slice(element);
        Ok(())
    }

    /// The frames of one block, with their times. Laced frames after the
    /// first are spaced by the track's default duration when it has one:
    /// a lace carries one timecode for all its frames.
    fn spans_of(
        &self,
        ctx: &Context<'_>,
        track: &TrackInfo,
        found: &Found,
        timecode: i64,
        base: usize,
    ) -> Vec<Span> {
        let scale = ctx.timecode_scale_ns;
        let pts_ns = ticks_to_ns(
            i128::from(timecode) + i128::from(found.block.relative),
            scale,
        );
        let count = found.block.frames.len() as u64;
        // A BlockDuration covers the whole lace; without one the track's
        // DefaultDuration applies to each frame.
        let block_ns = found.duration_ticks.and_then(|ticks| {
            let ns = u64::try_from(ticks_to_ns(i128::from(ticks), scale)).ok()?;
            Some(ns / count.max(1))
        });
        let duration_ns = block_ns.or(track.default_duration_ns);
        let step = track.default_duration_ns.unwrap_or(0);
        found
            .block
            .frames
            .iter()
            .enumerate()
            .map(|(i, &(start, len))| Span {
                track: track.number,
                pts_ns: pts_ns.saturating_add_unsigned(step.saturating_mul(i as u64)),
                duration_ns,
                keyframe: found.keyframe,
                start: base + start,
                len,
            })
            .collect()
    }

    /// A fragment must be decodable on its own: its first frame, and the
    /// first frame of each video track, must be key frames. There is no
    /// dedicated code for this; the service calls media it cannot take as
    /// fragments invalid MKV data (4006).
    fn check_start(&self, track: &TrackInfo, keyframe: bool) -> Result<(), Violation> {
        if keyframe {
            return Ok(());
        }
        if self.spans.is_empty() {
            return Err(Violation::invalid(
                "the fragment does not start with a key frame",
            ));
        }
        let first_of_track = !self.spans.iter().any(|s| s.track == track.number);
        if first_of_track && track.kind == TrackKind::Video {
            return Err(Violation::invalid(format!(
                "video track {} does not start the fragment with a key frame",
                track.number
            )));
        }
        Ok(())
    }

    /// Completes the fragment: every declared track must have a frame in it
    /// (4011). The duration is up to the last frame's end; the reader
    /// replaces it when the next cluster's start is known.
    pub fn finish(mut self, tracks: &[TrackInfo]) -> Result<Fragment, Violation> {
        let timecode = self
            .timecode
            .ok_or_else(|| Violation::invalid("a Cluster without a Timecode"))?;
        if let Some(missing) = tracks
            .iter()
            .find(|t| !self.spans.iter().any(|s| s.track == t.number))
        {
            return Err(Violation::new(
                KvsError::FramesMissingForTrack,
                format!("track {} has no frame in the fragment", missing.number),
            ));
        }
        let tags = self.tags.unwrap_or_default();
        let size = self.body.len().saturating_sub(HEADER_BYTES) as u64;
        ebml::patch_size8(&mut self.body, SIZE_AT, size);
        let cluster = Bytes::from(self.body);
        let frames = self
            .spans
            .iter()
            .map(|s| Frame {
                track: s.track,
                pts_ns: s.pts_ns,
                duration_ns: s.duration_ns,
                keyframe: s.keyframe,
                data: cluster.slice(s.start..s.start + s.len),
            })
            .collect();
        Ok(Fragment {
            timecode,
            start_ns: self.start_ns,
            duration_ns: u64::try_from(i128::from(self.end_ns) - i128::from(self.start_ns))
                .unwrap_or(0),
            cluster,
            frames,
            tags,
        })
    }
}

/// A block as found in a SimpleBlock or a BlockGroup.
struct Found {
    block: block::Block,
    /// Where the block's payload starts within the element's payload.
    offset: usize,
    keyframe: bool,
    /// `BlockDuration`, in ticks.
    duration_ticks: Option<u64>,
}

/// Reads a BlockGroup: its Block, BlockDuration, and whether it references
/// another frame (then it is not a key frame).
fn read_group(payload: &[u8]) -> Result<Found, Violation> {
    let mut block = None;
    let mut duration_ticks = None;
    let mut referenced = false;
    for child in children(payload) {
        let child = child?;
        match child.id {
            id::BLOCK => block = Some((block::parse(child.data)?, child.offset)),
            id::BLOCK_DURATION => duration_ticks = Some(ebml::uint(child.data)?),
            id::REFERENCE_BLOCK => referenced = true,
            _ => {}
        }
    }
    let (block, offset) =
        block.ok_or_else(|| Violation::invalid("a BlockGroup without a Block"))?;
    Ok(Found {
        block,
        offset,
        keyframe: !referenced,
        duration_ticks,
    })
}

/// Where a frame ends: its time plus its duration when known.
fn span_end(span: &Span) -> i64 {
    span.pts_ns
        .saturating_add_unsigned(span.duration_ns.unwrap_or(0))
}

/// Ticks to nanoseconds, saturating rather than overflowing on absurd input.
pub(super) fn ticks_to_ns(ticks: i128, timecode_scale_ns: u64) -> i64 {
    let ns = ticks.saturating_mul(i128::from(timecode_scale_ns));
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}
