//! Acknowledgement counts where columns are, not how many (docs/DURABILITY.md,
//! D1, D2): a full disk moves a column within its site, so one full disk
//! plus one site fire loses nothing, for every site and several codes.

mod common;

use geoshard::layout::{Layout, NodeId, SiteId};
use geoshard::{Store, WritePolicy};

/// Puts full stripes and small blobs with `full` out of space, checks the
/// store says it survives a site loss, then burns `fire` and reopens: every
/// acknowledged blob reads back.
fn full_disk_then_fire(layout: &Layout, full: NodeId, fire: SiteId) {
    let options = common::options();
    let (faulty, handles) = common::faulty_nodes(layout);
    let store = Store::open_with_nodes(layout.clone(), options.clone(), handles).unwrap();
    faulty[full.index()].fail_next_appends(u32::MAX, libc::ENOSPC);
    let mut model = std::collections::HashMap::new();
    for i in 0..5u64 {
        // Spread over every data column: a full stripe per put.
        let big = common::value(i, 1 << 20);
        store
            .put(format!("big{i}").as_bytes(), big.clone())
            .unwrap();
        model.insert(format!("big{i}").into_bytes(), big);
        let small = common::value(100 + i, 300);
        store
            .put(format!("small{i}").as_bytes(), small.clone())
            .unwrap();
        model.insert(format!("small{i}").into_bytes(), small);
    }
    let health = store.health();
    assert!(
        health.survives_any_site_loss,
        "{} full: the store says a site fire would lose data: {health:?}",
        layout.node(full).name
    );
    store.close().unwrap();
    drop(store);
    drop(faulty);
    common::burn_site(layout, fire);
    let store = Store::open(layout.clone(), options).unwrap_or_else(|e| {
        panic!(
            "{} full, then site {} burned: open failed: {e}",
            layout.node(full).name,
            layout.sites()[fire.index()].name
        )
    });
    for (key, value) in &model {
        let got = store.get(key).unwrap_or_else(|e| {
            panic!(
                "{} full, then site {} burned: {} unreadable: {e}",
                layout.node(full).name,
                layout.sites()[fire.index()].name,
                String::from_utf8_lossy(key)
            )
        });
        assert_eq!(
            got.map(|b| b.to_bytes()).as_deref(),
            Some(&value[..]),
            "{} full, then site {} burned: {} lost",
            layout.node(full).name,
            layout.sites()[fire.index()].name,
            String::from_utf8_lossy(key)
        );
    }
}

/// Every site's second node full in turn, then every site's fire.
fn every_full_site_then_every_fire(sites: usize, nodes_per_site: usize, k: usize, m: usize) {
    for full_site in 0..sites {
        for fire in 0..sites {
            let dir = common::fast_tempdir();
            let layout = common::layout(dir.path(), sites, nodes_per_site, k, m);
            drop(common::create(layout.clone(), common::options()));
            let full = layout.sites()[full_site].nodes[1];
            full_disk_then_fire(&layout, full, SiteId(fire as u16));
        }
    }
}

/// Review item 2, as reported: s1n1 full, then site 0 burns.
#[test]
fn one_full_disk_then_a_site_fire_loses_nothing() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    drop(common::create(layout.clone(), common::options()));
    full_disk_then_fire(&layout, NodeId(4), SiteId(0));
}

#[test]
fn full_disk_on_each_site_then_each_site_fire_rs_6_3_over_3x3() {
    every_full_site_then_every_fire(3, 3, 6, 3);
}

#[test]
fn full_disk_on_each_site_then_each_site_fire_rs_4_2_over_3x2() {
    every_full_site_then_every_fire(3, 2, 4, 2);
}

#[test]
fn full_disk_on_each_site_then_each_site_fire_rs_10_5_over_5_sites() {
    every_full_site_then_every_fire(5, 3, 10, 5);
}

/// Review item 3: after a full disk and a fire the newest acknowledged
/// commit must still be there (it used to be counted as "discarded"), and
/// it must not matter whether another commit followed it.
#[test]
fn newest_acknowledged_commit_survives_a_full_disk_and_a_fire() {
    for extra_commit in [false, true] {
        let dir = common::fast_tempdir();
        let layout = common::layout_3x3(dir.path());
        drop(common::create(layout.clone(), common::options()));
        let (faulty, handles) = common::faulty_nodes(&layout);
        let store = Store::open_with_nodes(layout.clone(), common::options(), handles).unwrap();
        faulty[4].fail_next_appends(u32::MAX, libc::ENOSPC);
        let newest = common::value(7, 1 << 20);
        store.put(b"newest", newest.clone()).unwrap();
        if extra_commit {
            store.put(b"one more", &b"x"[..]).unwrap();
        }
        store.close().unwrap();
        drop(store);
        drop(faulty);
        common::burn_site(&layout, SiteId(0));
        let store = Store::open(layout, common::options()).unwrap();
        assert_eq!(
            store
                .get(b"newest")
                .unwrap()
                .map(|b| b.to_bytes())
                .as_deref(),
            Some(&newest[..]),
            "newest acknowledged commit lost (another commit after it: {extra_commit}); {:?}",
            store.open_report()
        );
    }
}

/// With a whole site down the promise is used up: `Available` still
/// acknowledges (a degraded write, counted), `Strict` refuses, and both
/// say so; after the site comes back and repair runs, the store keeps the
/// promise again.
#[test]
fn writes_during_a_site_outage_are_degraded_and_repaired() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    drop(common::create(layout.clone(), common::options()));
    let (faulty, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), common::options(), handles).unwrap();
    for id in &layout.sites()[2].nodes {
        faulty[id.index()].burn();
    }
    let value = common::value(3, 1 << 20);
    store.put(b"during", value.clone()).unwrap();
    assert!(!store.health().survives_any_site_loss);
    for id in &layout.sites()[2].nodes {
        faulty[id.index()].heal();
    }
    store.repair(&Default::default()).unwrap();
    assert!(
        store.health().survives_any_site_loss,
        "{:?}",
        store.health()
    );
    store.close().unwrap();
    drop(store);
    drop(faulty);
    let strict = geoshard::Options {
        write_policy: WritePolicy::Strict,
        ..common::options()
    };
    let (faulty, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), strict, handles).unwrap();
    for id in &layout.sites()[2].nodes {
        faulty[id.index()].burn();
    }
    let refused = store.put(b"strict", &b"x"[..]);
    assert!(
        matches!(refused, Err(geoshard::Error::WriteRefused { .. })),
        "{refused:?}"
    );
    assert_eq!(
        &store.get(b"during").unwrap().unwrap().to_bytes()[..],
        &value[..]
    );
}
