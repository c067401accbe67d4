//! The playlists' text, compared whole, and the date-time format.

use super::super::hls::iso8601_ms;
use super::super::{MediaPlaylist, Segment, master_playlist, media_playlist};

fn segment(uri: &str, duration_secs: f64) -> Segment {
    Segment {
        uri: uri.into(),
        duration_secs,
        program_date_time_ms: None,
        discontinuity: false,
    }
}

#[test]
fn on_demand_media_playlist() {
    let playlist = MediaPlaylist {
        init_uri: "getMP4InitFragment.mp4?SessionToken=abc".into(),
        media_sequence: 5,
        segments: vec![
            Segment {
                program_date_time_ms: Some(1_714_564_800_123),
                ..segment(
                    "getMP4MediaFragment.mp4?FragmentNumber=1&SessionToken=abc",
                    2.663,
                )
            },
            Segment {
                program_date_time_ms: Some(1_714_564_810_000),
                discontinuity: true,
                ..segment(
                    "getMP4MediaFragment.mp4?FragmentNumber=2&SessionToken=abc",
                    1.2,
                )
            },
        ],
        ended: true,
    };
    let expected = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:5
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken=abc\"
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z
#EXTINF:2.663,
getMP4MediaFragment.mp4?FragmentNumber=1&SessionToken=abc
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:10.000Z
#EXTINF:1.200,
getMP4MediaFragment.mp4?FragmentNumber=2&SessionToken=abc
#EXT-X-ENDLIST
";
    assert_eq!(media_playlist(&playlist), expected);
}

#[test]
fn live_media_playlist_stays_open() {
    let playlist = MediaPlaylist {
        init_uri: "init.mp4".into(),
        media_sequence: 0,
        segments: vec![segment("a.m4s", 2.0), segment("b.m4s", 2.0004)],
        ended: false,
    };
    let text = media_playlist(&playlist);
    // 2.0004 prints as 2.000, so the target is 2, not 3.
    assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
    assert!(
        !text.contains("ENDLIST") && !text.contains("PLAYLIST-TYPE"),
        "{text}"
    );
}

#[test]
fn broken_durations_and_uris_cannot_break_the_playlist() {
    let playlist = MediaPlaylist {
        init_uri: "in\"it.mp4".into(),
        media_sequence: 0,
        segments: vec![
            segment("a.m4s\n#EXT-X-ENDLIST", f64::NAN),
            segment("b", -3.0),
        ],
        ended: false,
    };
    let text = media_playlist(&playlist);
    assert!(text.contains("#EXT-X-MAP:URI=\"in%22it.mp4\"\n"), "{text}");
    assert!(text.contains("a.m4s%0A#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("\n#EXT-X-ENDLIST"), "{text}");
    assert_eq!(text.matches("#EXTINF:0.000,").count(), 2, "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:1\n"), "{text}");
}

#[test]
fn master_playlist_names_one_variant() {
    let text = master_playlist(
        "getHLSMediaPlaylist.m3u8?SessionToken=abc",
        "avc1.64001f,mp4a.40.2",
        Some((1280, 720)),
        2_500_000,
    );
    let expected = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2500000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720
getHLSMediaPlaylist.m3u8?SessionToken=abc
";
    assert_eq!(text, expected);
    let bare = master_playlist("media.m3u8", "", None, 1);
    assert!(
        bare.contains("#EXT-X-STREAM-INF:BANDWIDTH=1\nmedia.m3u8\n"),
        "{bare}"
    );
}

#[test]
fn program_date_times_are_utc_with_milliseconds() {
    assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso8601_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    // The extremes format without overflowing.
    assert!(iso8601_ms(i64::MAX).ends_with('Z'));
    assert!(iso8601_ms(i64::MIN).ends_with('Z'));
}
