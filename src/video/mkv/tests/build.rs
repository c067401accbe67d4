//! Hand-built MKV for the tests: each helper returns one element's bytes,
//! so a test spells out the stream it reads.

use super::super::ebml::{self, id};
use super::super::{Fragment, KvsError, MkvReader, ReadEvent, ReaderLimits};

/// An element with the shortest size field.
pub fn el(element_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::put_element(&mut out, element_id, payload);
    out
}

/// An element with an 8-byte size field, as the producer SDK writes them.
pub fn el8(element_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::put_id(&mut out, element_id);
    ebml::put_size8(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// An unsigned integer element.
pub fn uint(element_id: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::put_uint(&mut out, element_id, value);
    out
}

pub fn ebml_header_of(doc_type: &str) -> Vec<u8> {
    let payload = [
        uint(0x4286, 1),
        uint(id::EBML_READ_VERSION, 1),
        uint(id::EBML_MAX_ID_LENGTH, 4),
        uint(id::EBML_MAX_SIZE_LENGTH, 8),
        el(id::DOC_TYPE, doc_type.as_bytes()),
        uint(0x4287, 4),
        uint(id::DOC_TYPE_READ_VERSION, 2),
    ]
    .concat();
    el(id::EBML, &payload)
}

pub fn ebml_header() -> Vec<u8> {
    ebml_header_of("matroska")
}

/// A Segment start of unknown size (the 1-byte form the producer SDK uses).
pub fn segment_unknown() -> Vec<u8> {
    vec![0x18, 0x53, 0x80, 0x67, 0xFF]
}

pub fn info(scale: u64) -> Vec<u8> {
    let payload = [
        uint(id::TIMECODE_SCALE, scale),
        el(0x4D80, b"test"),
        el(0x5741, b"test"),
        el(id::DURATION, &6000f64.to_be_bytes()),
    ]
    .concat();
    el(id::INFO, &payload)
}

/// A video TrackEntry, 25 frames a second.
pub fn video_track(number: u64) -> Vec<u8> {
    let video = [uint(id::PIXEL_WIDTH, 320), uint(id::PIXEL_HEIGHT, 240)].concat();
    let payload = [
        uint(id::TRACK_NUMBER, number),
        uint(id::TRACK_UID, 1000 + number),
        uint(id::TRACK_TYPE, 1),
        el(id::CODEC_ID, b"V_MPEG4/ISO/AVC"),
        el(id::CODEC_PRIVATE, &[1, 0x42, 0xC0, 0x0D]),
        uint(id::DEFAULT_DURATION, 40_000_000),
        el(id::VIDEO, &video),
    ]
    .concat();
    el(id::TRACK_ENTRY, &payload)
}

/// An audio TrackEntry; `frame_ns` is its DefaultDuration, if any.
pub fn audio_track(number: u64, frame_ns: Option<u64>) -> Vec<u8> {
    let audio = [
        el(id::SAMPLING_FREQUENCY, &48000f64.to_be_bytes()),
        uint(id::CHANNELS, 2),
    ]
    .concat();
    let mut payload = [
        uint(id::TRACK_NUMBER, number),
        uint(id::TRACK_UID, 2000 + number),
        uint(id::TRACK_TYPE, 2),
        el(id::CODEC_ID, b"A_AAC"),
        el(id::CODEC_PRIVATE, &[0x11, 0x90]),
        el(id::AUDIO, &audio),
    ]
    .concat();
    if let Some(ns) = frame_ns {
        payload.extend(uint(id::DEFAULT_DURATION, ns));
    }
    el(id::TRACK_ENTRY, &payload)
}

pub fn tracks(entries: &[Vec<u8>]) -> Vec<u8> {
    el(id::TRACKS, &entries.concat())
}

/// EBML header, Segment of unknown size, Info (1 ms) and the tracks.
pub fn head(entries: &[Vec<u8>]) -> Vec<u8> {
    [
        ebml_header(),
        segment_unknown(),
        info(1_000_000),
        tracks(entries),
    ]
    .concat()
}

/// A Cluster start of unknown size, with its Timecode.
pub fn cluster_open(timecode: u64) -> Vec<u8> {
    [
        vec![0x1F, 0x43, 0xB6, 0x75],
        ebml::UNKNOWN_SIZE.to_vec(),
        uint(id::TIMECODE, timecode),
    ]
    .concat()
}

/// A Cluster of known size.
pub fn cluster_sized(timecode: u64, children: &[Vec<u8>]) -> Vec<u8> {
    el(
        id::CLUSTER,
        &[uint(id::TIMECODE, timecode), children.concat()].concat(),
    )
}

fn block_payload(track: u64, relative: i16, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::put_size(&mut out, track);
    out.extend_from_slice(&relative.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(rest);
    out
}

pub fn simple_block(track: u64, relative: i16, key: bool, data: &[u8]) -> Vec<u8> {
    let flags = if key { 0x80 } else { 0 };
    el(
        id::SIMPLE_BLOCK,
        &block_payload(track, relative, flags, data),
    )
}

/// A laced SimpleBlock (key frames); `lacing` is 1 (Xiph), 2 (fixed) or 3 (EBML).
pub fn laced_block(track: u64, relative: i16, lacing: u8, frames: &[&[u8]]) -> Vec<u8> {
    let mut rest = vec![(frames.len() - 1) as u8];
    let sizes: Vec<usize> = frames.iter().map(|f| f.len()).collect();
    match lacing {
        1 => {
            for &size in &sizes[..sizes.len() - 1] {
                rest.extend(std::iter::repeat_n(255u8, size / 255));
                rest.push((size % 255) as u8);
            }
        }
        3 => {
            ebml::put_size(&mut rest, sizes[0] as u64);
            for pair in sizes[..sizes.len() - 1].windows(2) {
                // Two-byte signed sizes: the bias is 2^13 - 1.
                let raw = (pair[1] as i64 - pair[0] as i64 + 8191) as u16 | 0x4000;
                rest.extend_from_slice(&raw.to_be_bytes());
            }
        }
        _ => {}
    }
    rest.extend(frames.concat());
    el(
        id::SIMPLE_BLOCK,
        &block_payload(track, relative, 0x80 | (lacing << 1), &rest),
    )
}

/// A BlockGroup: a Block, its duration in ticks, and a ReferenceBlock when
/// the frame is not a key frame.
pub fn block_group(
    track: u64,
    relative: i16,
    data: &[u8],
    duration: Option<u64>,
    key: bool,
) -> Vec<u8> {
    let mut payload = el(id::BLOCK, &block_payload(track, relative, 0, data));
    if let Some(d) = duration {
        payload.extend(uint(id::BLOCK_DURATION, d));
    }
    if !key {
        payload.extend(el(id::REFERENCE_BLOCK, &[0xD8]));
    }
    el(id::BLOCK_GROUP, &payload)
}

pub fn tags(pairs: &[(&str, &str)]) -> Vec<u8> {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    super::super::tags_element(&owned)
}

/// A second of 25 fps video on track 1 (first frame key) and, when
/// `audio`, ten frames on track 2, as the blocks of one cluster.
pub fn second_of_media(cluster: u8, audio: bool) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    for i in 0..25u8 {
        blocks.push(simple_block(
            1,
            i16::from(i) * 40,
            i == 0,
            &[cluster, i, 0xAA, 0xBB],
        ));
        if audio && i % 5 < 2 {
            let n = i / 5 * 2 + i % 5;
            blocks.push(simple_block(
                2,
                i16::from(n) * 100,
                true,
                &[cluster, n, 0xCC],
            ));
        }
    }
    blocks
}

/// A stream of `count` one-second unknown-size clusters, video and audio.
pub fn av_stream(count: u64) -> Vec<u8> {
    let mut out = head(&[video_track(1), audio_track(2, None)]);
    for c in 0..count {
        out.extend(cluster_open(c * 1000));
        out.extend(second_of_media(c as u8, true).concat());
    }
    out
}

/// Reads a body pushed whole.
pub fn read(body: &[u8]) -> Vec<ReadEvent> {
    read_with(body, ReaderLimits::default())
}

pub fn read_with(body: &[u8], limits: ReaderLimits) -> Vec<ReadEvent> {
    let mut reader = MkvReader::new(limits);
    let mut events = reader.push(body);
    events.extend(reader.finish());
    events
}

/// Reads a body pushed in chunks of the given sizes (cycled).
pub fn read_chunked(body: &[u8], sizes: &[usize]) -> Vec<ReadEvent> {
    let mut reader = MkvReader::new(ReaderLimits::default());
    let mut events = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let end = (at + size.max(1)).min(body.len());
        events.extend(reader.push(&body[at..end]));
        at = end;
    }
    events.extend(reader.finish());
    events
}

pub fn fragments(events: &[ReadEvent]) -> Vec<&Fragment> {
    events
        .iter()
        .filter_map(|e| match e {
            ReadEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// The errors as (code, timecode, fatal).
pub fn errors(events: &[ReadEvent]) -> Vec<(KvsError, Option<i64>, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            ReadEvent::Error {
                error,
                timecode,
                fatal,
                ..
            } => Some((*error, *timecode, *fatal)),
            _ => None,
        })
        .collect()
}

/// The events reduced to a readable outline: "H", "S0", "F0", "E4004@1000".
pub fn outline(events: &[ReadEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ReadEvent::Header(_) => "H".to_string(),
            ReadEvent::FragmentStarted { timecode } => format!("S{timecode}"),
            ReadEvent::Fragment(f) => format!("F{}", f.timecode),
            ReadEvent::Error {
                error,
                timecode,
                fatal,
                ..
            } => {
                let at = timecode.map_or(String::new(), |t| format!("@{t}"));
                let fatal = if *fatal { "!" } else { "" };
                format!("E{}{at}{fatal}", error.id())
            }
        })
        .collect()
}
