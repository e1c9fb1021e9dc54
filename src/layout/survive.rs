//! "What if this burns?": whether stripes survive a set of lost sites and
//! nodes, for the layout as a whole and for one stripe as it actually is.

use super::Layout;
use super::spread::top_sum;
use super::types::{NodeId, SiteId};

/// Above this many site combinations, `placement_keeps_promise` bounds
/// instead of enumerating (only reached when nodes hold several columns).
const COMBINATIONS_MAX: usize = 100_000;

/// The body of [`Layout::survives`].
pub(crate) fn survives(layout: &Layout, lost_sites: &[SiteId], lost_nodes: &[NodeId]) -> bool {
    let site_count = layout.sites.len();
    let mut site_lost = vec![false; site_count];
    for site in lost_sites {
        if let Some(flag) = site_lost.get_mut(site.index()) {
            *flag = true;
        }
    }
    let mut node_lost = vec![false; layout.nodes.len()];
    let mut lost_per_site = vec![0usize; site_count];
    for &node in lost_nodes {
        let Some(flag) = node_lost.get_mut(node.index()) else {
            continue;
        };
        let site = layout.nodes[node.index()].site.index();
        if !*flag && !site_lost[site] {
            *flag = true;
            lost_per_site[site] += 1;
        }
    }
    layout.spread.counts.iter().all(|split| {
        let lost: usize = (0..site_count)
            .map(|site| {
                if site_lost[site] {
                    split[site]
                } else {
                    split[site].min(lost_per_site[site])
                }
            })
            .sum();
        lost <= layout.code.parity_count
    })
}

/// The body of [`Layout::placement_survives`].
pub(crate) fn placement_survives(
    layout: &Layout,
    columns: &[NodeId],
    lost_sites: &[SiteId],
    lost_nodes: &[NodeId],
) -> bool {
    let left = columns
        .iter()
        .filter(|&&node| {
            !lost_nodes.contains(&node) && !lost_sites.contains(&layout.node(node).site)
        })
        .count();
    left >= layout.code.data_count
}

/// The body of [`Layout::placement_keeps_promise`].
pub(crate) fn placement_keeps_promise(layout: &Layout, columns: &[NodeId]) -> bool {
    let lost_max = worst_promised_loss(layout, columns);
    columns.len().saturating_sub(lost_max) >= layout.code.data_count
}

/// The most columns of the stripe that one promised loss can take.
fn worst_promised_loss(layout: &Layout, columns: &[NodeId]) -> usize {
    let sites_lost = layout.promise.sites_lost;
    let extra = layout.promise.extra_nodes_lost;
    let mut per_site = vec![0usize; layout.sites.len()];
    let mut per_node: Vec<(NodeId, usize)> = Vec::with_capacity(columns.len());
    for &node in columns {
        per_site[layout.node(node).site.index()] += 1;
        match per_node.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1,
            None => per_node.push((node, 1)),
        }
    }
    let site_part = top_sum(&per_site, sites_lost);
    if per_node.iter().all(|&(_, count)| count == 1) {
        // Each lost node outside the lost sites takes one column.
        return (site_part + extra).min(columns.len());
    }
    // A node holds several columns: which sites to lose matters.
    let site_count = layout.sites.len();
    if combinations(site_count, sites_lost) > COMBINATIONS_MAX {
        let node_counts: Vec<usize> = per_node.iter().map(|&(_, c)| c).collect();
        return (site_part + top_sum(&node_counts, extra)).min(columns.len());
    }
    let mut chosen: Vec<usize> = (0..sites_lost).collect();
    let mut worst = 0;
    loop {
        let in_lost = |node: NodeId| chosen.contains(&layout.node(node).site.index());
        let from_sites: usize = chosen.iter().map(|&s| per_site[s]).sum();
        let rest: Vec<usize> = per_node
            .iter()
            .filter(|&&(n, _)| !in_lost(n))
            .map(|&(_, c)| c)
            .collect();
        worst = worst.max(from_sites + top_sum(&rest, extra));
        if !next_combination(&mut chosen, site_count) {
            return worst.min(columns.len());
        }
    }
}

pub(super) fn combinations(n: usize, r: usize) -> usize {
    let r = r.min(n.saturating_sub(r));
    let mut total: usize = 1;
    for i in 0..r {
        match total.checked_mul(n - i) {
            Some(product) => total = product / (i + 1),
            None => return usize::MAX,
        }
    }
    total
}

/// Advances `chosen` (increasing indexes below `n`) to the next combination.
pub(super) fn next_combination(chosen: &mut [usize], n: usize) -> bool {
    let r = chosen.len();
    for i in (0..r).rev() {
        if chosen[i] < n - r + i {
            chosen[i] += 1;
            for j in i + 1..r {
                chosen[j] = chosen[j - 1] + 1;
            }
            return true;
        }
    }
    false
}
