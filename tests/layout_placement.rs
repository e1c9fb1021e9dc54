//! Placement keeps the promise for every failure set on random layouts,
//! refusals are real impossibilities, and placement is deterministic,
//! pinned, and gives sensible handoff candidates.

use geoshard::Error;
use geoshard::layout::{Layout, LayoutBuilder, NodeId, Placement, Promise, SiteId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn grid(data_count: usize, parity_count: usize, sizes: &[usize]) -> LayoutBuilder {
    let mut builder = Layout::builder().code(data_count, parity_count);
    for (site, &size) in sizes.iter().enumerate() {
        builder = builder.site(format!("s{site}"), |mut s| {
            for node in 0..size {
                s = s.node(
                    format!("s{site}n{node}"),
                    format!("/srv/s{site}n{node}").as_str(),
                );
            }
            s
        });
    }
    builder
}

/// Every subset of `items` of size `size`, in order.
fn subsets<T: Copy>(items: &[T], size: usize) -> Vec<Vec<T>> {
    if size == 0 {
        return vec![Vec::new()];
    }
    if items.len() < size {
        return Vec::new();
    }
    let mut with_first: Vec<Vec<T>> = subsets(&items[1..], size - 1)
        .into_iter()
        .map(|mut rest| {
            rest.insert(0, items[0]);
            rest
        })
        .collect();
    with_first.extend(subsets(&items[1..], size));
    with_first
}

/// Whether some split of `n` columns over sites with `caps` nodes keeps any
/// `sites_lost` sites plus `extra` nodes to at most `m` lost columns, by
/// trying every split.
fn some_split_keeps_promise(
    caps: &[usize],
    n: usize,
    m: usize,
    sites_lost: usize,
    extra: usize,
) -> bool {
    fn walk(
        caps: &[usize],
        left: usize,
        split: &mut Vec<usize>,
        ok: &dyn Fn(&[usize]) -> bool,
    ) -> bool {
        match caps.split_first() {
            None => left == 0 && ok(split),
            Some((&cap, rest)) => (0..=cap.min(left)).any(|c| {
                split.push(c);
                let found = walk(rest, left - c, split, ok);
                split.pop();
                found
            }),
        }
    }
    let ok = |split: &[usize]| {
        let mut sorted = split.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let in_sites: usize = sorted.iter().take(sites_lost).sum();
        (in_sites + extra).min(n) <= m
    };
    walk(caps, n, &mut Vec::new(), &ok)
}

fn check_placement_keeps_promise(layout: &Layout, placement: &Placement) {
    let code = layout.code();
    let Promise {
        sites_lost,
        extra_nodes_lost,
    } = layout.promise();
    let columns = placement.columns();
    assert_eq!(columns.len(), code.column_count());
    for (index, node) in columns.iter().enumerate() {
        assert!(node.index() < layout.nodes().len());
        assert!(
            !columns[..index].contains(node),
            "two columns on one node: {columns:?}"
        );
        assert_eq!(placement.column_of(*node), Some(index));
    }
    let mut per_site = vec![0; layout.sites().len()];
    for node in columns {
        per_site[layout.node(*node).site.index()] += 1;
    }
    assert!(per_site.iter().all(|&c| c <= layout.max_columns_per_site()));
    assert!(layout.placement_keeps_promise(columns));

    let site_ids: Vec<SiteId> = (0..layout.sites().len())
        .map(|s| SiteId(s as u16))
        .collect();
    for lost_sites in subsets(&site_ids, sites_lost) {
        assert!(layout.survives(&lost_sites, &[]));
        let outside: Vec<NodeId> = (0..layout.nodes().len())
            .map(|n| NodeId(n as u16))
            .filter(|n| !lost_sites.contains(&layout.node(*n).site))
            .collect();
        // Brute force over the extra nodes in small cases.
        let extra_sets = if extra_nodes_lost == 0 || outside.len() <= 12 {
            subsets(&outside, extra_nodes_lost.min(outside.len()))
        } else {
            vec![
                outside
                    .iter()
                    .copied()
                    .filter(|n| columns.contains(n))
                    .take(extra_nodes_lost)
                    .collect(),
            ]
        };
        for lost_nodes in extra_sets {
            let left = columns
                .iter()
                .filter(|n| !lost_nodes.contains(n) && !lost_sites.contains(&layout.node(**n).site))
                .count();
            assert!(
                left >= code.data_count,
                "{} lost sites {lost_sites:?} nodes {lost_nodes:?}: {left} columns left",
                code
            );
            assert!(layout.placement_survives(columns, &lost_sites, &lost_nodes));
        }
    }
}

#[test]
fn random_layouts_keep_their_promise_or_are_rightly_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x1a70_0001);
    let (mut built, mut refused, mut short) = (0, 0, 0);
    for _ in 0..400 {
        let site_count = rng.random_range(2..=6);
        let caps: Vec<usize> = (0..site_count).map(|_| rng.random_range(1..=8)).collect();
        let k = rng.random_range(1..=8);
        let m = rng.random_range(1..=6);
        let promise = Promise {
            sites_lost: [0, 1, 1, 1, 2][rng.random_range(0..5)],
            extra_nodes_lost: [0, 0, 1, 2][rng.random_range(0..4)],
        };
        let n = k + m;
        match grid(k, m, &caps).promise(promise).build() {
            Ok(layout) => {
                built += 1;
                for _ in 0..24 {
                    let stripe_id = rng.random::<u64>();
                    let placement = layout.placement(stripe_id);
                    assert_eq!(placement, layout.placement(stripe_id));
                    assert_eq!(placement.stripe_id(), stripe_id);
                    check_placement_keeps_promise(&layout, &placement);
                }
                // Every site that holds columns holds data columns too.
                for share in layout.explain().sites {
                    assert!(share.column_count_max == 0 || share.data_column_mean > 0.0);
                }
            }
            Err(Error::LayoutCannotSurvive { .. }) => {
                refused += 1;
                let work: usize = caps.iter().map(|&c| c.min(n) + 1).product();
                if work <= 50_000 && promise.sites_lost < site_count {
                    assert!(
                        !some_split_keeps_promise(
                            &caps,
                            n,
                            m,
                            promise.sites_lost,
                            promise.extra_nodes_lost
                        ),
                        "refused RS({k},{m}) over {caps:?} with {promise:?}, but a split exists"
                    );
                }
            }
            Err(Error::InvalidLayout { reason, .. }) => {
                short += 1;
                assert!(
                    caps.iter().sum::<usize>() < n,
                    "unexpected refusal: {reason}"
                );
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(
        built >= 100 && refused >= 50 && short >= 5,
        "{built} built, {refused} refused, {short} short"
    );
}

#[test]
fn survives_is_exact_for_the_worst_stripe() {
    // RS(4,4) over 3 sites of 3: splits 3/3/2 rotate.
    let layout = grid(4, 4, &[3, 3, 3]).build().unwrap();
    let (a, b, c) = (SiteId(0), SiteId(1), SiteId(2));
    let node = |site: usize, index: usize| layout.sites()[site].nodes[index];
    assert!(layout.survives(&[a], &[]));
    // A site holding 3 plus one more node: 4 lost, fine.
    assert!(layout.survives(&[a], &[node(1, 0)]));
    // Plus two more nodes in one site: some stripe puts columns on both.
    assert!(!layout.survives(&[a], &[node(1, 0), node(1, 1)]));
    // Lost nodes inside lost sites, and duplicates, count once.
    assert!(layout.survives(&[a, a], &[node(0, 0), node(0, 1), node(1, 0), node(1, 0)]));
    assert!(!layout.survives(&[a, b], &[]));
    assert!(layout.survives(&[], &[node(0, 0), node(0, 1), node(1, 0), node(2, 2)]));
    assert!(!layout.survives(
        &[],
        &[node(0, 0), node(0, 1), node(1, 0), node(2, 2), node(2, 1)]
    ));
    // Whatever survives() says, every stripe agrees with it.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..200 {
        let lost_sites: Vec<SiteId> = [a, b, c]
            .into_iter()
            .filter(|_| rng.random_bool(0.3))
            .collect();
        let lost_nodes: Vec<NodeId> = (0..9)
            .map(NodeId)
            .filter(|_| rng.random_bool(0.2))
            .collect();
        let all = layout.survives(&lost_sites, &lost_nodes);
        let each = (0..300u64).all(|id| {
            layout.placement_survives(layout.placement(id).columns(), &lost_sites, &lost_nodes)
        });
        if all {
            assert!(each, "{lost_sites:?} {lost_nodes:?}");
        }
        // 300 stripes cover every rotation and node choice of a 3x3 site.
        assert_eq!(all, each, "{lost_sites:?} {lost_nodes:?}");
    }
}

#[test]
fn placement_is_pinned() {
    // Placement is part of the on-disk contract: if this changes, stripes
    // written before the change are placed elsewhere by the new code.
    let layout = grid(6, 3, &[3, 3, 3]).build().unwrap();
    let pinned = [
        (0, "s1n0 s2n0 s0n1 s1n1 s2n2 s0n2 s1n2 s2n1 s0n0"),
        (1, "s2n0 s0n1 s1n0 s2n2 s0n2 s1n2 s2n1 s0n0 s1n1"),
        (2, "s1n0 s2n1 s0n2 s1n1 s2n0 s0n1 s1n2 s2n2 s0n0"),
        (u64::MAX, "s0n1 s1n0 s2n1 s0n0 s1n2 s2n0 s0n2 s1n1 s2n2"),
    ];
    for (stripe_id, names) in pinned {
        assert_eq!(
            layout
                .placement_names(&layout.placement(stripe_id))
                .join(" "),
            names,
            "stripe {stripe_id}"
        );
    }
    let weighted = Layout::builder()
        .code(2, 2)
        .site("a", |s| {
            s.node("a1", "/a1")
                .node_weighted("a2", "/a2", 3)
                .node("a3", "/a3")
        })
        .site("b", |s| {
            s.node_weighted("b1", "/b1", 2)
                .node("b2", "/b2")
                .node("b3", "/b3")
        })
        .build()
        .unwrap();
    let names: Vec<String> = (0..4)
        .map(|id| weighted.placement_names(&weighted.placement(id)).join(" "))
        .collect();
    // a2 (3 of 5) and b1 (2 of 4) are heavy enough to be in every stripe.
    assert_eq!(
        names,
        ["a3 b1 a2 b3", "b1 a2 b2 a3", "b1 a3 b3 a2", "b1 a3 b2 a2"]
    );
}

#[test]
fn placement_depends_on_names_not_on_description_order() {
    let forward = grid(4, 2, &[3, 3, 3]).build().unwrap();
    // The same sites and nodes described in another order.
    let mut builder = Layout::builder().code(4, 2);
    for site in [2, 0, 1] {
        builder = builder.site(format!("s{site}"), |mut s| {
            for node in [2, 1, 0] {
                s = s.node(
                    format!("s{site}n{node}"),
                    format!("/srv/s{site}n{node}").as_str(),
                );
            }
            s
        });
    }
    let shuffled = builder.build().unwrap();
    assert_ne!(forward, shuffled);
    let mut moved = 0;
    for id in 0..1000 {
        let a = forward.placement_names(&forward.placement(id));
        let b = shuffled.placement_names(&shuffled.placement(id));
        // Nodes within a site are chosen by name; which site holds which
        // columns follows the site order, so compare per site.
        for site in ["s0", "s1", "s2"] {
            let mut x: Vec<&str> = a.iter().copied().filter(|n| n.starts_with(site)).collect();
            let mut y: Vec<&str> = b.iter().copied().filter(|n| n.starts_with(site)).collect();
            x.sort_unstable();
            y.sort_unstable();
            moved += usize::from(x != y);
        }
    }
    assert_eq!(
        moved, 0,
        "the node sets chosen in each site depend only on names"
    );
}

#[test]
fn names_round_trip_through_a_header() {
    let layout = grid(6, 3, &[3, 3, 3]).build().unwrap();
    let placement = layout.placement(99);
    let names = layout.placement_names(&placement);
    assert_eq!(layout.placement_from_names(99, &names).unwrap(), placement);
    let err = layout
        .placement_from_names(99, &["s0n0", "gone"])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: node \"gone\" is not in the layout"
    );
    assert!(layout.placement_from_names(1, &["s0n0", "s0n0"]).is_err());
    assert!(Placement::from_columns(1, &[NodeId(0); 300]).is_err());
}

#[test]
fn handoff_prefers_the_same_site_then_emptier_sites() {
    // RS(6,3) on 3 sites of 4 nodes: each stripe leaves one node per site free.
    let layout = grid(6, 3, &[4, 4, 4]).build().unwrap();
    let nobody_down = |_: NodeId| false;
    let mut first_in_site = [0usize; 4];
    for id in 0..2000 {
        let placement = layout.placement(id);
        for column in 0..9 {
            let home = placement.columns()[column];
            let down = |node: NodeId| node == home;
            let candidates = layout.handoff_candidates(&placement, column, &down);
            assert_eq!(
                candidates,
                layout.handoff_candidates(&placement, column, &down)
            );
            // One free node per site: the home site's first, then the two others.
            assert_eq!(candidates.len(), 3);
            let home_site = layout.node(home).site;
            assert_eq!(layout.node(candidates[0]).site, home_site);
            assert!(candidates.iter().all(|c| placement.column_of(*c).is_none()));
            assert!(
                candidates[1..]
                    .iter()
                    .all(|c| layout.node(*c).site != home_site)
            );
            // Handing off within the site keeps the promise.
            let mut columns = placement.columns().to_vec();
            columns[column] = candidates[0];
            assert!(layout.placement_keeps_promise(&columns));
            // Moving it to another site makes that site hold 4 > 3.
            columns[column] = candidates[1];
            assert!(!layout.placement_keeps_promise(&columns));
            assert!(layout.placement_survives(&columns, &[], &[home]));
        }
        let free_in_site0: Vec<NodeId> = layout.sites()[0]
            .nodes
            .iter()
            .copied()
            .filter(|n| placement.column_of(*n).is_none())
            .collect();
        assert_eq!(free_in_site0.len(), 1);
        let candidates = layout.handoff_candidates(&placement, 0, &nobody_down);
        assert_eq!(candidates.len(), 3);
        if layout.node(placement.columns()[0]).site == SiteId(0) {
            first_in_site[free_in_site0[0].index()] += 1;
        }
    }
    // The free node varies with the stripe, so handoff load spreads.
    assert!(
        first_in_site.iter().all(|&count| count > 50),
        "{first_in_site:?}"
    );
}

#[test]
fn handoff_ranks_by_rendezvous_and_skips_down_nodes() {
    // Two columns per site, five nodes per site: three free nodes per site.
    let layout = grid(4, 2, &[5, 5, 5]).build().unwrap();
    let mut first = vec![0usize; 15];
    for id in 0..3000 {
        let placement = layout.placement(id);
        let home = placement.columns()[0];
        let home_site = layout.node(home).site;
        let down = |node: NodeId| node == home;
        let candidates = layout.handoff_candidates(&placement, 0, &down);
        assert_eq!(candidates.len(), 9);
        assert!(
            candidates[..3]
                .iter()
                .all(|c| layout.node(*c).site == home_site)
        );
        first[candidates[0].index()] += 1;
        // Taking the first candidate down promotes the second.
        let also_down = |node: NodeId| node == home || node == candidates[0];
        let next = layout.handoff_candidates(&placement, 0, &also_down);
        assert_eq!(next, candidates[1..]);
        // With a whole site down, its nodes are skipped.
        let site_down = |node: NodeId| layout.node(node).site == home_site;
        let elsewhere = layout.handoff_candidates(&placement, 0, &site_down);
        assert_eq!(elsewhere, candidates[3..]);
    }
    // Every node is some stripe's first choice, about equally often.
    let mean = 3000.0 / 15.0;
    assert!(
        first.iter().all(|&c| (c as f64 - mean).abs() < mean * 0.3),
        "{first:?}"
    );
}
