//! One writer on object-store nodes (docs/DURABILITY.md, D6): a writer whose
//! lease cannot be confirmed after its object is durable acknowledges
//! nothing, and what it wrote is never visible to the writer that took
//! over nor to any later one; concurrent openers never both get a store;
//! a takeover open treats objects deleted after its listing as absent.
//! Races are reproduced with a fault-injecting `object_store` wrapper, on
//! `file://` nodes and on a real S3 server (SeaweedFS on loopback).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::faulty_store::FaultyStore;
use common::object_nodes::{self, faulty_nodes, file_layout};
use common::s3::S3Server;
use geoshard::layout::{Layout, Location};
use geoshard::node::ObjectNode;
use geoshard::{Error, Store};

/// RS(2,1) over three sites of one S3 node each, under a fresh prefix.
fn s3_layout(server: &S3Server) -> Layout {
    server.create_bucket("takeover");
    let run = common::unique("takeover");
    let remote = common::remote(server);
    let mut builder = Layout::builder().code(2, 1);
    for site in ["a", "b", "c"] {
        let remote = remote.clone();
        let url = format!("s3://takeover/{run}/{site}1");
        builder = builder.site(site, move |s| {
            s.remote(remote).node(format!("{site}1"), url.as_str())
        });
    }
    builder.build().unwrap()
}

/// How the first writer's lease reads misbehave once the second took over.
#[derive(Clone, Copy, Debug)]
enum LeaseFault {
    /// They answer an error status.
    Error,
    /// They hang past the request timeout.
    Hang,
}

/// Review item 8: writer A's lease reads fail (an error, or a hang) after
/// B took every lease. A acknowledges nothing; B never sees A's writes,
/// and neither does a third opener C: B and C agree.
fn second_writer_takes_over_while_the_first_cannot_read_its_lease(
    layout: &Layout,
    fault: LeaseFault,
) {
    let options = object_nodes::options();
    let setup = common::create(layout.clone(), options.clone());
    setup.put(b"before", &b"the takeover"[..]).unwrap();
    drop(setup);
    let (faulty, handles) = faulty_nodes(layout, &options).unwrap();
    let a = Store::open_with_nodes(layout.clone(), options.clone(), handles).unwrap();
    a.put(b"a/acked", &b"while A held the leases"[..]).unwrap();

    // From now on A's lease reads fail (or hang); then B takes over.
    for store in &faulty {
        match fault {
            LeaseFault::Error => store.fail_reads("lease/"),
            LeaseFault::Hang => store.hang_reads("lease/", Duration::from_secs(4)),
        }
    }
    let b = Store::open(layout.clone(), options.clone()).unwrap();
    for i in 0..3 {
        let put = a.put(format!("a/late/{i}").as_bytes(), &b"after the takeover"[..]);
        assert!(
            put.is_err(),
            "{fault:?}: A acknowledged put {i} although it could not confirm its lease"
        );
    }
    assert!(faulty.iter().map(|f| f.injected()).sum::<usize>() > 0);
    for store in &faulty {
        store.heal();
    }
    // Once its lease reads work, A learns it was superseded (here through
    // repair, which brings its nodes back) and stops for good.
    let _ = a.repair(&Default::default());
    let healed = a.put(b"a/healed", &b"x"[..]);
    assert!(
        matches!(healed, Err(Error::Superseded { .. })),
        "{fault:?}: {healed:?}"
    );
    b.put(b"b/own", &b"the new writer"[..]).unwrap();
    let view = |store: &Store| -> Vec<Option<Vec<u8>>> {
        [
            "before", "a/acked", "a/late/0", "a/late/1", "a/late/2", "a/healed", "b/own",
        ]
        .iter()
        .map(|k| {
            store
                .get(k.as_bytes())
                .unwrap()
                .map(|b| b.to_bytes().to_vec())
        })
        .collect()
    };
    let seen_by_b = view(&b);
    assert!(
        seen_by_b[2..6].iter().all(Option::is_none),
        "{fault:?}: {seen_by_b:?}"
    );
    assert!(seen_by_b[0].is_some() && seen_by_b[1].is_some() && seen_by_b[6].is_some());
    drop(a);
    drop(b);
    let c = Store::open(layout.clone(), options).unwrap();
    assert_eq!(view(&c), seen_by_b, "{fault:?}: B and C disagree");
}

#[test]
fn a_writer_whose_lease_reads_fail_acknowledges_nothing_on_file_nodes() {
    let dir = common::fast_tempdir();
    second_writer_takes_over_while_the_first_cannot_read_its_lease(
        &file_layout(dir.path()),
        LeaseFault::Error,
    );
}

#[test]
fn a_writer_whose_lease_reads_hang_acknowledges_nothing_on_file_nodes() {
    let dir = common::fast_tempdir();
    second_writer_takes_over_while_the_first_cannot_read_its_lease(
        &file_layout(dir.path()),
        LeaseFault::Hang,
    );
}

#[test]
fn a_writer_whose_lease_reads_fail_acknowledges_nothing_on_s3() {
    let layout = s3_layout(S3Server::shared());
    second_writer_takes_over_while_the_first_cannot_read_its_lease(&layout, LeaseFault::Error);
}

#[test]
fn a_writer_whose_lease_reads_hang_acknowledges_nothing_on_s3() {
    let layout = s3_layout(S3Server::shared());
    second_writer_takes_over_while_the_first_cannot_read_its_lease(&layout, LeaseFault::Hang);
}

/// Review item 9: the old writer deletes an object it wrote after losing
/// its lease; a new writer that listed it first must treat it as absent,
/// not mark the node down or fail to open.
#[test]
fn a_takeover_open_treats_objects_deleted_after_listing_as_absent() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    let options = object_nodes::options();
    let store = common::create(layout.clone(), options.clone());
    for i in 0..20u64 {
        store
            .put(format!("k{i}").as_bytes(), common::value(i, 500))
            .unwrap();
    }
    drop(store);
    // A later session, whose open decided what the first one wrote.
    drop(Store::open(layout.clone(), options.clone()).unwrap());
    // The newest object of node b1: the one a superseded writer deletes.
    let newest = common::files_under(&dir.path().join("b1"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let name = format!(
        "{}/{}",
        newest
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        newest.file_name().unwrap().to_string_lossy()
    );
    let (faulty, handles) = faulty_nodes(&layout, &options).unwrap();
    faulty[1].vanish(&name);
    let store = Store::open_with_nodes(layout.clone(), options.clone(), handles)
        .expect("a vanished object does not fail the open");
    assert!(
        faulty[1].injected() > 0,
        "the object was listed, then vanished"
    );
    let health = store.health();
    assert!(health.nodes.iter().all(|n| n.reachable), "{health:?}");
    for i in 0..20u64 {
        assert_eq!(
            store
                .get(format!("k{i}").as_bytes())
                .unwrap()
                .map(|b| b.len()),
            Some(500)
        );
    }
}

/// Review item 10, deterministically: between a first opener's listing of
/// the lease epochs and its create of the next one, a second opener takes
/// that epoch. The first is refused with `Locked` instead of holding some
/// nodes' leases while the second holds others.
#[test]
fn an_opener_that_loses_the_lease_race_is_refused() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    let options = object_nodes::options();
    drop(common::create(layout.clone(), options.clone()));
    let spec = &layout.nodes()[1];
    let Location::Url(url) = &spec.location else {
        unreachable!()
    };
    let (store, prefix) = ObjectNode::connect(&spec.name, url, None, &options.object).unwrap();
    let wrapped = FaultyStore::new(store);
    let (racer_url, racer_options) = (url.clone(), options.object.clone());
    wrapped.before_put("lease/", move || {
        let racer = ObjectNode::open("b1", &racer_url, None, &racer_options)
            .expect("the other opener takes the epoch first");
        drop(racer);
    });
    let first = ObjectNode::open_store(
        "b1",
        url,
        Arc::clone(&wrapped) as Arc<dyn object_store::ObjectStore>,
        &prefix,
        &options.object,
    );
    assert!(
        matches!(first, Err(Error::Locked { .. })),
        "the opener that lost the race must be refused: {first:?}"
    );
}

/// Review item 10, the other order: this opener took every lease, and a
/// second opener takes two of them back while this one records its
/// manifest. This open is refused as `Superseded` (another writer), not as
/// nodes that are down.
#[test]
fn an_opener_whose_leases_are_taken_during_its_open_is_refused_as_superseded() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    let options = object_nodes::options();
    drop(common::create(layout.clone(), options.clone()));
    let (faulty, handles) = faulty_nodes(&layout, &options).unwrap();
    for (spec, wrapped) in layout.nodes().iter().zip(&faulty).skip(1) {
        let Location::Url(url) = &spec.location else {
            unreachable!()
        };
        let (name, url, object) = (spec.name.clone(), url.clone(), options.object.clone());
        wrapped.before_put("manifest", move || {
            let racer = ObjectNode::open(&name, &url, None, &object)
                .expect("the other opener takes the lease");
            drop(racer);
        });
    }
    let opened = Store::open_with_nodes(layout, options, handles);
    assert!(
        matches!(opened, Err(Error::Superseded { .. })),
        "{:?}",
        opened.err()
    );
}

/// Review item 10: two openers of a `file://` store at once never both
/// get a store. A loser is refused as `Locked` (it found the other's lease
/// first) or `Superseded` (the other took a lease after this one did);
/// both may lose, and then neither holds the store.
#[test]
fn concurrent_openers_of_a_file_store_never_both_succeed() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    drop(common::create(layout.clone(), common::options()));
    for round in 0..20 {
        let barrier = std::sync::Barrier::new(2);
        let (first, second) = std::thread::scope(|s| {
            let open = || {
                barrier.wait();
                Store::open(layout.clone(), common::options())
            };
            let first = s.spawn(open);
            let second = s.spawn(open);
            (first.join().unwrap(), second.join().unwrap())
        });
        match (first, second) {
            (Ok(x), Ok(y)) => {
                let wrote = (
                    x.put(b"k", &b"x"[..]).is_ok(),
                    y.put(b"k", &b"y"[..]).is_ok(),
                );
                panic!("round {round}: both openers got a store (puts ok: {wrote:?})");
            }
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert!(lost_the_race(&e), "{e}"),
            (Err(x), Err(y)) => assert!(lost_the_race(&x) && lost_the_race(&y), "{x}; {y}"),
        }
    }
}

/// Whether `e` says another opener holds the store.
fn lost_the_race(e: &Error) -> bool {
    matches!(e, Error::Locked { .. } | Error::Superseded { .. })
}

/// Simulator finding S14 (seeds 945, 3,298, 3,866, 3,943): an append that
/// lands in a prefix wiped by a fire, and is never removed (the writer
/// crashed first, or its lease reads failed so it could not tell the
/// prefix was wiped), left segments without a manifest, and repair refused
/// the node for good: the store never got its redundancy back. The prefix
/// held no lease when it came back, so repair adopts it with the orphan.
#[test]
fn repair_adopts_a_wiped_prefix_that_holds_an_orphaned_append() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    let store = Store::create(layout.clone(), object_nodes::options()).unwrap();
    let model: std::collections::HashMap<Vec<u8>, Vec<u8>> = (0..40u64)
        .map(|i| {
            (
                format!("k{i}").into_bytes(),
                common::value(i, 100 + i as usize),
            )
        })
        .collect();
    for (key, value) in &model {
        store.put(key, value.clone()).unwrap();
    }
    store.close().unwrap();
    // The fire on site c, and an append of the old writer that landed in
    // the wiped prefix afterwards: a segment object, no manifest, no lease.
    let c1 = dir.path().join("c1");
    let orphan = common::files_under(&c1)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment object on c1");
    let relative = orphan.strip_prefix(&c1).unwrap().to_path_buf();
    let bytes = std::fs::read(&orphan).unwrap();
    std::fs::remove_dir_all(&c1).unwrap();
    std::fs::create_dir_all(c1.join(&relative).parent().unwrap()).unwrap();
    std::fs::write(c1.join(&relative), bytes).unwrap();

    let store = Store::open(layout.clone(), object_nodes::options()).unwrap();
    let report = store.repair(&geoshard::RepairOptions::default()).unwrap();
    assert!(
        report.nodes_revived.iter().any(|n| n == "c1"),
        "repair did not adopt c1: {report:?}"
    );
    assert!(
        store.health().survives_any_site_loss,
        "{:?}",
        store.health()
    );
    store.close().unwrap();
    // Site a burns next: the adopted node carries it.
    std::fs::remove_dir_all(dir.path().join("a1")).unwrap();
    let store = Store::open(layout, object_nodes::options()).unwrap();
    common::check_all(&store, &model);
}
