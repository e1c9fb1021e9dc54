//! Load follows capacity: over 100,000 stripes every node's column count,
//! and every site's data column count, is within 5% of its fair share; and
//! adding a node moves little more than its share.

use geoshard::layout::{Layout, LayoutBuilder};

const STRIPES: u64 = 100_000;

/// Sites of nodes with the given weights, named `s{i}n{j}`.
fn weighted_grid(data_count: usize, parity_count: usize, weights: &[&[u32]]) -> LayoutBuilder {
    let mut builder = Layout::builder().code(data_count, parity_count);
    for (site, site_weights) in weights.iter().enumerate() {
        builder = builder.site(format!("s{site}"), |mut s| {
            for (node, &weight) in site_weights.iter().enumerate() {
                s = s.node_weighted(
                    format!("s{site}n{node}"),
                    format!("/srv/s{site}n{node}").as_str(),
                    weight,
                );
            }
            s
        });
    }
    builder
}

/// Columns and data columns per node over `STRIPES` stripes.
fn tally(layout: &Layout) -> (Vec<u64>, Vec<u64>) {
    let mut columns = vec![0u64; layout.nodes().len()];
    let mut data = vec![0u64; layout.nodes().len()];
    let k = layout.code().data_count;
    for stripe_id in 0..STRIPES {
        for (index, node) in layout.placement(stripe_id).columns().iter().enumerate() {
            columns[node.index()] += 1;
            if index < k {
                data[node.index()] += 1;
            }
        }
    }
    (columns, data)
}

fn assert_within(what: &str, got: u64, expected: f64, tolerance: f64) {
    let error = (got as f64 - expected).abs() / expected;
    assert!(
        error <= tolerance,
        "{what}: {got} vs expected {expected:.0} ({:.1}% off)",
        error * 100.0
    );
}

/// Each site's capacity-weighted share of the columns it holds.
fn check_shares(layout: &Layout, columns: &[u64]) {
    for site in layout.sites() {
        let site_total: u64 = site.nodes.iter().map(|n| columns[n.index()]).sum();
        let weights: Vec<f64> = site
            .nodes
            .iter()
            .map(|n| f64::from(layout.node(*n).weight))
            .collect();
        let count = site_total as f64 / STRIPES as f64;
        let shares = capped_shares(&weights, count);
        for (node, share) in site.nodes.iter().zip(shares) {
            let name = &layout.node(*node).name;
            assert_within(name, columns[node.index()], share * STRIPES as f64, 0.05);
        }
    }
}

/// count * w / W, capped at one column per stripe, the rest shared out.
fn capped_shares(weights: &[f64], count: f64) -> Vec<f64> {
    let mut capped = vec![false; weights.len()];
    loop {
        let open_count = count - capped.iter().filter(|c| **c).count() as f64;
        let open_weight: f64 = weights
            .iter()
            .zip(&capped)
            .filter(|(_, c)| !**c)
            .map(|(w, _)| w)
            .sum();
        let shares: Vec<f64> = weights
            .iter()
            .zip(&capped)
            .map(|(w, c)| {
                if *c {
                    1.0
                } else {
                    open_count * w / open_weight
                }
            })
            .collect();
        let newly: Vec<usize> = (0..weights.len())
            .filter(|&i| !capped[i] && shares[i] >= 1.0)
            .collect();
        if newly.is_empty() {
            return shares;
        }
        for i in newly {
            capped[i] = true;
        }
    }
}

#[test]
fn three_by_three_rs_6_3_is_balanced() {
    let layout = weighted_grid(6, 3, &[&[1, 1, 1], &[1, 1, 1], &[1, 1, 1]])
        .build()
        .unwrap();
    let (columns, data) = tally(&layout);
    let column_mean = (STRIPES * 9) as f64 / 9.0;
    let data_mean = (STRIPES * 6) as f64 / 9.0;
    for (node, spec) in layout.nodes().iter().enumerate() {
        assert_within(&spec.name, columns[node], column_mean, 0.05);
        assert_within(&spec.name, data[node], data_mean, 0.05);
    }
    for site in layout.sites() {
        let site_data: u64 = site.nodes.iter().map(|n| data[n.index()]).sum();
        assert_within(&site.name, site_data, (STRIPES * 6) as f64 / 3.0, 0.05);
    }
}

#[test]
fn more_nodes_than_columns_per_site_is_balanced() {
    // Three columns per site over five nodes, and RS(4,4) whose 8 columns
    // split 3/3/2 with the rotation.
    for (k, m) in [(6, 3), (4, 4)] {
        let layout = weighted_grid(k, m, &[&[1; 5], &[1; 5], &[1; 5]])
            .build()
            .unwrap();
        let (columns, data) = tally(&layout);
        let n = (k + m) as f64;
        for (node, spec) in layout.nodes().iter().enumerate() {
            assert_within(&spec.name, columns[node], STRIPES as f64 * n / 15.0, 0.05);
            assert_within(
                &spec.name,
                data[node],
                STRIPES as f64 * k as f64 / 15.0,
                0.05,
            );
        }
        for site in layout.sites() {
            let site_data: u64 = site.nodes.iter().map(|n| data[n.index()]).sum();
            assert_within(&site.name, site_data, STRIPES as f64 * k as f64 / 3.0, 0.05);
        }
    }
}

#[test]
fn weights_one_to_two_are_followed() {
    // One column per site: plain weighted rendezvous.
    let layout = weighted_grid(2, 1, &[&[1, 2], &[1, 2], &[2, 1]])
        .build()
        .unwrap();
    let (columns, _) = tally(&layout);
    check_shares(&layout, &columns);
    assert_within("s0n1 / s0n0", columns[1] * 1000 / columns[0], 2000.0, 0.05);
    // Two columns per site over 1:2:1:2 nodes: 1/3 and 2/3 of stripes.
    let layout = weighted_grid(4, 2, &[&[1, 2, 1, 2], &[1, 2, 1, 2], &[2, 1, 2, 1]])
        .build()
        .unwrap();
    let (columns, _) = tally(&layout);
    check_shares(&layout, &columns);
    assert_within("s0n1 / s0n0", columns[1] * 1000 / columns[0], 2000.0, 0.05);
}

#[test]
fn weights_with_several_columns_per_site_are_followed() {
    // Three columns per site of six nodes weighted 1:1:1:2:2:2.
    let row: &[u32] = &[1, 1, 1, 2, 2, 2];
    let layout = weighted_grid(6, 3, &[row, row, row]).build().unwrap();
    let (columns, _) = tally(&layout);
    check_shares(&layout, &columns);
    // A node too heavy for its share is in every stripe, the rest share out.
    let layout = weighted_grid(4, 2, &[&[1, 1, 6, 1], &[1, 2, 1], &[3, 1, 1]])
        .build()
        .unwrap();
    let (columns, _) = tally(&layout);
    check_shares(&layout, &columns);
    assert_eq!(columns[2], STRIPES, "s0n2 holds a column of every stripe");
}

/// Fraction of the columns placed in site `site` whose node (by name)
/// differs between the two layouts.
fn moved_fraction(before: &Layout, after: &Layout, site: &str) -> (f64, u64) {
    // Compare by name: node ids shift when a node is added.
    let in_site: Vec<bool> = before
        .nodes()
        .iter()
        .map(|n| n.name.starts_with(site))
        .collect();
    let names: Vec<&str> = after.nodes().iter().map(|n| n.name.as_str()).collect();
    let before_ids: Vec<Option<usize>> = names
        .iter()
        .map(|name| before.node_by_name(name).map(|id| id.index()))
        .collect();
    let (mut moved, mut total, mut elsewhere) = (0u64, 0u64, 0u64);
    for stripe_id in 0..STRIPES {
        let a = before.placement(stripe_id);
        let b = after.placement(stripe_id);
        for (x, y) in a.columns().iter().zip(b.columns()) {
            let same = before_ids[y.index()] == Some(x.index());
            if in_site[x.index()] {
                total += 1;
                moved += u64::from(!same);
            } else {
                elsewhere += u64::from(!same);
            }
        }
    }
    (moved as f64 / total as f64, elsewhere)
}

#[test]
fn adding_a_node_moves_about_its_share() {
    // 3x3 RS(6,3) plus a 4th node in site s0: ideally 1/4 of s0's columns move.
    let before = weighted_grid(6, 3, &[&[1, 1, 1], &[1, 1, 1], &[1, 1, 1]])
        .build()
        .unwrap();
    let after = weighted_grid(6, 3, &[&[1, 1, 1, 1], &[1, 1, 1], &[1, 1, 1]])
        .build()
        .unwrap();
    let (moved, elsewhere) = moved_fraction(&before, &after, "s0");
    assert_eq!(elsewhere, 0, "other sites do not move");
    assert!(
        moved <= 1.5 * 0.25,
        "moved {moved:.3} of s0's columns, ideal 0.25"
    );
    // Removing it again is the same change backwards.
    println!("3 -> 4 nodes: moved {moved:.4} of the site's columns (ideal 0.25)");

    // Five nodes to six, two columns per site: ideal 1/6.
    let before = weighted_grid(4, 2, &[&[1; 5], &[1; 5], &[1; 5]])
        .build()
        .unwrap();
    let after = weighted_grid(4, 2, &[&[1; 6], &[1; 5], &[1; 5]])
        .build()
        .unwrap();
    let (moved, elsewhere) = moved_fraction(&before, &after, "s0");
    assert_eq!(elsewhere, 0);
    println!("5 -> 6 nodes: moved {moved:.4} of the site's columns (ideal 0.1667)");
    assert!(
        moved <= 1.5 / 6.0,
        "moved {moved:.3} of s0's columns, ideal 0.167"
    );
    // Stripes in other sites keep every column, and nothing moves for free.
    assert!(
        moved >= 1.0 / 6.0 * 0.95,
        "moved {moved:.3}, less than the new node's share"
    );
}

#[test]
fn adding_a_weighted_node_moves_about_its_share() {
    // Effective weights are re-solved for the grown site, yet the moves stay
    // close to the new node's capacity share of the site's columns.
    let row: &[u32] = &[1, 2, 1, 2];
    let before = weighted_grid(4, 2, &[row, row, row]).build().unwrap();
    let after = weighted_grid(4, 2, &[&[1, 2, 1, 2, 2], row, row])
        .build()
        .unwrap();
    let (moved, elsewhere) = moved_fraction(&before, &after, "s0");
    assert_eq!(elsewhere, 0);
    // The new node weighs 2 of 8 and the site holds 2 columns: 2 * 2/8 of
    // 2 columns, a quarter of them, should move.
    println!("weighted 1:2:1:2 + 2: moved {moved:.4} (ideal 0.25)");
    assert!(moved <= 1.5 * 0.25, "moved {moved:.3}, ideal 0.25");
    assert!(
        moved >= 0.25 * 0.95,
        "moved {moved:.3}, less than the new node's share"
    );
}
