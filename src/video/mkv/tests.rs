//! Tests of the MKV reader and writer: hand-built streams for each feature
//! and each violation, chunking that must not change the events, arbitrary
//! bytes that must not panic, and (in [`ffmpeg`]) real encoder output read,
//! written back and decoded to the same frames.

mod build;
mod errors;
mod ffmpeg;

use proptest::prelude::*;

use self::build::*;
use super::super::types::TrackKind;
use super::ebml::id;
use super::{KvsError, MkvReader, ReadEvent, ReaderLimits, fragment_chunk, seconds, standalone};

#[test]
fn error_codes_have_their_ids_and_names() {
    assert_eq!(KvsError::StreamReadError.id(), 4000);
    assert_eq!(
        KvsError::MaxFragmentDurationReached.name(),
        "MAX_FRAGMENT_DURATION_REACHED"
    );
    assert_eq!(KvsError::MoreThanAllowedTracksFound.id(), 4012);
    assert_eq!(KvsError::MoreThanAllowedTracksFoundDeprecated.id(), 4005);
    assert_eq!(
        KvsError::MoreThanAllowedTracksFound.name(),
        KvsError::MoreThanAllowedTracksFoundDeprecated.name()
    );
    for (i, e) in KvsError::ALL.into_iter().enumerate() {
        assert_eq!(e.id(), 4000 + i as u32);
        assert_eq!(KvsError::from_id(e.id()), Some(e));
    }
    assert_eq!(KvsError::from_id(3999), None);
    assert_eq!(
        KvsError::InvalidMkvData.to_string(),
        "INVALID_MKV_DATA (4006)"
    );
}

#[test]
fn reads_unknown_size_clusters_into_fragments() {
    let events = read(&av_stream(3));
    assert_eq!(
        outline(&events),
        ["H", "S0", "F0", "S1000", "F1000", "S2000", "F2000"]
    );
    let ReadEvent::Header(header) = &events[0] else {
        panic!("no header first");
    };
    assert_eq!(header.timecode_scale_ns, 1_000_000);
    assert_eq!(header.tracks.len(), 2);
    assert_eq!(header.tracks[0].kind, TrackKind::Video);
    assert_eq!(header.tracks[0].codec_id, "V_MPEG4/ISO/AVC");
    assert_eq!(header.tracks[0].width, Some(320));
    assert_eq!(header.tracks[0].default_duration_ns, Some(40_000_000));
    assert_eq!(header.tracks[1].kind, TrackKind::Audio);
    assert_eq!(header.tracks[1].sample_rate, Some(48000.0));
    assert_eq!(header.tracks[1].channels, Some(2));
    assert_eq!(header.tracks[1].codec_private, [0x11, 0x90]);

    for (c, f) in fragments(&events).into_iter().enumerate() {
        assert_eq!(f.timecode, c as i64 * 1000);
        assert_eq!(f.start_ns, c as i64 * 1_000_000_000);
        // The last one has no next cluster: its last frame ends at 1 s too.
        assert_eq!(f.duration_ns, 1_000_000_000);
        assert_eq!(f.frames.len(), 35);
        let video: Vec<_> = f.frames.iter().filter(|fr| fr.track == 1).collect();
        assert_eq!(video.len(), 25);
        assert!(video[0].keyframe && !video[1].keyframe);
        assert_eq!(video[3].pts_ns, f.start_ns + 120_000_000);
        assert_eq!(video[3].duration_ns, Some(40_000_000));
        assert_eq!(&video[3].data[..], &[c as u8, 3, 0xAA, 0xBB]);
        let audio: Vec<_> = f.frames.iter().filter(|fr| fr.track == 2).collect();
        assert_eq!(audio.len(), 10);
        assert_eq!(audio[9].pts_ns, f.start_ns + 900_000_000);
        assert_eq!(audio[9].duration_ns, None);
        assert_eq!(&f.cluster[..4], &[0x1F, 0x43, 0xB6, 0x75]);
        assert_eq!(f.cluster[4], 0x01, "an 8-byte known size");
    }
}

#[test]
fn stored_cluster_with_the_header_reads_back_the_same_frames() {
    let events = read(&av_stream(2));
    let ReadEvent::Header(header) = &events[0] else {
        panic!("no header first");
    };
    // The header drops Info's Duration: it would be wrong for a fragment.
    let again = read(&header.bytes);
    assert_eq!(outline(&again), ["H"]);
    assert!(!header.bytes.windows(2).any(|w| w == [0x44, 0x89]));
    for f in fragments(&events) {
        let back = read(&standalone(header, &f.cluster));
        let back_fragments = fragments(&back);
        assert_eq!(back_fragments.len(), 1);
        assert_eq!(back_fragments[0].frames, f.frames);
        assert_eq!(back_fragments[0].cluster, f.cluster);
    }
}

#[test]
fn known_sizes_void_crc_position_and_8_byte_sizes() {
    let [v0, v1] = [
        simple_block(1, 0, true, b"key"),
        simple_block(1, 40, false, b"delta"),
    ];
    let cluster_payload = [
        el(id::CRC32, &[1, 2, 3, 4]),
        el8(id::TIMECODE, &[0x03, 0xE8]),
        el8(id::POSITION, &[0]),
        el(id::VOID, &[0; 5]),
        el8(id::SIMPLE_BLOCK, &v0[2..]),
        v1,
        el(0x5555, b"unknown child"),
    ]
    .concat();
    let segment = [
        el(id::VOID, &[0; 10]),
        info(1_000_000),
        el8(id::TRACKS, &video_track(1)),
        el(0x1C53_BB6B, b"cues are skipped"),
        el(id::CLUSTER, &cluster_payload),
        cluster_sized(2000, &[simple_block(1, 0, true, b"k2")]),
    ]
    .concat();
    let body = [ebml_header(), el(id::SEGMENT, &segment)].concat();
    let events = read(&body);
    assert_eq!(outline(&events), ["H", "S1000", "F1000", "S2000", "F2000"]);
    let f = fragments(&events);
    assert_eq!(f[0].frames.len(), 2);
    assert_eq!(&f[0].frames[0].data[..], b"key");
    assert_eq!(&f[0].frames[1].data[..], b"delta");
    // One second to the next cluster, not the 80 ms its frames last.
    assert_eq!(f[0].duration_ns, 1_000_000_000);
    assert_eq!(f[1].duration_ns, 40_000_000);
    // Bytes after a Segment of known size are not a second stream.
    let trailing = read(&[body.clone(), ebml_header()].concat());
    assert_eq!(errors(&trailing), [(KvsError::InvalidMkvData, None, true)]);
}

#[test]
fn laced_blocks_are_split_into_frames() {
    let mut body = head(&[video_track(1), audio_track(2, Some(20_000_000))]);
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"v"));
    let big = vec![7u8; 300];
    body.extend(laced_block(2, 0, 1, &[&big, b"ab", b"cde"]));
    body.extend(laced_block(
        2,
        60,
        3,
        &[b"0123456789", b"01", b"0123", b"z"],
    ));
    body.extend(laced_block(2, 140, 2, &[b"xy", b"zw"]));
    let events = read(&body);
    let f = fragments(&events);
    let audio: Vec<_> = f[0].frames.iter().filter(|fr| fr.track == 2).collect();
    let sizes: Vec<usize> = audio.iter().map(|fr| fr.data.len()).collect();
    assert_eq!(sizes, [300, 2, 3, 10, 2, 4, 1, 2, 2]);
    assert_eq!(&audio[2].data[..], b"cde");
    assert_eq!(&audio[5].data[..], b"0123");
    assert_eq!(&audio[8].data[..], b"zw");
    let pts: Vec<i64> = audio.iter().map(|fr| fr.pts_ns / 1_000_000).collect();
    assert_eq!(pts, [0, 20, 40, 60, 80, 100, 120, 140, 160]);
    assert!(
        audio
            .iter()
            .all(|fr| fr.keyframe && fr.duration_ns == Some(20_000_000))
    );
    assert_eq!(f[0].duration_ns, 180_000_000);
}

#[test]
fn block_groups_give_key_frames_and_durations() {
    let mut body = head(&[video_track(1)]);
    body.extend(cluster_open(500));
    body.extend(block_group(1, 0, b"I", Some(40), true));
    body.extend(block_group(1, 40, b"P", Some(50), false));
    let f = read(&body);
    let f = fragments(&f);
    assert_eq!(f[0].frames.len(), 2);
    assert!(f[0].frames[0].keyframe);
    assert!(!f[0].frames[1].keyframe);
    // BlockDuration wins over the track's DefaultDuration (40 ms).
    assert_eq!(f[0].frames[1].duration_ns, Some(50_000_000));
    assert_eq!(&f[0].frames[1].data[..], b"P");

    // Without a DefaultDuration, BlockDuration gives the duration.
    let mut body = head(&[audio_track(1, None)]);
    body.extend(cluster_open(0));
    body.extend(block_group(1, 0, b"a", Some(21), true));
    let f = read(&body);
    assert_eq!(fragments(&f)[0].frames[0].duration_ns, Some(21_000_000));
    assert_eq!(fragments(&f)[0].duration_ns, 21_000_000);
}

#[test]
fn timecode_scale_other_than_a_millisecond() {
    // 100 µs ticks: cluster 10000 is 1 s, a block 400 ticks in is 40 ms later.
    let mut body = [
        ebml_header(),
        segment_unknown(),
        info(100_000),
        tracks(&[video_track(1)]),
    ]
    .concat();
    body.extend(cluster_open(10_000));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(simple_block(1, 400, false, b"p"));
    body.extend(cluster_open(30_000));
    body.extend(simple_block(1, 0, true, b"k"));
    let events = read(&body);
    let ReadEvent::Header(header) = &events[0] else {
        panic!("no header first");
    };
    assert_eq!(header.timecode_scale_ns, 100_000);
    let f = fragments(&events);
    assert_eq!(f[0].timecode, 10_000);
    assert_eq!(f[0].start_ns, 1_000_000_000);
    assert_eq!(f[0].frames[1].pts_ns, 1_040_000_000);
    assert_eq!(f[0].duration_ns, 2_000_000_000);
}

#[test]
fn producer_tags_go_to_the_next_fragment() {
    let mut body = head(&[video_track(1)]);
    body.extend(tags(&[
        ("camera", "front"),
        ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", "5"),
    ]));
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(tags(&[("event", "door")]));
    body.extend(cluster_open(1000));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(cluster_open(2000));
    body.extend(simple_block(1, 0, true, b"k"));
    let events = read(&body);
    let f = fragments(&events);
    assert_eq!(f[0].tags, [("camera".to_string(), "front".to_string())]);
    assert_eq!(f[1].tags, [("event".to_string(), "door".to_string())]);
    assert!(f[2].tags.is_empty());
}

#[test]
fn the_end_of_fragment_tag_closes_the_fragment_at_once() {
    let mut reader = MkvReader::new(ReaderLimits::default());
    let mut body = head(&[video_track(1)]);
    body.extend(cluster_open(0));
    body.extend(simple_block(1, 0, true, b"k"));
    body.extend(simple_block(1, 40, false, b"p"));
    // Without the marker the fragment waits for the next cluster.
    assert_eq!(outline(&reader.push(&body)), ["H", "S0"]);
    let marker = tags(&[("AWS_KINESISVIDEO_END_OF_FRAGMENT", ""), ("next", "1")]);
    let events = reader.push(&marker);
    assert_eq!(outline(&events), ["F0"]);
    assert_eq!(fragments(&events)[0].duration_ns, 80_000_000);
    let mut next = cluster_open(5000);
    next.extend(simple_block(1, 0, true, b"k"));
    let mut events = reader.push(&next);
    events.extend(reader.finish());
    assert_eq!(outline(&events), ["S5000", "F5000"]);
    assert_eq!(
        fragments(&events)[0].tags,
        [("next".to_string(), "1".to_string())]
    );
}

#[test]
fn memory_stays_within_one_fragment() {
    let body = av_stream(200);
    let mut reader = MkvReader::new(ReaderLimits::default());
    let mut most = 0;
    let mut count = 0;
    for chunk in body.chunks(4096) {
        count += fragments(&reader.push(chunk)).len();
        most = most.max(reader.buffered_bytes());
    }
    count += fragments(&reader.finish()).len();
    assert_eq!(count, 200);
    // A cluster here is under 600 bytes: one held, one pending, one chunk.
    assert!(most < 4096 + 2 * 600, "held {most} bytes");
}

#[test]
fn chunks_carry_the_service_tags_and_read_back() {
    let events = read(&av_stream(1));
    let ReadEvent::Header(header) = &events[0] else {
        panic!("no header first");
    };
    let f = fragments(&events)[0];
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    let before = [
        pair(
            "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
            "91343852333181432392682062607743920146264171136",
        ),
        pair(
            "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
            &seconds(1_513_118_181_123),
        ),
        pair(
            "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
            &seconds(1_513_118_180_000),
        ),
        pair("camera", "front"),
    ];
    let after = [
        pair("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", "1200"),
        pair(
            "AWS_KINESISVIDEO_CONTINUATION_TOKEN",
            "91343852333181432392682062607743920146264171136",
        ),
    ];
    let chunk = fragment_chunk(header, &f.cluster, &before, &after);
    let back = read(&chunk);
    assert_eq!(outline(&back), ["H", "S0", "F0"]);
    let g = fragments(&back)[0];
    assert_eq!(g.frames, f.frames);
    // Only the producer's tag is producer metadata.
    assert_eq!(g.tags, [pair("camera", "front")]);
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("AWS_KINESISVIDEO_SERVER_TIMESTAMP") && text.contains("1513118181.123"));
    assert!(super::tags_element(&[]).is_empty());
}

#[test]
fn seconds_are_written_with_milliseconds() {
    assert_eq!(seconds(1_513_118_181_123), "1513118181.123");
    assert_eq!(seconds(5), "0.005");
    assert_eq!(seconds(-1500), "-1.500");
}

#[test]
fn one_byte_at_a_time_gives_the_same_events() {
    let mut body = av_stream(3);
    body.extend(tags(&[
        ("a", "b"),
        ("AWS_KINESISVIDEO_END_OF_FRAGMENT", ""),
    ]));
    body.extend(cluster_open(2500));
    body.extend(simple_block(9, 0, true, b"undeclared"));
    let whole = read(&body);
    assert_eq!(read_chunked(&body, &[1]), whole);
    assert_eq!(
        outline(&whole).last().map(String::as_str),
        Some("E4010@2500")
    );
}

/// A stream exercising most paths: tags, known and unknown sizes, lacing,
/// groups, a refused fragment and the end-of-fragment marker.
fn varied_stream() -> Vec<u8> {
    let mut body = head(&[video_track(1), audio_track(2, Some(20_000_000))]);
    body.extend(tags(&[("k", "v")]));
    body.extend(cluster_open(0));
    body.extend(second_of_media(0, true).concat());
    body.extend(cluster_sized(
        1000,
        &[
            block_group(1, 0, b"I", Some(40), true),
            laced_block(2, 0, 3, &[b"abc", b"de", b"f"]),
            laced_block(2, 60, 1, &[b"x", b"yz"]),
        ],
    ));
    body.extend(cluster_open(900));
    body.extend(simple_block(1, 0, true, b"back"));
    body.extend(tags(&[("AWS_KINESISVIDEO_END_OF_FRAGMENT", "")]));
    body.extend(cluster_open(2000));
    body.extend(second_of_media(2, true).concat());
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_chunking_gives_the_same_events(sizes in prop::collection::vec(1usize..64, 1..20)) {
        let body = varied_stream();
        prop_assert_eq!(read_chunked(&body, &sizes), read(&body));
    }

    #[test]
    fn damaged_streams_never_panic_and_chunking_still_does_not_matter(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        sizes in prop::collection::vec(1usize..32, 1..8),
    ) {
        let mut body = varied_stream();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        prop_assert_eq!(read_chunked(&body, &sizes), read(&body));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut body = head(&[video_track(1)]);
        body.extend(cluster_open(0));
        body.extend(&bytes);
        let _ = read(&body);
        let _ = read(&bytes);
    }
}
