//! Real encoder output: ffmpeg's live Matroska (H.264, with and without
//! B-frames, with AAC) is read into fragments, every frame is accounted
//! for against ffprobe, and the fragments written back as `GetMedia` chunks
//! and as standalone files decode to exactly the source's frames
//! (`framemd5`). These tests need ffmpeg and ffprobe on the PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::ebml::{self, id};
use super::super::writer::tag;
use super::super::{
    Fragment, MkvReader, ReadEvent, ReaderLimits, StreamHeader, fragment_chunk, seconds, standalone,
};
use super::build::{errors, read, read_chunked};

/// Runs a command that must succeed and returns its standard output.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Six seconds of test pattern at 25 fps with a key frame every second, as
/// live Matroska; with `audio`, a 440 Hz tone in AAC beside it.
fn encode(dir: &Path, name: &str, b_frames: u32, audio: bool) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
    ]);
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.args([
        "-t",
        "6",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
    ]);
    cmd.args([
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-bf",
        &b_frames.to_string(),
    ]);
    cmd.args(["-pix_fmt", "yuv420p"]);
    if audio {
        cmd.args(["-c:a", "aac"]);
    }
    cmd.args([
        "-f",
        "matroska",
        "-live",
        "1",
        "-cluster_time_limit",
        "10000",
    ]);
    cmd.arg(&out);
    run(&mut cmd);
    out
}

/// Per stream, in order: (codec type, decoded frames, packets).
fn probe(path: &Path) -> Vec<(String, usize, usize)> {
    let text = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-count_packets",
            "-show_entries",
            "stream=codec_type,nb_read_frames,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(path));
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let n = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
            (fields[0].to_string(), n(1), n(2))
        })
        .collect()
}

/// How many key frames the file's video stream has.
fn video_key_frames(path: &Path) -> usize {
    let text = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path));
    text.lines().filter(|l| l.starts_with('K')).count()
}

/// The decoded frames of one stream ("v" or "a"), on the file's own clock,
/// less the line naming ffmpeg's version.
fn framemd5(path: &Path, stream: &str) -> Vec<String> {
    let text = run(Command::new("ffmpeg")
        .args(["-v", "error", "-copyts", "-i"])
        .arg(path)
        .args(["-map", &format!("0:{stream}"), "-f", "framemd5", "-"]));
    text.lines()
        .filter(|l| !l.starts_with("#software"))
        .map(str::to_string)
        .collect()
}

/// The frame lines' sizes and hashes only, for decodes whose clock starts
/// elsewhere.
fn hashes(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').take(2).collect::<Vec<_>>().join(","))
        .collect()
}

/// Reads a file in 4 KiB pushes; there must be no error.
fn read_file(bytes: &[u8]) -> (StreamHeader, Vec<Fragment>) {
    let mut reader = MkvReader::new(ReaderLimits::default());
    let mut events = Vec::new();
    for chunk in bytes.chunks(4096) {
        events.extend(reader.push(chunk));
    }
    events.extend(reader.finish());
    assert_eq!(errors(&events), [], "no errors expected");
    let mut header = None;
    let mut fragments = Vec::new();
    for event in events {
        match event {
            ReadEvent::Header(h) => header = Some(h),
            ReadEvent::Fragment(f) => fragments.push(f),
            _ => {}
        }
    }
    (header.expect("a header"), fragments)
}

/// The file as the producer SDK would send it: every Cluster of unknown
/// size. ffmpeg writes live clusters with known sizes.
fn with_open_clusters(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut depth = 0;
    while let Ok(Some(head)) = ebml::read_head(&bytes[at..]) {
        let header_end = at + head.len;
        match (head.id, head.size) {
            (id::SEGMENT, _) => {
                out.extend_from_slice(&bytes[at..at + 4]);
                out.extend_from_slice(&ebml::UNKNOWN_SIZE);
                at = header_end;
                depth = 1;
                continue;
            }
            (id::CLUSTER, Some(size)) if depth == 1 => {
                out.extend_from_slice(&bytes[at..at + 4]);
                out.extend_from_slice(&ebml::UNKNOWN_SIZE);
                out.extend_from_slice(&bytes[header_end..header_end + size as usize]);
            }
            (_, Some(size)) => out.extend_from_slice(&bytes[at..header_end + size as usize]),
            (_, None) => panic!("an unexpected unknown size"),
        }
        at = header_end + head.size.unwrap_or(0) as usize;
    }
    assert_eq!(at, bytes.len());
    out
}

/// Every fragment as a `GetMedia` chunk, concatenated, as `GetMedia` sends them.
fn as_chunks(header: &StreamHeader, fragments: &[Fragment]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in fragments.iter().enumerate() {
        let pair = |n: &str, v: String| (n.to_string(), v);
        let number = format!("9134385233318143239268206260774392014626417{i:04}");
        let mut before = vec![
            pair(tag::FRAGMENT_NUMBER, number.clone()),
            pair(
                tag::SERVER_TIMESTAMP,
                seconds(1_700_000_000_000 + f.start_ns / 1_000_000),
            ),
            pair(tag::PRODUCER_TIMESTAMP, seconds(f.start_ns / 1_000_000)),
        ];
        // The producer's metadata (here ffmpeg's ENCODER tags) goes along.
        before.extend(f.tags.iter().cloned());
        let after = [
            pair(tag::MILLIS_BEHIND_NOW, "0".to_string()),
            pair(tag::CONTINUATION_TOKEN, number),
        ];
        out.extend(fragment_chunk(header, &f.cluster, &before, &after));
    }
    out
}

/// Reads the file, checks every frame and fragment is there, and checks the
/// fragments written back decode to the source's frames.
fn round_trip(source: &Path, streams: &[&str]) {
    let dir = source.parent().expect("a directory");
    let bytes = std::fs::read(source).expect("the encoded file");
    let (header, fragments) = read_file(&bytes);
    let probed = probe(source);
    assert_eq!(header.tracks.len(), probed.len());
    assert_eq!(header.tracks[0].codec_id, "V_MPEG4/ISO/AVC");

    // One fragment per key frame, each starting with one.
    assert_eq!(fragments.len(), video_key_frames(source));
    assert_eq!(fragments.len(), 6);
    for (track, (kind, frames, packets)) in header.tracks.iter().zip(&probed) {
        let ours = fragments
            .iter()
            .flat_map(|f| &f.frames)
            .filter(|fr| fr.track == track.number)
            .count();
        assert_eq!((ours, ours), (*frames, *packets), "{kind} frames");
    }

    // The same fragments come out of open clusters, one byte at a time too.
    let live = with_open_clusters(&bytes);
    let (_, live_fragments) = read_file(&live);
    assert_eq!(live_fragments, fragments);
    assert_eq!(read_chunked(&live, &[1]), read(&live));

    // Concatenated GetMedia chunks decode to exactly the source's frames.
    let chunks = dir.join("chunks.mkv");
    std::fs::write(&chunks, as_chunks(&header, &fragments)).expect("write chunks");
    for stream in streams {
        let source_md5 = framemd5(source, stream);
        assert!(source_md5.len() > 100);
        assert_eq!(framemd5(&chunks, stream), source_md5, "stream {stream}");
    }

    // Standalone fragments decode on their own to the same video frames.
    let mut video_hashes = Vec::new();
    for (i, f) in fragments.iter().enumerate() {
        let file = dir.join(format!("fragment-{i}.mkv"));
        std::fs::write(&file, standalone(&header, &f.cluster)).expect("write fragment");
        let video = f.frames.iter().filter(|fr| fr.track == 1).count();
        assert_eq!(probe(&file)[0].1, video, "fragment {i} video frames");
        video_hashes.extend(hashes(&framemd5(&file, "v")));
    }
    assert_eq!(video_hashes, hashes(&framemd5(source, "v")));
}

#[test]
fn h264_fragments_round_trip_frame_exactly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = encode(dir.path(), "out.mkv", 0, false);
    round_trip(&source, &["v"]);
}

#[test]
fn h264_with_b_frames_and_aac_round_trip_frame_exactly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = encode(dir.path(), "av.mkv", 2, true);
    round_trip(&source, &["v", "a"]);
}
