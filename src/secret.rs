//! Key material: a 256-bit key read from a file or the environment, which
//! never shows itself in logs or debug output. Object encryption
//! ([`crate::encode::encrypt`]) and encryption at rest ([`crate::log::seal`])
//! both use it.

/// A 256-bit key; `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Parses 32 raw bytes, 64 hex characters or base64 of 32 bytes.
    pub fn parse(material: &[u8]) -> Result<SecretKey, String> {
        if material.len() == 32 {
            let mut k = [0u8; 32];
            k.copy_from_slice(material);
            return Ok(SecretKey(k));
        }
        let text = std::str::from_utf8(material)
            .map_err(|_| {
                "a key is 32 raw bytes, 64 hex characters or base64 of 32 bytes".to_string()
            })?
            .trim();
        use base64::Engine;
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| e.to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| {
                    "a key is 32 raw bytes, 64 hex characters or base64 of 32 bytes".to_string()
                })?
        };
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("the key is {} bytes; AES-256 needs 32", b.len()))?;
        Ok(SecretKey(arr))
    }
}
