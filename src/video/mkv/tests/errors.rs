//! Violations: each error code the reader gives, whether it is fatal, and
//! that reading goes on after a fragment is dropped.

use super::super::{KvsError, MkvReader, ReaderLimits};
use super::build::*;

#[test]
fn garbage_is_fatal_invalid_mkv_data() {
    let events = read(b"this is not a matroska stream at all");
    assert_eq!(errors(&events), [(KvsError::InvalidMkvData, None, true)]);

    // Garbage after a good fragment: the fragment still comes out, then the
    // stream ends and later bytes are ignored.
    // Garbage inside an open cluster loses that fragment with the stream.
    let mut body = av_stream(2);
    body.extend([0x00, 0x01, 0x02, 0x03]);
    let mut reader = MkvReader::new(ReaderLimits::default());
    let events = reader.push(&body);
    assert_eq!(outline(&events), ["H", "S0", "F0", "S1000", "E4006@1000!"]);
    assert!(reader.push(&av_stream(2)).is_empty());
    assert!(reader.finish().is_empty());
}

#[test]
fn bad_ebml_headers_are_fatal() {
    let avi = [ebml_header_of("avi"), segment_unknown()].concat();
    assert_eq!(
        errors(&read(&avi)),
        [(KvsError::InvalidMkvData, None, true)]
    );
    let webm = [
        ebml_header_of("webm"),
        segment_unknown(),
        info(1_000_000),
        tracks(&[video_track(1)]),
    ]
    .concat();
    assert_eq!(outline(&read(&webm)), ["H"]);
    let cut = &ebml_header()[..10];
    assert_eq!(errors(&read(cut)), [(KvsError::InvalidMkvData, None, true)]);
    let no_segment = [ebml_header(), info(1_000_000)].concat();
    assert_eq!(
        errors(&read(&no_segment)),
        [(KvsError::InvalidMkvData, None, true)]
    );
}

#[test]
fn a_second_segment_is_fatal() {
    let body = [av_stream(1), av_stream(1)].concat();
    assert_eq!(outline(&read(&body)), ["H", "S0", "F0", "E4006!"]);
}

#[test]
fn more_than_three_tracks_is_4012() {
    let body = head(&[
        video_track(1),
        audio_track(2, None),
        audio_track(3, None),
        audio_track(4, None),
    ]);
    assert_eq!(outline(&read(&body)), ["E4012!"]);
    let three = head(&[video_track(1), audio_track(2, None), audio_track(3, None)]);
    assert_eq!(outline(&read(&three)), ["H"]);
}

#[test]
fn a_twelve_second_cluster_is_4002_and_the_next_fragment_survives() {
    let mut body = head(&[video_track(1)]);
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(cluster_open(1000));
    for i in 0..300i16 {
        body.extend(simple_block(1, i * 40, i == 0, b"f"));
    }
    body.extend(cluster_open(13_000));
    body.extend(simple_block(1, 0, true, b"k"));
    let events = read(&body);
    assert_eq!(
        outline(&events),
        ["H", "S0", "F0", "S1000", "E4002@1000", "S13000", "F13000"]
    );
    assert_eq!(fragments(&events)[0].duration_ns, 1_000_000_000);
}

#[test]
fn a_timecode_going_back_is_4004() {
    let mut body = head(&[video_track(1)]);
    for tc in [0, 2000, 1000, 3000] {
        body.extend(cluster_open(tc));
        body.extend(simple_block(1, 0, true, b"k"));
    }
    let events = read(&body);
    assert_eq!(
        outline(&events),
        [
            "H",
            "S0",
            "F0",
            "S2000",
            "F2000",
            "E4004@1000",
            "S3000",
            "F3000"
        ]
    );
    // The fragment before the refused one cannot end at a start that goes
    // back: its frames give its duration.
    assert_eq!(fragments(&events)[1].duration_ns, 40_000_000);
}

#[test]
fn a_block_on_an_undeclared_track_is_4010() {
    let mut body = head(&[video_track(1)]);
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(simple_block(5, 10, true, b"?"));
    body.extend(simple_block(1, 40, false, b"p"));
    body.extend(cluster_open(1000));
    body.extend(simple_block(1, 0, true, b"k"));
    assert_eq!(
        outline(&read(&body)),
        ["H", "S0", "E4010@0", "S1000", "F1000"]
    );
}

#[test]
fn a_declared_track_without_frames_is_4011() {
    let mut body = head(&[video_track(1), audio_track(2, None)]);
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(cluster_open(1000));
    body.extend(second_of_media(1, true).concat());
    assert_eq!(
        outline(&read(&body)),
        ["H", "S0", "E4011@0", "S1000", "F1000"]
    );
}

#[test]
fn a_fragment_not_starting_with_a_key_frame_is_4006_and_not_fatal() {
    let mut body = head(&[video_track(1), audio_track(2, None)]);
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, false, b"p"));
    body.extend(cluster_open(1000));
    // Audio first is fine, but the video must then start with a key frame.
    body.extend(simple_block(2, 0, true, b"a"));
    body.extend(simple_block(1, 0, false, b"p"));
    body.extend(cluster_open(2000));
    body.extend(simple_block(2, 0, true, b"a"));
    body.extend(simple_block(1, 0, true, b"k"));
    assert_eq!(
        outline(&read(&body)),
        [
            "H",
            "S0",
            "E4006@0",
            "S1000",
            "E4006@1000",
            "S2000",
            "F2000"
        ]
    );
}

#[test]
fn metadata_limits_are_4009() {
    let long_value = "v".repeat(257);
    let long_name = "n".repeat(129);
    let eleven: Vec<(String, String)> = (0..11)
        .map(|i| (format!("t{i}"), "x".to_string()))
        .collect();
    let cases = [
        super::super::tags_element(&eleven),
        tags(&[("AWS_OWN", "x")]),
        tags(&[("name", &long_value)]),
        tags(&[(&long_name, "x")]),
    ];
    for case in cases {
        let mut body = head(&[video_track(1)]);
        body.extend(case);
        body.extend(cluster_open(0));
        body.extend(simple_block(1, 0, true, b"k"));
        body.extend(cluster_open(1000));
        body.extend(simple_block(1, 0, true, b"k"));
        let events = read(&body);
        assert_eq!(outline(&events), ["H", "E4009@0", "S1000", "F1000"]);
        assert!(fragments(&events)[0].tags.is_empty());
    }
    // Ten tags are allowed.
    let ten: Vec<(String, String)> = (0..10)
        .map(|i| (format!("t{i}"), "x".to_string()))
        .collect();
    let mut body = head(&[video_track(1)]);
    body.extend(super::super::tags_element(&ten));
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"k"));
    assert_eq!(fragments(&read(&body))[0].tags, ten);
}

#[test]
fn a_fragment_over_the_size_limit_is_4001_and_the_next_survives() {
    let limits = ReaderLimits {
        fragment_bytes_max: 1000,
        ..ReaderLimits::default()
    };
    let mut body = head(&[video_track(1)]);
    body.extend(cluster_open(0));
    for i in 0..10 {
        body.extend(simple_block(1, i * 40, i == 0, &[0u8; 200]));
    }
    body.extend(cluster_open(1000));
    body.extend(simple_block(1, 0, true, &[0u8; 200]));
    // A single block larger than the limit is skipped without being held.
    body.extend(cluster_open(2000));
    body.extend(simple_block(1, 0, true, &[0u8; 5000]));
    body.extend(cluster_open(3000));
    body.extend(simple_block(1, 0, true, b"k"));
    let events = read_with(&body, limits);
    assert_eq!(
        outline(&events),
        [
            "H",
            "S0",
            "E4001@0",
            "S1000",
            "F1000",
            "S2000",
            "E4001@2000",
            "S3000",
            "F3000"
        ]
    );
}

#[test]
fn a_body_ending_inside_a_fragment() {
    let body = av_stream(2);
    let events = read(&body[..body.len() - 2]);
    assert_eq!(outline(&events), ["H", "S0", "F0", "S1000", "E4006@1000"]);
    assert!(
        !errors(&events)[0].2,
        "the truncated last fragment is not fatal"
    );
    // A body ending right after a complete cluster loses nothing.
    assert_eq!(outline(&read(&body)), ["H", "S0", "F0", "S1000", "F1000"]);
}

#[test]
fn empty_bodies_and_headers_alone() {
    assert!(read(&[]).is_empty());
    assert_eq!(outline(&read(&head(&[video_track(1)]))), ["H"]);
    // Tracks without Info: the default scale applies.
    let no_info = [ebml_header(), segment_unknown(), tracks(&[video_track(1)])].concat();
    assert_eq!(outline(&read(&no_info)), ["H"]);
    // A Cluster before any Tracks is fatal.
    let no_tracks = [
        ebml_header(),
        segment_unknown(),
        info(1_000_000),
        cluster_open(0),
    ]
    .concat();
    assert_eq!(outline(&read(&no_tracks)), ["E4006!"]);
}

#[test]
fn a_repeated_identical_header_is_ignored_and_a_changed_one_is_fatal() {
    let mut body = av_stream(1);
    body.extend(info(1_000_000));
    body.extend(tracks(&[video_track(1), audio_track(2, None)]));
    body.extend(cluster_open(1000));
    body.extend(second_of_media(1, true).concat());
    assert_eq!(outline(&read(&body)), ["H", "S0", "F0", "S1000", "F1000"]);
    let mut body = av_stream(1);
    body.extend(info(100_000));
    assert_eq!(outline(&read(&body)), ["H", "S0", "F0", "E4006!"]);
}

#[test]
fn too_many_frames_is_4001() {
    let limits = ReaderLimits {
        frames_per_fragment_max: 30,
        ..ReaderLimits::default()
    };
    let mut body = head(&[video_track(1)]);
    body.extend(cluster_open(0));
    body.extend(second_of_media(0, false).concat());
    body.extend(cluster_open(1000));
    body.extend(second_of_media(1, false).concat());
    let tiny: &[u8] = &[0u8; 10];
    body.extend(laced_block(1, 980, 2, &[tiny; 8]));
    assert_eq!(
        outline(&read_with(&body, limits)),
        ["H", "S0", "F0", "S1000", "E4001@1000"]
    );
}
