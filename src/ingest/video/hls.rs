//! HLS playback and clips: `GetHLSStreamingSessionURL` answers a session
//! URL whose token (signed, so players cannot change it) says which stream,
//! which fragments (LIVE: the newest; LIVE_REPLAY and ON_DEMAND: a time
//! range) and until when; the session's endpoints under `/hls/v1/` serve
//! the master and media playlists, the init segment and one fMP4 media
//! segment per fragment, remuxed from the stored MKV on request
//! ([`crate::video::mp4`]). `GetClip` is one MP4 of a time range.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{invalid, not_found, opt_str, stream_of, timestamp_ms};
use crate::ingest::AppState;
use crate::ingest::error::ApiError;
use crate::metrics::Metrics;
use crate::video::index::{Clock, Entry};
use crate::video::mp4::{self, MediaPlaylist, RemuxError, Segment, Timeline};
use crate::video::types::{Frame, TrackInfo};
use crate::video::{VideoStream, fragment, mkv};

/// Fragments a clip may hold, and its bytes (Kinesis Video's limits).
const CLIP_FRAGMENTS_MAX: usize = 200;
const CLIP_BYTES_MAX: u64 = 100 << 20;

/// What a session token carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    stream: String,
    created_ms: i64,
    live: bool,
    clock: Clock,
    start_ms: i64,
    end_ms: i64,
    /// Whether the playlist is complete (ON_DEMAND).
    ended: bool,
    max: usize,
    expires_ms: i64,
    discontinuity: bool,
    timestamps: bool,
    timeline: Timeline,
}

fn session_key(state: &AppState) -> Vec<u8> {
    // Derived from the built-in key, so sessions outlive a restart; a
    // process-wide random key otherwise.
    static RANDOM: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let base = state
        .registry
        .config
        .log
        .keys
        .secret(crate::log::seal::BUILTIN_KEY)
        .map(|k| k.0)
        .unwrap_or_else(|| *RANDOM.get_or_init(rand::random));
    mac(&base, b"hydrant hls session tokens")
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn token_of(state: &AppState, s: &Session) -> String {
    let payload = serde_json::to_vec(s).unwrap_or_default();
    let sig = mac(&session_key(state), &payload);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}", b64.encode(&payload), b64.encode(&sig[..16]))
}

fn session_of(state: &AppState, token: &str) -> Result<Session, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "NotAuthorizedException",
            "the session token is not valid",
        )
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, sig) = token.split_once('.').ok_or_else(bad)?;
    let payload = b64.decode(payload).map_err(|_| bad())?;
    let sig = b64.decode(sig).map_err(|_| bad())?;
    let want = mac(&session_key(state), &payload);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..16], &sig[..])) {
        return Err(bad());
    }
    let s: Session = serde_json::from_slice(&payload).map_err(|_| bad())?;
    if chrono::Utc::now().timestamp_millis() > s.expires_ms {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "NotAuthorizedException",
            "the session has expired",
        ));
    }
    Ok(s)
}

/// The stream a playback request names, which must keep its media (HLS and
/// clips read what retention keeps; Kinesis Video refuses them otherwise).
fn retained_stream(state: &AppState, req: &Value) -> Result<Arc<VideoStream>, ApiError> {
    let s = stream_of(state, req)?;
    if s.spec().retention_hours == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "NoDataRetentionException",
            format!(
                "stream {} keeps no data (DataRetentionInHours is 0)",
                s.name
            ),
        ));
    }
    Ok(s)
}

/// A blocking task that did not finish (it panicked or was cancelled).
fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailure",
        e.to_string(),
    )
}

fn remux_error(e: RemuxError) -> ApiError {
    let kind = e.kvs_exception().unwrap_or("InvalidArgumentException");
    let status = if kind == "ResourceNotFoundException" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, kind, e.to_string())
}

/// A stored fragment read back: its tracks and its frames on the producer's
/// clock (epoch nanoseconds), so fragments of different uploads line up.
struct Played {
    tracks: Vec<TrackInfo>,
    frames: Vec<Frame>,
}

async fn play(s: &Arc<VideoStream>, offset: u64) -> Result<Played, ApiError> {
    let stream = s.clone();
    // Reading the log and parsing the MKV are blocking work.
    tokio::task::spawn_blocking(move || play_blocking(&stream, offset))
        .await
        .map_err(join_error)?
}

fn play_blocking(s: &VideoStream, offset: u64) -> Result<Played, ApiError> {
    let gone = || {
        not_found(format!(
            "fragment {} is no longer in stream {}",
            s.index.numbering.number(offset),
            s.name
        ))
    };
    let shard = s.log.shard(0).ok_or_else(gone)?;
    let records = shard.reader(offset).read(1, 64 << 20).map_err(|_| gone())?;
    let r = records
        .into_iter()
        .find(|r| r.offset == offset)
        .ok_or_else(gone)?;
    let f = fragment::decode(&r.data).ok_or_else(gone)?;
    let mut reader = mkv::MkvReader::new(mkv::ReaderLimits {
        fragment_bytes_max: usize::MAX / 2,
        fragment_duration_max: std::time::Duration::from_secs(86_400),
        ..mkv::ReaderLimits::default()
    });
    let mut events = reader.push(&f.header);
    events.extend(reader.push(&f.cluster));
    events.extend(reader.finish());
    let parsed = events.into_iter().find_map(|e| match e {
        mkv::ReadEvent::Fragment(p) => Some(p),
        _ => None,
    });
    let p = parsed.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidMediaFrameException",
            "a stored fragment cannot be read as MKV",
        )
    })?;
    let base = f.meta.producer_ms as i128 * 1_000_000 - i128::from(p.start_ns);
    let frames = p
        .frames
        .into_iter()
        .map(|fr| Frame {
            pts_ns: (base + i128::from(fr.pts_ns)) as i64,
            ..fr
        })
        .collect();
    Ok(Played {
        tracks: f.meta.tracks,
        frames,
    })
}

/// The fragments a session plays now.
fn entries(s: &VideoStream, sess: &Session) -> Vec<Entry> {
    if sess.live {
        let all = s.index.len();
        return s.index.in_range(
            Clock::Server,
            i64::MIN,
            i64::MAX,
            all.saturating_sub(sess.max),
            sess.max,
        );
    }
    s.index
        .in_range(sess.clock, sess.start_ms, sess.end_ms, 0, sess.max)
}

/// A session's `HLSFragmentSelector`: its clock and time range (the whole
/// stream when none is given); a LIVE session takes none.
fn selection(req: &Value, live: bool) -> Result<(Clock, i64, i64), ApiError> {
    let sel = req.get("HLSFragmentSelector").filter(|v| !v.is_null());
    let clock = match sel
        .and_then(|v| v.get("FragmentSelectorType"))
        .and_then(Value::as_str)
    {
        None | Some("SERVER_TIMESTAMP") => Clock::Server,
        Some("PRODUCER_TIMESTAMP") => Clock::Producer,
        Some(other) => {
            return Err(invalid(format!(
                "HLSFragmentSelector.FragmentSelectorType {other} is not PRODUCER_TIMESTAMP or SERVER_TIMESTAMP"
            )));
        }
    };
    let range = sel.and_then(|v| v.get("TimestampRange"));
    if live && range.is_some() {
        return Err(invalid("a LIVE session takes no TimestampRange"));
    }
    let at = |f: &str| {
        range
            .and_then(|r| r.get(f))
            .map(|v| timestamp_ms(v, &format!("HLSFragmentSelector.TimestampRange.{f}")))
            .transpose()
    };
    Ok((
        clock,
        at("StartTimestamp")?.unwrap_or(i64::MIN),
        at("EndTimestamp")?.unwrap_or(i64::MAX),
    ))
}

pub(super) async fn session_url(
    state: &AppState,
    req: &Value,
    endpoint: &str,
) -> Result<Value, ApiError> {
    let s = retained_stream(state, req)?;
    let spec = s.spec();
    if let Some(c) = opt_str(req, "ContainerFormat")?.filter(|c| *c != "FRAGMENTED_MP4") {
        return Err(invalid(format!(
            "ContainerFormat {c} is not supported; use FRAGMENTED_MP4"
        )));
    }
    let mode = opt_str(req, "PlaybackMode")?.unwrap_or("LIVE");
    let (live, ended) = match mode {
        "LIVE" => (true, false),
        "LIVE_REPLAY" => (false, false),
        "ON_DEMAND" => (false, true),
        other => {
            return Err(invalid(format!(
                "PlaybackMode {other} is not LIVE, LIVE_REPLAY or ON_DEMAND"
            )));
        }
    };
    let (clock, start_ms, end_ms) = selection(req, live)?;
    let max = match req.get("MaxMediaPlaylistFragmentResults") {
        None | Some(Value::Null) if live => 5,
        None | Some(Value::Null) => 1000,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=5000).contains(n))
            .ok_or_else(|| invalid("MaxMediaPlaylistFragmentResults must be 1 to 5000"))?
            as usize,
    };
    let expires = match req.get("Expires") {
        None | Some(Value::Null) => 300,
        Some(v) => v
            .as_i64()
            .filter(|n| (300..=43_200).contains(n))
            .ok_or_else(|| invalid("Expires must be 300 to 43200 seconds"))?,
    };
    let discontinuity = matches!(opt_str(req, "DiscontinuityMode")?, Some("ALWAYS"));
    let timestamps = matches!(opt_str(req, "DisplayFragmentTimestamp")?, Some("ALWAYS"));
    // Decode time zero: the stream's oldest fragment, so every fragment a
    // session can ever play comes after it.
    let first = s
        .index
        .first()
        .ok_or_else(|| not_found(format!("stream {} has no fragments", s.name)))?;
    let played = play(&s, first.offset).await?;
    let timeline = Timeline::from_frames(&played.tracks, &played.frames);
    mp4::init_segment(&played.tracks).map_err(remux_error)?;
    let sess = Session {
        stream: s.name.clone(),
        created_ms: spec.created_ms,
        live,
        clock,
        start_ms,
        end_ms,
        ended,
        max,
        expires_ms: chrono::Utc::now().timestamp_millis() + expires * 1000,
        discontinuity,
        timestamps,
        timeline,
    };
    let token = token_of(state, &sess);
    Ok(json!({
        "HLSStreamingSessionURL": format!("{endpoint}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}")
    }))
}

#[derive(Deserialize)]
pub struct HlsQuery {
    #[serde(rename = "SessionToken")]
    token: Option<String>,
    #[serde(rename = "FragmentNumber")]
    fragment: Option<String>,
}

fn body(state: &AppState, stream: &str, content_type: &'static str, bytes: Vec<u8>) -> Response {
    state
        .registry
        .metrics
        .video
        .hls_bytes
        .get_or_create(&Metrics::stream(stream))
        .inc_by(bytes.len() as u64);
    let mut r = (StatusCode::OK, Bytes::from(bytes)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `GET /hls/v1/<file>?SessionToken=…`.
pub async fn serve(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<HlsQuery>,
) -> Response {
    match serve_file(&state, &file, &q).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve_file(state: &AppState, file: &str, q: &HlsQuery) -> Result<Response, ApiError> {
    let token = q
        .token
        .as_deref()
        .ok_or_else(|| invalid("SessionToken is required"))?;
    let sess = session_of(state, token)?;
    let s = state
        .registry
        .video
        .get(&sess.stream)
        .filter(|s| s.spec().created_ms == sess.created_ms)
        .ok_or_else(|| not_found(format!("stream {} no longer exists", sess.stream)))?;
    let tok = urlencoding(token);
    match file {
        "getHLSMasterPlaylist.m3u8" => master(state, &s, &sess, &tok).await,
        "getHLSMediaPlaylist.m3u8" => Ok(media(state, &s, &sess, &tok)),
        "getMP4InitFragment.mp4" => {
            let at = entries(&s, &sess)
                .first()
                .or(s.index.last().as_ref())
                .map(|x| x.offset)
                .ok_or_else(|| not_found("no fragments"))?;
            let played = play(&s, at).await?;
            let init = mp4::init_segment(&played.tracks).map_err(remux_error)?;
            Ok(body(state, &s.name, "video/mp4", init))
        }
        "getMP4MediaFragment.mp4" => {
            let n = q
                .fragment
                .as_deref()
                .ok_or_else(|| invalid("FragmentNumber is required"))?;
            let offset = s
                .index
                .numbering
                .offset(n)
                .filter(|o| s.index.get(*o).is_some())
                .ok_or_else(|| not_found(format!("fragment {n} is not in stream {}", s.name)))?;
            let played = play(&s, offset).await?;
            let timeline = sess.timeline;
            let seg = tokio::task::spawn_blocking(move || {
                mp4::media_segment(
                    (offset + 1) as u32,
                    &played.tracks,
                    &played.frames,
                    &timeline,
                )
            })
            .await
            .map_err(join_error)?
            .map_err(remux_error)?;
            Ok(body(state, &s.name, "video/mp4", seg))
        }
        other => Err(not_found(format!(
            "/hls/v1/{other} is not an HLS session endpoint"
        ))),
    }
}

/// The master playlist: one variant, the codecs and size of the fragment
/// the session starts with.
async fn master(
    state: &AppState,
    s: &Arc<VideoStream>,
    sess: &Session,
    tok: &str,
) -> Result<Response, ApiError> {
    let e = entries(s, sess);
    let at = e
        .first()
        .or(s.index.last().as_ref())
        .map(|x| x.offset)
        .ok_or_else(|| not_found("no fragments"))?;
    let played = play(s, at).await?;
    let codecs = mp4::codecs_string(&played.tracks).map_err(remux_error)?;
    let video = played.tracks.iter().find(|t| t.width.is_some());
    let resolution = video.and_then(|t| Some((t.width?, t.height?)));
    let bits: u64 = e
        .iter()
        .map(|x| x.size * 8_000 / x.duration_ms.max(1))
        .max()
        .unwrap_or(1_000_000);
    let text = mp4::master_playlist(
        &format!("getHLSMediaPlaylist.m3u8?SessionToken={tok}"),
        &codecs,
        resolution,
        bits.max(1),
    );
    Ok(body(
        state,
        &s.name,
        "application/x-mpegURL",
        text.into_bytes(),
    ))
}

/// The media playlist: one segment per fragment the session plays now.
fn media(state: &AppState, s: &Arc<VideoStream>, sess: &Session, tok: &str) -> Response {
    let e = entries(s, sess);
    let segments = e
        .iter()
        .map(|x| Segment {
            uri: format!(
                "getMP4MediaFragment.mp4?SessionToken={tok}&FragmentNumber={}",
                s.index.numbering.number(x.offset)
            ),
            duration_secs: x.duration_ms as f64 / 1000.0,
            program_date_time_ms: sess.timestamps.then_some(x.producer_ms),
            discontinuity: sess.discontinuity,
        })
        .collect();
    let text = mp4::media_playlist(&MediaPlaylist {
        init_uri: format!("getMP4InitFragment.mp4?SessionToken={tok}"),
        media_sequence: e.first().map_or(0, |x| x.offset),
        segments,
        ended: sess.ended,
    });
    body(state, &s.name, "application/x-mpegURL", text.into_bytes())
}

/// Percent-encodes what a token may hold that a URL query may not.
fn urlencoding(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.~".contains(c) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32)
            }
        })
        .collect()
}

pub(super) async fn get_clip(state: &AppState, req: &Value) -> Result<Response, ApiError> {
    let s = retained_stream(state, req)?;
    let sel = req
        .get("ClipFragmentSelector")
        .filter(|v| v.is_object())
        .ok_or_else(|| invalid("ClipFragmentSelector is required"))?;
    let clock = match sel.get("FragmentSelectorType").and_then(Value::as_str) {
        Some("PRODUCER_TIMESTAMP") => Clock::Producer,
        Some("SERVER_TIMESTAMP") => Clock::Server,
        _ => {
            return Err(invalid(
                "ClipFragmentSelector.FragmentSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP",
            ));
        }
    };
    let range = sel
        .get("TimestampRange")
        .ok_or_else(|| invalid("ClipFragmentSelector.TimestampRange is required"))?;
    let at = |f: &str| {
        range
            .get(f)
            .ok_or_else(|| {
                invalid(format!(
                    "ClipFragmentSelector.TimestampRange.{f} is required"
                ))
            })
            .and_then(|v| timestamp_ms(v, f))
    };
    let (start, end) = (at("StartTimestamp")?, at("EndTimestamp")?);
    if end <= start {
        return Err(invalid(
            "the clip's EndTimestamp must be after its StartTimestamp",
        ));
    }
    // The first fragment is the one holding the start, as for GetMedia.
    let from = s.index.holding(clock, start).map_or(start, |b| b.at(clock));
    let mut chosen = Vec::new();
    let mut bytes = 0u64;
    for e in s.index.in_range(clock, from, end, 0, CLIP_FRAGMENTS_MAX) {
        if bytes + e.size > CLIP_BYTES_MAX && !chosen.is_empty() {
            break;
        }
        bytes += e.size;
        chosen.push(e);
    }
    if chosen.is_empty() {
        return Err(not_found(format!(
            "stream {} has no fragment in that range",
            s.name
        )));
    }
    let (mut tracks, mut frames) = (Vec::new(), Vec::new());
    for e in &chosen {
        let p = play(&s, e.offset).await?;
        if tracks.is_empty() {
            tracks = p.tracks;
        }
        frames.extend(p.frames);
    }
    let mp4 = tokio::task::spawn_blocking(move || mp4::clip(&tracks, &frames))
        .await
        .map_err(join_error)?
        .map_err(remux_error)?;
    Ok(body(state, &s.name, "video/mp4", mp4))
}
