//! Progressive MP4 clips: `ftyp`, a `moov` with complete sample tables,
//! then one `mdat` with every frame, for GetClip.

use mp4_atom::{
    Co64, Ctts, CttsEntry, Edts, Elst, ElstEntry, Encode, Moov, Stbl, Stco, Stsc, StscEntry, Stsd,
    Stss, Stsz, StszSamples, Stts, SttsEntry,
};

use super::RemuxError;
use super::codec::{Media, media_tracks, sample_entry};
use super::init::{MOVIE_TIMESCALE, TrackTimes, ftyp, mvhd, trak};
use super::segment::mdat_header;
use super::timing::{Sample, Timeline, frames_by_track, samples, track_index};
use super::types::{Frame, TrackInfo};

/// A run of consecutive samples of one track in the `mdat`: where it
/// starts, counted from the first byte of the `mdat` payload, and how many
/// samples it holds.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    offset: u64,
    samples: u32,
}

/// One progressive MP4 file of `frames` (all tracks interleaved in decode
/// order, as MKV stores them): `ftyp`, `moov` with full sample tables, and
/// the frames in one `mdat`, in the order given, after the `moov` so that
/// players can start before the whole file has arrived. Each track's
/// presentation starts where its first frame lies relative to the clip's
/// earliest frame.
pub fn clip(tracks: &[TrackInfo], frames: &[Frame]) -> Result<Vec<u8>, RemuxError> {
    let medias = media_tracks(tracks)?;
    let timeline = Timeline::from_frames(tracks, frames);
    let mut timed = Vec::with_capacity(medias.len());
    for (media, track_frames) in medias.iter().zip(frames_by_track(&medias, frames)) {
        timed.push(samples(media, &track_frames, &timeline)?);
    }
    if timed.iter().all(Vec::is_empty) {
        return Err(RemuxError::NoFrames);
    }
    let (chunks, payload) = chunk_layout(&medias, frames);
    let mut head = Vec::new();
    ftyp(b"isom", &[b"isom", b"iso6", b"mp41"]).encode(&mut head)?;
    let header = mdat_header(payload);
    let before_moov = len(head.len() + header.len())?;
    // Chunk offsets are absolute, so they depend on the `moov` size, which
    // does not depend on their values: encode once with zero offsets to
    // learn it. 64-bit offsets are used only when 32-bit ones fall short.
    let mut wide = false;
    let mut probe = encoded(&moov(&medias, &timed, &chunks, 0, wide)?)?;
    if before_moov + len(probe.len())? + payload > u64::from(u32::MAX) {
        wide = true;
        probe = encoded(&moov(&medias, &timed, &chunks, 0, wide)?)?;
    }
    let base = before_moov + len(probe.len())?;
    moov(&medias, &timed, &chunks, base, wide)?.encode(&mut head)?;
    let total = usize::try_from(len(head.len())? + len(header.len())? + payload)
        .map_err(|_| RemuxError::TooLarge)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&head);
    out.extend_from_slice(&header);
    for frame in frames.iter().filter(|f| track_index(&medias, f).is_some()) {
        out.extend_from_slice(&frame.data);
    }
    Ok(out)
}

fn len(n: usize) -> Result<u64, RemuxError> {
    u64::try_from(n).map_err(|_| RemuxError::TooLarge)
}

fn encoded<T: Encode>(atom: &T) -> Result<Vec<u8>, RemuxError> {
    let mut out = Vec::new();
    atom.encode(&mut out)?;
    Ok(out)
}

/// The chunks of each track (indexed like `medias`) when the frames are
/// stored in the order given: each run of consecutive frames of one track
/// is a chunk. Also the payload's total size.
fn chunk_layout(medias: &[Media], frames: &[Frame]) -> (Vec<Vec<Chunk>>, u64) {
    let mut chunks: Vec<Vec<Chunk>> = vec![Vec::new(); medias.len()];
    let mut offset = 0u64;
    let mut previous = None;
    for frame in frames {
        let Some(index) = track_index(medias, frame) else {
            continue;
        };
        let Some(track_chunks) = chunks.get_mut(index) else {
            continue;
        };
        match track_chunks.last_mut() {
            Some(chunk) if previous == Some(index) => {
                chunk.samples = chunk.samples.saturating_add(1)
            }
            _ => track_chunks.push(Chunk { offset, samples: 1 }),
        }
        previous = Some(index);
        offset += frame.data.len() as u64;
    }
    (chunks, offset)
}

/// The `moov`: one `trak` per track with its complete sample tables, chunk
/// offsets counted from `base` (the `mdat` payload's position in the file)
/// and written with 64 bits when `wide`.
fn moov(
    medias: &[Media],
    timed: &[Vec<Sample>],
    chunks: &[Vec<Chunk>],
    base: u64,
    wide: bool,
) -> Result<Moov, RemuxError> {
    let starts: Vec<Option<u64>> = medias
        .iter()
        .zip(timed)
        .map(|(media, samples)| first_presentation(samples).map(|t| movie_ticks(t, media)))
        .collect();
    let clip_start = starts.iter().flatten().min().copied().unwrap_or(0);
    let mut traks = Vec::with_capacity(medias.len());
    let mut duration = 0;
    for (((media, samples), chunks), start) in medias.iter().zip(timed).zip(chunks).zip(&starts) {
        let delay = start.map_or(0, |s| s.saturating_sub(clip_start));
        let times = track_times(media, samples, delay);
        duration = duration.max(times.movie_duration);
        traks.push(trak(
            media,
            tables(media, samples, chunks, base, wide)?,
            times,
        ));
    }
    Ok(Moov {
        mvhd: mvhd(medias.len(), duration)?,
        trak: traks,
        ..Moov::default()
    })
}

/// The earliest presentation time among samples, in their timescale.
fn first_presentation(samples: &[Sample]) -> Option<i128> {
    samples
        .iter()
        .map(|s| i128::from(s.decode_time) + i128::from(s.offset))
        .min()
}

/// A time in a track's timescale in [`MOVIE_TIMESCALE`] units, rounded;
/// negative times count as zero.
fn movie_ticks(t: i128, media: &Media) -> u64 {
    let scale = i128::from(media.timescale.max(1));
    let ticks = (t * i128::from(MOVIE_TIMESCALE) + scale / 2).div_euclid(scale);
    u64::try_from(ticks).unwrap_or(0)
}

/// A track's durations and edit list. Sample tables start at decode time
/// zero, so the edit list says where presentation starts in the media
/// (past the reorder shift of a B-frame track) and, with an empty edit,
/// how long after the clip's start the track begins (`delay`, movie
/// ticks).
fn track_times(media: &Media, samples: &[Sample], delay: u64) -> TrackTimes {
    let media_duration = samples.iter().map(|s| u64::from(s.duration)).sum();
    let (Some(first), Some(start)) = (samples.first(), first_presentation(samples)) else {
        return TrackTimes::default();
    };
    let end = samples
        .iter()
        .map(|s| i128::from(s.decode_time) + i128::from(s.offset) + i128::from(s.duration))
        .max()
        .unwrap_or(start);
    let span = movie_ticks(end - start, media);
    let media_time = u64::try_from(start - i128::from(first.decode_time)).unwrap_or(0);
    let mut entries = Vec::new();
    if delay > 0 {
        entries.push(ElstEntry {
            segment_duration: delay,
            media_time: None,
            media_rate: 1.into(),
        });
    }
    if delay > 0 || media_time > 0 {
        entries.push(ElstEntry {
            segment_duration: span,
            media_time: Some(media_time),
            media_rate: 1.into(),
        });
    }
    TrackTimes {
        media_duration,
        movie_duration: delay.saturating_add(span),
        edits: (!entries.is_empty()).then_some(Edts {
            elst: Some(Elst { entries }),
        }),
    }
}

/// A track's sample tables: sample entry, decode durations (`stts`),
/// composition offsets (`ctts`, when any is not zero), sync samples
/// (`stss`, for video with non-sync samples), sizes, and chunks.
fn tables(
    media: &Media,
    samples: &[Sample],
    chunks: &[Chunk],
    base: u64,
    wide: bool,
) -> Result<Stbl, RemuxError> {
    let count = |n: usize| u32::try_from(n).map_err(|_| RemuxError::TooLarge);
    let stts = runs(samples.iter().map(|s| s.duration))
        .into_iter()
        .map(|(n, sample_delta)| {
            count(n).map(|sample_count| SttsEntry {
                sample_count,
                sample_delta,
            })
        })
        .collect::<Result<_, _>>()?;
    let ctts = if samples.iter().any(|s| s.offset != 0) {
        let entries = runs(samples.iter().map(|s| s.offset))
            .into_iter()
            .map(|(n, offset)| {
                count(n).map(|sample_count| CttsEntry {
                    sample_count,
                    sample_offset: i64::from(offset),
                })
            })
            .collect::<Result<_, _>>()?;
        Some(Ctts { entries })
    } else {
        None
    };
    let stss = if media.is_video() && samples.iter().any(|s| !s.sync) {
        let mut entries = Vec::new();
        for (i, _) in samples.iter().enumerate().filter(|(_, s)| s.sync) {
            entries.push(count(i + 1)?);
        }
        Some(Stss { entries })
    } else {
        None
    };
    let (stsc, stco, co64) = chunk_tables(chunks, base, wide)?;
    Ok(Stbl {
        stsd: Stsd {
            codecs: vec![sample_entry(media)],
        },
        stts: Stts { entries: stts },
        ctts,
        stss,
        stsc,
        stsz: Stsz {
            samples: StszSamples::Different {
                sizes: samples.iter().map(|s| s.size).collect(),
            },
        },
        stco,
        co64,
        ..Stbl::default()
    })
}

/// `stsc` (samples per chunk, run-length coded) and the chunk offsets, as
/// `stco` or, when `wide`, `co64`.
fn chunk_tables(
    chunks: &[Chunk],
    base: u64,
    wide: bool,
) -> Result<(Stsc, Option<Stco>, Option<Co64>), RemuxError> {
    let mut stsc = Stsc::default();
    let mut first_chunk = 1u32;
    for (n, samples_per_chunk) in runs(chunks.iter().map(|c| c.samples)) {
        stsc.entries.push(StscEntry {
            first_chunk,
            samples_per_chunk,
            sample_description_index: 1,
        });
        let n = u32::try_from(n).map_err(|_| RemuxError::TooLarge)?;
        first_chunk = first_chunk.checked_add(n).ok_or(RemuxError::TooLarge)?;
    }
    let offsets = chunks.iter().map(|c| base + c.offset);
    if wide {
        let entries = offsets.collect();
        return Ok((stsc, None, Some(Co64 { entries })));
    }
    let entries = offsets
        .map(|o| u32::try_from(o).map_err(|_| RemuxError::TooLarge))
        .collect::<Result<_, _>>()?;
    Ok((stsc, Some(Stco { entries }), None))
}

/// Run-length coding: each maximal run of equal values as (length, value).
fn runs<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(usize, T)> {
    let mut out: Vec<(usize, T)> = Vec::new();
    for value in values {
        match out.last_mut() {
            Some((n, last)) if *last == value => *n += 1,
            _ => out.push((1, value)),
        }
    }
    out
}
