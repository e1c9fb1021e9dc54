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

/// A loss beyond the promise (two sites of three) is loud: open refuses;
/// salvage opens and every answer the loss could change is an error until
/// the loss is accepted; then repair brings the nodes back and the store
/// opens normally (docs/DURABILITY.md, D2).
#[test]
fn a_loss_beyond_the_promise_is_loud_until_accepted() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    let mut keys = Vec::new();
    for i in 0..30u64 {
        let key = format!("k{i}").into_bytes();
        let len = if i.is_multiple_of(3) { 400_000 } else { 300 };
        store.put(&key, common::value(i, len)).unwrap();
        keys.push(key);
    }
    store.close().unwrap();
    drop(store);
    common::burn_site(&layout, geoshard::layout::SiteId(0));
    common::burn_site(&layout, geoshard::layout::SiteId(1));

    match Store::open(layout.clone(), common::options()) {
        Err(Error::TooManyNodesDown { nodes, .. }) => assert_eq!(nodes.len(), 6),
        other => panic!("a two-site loss must be refused: {:?}", other.map(|_| ())),
    }
    let salvage = geoshard::Options {
        salvage: true,
        ..common::options()
    };
    let store = Store::open(layout.clone(), salvage).unwrap();
    let report = store.open_report();
    assert!(report.stripes_lost > 0, "{report:?}");
    assert!(store.health().loss_pending);
    // Nothing the loss could change answers as if all were well.
    let mut answered = 0;
    for key in &keys {
        match store.get(key) {
            Ok(Some(blob)) => {
                answered += 1;
                assert!(!report.lost_keys.contains(key));
                let i: u64 = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
                let len = if i.is_multiple_of(3) { 400_000 } else { 300 };
                assert_eq!(blob.to_bytes(), common::value(i, len));
            }
            Ok(None) => panic!("{key:?}: a silent None during a loss"),
            Err(Error::PossiblyLost { .. }) => {}
            Err(other) => panic!("{key:?}: {other}"),
        }
        match store.contains(key) {
            Ok(true) | Err(Error::PossiblyLost { .. }) => {}
            other => panic!("{key:?}: contains answered {other:?}"),
        }
    }
    if report.lost_keys_unknown {
        assert!(matches!(
            store.get(b"never/written"),
            Err(Error::PossiblyLost { .. })
        ));
    }
    // Its manifest reached one site only: the salvage store is read-only
    // (a later open that does not see this session could reuse its ids).
    assert!(matches!(
        store.put(b"after", &b"the loss"[..]),
        Err(Error::WriteRefused { .. })
    ));
    assert!(matches!(
        store.accept_loss(),
        Err(Error::WriteRefused { .. })
    ));
    // Repair rebuilds the burned nodes (adopting them into the store) and
    // whatever still decodes; then a salvage open reaches a quorum.
    store.repair(&Default::default()).unwrap();
    store.close().unwrap();
    drop(store);
    let salvage = geoshard::Options {
        salvage: true,
        ..common::options()
    };
    let store = Store::open(layout.clone(), salvage).unwrap();
    let report = store.open_report();
    assert!(
        report.stripes_lost > 0 && store.health().loss_pending,
        "{report:?}"
    );
    // Writes go on; the new value answers.
    store.put(b"after", &b"the loss"[..]).unwrap();
    assert_eq!(
        &store.get(b"after").unwrap().unwrap().to_bytes()[..],
        b"the loss"
    );

    let deleted = store.accept_loss().unwrap();
    assert_eq!(deleted, report.lost_keys.len());
    assert!(!store.health().loss_pending);
    for key in &report.lost_keys {
        assert!(
            store.get(key).unwrap().is_none(),
            "an accepted lost key is gone"
        );
    }
    assert_eq!(store.get(b"never/written").unwrap(), None);
    let readable: usize = keys
        .iter()
        .filter(|k| store.get(k).unwrap().is_some())
        .count();
    assert!(readable >= answered);
    store.close().unwrap();
    drop(store);
    let store = Store::open(layout, common::options()).unwrap();
    assert_eq!(store.open_report().stripes_lost, 0);
    assert_eq!(
        &store.get(b"after").unwrap().unwrap().to_bytes()[..],
        b"the loss"
    );
    for key in &report.lost_keys {
        assert!(store.get(key).unwrap().is_none());
    }
}

/// Review item 16: stripe ids do not rest on the clock. Each open is a new
/// session, one more than any session a reachable manifest has seen, even
/// when the nodes that saw the last one are down; what every session wrote
/// stays visible (no id was reused).
#[test]
fn every_open_is_a_new_session_whichever_nodes_are_down() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    let mut sessions = vec![store.open_report().session];
    store.put(b"s0", &b"x"[..]).unwrap();
    drop(store);
    let down_site = |site: usize| -> Vec<Result<Arc<dyn Node>, String>> {
        let (_, handles) = common::faulty_nodes(&layout);
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                if i / 3 == site {
                    Err("down".to_string())
                } else {
                    h
                }
            })
            .collect()
    };
    for (round, site) in [0usize, 1, 2, 0, 1].into_iter().enumerate() {
        let store =
            Store::open_with_nodes(layout.clone(), common::options(), down_site(site)).unwrap();
        sessions.push(store.open_report().session);
        // Small values: written with a site down, their stripes (1 data and
        // 3 parity columns, 5 of zeros) survive the next site being down
        // too without a repair in between.
        store
            .put(
                format!("s{}", round + 1).as_bytes(),
                common::value(round as u64, 300),
            )
            .unwrap();
        drop(store);
    }
    assert!(
        sessions.windows(2).all(|w| w[1] > w[0]),
        "sessions only grow: {sessions:?}"
    );
    let store = Store::open(layout, common::options()).unwrap();
    for round in 0..=5 {
        assert!(
            store.contains(format!("s{round}").as_bytes()).unwrap(),
            "s{round}"
        );
    }
}
