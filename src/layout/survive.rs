//! "What if this burns?": whether stripes survive a set of lost sites and
//! nodes, for the layout as a whole and for one stripe as it actually is.

use super::Layout;
use super::spread::top_sum;
use super::types::{NodeId, SiteId};

/// Above this many site combinations, `placement_keeps_promise` bounds
/// instead of enumerating (only reached when nodes hold several columns).
const COMBINATIONS_MAX: usize = 100_000;

impl Layout {
    /// Whether every stripe placed by this layout stays readable (keeps at
    /// least k columns) when the sites `lost_sites` and the nodes
    /// `lost_nodes` are all lost. Duplicates, and nodes inside lost sites,
    /// count once; ids that are not in the layout are ignored.
    ///
    /// Exact: it takes the worst stripe, i.e. the split of columns over
    /// sites that loses most, with every lost node holding a column where
    /// its site holds enough.
    ///
    /// ```
    /// use geoshard::layout::{Layout, NodeId, SiteId};
    ///
    /// let layout = Layout::builder()
    ///     .code(4, 2)
    ///     .site("a", |s| s.node("a1", "/srv/a1").node("a2", "/srv/a2"))
    ///     .site("b", |s| s.node("b1", "/srv/b1").node("b2", "/srv/b2"))
    ///     .site("c", |s| s.node("c1", "/srv/c1").node("c2", "/srv/c2"))
    ///     .build()?;
    /// assert!(layout.survives(&[SiteId(2)], &[]));
    /// assert!(layout.survives(&[], &[NodeId(0), NodeId(2)]));
    /// assert!(!layout.survives(&[SiteId(2)], &[NodeId(0)]));
    /// # Ok::<(), geoshard::Error>(())
    /// ```
    pub fn survives(&self, lost_sites: &[SiteId], lost_nodes: &[NodeId]) -> bool {
        let site_count = self.sites.len();
        let mut site_lost = vec![false; site_count];
        for site in lost_sites {
            if let Some(flag) = site_lost.get_mut(site.index()) {
                *flag = true;
            }
        }
        let mut node_lost = vec![false; self.nodes.len()];
        let mut lost_per_site = vec![0usize; site_count];
        for &node in lost_nodes {
            let Some(flag) = node_lost.get_mut(node.index()) else {
                continue;
            };
            let site = self.nodes[node.index()].site.index();
            if !*flag && !site_lost[site] {
                *flag = true;
                lost_per_site[site] += 1;
            }
        }
        self.spread.counts.iter().all(|split| {
            let lost: usize = (0..site_count)
                .map(|site| {
                    if site_lost[site] {
                        split[site]
                    } else {
                        split[site].min(lost_per_site[site])
                    }
                })
                .sum();
            lost <= self.code.parity_count
        })
    }

    /// Whether a stripe whose columns are on `columns` (one entry per column
    /// that exists; columns that were never written are left out) stays
    /// readable when `lost_sites` and `lost_nodes` are lost: at least k of
    /// its columns are on nodes outside both.
    ///
    /// Unlike [`survives`](Layout::survives), this is about one stripe as it
    /// actually is, handoffs and missing columns included.
    ///
    /// # Panics
    ///
    /// If a node of `columns` is not a node of this layout.
    pub fn placement_survives(
        &self,
        columns: &[NodeId],
        lost_sites: &[SiteId],
        lost_nodes: &[NodeId],
    ) -> bool {
        let left = columns
            .iter()
            .filter(|&&node| {
                !lost_nodes.contains(&node) && !lost_sites.contains(&self.node(node).site)
            })
            .count();
        left >= self.code.data_count
    }

    /// Whether a stripe whose columns are on `columns` (as in
    /// [`placement_survives`](Layout::placement_survives)) survives *every*
    /// loss the promise covers: any `sites_lost` sites plus any
    /// `extra_nodes_lost` more nodes. Health reporting asks this of each
    /// stripe ("does it survive losing any one site, where its columns
    /// really are").
    ///
    /// # Panics
    ///
    /// If a node of `columns` is not a node of this layout.
    pub fn placement_keeps_promise(&self, columns: &[NodeId]) -> bool {
        let lost_max = self.worst_promised_loss(columns);
        columns.len().saturating_sub(lost_max) >= self.code.data_count
    }

    /// The most columns of the stripe that one promised loss can take.
    fn worst_promised_loss(&self, columns: &[NodeId]) -> usize {
        let sites_lost = self.promise.sites_lost;
        let extra = self.promise.extra_nodes_lost;
        let mut per_site = vec![0usize; self.sites.len()];
        let mut per_node: Vec<(NodeId, usize)> = Vec::with_capacity(columns.len());
        for &node in columns {
            per_site[self.node(node).site.index()] += 1;
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
        let site_count = self.sites.len();
        if combinations(site_count, sites_lost) > COMBINATIONS_MAX {
            let node_counts: Vec<usize> = per_node.iter().map(|&(_, c)| c).collect();
            return (site_part + top_sum(&node_counts, extra)).min(columns.len());
        }
        let mut chosen: Vec<usize> = (0..sites_lost).collect();
        let mut worst = 0;
        loop {
            let in_lost = |node: NodeId| chosen.contains(&self.node(node).site.index());
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
