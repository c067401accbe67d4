//! Whole streams through the remuxer and back through ffmpeg: HLS
//! playback and clips must decode to exactly the source's frames.

use std::fs;
use std::path::{Path, PathBuf};

use mp4_atom::{Decode, Moof};

use super::super::types::{Frame, TrackKind};
use super::super::{
    MediaPlaylist, Segment, Timeline, clip, init_segment, media_playlist, media_segment,
};
use super::ffmpeg::{count_frames, frame_times, framemd5, h264_mkv, h265_mkv};
use super::mkv::{Mkv, read};

/// The source is 6 s at 25 frames per second, a key frame each second.
const FRAMES: usize = 150;
const FRAGMENTS: usize = 6;

/// Writes `init.mp4`, one `segN.m4s` per fragment and `index.m3u8` into
/// `dir`, making the segments from the last to the first so that none can
/// lean on one made before it; returns the playlist and the segments.
fn write_hls(dir: &Path, mkv: &Mkv) -> (PathBuf, Vec<Vec<u8>>) {
    let fragments = mkv.fragments();
    let timeline = Timeline::from_frames(&mkv.tracks, &fragments[0]);
    fs::write(dir.join("init.mp4"), init_segment(&mkv.tracks).unwrap()).unwrap();
    let mut segments = vec![Vec::new(); fragments.len()];
    for (i, fragment) in fragments.iter().enumerate().rev() {
        segments[i] = media_segment(i as u32 + 1, &mkv.tracks, fragment, &timeline).unwrap();
    }
    let starts: Vec<i64> = fragments.iter().map(|f| first_video_pts(mkv, f)).collect();
    let mut playlist = MediaPlaylist {
        init_uri: "init.mp4".into(),
        media_sequence: 0,
        segments: Vec::new(),
        ended: true,
    };
    for (i, segment) in segments.iter().enumerate() {
        let uri = format!("seg{i}.m4s");
        fs::write(dir.join(&uri), segment).unwrap();
        let end = starts
            .get(i + 1)
            .copied()
            .unwrap_or(starts[i] + 1_000_000_000);
        playlist.segments.push(Segment {
            uri,
            duration_secs: (end - starts[i]) as f64 / 1e9,
            program_date_time_ms: Some(1_700_000_000_000 + starts[i] / 1_000_000),
            discontinuity: false,
        });
    }
    let path = dir.join("index.m3u8");
    fs::write(&path, media_playlist(&playlist)).unwrap();
    (path, segments)
}

fn first_video_pts(mkv: &Mkv, fragment: &[Frame]) -> i64 {
    let video = mkv.track(TrackKind::Video).unwrap().number;
    fragment
        .iter()
        .filter(|f| f.track == video)
        .map(|f| f.pts_ns)
        .min()
        .unwrap()
}

/// Plays `output` (a playlist or a clip) back and compares it with
/// `source` stream by stream: the same decoded frames, presented at the
/// same times (up to a shift of the whole stream) and counted alike by
/// ffprobe; with both video and audio, the same offset between them.
fn assert_plays_like(output: &Path, source: &Path, streams: &[&str]) {
    let mut starts = Vec::new();
    for &stream in streams {
        let expected = framemd5(source, stream);
        assert!(!expected.is_empty(), "the source has {stream} frames");
        assert_eq!(framemd5(output, stream), expected, "{stream} frames differ");
        assert_eq!(count_frames(output, stream), expected.len());
        let (want, got) = (frame_times(source, stream), frame_times(output, stream));
        assert_eq!(
            relative(&got),
            relative(&want),
            "{stream} frame times differ"
        );
        starts.push((want[0], got[0]));
    }
    if let [(video_want, video_got), (audio_want, audio_got)] = starts[..] {
        assert_eq!(video_got - audio_got, video_want - audio_want, "A/V offset");
    }
}

/// Times as distances from the first.
fn relative(times: &[i64]) -> Vec<i64> {
    times.iter().map(|t| t - times[0]).collect()
}

#[test]
fn h264_hls_plays_back_frame_exact() {
    let dir = tempfile::tempdir().unwrap();
    let source = h264_mkv(dir.path(), "src.mkv", 0, false);
    let mkv = read(&source);
    assert_eq!(mkv.fragments().len(), FRAGMENTS);
    let (playlist, _) = write_hls(dir.path(), &mkv);
    assert_eq!(framemd5(&source, "v").len(), FRAMES);
    assert_plays_like(&playlist, &source, &["v"]);
}

#[test]
fn h264_with_bframes_and_aac_hls_plays_back_frame_exact() {
    let dir = tempfile::tempdir().unwrap();
    let source = h264_mkv(dir.path(), "src.mkv", 2, true);
    let mkv = read(&source);
    let video = mkv.track(TrackKind::Video).unwrap().number;
    let pts: Vec<i64> = mkv
        .frames
        .iter()
        .filter(|f| f.track == video)
        .map(|f| f.pts_ns)
        .collect();
    assert!(
        pts.windows(2).any(|w| w[1] < w[0]),
        "the source has B-frames"
    );
    let (playlist, _) = write_hls(dir.path(), &mkv);
    assert_eq!(framemd5(&source, "v").len(), FRAMES);
    assert_plays_like(&playlist, &source, &["v", "a"]);
}

#[test]
fn h265_hls_plays_back_frame_exact() {
    let dir = tempfile::tempdir().unwrap();
    let source = h265_mkv(dir.path(), "src.mkv");
    let mkv = read(&source);
    assert_eq!(
        mkv.track(TrackKind::Video).unwrap().codec_id,
        "V_MPEGH/ISO/HEVC"
    );
    assert_eq!(mkv.fragments().len(), FRAGMENTS);
    let (playlist, _) = write_hls(dir.path(), &mkv);
    assert_eq!(framemd5(&source, "v").len(), FRAMES);
    assert_plays_like(&playlist, &source, &["v"]);
}

/// Segments made in reverse equal those made in order, and each track's
/// decode times run on from one segment to the next without a gap.
#[test]
fn segments_are_independent_and_continuous() {
    let dir = tempfile::tempdir().unwrap();
    let mkv = read(&h264_mkv(dir.path(), "src.mkv", 2, true));
    let fragments = mkv.fragments();
    let timeline = Timeline::from_frames(&mkv.tracks, &fragments[0]);
    let (_, reversed) = write_hls(dir.path(), &mkv);
    let in_order: Vec<Vec<u8>> = fragments
        .iter()
        .enumerate()
        .map(|(i, f)| media_segment(i as u32 + 1, &mkv.tracks, f, &timeline).unwrap())
        .collect();
    assert_eq!(in_order, reversed);
    let moofs: Vec<Moof> = in_order
        .iter()
        .map(|s| Moof::decode(&mut s.as_slice()).unwrap())
        .collect();
    for track_id in [1, 2] {
        let spans: Vec<(u64, u64)> = moofs.iter().map(|m| span(m, track_id)).collect();
        for pair in spans.windows(2) {
            let (start, end) = (pair[0].1, pair[1].0);
            // Video decode times meet exactly; audio ones within a
            // millisecond, the precision of MKV timestamps (48 ticks).
            let slack = if track_id == 1 { 0 } else { 48 };
            assert!(start.abs_diff(end) <= slack, "track {track_id}: {spans:?}");
        }
    }
}

/// A track's first decode time in a segment and the decode time just past
/// its last sample.
fn span(moof: &Moof, track_id: u32) -> (u64, u64) {
    let traf = moof
        .traf
        .iter()
        .find(|t| t.tfhd.track_id == track_id)
        .unwrap();
    let start = traf.tfdt.as_ref().unwrap().base_media_decode_time;
    let total: u64 = traf.trun[0]
        .samples
        .iter()
        .map(|s| u64::from(s.duration.unwrap()))
        .sum();
    (start, start + total)
}

#[test]
fn clips_decode_to_the_source_frames() {
    let dir = tempfile::tempdir().unwrap();
    let source = h264_mkv(dir.path(), "src.mkv", 2, true);
    let mkv = read(&source);
    let whole = dir.path().join("whole.mp4");
    fs::write(&whole, clip(&mkv.tracks, &mkv.frames).unwrap()).unwrap();
    assert_plays_like(&whole, &source, &["v", "a"]);

    // Fragments 2 and 3 hold the source's frames 50 to 99.
    let fragments = mkv.fragments();
    let range: Vec<Frame> = fragments[2..4].concat();
    let part = dir.path().join("part.mp4");
    fs::write(&part, clip(&mkv.tracks, &range).unwrap()).unwrap();
    let expected = framemd5(&source, "v")[50..100].to_vec();
    assert_eq!(framemd5(&part, "v"), expected);
    assert_eq!(count_frames(&part, "v"), 50);
    let times = frame_times(&source, "v")[50..100].to_vec();
    assert_eq!(relative(&frame_times(&part, "v")), relative(&times));
    let audio = mkv.track(TrackKind::Audio).unwrap().number;
    let audio_frames = range.iter().filter(|f| f.track == audio).count();
    assert_eq!(count_frames(&part, "a"), audio_frames);
}
