//! The codecs: reading each track's MKV `CodecPrivate`, choosing its MP4
//! timescale, building its MP4 sample entry and naming it in RFC 6381 form
//! for HLS `CODECS` attributes.

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Avc1, Avcc, Codec as SampleEntry, Esds, FixedPoint, Hvc1, Hvcc, Mp4a, Visual,
};

use super::RemuxError;
use super::types::{TrackInfo, TrackKind};

/// The MKV codec IDs handled here.
const AVC: &str = "V_MPEG4/ISO/AVC";
const HEVC: &str = "V_MPEGH/ISO/HEVC";
const AAC: &str = "A_AAC";

/// Video timestamps are kept on the 90 kHz clock that MPEG systems use:
/// it represents the millisecond timecodes of MKV exactly and the frame
/// durations of all common frame rates closely.
const VIDEO_TIMESCALE: u32 = 90_000;

/// Samples in one AAC frame, the usual frame length; the MKV timestamps,
/// rounded to milliseconds, cannot tell it exactly.
pub(super) const AAC_FRAME_SAMPLES: u32 = 1024;

/// The sampling frequencies an AudioSpecificConfig indexes (ISO/IEC
/// 14496-3, 1.6.3.4); indices 13 and 14 are reserved, 15 means explicit.
const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// A track's parsed codec configuration.
#[derive(Clone, Debug)]
pub(super) enum Codec {
    Avc(Avcc),
    Hevc(Hvcc),
    Aac(AacConfig),
}

/// What an AudioSpecificConfig says, and its bytes for the `esds`.
#[derive(Clone, Debug)]
pub(super) struct AacConfig {
    pub object_type: u8,
    pub frequency_index: u8,
    pub channel_config: u8,
    pub sample_rate: u32,
    pub raw: Vec<u8>,
}

/// A video or audio track ready to be muxed: its MKV description, its MP4
/// track ID, codec and timescale.
#[derive(Clone, Debug)]
pub(super) struct Media<'a> {
    pub info: &'a TrackInfo,
    pub id: u32,
    pub codec: Codec,
    pub timescale: u32,
}

impl Media<'_> {
    /// Whether samples may be stored out of presentation order, which only
    /// the video codecs allow.
    pub fn reorders(&self) -> bool {
        matches!(self.codec, Codec::Avc(_) | Codec::Hevc(_))
    }

    pub fn is_video(&self) -> bool {
        self.reorders()
    }
}

/// The tracks that go into an MP4, in the order given, each with its MP4
/// track ID (its position among them, from 1) and parsed codec. Tracks of
/// kind `Other` are left out; a video or audio track that cannot be muxed
/// is an error, because leaving it out silently would lose media.
pub(super) fn media_tracks(tracks: &[TrackInfo]) -> Result<Vec<Media<'_>>, RemuxError> {
    let mut out = Vec::new();
    for info in tracks.iter().filter(|t| t.kind != TrackKind::Other) {
        let codec = parse(info)?;
        let id = u32::try_from(out.len() + 1).map_err(|_| RemuxError::TooLarge)?;
        let timescale = match &codec {
            Codec::Avc(_) | Codec::Hevc(_) => VIDEO_TIMESCALE,
            Codec::Aac(aac) => aac.sample_rate,
        };
        out.push(Media {
            info,
            id,
            codec,
            timescale,
        });
    }
    if out.is_empty() {
        return Err(RemuxError::NoMediaTracks);
    }
    Ok(out)
}

/// The MP4 timescale (ticks per second) a track's samples are timed in:
/// 90 kHz for video, the sampling rate for AAC. Init segments, media
/// segments and clips all take it from here, so they always agree.
pub fn timescale(track: &TrackInfo) -> Result<u32, RemuxError> {
    Ok(match parse(track)? {
        Codec::Avc(_) | Codec::Hevc(_) => VIDEO_TIMESCALE,
        Codec::Aac(aac) => aac.sample_rate,
    })
}

/// The RFC 6381 codec list of the video and audio tracks, in track order,
/// for an HLS `CODECS` attribute: `avc1.64001f,mp4a.40.2`.
pub fn codecs_string(tracks: &[TrackInfo]) -> Result<String, RemuxError> {
    let names = media_tracks(tracks)?
        .iter()
        .map(|media| codec_name(&media.codec))
        .collect::<Vec<_>>();
    Ok(names.join(","))
}

/// One codec's RFC 6381 name.
fn codec_name(codec: &Codec) -> String {
    match codec {
        Codec::Avc(avcc) => format!(
            "avc1.{:02x}{:02x}{:02x}",
            avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
        ),
        Codec::Hevc(hvcc) => hevc_name(hvcc),
        Codec::Aac(aac) => format!("mp4a.40.{}", aac.object_type),
    }
}

/// The HEVC name of ISO/IEC 14496-15 Annex E: profile space and profile,
/// the compatibility flags bit-reversed in hex, tier and level, then the
/// constraint bytes in hex with trailing zero bytes left out
/// (`hvc1.1.6.L93.B0`).
fn hevc_name(hvcc: &Hvcc) -> String {
    let space = match hvcc.general_profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let compatibility = u32::from_be_bytes(hvcc.general_profile_compatibility_flags).reverse_bits();
    let tier = if hvcc.general_tier_flag { 'H' } else { 'L' };
    let mut name = format!(
        "hvc1.{space}{}.{compatibility:X}.{tier}{}",
        hvcc.general_profile_idc, hvcc.general_level_idc
    );
    let constraints = &hvcc.general_constraint_indicator_flags;
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for byte in &constraints[..used] {
        name.push_str(&format!(".{byte:02X}"));
    }
    name
}

/// Parses a track's codec configuration from its `CodecPrivate`.
fn parse(info: &TrackInfo) -> Result<Codec, RemuxError> {
    let track = info.number;
    let codec = info.codec_id.as_str();
    if ![AVC, HEVC, AAC].contains(&codec) {
        return Err(RemuxError::UnsupportedStreamMediaType {
            track,
            codec_id: info.codec_id.clone(),
        });
    }
    let data = info.codec_private.as_slice();
    if data.is_empty() {
        return Err(RemuxError::MissingCodecPrivateData { track });
    }
    let invalid = |reason: String| RemuxError::InvalidCodecPrivateData { track, reason };
    match codec {
        AVC => parse_avcc(data).map(Codec::Avc).map_err(invalid),
        HEVC => parse_hvcc(data).map(Codec::Hevc).map_err(invalid),
        _ => parse_aac(data).map(Codec::Aac).map_err(invalid),
    }
}

/// An AVCDecoderConfigurationRecord, which MKV stores as the avcC box's
/// body. It must name at least one SPS and one PPS and a NAL unit length
/// size the encoder accepts, because a decoder can do nothing without them.
fn parse_avcc(data: &[u8]) -> Result<Avcc, String> {
    let avcc = decode_body::<Avcc>(data)?;
    if avcc.sequence_parameter_sets.is_empty() || avcc.picture_parameter_sets.is_empty() {
        return Err("avcC has no SPS or no PPS".into());
    }
    if avcc.length_size == 3 {
        return Err("avcC NAL unit length size 3 is not allowed".into());
    }
    // Encoding once here turns a record the encoder would refuse later
    // (an out-of-range extension field, say) into a codec error now.
    reencodes(&avcc)?;
    Ok(avcc)
}

/// An HEVCDecoderConfigurationRecord, the hvcC box's body.
fn parse_hvcc(data: &[u8]) -> Result<Hvcc, String> {
    let hvcc = decode_body::<Hvcc>(data)?;
    if hvcc.configuration_version != 1 {
        return Err(format!(
            "hvcC version {} is unknown",
            hvcc.configuration_version
        ));
    }
    if hvcc.arrays.iter().all(|a| a.nalus.is_empty()) {
        return Err("hvcC has no parameter sets".into());
    }
    reencodes(&hvcc)?;
    Ok(hvcc)
}

/// Decodes a box body that must be consumed exactly.
fn decode_body<T: mp4_atom::Atom>(data: &[u8]) -> Result<T, String> {
    let mut buf = data;
    let value = T::decode_body(&mut buf).map_err(|e| e.to_string())?;
    if !buf.is_empty() {
        return Err(format!("{} trailing bytes", buf.len()));
    }
    Ok(value)
}

fn reencodes<T: mp4_atom::Encode>(value: &T) -> Result<(), String> {
    value.encode(&mut Vec::new()).map_err(|e| e.to_string())
}

/// An AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1): the audio object
/// type, the sampling frequency (index or explicit) and the channel
/// configuration. What follows depends on the object type and is passed
/// on unread in the `esds`.
fn parse_aac(data: &[u8]) -> Result<AacConfig, String> {
    let mut bits = BitReader { data, pos: 0 };
    let truncated = || "AudioSpecificConfig is truncated".to_string();
    let mut object_type = bits.read(5).ok_or_else(truncated)?;
    if object_type == 31 {
        object_type = 32 + bits.read(6).ok_or_else(truncated)?;
    }
    if object_type == 0 {
        return Err("audio object type 0 is not a codec".into());
    }
    let frequency_index = bits.read(4).ok_or_else(truncated)?;
    let sample_rate = match frequency_index {
        15 => bits.read(24).ok_or_else(truncated)?,
        i => *AAC_RATES
            .get(i as usize)
            .ok_or_else(|| format!("sampling frequency index {i} is reserved"))?,
    };
    if sample_rate == 0 {
        return Err("sampling frequency 0".into());
    }
    let channel_config = bits.read(4).ok_or_else(truncated)?;
    Ok(AacConfig {
        // The reads above are at most 6 bits plus 32, and 4 bits: they fit.
        object_type: object_type as u8,
        frequency_index: frequency_index as u8,
        channel_config: channel_config as u8,
        sample_rate,
        raw: data.to_vec(),
    })
}

/// Reads big-endian bit fields, as MPEG-4 audio configurations pack them.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// The next `n` (at most 32) bits, or `None` past the end.
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(value)
    }
}

/// The MP4 sample entry (the `stsd` child) of a track.
pub(super) fn sample_entry(media: &Media) -> SampleEntry {
    let info = media.info;
    let visual = || Visual {
        // Sample entries refer to the track's single `dref` entry.
        data_reference_index: 1,
        width: dimension(info.width),
        height: dimension(info.height),
        ..Visual::default()
    };
    match &media.codec {
        Codec::Avc(avcc) => SampleEntry::Avc1(Avc1 {
            visual: visual(),
            avcc: avcc.clone(),
            ..Avc1::default()
        }),
        Codec::Hevc(hvcc) => SampleEntry::Hvc1(Hvc1 {
            visual: visual(),
            hvcc: hvcc.clone(),
            ..Hvc1::default()
        }),
        Codec::Aac(aac) => SampleEntry::Mp4a(mp4a(media, aac)),
    }
}

/// A video dimension for the sample entry, which has 16 bits for it.
fn dimension(value: Option<u32>) -> u16 {
    value.map_or(0, |v| u16::try_from(v).unwrap_or(u16::MAX))
}

/// The AAC sample entry: `mp4a` with an `esds` whose decoder-specific info
/// is the AudioSpecificConfig exactly as MKV carried it.
fn mp4a(media: &Media, aac: &AacConfig) -> Mp4a {
    let channels = aac_channels(aac.channel_config)
        .or_else(|| media.info.channels.and_then(|c| u16::try_from(c).ok()))
        .unwrap_or(2);
    Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: channels,
            sample_size: 16,
            // The field has 16 integer bits; rates above them are written
            // as 0, and decoders take the rate from the esds anyway.
            sample_rate: FixedPoint::new(u16::try_from(aac.sample_rate).unwrap_or(0), 0),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: u16::try_from(media.id).unwrap_or(0),
                dec_config: DecoderConfig {
                    // 0x40: MPEG-4 audio; stream type 5: audio.
                    object_type_indication: 0x40,
                    stream_type: 5,
                    dec_specific: Some(DecoderSpecific {
                        profile: aac.object_type,
                        freq_index: aac.frequency_index,
                        chan_conf: aac.channel_config,
                        raw: aac.raw.clone(),
                    }),
                    ..DecoderConfig::default()
                },
                sl_config: SLConfig {},
                ..EsDescriptor::default()
            },
        },
        btrt: None,
        taic: None,
    }
}

/// The channel count of an AAC channel configuration (ISO/IEC 14496-3,
/// table 1.19), or `None` where the configuration does not say (0: a
/// program config element inside the stream decides).
fn aac_channels(config: u8) -> Option<u16> {
    match config {
        1..=6 => Some(u16::from(config)),
        7 | 12 | 14 => Some(8),
        11 => Some(7),
        13 => Some(24),
        _ => None,
    }
}
