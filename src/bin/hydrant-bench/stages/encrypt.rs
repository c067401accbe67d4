//! The encryption stages: AES-256-GCM of uncompressed JSON lines, with the
//! key the bench uses everywhere, and records sealed at rest in the log and
//! opened again (what a sealed stream adds per record).

use hydrant::encode::Compression;
use hydrant::encode::encrypt::Encryption;
use hydrant::encode::encrypt::SecretKey;
use hydrant::record::Record;

use super::{Stage, compress::json_lines, encode_stage};

/// One key of nines, in chunks of 64 KiB.
pub fn key() -> Encryption {
    Encryption {
        keys: vec![("bench".into(), SecretKey([9; 32]))],
        chunk_bytes: 64 << 10,
    }
}

/// `AES-256-GCM` over the log lines.
pub fn stage(logs: &[Record], logs_raw: usize) -> anyhow::Result<Stage> {
    encode_stage(
        "AES-256-GCM",
        logs,
        logs_raw,
        &json_lines(Compression::None, Some(key())),
    )
}

/// The name of the sealing stage for records of `label` (`1 KiB`, `100 B`).
pub fn seal_name(label: &str) -> String {
    format!("seal + open at rest ({label})")
}

/// Every record sealed as the log seals it, then opened as a reader opens
/// it, with the bench's key.
pub fn seal_stage(label: &str, frames: &[Record], raw: usize) -> anyhow::Result<Stage> {
    use hydrant::log::AppendRecord;
    use hydrant::log::seal::{Keyring, LogCipher};
    let keys = std::sync::Arc::new(Keyring::new(&key().keys));
    let cipher = LogCipher::new(keys, None);
    cipher
        .set_sealing(Some("bench"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut appends: Vec<AppendRecord> = frames
        .iter()
        .map(|f| AppendRecord {
            key: f.key.clone(),
            data: f.data.clone(),
            arrival_ms: f.arrival_ms,
        })
        .collect();
    let t = std::time::Instant::now();
    for chunk in appends.chunks_mut(500) {
        cipher.seal(chunk);
    }
    let mut stored: Vec<Record> = appends
        .into_iter()
        .zip(frames)
        .map(|(a, f)| Record {
            offset: f.offset,
            arrival_ms: a.arrival_ms,
            key: a.key,
            data: a.data,
        })
        .collect();
    cipher
        .open(&mut stored)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let el = t.elapsed();
    if stored.iter().zip(frames).any(|(a, b)| a.data != b.data) {
        anyhow::bail!("a sealed record opened to other bytes");
    }
    Ok(super::measured(
        &seal_name(label),
        raw,
        frames.len(),
        el,
        true,
    ))
}
