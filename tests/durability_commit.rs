//! Acknowledged means it survives (docs/DURABILITY.md, D1, D3, D4, D5): the
//! commit protocol against compaction, crashes cut at any point, failed
//! commits and reopens.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use geoshard::{CompactOptions, Options, Store, WritePolicy};
use rand::Rng;

/// The layouts every scenario runs on: RS(6,3) over 3 sites x 3 nodes,
/// RS(4,2) over 3 x 2, RS(10,5) over 5 x 3.
fn layouts(root: &std::path::Path) -> Vec<geoshard::layout::Layout> {
    vec![
        common::layout(&root.join("rs63"), 3, 3, 6, 3),
        common::layout(&root.join("rs42"), 3, 2, 4, 2),
        common::layout(&root.join("rs105"), 5, 3, 10, 5),
    ]
}

/// One generation per commit, so any commit boundary is a generation
/// boundary compaction can cut at.
fn one_generation_per_commit() -> Options {
    Options {
        segment_len_target: 1,
        ..common::options()
    }
}

/// Review item 1: a commit was marked acknowledged only by the next one;
/// compacting the generation that held the mark dropped it on reopen.
#[test]
fn compaction_then_clean_restart_keeps_every_acknowledged_put() {
    let dir = common::fast_tempdir();
    for layout in layouts(dir.path()) {
        let code = layout.code();
        let options = one_generation_per_commit();
        let store = common::create(layout.clone(), options.clone());
        store.put(b"a", &b"value a"[..]).unwrap();
        store.put(b"b", &b"value b, first"[..]).unwrap();
        store.put(b"b", &b"value b, second"[..]).unwrap();
        store.put(b"c", &b"value c"[..]).unwrap();
        store.compact(&CompactOptions::default()).unwrap();
        store.close().unwrap();
        drop(store);

        let store = Store::open(layout, options).unwrap();
        assert_eq!(
            store.get(b"a").unwrap().map(|b| b.to_bytes()),
            Some(b"value a".to_vec().into()),
            "{code}: acknowledged put of a lost after compaction and reopen: {:?}",
            store.open_report()
        );
        assert_eq!(
            store.get(b"b").unwrap().map(|b| b.to_bytes()),
            Some(b"value b, second".to_vec().into())
        );
        assert_eq!(
            store.get(b"c").unwrap().map(|b| b.to_bytes()),
            Some(b"value c".to_vec().into())
        );
        assert_eq!(store.open_report().stripes_discarded, 0);
    }
}

/// A 200-commit history of puts, overwrites and deletes over few keys, with
/// a compaction between commits `cut - 1` and `cut`, then a reopen: every
/// one of the 199 cuts keeps exactly what was acknowledged.
#[test]
fn compaction_between_any_two_commits_of_a_history_loses_nothing() {
    const COMMITS: usize = 200;
    // The history: (key, Some(value) to put | None to delete).
    let mut rng = common::rng(11);
    let history: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..COMMITS)
        .map(|i| {
            let key = format!("k{}", rng.random_range(0..12)).into_bytes();
            if i > 5 && rng.random_range(0..10) < 3 {
                (key, None)
            } else {
                let len = rng.random_range(1..300);
                (key, Some(common::value(i as u64, len)))
            }
        })
        .collect();
    let run = |cut: usize| {
        let dir = common::fast_tempdir();
        let layout = common::layout_3x3(dir.path());
        let options = one_generation_per_commit();
        let store = common::create(layout.clone(), options.clone());
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (i, (key, value)) in history.iter().enumerate() {
            if i == cut {
                store.compact(&CompactOptions::default()).unwrap();
            }
            match value {
                Some(value) => {
                    store.put(key, value.clone()).unwrap();
                    model.insert(key.clone(), value.clone());
                }
                None => {
                    store.delete(key).unwrap();
                    model.remove(key);
                }
            }
        }
        store.close().unwrap();
        drop(store);
        let store = Store::open(layout, options).unwrap();
        for i in 0..12 {
            let key = format!("k{i}").into_bytes();
            let got = store
                .get(&key)
                .unwrap()
                .map(|b| crc32fast::hash(&b.to_bytes()));
            assert_eq!(
                got,
                model.get(&key).map(|v| crc32fast::hash(v)),
                "compaction before commit {cut}: key k{i} differs after reopen ({:?})",
                store.open_report()
            );
        }
    };
    std::thread::scope(|s| {
        for lane in 0..4 {
            let run = &run;
            s.spawn(move || {
                for cut in (1..COMMITS).filter(|c| c % 4 == lane) {
                    run(cut);
                }
            });
        }
    });
}

/// Review item 4: a delete in the same group commit as the tombstone
/// compaction carries forward must leave the key deleted, also after the
/// generation with the original tombstone is removed and the store reopens.
#[test]
fn delete_in_the_same_commit_as_a_carried_tombstone_stays_deleted() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let options = Options {
        commit_delay: Duration::from_millis(400),
        segment_len_target: 1,
        ..common::options()
    };
    let store = common::create(layout.clone(), options.clone());
    // Generation 1: the key and a large live neighbour (so generation 1 is
    // mostly live and compaction keeps it, old value and all).
    std::thread::scope(|s| {
        s.spawn(|| store.put(b"key", &b"old value"[..]).unwrap());
        s.spawn(|| store.put(b"neighbour", common::value(1, 200_000)).unwrap());
    });
    // Generation 2: the tombstone; generation 3: something newer.
    assert!(store.delete(b"key").unwrap());
    store.put(b"newer", &b"x"[..]).unwrap();
    // Compaction of generation 2 carries the tombstone; the user deletes
    // the key again while that carry waits for its group commit.
    std::thread::scope(|s| {
        let compaction = s.spawn(|| store.compact(&CompactOptions::default()).unwrap());
        std::thread::sleep(Duration::from_millis(150));
        store.delete(b"key").unwrap();
        compaction.join().unwrap();
    });
    assert!(store.get(b"key").unwrap().is_none());
    store.close().unwrap();
    drop(store);
    let store = Store::open(layout, options).unwrap();
    assert!(
        store.get(b"key").unwrap().is_none(),
        "a deleted key came back after compaction and reopen"
    );
    assert_eq!(store.get(b"neighbour").unwrap().unwrap().len(), 200_000);
}

/// Review item 5: a commit a crash cut short after it reached 6 of 9 nodes
/// was made visible with no margin, and one site fire later the store could
/// not be opened at all.
#[test]
fn crash_cut_commit_that_reached_k_nodes_does_not_block_a_later_open() {
    let dir = common::fast_tempdir();
    for layout in layouts(dir.path()) {
        crash_cut_then_fire(&layout);
    }
}

/// The commit of `cut` reaches every site but the last; a later put is
/// acknowledged; then site 0 burns.
fn crash_cut_then_fire(layout: &geoshard::layout::Layout) {
    let code = layout.code();
    let last = geoshard::layout::SiteId(layout.sites().len() as u16 - 1);
    let store = common::create(layout.clone(), common::options());
    store.put(b"before", &b"acknowledged"[..]).unwrap();
    store.close().unwrap();
    drop(store);

    // The crash: the commit of `cut` reached every node but those of the
    // last site (their directories are as before the commit).
    let site = common::site_dirs(layout, last);
    let saved: Vec<std::path::PathBuf> = site
        .iter()
        .map(|d| {
            d.with_file_name(format!(
                "saved-{}",
                d.file_name().unwrap().to_string_lossy()
            ))
        })
        .collect();
    for (d, s) in site.iter().zip(&saved) {
        common::copy_tree(d, s);
    }
    let store = Store::open(layout.clone(), common::options()).unwrap();
    store.put(b"cut", common::value(5, 1 << 20)).unwrap();
    store.close().unwrap();
    drop(store);
    for (d, s) in site.iter().zip(&saved) {
        std::fs::remove_dir_all(d).unwrap();
        common::copy_tree(s, d);
        std::fs::remove_dir_all(s).unwrap();
    }

    // The restart after the crash, a new acknowledged put, then site 0 burns.
    let store = Store::open(layout.clone(), common::options()).unwrap();
    let shown = store
        .get(b"cut")
        .unwrap()
        .map(|b| crc32fast::hash(&b.to_bytes()));
    store.put(b"after", &b"acknowledged too"[..]).unwrap();
    store.close().unwrap();
    drop(store);
    common::burn_site(layout, geoshard::layout::SiteId(0));
    let store = Store::open(layout.clone(), common::options()).unwrap_or_else(|e| {
        panic!("{code}: within the promise, the store opens after the crash and one site fire: {e}")
    });
    assert_eq!(
        &store.get(b"before").unwrap().unwrap().to_bytes()[..],
        b"acknowledged"
    );
    assert_eq!(
        &store.get(b"after").unwrap().unwrap().to_bytes()[..],
        b"acknowledged too"
    );
    assert_eq!(
        store
            .get(b"cut")
            .unwrap()
            .map(|b| crc32fast::hash(&b.to_bytes())),
        shown,
        "{code}: what the first open showed of the cut commit, later opens show too"
    );
}

/// Review item 12: a failed commit that happens to be decodable, followed
/// by an acknowledged one, must look the same after every reopen.
#[test]
fn a_failed_commit_is_shown_or_hidden_the_same_way_by_every_open() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let options = Options {
        write_policy: WritePolicy::Strict,
        ..common::options()
    };
    drop(common::create(layout.clone(), options.clone()));
    let (faulty, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), options.clone(), handles).unwrap();
    store.put(b"base", &b"base"[..]).unwrap();
    // One append of the next commit fails; the others land.
    faulty[4].fail_next_appends(1, libc::EIO);
    let failed = store.put(b"maybe", common::value(9, 1 << 20));
    faulty[4].heal();
    store.put(b"acked", &b"acked"[..]).unwrap();
    store.close().unwrap();
    drop(store);
    drop(faulty);

    let seen = |store: &Store| {
        store
            .get(b"maybe")
            .unwrap()
            .map(|b| crc32fast::hash(&b.to_bytes()))
    };
    let store = Store::open(layout.clone(), options.clone()).unwrap();
    let first = seen(&store);
    if failed.is_ok() {
        assert!(first.is_some(), "an acknowledged put is visible");
    }
    store.put(b"later", &b"later"[..]).unwrap();
    store.close().unwrap();
    drop(store);
    for _ in 0..2 {
        let store = Store::open(layout.clone(), options.clone()).unwrap();
        assert_eq!(
            seen(&store),
            first,
            "the put that failed (it returned {failed:?}) flipped between reopens"
        );
        assert_eq!(
            &store.get(b"acked").unwrap().unwrap().to_bytes()[..],
            b"acked"
        );
        store.put(b"later", &b"again"[..]).unwrap();
    }
}

/// Review item 13: tombstones stop being carried once no live generation
/// can hold a value they hide, and open does not grow with history.
#[test]
fn tombstones_are_dropped_once_nothing_older_can_hide_behind_them() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let options = one_generation_per_commit();
    let store = common::create(layout.clone(), options.clone());
    // Generation of the values, then generations of their tombstones.
    for i in 0..5 {
        store.put(format!("k{i}").as_bytes(), &b"v"[..]).unwrap();
    }
    for i in 0..5 {
        store.delete(format!("k{i}").as_bytes()).unwrap();
    }
    store
        .put(b"newest", &b"keeps the last generation busy"[..])
        .unwrap();
    // First compaction: the values' generations go; the tombstones' own
    // generations may be compacted in the same call, before or after them.
    let first = store.compact(&CompactOptions::default()).unwrap();
    let second = store.compact(&CompactOptions::default()).unwrap();
    let carried = first.tombstones_carried + second.tombstones_carried;
    let dropped = first.tombstones_dropped + second.tombstones_dropped;
    assert!(dropped > 0, "{first:?} then {second:?}");
    // Once the values' generations are gone, nothing is carried any more.
    store.put(b"newest", &b"again"[..]).unwrap();
    let third = store.compact(&CompactOptions::default()).unwrap();
    assert_eq!(
        third.tombstones_carried, 0,
        "{third:?} (carried {carried} before)"
    );
    store.close().unwrap();
    drop(store);
    let store = Store::open(layout, options).unwrap();
    for i in 0..5 {
        assert!(store.get(format!("k{i}").as_bytes()).unwrap().is_none());
    }
}

/// Review item 14: a split blob's parts are resolved under the lock and
/// read after it; a compaction that moves the blob in between must make the
/// get look again, not fail.
#[test]
fn split_gets_during_compaction_always_read_the_whole_value() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let options = Options {
        column_len_target: 64 << 10,
        split_len_min: 64 << 10,
        segment_len_target: 256 << 10,
        ..common::options()
    };
    let store = common::create(layout, options);
    // Spans many stripes: 6 data columns of 64 KiB each per stripe.
    let big = common::value(1, 5 << 20);
    store.put(b"big", big.clone()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let churn = s.spawn(|| {
            for round in 0..12u64 {
                // Dead bytes in the big value's generations, then compact:
                // the big value moves every round.
                for i in 0..20u64 {
                    store
                        .put(
                            format!("filler/{i}").as_bytes(),
                            common::value(round * 100 + i, 70_000),
                        )
                        .unwrap();
                }
                for i in 0..20u64 {
                    store.delete(format!("filler/{i}").as_bytes()).unwrap();
                }
                store
                    .compact(&CompactOptions {
                        live_ratio_max: 0.99,
                        ..CompactOptions::default()
                    })
                    .unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        let mut gets = 0;
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            let got = store
                .get(b"big")
                .unwrap()
                .expect("the value is always there");
            assert!(got.to_bytes() == big[..], "get {gets} read a wrong value");
            gets += 1;
        }
        churn.join().unwrap();
        assert!(gets > 0);
    });
}
