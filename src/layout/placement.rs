//! Where the columns of a stripe go.

use std::fmt;

use super::hash::{self, HANDOFF_SEED, RENDEZVOUS_SEED, STRIPE_SEED, mix64};
use super::types::{NodeId, SiteId};
use super::{COLUMN_COUNT_MAX, Layout};
use crate::{Error, Result};

/// The nodes of the k + m columns of one stripe: column `c < k` is a data
/// column, `c >= k` a parity column. No two columns share a node.
///
/// Held inline (no heap allocation), so computing one is cheap.
///
/// ```
/// use geoshard::layout::Layout;
///
/// let layout = Layout::builder()
///     .code(2, 1)
///     .site("a", |s| s.node("a1", "/srv/a1"))
///     .site("b", |s| s.node("b1", "/srv/b1"))
///     .site("c", |s| s.node("c1", "/srv/c1"))
///     .build()?;
/// let placement = layout.placement(7);
/// assert_eq!(placement.columns().len(), 3);
/// let node = placement.columns()[0];
/// assert_eq!(placement.column_of(node), Some(0));
/// # Ok::<(), geoshard::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    stripe_id: u64,
    column_count: u16,
    columns: [NodeId; COLUMN_COUNT_MAX],
}

impl Placement {
    /// A placement from the nodes its columns are on, e.g. as read back from
    /// a column header (see [`Layout::placement_from_names`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if there are more than
    /// [`COLUMN_COUNT_MAX`] columns or two columns share a node.
    pub fn from_columns(stripe_id: u64, columns: &[NodeId]) -> Result<Placement> {
        if columns.len() > COLUMN_COUNT_MAX {
            return Err(Error::invalid(format!(
                "a placement of {} columns, over the limit of {COLUMN_COUNT_MAX}",
                columns.len()
            )));
        }
        for (index, node) in columns.iter().enumerate() {
            if columns[..index].contains(node) {
                return Err(Error::invalid(format!(
                    "two columns of stripe {stripe_id} are on node {}",
                    node.0
                )));
            }
        }
        let mut placement = Placement::empty(stripe_id, columns.len());
        placement.columns[..columns.len()].copy_from_slice(columns);
        Ok(placement)
    }

    fn empty(stripe_id: u64, column_count: usize) -> Placement {
        Placement {
            stripe_id,
            column_count: column_count as u16,
            columns: [NodeId(0); COLUMN_COUNT_MAX],
        }
    }

    /// The stripe this placement is for.
    pub fn stripe_id(&self) -> u64 {
        self.stripe_id
    }

    /// The node of each column, by column index.
    pub fn columns(&self) -> &[NodeId] {
        &self.columns[..usize::from(self.column_count)]
    }

    /// The column index held by `node` in this stripe, if any.
    pub fn column_of(&self, node: NodeId) -> Option<usize> {
        self.columns().iter().position(|&n| n == node)
    }
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Placement")
            .field("stripe_id", &self.stripe_id)
            .field("columns", &self.columns())
            .finish()
    }
}

/// (slot, node) pairs ranked on the stack; bigger sites recompute.
const PAIR_SCRATCH_LEN: usize = 64;
const _: () = assert!(
    PAIR_SCRATCH_LEN <= 64,
    "slot and node sets are u64 bit masks"
);

/// A set of the `count` lowest bits (`count <= 64`).
fn low_bits(count: usize) -> u64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1 << count) - 1
    }
}

/// Per-placement scratch for the within-site matching.
struct Scratch {
    /// Key of each (slot, node) pair, slot-major.
    keys: [u64; PAIR_SCRATCH_LEN],
    /// Each free slot's best free node.
    best: [u8; PAIR_SCRATCH_LEN],
    /// Sites with more (slot, node) pairs than this take the large-site way.
    pair_count_max: usize,
}

/// The body of [`Layout::placement`].
pub(crate) fn placement(layout: &Layout, stripe_id: u64) -> Placement {
    placement_with(layout, stripe_id, PAIR_SCRATCH_LEN)
}

/// [`placement`](Layout::placement), matching sites of up to
/// `pair_scratch_len` (slot, node) pairs on the stack.
fn placement_with(layout: &Layout, stripe_id: u64, pair_scratch_len: usize) -> Placement {
    let column_count = layout.code.column_count();
    let site_count = layout.sites.len();
    let mixed = mix64(stripe_id ^ STRIPE_SEED);
    let rotation = hash::below(mixed, site_count);
    let shift = hash::below(mix64(mixed), column_count);
    let stripe_key = mix64(stripe_id ^ RENDEZVOUS_SEED);
    let positions = &layout.spread.positions[rotation];
    let starts = &layout.spread.starts[rotation];
    let mut placement = Placement::empty(stripe_id, column_count);
    // Scratch shared by the sites; every entry read is written first.
    let mut scratch = Scratch {
        keys: [0; PAIR_SCRATCH_LEN],
        best: [0; PAIR_SCRATCH_LEN],
        pair_count_max: pair_scratch_len.min(PAIR_SCRATCH_LEN),
    };
    for site in 0..site_count {
        let slots = &positions[usize::from(starts[site])..usize::from(starts[site + 1])];
        if !slots.is_empty() {
            assign_site(
                layout,
                site,
                stripe_key,
                slots,
                shift,
                &mut scratch,
                &mut placement.columns,
            );
        }
    }
    placement
}

/// Matches the site's column slots (`positions` in the dealt sequence,
/// which are columns `position - shift` mod k + m) to distinct nodes of
/// the site, best-scoring (slot, node) pair first.
fn assign_site(
    layout: &Layout,
    site: usize,
    stripe_key: u64,
    positions: &[u16],
    shift: usize,
    scratch: &mut Scratch,
    out: &mut [NodeId],
) {
    let column_count = layout.code.column_count();
    let column = |slot: usize| {
        let position = usize::from(positions[slot]);
        if position >= shift {
            position - shift
        } else {
            position + column_count - shift
        }
    };
    let nodes = &layout.sites[site].nodes;
    let weights = &layout.site_weights[site];
    let inverse = weights.inverse(positions.len());
    // Bigger is better. Where weights cannot matter, rank by hash alone
    // (with equal weights the order of -w / ln(u) is the order of u);
    // otherwise -w / ln(u) is ordered as the bits of the positive float
    // ln(u) / -w, reversed.
    // A site's nodes have consecutive ids (see `Layout::from_builder`).
    let first = nodes.first().map_or(0, |node| node.index());
    let node_hashes = &layout.node_hashes[first..first + nodes.len()];
    let key = |slot: usize, member: usize| -> u64 {
        let h = hash::pair_hash(stripe_key, layout.slot_keys[slot], node_hashes[member]);
        match inverse {
            None => h,
            Some(inverse) => !(hash::exponential(h) * inverse[member]).to_bits(),
        }
    };
    let slot_count = positions.len();
    let node_count = nodes.len();
    if slot_count * node_count <= scratch.pair_count_max {
        // Greedy matching, best pair first: keep each free slot's best
        // free node, take the best of those, and rescan only the slots
        // whose best node was just taken.
        let Scratch { keys, best, .. } = scratch;
        for slot in 0..slot_count {
            let row = &mut keys[slot * node_count..(slot + 1) * node_count];
            let (mut top, mut top_key) = (0, 0);
            for (member, entry) in row.iter_mut().enumerate() {
                *entry = key(slot, member);
                if member == 0 || *entry > top_key {
                    (top, top_key) = (member, *entry);
                }
            }
            best[slot] = top as u8;
        }
        // Free slots and nodes as bit sets, walked lowest bit first so
        // that ties go to the lower slot or node, like the large way.
        let mut free_slots = low_bits(slot_count);
        let mut free_nodes = low_bits(node_count);
        while free_slots != 0 {
            let mut walk = free_slots;
            let mut chosen = walk.trailing_zeros() as usize;
            let mut chosen_key = keys[chosen * node_count + usize::from(best[chosen])];
            walk &= walk - 1;
            while walk != 0 {
                let slot = walk.trailing_zeros() as usize;
                walk &= walk - 1;
                let k = keys[slot * node_count + usize::from(best[slot])];
                if k > chosen_key {
                    (chosen, chosen_key) = (slot, k);
                }
            }
            let member = usize::from(best[chosen]);
            free_slots &= !(1 << chosen);
            free_nodes &= !(1 << member);
            out[column(chosen)] = nodes[member];
            let mut walk = free_slots;
            while walk != 0 {
                let slot = walk.trailing_zeros() as usize;
                walk &= walk - 1;
                if usize::from(best[slot]) != member {
                    continue;
                }
                let row = &keys[slot * node_count..(slot + 1) * node_count];
                let mut candidates = free_nodes;
                let mut top = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                while candidates != 0 {
                    let other = candidates.trailing_zeros() as usize;
                    candidates &= candidates - 1;
                    if row[other] > row[top] {
                        top = other;
                    }
                }
                best[slot] = top as u8;
            }
        }
    } else {
        // Large site: the same matching, with only each slot's best
        // kept and a slot's row recomputed when its best node is taken.
        let mut best = [(0u64, 0u16); COLUMN_COUNT_MAX];
        let mut nodes_taken = [0u64; super::NODE_COUNT_MAX / 64];
        let is_taken =
            |taken: &[u64], member: usize| taken[member / 64] & (1 << (member % 64)) != 0;
        let best_free = |slot: usize, taken: &[u64]| {
            let mut top: Option<(u64, u16)> = None;
            for member in (0..node_count).filter(|&m| !is_taken(taken, m)) {
                let k = key(slot, member);
                if top.is_none_or(|(top_key, _)| k > top_key) {
                    top = Some((k, member as u16));
                }
            }
            top.unwrap_or((0, 0))
        };
        for (slot, entry) in best[..slot_count].iter_mut().enumerate() {
            *entry = best_free(slot, &nodes_taken);
        }
        let mut slots_taken = [false; COLUMN_COUNT_MAX];
        for _ in 0..slot_count {
            let mut chosen = usize::MAX;
            for slot in (0..slot_count).filter(|&s| !slots_taken[s]) {
                if chosen == usize::MAX || best[slot].0 > best[chosen].0 {
                    chosen = slot;
                }
            }
            let member = usize::from(best[chosen].1);
            slots_taken[chosen] = true;
            nodes_taken[member / 64] |= 1 << (member % 64);
            out[column(chosen)] = nodes[member];
            for slot in (0..slot_count).filter(|&s| !slots_taken[s]) {
                if usize::from(best[slot].1) == member {
                    best[slot] = best_free(slot, &nodes_taken);
                }
            }
        }
    }
}

/// The body of [`Layout::handoff_candidates`].
pub(crate) fn handoff_candidates(
    layout: &Layout,
    placement: &Placement,
    column_index: usize,
    down: &dyn Fn(NodeId) -> bool,
) -> Vec<NodeId> {
    let columns = placement.columns();
    let home_site = layout.node(columns[column_index]).site;
    let key = mix64(placement.stripe_id() ^ HANDOFF_SEED) ^ hash::slot_key(column_index);
    let rank = |node: NodeId| -> f64 {
        let h = mix64(key ^ layout.node_hashes[node.index()]);
        -hash::exponential(h) / f64::from(layout.node(node).weight)
    };
    let free = |node: &NodeId| !columns.contains(node) && !down(*node);
    let ranked = |site: SiteId| -> Vec<NodeId> {
        let mut nodes: Vec<(f64, NodeId)> = layout.sites[site.index()]
            .nodes
            .iter()
            .filter(|n| free(n))
            .map(|&n| (rank(n), n))
            .collect();
        nodes.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        nodes.into_iter().map(|(_, n)| n).collect()
    };
    let mut held = vec![0usize; layout.sites.len()];
    for &node in columns {
        held[layout.node(node).site.index()] += 1;
    }
    let mut other_sites: Vec<(usize, u64, SiteId)> = (0..layout.sites.len())
        .map(|s| SiteId(s as u16))
        .filter(|&s| s != home_site)
        .map(|s| {
            (
                held[s.index()],
                mix64(key ^ hash::name_hash(&layout.sites[s.index()].name)),
                s,
            )
        })
        .collect();
    other_sites.sort_unstable();
    let mut candidates = ranked(home_site);
    for (_, _, site) in other_sites {
        candidates.extend(ranked(site));
    }
    candidates
}

/// The body of [`Layout::placement_names`].
pub(crate) fn placement_names<'a>(layout: &'a Layout, placement: &Placement) -> Vec<&'a str> {
    placement
        .columns()
        .iter()
        .map(|&node| layout.node(node).name.as_str())
        .collect()
}

/// The body of [`Layout::placement_from_names`].
pub(crate) fn placement_from_names<S: AsRef<str>>(
    layout: &Layout,
    stripe_id: u64,
    names: &[S],
) -> Result<Placement> {
    if names.len() > COLUMN_COUNT_MAX {
        return Err(Error::invalid(format!(
            "a placement of {} columns, over the limit of {COLUMN_COUNT_MAX}",
            names.len()
        )));
    }
    let mut columns = [NodeId(0); COLUMN_COUNT_MAX];
    for (slot, name) in columns.iter_mut().zip(names) {
        let name = name.as_ref();
        *slot = layout
            .node_by_name(name)
            .ok_or_else(|| Error::invalid(format!("node \"{name}\" is not in the layout")))?;
    }
    Placement::from_columns(stripe_id, &columns[..names.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(k: usize, m: usize, weights: &[&[u32]]) -> Layout {
        let mut builder = Layout::builder().code(k, m);
        for (site, row) in weights.iter().enumerate() {
            builder = builder.site(format!("s{site}"), |mut s| {
                for (node, &w) in row.iter().enumerate() {
                    s = s.node_weighted(
                        format!("s{site}n{node}"),
                        format!("/s{site}n{node}").as_str(),
                        w,
                    );
                }
                s
            });
        }
        builder.build().unwrap()
    }

    #[test]
    fn large_site_path_matches_the_stack_path() {
        for layout in [
            layout(6, 3, &[&[1; 3], &[1; 3], &[1; 3]]),
            layout(6, 3, &[&[1; 8], &[1; 5], &[1; 4]]),
            layout(6, 3, &[&[1, 2, 3, 1, 2], &[5, 1, 1, 1], &[1, 1, 1]]),
            layout(4, 4, &[&[1; 7], &[2; 3], &[1, 9, 1]]),
        ] {
            for stripe_id in 0..2000 {
                assert_eq!(
                    placement_with(&layout, stripe_id, 0),
                    layout.placement(stripe_id)
                );
            }
        }
    }

    #[test]
    fn large_sites_are_placed() {
        let big = layout(12, 6, &[&[1; 40], &[1; 40], &[1; 40]]);
        for stripe_id in 0..200 {
            let placement = big.placement(stripe_id);
            let mut columns = placement.columns().to_vec();
            columns.sort_unstable();
            columns.dedup();
            assert_eq!(columns.len(), 18);
        }
    }
}
