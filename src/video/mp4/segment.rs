//! fMP4 media segments: one `moof` + `mdat` per fragment, with one track
//! fragment per track that has frames in it.

use mp4_atom::{Encode, Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunEntry};

use super::RemuxError;
use super::codec::{Media, media_tracks};
use super::timing::{Sample, Timeline, frames_by_track, samples};
use super::types::{Frame, TrackInfo};

/// `sample_flags` of a sample decoding can start at: it depends on no
/// other sample (ISO/IEC 14496-12, 8.8.3.1).
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_flags` of any other sample: it depends on others and is not a
/// sync sample.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// Size of an `mdat` header with a 32-bit size, and with a 64-bit one.
const MDAT_HEADER: u64 = 8;
const LARGE_MDAT_HEADER: u64 = 16;

/// The media segment of one fragment: `moof` (sequence number `seq`, one
/// `traf` per track with frames) and `mdat` with the frames' bytes.
/// `frames` are the fragment's frames of all tracks, interleaved in decode
/// order as MKV stores them; frames of tracks not in `tracks`, or of kind
/// `Other`, are left out. The decode times come from the frames' own
/// timestamps and `timeline` alone, so the segment continues the one
/// before it however and whenever that was made.
pub fn media_segment(
    seq: u32,
    tracks: &[TrackInfo],
    frames: &[Frame],
    timeline: &Timeline,
) -> Result<Vec<u8>, RemuxError> {
    let medias = media_tracks(tracks)?;
    let mut runs = Vec::new();
    for (media, track_frames) in medias.iter().zip(frames_by_track(&medias, frames)) {
        let samples = samples(media, &track_frames, timeline)?;
        if !samples.is_empty() {
            runs.push((media, samples));
        }
    }
    if runs.is_empty() {
        return Err(RemuxError::NoFrames);
    }
    let payload: u64 = runs
        .iter()
        .flat_map(|(_, samples)| samples)
        .map(|s| u64::from(s.size))
        .sum();
    let header = mdat_header(payload);
    // The `trun` data offsets count from the start of the `moof`, whose
    // size does not depend on their values: encode once to learn it.
    let moof_size = encoded(&moof(seq, &runs, 0)?)?.len();
    let first_data = u64::try_from(moof_size).map_err(|_| RemuxError::TooLarge)?
        + u64::try_from(header.len()).map_err(|_| RemuxError::TooLarge)?;
    let mut out = encoded(&moof(seq, &runs, first_data)?)?;
    out.reserve(header.len() + usize::try_from(payload).map_err(|_| RemuxError::TooLarge)?);
    out.extend_from_slice(&header);
    for sample in runs.iter().flat_map(|(_, samples)| samples) {
        out.extend_from_slice(&sample.data);
    }
    Ok(out)
}

/// The `moof` of the runs, their data laid out one track after another
/// starting `first_data` bytes after the `moof`'s first byte.
fn moof(seq: u32, runs: &[(&Media, Vec<Sample>)], first_data: u64) -> Result<Moof, RemuxError> {
    let mut offset = first_data;
    let mut traf = Vec::with_capacity(runs.len());
    for (media, samples) in runs {
        let data_offset = i32::try_from(offset).map_err(|_| RemuxError::TooLarge)?;
        offset += samples.iter().map(|s| u64::from(s.size)).sum::<u64>();
        let entries = samples
            .iter()
            .map(|s| TrunEntry {
                duration: Some(s.duration),
                size: Some(s.size),
                flags: Some(if s.sync { SYNC_SAMPLE } else { NON_SYNC_SAMPLE }),
                cts: Some(i64::from(s.offset)),
            })
            .collect::<Vec<_>>();
        traf.push(Traf {
            tfhd: Tfhd {
                track_id: media.id,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            tfdt: samples.first().map(|s| Tfdt {
                base_media_decode_time: s.decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(data_offset),
                samples: entries.into(),
            }],
            ..Traf::default()
        });
    }
    Ok(Moof {
        mfhd: Mfhd {
            sequence_number: seq,
        },
        traf,
    })
}

fn encoded<T: Encode>(atom: &T) -> Result<Vec<u8>, RemuxError> {
    let mut out = Vec::new();
    atom.encode(&mut out)?;
    Ok(out)
}

/// The header of an `mdat` holding `payload` bytes: 32-bit size where it
/// fits, else size 1 and a 64-bit `largesize` (ISO/IEC 14496-12, 4.2).
pub(super) fn mdat_header(payload: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(16);
    match u32::try_from(payload.saturating_add(MDAT_HEADER)) {
        Ok(size) => {
            header.extend_from_slice(&size.to_be_bytes());
            header.extend_from_slice(b"mdat");
        }
        Err(_) => {
            header.extend_from_slice(&1u32.to_be_bytes());
            header.extend_from_slice(b"mdat");
            header.extend_from_slice(&payload.saturating_add(LARGE_MDAT_HEADER).to_be_bytes());
        }
    }
    header
}
