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
            let never_acknowledged =
                if crate::mutation::enabled(crate::mutation::Mutation::TornEvidencePerRecord) {
                    stripes
                        .iter()
                        .any(|(id, found)| self.has_record_evidence(*id, found, manifest, scanned))
                } else {
                    self.has_evidence(&stripes, manifest, scanned)
                };
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

    /// Positive evidence that a commit was never acknowledged, from its
    /// `stripes` found (docs/DURABILITY.md, "Evidence", rule 3): some node
    /// intact for the commit is missing planned records of it that cannot
    /// all fit in the bytes cut off that node's segment as a torn tail.
    ///
    /// Sound because an acknowledged commit made every planned record
    /// durable on its planned node (the acknowledgement rule), a durable
    /// record of a segment without damage is found unless it lies in the
    /// torn tail (rot there looks like a torn write), and records occupy
    /// disjoint bytes: so the records of an acknowledged commit missing on
    /// such a node all lie in its tail, which is then at least as long as
    /// they are together. A tail shorter than the sum was cut by a crash
    /// from an append that was never made durable. The sum counts only
    /// stripes the node is intact for and only columns the found headers
    /// plan there, so stripes of the commit not found make it smaller,
    /// never larger than what an acknowledged commit left.
    fn has_evidence(
        &self,
        stripes: &[(u64, &Found)],
        manifest: &ManifestState,
        scanned: &Scanned,
    ) -> bool {
        // Bytes of the commit's records missing on each (node, generation).
        let mut missing: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
        for &(stripe_id, found) in stripes {
            let header = &found.header;
            for c in 0..header.column_lens.len() {
                if header.column_lens[c] == 0 {
                    continue;
                }
                let Some(node) = header
                    .planned_node(c)
                    .and_then(|name| self.layout.node_by_name(name))
                else {
                    continue;
                };
                if found.has_column_on(c, node)
                    || !self.intact_for(node, stripe_id, header.generation, manifest, scanned)
                {
                    continue;
                }
                let record_len = header.encoded_len() as u64 + u64::from(header.column_lens[c]);
                *missing.entry((node, header.generation)).or_default() += record_len;
            }
        }
        missing.iter().any(|(place, &bytes)| {
            let torn = scanned.torn.get(place).copied().unwrap_or(0);
            torn < bytes
        })
    }

    /// The rule before the simulator's seed 22,912 (kept for the mutation
    /// `TornEvidencePerRecord`): one missing record at a time, so a crash
    /// that tore two records' worth off a node holding two columns of the
    /// commit gave no evidence.
    fn has_record_evidence(
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
