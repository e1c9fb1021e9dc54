//! Recovery, phase 2: which stripes are part of the store
//! (docs/DURABILITY.md, "Evidence": D1, D4, D5).

use std::collections::BTreeMap;

use super::super::manifest::ManifestState;
use super::super::manifest::Manifests;
use super::super::nodes::NodeSet;
use super::super::open::{SESSION_SHIFT, session_of};
use super::super::stripes::StripeInfo;
use super::scan::{Found, Scanned};
use crate::format::add_range;
use crate::layout::Layout;
use crate::layout::NodeId;

/// The verdict on every stripe found.
#[derive(Default)]
pub(crate) struct Verdicts {
    /// Visible stripes (decodable), with their commit's first stripe id.
    pub visible: Vec<(StripeInfo, u64)>,
    /// Stripes that must be visible but cannot be decoded.
    pub lost: Vec<(StripeInfo, Vec<String>)>,
    /// Stripes this open discards (their commit was never acknowledged).
    pub discarded_now: Vec<u64>,
    /// Stripes in ranges an earlier open discarded.
    pub discarded_earlier: usize,
    /// The discarded ranges the new manifest records.
    pub discarded_ranges: Vec<(u64, u64)>,
    /// Column bytes of discarded stripes by generation (stale: compaction
    /// reclaims them).
    pub stale_bytes: BTreeMap<u64, u64>,
    /// The discarded ranges outgrew the manifest's limit, and a scan past
    /// a checkpoint cannot tell which ones are empty: only a full scan
    /// can open.
    pub ranges_overflow: bool,
}

/// Phase 2: which stripes are part of the store (docs/DURABILITY.md,
/// "Evidence").
pub(crate) struct Classifier<'a> {
    pub layout: &'a Layout,
    pub nodes: &'a NodeSet,
    pub manifests: &'a Manifests,
    /// Set when the stripes to judge are only those past a checkpoint's
    /// horizons: the newest stripe id of the last session the checkpoint
    /// holds (0 for none). No discarded range is pruned or forgotten then
    /// (what lies below the horizons was not scanned).
    pub past_checkpoint: Option<u64>,
}

impl Classifier<'_> {
    /// Judges every stripe `scanned` found against `manifest` (the newest
    /// manifest before this open) for the new session `new_session`.
    pub(crate) fn classify(
        &self,
        scanned: &Scanned,
        manifest: &ManifestState,
        new_session: u64,
    ) -> Verdicts {
        let k = self.layout.code().data_count;
        let newest = manifest.shared.session;
        let mut out = Verdicts::default();
        // Stripes of the session that was running when the store last
        // stopped, grouped by commit attempt.
        let mut commits: BTreeMap<u64, Vec<(u64, &Found)>> = BTreeMap::new();
        for (&stripe_id, found) in &scanned.stripes {
            if manifest.shared.is_discarded(stripe_id) {
                out.discarded_earlier += 1;
                *out.stale_bytes.entry(found.header.generation).or_default() +=
                    found.stored_bytes();
                continue;
            }
            if session_of(stripe_id) < newest {
                // Decided visible by the open that followed its session.
                self.judge(
                    stripe_id,
                    found,
                    found.header.commit.commit_first_stripe_id,
                    k,
                    &mut out,
                );
                continue;
            }
            commits
                .entry(found.header.commit.commit_first_stripe_id)
                .or_default()
                .push((stripe_id, found));
        }
        let mut newest_seen: Option<u64> = self
            .past_checkpoint
            .filter(|&id| id > 0 && session_of(id) == newest);
        for (commit, stripes) in commits {
            newest_seen = newest_seen.max(stripes.iter().map(|(id, _)| *id).max());
            let never_acknowledged = stripes
                .iter()
                .any(|(id, found)| self.has_evidence(*id, found, manifest, scanned));
            for (stripe_id, found) in stripes {
                if never_acknowledged {
                    out.discarded_now.push(stripe_id);
                    *out.stale_bytes.entry(found.header.generation).or_default() +=
                        found.stored_bytes();
                } else if crate::mutation::enabled(crate::mutation::Mutation::SilentNewestLoss)
                    && !self.decodable(found, k)
                {
                    out.discarded_now.push(stripe_id);
                } else {
                    self.judge(stripe_id, found, commit, k, &mut out);
                }
            }
        }
        let (ranges, overflow) =
            self.discarded_ranges(scanned, manifest, new_session, newest_seen, &out);
        out.discarded_ranges = ranges;
        out.ranges_overflow = overflow;
        out
    }

    /// Whether at least k columns of the stripe are present.
    fn decodable(&self, found: &Found, k: usize) -> bool {
        let info = StripeInfo::from_records(self.layout, &found.header, &found.records);
        info.columns
            .iter()
            .filter(|c| c.len == 0 || c.stored.is_some())
            .count()
            >= k
    }

    /// Visible if decodable, lost if not.
    fn judge(&self, stripe_id: u64, found: &Found, commit: u64, k: usize, out: &mut Verdicts) {
        let info = StripeInfo::from_records(self.layout, &found.header, &found.records);
        let present = info
            .columns
            .iter()
            .filter(|c| c.len == 0 || c.stored.is_some())
            .count();
        if present >= k {
            out.visible.push((info, commit));
            return;
        }
        let mut missing_nodes = Vec::new();
        for (c, col) in info.columns.iter().enumerate() {
            if col.len > 0 && col.stored.is_none() {
                let name = found.header.planned_node(c).unwrap_or("?").to_string();
                if !missing_nodes.contains(&name) {
                    missing_nodes.push(name);
                }
            }
        }
        tracing::error!(stripe = stripe_id, missing = ?missing_nodes, "stripe cannot be decoded");
        out.lost.push((info, missing_nodes));
    }

    /// Positive evidence that the stripe's commit was never acknowledged: a
    /// planned column is missing on a node that is intact for it (reachable,
    /// holding this store's manifest since before the stripe, and without
    /// damage in the stripe's generation). The acknowledgement rule makes
    /// every planned column of an acknowledged commit durable on its node.
    fn has_evidence(
        &self,
        stripe_id: u64,
        found: &Found,
        manifest: &ManifestState,
        scanned: &Scanned,
    ) -> bool {
        let header = &found.header;
        (0..header.column_lens.len()).any(|c| {
            if header.column_lens[c] == 0 {
                return false;
            }
            let Some(node) = header
                .planned_node(c)
                .and_then(|name| self.layout.node_by_name(name))
            else {
                return false;
            };
            // A record this long may have been cut off the node's segment
            // as a torn write: rot in the last record of a segment looks
            // the same, so such a node is no evidence for it.
            let record_len = header.encoded_len() as u64 + u64::from(header.column_lens[c]);
            let torn = scanned
                .torn
                .get(&(node, header.generation))
                .copied()
                .unwrap_or(0);
            !found.has_column_on(c, node)
                && torn < record_len
                && self.intact_for(node, stripe_id, header.generation, manifest, scanned)
        })
    }

    fn intact_for(
        &self,
        node: NodeId,
        stripe_id: u64,
        generation: u64,
        manifest: &ManifestState,
        scanned: &Scanned,
    ) -> bool {
        self.nodes.is_up(node)
            && self.manifests.is_member(node)
            && manifest
                .node_since
                .get(node.index())
                .is_some_and(|&since| since <= stripe_id)
            && !scanned.damaged.contains(&(node, generation))
    }

    /// The discarded ranges of the new manifest: the old ones (pruned where
    /// nothing can be left), every stripe discarded now, and the rest of the
    /// last session's ids past the newest stripe found of it (what only an
    /// unreachable node holds, or a superseded writer still writes).
    fn discarded_ranges(
        &self,
        scanned: &Scanned,
        manifest: &ManifestState,
        new_session: u64,
        newest_seen: Option<u64>,
        verdicts: &Verdicts,
    ) -> (Vec<(u64, u64)>, bool) {
        let newest = manifest.shared.session;
        let everyone_here =
            super::super::open::missing_nodes(self.nodes, self.manifests).is_empty();
        let mut ranges: Vec<(u64, u64)> = manifest
            .shared
            .discarded
            .iter()
            .copied()
            .filter(|&(first, last)| {
                if self.past_checkpoint.is_some() {
                    return true;
                }
                // Two sessions old, every node scanned, nothing found in it:
                // nothing can turn up there any more.
                let old = session_of(last).saturating_add(2) <= newest;
                let empty = scanned.stripes.range(first..=last).next().is_none();
                !(old && everyone_here && empty)
            })
            .collect();
        for &id in &verdicts.discarded_now {
            add_range(&mut ranges, id, id);
        }
        // Ranges accumulate one per session while a node stays missing
        // (they cannot be pruned then). Rather than refuse to open at the
        // limit, forget the oldest ranges nothing was found in: a stripe of
        // such a range that turns up later is then judged visible, and lost
        // (loud) if it does not decode.
        let room =
            crate::format::DISCARDED_RANGES_MAX.saturating_sub(verdicts.discarded_now.len() + 1);
        while ranges.len() > room {
            if self.past_checkpoint.is_some() {
                return (ranges, true);
            }
            let Some(at) = ranges
                .iter()
                .position(|&(first, last)| scanned.stripes.range(first..=last).next().is_none())
            else {
                break;
            };
            let (first, last) = ranges.remove(at);
            tracing::warn!(
                first,
                last,
                "forgot a discarded range at the manifest's limit"
            );
        }
        // A new store has no earlier session.
        if newest > 0 {
            let tail_first = match newest_seen {
                Some(id) => id + 1,
                None => newest << SESSION_SHIFT,
            };
            let tail_last = (new_session << SESSION_SHIFT) - 1;
            if tail_first <= tail_last {
                add_range(&mut ranges, tail_first, tail_last);
            }
        }
        (ranges, false)
    }
}
