//! A minimal MKV reader for the tests: the tracks and frames of a file
//! that ffmpeg wrote, in the shared model the remuxer takes.

use std::fs::File;
use std::path::Path;

use bytes::Bytes;
use webm_iterable::WebmIterator;
use webm_iterable::matroska_spec::{Block, Master, MatroskaSpec, SimpleBlock};

use super::super::types::{Frame, TrackInfo, TrackKind};

/// A whole MKV file.
pub struct Mkv {
    pub tracks: Vec<TrackInfo>,
    pub frames: Vec<Frame>,
}

impl Mkv {
    pub fn track(&self, kind: TrackKind) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.kind == kind)
    }

    /// The frames cut into fragments as a camera's producer cuts them: a
    /// new fragment at every video key frame.
    pub fn fragments(&self) -> Vec<Vec<Frame>> {
        let video = self.track(TrackKind::Video).map(|t| t.number);
        let mut out: Vec<Vec<Frame>> = Vec::new();
        for frame in &self.frames {
            let starts = Some(frame.track) == video && frame.keyframe;
            match out.last_mut() {
                Some(fragment) if !starts => fragment.push(frame.clone()),
                _ => out.push(vec![frame.clone()]),
            }
        }
        out
    }
}

/// Reads an MKV file; panics on anything the tests do not expect.
pub fn read(path: &Path) -> Mkv {
    let file = File::open(path).expect("open the MKV file");
    let buffered = [
        MatroskaSpec::TrackEntry(Master::Start),
        MatroskaSpec::BlockGroup(Master::Start),
    ];
    let mut scale: i64 = 1_000_000;
    let mut cluster: i64 = 0;
    let mut mkv = Mkv {
        tracks: Vec::new(),
        frames: Vec::new(),
    };
    for tag in WebmIterator::new(file, &buffered) {
        match tag.expect("a well-formed MKV element") {
            MatroskaSpec::TimestampScale(s) => scale = s as i64,
            MatroskaSpec::Timestamp(t) => cluster = t as i64,
            MatroskaSpec::TrackEntry(Master::Full(children)) => mkv.tracks.push(track(children)),
            tag @ MatroskaSpec::SimpleBlock(_) => {
                let block = SimpleBlock::try_from(&tag).expect("a SimpleBlock");
                let pts = (cluster + i64::from(block.timestamp)) * scale;
                mkv.frames.push(frame(
                    block.track,
                    pts,
                    None,
                    block.keyframe,
                    block.raw_frame_data(),
                    block.lacing.is_some(),
                ));
            }
            MatroskaSpec::BlockGroup(Master::Full(children)) => {
                mkv.frames.push(group(&children, cluster, scale));
            }
            _ => {}
        }
    }
    for frame in &mut mkv.frames {
        if frame.duration_ns.is_none() {
            let track = mkv.tracks.iter().find(|t| t.number == frame.track);
            frame.duration_ns = track.and_then(|t| t.default_duration_ns);
        }
    }
    mkv
}

fn frame(
    track: u64,
    pts_ns: i64,
    duration_ns: Option<u64>,
    keyframe: bool,
    data: &[u8],
    laced: bool,
) -> Frame {
    assert!(!laced, "the test files are written without lacing");
    Frame {
        track,
        pts_ns,
        duration_ns,
        keyframe,
        data: Bytes::copy_from_slice(data),
    }
}

/// A BlockGroup: a key frame unless it references another block.
fn group(children: &[MatroskaSpec], cluster: i64, scale: i64) -> Frame {
    let mut block = None;
    let mut duration = None;
    let mut references = false;
    for child in children {
        match child {
            MatroskaSpec::Block(_) => block = Some(Block::try_from(child).expect("a Block")),
            MatroskaSpec::BlockDuration(d) => duration = Some(d * scale as u64),
            MatroskaSpec::ReferenceBlock(_) => references = true,
            _ => {}
        }
    }
    let block = block.expect("a BlockGroup holds a Block");
    let pts = (cluster + i64::from(block.timestamp)) * scale;
    frame(
        block.track,
        pts,
        duration,
        !references,
        block.raw_frame_data(),
        block.lacing.is_some(),
    )
}

fn track(children: Vec<MatroskaSpec>) -> TrackInfo {
    let mut info = TrackInfo {
        number: 0,
        uid: 0,
        kind: TrackKind::Other,
        codec_id: String::new(),
        codec_private: Vec::new(),
        name: None,
        width: None,
        height: None,
        sample_rate: None,
        channels: None,
        default_duration_ns: None,
    };
    for child in children {
        match child {
            MatroskaSpec::TrackNumber(n) => info.number = n,
            MatroskaSpec::TrackUID(n) => info.uid = n,
            MatroskaSpec::TrackType(1) => info.kind = TrackKind::Video,
            MatroskaSpec::TrackType(2) => info.kind = TrackKind::Audio,
            MatroskaSpec::CodecID(id) => info.codec_id = id,
            MatroskaSpec::CodecPrivate(data) => info.codec_private = data,
            MatroskaSpec::Name(name) => info.name = Some(name),
            MatroskaSpec::DefaultDuration(d) => info.default_duration_ns = Some(d),
            MatroskaSpec::Video(Master::Full(video)) => {
                for v in video {
                    match v {
                        MatroskaSpec::PixelWidth(w) => info.width = Some(w as u32),
                        MatroskaSpec::PixelHeight(h) => info.height = Some(h as u32),
                        _ => {}
                    }
                }
            }
            MatroskaSpec::Audio(Master::Full(audio)) => {
                for a in audio {
                    match a {
                        MatroskaSpec::SamplingFrequency(f) => info.sample_rate = Some(f),
                        MatroskaSpec::Channels(c) => info.channels = Some(c as u32),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}
