//! Recovery, phase 3: the stripe table and the index, from the entry tables
//! of the visible stripes, applied commit by commit in stripe-id order
//! (docs/DURABILITY.md, "Deletes and tombstones": D3).

use std::collections::{BTreeMap, BTreeSet};

use super::super::State;
use super::super::checkpoint::PendingIndex;
use super::super::index::Index;
use super::super::index::{BlobLoc, PartLoc};
use super::super::read::Reads;
use super::super::state::Changes;
use super::super::stripes::StripeInfo;
use crate::Result;
use crate::format::EntryFlags;
use crate::layout::Layout;

/// Entries decoded before open estimates the store's entry count from
/// them (see `build_state`).
const RESERVE_SAMPLE_ENTRIES: u64 = 4096;
/// The fewest entry-table bytes per entry the reservation assumes.
pub(super) const RESERVE_ENTRY_BYTES_MIN: u64 = 44;
/// Index changes gathered before they are applied in bucket order
/// ([`State::apply_changes`]): enough to walk a large table front to back
/// in one sweep, few enough to bound what open holds besides the index.
/// Small in unit tests, so that a tail of a few hundred changes is several
/// batches (`a_check_refused_mid_tail_falls_back_to_the_full_scan`).
const CHANGES_BATCH: usize = if cfg!(test) { 1 << 8 } else { 1 << 20 };

/// The table and index built, with the generations retire markers name.
pub(crate) struct Built {
    pub state: State,
    pub retired: BTreeSet<u64>,
    pub entry_tables_rebuilt: usize,
}

/// Phase 3: the index, from the visible stripes' entry tables.
pub(crate) struct IndexBuilder<'a> {
    pub layout: &'a Layout,
    pub reads: &'a Reads<'a>,
    /// The index's hash key, when it must not be random (the simulator).
    pub hash_key: Option<(u64, u64)>,
}

impl IndexBuilder<'_> {
    /// Builds the state from the visible stripes (each with its commit's
    /// first stripe id). Stripes and entries of retired generations are
    /// dropped.
    ///
    /// # Errors
    /// An entry table that can be neither read nor rebuilt.
    pub(crate) fn build_state(&self, visible: Vec<(StripeInfo, u64)>) -> Result<Built> {
        let state = State {
            index: self
                .hash_key
                .map_or_else(Default::default, super::super::index::Index::with_hash_key),
            ..State::default()
        };
        self.build_onto(state, visible, None)?
    }

    /// [`build_state`](Self::build_state) over `state` (a checkpoint's):
    /// the visible stripes are newer than every stripe in it. `pending`:
    /// the checkpoint's index, being checked on another thread while the
    /// stripes' entry tables are read (`state.index` is then empty, under
    /// the same hash key), and the room it needs; it replaces
    /// `state.index` before the first change is applied.
    ///
    /// # Errors
    /// As `build_state`. The inner error: the pending index was refused
    /// (open then scans every record instead).
    pub(crate) fn build_onto(
        &self,
        mut state: State,
        mut visible: Vec<(StripeInfo, u64)>,
        mut pending: Option<(PendingIndex, usize)>,
    ) -> Result<Result<Built>> {
        let k = self.layout.code().data_count;
        // Entries already in the state (a checkpoint's) are not counted
        // against the reservation for the stripes' entries.
        let base = state.index.len();
        visible.sort_by_key(|(s, _)| s.stripe_id);
        let order: Vec<(u64, u64)> = visible
            .iter()
            .map(|(s, commit)| (s.stripe_id, *commit))
            .collect();
        // Entry tables' bytes over all visible stripes: once the first
        // tables show the bytes per entry, the index reserves its table
        // for the whole store at once (growing it by doubling rehashed
        // every key about twice: a quarter of open's time at 10^6 blobs).
        // A table's claimed length counts only up to its column's.
        let table_bytes: u64 = visible
            .iter()
            .map(|(s, _)| {
                (0..k)
                    .map(|c| {
                        let column = s.columns.get(c).map_or(0, |col| col.len);
                        u64::from(s.entry_table_len(c).min(column))
                    })
                    .sum::<u64>()
            })
            .sum();
        let (mut sampled_bytes, mut sampled_entries, mut reserved) = (0u64, 0u64, false);
        for (info, _) in visible {
            state.add_stripe(info);
        }
        let mut retired: BTreeSet<u64> = BTreeSet::new();
        let mut rebuilt = 0;
        // Room for the first batch at once (the tail of an open from a
        // checkpoint is usually one): growing by doubling touches its
        // fresh memory twice.
        let batch = usize::try_from(table_bytes / RESERVE_ENTRY_BYTES_MIN)
            .unwrap_or(usize::MAX)
            .min(CHANGES_BATCH);
        let mut changes = Changes::with_capacity(batch, batch * 24);
        // Each entry's record in the arena is shorter than the entry.
        let arena_bytes = usize::try_from(table_bytes).unwrap_or(usize::MAX);
        let pending_at_start = pending.is_some();
        if !pending_at_start {
            state.index.reserve_arena(arena_bytes);
        }
        // The split blobs of the commit being read (whole only if every
        // part is in it), added after its other changes.
        let mut splits = Splits::new();
        let mut retire_markers: Vec<PartLoc> = Vec::new();
        let mut current_commit = None;
        for (stripe_id, commit) in order {
            let Some(slot) = state.stripes.slot_of(stripe_id) else {
                continue;
            };
            let Some(info) = state.stripes.get(slot).cloned() else {
                continue;
            };
            if current_commit != Some(commit) {
                end_commit(&state.index, &mut splits, &mut changes);
                if changes.len() >= CHANGES_BATCH {
                    if let Err(refused) = swap_in(&mut state, pending.take(), arena_bytes) {
                        return Ok(Err(refused));
                    }
                    // A pending index was made with its room: no estimate
                    // from samples.
                    reserved |= pending_at_start;
                    state.apply_changes(&mut changes);
                }
                current_commit = Some(commit);
            }
            for c in 0..k {
                let table_len = info.entry_table_len(c);
                if table_len == 0 {
                    continue;
                }
                let index = &state.index;
                let (count, was_rebuilt) =
                    self.reads
                        .with_entry_table(&info, c, table_len, |entries| {
                            for e in entries {
                                let loc = PartLoc {
                                    slot,
                                    offset: e.offset,
                                    len: e.len,
                                    checksum: e.checksum,
                                    column_index: c as u16,
                                };
                                if e.flags.contains(EntryFlags::RETIRE) {
                                    retire_markers.push(loc);
                                } else if e.flags.contains(EntryFlags::TOMBSTONE) {
                                    changes.push(index, e.key, None);
                                } else if e.part_count <= 1 {
                                    changes.push(index, e.key, Some(BlobLoc::Whole(loc)));
                                } else if u64::from(e.part_count) > super::super::PARTS_PER_BLOB_MAX
                                {
                                    tracing::warn!(
                                        part_count = e.part_count,
                                        "entry with an impossible part count skipped"
                                    );
                                } else {
                                    let split = splits.entry(e.key.to_vec()).or_insert_with(|| {
                                        (e.blob_len, vec![None; e.part_count as usize])
                                    });
                                    if let Some(p) = split.1.get_mut(e.part_index as usize) {
                                        *p = Some(loc);
                                    }
                                }
                            }
                            entries.len()
                        })?;
                rebuilt += usize::from(was_rebuilt);
                for loc in retire_markers.drain(..) {
                    retired.extend(self.reads.retired_generations(&info, &loc)?);
                }
                // A pending index was made with its room.
                if !reserved && pending.is_none() {
                    sampled_bytes += u64::from(table_len);
                    sampled_entries += count as u64;
                    if sampled_entries >= RESERVE_SAMPLE_ENTRIES {
                        reserved = true;
                        // At most one entry per 44 bytes of entry table (a
                        // 32-byte entry and a 12-byte key): short keys in
                        // the first tables must not size the table for the
                        // whole store (shorter keys grow it as before).
                        let estimate = (table_bytes * sampled_entries / sampled_bytes.max(1))
                            .min(table_bytes / RESERVE_ENTRY_BYTES_MIN);
                        state.index.reserve(
                            usize::try_from(estimate)
                                .unwrap_or(0)
                                .saturating_sub(state.index.len().saturating_sub(base)),
                        );
                    }
                }
            }
        }
        end_commit(&state.index, &mut splits, &mut changes);
        if let Err(refused) = swap_in(&mut state, pending.take(), arena_bytes) {
            return Ok(Err(refused));
        }
        state.apply_changes(&mut changes);
        drop_retired(&mut state, &retired);
        Ok(Ok(Built {
            state,
            retired,
            entry_tables_rebuilt: rebuilt,
        }))
    }
}

/// Puts the checked checkpoint index `pending` (with its room), if any, in
/// place of `state`'s empty one, with room in its arena for `arena_bytes`
/// of records. Returns why the check refused it.
fn swap_in(
    state: &mut State,
    pending: Option<(PendingIndex, usize)>,
    arena_bytes: usize,
) -> Result<()> {
    if let Some((index, room)) = pending {
        state.index = index.finish(room)?;
        state.index.reserve_arena(arena_bytes);
    }
    Ok(())
}

/// Drops every index entry with a part in a retired generation, and the
/// generations themselves: one pass over the index.
pub(crate) fn drop_retired(state: &mut State, retired: &BTreeSet<u64>) {
    if retired.is_empty() {
        return;
    }
    let stale: Vec<Vec<u8>> = state
        .index
        .iter()
        .filter(|(_, loc)| {
            loc.parts().iter().any(|p| {
                state
                    .stripes
                    .get(p.slot)
                    .is_some_and(|s| retired.contains(&s.generation))
            })
        })
        .map(|(k, _)| k.to_vec())
        .collect();
    for key in stale {
        tracing::warn!("index entry pointing into a retired generation dropped");
        state.remove_blob(&key);
    }
    for &generation in retired {
        state.drop_generation(generation);
    }
}

/// A commit's split blobs by key: the blob's length and its parts found.
/// In key order: the order they are indexed in decides the arena's, and
/// with it a checkpoint's bytes, which must not depend on a process's
/// random hash keys (the simulator found one seed in thousands whose
/// checkpoint bytes did).
type Splits = BTreeMap<Vec<u8>, (u64, Vec<Option<PartLoc>>)>;

/// Ends a commit: its split blobs whose every part is in it replace their
/// keys, after the commit's other changes (a tombstone removes its key, a
/// whole blob replaces it, in the order of the entries).
fn end_commit(index: &Index, splits: &mut Splits, changes: &mut Changes) {
    for (key, (blob_len, parts)) in std::mem::take(splits) {
        let parts: Option<Vec<PartLoc>> = parts.into_iter().collect();
        if let Some(parts) = parts {
            changes.push(index, &key, Some(BlobLoc::split(blob_len, parts.into())));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use crate::layout::Layout;
    use crate::{Options, Store};

    /// RS(4, 2) over three sites of two nodes: any one site may go.
    fn layout(root: &Path) -> Layout {
        let mut builder = Layout::builder().code(4, 2);
        for s in 0..3 {
            let dirs: Vec<(String, PathBuf)> = (0..2)
                .map(|n| (format!("s{s}n{n}"), root.join(format!("site{s}/n{n}"))))
                .collect();
            builder = builder.site(format!("site{s}"), |mut site| {
                for (name, dir) in &dirs {
                    site = site.node(name, dir.as_path());
                }
                site
            });
        }
        builder.build().expect("layout")
    }

    fn options(checkpoints: bool) -> Options {
        Options {
            checkpoints,
            checkpoint_every: 0,
            commit_interval: Duration::from_millis(1),
            ..Options::default()
        }
    }

    /// Writes values numbered `from..from + n` over 300 keys (each key
    /// changes every 300 writes: the tail overwrites the checkpoint's
    /// values), deleting a live key at every seventh.
    fn write(store: &Store, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, from: usize, n: usize) {
        for i in from..from + n {
            let m = i % 300;
            let key = format!("room-{}/msg-{m}", m % 7).into_bytes();
            if i % 7 == 3 && model.contains_key(&key) {
                store.delete(&key).expect("delete");
                model.remove(&key);
            } else {
                let value = format!("value {i}").into_bytes();
                store
                    .put(&key, bytes::Bytes::from(value.clone()))
                    .expect("put");
                model.insert(key, value);
            }
        }
    }

    fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
        store
            .keys_with_prefix(b"")
            .map(|key| {
                let value = store.get(&key).expect("get").expect("listed key present");
                (key, value.to_bytes().to_vec())
            })
            .collect()
    }

    /// A tail of several batches (`CHANGES_BATCH` is small in unit tests)
    /// that overwrites and deletes keys the checkpoint holds: the
    /// checkpoint's index is checked beside the first batch's entry tables
    /// and put in place at its end, in the middle of the tail. An intact
    /// copy of the checkpoint is used; a forged one whose records fail the
    /// check is refused there, and open scans every record instead (C3);
    /// each healthy and with a site gone. Every key holds its last write.
    #[test]
    fn a_check_refused_mid_tail_falls_back_to_the_full_scan() {
        for (xor, site_gone) in [(0, false), (0x80, false), (0, true), (0x80, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path();
            let mut model = BTreeMap::new();
            let store = Store::create(layout(root), options(true)).expect("create");
            write(&store, &mut model, 0, 400);
            store.checkpoint().expect("checkpoint");
            write(&store, &mut model, 400, 3 * super::CHANGES_BATCH);
            let forged = crate::store::forge_checkpoint(&store, xor).expect("forge");
            drop(store);
            if site_gone {
                std::fs::rename(root.join("site2"), root.join("site2-gone")).expect("burn");
            }
            let store = Store::open(layout(root), options(true)).expect("open");
            let what = format!("xor {xor:#x}, site gone: {site_gone}");
            let used = (xor == 0).then_some(forged);
            assert_eq!(store.open_report().checkpoint, used, "{what}");
            if xor == 0 {
                assert!(store.open_report().tail_stripes > 1, "{what}");
            }
            assert_eq!(contents(&store), model, "{what}");
            assert_eq!(store.health().columns_missing > 0, site_gone, "{what}");
            drop(store);
        }
    }
}
