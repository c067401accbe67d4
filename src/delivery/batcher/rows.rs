//! A partition's records held as rows already decoded into the stream's
//! Parquet schema (see `delivery::shard::decoded`), each beside the offset
//! of the record it came from. Only where the log can give the records back
//! (the batch's upload holds their offsets, not them), so the rows are all
//! a batch needs: Parquet is written from them, and the error output and
//! the backup read the records again from the log.

use arrow_array::RecordBatch;

/// One record's place and size, beside its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowOf {
    pub offset: u64,
    pub arrival_ms: i64,
    /// The record's data bytes (what the size hint counts).
    pub bytes: u32,
}

/// Rows of one partition from one read chunk, in offset order: row `i` of
/// `batch` is the record `records[i]` describes.
#[derive(Debug)]
pub struct RowsPiece {
    pub batch: RecordBatch,
    pub records: Vec<RowOf>,
}

impl RowsPiece {
    /// What the piece's arrays take in memory, shared out over its rows.
    pub(super) fn held_per_row(&self) -> u64 {
        let rows = self.batch.num_rows().max(1) as u64;
        (self.batch.get_array_memory_size() as u64).div_ceil(rows) + 8
    }
}

/// A batch's rows: the pieces as they came, and their records' offsets
/// (ascending, one per row).
#[derive(Debug, Default)]
pub struct Rows {
    pieces: Vec<RecordBatch>,
    offsets: Vec<u64>,
}

impl Rows {
    pub(super) fn push(&mut self, piece: RecordBatch, records: &[RowOf]) {
        self.offsets.extend(records.iter().map(|r| r.offset));
        self.pieces.push(piece);
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The decoded rows, in order.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.pieces
    }

    /// Each row's record's offset, ascending.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    pub(super) fn first_offset(&self) -> Option<u64> {
        self.offsets.first().copied()
    }
}
