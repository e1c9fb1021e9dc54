//! What the store knows about every visible stripe: where each column's
//! record is, and the lengths and checksums every column header repeats.

use std::collections::HashMap;
use std::sync::Arc;

use crate::layout::NodeId;
use crate::node::RecordLocation;

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
    /// Byte length of each data column's entry table (k values).
    pub entry_table_lens: Box<[u32]>,
}

/// All visible stripes by id.
#[derive(Debug, Default)]
pub(crate) struct StripeTable {
    map: HashMap<u64, Arc<StripeInfo>>,
}

impl StripeTable {
    pub fn get(&self, stripe_id: u64) -> Option<Arc<StripeInfo>> {
        self.map.get(&stripe_id).cloned()
    }

    pub fn insert(&mut self, info: StripeInfo) {
        self.map.insert(info.stripe_id, Arc::new(info));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<StripeInfo>> {
        self.map.values()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&StripeInfo) -> bool) {
        self.map.retain(|_, s| keep(s));
    }
}
