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

use std::collections::BTreeSet;

use super::manifest::ManifestState;
use super::manifest::Manifests;
use super::nodes::NodeSet;
use super::open::Identify;
use super::read::Reads;
use super::salvage::{LOST_KEYS_LISTED, LossState};
use super::stripes::StripeInfo;
use super::{Options, RepairQueue, State};
use crate::layout::Layout;
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

    fn classifier(&self) -> classify::Classifier<'_> {
        classify::Classifier {
            layout: self.layout,
            nodes: self.nodes,
            manifests: self.manifests,
        }
    }

    fn index_builder(&self) -> index::IndexBuilder<'_> {
        index::IndexBuilder {
            layout: self.layout,
            reads: &self.reads,
        }
    }

    pub(crate) fn recover(&self, manifest: &ManifestState, new_session: u64) -> Result<Recovered> {
        let scanned = self.scanner().scan_nodes()?;
        // Scans can fail: the outage is judged again before any stripe.
        self.identify.check_outage()?;
        let verdicts = self.classifier().classify(&scanned, manifest, new_session);
        let built = self.index_builder().build_state(verdicts.visible)?;
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
        let lost: Vec<(StripeInfo, Vec<String>)> = verdicts
            .lost
            .into_iter()
            .filter(|(info, _)| !built.retired.contains(&info.generation))
            .collect();
        let loss = if lost.is_empty() {
            None
        } else if self.options.salvage {
            let infos: Vec<StripeInfo> = lost.iter().map(|(info, _)| info.clone()).collect();
            Some(super::salvage::loss_state(&self.reads, &infos, &state))
        } else {
            return Err(unrecoverable(&lost));
        };
        for (generation, bytes) in verdicts.stale_bytes {
            if !built.retired.contains(&generation) {
                state
                    .generations
                    .entry(generation)
                    .or_default()
                    .stale_column_bytes += bytes;
            }
        }
        let below_margin = self.queue_missing(&state, &scanned);
        let mut report = OpenReport {
            session: new_session,
            stripes_visible: state.stripes.len(),
            stripes_discarded: verdicts.discarded_now.len(),
            stripes_discarded_earlier: verdicts.discarded_earlier,
            stripes_lost: lost.len(),
            corrupt_regions: scanned.corrupt_regions,
            tail_bytes_truncated: scanned.tail_bytes_truncated,
            inconsistent_records: scanned.inconsistent_records,
            entry_tables_rebuilt: built.entry_tables_rebuilt,
            blobs: state.index.len(),
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
            discarded_ranges: verdicts.discarded_ranges,
            retired: built.retired,
            loss,
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
