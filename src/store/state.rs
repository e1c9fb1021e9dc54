//! What the running store knows: the stripe table, the index, the
//! generations' usage, and the columns waiting for repair.

use super::index::{BlobLoc, Index};
use super::stripes::StripeTable;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

/// The index and the stripe table, read and updated together, with the
/// per-generation byte counts compaction chooses by.
/// Partitions of [`State::apply_changes`]: 2^8, each a few thousand
/// changes of a batch of 2^20.
const PARTITION_BITS: u32 = 8;

/// Index changes gathered for [`State::apply_changes`]: keys packed in one
/// buffer, each hashed as it is added (while it is in the caches).
#[derive(Default)]
pub(crate) struct Changes {
    keys: Vec<u8>,
    items: Vec<Change>,
}

struct Change {
    hash: u64,
    seq: u64,
    key_at: usize,
    key_len: usize,
    /// `None`: the key is removed.
    loc: Option<BlobLoc>,
    /// The id of the key's record in the index's base, once looked up
    /// (`apply_changes`, before it inserts).
    found: Option<Option<u32>>,
}

impl Changes {
    /// Adds a change of `key` (hashed under `index`'s key) to the end.
    pub fn push(&mut self, index: &Index, key: &[u8], loc: Option<BlobLoc>) {
        self.items.push(Change {
            hash: index.hash_of(key),
            seq: self.items.len() as u64,
            key_at: self.keys.len(),
            key_len: key.len(),
            loc,
            found: None,
        });
        self.keys.extend_from_slice(key);
    }

    /// Changes with room for `items` changes and `key_bytes` of keys.
    pub fn with_capacity(items: usize, key_bytes: usize) -> Changes {
        Changes {
            keys: Vec::with_capacity(key_bytes),
            items: Vec::with_capacity(items),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// Batches of at least this many changes have their partitions sorted by
/// two threads (the simulator's small batches stay on one: the order is
/// the same either way, each partition's sort being on unique keys).
const PARALLEL_SORT_MIN: usize = 1 << 16;

#[derive(Debug, Default)]
pub(crate) struct State {
    pub index: Index,
    pub stripes: StripeTable,
    pub generations: BTreeMap<u64, GenerationUsage>,
}

/// Blob bytes a generation holds, and how many of them are still live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GenerationUsage {
    /// Stripes of the generation that are visible.
    pub stripes: u64,
    /// Column bytes stored per node summed over all columns (data + parity).
    pub column_bytes: u64,
    /// Bytes of blob parts written into the generation.
    pub blob_bytes: u64,
    /// Bytes of blob parts the index still points to.
    pub live_bytes: u64,
    /// Column bytes no stripe needs any more: handoff copies whose column
    /// is home again, and stripes open discarded.
    pub stale_column_bytes: u64,
}

impl GenerationUsage {
    /// The useful fraction of the generation: live blob bytes over blob
    /// bytes written, times the column bytes still needed over all column
    /// bytes stored. Compaction rewrites generations where it is low.
    pub fn useful_ratio(&self) -> f64 {
        let live = if self.blob_bytes == 0 {
            0.0
        } else {
            self.live_bytes as f64 / self.blob_bytes as f64
        };
        let stored = self.column_bytes + self.stale_column_bytes;
        let needed = if stored == 0 {
            1.0
        } else {
            self.column_bytes as f64 / stored as f64
        };
        live * needed
    }
}

impl State {
    /// Forgets where column `column` of `stripe_id` is (its record is
    /// damaged): reads go degraded and repair rebuilds it.
    pub fn forget_column(&mut self, stripe_id: u64, column: usize) {
        let slot = self
            .stripes
            .slots()
            .find(|(_, stripe)| stripe.stripe_id == stripe_id)
            .map(|(slot, _)| slot);
        if let Some(slot) = slot {
            self.stripes.update(slot, stripe_id, |info| {
                if let Some(col) = info.columns.get_mut(column) {
                    col.stored = None;
                }
            });
        }
    }

    /// Marks every column stored on `id` as missing (the node came back
    /// empty): reads go degraded and repair rebuilds them.
    pub fn forget_columns_on(&mut self, id: crate::layout::NodeId) {
        let held: Vec<(u32, u64)> = self
            .stripes
            .slots()
            .filter(|(_, stripe)| {
                stripe
                    .columns
                    .iter()
                    .any(|c| c.stored.is_some_and(|(n, _)| n == id))
            })
            .map(|(slot, stripe)| (slot, stripe.stripe_id))
            .collect();
        for (slot, stripe_id) in held {
            self.stripes.update(slot, stripe_id, |info| {
                for column in &mut info.columns {
                    if column.stored.is_some_and(|(n, _)| n == id) {
                        column.stored = None;
                    }
                }
            });
        }
    }

    /// Adds a visible stripe; returns its slot.
    pub fn add_stripe(&mut self, info: super::stripes::StripeInfo) -> u32 {
        let usage = self.generations.entry(info.generation).or_default();
        usage.stripes += 1;
        usage.column_bytes += info.columns.iter().map(|c| u64::from(c.len)).sum::<u64>();
        self.stripes.insert(info)
    }

    pub(crate) fn generation_of(&self, slot: u32) -> Option<u64> {
        self.stripes.get(slot).map(|s| s.generation)
    }

    /// Counts `bytes` of a column record as no longer needed.
    pub fn add_stale(&mut self, generation: u64, bytes: u64) {
        self.generations
            .entry(generation)
            .or_default()
            .stale_column_bytes += bytes;
    }

    /// Adds `delta` (positive or negative) to the live bytes of every
    /// generation the blob has parts in.
    pub(crate) fn account(&mut self, loc: &BlobLoc, live: bool, written: bool) {
        for part in loc.parts() {
            let Some(generation) = self.generation_of(part.slot) else {
                continue;
            };
            let usage = self.generations.entry(generation).or_default();
            let len = u64::from(part.len);
            if written {
                usage.blob_bytes += len;
            }
            if live {
                usage.live_bytes += len;
            } else {
                usage.live_bytes = usage.live_bytes.saturating_sub(len);
            }
        }
    }

    /// A newly written blob becomes the key's value.
    pub fn insert_blob(&mut self, key: &[u8], loc: BlobLoc) {
        self.account(&loc, true, true);
        if let Some(old) = self.index.insert(key, loc) {
            self.account(&old, false, false);
        }
    }

    /// The id of the newest stripe holding part of `loc`.
    pub fn stripe_id_of(&self, loc: &BlobLoc) -> Option<u64> {
        loc.parts()
            .iter()
            .filter_map(|p| self.stripes.get(p.slot).map(|s| s.stripe_id))
            .max()
    }

    /// Applies `changes`, each key's in the order given, the keys in the
    /// order of the index's table buckets (open's bulk inserts: walking a
    /// large table front to back instead of at random). The usage sums
    /// come out the same in any order of the keys.
    ///
    /// The changes are first moved, with their keys, into partitions by
    /// the top bits of their bucket (one pass, reading in order): each
    /// partition is then sorted and applied with its keys in the caches,
    /// where a sort of the whole batch would read the keys at random.
    pub fn apply_changes(&mut self, changes: &mut Changes) {
        let mask = self
            .index
            .bucket_mask(self.index.len() + changes.items.len());
        let shift = (64 - mask.leading_zeros()).saturating_sub(PARTITION_BITS);
        let partition = |c: &Change| ((c.hash & mask) >> shift) as usize;
        let mut counts = [(0usize, 0usize); 1 << PARTITION_BITS];
        for c in &changes.items {
            let p = &mut counts[partition(c)];
            p.0 += 1;
            p.1 += c.key_len;
        }
        let (mut at, mut key_at) = (0, 0);
        let mut starts = [(0usize, 0usize); 1 << PARTITION_BITS];
        for (start, (items, key_bytes)) in starts.iter_mut().zip(counts) {
            *start = (at, key_at);
            at += items;
            key_at += key_bytes;
        }
        let bounds: Vec<usize> = starts.iter().map(|s| s.0).chain([at]).collect();
        let mut moved: Vec<Option<Change>> = Vec::with_capacity(changes.items.len());
        moved.resize_with(changes.items.len(), || None);
        let mut keys = vec![0u8; key_at];
        for mut c in changes.items.drain(..) {
            let (at, key_at) = &mut starts[partition(&c)];
            let (Some(from), Some(to)) = (
                changes.keys.get(c.key_at..c.key_at + c.key_len),
                keys.get_mut(*key_at..*key_at + c.key_len),
            ) else {
                continue;
            };
            to.copy_from_slice(from);
            c.key_at = *key_at;
            *key_at += c.key_len;
            if let Some(slot) = moved.get_mut(*at) {
                *slot = Some(c);
            }
            *at += 1;
        }
        changes.keys.clear();
        // Each partition by bucket, then in the order given (each key's
        // changes keep theirs): (bucket, seq) is unique, so the sort is
        // the same on one thread or two. In a batch sorted by two threads
        // they also look each key up in the index's base (a checkpoint's
        // records, which never change under the index): at open from a
        // checkpoint these lookups of the tail's keys, random reads across
        // the whole base, were half the inserts' time on one thread. A
        // small batch (a commit's) leaves them to the inserts, which skip
        // them for keys the overlay holds already.
        let index = &self.index;
        let with_base = index.has_base() && moved.len() >= PARALLEL_SORT_MIN;
        let sort_parts = |parts: &mut [Option<Change>], bounds: &[usize]| {
            let base = bounds.first().copied().unwrap_or(0);
            for window in bounds.windows(2) {
                if let Some(part) = parts.get_mut(window[0] - base..window[1] - base) {
                    part.sort_unstable_by_key(|c| c.as_ref().map(|c| (c.hash & mask, c.seq)));
                }
            }
            if with_base {
                for c in parts.iter_mut().flatten() {
                    if let Some(key) = keys.get(c.key_at..c.key_at + c.key_len) {
                        c.found = Some(index.base_id(c.hash, key));
                    }
                }
            }
        };
        if moved.len() >= PARALLEL_SORT_MIN {
            // Two runs of whole partitions, split where the count halves.
            let half = bounds.partition_point(|&b| b < moved.len() / 2);
            let (first, second) = moved.split_at_mut(bounds[half]);
            std::thread::scope(|s| {
                s.spawn(|| sort_parts(first, &bounds[..=half]));
                sort_parts(second, &bounds[half..]);
            });
        } else {
            sort_parts(&mut moved, &bounds);
        }
        for change in moved.iter_mut().filter_map(Option::take) {
            let Some(key) = keys.get(change.key_at..change.key_at + change.key_len) else {
                continue;
            };
            let old = match change.loc {
                Some(loc) => {
                    self.account(&loc, true, true);
                    self.index.insert_found(change.hash, key, loc, change.found)
                }
                None => self.index.remove_found(change.hash, key, change.found),
            };
            if let Some(old) = old {
                self.account(&old, false, false);
            }
        }
    }

    pub fn remove_blob(&mut self, key: &[u8]) {
        if let Some(old) = self.index.remove(key) {
            self.account(&old, false, false);
        }
    }

    /// Forgets a retired generation's stripes.
    pub fn drop_generation(&mut self, generation: u64) {
        self.stripes.retain(|s| s.generation != generation);
        self.generations.remove(&generation);
    }
}

/// Columns found missing or bad (by reads, scans and open), waiting for
/// the next repair: (stripe id, column index).
#[derive(Debug, Default)]
pub(crate) struct RepairQueue(Mutex<BTreeSet<(u64, u16)>>);

impl RepairQueue {
    pub(crate) fn push(&self, stripe_id: u64, column_index: u16) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((stripe_id, column_index));
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Empties the queue and returns what was in it.
    pub(crate) fn take(&self) -> BTreeSet<(u64, u16)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::store::index::PartLoc;

    fn whole(n: u32) -> BlobLoc {
        BlobLoc::Whole(PartLoc {
            slot: 0,
            offset: n,
            len: 1,
            checksum: n,
            column_index: 0,
        })
    }

    /// A batch applied in bucket order ends as applying it change by
    /// change would: each key's last change wins (a removal included), on
    /// one thread (small batches) and with the partitions sorted by two,
    /// with the first keys in the index's overlay or in a base under it
    /// (a large batch looks its keys up in the base ahead).
    #[test]
    fn a_batch_of_changes_ends_as_its_changes_in_order() {
        for (count, in_base) in [
            (1_000usize, false),
            (3 * PARALLEL_SORT_MIN, false),
            (1_000, true),
            (3 * PARALLEL_SORT_MIN, true),
        ] {
            let mut state = State::default();
            let mut expected: HashMap<Vec<u8>, Option<u32>> = HashMap::new();
            for i in 0..count / 4 {
                let key = format!("k{i}").into_bytes();
                state.index.insert(&key, whole(u32::MAX));
                expected.insert(key, Some(u32::MAX));
            }
            if in_base {
                let mut next = crate::store::index::tests::xorshift(count as u64);
                let base = crate::store::index::tests::base_of(&state.index, &mut next);
                state.index = Index::from_base(base, 0);
                assert!(state.index.has_base());
            }
            let mut changes = Changes::default();
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ count as u64;
            for n in 0..count as u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Few keys for many changes: most keys change many times.
                let key = format!("k{}", x % (count as u64 / 3)).into_bytes();
                let value = (x >> 40).is_multiple_of(4).then_some(n);
                changes.push(&state.index, &key, value.map(whole));
                expected.insert(key, value);
            }
            state.apply_changes(&mut changes);
            assert_eq!(changes.len(), 0);
            for (key, value) in &expected {
                assert_eq!(state.index.get(key), value.map(whole), "{count} {in_base}");
            }
            assert_eq!(
                state.index.len(),
                expected.values().filter(|v| v.is_some()).count()
            );
        }
    }
}
