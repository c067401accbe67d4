//! Codec parsing, codec strings and errors, checked without ffmpeg; also
//! the synthetic tracks and frames the box-layout tests share.

use bytes::Bytes;
use mp4_atom::{Encode, HvcCArray, Hvcc};

use super::super::types::{Frame, TrackInfo, TrackKind};
use super::super::{
    RemuxError, Timeline, clip, codecs_string, init_segment, media_segment, timescale,
};

/// An avcC of High profile, level 3.1, with a stand-in SPS and PPS.
pub const AVCC: [u8; 17] = [
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];
/// AAC-LC, 48 kHz, stereo.
pub const ASC: [u8; 2] = [0x11, 0x90];

pub fn track(number: u64, kind: TrackKind, codec_id: &str, codec_private: &[u8]) -> TrackInfo {
    TrackInfo {
        number,
        uid: number,
        kind,
        codec_id: codec_id.into(),
        codec_private: codec_private.to_vec(),
        name: None,
        width: Some(320),
        height: Some(240),
        sample_rate: Some(48_000.0),
        channels: Some(2),
        default_duration_ns: None,
    }
}

pub fn avc(number: u64) -> TrackInfo {
    TrackInfo {
        default_duration_ns: Some(40_000_000),
        ..track(number, TrackKind::Video, "V_MPEG4/ISO/AVC", &AVCC)
    }
}

pub fn aac(number: u64) -> TrackInfo {
    track(number, TrackKind::Audio, "A_AAC", &ASC)
}

pub fn frame(track: u64, pts_ms: i64, keyframe: bool, data: &[u8]) -> Frame {
    Frame {
        track,
        pts_ns: pts_ms * 1_000_000,
        duration_ns: None,
        keyframe,
        data: Bytes::copy_from_slice(data),
    }
}

/// An hvcC of Main profile, main tier, level 3.1, with stand-in VPS, SPS
/// and PPS.
fn hvcc() -> Vec<u8> {
    let hvcc = Hvcc {
        configuration_version: 1,
        general_profile_idc: 1,
        general_profile_compatibility_flags: [0x60, 0, 0, 0],
        general_constraint_indicator_flags: [0x90, 0, 0, 0, 0, 0],
        general_level_idc: 93,
        chroma_format_idc: 1,
        length_size_minus_one: 3,
        arrays: [32u8, 33, 34]
            .iter()
            .map(|&nal_unit_type| HvcCArray {
                completeness: true,
                nal_unit_type,
                nalus: vec![vec![nal_unit_type << 1, 1, 0xaa]],
            })
            .collect(),
        ..Hvcc::default()
    };
    let mut boxed = Vec::new();
    hvcc.encode(&mut boxed).unwrap();
    // MKV stores the record without the box header.
    boxed.split_off(8)
}

#[test]
fn codec_strings_come_from_the_codec_private_data() {
    let hevc = track(1, TrackKind::Video, "V_MPEGH/ISO/HEVC", &hvcc());
    assert_eq!(
        codecs_string(&[avc(1), aac(2)]).unwrap(),
        "avc1.64001f,mp4a.40.2"
    );
    assert_eq!(
        codecs_string(std::slice::from_ref(&hevc)).unwrap(),
        "hvc1.1.6.L93.90"
    );
    // Audio object type 42 takes the escape code (31, then 42 - 32).
    let escaped = track(1, TrackKind::Audio, "A_AAC", &[0xf9, 0x46, 0x40]);
    assert_eq!(codecs_string(&[escaped]).unwrap(), "mp4a.40.42");
    // Tracks of kind Other have no place in the list.
    let text = track(3, TrackKind::Other, "S_TEXT/UTF8", &[]);
    assert_eq!(codecs_string(&[hevc, text]).unwrap(), "hvc1.1.6.L93.90");
}

#[test]
fn timescales_suit_each_codec() {
    assert_eq!(timescale(&avc(1)).unwrap(), 90_000);
    assert_eq!(timescale(&aac(1)).unwrap(), 48_000);
    // AAC-LC at 44.1 kHz (index 4); an explicit 22.05 kHz (index 15).
    let cd = track(1, TrackKind::Audio, "A_AAC", &[0x12, 0x10]);
    assert_eq!(timescale(&cd).unwrap(), 44_100);
    let explicit = track(
        1,
        TrackKind::Audio,
        "A_AAC",
        &[0x17, 0x80, 0x2b, 0x11, 0x10],
    );
    assert_eq!(timescale(&explicit).unwrap(), 22_050);
}

/// The error every entry point gives for one bad track.
fn errors(track: TrackInfo) -> Vec<RemuxError> {
    let tracks = [track];
    let frames = [frame(1, 0, true, b"x")];
    vec![
        init_segment(&tracks).unwrap_err(),
        media_segment(1, &tracks, &frames, &Timeline::new(0, 0)).unwrap_err(),
        clip(&tracks, &frames).unwrap_err(),
        codecs_string(&tracks).unwrap_err(),
    ]
}

fn invalid(track: TrackInfo) -> bool {
    errors(track)
        .iter()
        .all(|e| matches!(e, RemuxError::InvalidCodecPrivateData { track: 1, .. }))
}

#[test]
fn unusable_codec_private_data_is_a_typed_error() {
    let video = |data: &[u8]| track(1, TrackKind::Video, "V_MPEG4/ISO/AVC", data);
    let hevc = |data: &[u8]| track(1, TrackKind::Video, "V_MPEGH/ISO/HEVC", data);
    let audio = |data: &[u8]| track(1, TrackKind::Audio, "A_AAC", data);
    assert!(invalid(video(&[0xde, 0xad, 0xbe, 0xef])));
    // An SPS said to be longer than the record.
    assert!(invalid(video(&AVCC[..10])));
    // No PPS.
    assert!(invalid(video(&[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 0
    ])));
    assert!(invalid(video(
        &[AVCC.as_slice(), &[0, 0, 0, 0, 0, 0, 0, 0, 0]].concat()
    )));
    assert!(invalid(hevc(&[1, 2, 3])));
    assert!(invalid(hevc(&AVCC)));
    assert!(invalid(audio(&[0x10])));
    // Sampling frequency index 13 is reserved; object type 0 is none.
    assert!(invalid(audio(&[0x16, 0x90])));
    assert!(invalid(audio(&[0x00, 0x10])));

    for e in errors(video(&[])) {
        assert_eq!(e, RemuxError::MissingCodecPrivateData { track: 1 });
        assert_eq!(e.kvs_exception(), Some("MissingCodecPrivateDataException"));
    }
    for e in errors(track(1, TrackKind::Video, "V_VP8", &[1])) {
        assert!(matches!(
            e,
            RemuxError::UnsupportedStreamMediaType { track: 1, .. }
        ));
        assert_eq!(
            e.kvs_exception(),
            Some("UnsupportedStreamMediaTypeException")
        );
    }
    let e = &errors(audio(&[0x10]))[0];
    assert_eq!(e.kvs_exception(), Some("InvalidCodecPrivateDataException"));
}

/// A small deterministic generator (xorshift), so the test needs no
/// dependency and fails the same way every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
}

/// Random and corrupted codec private data never panics: each case is
/// either accepted or rejected with an error, and both happen.
#[test]
fn random_codec_private_data_never_panics() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let valid = [
        ("V_MPEG4/ISO/AVC", AVCC.to_vec()),
        ("V_MPEGH/ISO/HEVC", hvcc()),
        ("A_AAC", ASC.to_vec()),
    ];
    let (mut accepted, mut rejected) = (0, 0);
    for (codec, good) in &valid {
        for round in 0..3000 {
            let data: Vec<u8> = if round % 2 == 0 {
                let len = (random.next() % 48) as usize;
                (0..len).map(|_| random.byte()).collect()
            } else {
                let mut data = good.clone();
                for _ in 0..=random.next() % 3 {
                    let at = (random.next() as usize) % data.len();
                    data[at] = random.byte();
                }
                data.truncate(data.len() - (random.next() % 3) as usize);
                data
            };
            let kind = if codec.starts_with('A') {
                TrackKind::Audio
            } else {
                TrackKind::Video
            };
            let tracks = [track(1, kind, codec, &data)];
            let frames = [frame(1, 0, true, b"frame")];
            let results = [
                init_segment(&tracks).map(|_| ()),
                media_segment(1, &tracks, &frames, &Timeline::new(0, 0)).map(|_| ()),
                clip(&tracks, &frames).map(|_| ()),
            ];
            assert!(results.iter().all(|r| r.is_ok()) || results.iter().all(|r| r.is_err()));
            if results[0].is_ok() {
                accepted += 1
            } else {
                rejected += 1
            }
        }
    }
    assert!(
        accepted > 100 && rejected > 100,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn nothing_to_remux_is_an_error() {
    let tracks = [avc(1), aac(2)];
    let timeline = Timeline::new(0, 0);
    assert_eq!(
        media_segment(1, &tracks, &[], &timeline),
        Err(RemuxError::NoFrames)
    );
    assert_eq!(clip(&tracks, &[]), Err(RemuxError::NoFrames));
    // Frames of a track that is not listed, or is of kind Other, count as none.
    let text = track(3, TrackKind::Other, "S_TEXT/UTF8", &[]);
    let stray = [frame(7, 0, true, b"x"), frame(3, 0, true, b"subtitle")];
    let with_text = [avc(1), text.clone()];
    assert_eq!(
        media_segment(1, &with_text, &stray, &timeline),
        Err(RemuxError::NoFrames)
    );
    assert_eq!(clip(&with_text, &stray), Err(RemuxError::NoFrames));
    assert_eq!(init_segment(&[]), Err(RemuxError::NoMediaTracks));
    assert_eq!(init_segment(&[text]), Err(RemuxError::NoMediaTracks));
    assert_eq!(
        RemuxError::NoFrames.kvs_exception(),
        Some("ResourceNotFoundException")
    );
}

#[test]
fn timestamps_out_of_range_are_an_error() {
    let tracks = [avc(1)];
    // Two frames 2^62 ns apart: no 32-bit duration holds the gap.
    let frames = [
        frame(1, 0, true, b"a"),
        Frame {
            pts_ns: 1 << 62,
            ..frame(1, 0, false, b"b")
        },
    ];
    let expected = Err(RemuxError::TimestampOutOfRange { track: 1 });
    assert_eq!(
        media_segment(1, &tracks, &frames, &Timeline::new(0, 0)),
        expected
    );
    assert_eq!(clip(&tracks, &frames), expected);
    // The extremes of the clock convert without overflowing.
    let extremes = [
        Frame {
            pts_ns: i64::MIN,
            ..frame(1, 0, true, b"a")
        },
        Frame {
            pts_ns: i64::MAX,
            ..frame(1, 0, true, b"b")
        },
    ];
    let timeline = Timeline::new(i64::MAX, u64::MAX);
    assert!(media_segment(1, &tracks, &extremes, &timeline).is_err());
}
