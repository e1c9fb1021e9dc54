//! Where a stripe's columns go when some nodes take no writes, and whether
//! columns where they are keep the promise given the nodes that have
//! already failed (docs/DURABILITY.md, "The plan and the acknowledgement
//! rule").

use super::Layout;
use super::placement::Placement;
use super::spread::top_sum;
use super::survive::{combinations, next_combination};
use super::types::NodeId;

/// How the nodes that have failed now stand against the promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromiseRoom {
    /// Some promise failure set contains the failed nodes, and one more node
    /// may still fail within the promise.
    Room,
    /// The failed nodes use the promise up: a promise failure set contains
    /// them, but no other node may fail (e.g. a whole site is down).
    UsedUp,
    /// No promise failure set contains the failed nodes.
    Exceeded,
}

/// Above this many site combinations the promise checks give up on exact
/// enumeration and answer conservatively.
const COMBINATIONS_MAX: usize = 100_000;

/// The body of [`Layout::promise_room`].
pub(crate) fn promise_room(layout: &Layout, failed: &[NodeId]) -> PromiseRoom {
    let failed = distinct(layout, failed);
    let extra = layout.promise.extra_nodes_lost;
    let sites_lost = layout.promise.sites_lost.min(layout.sites.len());
    // Per site: its failed nodes, and whether one of its nodes has not
    // failed. The promise failure set covering most of `failed` takes
    // the sites with the most failed nodes (among equal counts, one
    // with a node left): exact, without enumerating site choices.
    let per_site: Vec<(usize, bool)> = layout
        .sites
        .iter()
        .map(|site| {
            let down = site.nodes.iter().filter(|n| failed.contains(n)).count();
            (down, down < site.nodes.len())
        })
        .collect();
    let mut order: Vec<usize> = (0..per_site.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(per_site[i].0), !per_site[i].1));
    let chosen = &order[..sites_lost];
    let covered: usize = chosen.iter().map(|&i| per_site[i].0).sum();
    let outside = failed.len() - covered;
    if outside > extra {
        return PromiseRoom::Exceeded;
    }
    let free_elsewhere = layout.nodes.len() > failed.len();
    let free_in_chosen = chosen.iter().any(|&i| per_site[i].1);
    if (outside < extra && free_elsewhere) || free_in_chosen {
        PromiseRoom::Room
    } else {
        PromiseRoom::UsedUp
    }
}

/// The body of [`Layout::survives_promise_given`].
pub(crate) fn survives_promise_given(
    layout: &Layout,
    stored: &[NodeId],
    zero_columns: usize,
    failed: &[NodeId],
) -> bool {
    let k = layout.code.data_count;
    let failed = distinct(layout, failed);
    let extra = layout.promise.extra_nodes_lost;
    let mut per_node: Vec<(NodeId, usize)> = Vec::new();
    for &node in stored {
        match per_node.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1,
            None => per_node.push((node, 1)),
        }
    }
    let mut contained = false;
    let mut worst = 0usize;
    let enumerated = for_each_site_choice(layout, &mut |chosen: &[usize]| {
        let in_sites = |n: NodeId| chosen.contains(&layout.node(n).site.index());
        let outside: Vec<NodeId> = failed.iter().copied().filter(|&n| !in_sites(n)).collect();
        if outside.len() > extra {
            return false;
        }
        contained = true;
        let mut lost = 0usize;
        let mut rest: Vec<usize> = Vec::new();
        for &(node, count) in &per_node {
            if in_sites(node) || outside.contains(&node) {
                lost += count;
            } else {
                rest.push(count);
            }
        }
        lost += top_sum(&rest, extra - outside.len());
        worst = worst.max(lost);
        false
    });
    if !enumerated {
        // Too many combinations to enumerate: count the worst sites and
        // nodes together, which can only overstate the loss.
        let mut per_site = vec![0usize; layout.sites.len()];
        for &node in stored {
            per_site[layout.node(node).site.index()] += 1;
        }
        let counts: Vec<usize> = per_node.iter().map(|&(_, c)| c).collect();
        worst = top_sum(&per_site, layout.promise.sites_lost) + top_sum(&counts, extra);
        contained = true;
    }
    if !contained {
        worst = per_node
            .iter()
            .filter(|(n, _)| failed.contains(n))
            .map(|&(_, c)| c)
            .sum();
    }
    (stored.len() + zero_columns).saturating_sub(worst) >= k
}

/// The body of [`Layout::plan_columns`].
pub(crate) fn plan_columns(
    layout: &Layout,
    placement: &Placement,
    stored: &[usize],
    writable: &dyn Fn(NodeId) -> bool,
) -> Option<Vec<NodeId>> {
    let columns = placement.columns();
    let mut plan: Vec<Option<NodeId>> = vec![None; stored.len()];
    for (i, &c) in stored.iter().enumerate() {
        if writable(columns[c]) {
            plan[i] = Some(columns[c]);
        }
    }
    let candidates: Vec<NodeId> = layout
        .nodes
        .iter()
        .enumerate()
        .map(|(i, _)| NodeId(i as u16))
        .filter(|&n| writable(n))
        .collect();
    if candidates.is_empty() && plan.iter().any(Option::is_none) {
        return None;
    }
    for (i, &c) in stored.iter().enumerate() {
        if plan[i].is_some() {
            continue;
        }
        let held: Vec<NodeId> = plan.iter().flatten().copied().collect();
        let best = handoff_for(layout, placement, c, &held, &candidates)?;
        plan[i] = Some(best);
    }
    plan.into_iter().collect()
}

/// The body of [`Layout::handoff_for`].
pub(crate) fn handoff_for(
    layout: &Layout,
    placement: &Placement,
    column: usize,
    held: &[NodeId],
    candidates: &[NodeId],
) -> Option<NodeId> {
    let home_site = layout.node(placement.columns()[column]).site;
    let mut per_site = vec![0usize; layout.sites.len()];
    let mut per_node = vec![0usize; layout.nodes.len()];
    for &n in held {
        per_site[layout.node(n).site.index()] += 1;
        per_node[n.index()] += 1;
    }
    let ranked = layout.handoff_candidates(placement, column, &|n| !candidates.contains(&n));
    let rank = |n: NodeId| ranked.iter().position(|&r| r == n).unwrap_or(usize::MAX);
    let site_max = per_site.iter().copied().max().unwrap_or(0);
    candidates.iter().copied().min_by_key(|&n| {
        let site = layout.node(n).site;
        (
            site_max.max(per_site[site.index()] + 1),
            site != home_site,
            per_node[n.index()],
            rank(n),
            n,
        )
    })
}

/// `nodes` without duplicates or ids outside the layout.
fn distinct(layout: &Layout, nodes: &[NodeId]) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = nodes
        .iter()
        .copied()
        .filter(|n| n.index() < layout.nodes.len())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Calls `visit` with every choice of `sites_lost` sites (as site
/// indexes) until it returns true. Returns false without calling it
/// when there are more than [`COMBINATIONS_MAX`] choices.
fn for_each_site_choice(layout: &Layout, visit: &mut dyn FnMut(&[usize]) -> bool) -> bool {
    let n = layout.sites.len();
    let r = layout.promise.sites_lost.min(n);
    if combinations(n, r) > COMBINATIONS_MAX {
        return false;
    }
    let mut chosen: Vec<usize> = (0..r).collect();
    loop {
        if visit(&chosen) {
            return true;
        }
        if !next_combination(&mut chosen, n) {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::SiteId;

    fn layout_3x3() -> Layout {
        let mut builder = Layout::builder().code(6, 3);
        for s in 0..3 {
            builder = builder.site(format!("s{s}"), |mut b| {
                for n in 0..3 {
                    b = b.node(format!("s{s}n{n}"), format!("/x/s{s}n{n}").as_str());
                }
                b
            });
        }
        builder.build().unwrap()
    }

    fn site_counts(layout: &Layout, nodes: &[NodeId]) -> Vec<usize> {
        let mut per_site = vec![0; layout.sites().len()];
        for n in nodes {
            per_site[layout.node(*n).site.index()] += 1;
        }
        per_site
    }

    #[test]
    fn a_full_node_hands_off_within_its_site() {
        let layout = layout_3x3();
        for stripe_id in 0..500u64 {
            let placement = layout.placement(stripe_id);
            for full in 0..9u16 {
                let stored: Vec<usize> = (0..9).collect();
                let plan = layout
                    .plan_columns(&placement, &stored, &|n| n != NodeId(full))
                    .unwrap();
                assert!(!plan.contains(&NodeId(full)));
                assert_eq!(site_counts(&layout, &plan), [3, 3, 3], "stripe {stripe_id}");
                assert!(layout.survives_promise_given(&plan, 0, &[]));
                assert!(layout.survives_promise_given(&plan, 0, &[NodeId(full)]));
            }
        }
    }

    #[test]
    fn a_burned_site_leaves_a_degraded_plan_on_the_others() {
        let layout = layout_3x3();
        let site0: Vec<NodeId> = layout.site(SiteId(0)).nodes.clone();
        assert_eq!(layout.promise_room(&site0), PromiseRoom::UsedUp);
        let placement = layout.placement(7);
        let stored: Vec<usize> = (0..9).collect();
        let plan = layout
            .plan_columns(&placement, &stored, &|n| !site0.contains(&n))
            .unwrap();
        let counts = site_counts(&layout, &plan);
        assert_eq!(counts[0], 0);
        assert!(counts[1].abs_diff(counts[2]) <= 1);
        // It survives the site that is gone, not another one.
        assert!(layout.survives_promise_given(&plan, 0, &site0));
        assert!(!layout.survives_promise_given(&plan, 0, &[]));
    }

    #[test]
    fn promise_room() {
        let layout = layout_3x3();
        assert_eq!(layout.promise_room(&[]), PromiseRoom::Room);
        assert_eq!(
            layout.promise_room(&[NodeId(0), NodeId(1)]),
            PromiseRoom::Room
        );
        assert_eq!(
            layout.promise_room(&[NodeId(0), NodeId(1), NodeId(2)]),
            PromiseRoom::UsedUp
        );
        assert_eq!(
            layout.promise_room(&[NodeId(0), NodeId(3)]),
            PromiseRoom::Exceeded
        );
    }

    #[test]
    fn three_columns_on_one_site_of_a_small_stripe_is_caught() {
        let layout = layout_3x3();
        // k + 1 = 7 columns spread 3/3/1: either 3-column site loses it.
        let stored = [0u16, 1, 2, 3, 4, 5, 6].map(NodeId);
        assert!(!layout.survives_promise_given(&stored, 0, &[]));
        // 4 stored (1 data + 3 parity) and 5 zero data columns, spread 2/1/1.
        let small = [0u16, 1, 3, 6].map(NodeId);
        assert!(layout.survives_promise_given(&small, 5, &[]));
        // All four on one site: that site's loss leaves only the zeros.
        let bad = [0u16, 0, 1, 2].map(NodeId);
        assert!(!layout.survives_promise_given(&bad, 5, &[]));
    }

    /// The exact `promise_room` (no enumeration) agrees with enumerating
    /// every choice of lost sites, on every failed set of small layouts.
    #[test]
    fn promise_room_matches_enumerating_every_site_choice() {
        let reference = |layout: &Layout, failed: &[NodeId]| -> PromiseRoom {
            let extra = layout.promise.extra_nodes_lost;
            let n = layout.sites.len();
            let r = layout.promise.sites_lost.min(n);
            let mut room = PromiseRoom::Exceeded;
            let mut chosen: Vec<usize> = (0..r).collect();
            loop {
                let outside = failed
                    .iter()
                    .filter(|f| !chosen.contains(&layout.node(**f).site.index()))
                    .count();
                if outside <= extra {
                    let free = layout.nodes.len() > failed.len();
                    let in_sites = chosen
                        .iter()
                        .any(|&s| layout.sites[s].nodes.iter().any(|x| !failed.contains(x)));
                    if (outside < extra && free) || in_sites {
                        return PromiseRoom::Room;
                    }
                    room = PromiseRoom::UsedUp;
                }
                if !next_combination(&mut chosen, n) {
                    return room;
                }
            }
        };
        let mut checked = 0;
        for sites in 2..=5usize {
            for per_site in 1..=3usize {
                for sites_lost in 0..sites.min(3) {
                    for extra in 0..=2usize {
                        let mut builder = Layout::builder()
                            .code(2, 4)
                            .sites_lost(sites_lost)
                            .extra_nodes_lost(extra);
                        for s in 0..sites {
                            builder = builder.site(format!("s{s}"), |mut b| {
                                for n in 0..per_site {
                                    b = b.node(format!("s{s}n{n}"), format!("/x/{s}/{n}").as_str());
                                }
                                b
                            });
                        }
                        let Ok(layout) = builder.build() else {
                            continue;
                        };
                        let count = layout.nodes.len();
                        for mask in 0u32..(1 << count) {
                            let failed: Vec<NodeId> = (0..count)
                                .filter(|i| mask & (1 << i) != 0)
                                .map(|i| NodeId(i as u16))
                                .collect();
                            assert_eq!(
                                layout.promise_room(&failed),
                                reference(&layout, &failed),
                                "{sites} sites x {per_site}, promise ({sites_lost}, {extra}), failed {failed:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
