//! What the store knows about every visible stripe: where each column's
//! record is, and the lengths and checksums every column header repeats.

use std::collections::HashMap;
use std::sync::Arc;

use crate::format::ColumnHeader;
use crate::layout::{Layout, NodeId};
use crate::node::{RecordLocation, ScannedRecord};

/// One column of a stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnInfo {
    /// Stored length of the column (data columns may be shorter than the
    /// stripe; 0 means the column is all padding and was never stored).
    pub len: u32,
    /// crc32fast of the stored bytes.
    pub checksum: u32,
    /// The node the stripe's placement names for this column.
    pub home: Option<NodeId>,
    /// Where a copy of the record actually is, if one was found or written.
    pub stored: Option<(NodeId, RecordLocation)>,
}

impl ColumnInfo {
    /// True when the column holds bytes that must come from a node.
    pub fn is_stored_len(&self) -> bool {
        self.len > 0
    }

    /// True when a copy lives somewhere other than the placement's node.
    pub fn is_away(&self) -> bool {
        matches!((self.stored, self.home), (Some((at, _)), Some(home)) if at != home)
    }
}

/// A visible stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StripeInfo {
    pub stripe_id: u64,
    pub generation: u64,
    /// k+m columns; `columns[c]` for `c < k` are data columns.
    pub columns: Box<[ColumnInfo]>,
    /// The header every column record of the stripe carries (with the
    /// column index of whichever record it was taken from): repair writes
    /// rebuilt columns with it.
    pub header: ColumnHeader,
}

impl StripeInfo {
    /// The stripe as its headers describe it, with the records found.
    pub(crate) fn from_records(
        layout: &Layout,
        header: &ColumnHeader,
        records: &[(NodeId, ScannedRecord)],
    ) -> StripeInfo {
        let columns = (0..header.column_lens.len())
            .map(|c| {
                let home = header
                    .placement
                    .get(c)
                    .and_then(|name| layout.node_by_name(name));
                let mut found = records
                    .iter()
                    .filter(|(_, r)| usize::from(r.header.column_index) == c);
                // Prefer the copy at home; any other copy is "away".
                let stored = found
                    .clone()
                    .find(|(n, _)| Some(*n) == home)
                    .or_else(|| found.next())
                    .map(|(n, r)| (*n, r.location));
                ColumnInfo {
                    len: header.column_lens[c],
                    checksum: header.column_checksums[c],
                    home,
                    stored,
                }
            })
            .collect();
        StripeInfo {
            stripe_id: header.stripe_id,
            generation: header.generation,
            columns,
            header: header.clone(),
        }
    }

    /// Byte length of data column `column`'s entry table (0 for an empty or
    /// a parity column).
    pub fn entry_table_len(&self, column: usize) -> u32 {
        self.header
            .entry_table_lens
            .get(column)
            .copied()
            .unwrap_or(0)
    }
}

/// All visible stripes, in slots: the index refers to a stripe by its
/// `u32` slot (smaller than its `u64` id), and ids map to slots. A slot is
/// reused only after its stripe's generation was retired, when nothing in
/// the index refers to it any more.
#[derive(Debug, Default)]
pub(crate) struct StripeTable {
    slots: Vec<Option<Arc<StripeInfo>>>,
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
}

impl StripeTable {
    pub fn get(&self, slot: u32) -> Option<&Arc<StripeInfo>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub fn slot_of(&self, stripe_id: u64) -> Option<u32> {
        self.by_id.get(&stripe_id).copied()
    }

    /// Adds a stripe; returns its slot.
    pub fn insert(&mut self, info: StripeInfo) -> u32 {
        let id = info.stripe_id;
        let info = Some(Arc::new(info));
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = info;
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 stripes");
                self.slots.push(info);
                slot
            }
        };
        if let Some(old) = self.by_id.insert(id, slot) {
            // The same stripe published twice would be a committer bug.
            panic!("stripe {id} already in slot {old}");
        }
        slot
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Replaces the stripe in `slot` with a changed copy, if it is still
    /// the stripe `stripe_id`.
    pub fn update(&mut self, slot: u32, stripe_id: u64, change: impl FnOnce(&mut StripeInfo)) {
        if let Some(Some(entry)) = self.slots.get_mut(slot as usize)
            && entry.stripe_id == stripe_id
        {
            change(Arc::make_mut(entry));
        }
    }

    /// Every stripe with its slot.
    pub fn slots(&self) -> impl Iterator<Item = (u32, &Arc<StripeInfo>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32, s.as_ref()?)))
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<StripeInfo>> {
        self.slots.iter().flatten()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&StripeInfo) -> bool) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if let Some(info) = entry
                && !keep(info)
            {
                self.by_id.remove(&info.stripe_id);
                *entry = None;
                self.free.push(slot as u32);
            }
        }
    }
}
