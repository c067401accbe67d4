//! Running ffmpeg and ffprobe for the tests: making source files, and
//! decoding files or playlists into per-frame checksums and frame counts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a program and returns its standard output; a failure to start or a
/// non-zero exit fails the test with the program's error output, since the
/// playback tests cannot check anything without ffmpeg.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is required by these tests: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The lavfi test pattern with H.264 (`bframes` B-frames), one key frame a
/// second, optionally with an AAC sine tone.
pub fn h264_mkv(dir: &Path, name: &str, bframes: u32, audio: bool) -> PathBuf {
    let bf = bframes.to_string();
    let mut args = vec!["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"];
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend(["-t", "6", "-c:v", "libx264", "-preset"]);
    // The ultrafast preset never makes B-frames, whatever -bf says.
    args.push(if bframes == 0 { "ultrafast" } else { "fast" });
    args.extend([
        "-bf",
        &bf,
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
    ]);
    args.extend(["-pix_fmt", "yuv420p"]);
    if audio {
        args.extend(["-c:a", "aac"]);
    }
    encode(dir, name, &args)
}

/// The lavfi test pattern with H.265, one key frame a second, no B-frames.
pub fn h265_mkv(dir: &Path, name: &str) -> PathBuf {
    let args = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-t",
        "6",
        "-c:v",
        "libx265",
        "-x265-params",
        "keyint=25:min-keyint=25:bframes=0:log-level=error",
        "-pix_fmt",
        "yuv420p",
    ];
    encode(dir, name, &args)
}

fn encode(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = path.to_str().expect("a UTF-8 path");
    let mut all = vec!["-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    all.extend(["-f", "matroska", "-live", "1", out]);
    run("ffmpeg", &all);
    path
}

/// The checksum of every decoded frame of the input's first video (`v`)
/// or audio (`a`) stream, in output order. Only the checksums are kept:
/// the timestamps differ between containers in their time bases.
pub fn framemd5(input: &Path, stream: &str) -> Vec<String> {
    let input = input.to_str().expect("a UTF-8 path");
    let map = format!("0:{stream}:0");
    let out = run(
        "ffmpeg",
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            input,
            "-map",
            &map,
            "-vsync",
            "passthrough",
            "-f",
            "framemd5",
            "-",
        ],
    );
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next())
        .map(|h| h.trim().to_string())
        .collect()
}

/// How many frames ffprobe decodes from the input's first video or audio
/// stream.
pub fn count_frames(input: &Path, stream: &str) -> usize {
    let input = input.to_str().expect("a UTF-8 path");
    let select = format!("{stream}:0");
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            &select,
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            input,
        ],
    );
    // A playlist's stream is listed twice, under its program and alone.
    let first = out
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("a frame count, not {out:?}"))
}

/// The presentation time, in milliseconds, of every decoded frame of the
/// input's first video or audio stream, in output order.
pub fn frame_times(input: &Path, stream: &str) -> Vec<i64> {
    let input = input.to_str().expect("a UTF-8 path");
    let select = format!("{stream}:0");
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            &select,
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
            input,
        ],
    );
    out.lines()
        .filter_map(|l| l.split(',').next())
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let secs: f64 = t
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("a time, not {t:?}"));
            (secs * 1000.0).round() as i64
        })
        .collect()
}
