//! Encryption at rest: a stream's records sealed with AES-256-GCM before the
//! log stores them, opened as they are read.
//!
//! A sealed record looks like any other to the stores below (segment frames
//! on disk, JetStream messages), so both hold it without a format change:
//!
//! ```text
//! key  = 0xFF | key id (UTF-8)
//! data = nonce (12) | AES-256-GCM(key_len u16 LE | partition key | data) | tag (16)
//! AAD  = "HYL1" | key id | arrival_ms i64 LE
//! ```
//!
//! `0xFF` never begins UTF-8 text, and every partition key the APIs accept
//! is text (Firehose records have none), so a key starting with it marks a
//! sealed record; the partition key itself is sealed with the data. A nonce
//! is a random 8-byte prefix, chosen per [`Sealer`] and again every 2^32
//! records, followed by a 32-bit counter, so no nonce repeats under a key.
//!
//! Keys come from `log.keys` in the config and, on a single node, the
//! built-in key Hydrant generates once under `data_dir/keys` (AWS-owned keys
//! in the APIs). Every key listed opens records; one key per stream seals.
//! A log records which keys ever sealed it, with a check value of each
//! (`keys.json`), so a missing or wrong key stops the stream from opening
//! instead of failing on the first read. A record that fails authentication
//! is an error, never data.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use rand::RngExt;
use sha2::Sha256;

use super::AppendRecord;
use crate::record::Record;
use crate::secret::SecretKey;

/// First byte of a sealed record's key.
pub const SEALED_MARK: u8 = 0xFF;
/// The id of the key Hydrant generates itself (Firehose's `AWS_OWNED_CMK`,
/// Kinesis's `alias/aws/kinesis`).
pub const BUILTIN_KEY: &str = "builtin";
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const AAD_MAGIC: &[u8; 4] = b"HYL1";
const KEYS_FILE: &str = "keys.json";
/// Longest key id (config validation refuses longer ones).
const KEY_ID_BYTES_MAX: usize = 255;
const AAD_BYTES_MAX: usize = 4 + KEY_ID_BYTES_MAX + 8;

/// Why a record could not be sealed or opened, or a key not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("no log key `{0}` is configured (log.keys)")]
    UnknownKey(String),
    #[error(
        "the log holds records sealed with key `{0}`, which is not configured; list it in log.keys"
    )]
    MissingKey(String),
    #[error(
        "log key `{0}` is not the key this log was sealed with (its check value differs); restore the original key"
    )]
    WrongKey(String),
    #[error(
        "a sealed record at offset {0} is malformed or fails authentication (wrong key, or tampered)"
    )]
    Tampered(u64),
    #[error("cannot record the log's keys in {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// One key of the keyring.
pub struct LogKey {
    pub id: String,
    /// For side outputs sealed as objects (error output, backups).
    secret: SecretKey,
    cipher: Aes256Gcm,
    /// HMAC-SHA256 of a fixed text under the key, hex: says whether a key
    /// with this id is the same key, without revealing it.
    check: String,
    builtin: bool,
}

fn check_value(key: &SecretKey) -> String {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key.0)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    m.update(b"hydrant log key check v1");
    hex::encode(&m.finalize().into_bytes()[..16])
}

impl LogKey {
    fn new(id: String, key: &SecretKey, builtin: bool) -> LogKey {
        LogKey {
            id,
            secret: key.clone(),
            cipher: Aes256Gcm::new(&key.0.into()),
            check: check_value(key),
            builtin,
        }
    }
}

/// Every key this daemon can open records with.
#[derive(Default, Clone)]
pub struct Keyring {
    keys: Vec<Arc<LogKey>>,
}

/// Lists the configured keys' ids and check values (never the keys; the
/// built-in key is left out, as it is not configuration).
impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .filter(|k| !k.builtin)
                    .map(|k| (&k.id, &k.check)),
            )
            .finish()
    }
}

impl Keyring {
    /// The configured keys, in their order (the first is the default).
    pub fn new(keys: &[(String, SecretKey)]) -> Keyring {
        Keyring {
            keys: keys
                .iter()
                .map(|(id, k)| Arc::new(LogKey::new(id.clone(), k, false)))
                .collect(),
        }
    }

    /// These keys and the built-in one, read from `data_dir/keys/builtin.key`
    /// or generated there the first time (the file readable only by this
    /// user).
    pub fn with_builtin(&self, data_dir: &Path) -> io::Result<Keyring> {
        let key = builtin_key(data_dir)?;
        let mut keys = self.keys.clone();
        keys.retain(|k| !k.builtin);
        keys.push(Arc::new(LogKey::new(BUILTIN_KEY.into(), &key, true)));
        Ok(Keyring { keys })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<LogKey>> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The key `id` itself, to seal objects with (see
    /// [`crate::encode::encrypt`]).
    pub fn secret(&self, id: &str) -> Option<&SecretKey> {
        self.get(id).map(|k| &k.secret)
    }

    /// The key a stream seals with when it names none: the first
    /// configured, else the built-in one.
    pub fn default_id(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| !k.builtin)
            .or_else(|| self.keys.iter().find(|k| k.builtin))
            .map(|k| k.id.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, by id.
    pub fn secrets(&self) -> impl Iterator<Item = (&str, &SecretKey)> {
        self.keys.iter().map(|k| (k.id.as_str(), &k.secret))
    }
}

/// The built-in key under `data_dir`, if it was ever generated.
pub fn read_builtin(data_dir: &Path) -> io::Result<Option<SecretKey>> {
    let path = data_dir.join("keys").join(format!("{BUILTIN_KEY}.key"));
    match std::fs::read(&path) {
        Ok(bytes) => SecretKey::parse(&bytes)
            .map(Some)
            .map_err(|e| io::Error::other(format!("the built-in log key {}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the built-in key, generating it the first time: its directory is
/// made readable only by this user before the key is written into it.
fn builtin_key(data_dir: &Path) -> io::Result<SecretKey> {
    if let Some(k) = read_builtin(data_dir)? {
        return Ok(k);
    }
    let dir = data_dir.join("keys");
    let mut k = [0u8; 32];
    rand::rng().fill(&mut k);
    std::fs::create_dir_all(&dir)?;
    restrict(&dir, 0o700)?;
    let path = dir.join(format!("{BUILTIN_KEY}.key"));
    super::files::write_atomic(&path, hex::encode(k).as_bytes())?;
    restrict(&path, 0o600)?;
    Ok(SecretKey(k))
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> io::Result<()> {
    Ok(())
}

/// Seals records under one key, never repeating a nonce.
struct Sealer {
    key: Arc<LogKey>,
    /// The stored key of every record it seals: the mark and the key id.
    stored_key: Bytes,
    /// (random prefix, next counter): a new prefix when the counter wraps.
    nonces: Mutex<([u8; 8], u32)>,
}

impl Sealer {
    fn new(key: Arc<LogKey>) -> Sealer {
        let mut stored_key = Vec::with_capacity(1 + key.id.len());
        stored_key.push(SEALED_MARK);
        stored_key.extend_from_slice(key.id.as_bytes());
        Sealer {
            key,
            stored_key: Bytes::from(stored_key),
            nonces: Mutex::new((rand::rng().random(), 0)),
        }
    }

    /// The prefix and first counter of `n` fresh nonces.
    fn reserve(&self, n: usize) -> ([u8; 8], u32) {
        let mut g = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let n = n as u64;
        if u64::from(g.1) + n > u64::from(u32::MAX) {
            *g = (rand::rng().random(), 0);
        }
        let start = *g;
        g.1 = (u64::from(g.1) + n) as u32;
        start
    }

    fn seal(&self, r: &mut AppendRecord, prefix: &[u8; 8], counter: u32) {
        let id = self.key.id.as_bytes();
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..8].copy_from_slice(prefix);
        nonce[8..].copy_from_slice(&counter.to_be_bytes());
        let plain = 2 + r.key.len() + r.data.len();
        let mut out = Vec::with_capacity(NONCE_BYTES + plain + TAG_BYTES);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&(r.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&r.key);
        out.extend_from_slice(&r.data);
        let mut aad_buf = [0u8; AAD_BYTES_MAX];
        let tag = self.key.cipher.encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(nonce),
            aad(&mut aad_buf, id, r.arrival_ms),
            (&mut out[NONCE_BYTES..]).into(),
        );
        // Encryption fails only for a message over GCM's 64 GiB limit.
        let Ok(tag) = tag else {
            unreachable!("a record is far below AES-GCM's message limit")
        };
        out.extend_from_slice(&tag);
        r.key = self.stored_key.clone();
        r.data = Bytes::from(out);
    }
}

/// The associated data of a record, written into `buf` (no allocation per
/// record): the format's magic, the key id (at most 255 bytes, as config
/// validation and the stored key's format bound it) and the arrival time.
fn aad<'b>(buf: &'b mut [u8; AAD_BYTES_MAX], key_id: &[u8], arrival_ms: i64) -> &'b [u8] {
    let id = &key_id[..key_id.len().min(KEY_ID_BYTES_MAX)];
    let n = AAD_MAGIC.len() + id.len() + 8;
    buf[..4].copy_from_slice(AAD_MAGIC);
    buf[4..4 + id.len()].copy_from_slice(id);
    buf[4 + id.len()..n].copy_from_slice(&arrival_ms.to_le_bytes());
    &buf[..n]
}

/// Whether a stored record is sealed.
pub fn is_sealed(key: &[u8]) -> bool {
    key.first() == Some(&SEALED_MARK)
}

/// A stream's encryption at rest: the keyring its records are opened with
/// and the key new records are sealed with, if any. Shared by the stream's
/// shards, so a change applies to all of them at once.
pub struct LogCipher {
    keys: Arc<Keyring>,
    sealer: RwLock<Option<Arc<Sealer>>>,
    /// Where the log records its keys (`keys.json`); None in JetStream.
    record: Option<PathBuf>,
}

impl LogCipher {
    /// A cipher that seals nothing yet. `dir` is the log's directory, where
    /// the keys that ever sealed it are recorded (None: not recorded).
    pub fn new(keys: Arc<Keyring>, dir: Option<&Path>) -> LogCipher {
        LogCipher {
            keys,
            sealer: RwLock::new(None),
            record: dir.map(|d| d.join(KEYS_FILE)),
        }
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// Checks that every key that ever sealed this log is configured, and
    /// is the same key.
    pub fn verify(&self) -> Result<(), SealError> {
        for (id, check) in self.recorded()? {
            match self.keys.get(&id) {
                None => return Err(SealError::MissingKey(id)),
                Some(k) if k.check != check => return Err(SealError::WrongKey(id)),
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn recorded(&self) -> Result<Vec<(String, String)>, SealError> {
        let Some(path) = &self.record else {
            return Ok(Vec::new());
        };
        let fail = |message: String| SealError::Io {
            path: path.clone(),
            message,
        };
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// The id of the key new records are sealed with; None: stored in clear.
    pub fn sealing_key(&self) -> Option<String> {
        let g = self.sealer.read().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|s| s.key.id.clone())
    }

    /// Seals new records with key `id` from now on (None: stores them in
    /// clear). The key is recorded as one of the log's before any record
    /// is sealed with it.
    pub fn set_sealing(&self, id: Option<&str>) -> Result<(), SealError> {
        let sealer = match id {
            None => None,
            Some(id) => {
                let key = self
                    .keys
                    .get(id)
                    .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
                self.remember(key)?;
                Some(Arc::new(Sealer::new(key.clone())))
            }
        };
        let mut g = self.sealer.write().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().map(|s| &s.key.id) != sealer.as_ref().map(|s| &s.key.id) {
            *g = sealer;
        }
        Ok(())
    }

    fn remember(&self, key: &LogKey) -> Result<(), SealError> {
        let Some(path) = &self.record else {
            return Ok(());
        };
        let mut all = self.recorded()?;
        if all
            .iter()
            .any(|(id, check)| *id == key.id && *check == key.check)
        {
            return Ok(());
        }
        all.retain(|(id, _)| *id != key.id);
        all.push((key.id.clone(), key.check.clone()));
        let bytes = serde_json::to_vec(&all).map_err(|e| SealError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        super::files::write_atomic(path, &bytes).map_err(|e| SealError::Io {
            path: path.clone(),
            message: e.to_string(),
        })
    }

    /// Seals `records` in place if the stream seals; CPU work of about a
    /// microsecond per kilobyte.
    pub fn seal(&self, records: &mut [AppendRecord]) {
        let sealer = {
            let g = self.sealer.read().unwrap_or_else(|p| p.into_inner());
            match g.as_ref() {
                Some(s) => s.clone(),
                None => return,
            }
        };
        let (prefix, first) = sealer.reserve(records.len());
        for (i, r) in records.iter_mut().enumerate() {
            sealer.seal(r, &prefix, first.wrapping_add(i as u32));
        }
    }

    /// Opens every sealed record of `records` in place.
    pub fn open(&self, records: &mut [Record]) -> Result<(), SealError> {
        for r in records.iter_mut().filter(|r| is_sealed(&r.key)) {
            self.open_one(r)?;
        }
        Ok(())
    }

    fn open_one(&self, r: &mut Record) -> Result<(), SealError> {
        let id = std::str::from_utf8(&r.key[1..]).map_err(|_| SealError::Tampered(r.offset))?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| SealError::MissingKey(id.to_string()))?;
        let bad = || SealError::Tampered(r.offset);
        if r.data.len() < NONCE_BYTES + 2 + TAG_BYTES {
            return Err(bad());
        }
        let body_end = r.data.len() - TAG_BYTES;
        let nonce: [u8; NONCE_BYTES] = r.data[..NONCE_BYTES].try_into().map_err(|_| bad())?;
        let tag: [u8; TAG_BYTES] = r.data[body_end..].try_into().map_err(|_| bad())?;
        let mut plain = r.data[NONCE_BYTES..body_end].to_vec();
        let mut aad_buf = [0u8; AAD_BYTES_MAX];
        key.cipher
            .decrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                aad(&mut aad_buf, id.as_bytes(), r.arrival_ms),
                (&mut plain[..]).into(),
                &Tag::<Aes256Gcm>::from(tag),
            )
            .map_err(|_| bad())?;
        let key_len = usize::from(u16::from_le_bytes([plain[0], plain[1]]));
        if 2 + key_len > plain.len() {
            return Err(bad());
        }
        let plain = Bytes::from(plain);
        r.key = plain.slice(2..2 + key_len);
        r.data = plain.slice(2 + key_len..);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
