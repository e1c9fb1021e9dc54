//! Repair and scrub: after each site burns in turn, repair (while reads and
//! writes go on) restores `survives_any_site_loss` and a full scrub then
//! finds nothing; a repair cut short finishes on the next run, and a third
//! run has nothing to do; scrub finds and fixes bit flips in data and parity
//! columns of a running store.

mod common;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use common::check_all;
use geoshard::layout::{Layout, Location, SiteId};
use geoshard::node::{FaultyNode, LocalNode, LocalOptions, Node};
use geoshard::{RepairOptions, ScrubOptions, Store};

fn fill(store: &Store, prefix: &str, seed: u64) -> HashMap<Vec<u8>, Vec<u8>> {
    common::fill(store, prefix, seed, 100, 10)
}

#[test]
fn repair_after_each_site_burns_restores_full_protection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("live");
    let mut model = {
        let store = common::open(&root);
        fill(&store, "m", 1)
    };
    for site in 0..3u16 {
        let copy = dir.path().join(format!("burn{site}"));
        common::copy_tree(&root, &copy);
        let layout = common::layout_3x3(&copy);
        common::burn_site(&layout, SiteId(site));
        let store = Store::open(layout.clone(), common::options()).unwrap();
        assert!(!store.health().survives_any_site_loss);

        // Repair while other threads read and write.
        let (report, during) = std::thread::scope(|s| {
            let writer = s.spawn(|| fill(&store, "during", 20 + u64::from(site)));
            let reader = s.spawn(|| check_all(&store, &model));
            let report = store.repair(&RepairOptions::default()).unwrap();
            reader.join().unwrap();
            (report, writer.join().unwrap())
        });
        assert!(report.columns_rebuilt > 0, "{report:?}");
        assert_eq!(report.stripes_unrepairable, 0, "{report:?}");
        assert_eq!(report.nodes_revived.len(), 3, "{report:?}");
        // Writes made during the repair may have gone to handoffs before the
        // site came back: a second pass moves them home.
        store.repair(&RepairOptions::default()).unwrap();
        let health = store.health();
        assert!(health.survives_any_site_loss, "{health:?}");
        assert_eq!(health.columns_missing, 0);
        assert_eq!(health.columns_away, 0);
        let scrub = store.scrub(&ScrubOptions::default()).unwrap();
        assert!(scrub.is_clean(), "{scrub:?}");
        let mut all = model.clone();
        all.extend(during);
        check_all(&store, &all);
        drop(store);

        // The repaired site alone now carries what the next fire needs:
        // burn a different site and everything still reads.
        let next = SiteId((site + 1) % 3);
        common::burn_site(&layout, next);
        let store = Store::open(layout, common::options()).unwrap();
        check_all(&store, &all);
        drop(store);
        std::fs::remove_dir_all(&copy).unwrap();
    }
    model.clear();
}

/// Two of a burned site's three new nodes fail every append: repair puts
/// their columns on the third (a handoff in the same site, so the stripes
/// keep the promise), and the next run, in a fresh process, finds them and
/// only moves them home.
#[test]
fn a_repair_whose_home_nodes_fail_finishes_on_handoffs_then_moves_home() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let model = {
        let store = common::open(dir.path());
        fill(&store, "m", 2)
    };
    common::burn_site(&layout, SiteId(2));
    for id in &layout.sites()[2].nodes {
        if let Location::Dir(p) = &layout.node(*id).location {
            std::fs::create_dir_all(p).unwrap();
        }
    }
    // Reopen with faulty wrappers: two of the three new nodes fail their
    // appends, as if the repair died part way.
    let faulty: Vec<Arc<FaultyNode<LocalNode>>> = open_faulty(&layout);
    for id in &layout.sites()[2].nodes[..2] {
        faulty[id.index()].fail_next_appends(u32::MAX, libc::EIO);
    }
    let store = Store::open_with_nodes(
        layout.clone(),
        common::options(),
        faulty
            .iter()
            .map(|n| Ok(Arc::clone(n) as Arc<dyn Node>))
            .collect(),
    )
    .unwrap();
    let missing_before = store.health().columns_missing as u64;
    let first = store.repair(&RepairOptions::default()).unwrap();
    assert_eq!(first.stripes_unrepairable, 0, "{first:?}");
    assert_eq!(first.columns_rebuilt, missing_before, "{first:?}");
    let health = store.health();
    assert!(health.columns_away > 0, "{health:?}");
    assert!(health.survives_any_site_loss, "{health:?}");
    check_all(&store, &model);
    drop(store);
    drop(faulty);

    // A fresh process: the columns written before are found, not redone;
    // the ones on the handoff go home.
    let store = Store::open(layout.clone(), common::options()).unwrap();
    let second = store.repair(&RepairOptions::default()).unwrap();
    assert_eq!(second.stripes_unrepairable, 0, "{second:?}");
    assert_eq!(
        second.columns_rebuilt, 0,
        "work done by the first run is not redone: {second:?}"
    );
    assert_eq!(
        second.columns_moved_home as usize, health.columns_away,
        "{second:?}"
    );
    let third = store.repair(&RepairOptions::default()).unwrap();
    assert_eq!(third.stripes_needing_repair, 0, "{third:?}");
    assert!(store.health().survives_any_site_loss);
    check_all(&store, &model);
}

fn open_faulty(layout: &Layout) -> Vec<Arc<FaultyNode<LocalNode>>> {
    layout
        .nodes()
        .iter()
        .map(|spec| {
            let Location::Dir(path) = &spec.location else {
                unreachable!()
            };
            let node = LocalNode::open(spec.name.clone(), path, &LocalOptions::default()).unwrap();
            Arc::new(FaultyNode::new(node))
        })
        .collect()
}

#[test]
fn scrub_finds_and_fixes_bit_flips_in_data_and_parity() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let model = {
        let store = common::open(dir.path());
        fill(&store, "m", 3)
    };
    // Where a data column record and a parity column record are.
    let mut targets = Vec::new();
    for spec in layout.nodes() {
        let Location::Dir(path) = &spec.location else {
            unreachable!()
        };
        let node = LocalNode::open(spec.name.clone(), path, &LocalOptions::default()).unwrap();
        for g in node.generations().unwrap() {
            for rec in node.scan(g).unwrap().records {
                let is_data = rec.header.is_data();
                if rec.location.len > 64 && !targets.iter().any(|(_, _, d)| *d == is_data) {
                    let segment = path.join(format!("{g:016x}.segment"));
                    targets.push((
                        segment,
                        rec.location.offset + u64::from(rec.location.len) - 7,
                        is_data,
                    ));
                }
            }
        }
    }
    assert_eq!(targets.len(), 2, "a data and a parity record");
    let store = common::open(dir.path());
    assert!(store.scrub(&ScrubOptions::default()).unwrap().is_clean());
    // Bit rot under the running store.
    for (segment, offset, _) in &targets {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment)
            .unwrap();
        f.seek(SeekFrom::Start(*offset)).unwrap();
        f.write_all(&[0xa5]).unwrap();
    }
    let found = store.scrub(&ScrubOptions::default()).unwrap();
    assert_eq!(found.columns_corrupt, 2, "{found:?}");
    let repair = found.repair.as_ref().expect("scrub repairs");
    assert_eq!(repair.columns_rebuilt, 2, "{found:?}");
    let again = store.scrub(&ScrubOptions::default()).unwrap();
    assert!(again.is_clean(), "{again:?}");
    check_all(&store, &model);
    drop(store);
    let store = common::open(dir.path());
    assert!(
        store
            .scrub(&ScrubOptions {
                repair: false,
                ..ScrubOptions::default()
            })
            .unwrap()
            .is_clean()
    );
    check_all(&store, &model);
}
