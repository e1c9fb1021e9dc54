//! Compaction: generations whose blobs are mostly dead are rewritten and
//! removed from every node, so disk space actually shrinks; live blobs stay
//! readable and deleted ones stay deleted, also after reopen.

mod common;

use std::collections::HashMap;

use geoshard::{CompactOptions, Options, Store};

fn disk_bytes(root: &std::path::Path) -> u64 {
    common::files_under(root)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn compaction_reclaims_space_and_keeps_every_live_blob() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let options = Options {
        column_len_target: 64 << 10,
        segment_len_target: 256 << 10,
        ..common::options()
    };
    let mut model: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let store = Store::create(layout.clone(), options.clone()).unwrap();
    // Old generations: 300 blobs, then most of them overwritten or deleted.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = &store;
            s.spawn(move || {
                let mut rng = common::rng(t);
                for i in 0..75 {
                    let key = format!("old/{t}/{i}");
                    // Equal sizes, so every old generation ends up ~25% live.
                    let mut value = vec![0u8; 16 << 10];
                    rand::RngCore::fill_bytes(&mut rng, &mut value);
                    store.put(key.as_bytes(), value).unwrap();
                }
            });
        }
    });
    for t in 0..4u64 {
        for i in 0..75 {
            let key = format!("old/{t}/{i}").into_bytes();
            match i % 4 {
                0 => {
                    model.insert(
                        key.clone(),
                        Some(store.get(&key).unwrap().unwrap().to_bytes().to_vec()),
                    );
                }
                1 => {
                    assert!(store.delete(&key).unwrap());
                    model.insert(key, None);
                }
                _ => {
                    let v = format!("new value of {t}/{i}").into_bytes();
                    store.put(&key, v.clone()).unwrap();
                    model.insert(key, Some(v));
                }
            }
        }
    }
    store.flush().unwrap();
    let before = disk_bytes(dir.path());
    let report = store.compact(&CompactOptions::default()).unwrap();
    assert!(!report.generations_compacted.is_empty(), "{report:?}");
    assert!(report.blobs_moved > 0, "{report:?}");
    let after = disk_bytes(dir.path());
    // 3 of 4 old blobs are dead: well over a third of the bytes must go.
    assert!(
        after < before * 2 / 3,
        "disk bytes {before} -> {after}: {report:?}"
    );

    let check = |store: &Store| {
        for (key, expected) in &model {
            let got = store.get(key).unwrap().map(|b| b.to_bytes().to_vec());
            assert!(
                got.as_ref() == expected.as_ref(),
                "{:?}: got {:?} bytes, expected {:?}",
                String::from_utf8_lossy(key),
                got.as_ref().map(Vec::len),
                expected.as_ref().map(Vec::len)
            );
        }
    };
    check(&store);
    // A second compaction right after finds little or nothing to do, and
    // keeps everything.
    store.compact(&CompactOptions::default()).unwrap();
    check(&store);
    drop(store);
    let store = Store::open(layout, options).unwrap();
    check(&store);
    assert_eq!(store.len(), model.values().filter(|v| v.is_some()).count());
}

#[test]
fn a_retired_generation_left_on_a_node_is_not_mistaken_for_lost_data() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let options = Options {
        column_len_target: 64 << 10,
        segment_len_target: 64 << 10,
        ..common::options()
    };
    let store = Store::create(layout.clone(), options.clone()).unwrap();
    let mut rng = common::rng(3);
    for i in 0..40 {
        store
            .put(format!("k{i}").as_bytes(), common::chat_value(&mut rng, 50))
            .unwrap();
    }
    for i in 0..36 {
        store.delete(format!("k{i}").as_bytes()).unwrap();
    }
    store.put(b"last", &b"x"[..]).unwrap();
    // Keep a copy of every segment before compaction removes some.
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = common::files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let report = store.compact(&CompactOptions::default()).unwrap();
    assert!(!report.generations_compacted.is_empty());
    drop(store);
    // As if removal had been cut short: put the removed segments back on
    // the nodes of one site only (too few columns to decode those stripes).
    let site0 = common::site_dirs(&layout, geoshard::layout::SiteId(0));
    for (path, bytes) in &saved {
        if !path.exists() && site0.iter().any(|d| path.starts_with(d)) {
            std::fs::write(path, bytes).unwrap();
        }
    }
    let store = Store::open(layout, options).unwrap();
    for i in 0..36 {
        assert!(
            store.get(format!("k{i}").as_bytes()).unwrap().is_none(),
            "k{i} came back"
        );
    }
    for i in 36..40 {
        assert!(
            store.get(format!("k{i}").as_bytes()).unwrap().is_some(),
            "k{i} lost"
        );
    }
    // The leftovers were cleaned up on open.
    for (path, _) in &saved {
        if site0.iter().any(|d| path.starts_with(d)) && !report.generations_compacted.is_empty() {
            let generation_removed = report.generations_compacted.iter().any(|g| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{g:016x}"))
            });
            if generation_removed {
                assert!(!path.exists(), "{path:?} left behind");
            }
        }
    }
}
