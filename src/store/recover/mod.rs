//! Open: rebuild the stripe table and the index from the column records of
//! every reachable node. Nothing outside the columns and the manifest is
//! needed. One file per phase:
//!
//! 1. [`scan`]: scan every reachable node of the store, gather each
//!    stripe's records;
//! 2. [`classify`]: decide which stripes are part of the store
//!    (docs/DURABILITY.md, "Evidence"): in a range an earlier open
//!    discarded: no; of an older session: yes, and it must decode; of the
//!    last session: no if there is positive evidence its commit was never
//!    acknowledged, else yes, and it must decode;
//! 3. [`index`]: apply the visible stripes' entry tables commit by commit.
//!
//! A visible stripe that cannot be decoded is a loss beyond the promise:
//! open fails with [`Error::StripesUnrecoverable`], or, salvaging, opens
//! with the loss pending.

mod classify;
mod index;
mod scan;

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::ManifestState;
use super::manifest::Manifests;
use super::nodes::NodeSet;
use super::open::Identify;
use super::read::Reads;
use super::salvage::{LOST_KEYS_LISTED, LossState};
use super::stripes::StripeInfo;
use super::{Options, RepairQueue, State};
use crate::layout::{Layout, NodeId};
use crate::{Error, Result};

/// What open found, for `health()` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// The session this open started (one more than the last open's).
    pub session: u64,
    /// Stripes visible after open.
    pub stripes_visible: usize,
    /// Stripes this open discarded: their commit was never acknowledged
    /// (a crash cut it short, or it failed), as positive evidence shows.
    pub stripes_discarded: usize,
    /// Stripes found in ranges an earlier open discarded.
    pub stripes_discarded_earlier: usize,
    /// Stripes that must be visible but cannot be decoded: a loss beyond
    /// the promise (only with `Options::salvage`; else open fails).
    pub stripes_lost: usize,
    /// Keys whose newest value (or delete) was in a lost stripe (at most
    /// the first 10,000, in key order).
    pub lost_keys: Vec<Vec<u8>>,
    /// Whether some lost stripe holds keys that cannot be read: any key may
    /// have lost a newer value.
    pub lost_keys_unknown: bool,
    /// Whether [`Store::accept_loss`](super::Store::accept_loss) accepted
    /// the loss since.
    pub loss_accepted: bool,
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
    /// Stripes open found missing a column under a torn tail of a node
    /// that is up (a commit a crash cut short) and rebuilt before it
    /// returned, so no failure within the promise can take them.
    pub stripes_rebuilt_at_open: usize,
    /// The generation of the checkpoint open started from; `None` when it
    /// scanned every record (no checkpoint, `Options::checkpoints` off, or
    /// none that decodes and matches the nodes: the log says why). The
    /// counts of records, regions and tables above are then those past
    /// the checkpoint's horizons.
    pub checkpoint: Option<u64>,
    /// When that checkpoint is a delta (`CheckpointReport::delta_of`),
    /// the generation of the full one under it, read with it.
    pub checkpoint_base: Option<u64>,
    /// Stripes with records past the checkpoint's horizons (0 without a
    /// checkpoint).
    pub tail_stripes: usize,
}

/// What recovery built and decided.
pub(crate) struct Recovered {
    pub state: State,
    pub report: OpenReport,
    /// Discarded stripe-id ranges for the new manifest.
    pub discarded_ranges: Vec<(u64, u64)>,
    /// Generations retire markers name.
    pub retired: BTreeSet<u64>,
    /// The loss found, when salvaging.
    pub loss: Option<LossState>,
    /// Visible stripes missing a column under a torn tail of a node that is
    /// up: what a crash cut short. Open rebuilds them before it returns
    /// (docs/DURABILITY.md, "Open", step 6).
    pub below_margin: Vec<u64>,
    /// The full checkpoint the index stands on, and the nodes its
    /// columns' placements name (`None` after a full scan).
    pub bottom_homes: Option<(u64, BTreeSet<crate::layout::NodeId>)>,
    /// The checkpoint open read and, if a delta, the full one under it,
    /// each with the nodes its columns' placements name (`None` after a
    /// full scan).
    pub newest: Option<Vec<(u64, BTreeSet<crate::layout::NodeId>)>>,
}

/// What open found past the checkpoint (or everywhere, without one).
struct Tail {
    scanned: scan::Scanned,
    lost: Vec<(StripeInfo, Vec<String>)>,
    stale_bytes: BTreeMap<u64, u64>,
    discarded_now: usize,
    discarded_earlier: usize,
    discarded_ranges: Vec<(u64, u64)>,
}

/// Open's recovery: scan the nodes, judge the stripes, build the index.
pub(crate) struct Recovery<'a> {
    pub layout: &'a Layout,
    pub options: &'a Options,
    pub nodes: &'a NodeSet,
    pub manifests: &'a Manifests,
    pub repairs: &'a RepairQueue,
    pub reads: Reads<'a>,
    pub identify: Identify<'a>,
    pub codec: &'a crate::codec::Codec,
    /// The index's hash key, when it must not be random (the simulator).
    pub hash_key: Option<(u64, u64)>,
}

impl Recovery<'_> {
    /// Rebuilds the stripes and the index for session `new_session`, given
    /// the newest manifest found.
    ///
    /// # Errors
    /// [`Error::TooManyNodesDown`] when scans failed on too many nodes,
    /// [`Error::StripesUnrecoverable`] for a loss beyond the promise (unless
    /// salvaging), [`Error::InvalidLayout`] for stripes of another code.
    fn scanner(&self) -> scan::NodeScanner<'_> {
        scan::NodeScanner {
            layout: self.layout,
            nodes: self.nodes,
            manifests: self.manifests,
        }
    }

    fn classifier(&self, past_checkpoint: Option<u64>) -> classify::Classifier<'_> {
        classify::Classifier {
            layout: self.layout,
            nodes: self.nodes,
            manifests: self.manifests,
            past_checkpoint,
        }
    }

    fn index_builder(&self) -> index::IndexBuilder<'_> {
        index::IndexBuilder {
            layout: self.layout,
            reads: &self.reads,
            hash_key: self.hash_key,
        }
    }

    pub(crate) fn recover(&self, manifest: &ManifestState, new_session: u64) -> Result<Recovered> {
        if self.options.checkpoints {
            match self.recover_from_checkpoint(manifest, new_session) {
                Ok(Some(recovered)) => return Ok(recovered),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "open from the checkpoint failed; scanning every record");
                }
            }
        }
        let scanned = self.scanner().scan_nodes()?;
        // Scans can fail: the outage is judged again before any stripe.
        self.identify.check_outage()?;
        let verdicts = self
            .classifier(None)
            .classify(&scanned, manifest, new_session);
        let built = self.index_builder().build_state(verdicts.visible)?;
        let tail = Tail {
            scanned,
            lost: verdicts.lost,
            stale_bytes: verdicts.stale_bytes,
            discarded_now: verdicts.discarded_now.len(),
            discarded_earlier: verdicts.discarded_earlier,
            discarded_ranges: verdicts.discarded_ranges,
        };
        self.finish(built, tail, new_session, None)
    }

    /// Open from the newest checkpoint that decodes (docs/DURABILITY.md,
    /// "Checkpoints", C4-C6): its stripe table and index, the records past
    /// its horizons judged and applied as a full scan would, columns of
    /// nodes that are down now forgotten. `None` (and the caller scans
    /// everything) when there is no checkpoint or anything does not fit.
    ///
    /// # Errors
    /// As [`recover`](Self::recover); the caller scans everything then.
    fn recover_from_checkpoint(
        &self,
        manifest: &ManifestState,
        new_session: u64,
    ) -> Result<Option<Recovered>> {
        let code = self.layout.code();
        let k = code.data_count;
        let Some((generation, snapshot)) = super::checkpoint::load_newest(
            self.nodes,
            self.layout,
            self.codec,
            self.reads.sequential_io,
        ) else {
            return Ok(None);
        };
        let refuse = |why: &str| {
            tracing::warn!(
                generation,
                why,
                "checkpoint not used; scanning every record"
            );
            Ok(None)
        };
        if snapshot.store_id != manifest.shared.store_id {
            return refuse("of another store");
        }
        if snapshot.session > manifest.shared.session {
            return refuse("of a session after the newest manifest's");
        }
        let mut horizons = scan::Horizons::default();
        for &(number, g, len) in &snapshot.horizons {
            let Some(id) = snapshot
                .nodes
                .get(usize::from(number))
                .and_then(|name| self.layout.node_by_name(name))
            else {
                return refuse("names a node the layout does not have");
            };
            horizons.lens.insert((id, g), len);
        }
        // Measured nodes with no segment at all have no horizons. A node
        // rebuilt since (adopted: its `node_since` moved on) may hold
        // segments of the same names and lengths with other records at
        // the offsets the checkpoint names: scanned whole.
        for (name, &since) in snapshot.nodes.iter().zip(&snapshot.node_since) {
            let Some(id) = self.layout.node_by_name(name) else {
                continue;
            };
            if manifest.node_since.get(id.index()) == Some(&since) {
                horizons.measured.insert(id);
            } else {
                horizons.lens.retain(|(n, _), _| *n != id);
            }
        }
        let cut = snapshot.cut;
        // A segment that is gone must have been retired since (checked
        // once the retire markers are read). A node with a segment shorter
        // than the checkpoint saw it (cut behind the store's back, or
        // rebuilt empty) is scanned whole, as a full scan would: what the
        // checkpoint says it holds is not trusted (the scan finds it).
        let mut absent: Vec<(NodeId, u64)> = Vec::new();
        for &id in &horizons.measured {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let Ok(present) = node.generations() else {
                continue;
            };
            for &(n, g) in horizons.lens.keys() {
                if n == id && !present.contains(&g) {
                    absent.push((id, g));
                }
            }
        }
        // The stripe table now; the index's records are checked on another
        // thread (reading every record) while the tail is scanned and its
        // entry tables read, and joined before the first change.
        let delta_of = snapshot.delta.as_ref().map(|d| d.base.0);
        // The full checkpoint at the bottom, and its columns' homes: the
        // next checkpoint is a delta over it only if every home that takes
        // writes holds its column (checkpoint::Chain, C8).
        let bottom_homes = match (&snapshot.below, delta_of) {
            (Some(below), Some(base)) => (base, below.homes.clone()),
            _ => (generation, snapshot.homes.clone()),
        };
        let mut newest = vec![(generation, snapshot.homes.clone())];
        if delta_of.is_some() {
            newest.push(bottom_homes.clone());
        }
        let (mut state, retired, _, index) = match snapshot.into_stripes(k) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(generation, error = %e, "checkpoint does not load");
                return Ok(None);
            }
        };
        let (pending, index) = match index.spawn() {
            Ok(pending) => (Some(pending), None),
            Err(index) => (None, Some(index)),
        };
        // The index is loaded with room for the tail's entries (at most one
        // per RESERVE_ENTRY_BYTES_MIN bytes of entry table), so they never
        // grow the table past a power of two (a rehash of every key: half
        // the open of a store just under one). A header's claim counts
        // only up to the bytes of the records found.
        let scanned = self.scanner().scan_nodes_from(&horizons)?;
        self.identify.check_outage()?;
        let tail_table_bytes: u64 = scanned
            .stripes
            .range(cut..)
            .map(|(_, found)| {
                let claimed: u64 = found
                    .header
                    .entry_table_lens
                    .iter()
                    .map(|&len| u64::from(len))
                    .sum();
                claimed.min(found.stored_bytes())
            })
            .sum();
        let room = usize::try_from(tail_table_bytes / index::RESERVE_ENTRY_BYTES_MIN).unwrap_or(0);
        if let Some(index) = index {
            match index.load(room) {
                Ok(index) => state.index = index,
                Err(e) => {
                    tracing::warn!(generation, error = %e, "checkpoint does not load");
                    return Ok(None);
                }
            }
        }
        let mut retired: BTreeSet<u64> = retired.into_iter().collect();
        for id in &scanned.scanned_whole {
            horizons.measured.remove(id);
        }
        // The checkpoint's column locations are kept only where the scan
        // does not look: below a horizon of a measured node that is up.
        // Columns on nodes that are down or not members now are missing,
        // as a full scan would find them. The rest (nodes scanned whole,
        // records written after the horizons were taken, a location a
        // node wiped under a running store no longer holds) are known
        // again only from what the scan finds (C4).
        let up = |id| self.nodes.is_up(id) && self.manifests.is_member(id);
        let trusted = |(id, loc): (NodeId, crate::node::RecordLocation)| {
            up(id)
                && horizons.measured.contains(&id)
                && horizons
                    .lens
                    .get(&(id, loc.generation))
                    .is_some_and(|&len| loc.offset + u64::from(loc.len) <= len)
        };
        let mut changed: Vec<u32> = Vec::new();
        for (slot, info) in state.stripes.slots() {
            if info
                .columns
                .iter()
                .any(|c| c.stored.is_some_and(|stored| !trusted(stored)))
            {
                changed.push(slot);
            }
        }
        for slot in changed {
            let Some(id) = state.stripes.get(slot).map(|s| s.stripe_id) else {
                continue;
            };
            state.stripes.update(slot, id, |info| {
                for column in info.columns.iter_mut() {
                    if column.stored.is_some_and(|stored| !trusted(stored)) {
                        column.stored = None;
                    }
                }
            });
        }
        // The records found: more columns of stripes the checkpoint holds,
        // or stripes after it.
        let mut after = scan::Scanned {
            damaged: scanned.damaged.clone(),
            torn: scanned.torn.clone(),
            ..scan::Scanned::default()
        };
        let mut discarded_earlier = 0;
        let mut stale_bytes: BTreeMap<u64, u64> = BTreeMap::new();
        let mut merged: Vec<(u32, Vec<(NodeId, crate::node::ScannedRecord)>)> = Vec::new();
        let mut tail_stripes = 0usize;
        for (stripe_id, found) in scanned.stripes {
            tail_stripes += 1;
            if let Some(slot) = state.stripes.slot_of(stripe_id) {
                let same = state.stripes.get(slot).is_some_and(|info| {
                    info.generation == found.header.generation
                        && info.header.column_lens == found.header.column_lens
                        && info.header.column_checksums == found.header.column_checksums
                });
                if !same {
                    return refuse("a stripe past the horizons differs from the checkpoint's");
                }
                merged.push((slot, found.records));
            } else if stripe_id < cut {
                if manifest.shared.is_discarded(stripe_id) {
                    discarded_earlier += 1;
                    *stale_bytes.entry(found.header.generation).or_default() +=
                        found.stored_bytes();
                } else if !retired.contains(&found.header.generation) {
                    return refuse("a stripe older than the checkpoint that it does not hold");
                }
            } else {
                after.stripes.insert(stripe_id, found);
            }
        }
        for (slot, records) in merged {
            let Some(id) = state.stripes.get(slot).map(|s| s.stripe_id) else {
                continue;
            };
            state.stripes.update(slot, id, |info| {
                for (node, record) in records {
                    let c = usize::from(record.header.column_index);
                    let Some(column) = info.columns.get_mut(c) else {
                        continue;
                    };
                    // A copy at home written after the checkpoint is what
                    // a repair or a handoff's return wrote, because the one
                    // the checkpoint knows was missing or damaged: it wins.
                    // A copy away fills only a column with none.
                    let at_home = column.home == Some(node);
                    let better = column.stored.is_none() || at_home;
                    if better {
                        column.stored = Some((node, record.location));
                    }
                }
            });
        }
        let newest_held = state
            .stripes
            .values()
            .map(|s| s.stripe_id)
            .filter(|&id| super::open::session_of(id) == manifest.shared.session)
            .max()
            .unwrap_or(0);
        let mut verdicts =
            self.classifier(Some(newest_held))
                .classify(&after, manifest, new_session);
        if verdicts.ranges_overflow {
            return refuse("the discarded ranges are at the manifest's limit");
        }
        for (g, bytes) in stale_bytes {
            *verdicts.stale_bytes.entry(g).or_default() += bytes;
        }
        let pending = pending.map(|pending| (pending, room));
        let mut built = match self
            .index_builder()
            .build_onto(state, verdicts.visible, pending)?
        {
            Ok(built) => built,
            Err(e) => {
                tracing::warn!(generation, error = %e, "checkpoint does not load");
                return Ok(None);
            }
        };
        retired.extend(built.retired.iter().copied());
        // A segment the checkpoint saw that is gone was retired since.
        if absent
            .iter()
            .any(|(id, g)| horizons.measured.contains(id) && !retired.contains(g))
        {
            return refuse("a segment it saw is gone, and no retire marker names it");
        }
        // Every stripe still decodes; a loss is left to the full scan,
        // which reports it.
        let undecodable = built.state.stripes.values().any(|info| {
            info.columns
                .iter()
                .filter(|c| c.len == 0 || c.stored.is_some())
                .count()
                < k
        });
        if undecodable {
            return refuse("a stripe it holds cannot be decoded from the nodes up now");
        }
        built.retired = retired;
        let tail = Tail {
            scanned: after,
            lost: verdicts.lost,
            stale_bytes: verdicts.stale_bytes,
            discarded_now: verdicts.discarded_now.len(),
            discarded_earlier: verdicts.discarded_earlier + discarded_earlier,
            discarded_ranges: verdicts.discarded_ranges,
        };
        let mut recovered = self.finish(built, tail, new_session, Some(generation))?;
        recovered.report.tail_stripes = tail_stripes;
        recovered.report.checkpoint_base = delta_of;
        recovered.bottom_homes = Some(bottom_homes);
        recovered.newest = Some(newest);
        Ok(Some(recovered))
    }

    /// The rest of open, after the stripes are judged and the index built
    /// (from a checkpoint or not): a loss, stale bytes, repairs, the report.
    fn finish(
        &self,
        built: index::Built,
        tail: Tail,
        new_session: u64,
        checkpoint: Option<u64>,
    ) -> Result<Recovered> {
        let mut state = built.state;
        if state.index.overflowed() {
            // Keys were left out of the index: refuse rather than answer
            // None for them.
            let (limit, used) = state.index.full().unwrap_or((0, 0));
            return Err(Error::LimitExceeded {
                what: "index arena bytes (the store has more keys than one process indexes)",
                limit: limit as u64,
                actual: used as u64,
            });
        }
        // Gives back what the bulk insert over-reserved (arena and table).
        state.index.shrink_to_fit();
        let lost: Vec<(StripeInfo, Vec<String>)> = tail
            .lost
            .into_iter()
            .filter(|(info, _)| !built.retired.contains(&info.generation))
            .collect();
        // A salvage open past nodes rebuilt empty whose lost columns were
        // never brought back: stripes below their `node_since` may be gone
        // without a record, so their keys are unknown (D2).
        let traceless = if self.options.salvage {
            self.identify.outage().and_then(|o| o.lost_below)
        } else {
            None
        };
        let loss = if lost.is_empty() && traceless.is_none() {
            None
        } else if self.options.salvage {
            let infos: Vec<StripeInfo> = lost.iter().map(|(info, _)| info.clone()).collect();
            let mut loss = super::salvage::loss_state(&self.reads, &infos, &state);
            if let Some(below) = traceless {
                loss.unknown_newest = loss.unknown_newest.max(Some(below.saturating_sub(1)));
            }
            Some(loss)
        } else {
            return Err(unrecoverable(&lost));
        };
        for (generation, bytes) in tail.stale_bytes {
            if !built.retired.contains(&generation) {
                state
                    .generations
                    .entry(generation)
                    .or_default()
                    .stale_column_bytes += bytes;
            }
        }
        let scanned = tail.scanned;
        let below_margin = self.queue_missing(&state, &scanned);
        let mut report = OpenReport {
            session: new_session,
            stripes_visible: state.stripes.len(),
            stripes_discarded: tail.discarded_now,
            stripes_discarded_earlier: tail.discarded_earlier,
            stripes_lost: lost.len(),
            corrupt_regions: scanned.corrupt_regions,
            tail_bytes_truncated: scanned.tail_bytes_truncated,
            inconsistent_records: scanned.inconsistent_records,
            entry_tables_rebuilt: built.entry_tables_rebuilt,
            blobs: state.index.len(),
            checkpoint,
            ..OpenReport::default()
        };
        if let Some(loss) = &loss {
            let mut keys: Vec<Vec<u8>> = loss.known.iter().map(|k| k.to_vec()).collect();
            keys.sort();
            keys.truncate(LOST_KEYS_LISTED);
            report.lost_keys = keys;
            report.lost_keys_unknown = loss.unknown_newest.is_some();
        }
        Ok(Recovered {
            state,
            report,
            below_margin,
            discarded_ranges: tail.discarded_ranges,
            retired: built.retired,
            loss,
            bottom_homes: None,
            newest: None,
        })
    }

    /// Queues every column of `state` that is missing or away for repair;
    /// returns the stripes missing a column under a torn tail of a node
    /// that is up: what a crash cut short, which open rebuilds before it
    /// returns (D5; damage elsewhere is left to repair).
    fn queue_missing(&self, state: &State, scanned: &scan::Scanned) -> Vec<u64> {
        let mut below_margin = Vec::new();
        for info in state.stripes.values() {
            let mut on_up_node = false;
            for (c, col) in info.columns.iter().enumerate() {
                if col.len > 0 && (col.stored.is_none() || col.is_away()) {
                    self.repairs.push(info.stripe_id, c as u16);
                }
                // Missing under a torn tail of a node that is up: what a
                // crash cut short (damage elsewhere is left to repair).
                if col.len > 0 && col.stored.is_none() {
                    on_up_node |= info
                        .header
                        .planned_node(c)
                        .and_then(|name| self.layout.node_by_name(name))
                        .is_some_and(|id| {
                            self.nodes.is_up(id)
                                && scanned.torn.contains_key(&(id, info.generation))
                        });
                }
            }
            if on_up_node {
                below_margin.push(info.stripe_id);
            }
        }
        below_margin
    }
}

/// Removes what is left of retired generations on reachable nodes (a
/// compaction cut short, or a node that was down when it ran). Returns
/// whether every node of the layout was reached and cleaned.
pub(crate) fn remove_retired_leftovers(nodes: &NodeSet, retired: &BTreeSet<u64>) -> bool {
    let mut everywhere = true;
    for id in nodes.ids() {
        let Some(node) = nodes.get(id) else {
            everywhere = false;
            continue;
        };
        let Ok(generations) = node.generations() else {
            everywhere = false;
            continue;
        };
        for g in generations.into_iter().filter(|g| retired.contains(g)) {
            if let Err(e) = node.remove_generation(g) {
                everywhere = false;
                tracing::warn!(node = %node.name(), generation = g, error = %e,
                    "could not remove a retired generation");
            }
        }
    }
    everywhere
}

/// The error for stripes that must be visible and cannot be decoded: a
/// count, the first ids, and the nodes that would bring them back.
fn unrecoverable(lost: &[(StripeInfo, Vec<String>)]) -> Error {
    let mut nodes: Vec<String> = Vec::new();
    for (_, missing) in lost {
        for n in missing {
            if !nodes.contains(n) {
                nodes.push(n.clone());
            }
        }
    }
    nodes.sort();
    Error::StripesUnrecoverable {
        count: lost.len(),
        stripe_ids: lost
            .iter()
            .take(STRIPE_IDS_LISTED)
            .map(|(info, _)| info.stripe_id)
            .collect(),
        missing_nodes: nodes,
    }
}

/// How many stripe ids an error lists.
const STRIPE_IDS_LISTED: usize = 8;
