//! A store has an identity (docs/DURABILITY.md, D7, D2): open never creates
//! one, refuses a store whose disks are not there, and refuses an outage
//! beyond the promise before judging any stripe.

mod common;

use std::sync::Arc;

use geoshard::node::Node;
use geoshard::{Error, Store};

/// Review item 6: with every node directory missing (the data mount did
/// not come up), open used to create a new empty store and answer `None`.
#[test]
fn a_store_whose_disks_are_not_mounted_is_refused() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    store.put(b"k", &b"v"[..]).unwrap();
    store.close().unwrap();
    drop(store);
    let unmounted = dir.path().join("unmounted");
    std::fs::rename(dir.path().join("site0"), &unmounted).unwrap();
    std::fs::create_dir(dir.path().join("site0")).unwrap();
    for site in ["site1", "site2"] {
        std::fs::rename(dir.path().join(site), unmounted.join(site)).unwrap();
        std::fs::create_dir(dir.path().join(site)).unwrap();
    }
    match Store::open(layout.clone(), common::options()) {
        Err(Error::NoStore { .. }) => {}
        Err(other) => panic!("expected NoStore, got {other}"),
        Ok(store) => panic!(
            "an unmounted store opened as a new one: get(k) = {:?}",
            store.get(b"k").map(|b| b.is_some())
        ),
    }
    // Nothing was created where the disks should be.
    for site in ["site0", "site1", "site2"] {
        assert_eq!(
            std::fs::read_dir(dir.path().join(site)).unwrap().count(),
            0,
            "open wrote into {site}"
        );
    }
}

/// Review item 6, second half: no node reachable at all.
#[test]
fn a_store_with_no_reachable_node_is_refused() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let handles: Vec<Result<Arc<dyn Node>, String>> = layout
        .nodes()
        .iter()
        .map(|_| Err("unreachable".to_string()))
        .collect();
    match Store::open_with_nodes(layout, common::options(), handles) {
        Err(Error::NoStore { .. }) => {}
        Err(other) => panic!("expected NoStore, got {other}"),
        Ok(store) => panic!("opened with no node at all: {:?}", store.health()),
    }
}

/// More nodes down than the promise tolerates (a site and one more node):
/// refused with a typed error naming the nodes, before any stripe is judged.
#[test]
fn an_outage_beyond_the_promise_is_refused_before_any_stripe() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    store.put(b"small", &b"v"[..]).unwrap();
    store.close().unwrap();
    drop(store);
    common::burn_site(&layout, geoshard::layout::SiteId(0));
    std::fs::remove_dir_all(dir.path().join("site1").join("n0")).unwrap();
    match Store::open(layout, common::options()) {
        Err(Error::TooManyNodesDown { nodes, .. }) => {
            assert_eq!(nodes, ["s0n0", "s0n1", "s0n2", "s1n0"]);
        }
        Err(other) => panic!("expected TooManyNodesDown, got {other}"),
        Ok(store) => panic!("opened beyond the promise: {:?}", store.open_report()),
    }
}
