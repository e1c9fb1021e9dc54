//! What the store knows about every visible stripe: where each column's
//! record is, and the lengths and checksums every column header repeats.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

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

/// Where a stored column's record is, packed for the read path's table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct HotColumn {
    offset: u64,
    generation: u64,
    len: u32,
    node: u16,
    stored: bool,
    /// The [`SegmentView`] of the segment the record is in (when stored).
    view: u32,
}

/// A node's mapping of one of its segments ([`Node::mapped`]), shared by
/// every column of the table stored in that segment: a healthy get of a
/// small blob slices it under the state lock instead of asking the node
/// (docs/PERFORMANCE.md, "The healthy get").
///
/// [`Node::mapped`]: crate::node::Node::mapped
struct SegmentView {
    node: u16,
    generation: u64,
    /// Hot columns stored in the segment; the view goes with the last.
    refs: u32,
    /// The furthest end of a column that named the view: a mapping
    /// shorter than this is never set (it was taken before a column
    /// landed past it).
    end: u64,
    /// The mapping, set by the first get that reads the segment after the
    /// view was made (empty when the node maps nothing then). Made anew,
    /// unset, when a column lands past its end, and by
    /// [`StripeTable::clear_views`].
    bytes: OnceLock<Bytes>,
}

impl std::fmt::Debug for SegmentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentView")
            .field("node", &self.node)
            .field("generation", &self.generation)
            .field("refs", &self.refs)
            .field("end", &self.end)
            .field("mapped", &self.bytes.get().map(Bytes::len))
            .finish()
    }
}

/// What a healthy get of a whole blob needs of its column: the stripe id,
/// where the record is, and the view of its segment ([`SegmentView`]):
/// `None` when the column has none (not stored, or a stripe of another
/// width), an unset `OnceLock` when no get has mapped it yet.
pub(crate) struct Hot<'t> {
    pub stripe_id: u64,
    pub stored: Option<(NodeId, RecordLocation)>,
    pub view: Option<&'t OnceLock<Bytes>>,
}

/// All visible stripes, in slots: the index refers to a stripe by its
/// `u32` slot (smaller than its `u64` id), and ids map to slots. A slot is
/// reused only after its stripe's generation was retired, when nothing in
/// the index refers to it any more.
///
/// Beside each stripe's `Arc<StripeInfo>`, a flat copy of what a healthy
/// get needs (the stripe id and where each column is stored) sits in two
/// arrays indexed by slot, so a get touches one cache line of the table
/// instead of following the slot's pointer to the stripe and on to its
/// columns (two cache misses on a large store).
#[derive(Debug, Default)]
pub(crate) struct StripeTable {
    slots: Vec<Option<Arc<StripeInfo>>>,
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
    /// Columns per stripe in `hot` (set by the first stripe; a stripe of
    /// another width is read through its `StripeInfo`).
    width: usize,
    /// `hot_ids[slot]`: the stripe id in the slot (`u64::MAX` when free).
    hot_ids: Vec<u64>,
    /// `hot[slot * width + column]`.
    hot: Vec<HotColumn>,
    /// The segment views hot columns name, by number (`None`: free).
    views: Vec<Option<SegmentView>>,
    free_views: Vec<u32>,
    /// The view of each (node, generation) that has one.
    view_ids: HashMap<(u16, u64), u32>,
    /// Bumped by every [`clear_views`](Self::clear_views): a get takes it
    /// under the state lock before asking its node for a mapping, and
    /// [`fill_view`](Self::fill_view) sets nothing if it moved meanwhile
    /// (the mapping may be of a handle let go since, or of a closed store).
    view_epoch: u64,
}

impl StripeTable {
    pub fn get(&self, slot: u32) -> Option<&Arc<StripeInfo>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The id of the stripe in `slot` and where its column `column` is
    /// stored, from the flat copy: what a healthy get needs. `None` when
    /// the slot is empty or its stripe is not in the flat copy.
    #[inline]
    pub fn stored(
        &self,
        slot: u32,
        column: u16,
    ) -> Option<(u64, Option<(NodeId, RecordLocation)>)> {
        self.hot(slot, column)
            .map(|hot| (hot.stripe_id, hot.stored))
    }

    /// [`stored`](Self::stored) with the view of the record's segment.
    #[inline]
    pub fn hot(&self, slot: u32, column: u16) -> Option<Hot<'_>> {
        let (id, hot) = self.hot_column(slot, column)?;
        if !hot.stored {
            return Some(Hot {
                stripe_id: id,
                stored: None,
                view: None,
            });
        }
        Some(Hot {
            stripe_id: id,
            stored: Some((
                NodeId(hot.node),
                RecordLocation {
                    generation: hot.generation,
                    offset: hot.offset,
                    len: hot.len,
                },
            )),
            view: self.view_of(hot).map(|v| &v.bytes),
        })
    }

    /// The stripe id in `slot` and the flat copy of its column `column`.
    #[inline]
    fn hot_column(&self, slot: u32, column: u16) -> Option<(u64, &HotColumn)> {
        let id = *self.hot_ids.get(slot as usize)?;
        if id == u64::MAX || usize::from(column) >= self.width {
            return None;
        }
        let hot = self
            .hot
            .get(slot as usize * self.width + usize::from(column))?;
        Some((id, hot))
    }

    /// The view a stored column names.
    #[inline]
    fn view_of(&self, hot: &HotColumn) -> Option<&SegmentView> {
        self.views.get(hot.view as usize).and_then(Option::as_ref)
    }

    /// The views' epoch: what a get passes to [`fill_view`](Self::fill_view)
    /// with the mapping it asked its node for after the state lock was let
    /// go.
    #[inline]
    pub fn view_epoch(&self) -> u64 {
        self.view_epoch
    }

    /// Sets the view of the segment column `column` of `slot` is stored in
    /// to `bytes` (the node's mapping, taken after the state lock was let
    /// go), if the column is still stored on `node` in `generation`, no
    /// view was cleared since the get read `epoch`
    /// ([`view_epoch`](Self::view_epoch)), `bytes` reaches the end of
    /// every column the view serves, and no other get set it meanwhile.
    ///
    /// The epoch keeps out a mapping of a node's handle that repair let
    /// go (a wiped node reopened, its segments stored anew at the same
    /// generations) and one taken as the store closed; the end keeps out
    /// a mapping taken before a column landed past it, which would
    /// otherwise stay set, too short for that column, until the next one
    /// landed.
    pub fn fill_view(
        &self,
        slot: u32,
        column: u16,
        node: NodeId,
        generation: u64,
        epoch: u64,
        bytes: Bytes,
    ) {
        if epoch != self.view_epoch {
            return;
        }
        let Some((_, hot)) = self.hot_column(slot, column) else {
            return;
        };
        if !hot.stored || hot.node != node.0 || hot.generation != generation {
            return;
        }
        let Some(view) = self.view_of(hot) else {
            return;
        };
        // An empty mapping (the node keeps none) is set whatever the end:
        // later gets then read through the node without asking again.
        if !bytes.is_empty() && (bytes.len() as u64) < view.end {
            return;
        }
        let _ = view.bytes.set(bytes);
    }

    /// Unsets every view (of `node` only, when given): the mappings go,
    /// and the next get of each segment asks its node again. For a node
    /// reopened, and a store closed. Moves the views' epoch, so a get
    /// that took a mapping before cannot set it after.
    pub fn clear_views(&mut self, node: Option<NodeId>) {
        self.view_epoch += 1;
        for view in self.views.iter_mut().flatten() {
            if node.is_none_or(|n| n.0 == view.node) {
                view.bytes = OnceLock::new();
            }
        }
    }

    /// Every view: its node, generation and mapped length (`None` while
    /// unset), sorted.
    #[cfg(any(test, feature = "testing"))]
    pub fn views(&self) -> Vec<(NodeId, u64, Option<usize>)> {
        let mut out: Vec<_> = self
            .views
            .iter()
            .flatten()
            .map(|v| (NodeId(v.node), v.generation, v.bytes.get().map(Bytes::len)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The number of the view of `node`'s segment `generation`, made if it
    /// has none, with one more reference; unset if set shorter than `end`
    /// (a column landed past the mapping: the next get maps again).
    fn acquire_view(&mut self, node: u16, generation: u64, end: u64) -> u32 {
        let id = match self.view_ids.get(&(node, generation)) {
            Some(&id) => id,
            None => {
                let view = SegmentView {
                    node,
                    generation,
                    refs: 0,
                    end: 0,
                    bytes: OnceLock::new(),
                };
                let id = match self.free_views.pop() {
                    Some(id) => {
                        self.views[id as usize] = Some(view);
                        id
                    }
                    None => {
                        self.views.push(Some(view));
                        u32::try_from(self.views.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                self.view_ids.insert((node, generation), id);
                id
            }
        };
        if let Some(Some(view)) = self.views.get_mut(id as usize) {
            view.refs += 1;
            view.end = view.end.max(end);
            if view.bytes.get().is_some_and(|b| (b.len() as u64) < end) {
                view.bytes = OnceLock::new();
            }
        }
        id
    }

    /// Drops a reference to view `id`; the last one frees it (and its
    /// mapping).
    fn release_view(&mut self, id: u32) {
        let Some(entry) = self.views.get_mut(id as usize) else {
            return;
        };
        if let Some(view) = entry {
            view.refs -= 1;
            if view.refs == 0 {
                self.view_ids.remove(&(view.node, view.generation));
                *entry = None;
                self.free_views.push(id);
            }
        }
    }

    /// Copies slot `slot`'s stripe (or its absence) into the flat arrays.
    fn refresh_hot(&mut self, slot: u32) {
        let info = self
            .slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .cloned();
        if self.width == 0
            && let Some(info) = &info
        {
            self.width = info.columns.len();
        }
        let width = self.width;
        let at = slot as usize;
        if self.hot_ids.len() <= at {
            self.hot_ids.resize(at + 1, u64::MAX);
            self.hot.resize((at + 1) * width, HotColumn::default());
        }
        let columns = match &info {
            Some(info) if info.columns.len() == width => {
                self.hot_ids[at] = info.stripe_id;
                Some(&info.columns)
            }
            _ => {
                self.hot_ids[at] = u64::MAX;
                None
            }
        };
        for c in 0..width {
            let mut hot = HotColumn::default();
            if let Some((node, loc)) = columns.and_then(|columns| columns[c].stored) {
                // The column's new reference is taken before its old one
                // goes, so a view it keeps is not made anew.
                let end = loc.offset.saturating_add(u64::from(loc.len));
                hot = HotColumn {
                    offset: loc.offset,
                    generation: loc.generation,
                    len: loc.len,
                    node: node.0,
                    stored: true,
                    view: self.acquire_view(node.0, loc.generation, end),
                };
            }
            let old = std::mem::replace(&mut self.hot[at * width + c], hot);
            if old.stored {
                self.release_view(old.view);
            }
        }
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
        self.refresh_hot(slot);
        slot
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// A table with each stripe in the slot given (a checkpoint's table:
    /// the index names stripes by slot). Slots left out are free.
    ///
    /// # Errors
    /// A slot or a stripe id given twice, or a slot past 2^31.
    pub fn restore(stripes: Vec<(u32, StripeInfo)>) -> std::result::Result<StripeTable, String> {
        let mut table = StripeTable::default();
        let end = stripes
            .iter()
            .map(|(slot, _)| *slot as usize + 1)
            .max()
            .unwrap_or(0);
        // Free slots are reused first, so the highest slot is below the
        // most stripes ever visible at once; a table mostly free (a
        // hostile one) is refused rather than allocated.
        if end > (stripes.len() * 4).max(1 << 20) {
            return Err(format!("slot {} for {} stripes", end - 1, stripes.len()));
        }
        table.slots = vec![None; end];
        for (slot, info) in stripes {
            let id = info.stripe_id;
            if table.slots[slot as usize].is_some() {
                return Err(format!("slot {slot} twice"));
            }
            if table.by_id.insert(id, slot).is_some() {
                return Err(format!("stripe {id} twice"));
            }
            table.slots[slot as usize] = Some(Arc::new(info));
        }
        table.free = (0..end as u32)
            .rev()
            .filter(|&slot| table.slots[slot as usize].is_none())
            .collect();
        for slot in 0..end as u32 {
            table.refresh_hot(slot);
        }
        Ok(table)
    }

    /// Replaces the stripe in `slot` with a changed copy, if it is still
    /// the stripe `stripe_id`.
    pub fn update(&mut self, slot: u32, stripe_id: u64, change: impl FnOnce(&mut StripeInfo)) {
        if let Some(Some(entry)) = self.slots.get_mut(slot as usize)
            && entry.stripe_id == stripe_id
        {
            change(Arc::make_mut(entry));
            self.refresh_hot(slot);
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
        let mut dropped = Vec::new();
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if let Some(info) = entry
                && !keep(info)
            {
                self.by_id.remove(&info.stripe_id);
                *entry = None;
                self.free.push(slot as u32);
                dropped.push(slot as u32);
            }
        }
        for slot in dropped {
            self.refresh_hot(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::CommitStamp;

    fn stripe(id: u64, stored: &[Option<(u16, u64)>]) -> StripeInfo {
        let n = stored.len();
        StripeInfo {
            stripe_id: id,
            generation: 1,
            columns: stored
                .iter()
                .map(|s| ColumnInfo {
                    len: 10,
                    checksum: 0,
                    home: None,
                    stored: s.map(|(node, offset)| {
                        (
                            NodeId(node),
                            RecordLocation {
                                generation: id,
                                offset,
                                len: 10,
                            },
                        )
                    }),
                })
                .collect(),
            header: ColumnHeader {
                stripe_id: id,
                generation: 1,
                data_count: 2,
                parity_count: (n - 2) as u16,
                column_index: 0,
                column_lens: vec![10; n],
                column_checksums: vec![0; n],
                placement: vec![String::new(); n],
                entry_table_lens: vec![0; 2],
                commit: CommitStamp::default(),
                handoffs: Vec::new(),
            },
        }
    }

    /// The flat copy a get reads agrees with the stripes through inserts,
    /// updates, retirement and slot reuse; a stripe of another width is
    /// left to its `StripeInfo`.
    #[test]
    fn the_flat_copy_follows_every_change() {
        let mut table = StripeTable::default();
        let check = |table: &StripeTable| {
            for (slot, info) in table.slots() {
                for (c, column) in info.columns.iter().enumerate() {
                    assert_eq!(
                        table.stored(slot, c as u16),
                        Some((info.stripe_id, column.stored)),
                        "slot {slot} column {c}"
                    );
                }
            }
        };
        let a = table.insert(stripe(10, &[Some((0, 5)), Some((1, 6)), None]));
        let b = table.insert(stripe(11, &[Some((2, 7)), None, Some((0, 8))]));
        check(&table);
        table.update(a, 10, |info| info.columns[1].stored = None);
        table.update(b, 99, |info| info.columns[1].stored = None); // not that stripe
        check(&table);
        assert_eq!(table.stored(a, 1), Some((10, None)));
        table.retain(|s| s.stripe_id != 10);
        assert_eq!(table.stored(a, 0), None);
        let c = table.insert(stripe(12, &[None, Some((1, 1)), Some((2, 2))]));
        assert_eq!(c, a, "the slot is reused");
        check(&table);
        let wide = table.insert(stripe(13, &[Some((0, 1)); 4]));
        assert_eq!(table.stored(wide, 0), None);
        assert_eq!(table.stored(99, 0), None);
        assert_eq!(table.stored(b, 7), None);
    }

    /// The live views, as (node, generation, references, mapped length).
    fn views(table: &StripeTable) -> Vec<(u16, u64, u32, Option<usize>)> {
        let mut out: Vec<_> = table
            .views
            .iter()
            .flatten()
            .map(|v| (v.node, v.generation, v.refs, v.bytes.get().map(Bytes::len)))
            .collect();
        out.sort_unstable();
        assert_eq!(
            out.len(),
            table.view_ids.len(),
            "the id map names every view"
        );
        out
    }

    /// Stored columns in one segment share its view; a view lives while a
    /// column names it, is set only for the column still there, is made
    /// anew when a column lands past its mapping, and is unset for a
    /// reopened node or a closed store.
    #[test]
    fn segment_views_follow_the_columns() {
        let mut table = StripeTable::default();
        // The test stripes put column records of stripe `id` in
        // generation `id`: these two share node 0's segment 10 by hand.
        let a = table.insert(stripe(10, &[Some((0, 0)), Some((1, 0)), None]));
        let mut second = stripe(11, &[Some((0, 10)), None, Some((2, 0))]);
        if let Some((_, loc)) = &mut second.columns[0].stored {
            loc.generation = 10;
        }
        let b = table.insert(second);
        assert_eq!(
            views(&table),
            [(0, 10, 2, None), (1, 10, 1, None), (2, 11, 1, None)]
        );
        // Set by a get of a column that is there, not by one that moved,
        // and only with a mapping that reaches every column of the view.
        let mapped = Bytes::from(vec![7u8; 20]);
        let epoch = table.view_epoch();
        table.fill_view(a, 0, NodeId(0), 10, epoch, mapped.slice(..19)); // short
        assert_eq!(
            views(&table)[0],
            (0, 10, 2, None),
            "short of column b's end"
        );
        table.fill_view(a, 0, NodeId(0), 10, epoch, mapped.clone());
        table.fill_view(a, 1, NodeId(2), 10, epoch, mapped.clone()); // not that node
        table.fill_view(a, 2, NodeId(0), 10, epoch, mapped.clone()); // not stored
        let hot = table.hot(b, 0).expect("stored");
        assert_eq!(hot.view.and_then(OnceLock::get), Some(&mapped), "shared");
        assert_eq!(hot.stripe_id, 11);
        assert!(table.hot(b, 1).expect("slot").view.is_none());
        assert_eq!(
            views(&table),
            [(0, 10, 2, Some(20)), (1, 10, 1, None), (2, 11, 1, None)]
        );
        // A set view is kept while the columns stay within it...
        table.update(b, 11, |info| info.columns[2].stored = None);
        assert_eq!(views(&table), [(0, 10, 2, Some(20)), (1, 10, 1, None)]);
        // ...and made anew when one lands past its end; a mapping taken
        // before it landed (too short for it) is not set then.
        let mut third = stripe(12, &[None, None, Some((0, 25))]);
        if let Some((_, loc)) = &mut third.columns[2].stored {
            loc.generation = 10;
        }
        let c = table.insert(third);
        assert_eq!(views(&table), [(0, 10, 3, None), (1, 10, 1, None)]);
        table.fill_view(a, 0, NodeId(0), 10, epoch, mapped.clone());
        assert_eq!(
            views(&table)[0],
            (0, 10, 3, None),
            "the mapping misses c's column"
        );
        table.fill_view(c, 2, NodeId(0), 10, epoch, Bytes::from(vec![1u8; 40]));
        // An empty mapping (the node keeps none) is set whatever the end.
        table.fill_view(a, 1, NodeId(1), 10, epoch, Bytes::new());
        assert_eq!(views(&table), [(0, 10, 3, Some(40)), (1, 10, 1, Some(0))]);
        // Retiring stripes drops their references; the last takes the view.
        table.retain(|s| s.stripe_id != 10);
        assert_eq!(views(&table), [(0, 10, 2, Some(40))]);
        table.clear_views(Some(NodeId(1)));
        assert_eq!(views(&table), [(0, 10, 2, Some(40))], "another node's");
        table.clear_views(Some(NodeId(0)));
        assert_eq!(views(&table), [(0, 10, 2, None)]);
        // A mapping a get took before the clear (of the handle let go, say)
        // is not set after it; one taken after is.
        let long = Bytes::from(vec![2u8; 64]);
        table.fill_view(c, 2, NodeId(0), 10, epoch, long.clone());
        assert_eq!(views(&table), [(0, 10, 2, None)], "an epoch ago");
        table.fill_view(c, 2, NodeId(0), 10, table.view_epoch(), long.clone());
        assert_eq!(views(&table), [(0, 10, 2, Some(64))]);
        let before_close = table.view_epoch();
        table.clear_views(None);
        table.fill_view(c, 2, NodeId(0), 10, before_close, long);
        assert_eq!(views(&table), [(0, 10, 2, None)], "closed meanwhile");
        table.retain(|_| false);
        assert_eq!(views(&table), []);
        assert_eq!(table.free_views.len(), 3, "numbers are reused");
        let d = table.insert(stripe(14, &[Some((2, 0)), None, None]));
        assert_eq!(views(&table), [(2, 14, 1, None)]);
        assert!(table.hot(d, 0).expect("stored").view.is_some());
    }
}
