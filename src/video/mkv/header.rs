//! The stream's header: the EBML header (checked, kept as sent), Info (its
//! `TimecodeScale`, rebuilt without what would be wrong for a fragment) and
//! Tracks (parsed into [`TrackInfo`], kept as sent).

use bytes::Bytes;

use super::super::types::{TrackInfo, TrackKind};
use super::ebml::{self, Malformed, children, id};
use super::{KvsError, Violation};

/// The Matroska versions read here: 4 is the current one, and nothing used
/// by Kinesis Video depends on a later one.
const DOC_TYPE_READ_VERSION_MAX: u64 = 4;
/// `TimecodeScale` when Info does not say: one millisecond.
pub(super) const TIMECODE_SCALE_DEFAULT: u64 = 1_000_000;

/// Checks an EBML header's payload: a Matroska (or WebM) document whose
/// IDs and sizes fit what [`ebml`] reads.
pub(super) fn check_ebml_header(payload: &[u8]) -> Result<(), Violation> {
    let mut doc_type = None;
    for child in children(payload) {
        let child = child?;
        match child.id {
            id::EBML_READ_VERSION if ebml::uint(child.data)? != 1 => {
                return Err(Violation::invalid("EBMLReadVersion is not 1"));
            }
            id::EBML_MAX_ID_LENGTH if ebml::uint(child.data)? > 4 => {
                return Err(Violation::invalid("EBMLMaxIDLength is above 4"));
            }
            id::EBML_MAX_SIZE_LENGTH if ebml::uint(child.data)? > 8 => {
                return Err(Violation::invalid("EBMLMaxSizeLength is above 8"));
            }
            id::DOC_TYPE_READ_VERSION if ebml::uint(child.data)? > DOC_TYPE_READ_VERSION_MAX => {
                return Err(Violation::invalid("DocTypeReadVersion is above 4"));
            }
            id::DOC_TYPE => doc_type = Some(ebml::string(child.data)),
            _ => {}
        }
    }
    match doc_type.as_deref() {
        Some("matroska") | Some("webm") => Ok(()),
        Some(other) => Err(Violation::invalid(format!(
            "DocType {other:?} is not matroska"
        ))),
        None => Err(Violation::invalid("the EBML header has no DocType")),
    }
}

/// What Info says, and the Info element to put in the stream's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Info {
    pub timecode_scale_ns: u64,
    /// The Info element without `Duration` (a whole file's, wrong for a
    /// fragment), Void (padding) and CRC-32 (which the removals would break).
    pub element: Vec<u8>,
}

/// Reads Info's payload.
pub(super) fn parse_info(payload: &[u8]) -> Result<Info, Violation> {
    let mut timecode_scale_ns = TIMECODE_SCALE_DEFAULT;
    let mut kept = Vec::with_capacity(payload.len());
    for child in children(payload) {
        let child = child?;
        match child.id {
            id::DURATION | id::VOID | id::CRC32 => continue,
            id::TIMECODE_SCALE => timecode_scale_ns = ebml::uint(child.data)?,
            _ => {}
        }
        ebml::put_element(&mut kept, child.id, child.data);
    }
    if timecode_scale_ns == 0 {
        return Err(Violation::invalid("TimecodeScale is 0"));
    }
    let mut element = Vec::with_capacity(kept.len() + 12);
    ebml::put_element(&mut element, id::INFO, &kept);
    Ok(Info {
        timecode_scale_ns,
        element,
    })
}

/// The Info element used when a stream sends none: the default scale.
pub(super) fn default_info() -> Info {
    let mut kept = Vec::new();
    ebml::put_uint(&mut kept, id::TIMECODE_SCALE, TIMECODE_SCALE_DEFAULT);
    let mut element = Vec::new();
    ebml::put_element(&mut element, id::INFO, &kept);
    Info {
        timecode_scale_ns: TIMECODE_SCALE_DEFAULT,
        element,
    }
}

/// Reads Tracks' payload. More than `tracks_max` entries is 4012; no entry,
/// a duplicate or zero track number, or compressed or encrypted content
/// (whose blocks would not hold the frames as they are) is 4006.
pub(super) fn parse_tracks(payload: &[u8], tracks_max: usize) -> Result<Vec<TrackInfo>, Violation> {
    let mut tracks: Vec<TrackInfo> = Vec::new();
    for child in children(payload) {
        let child = child?;
        if child.id != id::TRACK_ENTRY {
            continue;
        }
        let track = parse_track_entry(child.data)?;
        if tracks.iter().any(|t| t.number == track.number) {
            return Err(Violation::invalid(format!(
                "track number {} is declared twice",
                track.number
            )));
        }
        tracks.push(track);
        if tracks.len() > tracks_max {
            return Err(Violation::new(
                KvsError::MoreThanAllowedTracksFound,
                format!("more than {tracks_max} tracks are declared"),
            ));
        }
    }
    if tracks.is_empty() {
        return Err(Violation::invalid("Tracks declares no track"));
    }
    Ok(tracks)
}

/// Reads one TrackEntry.
fn parse_track_entry(payload: &[u8]) -> Result<TrackInfo, Violation> {
    let mut track = TrackInfo {
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
    for child in children(payload) {
        let child = child?;
        match child.id {
            id::TRACK_NUMBER => track.number = ebml::uint(child.data)?,
            id::TRACK_UID => track.uid = ebml::uint(child.data)?,
            id::TRACK_TYPE => {
                track.kind = match ebml::uint(child.data)? {
                    1 => TrackKind::Video,
                    2 => TrackKind::Audio,
                    _ => TrackKind::Other,
                }
            }
            id::CODEC_ID => track.codec_id = ebml::string(child.data),
            id::CODEC_PRIVATE => track.codec_private = child.data.to_vec(),
            id::NAME => track.name = Some(ebml::string(child.data)),
            id::DEFAULT_DURATION => {
                track.default_duration_ns = Some(ebml::uint(child.data)?).filter(|&d| d > 0)
            }
            id::VIDEO => read_video(child.data, &mut track)?,
            id::AUDIO => read_audio(child.data, &mut track)?,
            id::CONTENT_ENCODINGS => {
                return Err(Violation::invalid(
                    "compressed or encrypted track content is not supported",
                ));
            }
            _ => {}
        }
    }
    if track.number == 0 {
        return Err(Violation::invalid("a TrackEntry without a TrackNumber"));
    }
    Ok(track)
}

/// Reads a track's Video master: its pixel size.
fn read_video(payload: &[u8], track: &mut TrackInfo) -> Result<(), Malformed> {
    for child in children(payload) {
        let child = child?;
        let dimension = || ebml::uint(child.data).map(|v| u32::try_from(v).ok());
        match child.id {
            id::PIXEL_WIDTH => track.width = dimension()?,
            id::PIXEL_HEIGHT => track.height = dimension()?,
            _ => {}
        }
    }
    Ok(())
}

/// Reads a track's Audio master. Matroska's defaults (8000 Hz, one
/// channel) apply to what it leaves out, as they would for any reader.
fn read_audio(payload: &[u8], track: &mut TrackInfo) -> Result<(), Malformed> {
    track.sample_rate = Some(8000.0);
    track.channels = Some(1);
    for child in children(payload) {
        let child = child?;
        match child.id {
            id::SAMPLING_FREQUENCY => track.sample_rate = Some(ebml::float(child.data)?),
            id::CHANNELS => track.channels = u32::try_from(ebml::uint(child.data)?).ok(),
            _ => {}
        }
    }
    Ok(())
}

/// The header to put before any of the stream's clusters: the EBML header
/// as sent, a Segment of unknown size (so that clusters can simply follow),
/// Info and Tracks.
pub(super) fn header_bytes(ebml_header: &[u8], info: &[u8], tracks: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(ebml_header.len() + 12 + info.len() + tracks.len());
    out.extend_from_slice(ebml_header);
    ebml::put_id(&mut out, id::SEGMENT);
    out.extend_from_slice(&ebml::UNKNOWN_SIZE);
    out.extend_from_slice(info);
    out.extend_from_slice(tracks);
    Bytes::from(out)
}
