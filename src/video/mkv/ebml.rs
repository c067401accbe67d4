//! EBML, the binary format under Matroska: element IDs and sizes as
//! variable-length integers, the values elements carry, and the few writing
//! helpers the reader and the writer need.
//!
//! An element is its ID (1 to 4 bytes, the length marker kept), its size (1
//! to 8 bytes, the marker removed; all value bits set means "unknown") and
//! then its payload. Everything here works on byte slices and never panics:
//! a field that runs past the slice is reported as incomplete, one that
//! breaks the format as [`Malformed`].

/// The IDs this module family reads or writes, as Matroska names them.
pub(super) mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;
    pub const CRC32: u32 = 0xBF;

    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TAGS: u32 = 0x1254_C367;

    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;

    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const NAME: u32 = 0x536E;
    pub const DEFAULT_DURATION: u32 = 0x23_E383;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CONTENT_ENCODINGS: u32 = 0x6D80;

    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const BLOCK_DURATION: u32 = 0x9B;
    pub const REFERENCE_BLOCK: u32 = 0xFB;
    pub const POSITION: u32 = 0xA7;
    pub const PREV_SIZE: u32 = 0xAB;
    pub const SILENT_TRACKS: u32 = 0x5854;
    pub const ENCRYPTED_BLOCK: u32 = 0xAF;

    pub const TAG: u32 = 0x7373;
    pub const TARGETS: u32 = 0x63C0;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
}

/// An 8-byte size field meaning "unknown size", as live producers write it.
pub(super) const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// The largest size an 8-byte size field holds (all ones is "unknown").
const SIZE_MAX: u64 = (1 << 56) - 2;

/// Bytes that break the EBML format, with what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Malformed(pub &'static str);

/// An element's ID and size as read from the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub id: u32,
    /// `None` for the "unknown size" that live streams use for open masters.
    pub size: Option<u64>,
    /// Bytes taken by the ID and the size field together.
    pub len: usize,
}

impl Head {
    /// The whole element's length when its size is known and fits memory.
    pub fn total(&self) -> Option<u64> {
        self.size.map(|size| size.saturating_add(self.len as u64))
    }
}

/// Reads an element ID. `Ok(None)` means the buffer ends inside the ID.
pub(super) fn read_id(buf: &[u8]) -> Result<Option<(u32, usize)>, Malformed> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(Malformed("an element ID longer than 4 bytes"));
    }
    let Some(bytes) = buf.get(..len) else {
        return Ok(None);
    };
    let id = bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    Ok(Some((id, len)))
}

/// Reads a size-style variable-length integer (marker removed). The
/// returned flag tells whether all value bits were set, which for an element
/// size means "unknown".
pub(super) fn read_vint(buf: &[u8]) -> Result<Option<(u64, bool, usize)>, Malformed> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Err(Malformed("a variable-length integer longer than 8 bytes"));
    }
    let len = first.leading_zeros() as usize + 1;
    let Some(bytes) = buf.get(..len) else {
        return Ok(None);
    };
    let mask = (0xFFu16 >> len) as u8;
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & mask), |acc, &b| (acc << 8) | u64::from(b));
    let all_ones = value == (1u64 << (7 * len)) - 1;
    Ok(Some((value, all_ones, len)))
}

/// Reads an element's ID and size. `Ok(None)` means more bytes are needed.
pub(super) fn read_head(buf: &[u8]) -> Result<Option<Head>, Malformed> {
    let Some((id, id_len)) = read_id(buf)? else {
        return Ok(None);
    };
    let Some((value, unknown, size_len)) = read_vint(&buf[id_len..])? else {
        return Ok(None);
    };
    let size = if unknown { None } else { Some(value) };
    Ok(Some(Head {
        id,
        size,
        len: id_len + size_len,
    }))
}

/// One child of a master element whose payload is wholly in memory.
#[derive(Clone, Copy, Debug)]
pub(super) struct Child<'a> {
    pub id: u32,
    /// Where the child's payload starts within the parent's payload.
    pub offset: usize,
    pub data: &'a [u8],
}

/// Iterates over the children of a complete master payload. A child of
/// unknown size or one that runs past the payload is malformed: inside a
/// complete master every size must be known and fit.
pub(super) struct Children<'a> {
    payload: &'a [u8],
    at: usize,
}

/// The children of a complete master payload.
pub(super) fn children(payload: &[u8]) -> Children<'_> {
    Children { payload, at: 0 }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Child<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.payload.get(self.at..)?;
        if rest.is_empty() {
            return None;
        }
        let child = match read_head(rest) {
            Ok(Some(Head {
                id,
                size: Some(size),
                len,
            })) => usize::try_from(size)
                .ok()
                .and_then(|size| rest.get(len..len.checked_add(size)?))
                .map(|data| Child {
                    id,
                    offset: self.at + len,
                    data,
                })
                .ok_or(Malformed("a child element runs past its parent")),
            Ok(Some(_)) => Err(Malformed("a child element of unknown size")),
            Ok(None) => Err(Malformed("a child element header runs past its parent")),
            Err(e) => Err(e),
        };
        match &child {
            Ok(c) => self.at = c.offset + c.data.len(),
            Err(_) => self.at = self.payload.len(),
        }
        Some(child)
    }
}

/// An unsigned integer element's value (0 to 8 bytes, big-endian).
pub(super) fn uint(data: &[u8]) -> Result<u64, Malformed> {
    if data.len() > 8 {
        return Err(Malformed("an unsigned integer longer than 8 bytes"));
    }
    Ok(data.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A float element's value: 0, 4 or 8 bytes.
pub(super) fn float(data: &[u8]) -> Result<f64, Malformed> {
    match data.len() {
        0 => Ok(0.0),
        4 => Ok(f64::from(f32::from_be_bytes([
            data[0], data[1], data[2], data[3],
        ]))),
        8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(data);
            Ok(f64::from_be_bytes(bytes))
        }
        _ => Err(Malformed("a float that is neither 4 nor 8 bytes")),
    }
}

/// A string element's value. Matroska lets writers pad strings with zero
/// bytes, which are not part of the value; invalid UTF-8 is replaced rather
/// than refused, since names and tags are informative.
pub(super) fn string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// Appends an ID in its shortest form, which for a valid ID is the form it
/// was read in (the length marker is part of the value).
pub(super) fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = (id.leading_zeros() / 8) as usize;
    out.extend_from_slice(&bytes[skip.min(3)..]);
}

/// Appends a size as an 8-byte field, the form live producers use: it can
/// be patched in place once the payload is known.
pub(super) fn put_size8(out: &mut Vec<u8>, size: u64) {
    let size = size.min(SIZE_MAX);
    let mut bytes = size.to_be_bytes();
    bytes[0] = 0x01;
    out.extend_from_slice(&bytes);
}

/// Overwrites an 8-byte size field at `at` (written by [`put_size8`]).
pub(super) fn patch_size8(out: &mut [u8], at: usize, size: u64) {
    let size = size.min(SIZE_MAX);
    let mut bytes = size.to_be_bytes();
    bytes[0] = 0x01;
    if let Some(field) = out.get_mut(at..at + 8) {
        field.copy_from_slice(&bytes);
    }
}

/// Appends a size in its shortest form.
pub(super) fn put_size(out: &mut Vec<u8>, size: u64) {
    let len = (1..=8u32)
        .find(|&len| size < (1u64 << (7 * len)) - 1)
        .unwrap_or(8);
    if len == 8 {
        put_size8(out, size);
        return;
    }
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len as usize..]);
}

/// Appends a whole element: ID, shortest size, payload.
pub(super) fn put_element(out: &mut Vec<u8>, id: u32, payload: &[u8]) {
    put_id(out, id);
    put_size(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Appends an unsigned integer element in its shortest form.
pub(super) fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let skip = ((value.leading_zeros() / 8) as usize).min(7);
    put_element(out, id, &value.to_be_bytes()[skip..]);
}
