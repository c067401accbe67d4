//! AES-256-GCM object encryption, streamed in chunks (docs/encryption.md
//! specifies the format byte by byte).
//!
//! The header names the key id, the chunk size and a random 8-byte nonce
//! prefix. Chunk *i* is sealed with nonce `prefix || i (u32 BE)` and with the
//! whole header plus a last-chunk flag as associated data, so reordering,
//! truncation (at any byte or chunk boundary), and any change to header or
//! body fail authentication. Pure CPU work: run it off the async runtime.

use std::io::{self, Write};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aead::{Nonce, Tag};
use rand::RngExt;

pub const MAGIC: &[u8; 4] = b"HYE1";
pub const VERSION: u8 = 1;
pub const ALG_AES_256_GCM: u8 = 1;
pub const TAG_BYTES: usize = 16;
pub const CHUNK_BYTES_MIN: u32 = 1024;
pub const CHUNK_BYTES_MAX: u32 = 16 << 20;
pub const DEFAULT_CHUNK_BYTES: u32 = 64 << 10;

pub use crate::secret::SecretKey;

/// Client-side encryption of a stream's objects.
#[derive(Clone, Debug)]
pub struct Encryption {
    /// (key id, key); the first encrypts, every one decrypts.
    pub keys: Vec<(String, SecretKey)>,
    pub chunk_bytes: u32,
}

impl Encryption {
    /// The key new objects are encrypted with.
    pub fn current(&self) -> (&str, &SecretKey) {
        // Validation guarantees at least one key.
        let (id, key) = &self.keys[0];
        (id, key)
    }

    pub fn key(&self, id: &str) -> Option<&SecretKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }
}

/// Why an object could not be decrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    #[error("not a Hydrant encrypted object (bad magic or header)")]
    NotEncrypted,
    #[error("unsupported format version {0} or algorithm {1}")]
    Unsupported(u8, u8),
    #[error("chunk size {0} is outside {CHUNK_BYTES_MIN}..={CHUNK_BYTES_MAX}")]
    BadChunkSize(u32),
    #[error("no key with id `{0}` is configured")]
    UnknownKey(String),
    #[error("the object is truncated: it ends inside its header or has no chunk")]
    Truncated,
    #[error(
        "chunk {0} fails authentication: the object was truncated, reordered or tampered with, or the key is wrong"
    )]
    Tampered(u64),
}

fn header(key_id: &str, chunk: u32, prefix: &[u8; 8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(19 + key_id.len());
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.push(ALG_AES_256_GCM);
    h.extend_from_slice(&chunk.to_le_bytes());
    h.extend_from_slice(prefix);
    h.push(key_id.len() as u8);
    h.extend_from_slice(key_id.as_bytes());
    h
}

fn nonce(prefix: &[u8; 8], i: u64) -> Nonce<Aes256Gcm> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    n[8..].copy_from_slice(&(i as u32).to_be_bytes());
    Nonce::<Aes256Gcm>::from(n)
}

/// A writer that encrypts what is written to it into `inner`, chunk by chunk.
/// Call [`EncryptingWriter::finish`] to seal the last chunk.
pub struct EncryptingWriter<W: Write> {
    inner: W,
    cipher: Aes256Gcm,
    header: Vec<u8>,
    prefix: [u8; 8],
    chunk: usize,
    buf: Vec<u8>,
    index: u64,
}

impl<W: Write> EncryptingWriter<W> {
    /// Writes the header and returns the writer. `key_id` is 1..=255 bytes.
    pub fn new(mut inner: W, key_id: &str, key: &SecretKey, chunk_bytes: u32) -> io::Result<Self> {
        if key_id.is_empty() || key_id.len() > 255 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "key id must be 1 to 255 bytes",
            ));
        }
        let chunk_bytes = chunk_bytes.clamp(CHUNK_BYTES_MIN, CHUNK_BYTES_MAX);
        let mut prefix = [0u8; 8];
        rand::rng().fill(&mut prefix);
        let header = header(key_id, chunk_bytes, &prefix);
        inner.write_all(&header)?;
        Ok(EncryptingWriter {
            inner,
            cipher: Aes256Gcm::new(&key.0.into()),
            header,
            prefix,
            chunk: chunk_bytes as usize,
            buf: Vec::with_capacity(chunk_bytes as usize + TAG_BYTES),
            index: 0,
        })
    }

    fn seal(&mut self, len: usize, last: bool) -> io::Result<()> {
        if self.index > u32::MAX as u64 {
            return Err(io::Error::other(
                "object too large for one encryption stream",
            ));
        }
        let mut aad = self.header.clone();
        aad.push(last as u8);
        let n = nonce(&self.prefix, self.index);
        let tag = self
            .cipher
            .encrypt_inout_detached(&n, &aad, (&mut self.buf[..len]).into())
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.inner.write_all(&self.buf[..len])?;
        self.inner.write_all(&tag)?;
        self.buf.drain(..len);
        self.index += 1;
        Ok(())
    }

    /// Seals the last chunk (possibly empty) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let len = self.buf.len();
        self.seal(len, true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        // A full chunk is sealed only once more bytes follow it, so that the
        // last chunk is always the one `finish` seals with the last flag.
        while self.buf.len() > self.chunk {
            self.seal(self.chunk, false)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The key id an encrypted object names, without decrypting it.
pub fn key_id(data: &[u8]) -> Result<&str, DecryptError> {
    let (_, id, _) = parse_header(data)?;
    Ok(id)
}

fn parse_header(data: &[u8]) -> Result<(usize, &str, u32), DecryptError> {
    if data.len() < 19 || &data[..4] != MAGIC {
        return Err(if data.len() >= 4 && &data[..4] != MAGIC {
            DecryptError::NotEncrypted
        } else {
            DecryptError::Truncated
        });
    }
    if data[4] != VERSION || data[5] != ALG_AES_256_GCM {
        return Err(DecryptError::Unsupported(data[4], data[5]));
    }
    let chunk = u32::from_le_bytes([data[6], data[7], data[8], data[9]]);
    if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_MAX).contains(&chunk) {
        return Err(DecryptError::BadChunkSize(chunk));
    }
    let id_len = data[18] as usize;
    let end = 19 + id_len;
    let id = data.get(19..end).ok_or(DecryptError::Truncated)?;
    let id = std::str::from_utf8(id).map_err(|_| DecryptError::NotEncrypted)?;
    if id_len == 0 {
        return Err(DecryptError::NotEncrypted);
    }
    Ok((end, id, chunk))
}

/// Decrypts a whole object; `key_for` looks a key up by its id.
pub fn decrypt(
    data: &[u8],
    key_for: impl Fn(&str) -> Option<SecretKey>,
) -> Result<Vec<u8>, DecryptError> {
    let (hlen, id, chunk) = parse_header(data)?;
    let key = key_for(id).ok_or_else(|| DecryptError::UnknownKey(id.to_string()))?;
    let header = &data[..hlen];
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&data[10..18]);
    let cipher = Aes256Gcm::new(&key.0.into());
    let body = &data[hlen..];
    if body.len() < TAG_BYTES {
        return Err(DecryptError::Truncated);
    }
    let sealed = chunk as usize + TAG_BYTES;
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0usize;
    let mut i = 0u64;
    while pos < body.len() {
        let end = (pos + sealed).min(body.len());
        let last = end == body.len();
        let part = &body[pos..end];
        if part.len() < TAG_BYTES || i > u32::MAX as u64 {
            return Err(DecryptError::Tampered(i));
        }
        let (ct, tag) = part.split_at(part.len() - TAG_BYTES);
        let mut aad = header.to_vec();
        aad.push(last as u8);
        let start = out.len();
        out.extend_from_slice(ct);
        let tag = Tag::<Aes256Gcm>::try_from(tag).map_err(|_| DecryptError::Tampered(i))?;
        cipher
            .decrypt_inout_detached(&nonce(&prefix, i), &aad, (&mut out[start..]).into(), &tag)
            .map_err(|_| DecryptError::Tampered(i))?;
        pos = end;
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
