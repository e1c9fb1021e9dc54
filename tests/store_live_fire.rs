//! A site burns while the store is open: reads go on (rebuilt from the
//! surviving columns), writes go on (to handoff nodes), a full disk or an
//! I/O error on another node does not fail a put, bit flips on a third node
//! never reach a reader, and after reopening from the surviving sites every
//! acknowledged blob is there.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use geoshard::layout::{Location, SiteId};
use geoshard::node::{FaultyNode, LocalNode, LocalOptions, Node};
use geoshard::{Store, WritePolicy};

#[test]
fn reads_and_writes_go_on_while_a_site_burns() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let faulty: Vec<Arc<FaultyNode<LocalNode>>> = layout
        .nodes()
        .iter()
        .map(|spec| {
            let Location::Dir(path) = &spec.location else {
                unreachable!()
            };
            let node = LocalNode::open(spec.name.clone(), path, &LocalOptions::default()).unwrap();
            Arc::new(FaultyNode::new(node))
        })
        .collect();
    let handles = faulty
        .iter()
        .map(|n| Ok(Arc::clone(n) as Arc<dyn Node>))
        .collect();
    let store = Store::create_with_nodes(layout.clone(), common::options(), handles).unwrap();

    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let write = |store: &Store, prefix: &str, seed: u64, model: &mut HashMap<Vec<u8>, Vec<u8>>| {
        model.extend(common::fill(store, prefix, seed, 150, 5));
    };
    let read_all = common::check_all;

    write(&store, "before", 1, &mut model);

    // A full disk on one node and bit rot on another: puts still succeed,
    // reads still return the right bytes.
    faulty[0].fail_next_appends(u32::MAX, libc::ENOSPC);
    faulty[7].flip_bits_on_read(true);
    write(&store, "disk_full", 2, &mut model);
    read_all(&store, &model);
    let stats = store.stats();
    assert!(
        stats.checksum_failures > 0 && stats.degraded_reads > 0,
        "{stats:?}"
    );
    let health = store.health();
    assert!(
        !health.nodes[0].writable && health.nodes[0].reachable,
        "{:?}",
        health.nodes[0]
    );
    // The rot is found and the disk stays full; the fire comes on top of the
    // full disk only (two more columns than the promise would be too many).
    faulty[7].flip_bits_on_read(false);

    // The fire.
    for id in &layout.sites()[1].nodes {
        faulty[id.index()].burn();
    }
    read_all(&store, &model);
    write(&store, "during", 3, &mut model);
    read_all(&store, &model);
    let health = store.health();
    let down: Vec<&str> = health
        .nodes
        .iter()
        .filter(|n| !n.reachable)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(
        down,
        ["s1n0", "s1n1", "s1n2"],
        "the burned site's nodes are down"
    );
    assert!(health.columns_missing > 0);
    drop(store);

    // Failover: a fresh process opens the two surviving sites.
    drop(faulty);
    common::burn_site(&layout, SiteId(1));
    let store = Store::open(layout.clone(), common::options()).unwrap();
    assert_eq!(store.len(), model.len());
    read_all(&store, &model);
    drop(store);

    // Under the strict policy the same outage refuses puts with a typed error.
    let strict = geoshard::Options {
        write_policy: WritePolicy::Strict,
        ..common::options()
    };
    let store = Store::open(layout, strict).unwrap();
    assert!(matches!(
        store.put(b"strict", &b"x"[..]),
        Err(geoshard::Error::WriteRefused { .. })
    ));
    read_all(&store, &model);
}
