//! Placements per second: the 3 sites x 3 nodes RS(6,3) layout, weighted and
//! larger layouts, and a naive rendezvous baseline measured in the same run.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use geoshard::layout::{Layout, NodeId};

fn grid(data_count: usize, parity_count: usize, weights: &[Vec<u32>]) -> Layout {
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
    builder.build().expect("bench layout")
}

/// What a first implementation would do: for each column, score every
/// node of the column's site with SipHash over (stripe, column, name), take
/// the best unused one. Same result shape, no precomputation.
fn naive_placement(layout: &Layout, stripe_id: u64) -> Vec<NodeId> {
    let n = layout.code().column_count();
    let sites = layout.sites();
    let mut columns: Vec<NodeId> = Vec::with_capacity(n);
    for column in 0..n {
        let site = &sites[(column + stripe_id as usize) % sites.len()];
        let best = site
            .nodes
            .iter()
            .filter(|node| !columns.contains(node))
            .max_by_key(|node| {
                let mut hasher = DefaultHasher::new();
                (stripe_id, column, &layout.node(**node).name).hash(&mut hasher);
                hasher.finish()
            })
            .copied()
            .expect("a free node");
        columns.push(best);
    }
    columns
}

fn bench_placement(c: &mut Criterion) {
    let cases = [
        ("3x3 rs(6,3)", grid(6, 3, &vec![vec![1; 3]; 3])),
        (
            "3x3 rs(6,3) weighted 1:2:3",
            grid(6, 3, &vec![vec![1, 2, 3]; 3]),
        ),
        (
            "3x6 rs(6,3) weighted 1:1:1:2:2:2",
            grid(6, 3, &vec![vec![1, 1, 1, 2, 2, 2]; 3]),
        ),
        ("5x12 rs(10,5)", grid(10, 5, &vec![vec![1; 12]; 5])),
        ("3x40 rs(12,6)", grid(12, 6, &vec![vec![1; 40]; 3])),
    ];
    let mut group = c.benchmark_group("layout/placement");
    group.throughput(Throughput::Elements(1));
    for (name, layout) in &cases {
        let mut stripe_id = 0u64;
        group.bench_function(*name, |b| {
            b.iter(|| {
                stripe_id = stripe_id.wrapping_add(1);
                black_box(layout.placement(black_box(stripe_id)))
            })
        });
    }
    let (_, baseline) = &cases[0];
    let mut stripe_id = 0u64;
    group.bench_function("3x3 rs(6,3) naive siphash baseline", |b| {
        b.iter(|| {
            stripe_id = stripe_id.wrapping_add(1);
            black_box(naive_placement(baseline, black_box(stripe_id)))
        })
    });
    group.finish();

    let layout = &cases[0].1;
    c.bench_function("layout/build 3x3 rs(6,3)", |b| {
        b.iter(|| black_box(grid(6, 3, &vec![vec![1; 3]; 3])))
    });
    let placement = layout.placement(7);
    c.bench_function("layout/handoff_candidates 3x3 rs(6,3)", |b| {
        let home = placement.columns()[0];
        b.iter(|| black_box(layout.handoff_candidates(&placement, 0, &|n| n == home)))
    });
}

criterion_group!(benches, bench_placement);
criterion_main!(benches);
