//! HLS segment serving, and its ceiling on this machine.
//!
//! * Serving: one stream gets the media in one `PutMedia` session (sent as
//!   fast as the daemon reads it), then an `ON_DEMAND` session is opened
//!   (`GetHLSStreamingSessionURL`), its master and media playlists fetched,
//!   and closed-loop clients fetch the media segments round-robin
//!   (`getMP4MediaFragment.mp4`): segments/s, MB/s and each segment's time
//!   from request to last byte.
//! * Ceiling: what the daemon does for each segment request, in this
//!   process on one thread: decode the stored fragment record, read its MKV
//!   back and remux its frames into an fMP4 media segment
//!   ([`hydrant::video::mp4::media_segment`]). The daemon keeps no
//!   segment: every request remuxes, so this per-core rate times the cores
//!   bounds what it can serve; the difference is its log read and HTTP,
//!   and the clients, which share the cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hydrant::video::fragment::{self, Meta};
use hydrant::video::mkv::{Fragment, MkvReader, ReadEvent, ReaderLimits, StreamHeader};
use hydrant::video::mp4::{self, Timeline};
use serde::Serialize;
use serde_json::json;

use super::session::{Plan, put_media};
use super::{Args, Daemon};
use crate::daemon::cpu_seconds;
use crate::load::{closed_loop_timeline, percentile};

/// One round of HLS clients.
#[derive(Debug, Serialize)]
pub struct Serving {
    pub clients: usize,
    pub segments_per_sec: f64,
    pub mb_per_sec: f64,
    pub segment_p50_ms: f64,
    pub segment_p99_ms: f64,
    pub failed: u64,
    /// The daemon's CPU time over the round's, in % of one core.
    pub daemon_cpu_percent: f64,
    /// The daemon's CPU time per MB served, to set beside the ceiling's.
    pub daemon_cpu_ms_per_mb: f64,
    /// The bench's own CPU time (the clients), in % of one core.
    pub bench_cpu_percent: f64,
}

/// What the HLS measurement found.
#[derive(Debug, Serialize)]
pub struct Hls {
    pub segments: usize,
    pub segment_bytes_mean: f64,
    pub rounds: Vec<Serving>,
    pub peak_rss_mib: f64,
}

/// The remux ceiling: the daemon's work per segment, on one thread.
#[derive(Debug, Serialize)]
pub struct Ceiling {
    pub segments_per_sec_per_core: f64,
    pub mb_per_sec_per_core: f64,
}

/// Loads one stream, opens an ON_DEMAND session and runs a round for each
/// client count.
pub async fn serving(args: &Args, plan: Arc<Plan>) -> anyhow::Result<Hls> {
    let mut d = Daemon::start(args, &["hls".to_string()]).await?;
    let r = async {
        let out = put_media(
            d.addr,
            "hls",
            plan.clone(),
            f64::INFINITY,
            tokio::time::Instant::now(),
        )
        .await?;
        let persisted = out.persisted.iter().flatten().count();
        ensure!(
            persisted == plan.timecodes.len(),
            "the HLS stream has {persisted} of {} fragments persisted ({})",
            plan.timecodes.len(),
            out.broken.unwrap_or_default()
        );
        let urls = segment_urls(&d).await?;
        let sizes = sizes(&d.http, &urls).await?;
        let mut rounds = Vec::new();
        for &c in &args.hls_clients {
            let r = round(&d, &urls, c, Duration::from_secs(args.hls_secs)).await?;
            eprintln!(
                "  HLS, {c} clients: {:.0} segments/s, {:.1} MB/s",
                r.segments_per_sec, r.mb_per_sec
            );
            rounds.push(r);
        }
        Ok(Hls {
            segments: urls.len(),
            segment_bytes_mean: sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64,
            rounds,
            peak_rss_mib: 0.0,
        })
    }
    .await;
    let rss = d.stop()?;
    r.map(|h| Hls {
        peak_rss_mib: rss,
        ..h
    })
}

/// The session's media segment URLs, from its master and media playlists.
async fn segment_urls(d: &Daemon) -> anyhow::Result<Vec<String>> {
    let req = json!({ "StreamName": "hls", "PlaybackMode": "ON_DEMAND" });
    let out = d.call("getHLSStreamingSessionURL", &req).await?;
    let master = out["HLSStreamingSessionURL"]
        .as_str()
        .context("no HLSStreamingSessionURL")?;
    let base = &master[..master.rfind('/').context("a session URL without a path")? + 1];
    let text = get_text(&d.http, master).await?;
    let media = uris(&text)
        .next()
        .context("a master playlist without a variant")?;
    let text = get_text(&d.http, &format!("{base}{media}")).await?;
    let urls: Vec<String> = uris(&text).map(|u| format!("{base}{u}")).collect();
    ensure!(!urls.is_empty(), "a media playlist without segments");
    Ok(urls)
}

/// The URIs of a playlist: its lines that are not tags or comments.
fn uris(playlist: &str) -> impl Iterator<Item = &str> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

async fn get_text(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let resp = http.get(url).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {text}");
    }
    Ok(text)
}

/// Every segment fetched once: their sizes (and a check that they serve).
async fn sizes(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for u in urls {
        let resp = http.get(u).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("GET {u}: {status}: {}", String::from_utf8_lossy(&body));
        }
        out.push(body.len() as u64);
    }
    Ok(out)
}

/// `clients` closed-loop clients fetching the segments round-robin for
/// `secs`.
async fn round(
    d: &Daemon,
    urls: &[String],
    clients: usize,
    secs: Duration,
) -> anyhow::Result<Serving> {
    let bytes = Arc::new(AtomicU64::new(0));
    let (http, urls) = (d.http.clone(), Arc::new(urls.to_vec()));
    let counted = bytes.clone();
    let pid = d.child.id();
    let (cpu, own, t) = (
        cpu_seconds(pid),
        cpu_seconds(std::process::id()),
        Instant::now(),
    );
    let calls = closed_loop_timeline(clients, secs, move |c, n| {
        let url = urls[(n * clients + c) % urls.len()].clone();
        let (http, counted) = (http.clone(), counted.clone());
        async move {
            let Ok(resp) = http.get(&url).send().await else {
                return false;
            };
            let ok = resp.status().is_success();
            match resp.bytes().await {
                Ok(b) if ok && !b.is_empty() => {
                    counted.fetch_add(b.len() as u64, Ordering::Relaxed);
                    true
                }
                _ => false,
            }
        }
    })
    .await?;
    let secs = t.elapsed().as_secs_f64();
    let (cpu, own) = (
        cpu_seconds(pid) - cpu,
        cpu_seconds(std::process::id()) - own,
    );
    let mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
    let mut lat: Vec<Duration> = calls.iter().filter(|c| c.ok).map(|c| c.lat).collect();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Serving {
        clients,
        segments_per_sec: lat.len() as f64 / secs,
        mb_per_sec: mb / secs,
        segment_p50_ms: ms(percentile(&lat, 0.5)),
        segment_p99_ms: ms(percentile(&lat, 0.99)),
        failed: calls.iter().filter(|c| !c.ok).count() as u64,
        daemon_cpu_percent: cpu / secs * 100.0,
        daemon_cpu_ms_per_mb: cpu * 1e3 / mb.max(1e-9),
        bench_cpu_percent: own / secs * 100.0,
    })
}

/// An MKV file's fragments as the daemon stores them, and its header.
fn stored(mkv: &[u8]) -> anyhow::Result<(StreamHeader, Vec<Bytes>)> {
    let mut reader = MkvReader::new(ReaderLimits::default());
    let mut events = reader.push(mkv);
    events.extend(reader.finish());
    let mut header = None;
    let mut fragments: Vec<Fragment> = Vec::new();
    for e in events {
        match e {
            ReadEvent::Header(h) => header = Some(h),
            ReadEvent::Fragment(f) => fragments.push(f),
            ReadEvent::FragmentStarted { .. } => {}
            ReadEvent::Error { error, message, .. } => bail!("the media: {error}: {message}"),
        }
    }
    let h = header.context("the media has no header")?;
    let records = fragments
        .iter()
        .map(|f| {
            let meta = Meta {
                timecode: f.timecode,
                producer_ms: 0,
                server_ms: 0,
                duration_ms: f.duration_ns / 1_000_000,
                tags: Vec::new(),
                timecode_scale_ns: h.timecode_scale_ns,
                tracks: h.tracks.clone(),
            };
            Bytes::from(fragment::encode(&meta, &h.bytes, &f.cluster))
        })
        .collect();
    Ok((h, records))
}

/// One segment from a stored fragment record, as the daemon makes it.
fn segment(
    record: &Bytes,
    seq: u32,
    timeline: Option<&Timeline>,
) -> anyhow::Result<(Vec<u8>, Timeline)> {
    let f = fragment::decode(record).context("a fragment record that does not decode")?;
    let mut reader = MkvReader::new(ReaderLimits {
        fragment_bytes_max: usize::MAX / 2,
        fragment_duration_max: Duration::from_secs(86_400),
        ..ReaderLimits::default()
    });
    let mut events = reader.push(&f.header);
    events.extend(reader.push(&f.cluster));
    events.extend(reader.finish());
    let frames = events
        .into_iter()
        .find_map(|e| match e {
            ReadEvent::Fragment(p) => Some(p.frames),
            _ => None,
        })
        .context("a stored fragment that does not read back")?;
    let timeline = timeline
        .copied()
        .unwrap_or_else(|| Timeline::from_frames(&f.meta.tracks, &frames));
    let seg = mp4::media_segment(seq, &f.meta.tracks, &frames, &timeline)?;
    Ok((seg, timeline))
}

/// The remux ceiling: segments made from the fragments of an MKV file
/// round-robin on this thread for `secs`. Blocking.
pub fn remux_ceiling(mkv: &[u8], secs: u64) -> anyhow::Result<Ceiling> {
    let (_, records) = stored(mkv)?;
    let first = records.first().context("the media has no fragment")?;
    let (_, timeline) = segment(first, 1, None)?;
    let (mut n, mut bytes) = (0usize, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        let (seg, _) = segment(&records[n % records.len()], n as u32 + 1, Some(&timeline))?;
        bytes += seg.len() as u64;
        n += 1;
    }
    let el = t.elapsed().as_secs_f64();
    Ok(Ceiling {
        segments_per_sec_per_core: n as f64 / el,
        mb_per_sec_per_core: bytes as f64 / 1e6 / el,
    })
}
