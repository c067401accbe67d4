//! HLS playlist text: the master playlist that names one media playlist,
//! and the media playlist of fMP4 segments as Kinesis Video serves it
//! (version 7, one `EXT-X-MAP` init segment, one URI per fragment).

use std::fmt::Write as _;

/// One media segment of a media playlist: one stored fragment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// The URI the player fetches the segment from, as written.
    pub uri: String,
    /// The segment's duration in seconds (`EXTINF`).
    pub duration_secs: f64,
    /// The wall-clock time of the segment's first frame, in milliseconds
    /// since the Unix epoch (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time_ms: Option<i64>,
    /// Whether an `EXT-X-DISCONTINUITY` precedes the segment.
    pub discontinuity: bool,
}

/// A media playlist: an init segment and the media segments that follow it.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaPlaylist {
    /// The URI of the init segment (`EXT-X-MAP`).
    pub init_uri: String,
    /// The media sequence number of the first segment.
    pub media_sequence: u64,
    pub segments: Vec<Segment>,
    /// Whether the playlist is complete (`EXT-X-ENDLIST`), as for an
    /// on-demand session; a live playlist leaves it out so players reload.
    pub ended: bool,
}

/// The master playlist: one variant stream, the media playlist at
/// `media_uri`. `codecs` is an RFC 6381 list such as
/// `avc1.64001f,mp4a.40.2` (see `codecs_string`), `resolution` is the
/// video's width and height, and `bandwidth` the peak bit rate in bits per
/// second, which RFC 8216 requires on every variant.
pub fn master_playlist(
    media_uri: &str,
    codecs: &str,
    resolution: Option<(u32, u32)>,
    bandwidth: u64,
) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    // Writing into a String cannot fail, so the results are ignored.
    let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}");
    if !codecs.is_empty() {
        let _ = write!(out, ",CODECS=\"{}\"", quoted(codecs));
    }
    if let Some((width, height)) = resolution {
        let _ = write!(out, ",RESOLUTION={width}x{height}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", line(media_uri));
    out
}

/// The media playlist's text.
pub fn media_playlist(p: &MediaPlaylist) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(
        out,
        "#EXT-X-TARGETDURATION:{}",
        target_duration(&p.segments)
    );
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence);
    if p.ended {
        let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:VOD");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", quoted(&p.init_uri));
    for segment in &p.segments {
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(ms) = segment.program_date_time_ms {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601_ms(ms));
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", duration(segment.duration_secs));
        let _ = writeln!(out, "{}", line(&segment.uri));
    }
    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// A segment duration fit to print: negative, NaN or infinite values,
/// which only a broken caller gives, become zero rather than text that
/// players reject.
fn duration(secs: f64) -> f64 {
    if secs.is_finite() && secs > 0.0 {
        secs
    } else {
        0.0
    }
}

/// `EXT-X-TARGETDURATION`: RFC 8216 requires every `EXTINF`, rounded to
/// the nearest integer, to be at most the target; taking the ceiling of
/// the longest printed duration satisfies that, and the target is at least
/// one second because some players divide by it.
fn target_duration(segments: &[Segment]) -> u64 {
    let longest = segments
        .iter()
        .map(|s| (duration(s.duration_secs) * 1000.0).round() / 1000.0)
        .fold(0.0_f64, f64::max);
    // The float-to-integer cast saturates, so an absurd duration cannot
    // wrap around.
    (longest.ceil() as u64).max(1)
}

/// A URI on a line of its own: a line break inside it would end the line
/// early and make the rest a bogus tag, so line breaks are percent-encoded.
fn line(uri: &str) -> String {
    uri.replace('\r', "%0D").replace('\n', "%0A")
}

/// A quoted-string attribute value: RFC 8216 forbids double quotes and
/// line breaks inside, so they are percent-encoded.
fn quoted(value: &str) -> String {
    line(value).replace('"', "%22")
}

/// Milliseconds since the Unix epoch as an ISO 8601 UTC date-time with
/// milliseconds, the form `EXT-X-PROGRAM-DATE-TIME` takes
/// (`2024-05-01T12:00:00.000Z`).
pub(crate) fn iso8601_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, millis) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days`: exact for every `i64` millisecond
/// timestamp, without a date library.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
