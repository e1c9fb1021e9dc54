//! Parity verification and column diagnosis.

use super::engine;
use super::{COLUMN_COUNT_MAX, Codec, ColumnSet};
use crate::{Error, Result};

/// Parity is recomputed this many bytes of each column at a time, so the
/// scratch of a verify stays at m x 64 KiB whatever the column length (and
/// the recomputed tile is compared while it is still in L1/L2).
pub const VERIFY_TILE_LEN: usize = 64 * 1024;

/// Reusable buffer for [`Codec::verify`]: keep one per thread and pass it to
/// every call, so verification does not allocate once warm.
#[derive(Debug, Default)]
pub struct VerifyScratch {
    parity: Vec<u8>,
}

impl VerifyScratch {
    /// An empty scratch; it grows (once) on first use.
    pub fn new() -> VerifyScratch {
        VerifyScratch::default()
    }
}

/// What [`Codec::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    parity_mismatch: ColumnSet,
    checksum_mismatch: ColumnSet,
}

impl VerifyReport {
    /// True when every parity column matches the data and every supplied
    /// checksum matches its column.
    pub fn is_consistent(&self) -> bool {
        self.parity_mismatch.is_empty() && self.checksum_mismatch.is_empty()
    }

    /// True when every parity column equals the parity recomputed from the
    /// data columns.
    pub fn parity_matches(&self) -> bool {
        self.parity_mismatch.is_empty()
    }

    /// Parity columns (indices k..k+m) that differ from the parity
    /// recomputed from the data columns. A damaged data column makes every
    /// parity column differ.
    pub fn parity_mismatch(&self) -> ColumnSet {
        self.parity_mismatch
    }

    /// Columns whose crc32 differs from the checksum supplied for them
    /// (empty when no checksums were supplied).
    pub fn checksum_mismatch(&self) -> ColumnSet {
        self.checksum_mismatch
    }

    /// The best diagnosis of which columns are damaged: the columns that
    /// fail their checksum if any do; otherwise the parity columns that
    /// disagree with the data. Without checksums, a damaged data column
    /// shows up as "every parity column disagrees": the fault is then in
    /// the data, but which data column cannot be told from parity alone.
    pub fn inconsistent_columns(&self) -> ColumnSet {
        if self.checksum_mismatch.is_empty() {
            self.parity_mismatch
        } else {
            self.checksum_mismatch
        }
    }
}

pub(super) fn verify(
    codec: &Codec,
    columns: &[&[u8]],
    checksums: Option<&[u32]>,
    scratch: &mut VerifyScratch,
) -> Result<VerifyReport> {
    let (k, m, n) = (
        codec.data_count(),
        codec.parity_count(),
        codec.column_count(),
    );
    if columns.len() != n {
        return Err(Error::invalid(format!(
            "verify needs all {n} columns, got {}",
            columns.len()
        )));
    }
    let column_len = columns.iter().map(|c| c.len()).max().unwrap_or(0);
    if columns[k..].iter().any(|c| c.len() != column_len) {
        return Err(Error::invalid(
            "verify: parity columns differ in length, or a data column is longer than them",
        ));
    }
    if let Some(checksums) = checksums
        && checksums.len() != n
    {
        return Err(Error::invalid(format!(
            "verify: {} checksums for {n} columns",
            checksums.len()
        )));
    }

    let mut checksum_mismatch = ColumnSet::new();
    if let Some(checksums) = checksums {
        for (column_index, (column, &expected)) in columns.iter().zip(checksums).enumerate() {
            if crc32fast::hash(column) != expected {
                checksum_mismatch.insert(column_index);
            }
        }
    }

    let mut parity_mismatch = ColumnSet::new();
    let tile_len = column_len.min(VERIFY_TILE_LEN);
    if tile_len > 0 {
        if scratch.parity.len() < m * tile_len {
            scratch.parity.resize(m * tile_len, 0);
        }
        let (data, parity) = columns.split_at(k);
        let mut start = 0;
        while start < column_len {
            let end = (start + tile_len).min(column_len);
            let mut inputs: [&[u8]; COLUMN_COUNT_MAX] = [&[]; COLUMN_COUNT_MAX];
            for (tile, column) in inputs.iter_mut().zip(data) {
                // A short data column: what it has of the tile, the rest
                // taken as zeros.
                *tile = &column[start.min(column.len())..end.min(column.len())];
            }
            let mut outputs: [&mut [u8]; COLUMN_COUNT_MAX] = std::array::from_fn(|_| &mut [][..]);
            for (tile, buffer) in outputs
                .iter_mut()
                .zip(scratch.parity.chunks_exact_mut(tile_len))
            {
                *tile = &mut buffer[..end - start];
            }
            engine::apply_padded(
                codec.engine_impl(),
                codec.encode_tables(),
                &inputs[..k],
                &mut outputs[..m],
            );
            for (j, (computed, stored)) in outputs[..m].iter().zip(parity).enumerate() {
                if **computed != stored[start..end] {
                    parity_mismatch.insert(k + j);
                }
            }
            start = end;
        }
    }
    Ok(VerifyReport {
        parity_mismatch,
        checksum_mismatch,
    })
}
