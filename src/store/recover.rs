//! Open: rebuild the stripe table and the index from the column records of
//! every reachable node. Nothing outside the columns is needed.
//!
//! Which stripes become visible:
//! - every header names the stripe ids of the commit acknowledged before it
//!   (`acked_first_stripe_id..=acked_last_stripe_id`). A stripe so named was
//!   acknowledged: it must be decodable (at least k of its columns reachable),
//!   or `open` fails listing it, because a blob would be lost;
//! - a stripe nobody names belongs to the newest commit(s), which may have
//!   been cut short by a crash: visible if decodable, discarded if not. It
//!   was never acknowledged, so discarding it loses nothing promised, and a
//!   visible one is whole (every blob in it reads back);
//! - an unnamed stripe older than the newest named one belongs to a commit
//!   that failed: discarded.
//!
//! Entry tables are applied commit by commit, in commit order. A commit holds
//! at most one operation per key (see `commit.rs`), so a blob's parts are all
//! in one commit; a blob whose parts are not all visible is not applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Inner;
use super::State;
use super::commit::WriterStart;
use super::index::{BlobLoc, PartLoc};
use super::stripes::{ColumnInfo, StripeInfo};
use crate::format::{self, ColumnHeader, EntryFlags};
use crate::layout::NodeId;
use std::sync::Arc;

use crate::node::{Node, Scan, ScannedRecord};
use crate::{Error, Result};

/// What open found, for `health()` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Stripes visible after open.
    pub stripes_visible: usize,
    /// Stripes of commits that never completed, discarded.
    pub stripes_discarded: usize,
    /// Regions of segments that failed their checksums and were skipped.
    pub corrupt_regions: usize,
    /// Bytes cut from the end of segments: a torn write, or damage at the
    /// very end that cannot be told from one.
    pub tail_bytes_truncated: u64,
    /// Column records whose header disagreed with the rest of their stripe.
    pub inconsistent_records: usize,
    /// Entry tables rebuilt from other columns (their node was down or the
    /// table was damaged).
    pub entry_tables_rebuilt: usize,
    /// Blobs in the index after open.
    pub blobs: usize,
}

/// Records a node must hold, all placed on one other node and none on
/// itself, before open calls the layout's names and paths inconsistent
/// (a node that only took a few handoff columns is not that).
const LAYOUT_LIE_RECORDS_MIN: usize = 8;

/// One node's scan: the node and every generation's records, or why not.
type NodeScan = (NodeId, Arc<dyn Node>, Result<Vec<Scan>>);

struct Found {
    header: ColumnHeader,
    records: Vec<(NodeId, ScannedRecord)>,
}

impl Inner {
    /// Rebuilds the stripes and the index; returns where the writer resumes.
    pub(crate) fn recover(&self) -> Result<(State, WriterStart, OpenReport)> {
        let code = self.layout.code();
        let (k, m) = (code.data_count, code.parity_count);
        let mut report = OpenReport::default();

        // 1. Scan every reachable node.
        let mut by_stripe: BTreeMap<u64, Found> = BTreeMap::new();
        // Nodes are scanned in parallel (a remote node is latency-bound, a
        // local one verifies every payload checksum).
        let scanned: Vec<NodeScan> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .ids()
                .filter_map(|id| Some((id, self.nodes.get(id)?)))
                .map(|(id, node)| {
                    s.spawn(move || {
                        let scans = node.generations().and_then(|gens| {
                            gens.into_iter()
                                .map(|g| node.scan(g))
                                .collect::<Result<Vec<_>>>()
                        });
                        (id, node, scans)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for (id, node, scanned) in scanned {
            let scans = match scanned {
                Ok(s) => s,
                Err(e) => {
                    self.nodes.mark_down(id, format!("scan failed: {e}"));
                    continue;
                }
            };
            // Records placed on this node, and the most named other node.
            let mut home_here = 0usize;
            let mut elsewhere: HashMap<&str, usize> = HashMap::new();
            for scan in &scans {
                for rec in &scan.records {
                    let home = rec
                        .header
                        .placement
                        .get(usize::from(rec.header.column_index));
                    match home {
                        Some(name) if name == node.name() => home_here += 1,
                        Some(name) => *elsewhere.entry(name.as_str()).or_default() += 1,
                        None => {}
                    }
                }
            }
            if home_here == 0
                && let Some((other, count)) = elsewhere.iter().max_by_key(|(_, c)| **c)
                && *count >= LAYOUT_LIE_RECORDS_MIN
            {
                return Err(Error::InvalidLayout {
                    reason: format!(
                        "the directory of node {} holds {count} column records placed on node \
                         {other} and none placed on {}",
                        node.name(),
                        node.name()
                    ),
                    fix: "check the layout's node names and paths: a directory keeps the node \
                          name it was first written under"
                        .into(),
                });
            }
            for scan in scans {
                report.corrupt_regions += scan.corrupt.len();
                report.tail_bytes_truncated += scan.truncated_tail_bytes;
                for region in &scan.corrupt {
                    tracing::warn!(node = %node.name(), generation = region.generation,
                        offset = region.offset, reason = %region.reason, "corrupt region skipped");
                }
                for rec in scan.records {
                    let header = &rec.header;
                    if usize::from(header.data_count) != k || usize::from(header.parity_count) != m
                    {
                        return Err(Error::InvalidLayout {
                            reason: format!(
                                "node {} holds stripe {} coded RS({}, {}), but the layout says RS({k}, {m})",
                                node.name(),
                                header.stripe_id,
                                header.data_count,
                                header.parity_count
                            ),
                            fix: "open the store with the layout it was written with".into(),
                        });
                    }
                    match by_stripe.get_mut(&header.stripe_id) {
                        Some(found) => {
                            if same_stripe(&found.header, header) {
                                found.records.push((id, rec));
                            } else {
                                report.inconsistent_records += 1;
                            }
                        }
                        None => {
                            by_stripe.insert(
                                header.stripe_id,
                                Found {
                                    header: rec.header.clone(),
                                    records: vec![(id, rec)],
                                },
                            );
                        }
                    }
                }
            }
        }

        // 2. Which commits were acknowledged.
        let mut named: Vec<(u64, u64)> = by_stripe
            .values()
            .flat_map(|f| f.records.iter())
            .map(|(_, r)| {
                (
                    r.header.commit.acked_first_stripe_id,
                    r.header.commit.acked_last_stripe_id,
                )
            })
            .filter(|(first, _)| *first != 0)
            .collect();
        named.sort_unstable();
        named.dedup();
        let max_named = named.iter().map(|r| r.1).max().unwrap_or(0);
        let is_named = |id: u64| named.iter().any(|&(a, b)| a <= id && id <= b);

        // 3. Decide visibility. A named stripe must be decodable. An unnamed
        //    commit is all or nothing: visible only if its stripes are
        //    contiguous from its first id and every one is decodable.
        let mut stripes: Vec<StripeInfo> = Vec::new();
        let mut commit_of: HashMap<u64, u64> = HashMap::new();
        let mut lost: Vec<(u64, u64)> = Vec::new();
        let mut lost_nodes: Vec<String> = Vec::new();
        let max_seen = by_stripe.keys().next_back().copied().unwrap_or(0);
        // Unnamed candidates grouped by commit: (stripe id, decodable, info).
        let mut unnamed: BTreeMap<u64, Vec<(u64, bool, StripeInfo)>> = BTreeMap::new();
        for (stripe_id, found) in &by_stripe {
            let info = self.stripe_info(&found.header, &found.records);
            let present = info
                .columns
                .iter()
                .filter(|c| c.len == 0 || c.stored.is_some())
                .count();
            let decodable = present >= k;
            let commit = found.header.commit.commit_first_stripe_id;
            if is_named(*stripe_id) {
                if decodable {
                    commit_of.insert(*stripe_id, commit);
                    stripes.push(info);
                    continue;
                }
                lost.push((*stripe_id, found.header.generation));
                for (c, col) in info.columns.iter().enumerate() {
                    if col.len > 0 && col.stored.is_none() {
                        let name = &found.header.placement[c];
                        if !lost_nodes.contains(name) {
                            lost_nodes.push(name.clone());
                        }
                    }
                }
            } else if *stripe_id < max_named {
                // A commit that failed: no later commit acknowledged it.
                report.stripes_discarded += 1;
            } else {
                unnamed
                    .entry(commit)
                    .or_default()
                    .push((*stripe_id, decodable, info));
            }
        }
        let mut newest_visible: Option<(u64, u64)> = None;
        for (commit, members) in unnamed {
            let whole = members.iter().enumerate().all(|(i, (id, decodable, _))| {
                *decodable && commit.checked_add(i as u64) == Some(*id)
            });
            if !whole {
                report.stripes_discarded += members.len();
                continue;
            }
            for (id, _, info) in members {
                newest_visible = Some((commit, id));
                commit_of.insert(id, commit);
                stripes.push(info);
            }
        }

        // 4. The index, commit by commit. Stripes are in the table first so
        //    per-generation usage can be counted as blobs are applied.
        let mut state = State::default();
        stripes.sort_by_key(|s| s.stripe_id);
        let order: Vec<(u64, u64)> = stripes
            .iter()
            .map(|s| {
                (
                    s.stripe_id,
                    commit_of.get(&s.stripe_id).copied().unwrap_or(s.stripe_id),
                )
            })
            .collect();
        for info in stripes {
            state.add_stripe(info);
        }
        let mut retired: BTreeSet<u64> = BTreeSet::new();
        let mut commit_entries: Vec<Pending> = Vec::new();
        let mut current_commit = None;
        for (stripe_id, commit) in order {
            let Some(slot) = state.stripes.slot_of(stripe_id) else {
                continue;
            };
            let Some(info) = state.stripes.get(slot).cloned() else {
                continue;
            };
            if current_commit != Some(commit) {
                apply_commit(&mut state, &mut commit_entries);
                current_commit = Some(commit);
            }
            for c in 0..k {
                let table_len = info.entry_table_len(c);
                if table_len == 0 {
                    continue;
                }
                let (entries, rebuilt) = self.entry_table(&info, c, table_len)?;
                report.entry_tables_rebuilt += usize::from(rebuilt);
                for e in entries {
                    let loc = PartLoc {
                        slot,
                        offset: e.offset,
                        len: e.len,
                        checksum: e.checksum,
                        column_index: c as u16,
                    };
                    if e.flags.contains(EntryFlags::RETIRE) {
                        retired.extend(self.retired_generations(&info, &loc)?);
                        continue;
                    }
                    commit_entries.push(Pending {
                        key: e.key,
                        loc: (!e.flags.contains(EntryFlags::TOMBSTONE)).then_some(loc),
                        part_index: e.part_index,
                        part_count: e.part_count,
                        blob_len: e.blob_len,
                    });
                }
            }
        }
        apply_commit(&mut state, &mut commit_entries);

        // 5. Retired generations are gone, whatever is left of them.
        for &generation in &retired {
            let stale: Vec<Vec<u8>> = state
                .index
                .iter()
                .filter(|(_, loc)| {
                    loc.parts().iter().any(|p| {
                        state
                            .stripes
                            .get(p.slot)
                            .is_some_and(|s| s.generation == generation)
                    })
                })
                .map(|(k, _)| k.to_vec())
                .collect();
            for key in stale {
                tracing::warn!(
                    generation,
                    "index entry pointing into a retired generation dropped"
                );
                state.remove_blob(&key);
            }
            state.drop_generation(generation);
        }
        lost.retain(|(_, generation)| !retired.contains(generation));
        if !lost.is_empty() {
            return Err(Error::StripesUnrecoverable {
                stripe_ids: lost.iter().map(|(id, _)| *id).collect(),
                missing_nodes: lost_nodes,
            });
        }
        self.remove_retired_leftovers(&retired);

        for info in state.stripes.values() {
            for (c, col) in info.columns.iter().enumerate() {
                if col.len > 0 && (col.stored.is_none() || col.is_away()) {
                    self.queue_repair(info.stripe_id, c as u16);
                }
            }
        }
        report.stripes_visible = state.stripes.len();
        report.blobs = state.index.len();

        // The next commit acknowledges the newest visible one: everything
        // visible now is served, so it must stay readable.
        let acked = newest_visible.or_else(|| {
            let newest_named = named.iter().copied().max_by_key(|r| r.1)?;
            Some(newest_named)
        });
        // Stripe ids never repeat across opens: start past everything seen and
        // past a clock-derived floor, so a stripe written by an earlier process
        // onto a node that is unreachable now cannot share an id with a new one.
        let clock_floor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| (d.as_millis() as u64) << 20);
        let start = WriterStart {
            next_stripe_id: (max_seen + 1).max(clock_floor).max(1),
            acked,
        };
        Ok((state, start, report))
    }

    /// The generations a retire marker lists.
    pub(crate) fn retired_generations(&self, info: &StripeInfo, loc: &PartLoc) -> Result<Vec<u64>> {
        let bytes = self.read_part(info, loc)?;
        if bytes.len() % 8 != 0 {
            return Err(Error::Corrupt {
                location: format!("stripe {} column {}", info.stripe_id, loc.column_index),
                reason: format!(
                    "retire marker of {} bytes is not a list of u64",
                    bytes.len()
                ),
            });
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }

    /// Removes what is left of retired generations on reachable nodes (a
    /// compaction cut short, or a node that was down when it ran).
    fn remove_retired_leftovers(&self, retired: &BTreeSet<u64>) {
        for id in self.nodes.ids() {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let Ok(generations) = node.generations() else {
                continue;
            };
            for g in generations.into_iter().filter(|g| retired.contains(g)) {
                if let Err(e) = node.remove_generation(g) {
                    tracing::warn!(node = %node.name(), generation = g, error = %e,
                        "could not remove a retired generation");
                }
            }
        }
    }

    /// The stripe as its headers describe it, with the records found.
    fn stripe_info(
        &self,
        header: &ColumnHeader,
        records: &[(NodeId, ScannedRecord)],
    ) -> StripeInfo {
        let columns = (0..header.column_lens.len())
            .map(|c| {
                let home = header
                    .placement
                    .get(c)
                    .and_then(|name| self.layout.node_by_name(name));
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

    /// A data column's entry table: from its node, or rebuilt from k others
    /// when the node is down or the table does not decode (then `true`).
    pub(crate) fn entry_table(
        &self,
        info: &StripeInfo,
        column: usize,
        table_len: u32,
    ) -> Result<(Vec<format::Entry>, bool)> {
        if let Some(bytes) = self.read_column_range(info, column, 0, table_len) {
            match format::decode_entry_table(&bytes) {
                Ok(entries) => return Ok((entries, false)),
                Err(e) => {
                    self.stats.checksum_failures.inc();
                    tracing::warn!(stripe = info.stripe_id, column, error = %e,
                        "entry table damaged; rebuilding it from other columns");
                }
            }
        }
        self.queue_repair(info.stripe_id, column as u16);
        let bytes = self.rebuild_range(info, column, 0, table_len, &[])?;
        Ok((format::decode_entry_table(&bytes)?, true))
    }
}

/// True when two headers describe the same stripe (all but the column index).
fn same_stripe(a: &ColumnHeader, b: &ColumnHeader) -> bool {
    a.stripe_id == b.stripe_id
        && a.generation == b.generation
        && a.data_count == b.data_count
        && a.parity_count == b.parity_count
        && a.column_lens == b.column_lens
        && a.column_checksums == b.column_checksums
        && a.placement == b.placement
        && a.entry_table_lens == b.entry_table_lens
        && a.commit == b.commit
}

/// One entry of the commit being gathered.
struct Pending {
    key: Vec<u8>,
    /// `None` for a tombstone.
    loc: Option<PartLoc>,
    part_index: u32,
    part_count: u32,
    blob_len: u64,
}

/// Applies one commit's entries: a tombstone removes its key, a whole blob
/// replaces it, a split blob replaces it only if all its parts are here.
fn apply_commit(state: &mut State, entries: &mut Vec<Pending>) {
    let mut split: HashMap<Vec<u8>, (u64, Vec<Option<PartLoc>>)> = HashMap::new();
    for e in entries.drain(..) {
        match e.loc {
            None => state.remove_blob(&e.key),
            Some(loc) if e.part_count <= 1 => state.insert_blob(&e.key, BlobLoc::Whole(loc)),
            Some(_) if u64::from(e.part_count) > super::PARTS_PER_BLOB_MAX => {
                tracing::warn!(
                    part_count = e.part_count,
                    "entry with an impossible part count skipped"
                );
            }
            Some(loc) => {
                let slot = split
                    .entry(e.key)
                    .or_insert_with(|| (e.blob_len, vec![None; e.part_count as usize]));
                if let Some(p) = slot.1.get_mut(e.part_index as usize) {
                    *p = Some(loc);
                }
            }
        }
    }
    for (key, (blob_len, parts)) in split {
        let parts: Option<Vec<PartLoc>> = parts.into_iter().collect();
        if let Some(parts) = parts {
            state.insert_blob(&key, BlobLoc::split(blob_len, parts.into()));
        }
    }
}
