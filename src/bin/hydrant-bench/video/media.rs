//! The test media and the upload plan made from it: an H.264 test pattern
//! at about 2 Mbit/s, made once with ffmpeg as live MKV (a key frame every
//! second, so one Cluster, one fragment, per second); the byte range and
//! timecode of each Cluster, found by walking the file's EBML; and the
//! chunks a paced `PutMedia` upload sends, each already framed for HTTP/1.1
//! chunked transfer.
//!
//! The daemon completes a fragment when the next Cluster's Timecode arrives
//! (or at the end of the body), so a chunk boundary is put right after each
//! Cluster's Timecode element: the chunk that carries a fragment's last byte
//! also carries what completes it, and the time it was written is the time
//! the fragment's last byte was.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const TIMECODE: u32 = 0xE7;

/// One Cluster of the file: one fragment.
#[derive(Clone, Copy, Debug)]
pub struct Cluster {
    /// Where the Cluster element starts, and ends (exclusive).
    pub start: usize,
    pub end: usize,
    /// Where its Timecode element ends.
    pub timecode_end: usize,
    /// Its Timecode, as the acknowledgements name the fragment.
    pub timecode: i64,
}

/// The test media: the file's bytes, how long it plays and its Clusters.
pub struct Media {
    pub bytes: Bytes,
    pub secs: f64,
    pub clusters: Vec<Cluster>,
    /// What ffmpeg was asked for: `<width>x<height>`, frames/s, kbit/s.
    pub size: String,
    pub fps: u32,
    pub kbps: u32,
}

impl Media {
    /// The media's real bitrate, Mbit/s.
    pub fn mbps(&self) -> f64 {
        self.bytes.len() as f64 * 8.0 / self.secs / 1e6
    }

    /// How long a fragment plays, on average.
    pub fn fragment_secs(&self) -> f64 {
        self.secs / self.clusters.len().max(1) as f64
    }
}

/// One write of an upload: a chunk of the file framed for chunked transfer
/// (the body's terminator follows the last one).
pub struct Chunk {
    pub framed: Bytes,
    /// Where the chunk's data ends in the file: it is sent once the file's
    /// bitrate has reached that many bytes.
    pub end: usize,
    /// The fragment whose last byte, and what completes it, this chunk
    /// carries.
    pub completes: Option<usize>,
}

/// Encodes `secs` seconds of a 25 frames/s test pattern with ffmpeg at
/// `kbps` kbit/s (key frame every second, no B-frames) into `path`, and
/// finds its Clusters.
pub fn generate(
    ffmpeg: &Path,
    path: &Path,
    size: &str,
    kbps: u32,
    secs: u64,
) -> anyhow::Result<Media> {
    const FPS: u32 = 25;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let rate = format!("{kbps}k");
    let status = Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate={FPS}"))
        .args([
            "-t",
            &secs.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-b:v",
            &rate,
            "-maxrate",
            &rate,
            "-bufsize",
            &format!("{}k", kbps / 2),
        ])
        .args(["-g", &FPS.to_string(), "-keyint_min", &FPS.to_string()])
        .args(["-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p"])
        .args([
            "-f",
            "matroska",
            "-live",
            "1",
            "-cluster_size_limit",
            "50000000",
        ])
        .args(["-cluster_time_limit", "10000"])
        .arg(path)
        .status()
        .with_context(|| format!("cannot run {} (install ffmpeg)", ffmpeg.display()))?;
    ensure!(status.success(), "ffmpeg failed ({status})");
    let bytes = Bytes::from(std::fs::read(path)?);
    let clusters = clusters(&bytes)?;
    ensure!(!clusters.is_empty(), "{} has no Cluster", path.display());
    Ok(Media {
        bytes,
        secs: secs as f64,
        clusters,
        size: size.to_string(),
        fps: FPS,
        kbps,
    })
}

/// An element ID at `at` (its length marker kept) and its length.
fn read_id(b: &[u8], at: usize) -> anyhow::Result<(u32, usize)> {
    let first = *b.get(at).context("an element ID past the end")?;
    let len = first.leading_zeros() as usize + 1;
    ensure!(len <= 4, "an element ID longer than 4 bytes at {at}");
    let bytes = b.get(at..at + len).context("an element ID past the end")?;
    Ok((bytes.iter().fold(0, |v, x| (v << 8) | u32::from(*x)), len))
}

/// An element size at `at` (None: unknown) and its length.
fn read_size(b: &[u8], at: usize) -> anyhow::Result<(Option<u64>, usize)> {
    let first = *b.get(at).context("an element size past the end")?;
    let len = first.leading_zeros() as usize + 1;
    ensure!(len <= 8, "an invalid element size at {at}");
    let bytes = b
        .get(at..at + len)
        .context("an element size past the end")?;
    let mut v = u64::from(first) & (0xFF >> len);
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
    }
    let unknown = v == (1u64 << (7 * len)) - 1;
    Ok(((!unknown).then_some(v), len))
}

/// The element at `at`: its ID, where its payload starts and its size.
fn element(b: &[u8], at: usize) -> anyhow::Result<(u32, usize, Option<u64>)> {
    let (id, n) = read_id(b, at)?;
    let (size, m) = read_size(b, at + n)?;
    Ok((id, at + n + m, size))
}

/// Every Cluster of an MKV file whose Clusters have known sizes (as ffmpeg
/// writes them), in file order.
pub fn clusters(b: &[u8]) -> anyhow::Result<Vec<Cluster>> {
    let (id, payload, size) = element(b, 0)?;
    ensure!(id == EBML, "not an MKV file: no EBML header");
    let at = payload + size.context("an EBML header of unknown size")? as usize;
    let (id, mut at, _) = element(b, at)?;
    ensure!(id == SEGMENT, "no Segment after the EBML header");
    let mut out = Vec::new();
    while at < b.len() {
        let (id, payload, size) = element(b, at)?;
        let Some(size) = size else {
            bail!("an element of unknown size at {at}: only known sizes are read");
        };
        let end = payload + size as usize;
        ensure!(end <= b.len(), "an element at {at} runs past the end");
        if id == CLUSTER {
            let (timecode, timecode_end) = cluster_timecode(b, payload, end)?;
            out.push(Cluster {
                start: at,
                end,
                timecode_end,
                timecode,
            });
        }
        at = end;
    }
    Ok(out)
}

/// A Cluster's Timecode (its first child after a CRC-32 or Void) and where
/// that element ends.
fn cluster_timecode(b: &[u8], mut at: usize, end: usize) -> anyhow::Result<(i64, usize)> {
    while at < end {
        let (id, payload, size) = element(b, at)?;
        let size = size.context("a Cluster child of unknown size")? as usize;
        let data = b
            .get(payload..payload + size)
            .context("a Cluster child past the end")?;
        if id == TIMECODE {
            ensure!(size <= 8, "a Timecode longer than 8 bytes at {at}");
            let v = data.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x));
            return Ok((v as i64, payload + size));
        }
        at = payload + size;
    }
    bail!("a Cluster without a Timecode")
}

/// The upload of `media` in chunks of about `chunk_bytes`, cut right after
/// each Cluster's Timecode as well (see the module documentation); the
/// body's terminator goes with the last chunk, which completes the last
/// fragment.
pub fn chunks(media: &Media, chunk_bytes: usize) -> Vec<Chunk> {
    let b = &media.bytes;
    let last = media.clusters.len() - 1;
    // No plain cut inside a Cluster's start and Timecode: the fragment
    // before it is complete only once the whole of that has been written.
    let inside = |at: usize| {
        media
            .clusters
            .iter()
            .any(|c| c.start < at && at < c.timecode_end)
    };
    let mut cuts: Vec<(usize, Option<usize>)> = (chunk_bytes..b.len())
        .step_by(chunk_bytes.max(1))
        .filter(|at| !inside(*at))
        .map(|at| (at, None))
        .collect();
    for (k, next) in media.clusters.iter().skip(1).enumerate() {
        cuts.push((next.timecode_end, Some(k)));
    }
    cuts.push((b.len(), Some(last)));
    // A fragment's cut wins over a plain one at the same place.
    cuts.sort_by_key(|&(at, k)| (at, k.is_none()));
    cuts.dedup_by_key(|c| c.0);
    let mut out = Vec::with_capacity(cuts.len());
    let mut from = 0;
    for (end, completes) in cuts {
        let mut framed = format!("{:x}\r\n", end - from).into_bytes();
        framed.extend_from_slice(&b[from..end]);
        framed.extend_from_slice(b"\r\n");
        if end == b.len() {
            framed.extend_from_slice(b"0\r\n\r\n");
        }
        out.push(Chunk {
            framed: Bytes::from(framed),
            end,
            completes,
        });
        from = end;
    }
    out
}
