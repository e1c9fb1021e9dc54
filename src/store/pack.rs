//! Packing blobs into the data columns of an open stripe.
//!
//! A small blob goes whole into the least-filled data column that has room.
//! A larger blob (over `split_len_min`) is cut into k equal parts, at most a
//! column target each, so its parts land in k different columns and the
//! columns of a stripe stay level: parity is as long as the longest data
//! column, so one big part next to near-empty columns would cost m times its
//! size in parity. A blob larger than k columns spans several stripes. Packing only arranges bytes: sealing (entry
//! tables, parity) and writing happen in `commit.rs`.

use crate::format::{self, Entry, EntryFlags};

/// One entry placed in a column, with its offset still relative to the
/// column's blob area (the entry table's length is known only at seal).
#[derive(Clone, Debug)]
pub(crate) struct PlacedEntry {
    pub entry: Entry,
    /// Which request of the commit it belongs to.
    pub request: usize,
}

#[derive(Debug, Default)]
pub(crate) struct ColumnBuf {
    pub entries: Vec<PlacedEntry>,
    /// Blob bytes, in entry order.
    pub blobs: Vec<u8>,
    /// Encoded length of the entry table for `entries`.
    pub table_len: usize,
}

impl ColumnBuf {
    fn fill(&self) -> usize {
        self.table_len + self.blobs.len()
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.blobs.clear();
        self.table_len = format::entry_table_len(&[]);
    }
}

/// The stripe being filled.
#[derive(Debug)]
pub(crate) struct OpenStripe {
    pub columns: Vec<ColumnBuf>,
    column_len_target: usize,
    split_len_min: usize,
}

/// What `place` did with a blob.
pub(crate) enum Placed {
    /// Every part fitted in the open stripe.
    Done,
    /// The open stripe is full: seal it, then call `place` again with
    /// `resume_part` as the first part to place.
    StripeFull { resume_part: u32 },
}

impl OpenStripe {
    pub fn new(data_count: usize, column_len_target: usize, split_len_min: usize) -> OpenStripe {
        let mut columns: Vec<ColumnBuf> = (0..data_count).map(|_| ColumnBuf::default()).collect();
        for c in &mut columns {
            c.clear();
        }
        OpenStripe {
            columns,
            column_len_target,
            split_len_min,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.columns.iter().all(|c| c.entries.is_empty())
    }

    pub fn clear(&mut self) {
        for c in &mut self.columns {
            c.clear();
        }
    }

    /// Sets the `blob_len` of the entry placed last (a tombstone records the
    /// newest generation that may hold a value it hides there).
    pub fn set_last_blob_len(&mut self, blob_len: u64) {
        if let Some(entry) = self
            .columns
            .iter_mut()
            .flat_map(|c| c.entries.last_mut())
            .max_by_key(|e| (e.request, e.entry.part_index))
        {
            entry.entry.blob_len = blob_len;
        }
    }

    /// The length of each part (the last may be shorter) a blob of
    /// `blob_len` bytes is cut into.
    pub fn part_len(&self, blob_len: usize) -> usize {
        if blob_len <= self.split_len_min {
            return blob_len.max(1);
        }
        blob_len
            .div_ceil(self.columns.len())
            .min(self.column_len_target)
            .max(1)
    }

    /// How many parts a blob of `blob_len` bytes is cut into.
    pub fn part_count(&self, blob_len: usize) -> u32 {
        let parts = blob_len.div_ceil(self.part_len(blob_len)).max(1);
        u32::try_from(parts).unwrap_or(u32::MAX)
    }

    /// Places parts `first_part..` of a blob (or a tombstone when `value` is
    /// `None`). Returns `StripeFull` when the open stripe has no room left for
    /// the next part.
    pub fn place(
        &mut self,
        request: usize,
        key: &[u8],
        value: Option<&[u8]>,
        flags: EntryFlags,
        first_part: u32,
    ) -> Placed {
        let cost = entry_cost(key.len());
        let blob_len = value.map_or(0, <[u8]>::len);
        let part_count = self.part_count(blob_len);
        let part_len_max = self.part_len(blob_len);
        for part_index in first_part..part_count {
            let start = part_index as usize * part_len_max;
            let end = (start + part_len_max).min(blob_len);
            let bytes = value.map_or(&[][..], |v| &v[start..end]);
            let need = cost + bytes.len();
            // Least-filled column with room; an empty column takes any part,
            // since parts are at most the column target.
            let choice = self
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.entries.is_empty() || c.fill() + need <= self.column_len_target)
                .min_by_key(|(_, c)| c.fill())
                .map(|(i, _)| i);
            let Some(column) = choice else {
                return Placed::StripeFull {
                    resume_part: part_index,
                };
            };
            let col = &mut self.columns[column];
            let offset = col.blobs.len() as u32;
            col.blobs.extend_from_slice(bytes);
            col.table_len += cost;
            col.entries.push(PlacedEntry {
                request,
                entry: Entry {
                    key: key.to_vec(),
                    flags,
                    offset,
                    len: bytes.len() as u32,
                    checksum: crc32fast::hash(bytes),
                    part_index,
                    part_count,
                    blob_len: blob_len as u64,
                },
            });
        }
        Placed::Done
    }
}

/// Encoded bytes one entry with a key of `key_len` adds to an entry table.
pub(crate) fn entry_cost(key_len: usize) -> usize {
    let probe = Entry {
        key: vec![0u8; key_len],
        flags: EntryFlags::NONE,
        offset: 0,
        len: 0,
        checksum: 0,
        part_index: 0,
        part_count: 1,
        blob_len: 0,
    };
    format::entry_table_len(std::slice::from_ref(&probe)) - format::entry_table_len(&[])
}
