//! Receipt handles: opaque to clients, checksummed, and scoped to the
//! queue that issued them. A handle names the queue's id, whether it came
//! from the dead letters, the record (shard, offset) and the receive it
//! came from (its serial): only the latest receive's handle is valid.
//!
//! Layout before base64url: version (1), kind (1), queue id (16), shard
//! (4), offset (8), serial (4), then a CRC32C of all that (4).

use base64::Engine;

const VERSION: u8 = 1;
const BYTES: usize = 1 + 1 + 16 + 4 + 8 + 4 + 4;

/// What a receipt handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub dead_letter: bool,
    pub queue: u128,
    pub shard: u32,
    pub offset: u64,
    pub serial: u32,
}

impl Handle {
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(BYTES);
        b.push(VERSION);
        b.push(u8::from(self.dead_letter));
        b.extend_from_slice(&self.queue.to_be_bytes());
        b.extend_from_slice(&self.shard.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.serial.to_be_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// The handle `s` encodes, if it is one of this queue's (`queue`).
    pub fn decode(s: &str, queue: u128) -> Result<Handle, &'static str> {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| "is not a receipt handle")?;
        if b.len() != BYTES || b[0] != VERSION {
            return Err("is not a receipt handle");
        }
        let (body, crc) = b.split_at(BYTES - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err("fails its checksum");
        }
        let word = |at: usize, n: usize| &body[at..at + n];
        let arr4 = |at| <[u8; 4]>::try_from(word(at, 4)).unwrap_or_default();
        let arr8 = |at| <[u8; 8]>::try_from(word(at, 8)).unwrap_or_default();
        let h = Handle {
            dead_letter: body[1] == 1,
            queue: u128::from_be_bytes(<[u8; 16]>::try_from(word(2, 16)).unwrap_or_default()),
            shard: u32::from_be_bytes(arr4(18)),
            offset: u64::from_be_bytes(arr8(22)),
            serial: u32::from_be_bytes(arr4(30)),
        };
        if h.queue != queue {
            return Err("was issued by another queue");
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_refuse_tampering_and_other_queues() {
        let h = Handle {
            dead_letter: true,
            queue: 0x1234_5678_9abc_def0_1122_3344_5566_7788,
            shard: 7,
            offset: 1 << 40,
            serial: 3,
        };
        let s = h.encode();
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(Handle::decode(&s, h.queue), Ok(h));
        assert_eq!(Handle::decode(&s, 1), Err("was issued by another queue"));
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&s)
            .unwrap();
        bytes[25] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(
            Handle::decode(&tampered, h.queue),
            Err("fails its checksum")
        );
        assert_eq!(
            Handle::decode("nope!", h.queue),
            Err("is not a receipt handle")
        );
        assert_eq!(Handle::decode("", h.queue), Err("is not a receipt handle"));
    }
}
