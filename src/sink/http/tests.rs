//! Request ids: stable for ordinary records, distinct for every request of
//! a batch even where the user records of an aggregate share an offset.

use super::*;
use bytes::Bytes;

fn at(offset: u64) -> Record {
    Record {
        offset,
        arrival_ms: 0,
        key: Bytes::new(),
        data: Bytes::from_static(b"{}"),
    }
}

fn ids(offsets: &[u64], per: usize) -> Vec<String> {
    let records: Vec<Record> = offsets.iter().copied().map(at).collect();
    requests(&records, per)
        .map(|(chunk, into)| {
            let (first, last) = (chunk[0].offset, chunk[chunk.len() - 1].offset);
            request_id("log", "s", 0, (first, last), into)
        })
        .collect()
}

#[test]
fn ordinary_records_keep_the_id_of_their_offsets() {
    let h = Sha256::digest(b"log/s/0/1/2");
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    assert_eq!(
        ids(&[1, 2, 3, 4], 2),
        vec![
            uuid::Uuid::from_bytes(b).to_string(),
            request_id("log", "s", 0, (3, 4), 0)
        ]
    );
}

#[test]
fn requests_within_one_aggregate_have_ids_of_their_own() {
    // Offset 2 is an aggregate of five user records, cut over three requests.
    let records: Vec<Record> = [1, 2, 2, 2, 2, 2, 3].into_iter().map(at).collect();
    let into: Vec<usize> = requests(&records, 2).map(|(_, n)| n).collect();
    assert_eq!(into, vec![0, 1, 3, 0]);
    let got = ids(&[1, 2, 2, 2, 2, 2, 3], 2);
    let unique: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{got:?}");
    // Two requests wholly inside one aggregate.
    let got = ids(&[5, 5, 5, 5], 2);
    assert_ne!(got[0], got[1]);
}
