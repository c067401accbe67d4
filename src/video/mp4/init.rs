//! The fMP4 init segment (`ftyp` + `moov` with `mvex`), and the `moov`
//! parts it shares with progressive clips: the movie header and one
//! `trak` per track.

use mp4_atom::{
    Dinf, Dref, DrefEntry, Edts, Encode, Ftyp, Hdlr, Mdhd, Mdia, Minf, Moov, Mvex, Mvhd, Smhd,
    Stbl, Stco, Stsd, Tkhd, Trak, Trex, Url, Vmhd,
};

use super::RemuxError;
use super::codec::{Media, media_tracks, sample_entry};
use super::types::TrackInfo;

/// The movie timescale of `mvhd`, `tkhd` and edit lists: milliseconds,
/// as precise as those whole-track durations need to be.
pub(super) const MOVIE_TIMESCALE: u32 = 1000;

/// The init segment of the video and audio tracks among `tracks`: `ftyp`
/// and a `moov` with one `trak` per track and the `mvex` that announces
/// movie fragments. Tracks of kind `Other` are left out; MP4 track IDs are
/// the tracks' positions among those kept, from 1, as in media segments.
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Vec<u8>, RemuxError> {
    let medias = media_tracks(tracks)?;
    let trex = medias
        .iter()
        .map(|media| Trex {
            track_id: media.id,
            default_sample_description_index: 1,
            ..Trex::default()
        })
        .collect();
    let moov = Moov {
        mvhd: mvhd(medias.len(), 0)?,
        mvex: Some(Mvex { mehd: None, trex }),
        trak: medias
            .iter()
            .map(|media| trak(media, empty_tables(media), TrackTimes::default()))
            .collect(),
        ..Moov::default()
    };
    let mut out = Vec::new();
    // CMAF's brand tells players the fragments follow its rules: one track
    // run per track fragment, decode times in `tfdt`, `moof`-relative
    // offsets.
    ftyp(b"iso6", &[b"iso6", b"cmfc", b"mp41"]).encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(out)
}

pub(super) fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Ftyp {
    Ftyp {
        major_brand: major.into(),
        minor_version: 0,
        compatible_brands: compatible.iter().map(|&b| b.into()).collect(),
    }
}

/// The movie header of `tracks` tracks lasting `duration` in
/// [`MOVIE_TIMESCALE`] units.
pub(super) fn mvhd(tracks: usize, duration: u64) -> Result<Mvhd, RemuxError> {
    let next_track_id = u32::try_from(tracks + 1).map_err(|_| RemuxError::TooLarge)?;
    Ok(Mvhd {
        timescale: MOVIE_TIMESCALE,
        duration,
        rate: 1.into(),
        volume: 1.into(),
        next_track_id,
        ..Mvhd::default()
    })
}

/// A track's lengths: its media duration in its own timescale, its
/// duration in the movie timescale, and its edit list if it needs one.
/// All zero and none in an init segment, whose samples come later.
#[derive(Clone, Debug, Default)]
pub(super) struct TrackTimes {
    pub media_duration: u64,
    pub movie_duration: u64,
    pub edits: Option<Edts>,
}

/// The sample tables of a track whose samples all live in fragments: only
/// the sample entry, with the mandatory tables empty.
fn empty_tables(media: &Media) -> Stbl {
    Stbl {
        stsd: Stsd {
            codecs: vec![sample_entry(media)],
        },
        stco: Some(Stco::default()),
        ..Stbl::default()
    }
}

/// A track's `trak`, with the given sample tables and lengths.
pub(super) fn trak(media: &Media, stbl: Stbl, times: TrackTimes) -> Trak {
    let video = media.is_video();
    let (handler, name) = if video {
        (b"vide", "VideoHandler")
    } else {
        (b"soun", "SoundHandler")
    };
    let pixels = |v: Option<u32>| v.map_or(0, |v| u16::try_from(v).unwrap_or(u16::MAX));
    Trak {
        tkhd: Tkhd {
            track_id: media.id,
            duration: times.movie_duration,
            enabled: true,
            in_movie: true,
            // Audio plays at full volume; video has none.
            volume: if video { 0.into() } else { 1.into() },
            width: pixels(media.info.width).into(),
            height: pixels(media.info.height).into(),
            ..Tkhd::default()
        },
        edts: times.edits,
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: media.timescale,
                duration: times.media_duration,
                language: "und".into(),
                ..Mdhd::default()
            },
            hdlr: Hdlr {
                handler: handler.into(),
                name: name.into(),
            },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf {
                    dref: Dref {
                        // An empty location means "in this file".
                        entries: vec![DrefEntry::Url(Url::default())],
                    },
                },
                stbl,
                ..Minf::default()
            },
        },
        ..Trak::default()
    }
}
