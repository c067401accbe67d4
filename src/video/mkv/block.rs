//! The inside of a SimpleBlock or Block: track number, timecode relative
//! to the cluster, flags, and the frames, which lacing may pack several to
//! a block (Xiph, EBML or fixed-size lacing).

use super::Violation;
use super::ebml;

/// The SimpleBlock flag for a key frame (a Block has no such flag: a
/// BlockGroup without ReferenceBlock is a key frame).
const FLAG_KEYFRAME: u8 = 0x80;

/// A block's header and where its frames lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Block {
    pub track: u64,
    /// Ticks relative to the cluster's Timecode.
    pub relative: i16,
    /// The SimpleBlock key frame flag (meaningless for a Block).
    pub keyframe_flag: bool,
    /// Each frame as (offset, length) within the block's payload.
    pub frames: Vec<(usize, usize)>,
}

/// Reads a block's payload.
pub(super) fn parse(payload: &[u8]) -> Result<Block, Violation> {
    let Some((track, _, track_len)) = ebml::read_vint(payload)? else {
        return Err(Violation::invalid("a block ends inside its track number"));
    };
    let Some(&[t0, t1, flags]) = payload.get(track_len..track_len + 3) else {
        return Err(Violation::invalid("a block ends inside its header"));
    };
    let relative = i16::from_be_bytes([t0, t1]);
    let at = track_len + 3;
    let frames = match (flags >> 1) & 0x03 {
        0 => vec![(at, payload.len() - at)],
        lacing => unlace(payload, at, lacing)?,
    };
    Ok(Block {
        track,
        relative,
        keyframe_flag: flags & FLAG_KEYFRAME != 0,
        frames,
    })
}

/// Splits a laced block's frames. `at` is where the lace count is.
fn unlace(payload: &[u8], at: usize, lacing: u8) -> Result<Vec<(usize, usize)>, Violation> {
    let Some(&count) = payload.get(at) else {
        return Err(Violation::invalid(
            "a laced block ends before its frame count",
        ));
    };
    let count = usize::from(count) + 1;
    let mut pos = at + 1;
    let mut sizes = Vec::with_capacity(count);
    match lacing {
        1 => xiph_sizes(payload, &mut pos, count, &mut sizes)?,
        3 => ebml_sizes(payload, &mut pos, count, &mut sizes)?,
        _ => {
            let rest = payload.len() - pos;
            if !rest.is_multiple_of(count) {
                return Err(Violation::invalid(
                    "a fixed-size laced block does not divide evenly",
                ));
            }
            sizes.resize(count - 1, rest / count);
        }
    }
    let listed: usize = sizes.iter().sum();
    let Some(last) = (payload.len() - pos).checked_sub(listed) else {
        return Err(Violation::invalid("laced frame sizes run past the block"));
    };
    sizes.push(last);
    let mut frames = Vec::with_capacity(count);
    for size in sizes {
        frames.push((pos, size));
        pos += size;
    }
    Ok(frames)
}

/// Xiph lacing: each size but the last as a run of 255s plus a final byte.
fn xiph_sizes(
    payload: &[u8],
    pos: &mut usize,
    count: usize,
    sizes: &mut Vec<usize>,
) -> Result<(), Violation> {
    for _ in 1..count {
        let mut size = 0usize;
        loop {
            let Some(&byte) = payload.get(*pos) else {
                return Err(Violation::invalid("Xiph lace sizes run past the block"));
            };
            *pos += 1;
            size += usize::from(byte);
            if byte != 255 {
                break;
            }
        }
        sizes.push(size);
    }
    Ok(())
}

/// EBML lacing: the first size as an unsigned variable-length integer, each
/// next one as a signed difference from the one before.
fn ebml_sizes(
    payload: &[u8],
    pos: &mut usize,
    count: usize,
    sizes: &mut Vec<usize>,
) -> Result<(), Violation> {
    let mut previous: i64 = 0;
    for i in 1..count {
        let Some((raw, _, len)) = ebml::read_vint(payload.get(*pos..).unwrap_or(&[]))? else {
            return Err(Violation::invalid("EBML lace sizes run past the block"));
        };
        *pos += len;
        let raw =
            i64::try_from(raw).map_err(|_| Violation::invalid("an EBML lace size is too large"))?;
        let size = if i == 1 {
            raw
        } else {
            // A signed lace size is stored with a bias of half its range.
            let bias = (1i64 << (7 * len - 1)) - 1;
            previous + (raw - bias)
        };
        let size = usize::try_from(size)
            .map_err(|_| Violation::invalid("an EBML lace size is negative"))?;
        if size > payload.len() {
            return Err(Violation::invalid("an EBML lace size runs past the block"));
        }
        previous = size as i64;
        sizes.push(size);
    }
    Ok(())
}
