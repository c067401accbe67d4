//! The boxes the remuxer writes, decoded again and checked field by field
//! on small synthetic streams.

use mp4_atom::{Atom, Codec, Decode, Ftyp, Moof, Moov, Stbl, StszSamples, Traf};

use super::super::types::{Frame, TrackKind};
use super::super::{Timeline, clip, init_segment, media_segment};
use super::unit::{ASC, AVCC, aac, avc, frame, track};

const SYNC: u32 = 0x0200_0000;
const NON_SYNC: u32 = 0x0101_0000;

/// One GOP of track 1 in decode order, I P B B at 25 frames per second:
/// presentation times `start`, +120, +40 and +80 ms.
fn gop(start: i64) -> Vec<Frame> {
    vec![
        frame(1, start, true, b"I-frame"),
        frame(1, start + 120, false, b"P"),
        frame(1, start + 40, false, b"B1"),
        frame(1, start + 80, false, b"B-2"),
    ]
}

fn traf(moof: &Moof, track_id: u32) -> &Traf {
    moof.traf
        .iter()
        .find(|t| t.tfhd.track_id == track_id)
        .unwrap()
}

/// The bytes each sample of a track fragment points at in its segment.
fn fragment_samples(segment: &[u8], traf: &Traf) -> Vec<Vec<u8>> {
    let mut at = traf.trun[0].data_offset.unwrap() as usize;
    let mut out = Vec::new();
    for entry in traf.trun[0].samples.iter() {
        let size = entry.size.unwrap() as usize;
        out.push(segment[at..at + size].to_vec());
        at += size;
    }
    out
}

#[test]
fn init_segment_describes_each_media_track() {
    let text = track(2, TrackKind::Other, "S_TEXT/UTF8", &[]);
    let init = init_segment(&[avc(1), text, aac(3)]).unwrap();
    let mut buf = init.as_slice();
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty());
    assert_eq!(moov.trak.len(), 2, "the Other track is left out");
    let ids: Vec<u32> = moov.trak.iter().map(|t| t.tkhd.track_id).collect();
    assert_eq!(ids, [1, 2]);
    let trex: Vec<u32> = moov
        .mvex
        .as_ref()
        .unwrap()
        .trex
        .iter()
        .map(|t| t.track_id)
        .collect();
    assert_eq!(trex, [1, 2]);
    assert_eq!(moov.mvhd.next_track_id, 3);

    let video = &moov.trak[0].mdia;
    assert_eq!(video.mdhd.timescale, 90_000);
    let Codec::Avc1(avc1) = &video.minf.stbl.stsd.codecs[0] else {
        panic!("not avc1")
    };
    let mut avcc = Vec::new();
    avc1.avcc.encode_body(&mut avcc).unwrap();
    assert_eq!(avcc, AVCC, "the avcC is MKV's CodecPrivate");
    assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));

    let audio = &moov.trak[1].mdia;
    assert_eq!(audio.mdhd.timescale, 48_000);
    let Codec::Mp4a(mp4a) = &audio.minf.stbl.stsd.codecs[0] else {
        panic!("not mp4a")
    };
    let config = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
    assert_eq!(config.raw, ASC, "the esds holds the AudioSpecificConfig");
    assert_eq!(mp4a.audio.channel_count, 2);
}

/// B-frames get decode times in steps of one frame, moved earlier by the
/// reorder delay, and offsets that present each frame at its timestamp;
/// the next GOP's segment, made on its own, starts where this one ends.
#[test]
fn bframe_decode_times_are_rebuilt() {
    let tracks = [avc(1)];
    let timeline = Timeline::from_frames(&tracks, &gop(0));
    assert_eq!(timeline, Timeline::new(0, 40_000_000));
    let second = media_segment(2, &tracks, &gop(160), &timeline).unwrap();
    let first = media_segment(1, &tracks, &gop(0), &timeline).unwrap();
    let moof = Moof::decode(&mut first.as_slice()).unwrap();
    assert_eq!(moof.mfhd.sequence_number, 1);
    let traf = traf(&moof, 1);
    assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 0);
    let entries: Vec<_> = traf.trun[0].samples.iter().collect();
    let durations: Vec<u32> = entries.iter().map(|e| e.duration.unwrap()).collect();
    assert_eq!(durations, [3600; 4]);
    // Presentation = decode + offset = timestamp + the 40 ms delay.
    let offsets: Vec<i64> = entries.iter().map(|e| e.cts.unwrap()).collect();
    assert_eq!(offsets, [3600, 10800, 0, 0]);
    let flags: Vec<u32> = entries.iter().map(|e| e.flags.unwrap()).collect();
    assert_eq!(flags, [SYNC, NON_SYNC, NON_SYNC, NON_SYNC]);
    let data: Vec<&[u8]> = vec![b"I-frame", b"P", b"B1", b"B-2"];
    assert_eq!(fragment_samples(&first, traf), data);

    let next = Moof::decode(&mut second.as_slice()).unwrap();
    assert_eq!(next.mfhd.sequence_number, 2);
    assert_eq!(traf_start(&next), 4 * 3600);
}

fn traf_start(moof: &Moof) -> u64 {
    moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time
}

/// Video and audio frames of one fragment go into one segment, one track
/// fragment each, each track's bytes together in the `mdat`.
#[test]
fn audio_and_video_share_a_segment() {
    let tracks = [avc(1), aac(2)];
    let frames = [
        frame(1, 1000, true, b"key"),
        frame(2, 1000, true, b"aac0"),
        frame(2, 1021, true, b"aac1"),
        frame(1, 1040, false, b"delta"),
        frame(2, 1043, true, b"aac2"),
    ];
    let timeline = Timeline::new(1_000_000_000, 0);
    let segment = media_segment(7, &tracks, &frames, &timeline).unwrap();
    let moof = Moof::decode(&mut segment.as_slice()).unwrap();
    assert_eq!(moof.traf.len(), 2);
    let (video, audio) = (traf(&moof, 1), traf(&moof, 2));
    assert_eq!(
        fragment_samples(&segment, video),
        [b"key".to_vec(), b"delta".to_vec()]
    );
    let sound: Vec<&[u8]> = vec![b"aac0", b"aac1", b"aac2"];
    assert_eq!(fragment_samples(&segment, audio), sound);
    let durations: Vec<u32> = audio.trun[0]
        .samples
        .iter()
        .map(|e| e.duration.unwrap())
        .collect();
    // 21 and 22 ms at 48 kHz, then one AAC frame.
    assert_eq!(durations, [1008, 1056, 1024]);
    assert!(audio.trun[0].samples.iter().all(|e| e.flags == Some(SYNC)));
    assert_eq!(audio.tfdt.as_ref().unwrap().base_media_decode_time, 0);
    // The same timeline puts audio a second later when it starts there.
    let later = [frame(2, 2000, true, b"aac")];
    let segment = media_segment(8, &tracks, &later, &timeline).unwrap();
    let moof = Moof::decode(&mut segment.as_slice()).unwrap();
    assert_eq!((moof.traf.len(), traf_start(&moof)), (1, 48_000));
}

/// Each sample's bytes as the sample tables locate them in a file.
fn table_samples(file: &[u8], stbl: &Stbl) -> Vec<Vec<u8>> {
    let StszSamples::Different { sizes } = &stbl.stsz.samples else {
        panic!("sizes")
    };
    let offsets = &stbl.stco.as_ref().unwrap().entries;
    let mut per_chunk = Vec::new();
    for (i, entry) in stbl.stsc.entries.iter().enumerate() {
        let end = stbl
            .stsc
            .entries
            .get(i + 1)
            .map_or(offsets.len() as u32 + 1, |e| e.first_chunk);
        per_chunk.extend((entry.first_chunk..end).map(|_| entry.samples_per_chunk));
    }
    let mut sizes = sizes.iter();
    let mut out = Vec::new();
    for (&offset, &count) in offsets.iter().zip(&per_chunk) {
        let mut at = offset as usize;
        for _ in 0..count {
            let size = *sizes.next().unwrap() as usize;
            out.push(file[at..at + size].to_vec());
            at += size;
        }
    }
    out
}

#[test]
fn clip_tables_locate_every_frame() {
    let tracks = [avc(1), aac(2)];
    let mut frames = gop(0);
    frames.insert(1, frame(2, 0, true, b"aac0"));
    frames.insert(2, frame(2, 21, true, b"aac1"));
    frames.push(frame(2, 43, true, b"aac2"));
    let file = clip(&tracks, &frames).unwrap();
    let mut buf = file.as_slice();
    assert_eq!(Ftyp::decode(&mut buf).unwrap().major_brand, b"isom".into());
    let moov = Moov::decode(&mut buf).unwrap();
    assert_eq!(&buf[4..8], b"mdat", "the mdat follows the moov");

    let video = &moov.trak[0].mdia.minf.stbl;
    let data: Vec<&[u8]> = vec![b"I-frame", b"P", b"B1", b"B-2"];
    assert_eq!(table_samples(&file, video), data);
    assert_eq!(video.stss.as_ref().unwrap().entries, [1]);
    let offsets: Vec<i64> = video
        .ctts
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.sample_offset)
        .collect();
    assert_eq!(offsets, [3600, 10800, 0]);
    // Presentation starts at the I-frame, one reorder delay into the media.
    let edits = &moov.trak[0]
        .edts
        .as_ref()
        .unwrap()
        .elst
        .as_ref()
        .unwrap()
        .entries;
    assert_eq!(edits[0].media_time, Some(3600));
    assert_eq!(moov.trak[0].mdia.mdhd.duration, 4 * 3600);

    let audio = &moov.trak[1].mdia.minf.stbl;
    let sound: Vec<&[u8]> = vec![b"aac0", b"aac1", b"aac2"];
    assert_eq!(table_samples(&file, audio), sound);
    assert!(audio.stss.is_none() && audio.ctts.is_none());
    assert_eq!(
        audio.stco.as_ref().unwrap().entries.len(),
        2,
        "two runs of audio"
    );
    assert_eq!(moov.mvhd.duration, 160);
}
