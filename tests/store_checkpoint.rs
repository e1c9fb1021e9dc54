//! Index checkpoints (docs/DURABILITY.md, "Checkpoints"): open from a
//! checkpoint sees exactly what a full scan sees, through later writes,
//! compaction, a burned site, a checkpoint cut short or damaged (then the
//! full scan), and the background policy.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use geoshard::layout::{Layout, SiteId};
use geoshard::{CompactOptions, Options, RepairOptions, Store};

fn layout(root: &Path) -> Layout {
    common::layout(root, 3, 2, 4, 2)
}

fn options(checkpoints: bool) -> Options {
    Options {
        checkpoints,
        checkpoint_every: 0,
        column_len_target: 64 << 10,
        segment_len_target: 256 << 10,
        ..common::options()
    }
}

/// Every key and its value.
fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .keys_with_prefix(b"")
        .map(|key| {
            let value = store.get(&key).expect("get").expect("listed key present");
            (key, value.to_bytes().to_vec())
        })
        .collect()
}

/// Asserts two key-value maps are equal, naming the first difference
/// (not printing megabytes of values).
fn same(got: &BTreeMap<Vec<u8>, Vec<u8>>, want: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) {
    if got == want {
        return;
    }
    let keys: std::collections::BTreeSet<&Vec<u8>> = got.keys().chain(want.keys()).collect();
    for key in keys {
        let (a, b) = (got.get(key), want.get(key));
        assert!(
            a == b,
            "{what}: {} keys against {}; first difference at {:?}: {:?} against {:?} bytes",
            got.len(),
            want.len(),
            String::from_utf8_lossy(key),
            a.map(Vec::len),
            b.map(Vec::len)
        );
    }
}

/// Puts, overwrites (some split into parts), deletes.
fn write_some(store: &Store, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, round: u64, n: u64) {
    for i in 0..n {
        let key = format!("room-{}/msg-{}", i % 7, (round * 1000 + i) % 1500).into_bytes();
        let len = if i % 97 == 5 {
            150_000
        } else {
            20 + (i as usize * 37) % 900
        };
        let value = common::value(round * 7919 + i, len);
        store.put(&key, value.clone()).expect("put");
        model.insert(key, value);
        if i % 5 == 0 {
            let gone = format!("room-{}/msg-{}", (i + 3) % 7, (round * 1000 + i / 2) % 1500);
            let existed = store.delete(gone.as_bytes()).expect("delete");
            assert_eq!(existed, model.remove(gone.as_bytes()).is_some());
        }
    }
}

/// A store at `root` with `before` writes, a checkpoint, then `after`
/// more writes (round 1), closed: what it holds and the checkpoint.
fn checkpoint_between(
    root: &Path,
    before: u64,
    after: u64,
) -> (BTreeMap<Vec<u8>, Vec<u8>>, geoshard::CheckpointReport) {
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options(true)).expect("create");
    write_some(&store, &mut model, 0, before);
    let report = store.checkpoint().expect("checkpoint");
    write_some(&store, &mut model, 1, after);
    drop(store);
    (model, report)
}

/// Opens with and without the checkpoint; both see `model`, and the
/// checkpoint open reports the checkpoint it used.
fn check_both(root: &Path, model: &BTreeMap<Vec<u8>, Vec<u8>>, checkpoint: Option<u64>) {
    let store = Store::open(layout(root), options(true)).expect("open from checkpoint");
    assert_eq!(store.open_report().checkpoint, checkpoint);
    let from_checkpoint = contents(&store);
    let health = store.health();
    drop(store);
    let store = Store::open(layout(root), options(false)).expect("open, full scan");
    assert_eq!(store.open_report().checkpoint, None);
    same(
        &from_checkpoint,
        &contents(&store),
        "checkpoint open against full scan",
    );
    assert_eq!(store.health().stripes, health.stripes);
    assert_eq!(store.health().columns_missing, health.columns_missing);
    drop(store);
    same(&from_checkpoint, model, "checkpoint open against the model");
}

#[test]
fn open_from_a_checkpoint_sees_what_a_full_scan_sees() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options(true)).expect("create");
    write_some(&store, &mut model, 0, 600);
    let first = store.checkpoint().expect("checkpoint");
    assert_eq!(first.blobs, model.len() as u64);
    assert!(first.column_bytes > first.body_bytes, "coded: {first:?}");
    // Past the checkpoint: more writes, overwrites and deletes of keys
    // the checkpoint holds.
    write_some(&store, &mut model, 1, 400);
    drop(store);
    check_both(root, &model, Some(first.generation));

    // A second checkpoint replaces the first; writes after it, then
    // compaction (retires generations the checkpoint names).
    let store = Store::open(layout(root), options(true)).expect("open");
    let second = store.checkpoint().expect("checkpoint");
    assert!(second.generation > first.generation);
    assert_eq!(second.removed, 1);
    write_some(&store, &mut model, 2, 500);
    let compacted = store
        .compact(&CompactOptions {
            live_ratio_max: 0.99,
            ..CompactOptions::default()
        })
        .expect("compact");
    assert!(!compacted.generations_compacted.is_empty());
    write_some(&store, &mut model, 3, 100);
    drop(store);
    check_both(root, &model, Some(second.generation));
    // And a checkpoint taken after the compaction.
    let store = Store::open(layout(root), options(true)).expect("open");
    let third = store.checkpoint().expect("checkpoint");
    drop(store);
    check_both(root, &model, Some(third.generation));
}

#[test]
fn a_burned_site_is_rebuilt_from_the_checkpoint_and_reported() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let (model, report) = checkpoint_between(root, 800, 200);
    common::burn_site(&layout(root), SiteId(0));
    let store = Store::open(layout(root), options(true)).expect("open with a site gone");
    assert_eq!(store.open_report().checkpoint, Some(report.generation));
    same(&contents(&store), &model, "open against the model");
    let health = store.health();
    assert!(
        health.columns_missing > 0,
        "the burned site's columns are missing"
    );
    let full_missing = {
        drop(store);
        let full = Store::open(layout(root), options(false)).expect("full scan");
        let missing = full.health().columns_missing;
        drop(full);
        missing
    };
    assert_eq!(health.columns_missing, full_missing);
    let store = Store::open(layout(root), options(true)).expect("open");
    store.repair(&RepairOptions::default()).expect("repair");
    assert_eq!(store.health().columns_missing, 0);
    drop(store);
    // The rebuilt nodes are scanned whole; the checkpoint serves the rest.
    check_both(root, &model, Some(report.generation));
}

/// Checkpoint generations' segment files on every node.
fn checkpoint_files(root: &Path) -> Vec<std::path::PathBuf> {
    common::files_under(root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ffffff") && n.ends_with(".segment"))
        })
        .collect()
}

/// A node directory's data segments (not checkpoints), oldest first.
fn data_segments(node: &Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = common::files_under(node)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "segment")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("ffffff"))
        })
        .collect();
    segments.sort();
    segments
}

#[test]
fn a_damaged_or_partial_checkpoint_falls_back_to_the_full_scan() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let (model, report) = checkpoint_between(root, 700, 100);
    let files = checkpoint_files(root);
    assert_eq!(files.len(), 6, "one column per node: {files:?}");

    // Two columns gone (m = 2): still decodes.
    let saved = common::fast_tempdir();
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(f, saved.path().join(i.to_string())).expect("save");
    }
    for f in &files[..2] {
        std::fs::remove_file(f).expect("remove column");
    }
    check_both(root, &model, Some(report.generation));

    // Three gone (a crash cut the checkpoint short): full scan.
    std::fs::remove_file(&files[2]).expect("remove column");
    check_both(root, &model, None);

    // Every column back, a bit flipped in three of them: their checksums
    // fail, three are left, too few: full scan. In one: still decodes.
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(saved.path().join(i.to_string()), f).expect("restore");
    }
    let flip = |f: &Path| {
        let mut bytes = std::fs::read(f).expect("read");
        let at = bytes.len() - 100;
        bytes[at] ^= 0x10;
        std::fs::write(f, bytes).expect("write");
    };
    flip(&files[0]);
    check_both(root, &model, Some(report.generation));
    flip(&files[3]);
    flip(&files[5]);
    check_both(root, &model, None);
}

/// A checkpoint every checksum passes whose records fail open's check
/// (which runs on another thread while open reads the tail) is not used:
/// open scans every record and sees everything, a site gone or not. A copy
/// forged the same way but left intact is used (the forgery itself is
/// sound).
#[test]
fn a_checkpoint_whose_records_fail_the_check_falls_back_to_the_full_scan() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options(true)).expect("create");
    write_some(&store, &mut model, 0, 700);
    store.checkpoint().expect("checkpoint");
    write_some(&store, &mut model, 1, 100);
    let copy = geoshard::testing::forge_checkpoint(&store, 0).expect("copy");
    drop(store);
    check_both(root, &model, Some(copy));

    let store = Store::open(layout(root), options(true)).expect("open");
    write_some(&store, &mut model, 2, 100);
    let forged = geoshard::testing::forge_checkpoint(&store, 0x80).expect("forge");
    assert!(forged > copy);
    drop(store);
    check_both(root, &model, None);

    // The same with a site gone: the lost columns of the forged body are
    // rebuilt from parity, decode, and fail the same check.
    common::burn_site(&layout(root), SiteId(2));
    let store = Store::open(layout(root), options(true)).expect("open, a site gone");
    assert_eq!(store.open_report().checkpoint, None);
    same(
        &contents(&store),
        &model,
        "a site gone, the forged checkpoint refused",
    );
    assert!(store.health().columns_missing > 0);
    drop(store);
}

#[test]
fn a_segment_shorter_than_the_checkpoint_saw_it_is_scanned_whole() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options(true)).expect("create");
    write_some(&store, &mut model, 0, 500);
    drop(store);
    // In a later session (so the cut below is damage to a visible stripe,
    // not evidence against an unfinished commit of the last session).
    let store = Store::open(layout(root), options(true)).expect("open");
    let report = store.checkpoint().expect("checkpoint");
    drop(store);
    // A node's segment cut below the checkpoint's horizon (behind the
    // store's back): that node is scanned whole.
    let segment = data_segments(&root.join("site1/n0"))
        .into_iter()
        .next()
        .expect("a data segment");
    let len = std::fs::metadata(&segment).expect("len").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open");
    file.set_len(len / 2).expect("cut");
    drop(file);
    let store = Store::open(layout(root), options(true)).expect("open");
    assert_eq!(store.open_report().checkpoint, Some(report.generation));
    // The cut columns are missing, or were rebuilt by open (they were
    // under a torn tail).
    let missing = store.health().columns_missing;
    assert!(missing + store.open_report().stripes_rebuilt_at_open > 0);
    drop(store);
    check_both(root, &model, Some(report.generation));
}

/// Open from a checkpoint reads only what was written after it: rot below
/// a horizon is not seen at open (C4: reads and scrub find it), a full scan
/// reports it, and reads rebuild what it hit.
#[test]
fn an_open_from_a_checkpoint_reads_only_past_the_horizons() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let (model, report) = checkpoint_between(root, 500, 100);
    // A byte in the middle of a node's oldest data segment flips.
    let segments = data_segments(&root.join("site0/n0"));
    let segment = segments.first().expect("a data segment");
    let mut bytes = std::fs::read(segment).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(segment, bytes).expect("write");

    let store = Store::open(layout(root), options(true)).expect("open from checkpoint");
    assert_eq!(store.open_report().checkpoint, Some(report.generation));
    assert_eq!(
        store.open_report().corrupt_regions,
        0,
        "the rot lies below the horizon: not read at open"
    );
    same(
        &contents(&store),
        &model,
        "checkpoint open, rot below the horizon",
    );
    drop(store);
    let store = Store::open(layout(root), options(false)).expect("open, full scan");
    assert!(
        store.open_report().corrupt_regions > 0,
        "a full scan finds it"
    );
    same(
        &contents(&store),
        &model,
        "full scan, rot below the horizon",
    );
}

#[test]
fn the_policy_writes_checkpoints_in_the_background() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let options = Options {
        checkpoint_every: 300,
        ..options(true)
    };
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options.clone()).expect("create");
    write_some(&store, &mut model, 0, 1000);
    // The last checkpoint may still be running: close waits for it.
    store.close().expect("close");
    drop(store);
    assert!(
        !checkpoint_files(root).is_empty(),
        "no checkpoint was written"
    );
    let store = Store::open(layout(root), options).expect("open");
    assert!(store.open_report().checkpoint.is_some());
    same(&contents(&store), &model, "open against the model");
}

/// After a checkpoint the running index moves onto it, once it holds at
/// least a quarter as many records in memory as in the checkpoint it
/// stands on: the keys it holds are read in place and only later writes
/// are in memory, and every key reads what it did (puts, overwrites, split
/// blobs, deletes of keys the checkpoint holds), through a checkpoint it
/// does not move onto, a second move, a reopen, and a site gone.
#[test]
fn the_index_moves_onto_each_checkpoint() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options(true)).expect("create");
    write_some(&store, &mut model, 0, 800);
    assert_eq!(geoshard::testing::index_shape(&store).0, 0, "no base yet");
    let first = store.checkpoint().expect("checkpoint");
    assert!(first.rebased, "the index moved onto the checkpoint");
    assert_eq!(
        geoshard::testing::index_shape(&store),
        (model.len(), 0),
        "every key in the checkpoint's records, none in memory"
    );
    same(&contents(&store), &model, "after the first checkpoint");
    // A few writes: too few records in memory for a move.
    write_some(&store, &mut model, 5, 40);
    let (base, overlay) = geoshard::testing::index_shape(&store);
    assert!(
        overlay * 4 < base,
        "{overlay} records in memory over {base}"
    );
    let small = store.checkpoint().expect("checkpoint");
    assert!(!small.rebased, "a quarter of the base's records is the bar");
    assert_eq!(geoshard::testing::index_shape(&store), (base, overlay));
    same(
        &contents(&store),
        &model,
        "after a checkpoint it did not move onto",
    );
    // Overwrites and deletes of the checkpoint's keys, and new keys.
    write_some(&store, &mut model, 1, 400);
    let (base, overlay) = geoshard::testing::index_shape(&store);
    assert!(
        overlay * 4 >= base,
        "{overlay} records in memory over {base}"
    );
    same(&contents(&store), &model, "over the first checkpoint");
    let second = store.checkpoint().expect("checkpoint");
    assert!(second.rebased);
    assert_eq!(geoshard::testing::index_shape(&store), (model.len(), 0));
    same(&contents(&store), &model, "after the second checkpoint");
    write_some(&store, &mut model, 2, 100);
    drop(store);
    check_both(root, &model, Some(second.generation));
    // With a site gone a checkpoint is written without that site's
    // columns (k of each chunk are), and open reads it with the site
    // still gone: a burning site does not stop checkpoints.
    common::burn_site(&layout(root), SiteId(1));
    let store = Store::open(layout(root), options(true)).expect("open with a site gone");
    assert_eq!(store.open_report().checkpoint, Some(second.generation));
    write_some(&store, &mut model, 3, 100);
    let during = store.checkpoint().expect("a checkpoint with a site gone");
    assert_eq!(
        during.nodes_skipped,
        ["s1n0", "s1n1"],
        "the burned site's nodes took no columns"
    );
    same(
        &contents(&store),
        &model,
        "after a checkpoint with a site gone",
    );
    write_some(&store, &mut model, 4, 400);
    let moved = store
        .checkpoint()
        .expect("a second checkpoint with the site gone");
    assert!(moved.rebased, "a quarter of the base's records in memory");
    assert_eq!(moved.nodes_skipped, during.nodes_skipped);
    same(&contents(&store), &model, "after a move with a site gone");
    let stats = store.stats();
    assert_eq!(
        (
            stats.checkpoints,
            stats.checkpoint_deltas,
            stats.checkpoints_degraded,
            stats.checkpoint_failures
        ),
        (2, 1, 2, 0)
    );
    assert_eq!(
        stats.checkpoint_bytes,
        during.column_bytes + moved.column_bytes
    );
    write_some(&store, &mut model, 6, 40);
    store.close().expect("close");
    assert!(
        store.checkpoint().is_err(),
        "a checkpoint of a closed store"
    );
    assert_eq!(store.stats().checkpoint_failures, 1);
    drop(store);
    check_both(root, &model, Some(moved.generation));
    // The site rebuilt: its nodes take writes again but hold nothing of
    // the checkpoint the index stands on, so the next one is full, with
    // every column, and outlives another site's loss.
    let store = Store::open(layout(root), options(true)).expect("open");
    store.repair(&RepairOptions::default()).expect("repair");
    write_some(&store, &mut model, 7, 40);
    let third = store.checkpoint().expect("checkpoint after the repair");
    assert_eq!(
        third.delta_of, None,
        "the base lacks the rebuilt site's columns"
    );
    assert!(third.nodes_skipped.is_empty());
    assert!(third.rebased);
    assert_eq!(geoshard::testing::index_shape(&store), (model.len(), 0));
    same(&contents(&store), &model, "after the repair's checkpoint");
    write_some(&store, &mut model, 8, 40);
    drop(store);
    check_both(root, &model, Some(third.generation));
    common::burn_site(&layout(root), SiteId(2));
    let store = Store::open(layout(root), options(true)).expect("open with site 2 gone");
    assert_eq!(store.open_report().checkpoint, Some(third.generation));
    same(
        &contents(&store),
        &model,
        "from the full checkpoint, site 2 gone",
    );
}

/// Puts, overwrites and deletes from two threads while checkpoints are
/// written and the index moves onto them (the first always): nothing a writer was told is
/// lost or comes back, in the running store or after a reopen (the
/// journal replayed over the checkpoint is every change after its copy).
#[test]
fn writes_during_a_checkpoint_survive_the_move_onto_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = common::fast_tempdir();
    let root = dir.path();
    let store = Store::create(layout(root), options(true)).expect("create");
    let mut model = BTreeMap::new();
    write_some(&store, &mut model, 0, 600);
    let stop = AtomicBool::new(false);
    let (models, rebased, last, first_moved) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (store, stop) = (&store, &stop);
                s.spawn(move || {
                    // Each writer owns its keys: its model is exact.
                    let mut mine: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) || i < 300 {
                        let key = format!("writer-{w}/{}", i % 250).into_bytes();
                        if i % 7 == 3 {
                            store.delete(&key).expect("delete");
                            mine.insert(key, None);
                        } else {
                            let value = common::value(w * 1_000_003 + i, 10 + (i as usize % 300));
                            store.put(&key, value.clone()).expect("put");
                            mine.insert(key, Some(value));
                        }
                        i += 1;
                    }
                    mine
                })
            })
            .collect();
        let (mut rebased, mut last, mut first_moved) = (0, 0, false);
        for round in 0..4 {
            let report = store.checkpoint().expect("checkpoint");
            rebased += usize::from(report.rebased);
            first_moved |= round == 0 && report.rebased;
            last = report.generation;
        }
        stop.store(true, Ordering::Relaxed);
        let models: Vec<_> = writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect();
        (models, rebased, last, first_moved)
    });
    // The first stands on no checkpoint, so the index moves onto it, with
    // the writers' changes meanwhile in its journal; the later ones move it
    // when the writers wrote enough between them.
    assert!(first_moved, "the first checkpoint moved the index");
    assert!(rebased >= 1);
    for mine in models {
        for (key, value) in mine {
            match value {
                Some(v) => model.insert(key, v),
                None => model.remove(&key),
            };
        }
    }
    same(&contents(&store), &model, "the running store");
    drop(store);
    check_both(root, &model, Some(last));
}

/// A listing that goes on across checkpoints (each moving the index onto
/// its records, whose key order is then sorted anew) lists every key once,
/// in order.
#[test]
fn a_listing_goes_on_across_the_move_onto_a_checkpoint() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let store = Store::create(layout(root), options(true)).expect("create");
    let mut model = BTreeMap::new();
    write_some(&store, &mut model, 0, 3000);
    let mut listed = Vec::new();
    let mut keys = store.keys_with_prefix(b"");
    // The listing fetches 1,024 keys at a time: the second fetch comes
    // after the first move.
    for (round, take) in [500, 700].into_iter().enumerate() {
        listed.extend(keys.by_ref().take(take));
        let report = store.checkpoint().expect("checkpoint");
        // The second finds nothing new in memory: no move.
        assert_eq!(report.rebased, round == 0, "round {round}");
    }
    listed.extend(keys);
    let want: Vec<Vec<u8>> = model.keys().cloned().collect();
    assert!(want.len() > 1_200, "{} keys", want.len());
    assert_eq!(listed, want);
}

/// Checkpoint files of generation `generation`.
fn files_of(root: &Path, generation: u64) -> Vec<std::path::PathBuf> {
    let name = format!("{generation:016x}");
    checkpoint_files(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&name))
        .collect()
}

/// A checkpoint taken while the index holds little above the one it
/// stands on is a delta over it (docs/DURABILITY.md, C8): it writes only
/// the keys written since, and which of the base's records they hide; the
/// older delta goes, the base stays. Open from it sees what a full scan
/// sees: after overwrites and deletes of the base's keys, after a
/// compaction that retired generations the base's hidden records name
/// (their parts are not checked), with a site gone; with its base
/// damaged, open falls back to the full scan.
#[test]
fn a_delta_checkpoint_over_its_base_sees_what_a_full_scan_sees() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    // Small segments: many generations, the oldest all overwritten below.
    let small = || Options {
        segment_len_target: 32 << 10,
        ..options(true)
    };
    let store = Store::create(layout(root), small()).expect("create");
    let put = |store: &Store, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, i: u64, round: u64| {
        let key = format!("chat-{}/msg-{i}", i % 13).into_bytes();
        let value = common::value(round * 100_003 + i, 60 + (i as usize * 31) % 300);
        store.put(&key, value.clone()).expect("put");
        model.insert(key, value);
    };
    for i in 0..4000 {
        put(&store, &mut model, i, 0);
    }
    let base = store.checkpoint().expect("checkpoint");
    assert_eq!(base.delta_of, None, "the first is full: {base:?}");
    assert!(base.rebased);

    // Overwrites and deletes of the base's keys, new keys.
    let before = model.clone();
    for i in 0..150 {
        put(&store, &mut model, i * 3, 1);
    }
    for i in 0..50 {
        let key = format!("chat-{}/msg-{}", (i * 7 + 1) % 13, i * 7 + 1);
        assert!(store.delete(key.as_bytes()).expect("delete"));
        model.remove(key.as_bytes());
    }
    for i in 4000..4100 {
        put(&store, &mut model, i, 1);
    }
    let changed = model
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .count();
    let first = store.checkpoint().expect("checkpoint");
    assert_eq!(first.delta_of, Some(base.generation), "{first:?}");
    assert_eq!(first.blobs, model.len() as u64);
    assert!(!first.rebased);
    // Only what changed: the keys written since and still there (a
    // delete is a hidden record of the base), and the stripe table.
    assert_eq!(first.records, changed as u64, "{first:?}");
    assert!(changed > 200);
    assert_eq!(base.records, 4000);
    for i in 0..100 {
        put(&store, &mut model, i * 5 + 1, 2);
    }
    let second = store.checkpoint().expect("checkpoint");
    assert_eq!(second.delta_of, Some(base.generation));
    assert_eq!(second.removed, 1, "the older delta goes, the base stays");
    assert_eq!(files_of(root, base.generation).len(), 6);
    assert!(files_of(root, first.generation).is_empty());
    drop(store);
    check_both(root, &model, Some(second.generation));

    // Opened from the delta: the oldest keys overwritten again, then
    // compacted away (their generations retired: the base's records of
    // them, hidden, name stripes the table no longer has), and a delta
    // over the same base after it.
    let store = Store::open(layout(root), small()).expect("open");
    assert_eq!(store.open_report().checkpoint, Some(second.generation));
    assert_eq!(store.open_report().checkpoint_base, Some(base.generation));
    for i in 0..400 {
        put(&store, &mut model, i, 3);
    }
    let compacted = store
        .compact(&CompactOptions {
            live_ratio_max: 0.5,
            ..CompactOptions::default()
        })
        .expect("compact");
    assert!(!compacted.generations_compacted.is_empty(), "{compacted:?}");
    let third = store.checkpoint().expect("checkpoint");
    assert_eq!(third.delta_of, Some(base.generation), "{third:?}");
    drop(store);
    check_both(root, &model, Some(third.generation));

    // A site gone: the delta and its base are rebuilt from the others.
    let saved = common::fast_tempdir();
    copy_tree(root, saved.path());
    common::burn_site(&layout(root), SiteId(1));
    let store = Store::open(layout(root), options(true)).expect("open with a site gone");
    assert_eq!(store.open_report().checkpoint, Some(third.generation));
    same(&contents(&store), &model, "a delta with a site gone");
    drop(store);

    // The base damaged beyond decoding: neither it nor the delta over it
    // is used.
    std::fs::remove_dir_all(root).expect("clear");
    copy_tree(saved.path(), root);
    for f in &files_of(root, base.generation)[..3] {
        let mut bytes = std::fs::read(f).expect("read");
        let at = bytes.len() - 100;
        bytes[at] ^= 0x10;
        std::fs::write(f, bytes).expect("write");
    }
    check_both(root, &model, None);

    // Intact again: standing on the delta, writes past a quarter of the
    // base make the next checkpoint full (an image of the delta and the
    // base's records it does not hide, split blobs included); the index
    // moves onto it, and the base and the delta go.
    std::fs::remove_dir_all(root).expect("clear");
    copy_tree(saved.path(), root);
    let store = Store::open(layout(root), small()).expect("open");
    assert_eq!(store.open_report().checkpoint, Some(third.generation));
    for i in 0..700 {
        put(&store, &mut model, 5000 + i, 4);
    }
    let big = common::value(99, 150_000);
    store.put(b"chat-0/split", big.clone()).expect("put");
    model.insert(b"chat-0/split".to_vec(), big);
    let full = store.checkpoint().expect("checkpoint");
    assert_eq!(full.delta_of, None, "{full:?}");
    assert!(full.rebased);
    assert_eq!(full.records, model.len() as u64);
    assert!(files_of(root, base.generation).is_empty());
    assert!(files_of(root, third.generation).is_empty());
    // And a delta over it, whose split blob is the new full one's.
    for i in 0..20 {
        put(&store, &mut model, i, 5);
    }
    let after = store.checkpoint().expect("checkpoint");
    assert_eq!(after.delta_of, Some(full.generation));
    drop(store);
    check_both(root, &model, Some(after.generation));
}

/// Copies the directory tree `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    for path in common::files_under(from) {
        let Ok(rel) = path.strip_prefix(from) else {
            continue;
        };
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(&path, &dest).expect("copy");
    }
}

/// A checkpoint written while a site is away does not remove the newest
/// whole one (DURABILITY.md, C2): with the site back and repaired, and
/// another site lost before the next checkpoint, the newest no longer
/// decodes, and open starts from the whole one (and the tail past it)
/// instead of scanning every record.
/// Moves the site's node directories aside (the site is away, not
/// burned); returns where each went, for [`move_back`].
fn move_away(root: &Path, site: SiteId) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let away: Vec<_> = common::site_dirs(&layout(root), site)
        .into_iter()
        .map(|d| (d.clone(), d.with_extension("away")))
        .collect();
    for (from, to) in &away {
        std::fs::rename(from, to).expect("move a site away");
    }
    away
}

/// Brings back what [`move_away`] moved.
fn move_back(away: &[(std::path::PathBuf, std::path::PathBuf)]) {
    for (from, to) in away {
        std::fs::rename(to, from).expect("site back");
    }
}

#[test]
fn the_newest_whole_checkpoint_outlives_those_written_while_a_site_is_away() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), options(true)).expect("create");
    write_some(&store, &mut model, 0, 300);
    let whole = store.checkpoint().expect("checkpoint");
    assert!(whole.nodes_skipped.is_empty());
    drop(store);
    let away = move_away(root, SiteId(1));
    let store = Store::open(layout(root), options(true)).expect("open, site 1 away");
    write_some(&store, &mut model, 1, 200);
    let during = store.checkpoint().expect("a checkpoint with site 1 away");
    assert_eq!(
        during.delta_of, None,
        "a full one, which removes the others"
    );
    assert_eq!(during.nodes_skipped, ["s1n0", "s1n1"]);
    assert_eq!(during.removed, 0, "the whole one stays");
    // A delta over it, then a full one: the checkpoints written with the
    // site away go, the whole one stays.
    write_some(&store, &mut model, 2, 20);
    let delta = store.checkpoint().expect("a delta with site 1 away");
    assert_eq!(delta.delta_of, Some(during.generation));
    write_some(&store, &mut model, 3, 400);
    let next = store.checkpoint().expect("a full one with site 1 away");
    assert_eq!((next.delta_of, next.removed), (None, 2));
    for (generation, kept) in [
        (whole.generation, true),
        (during.generation, false),
        (delta.generation, false),
        (next.generation, true),
    ] {
        assert_eq!(
            !files_of(root, generation).is_empty(),
            kept,
            "{generation:x}"
        );
    }
    drop(store);
    move_back(&away);
    let store = Store::open(layout(root), options(true)).expect("open, site 1 back");
    assert_eq!(store.open_report().checkpoint, Some(next.generation));
    store
        .repair(&RepairOptions::default())
        .expect("repair site 1");
    drop(store);
    common::burn_site(&layout(root), SiteId(2));
    check_both(root, &model, Some(whole.generation));
}

/// Waits until `store` has written or failed `n` checkpoints in all (the
/// policy writes them on a thread of its own).
fn wait_for_checkpoints(store: &Store, n: u64) -> geoshard::Stats {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let stats = store.stats();
        if stats.checkpoints + stats.checkpoint_failures >= n {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint: {stats:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A checkpoint written while a site burned lacks its columns, so until
/// the next whole one, losing another site opens from an older checkpoint
/// or scans everything. Once repair brings the site back, the policy
/// writes a whole checkpoint at once (not after `checkpoint_every` more
/// writes), and a process that opens with the site back does the same
/// with its first write: another site lost then opens from it.
#[test]
fn a_site_brought_back_gets_a_whole_checkpoint_at_once() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let policy = Options {
        checkpoint_every: 1_000_000,
        ..options(true)
    };
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), policy.clone()).expect("create");
    write_some(&store, &mut model, 0, 300);
    let whole = store.checkpoint().expect("checkpoint");
    // Site 1 burns under the open store.
    for d in common::site_dirs(&layout(root), SiteId(1)) {
        std::fs::remove_dir_all(&d).expect("burn site 1");
    }
    assert!(!store.health().survives_any_site_loss, "the fire noticed");
    write_some(&store, &mut model, 1, 200);
    let during = store.checkpoint().expect("a checkpoint during the fire");
    assert_eq!(during.nodes_skipped, ["s1n0", "s1n1"]);
    let before = store.stats();
    store
        .repair(&RepairOptions::default())
        .expect("repair site 1");
    // Close waits for the checkpoint the repair started.
    store.close().expect("close");
    let after = store.stats();
    assert_eq!(
        (
            after.checkpoints,
            after.checkpoints_degraded,
            after.checkpoint_failures
        ),
        (
            before.checkpoints + 1,
            before.checkpoints_degraded,
            before.checkpoint_failures
        ),
        "one whole checkpoint after the repair"
    );
    drop(store);
    // Nothing lacks columns now: no other checkpoint starts.
    let store = Store::open(layout(root), policy.clone()).expect("reopen");
    store
        .repair(&RepairOptions::default())
        .expect("repair again");
    write_some(&store, &mut model, 3, 1);
    store.close().expect("close");
    let last = store.stats();
    assert_eq!((last.checkpoints, last.checkpoint_failures), (0, 0));
    drop(store);
    common::burn_site(&layout(root), SiteId(2));
    let store = Store::open(layout(root), options(true)).expect("open, site 2 burned");
    let opened = store.open_report().checkpoint;
    assert!(
        opened.is_some_and(|g| g != whole.generation && g != during.generation),
        "opened from {opened:x?}: not the one written after the repair"
    );
    drop(store);
    check_both(root, &model, opened);

    // A process that opens with a site back that lacks the newest
    // checkpoint's columns starts a whole one too.
    let dir = common::fast_tempdir();
    let root = dir.path();
    let mut model = BTreeMap::new();
    let store = Store::create(layout(root), policy.clone()).expect("create");
    write_some(&store, &mut model, 0, 300);
    store.checkpoint().expect("checkpoint");
    drop(store);
    let away = move_away(root, SiteId(1));
    let store = Store::open(layout(root), policy.clone()).expect("open, site 1 away");
    write_some(&store, &mut model, 1, 200);
    assert_eq!(
        store.stats().checkpoints,
        0,
        "nothing lacks while it is away"
    );
    let during = store.checkpoint().expect("a checkpoint, site 1 away");
    assert_eq!(during.nodes_skipped, ["s1n0", "s1n1"]);
    drop(store);
    move_back(&away);
    let store = Store::open(layout(root), policy.clone()).expect("open, site 1 back");
    assert_eq!(store.open_report().checkpoint, Some(during.generation));
    // A process that only reads starts none; its first write does.
    same(&contents(&store), &model, "open, site 1 back");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(store.stats().checkpoints, 0, "a read starts no checkpoint");
    write_some(&store, &mut model, 2, 1);
    let stats = wait_for_checkpoints(&store, 1);
    assert_eq!(
        (
            stats.checkpoints,
            stats.checkpoints_degraded,
            stats.checkpoint_failures
        ),
        (1, 0, 0)
    );
    // The writes of the outage get their site 1 columns back.
    store
        .repair(&RepairOptions::default())
        .expect("repair site 1");
    store.close().expect("close");
    let last = store.stats();
    assert_eq!((last.checkpoints, last.checkpoint_failures), (1, 0));
    drop(store);
    common::burn_site(&layout(root), SiteId(0));
    let store = Store::open(layout(root), options(true)).expect("open, site 0 burned");
    let opened = store.open_report().checkpoint;
    assert!(
        opened.is_some_and(|g| g != during.generation),
        "{opened:x?}"
    );
    drop(store);
    check_both(root, &model, opened);
}

/// A checkpoint column file cut short under the running store that opened
/// from it (its records read in place: DURABILITY.md, C9) never makes a
/// read answer wrong: the pages it lost read as zeros (the SIGBUS
/// handler), the index sees that, and from then on every lookup fails
/// loudly (never a silent `None` or another value), a listing ends with
/// its error, writes, checkpoints and compactions are refused, and nothing
/// of it is written. Opened again, the store rebuilds the column from the
/// others and holds every key. Each column in turn.
#[test]
fn a_checkpoint_file_cut_short_under_the_store_never_answers_wrong() {
    let dir = common::fast_tempdir();
    let origin = dir.path().join("store");
    let (model, report) = checkpoint_between(&origin, 700, 100);
    let count = checkpoint_files(&origin).len();
    assert_eq!(count, 6, "one column per node");
    let mut lost_somewhere = 0;
    for i in 0..count {
        let work = dir.path().join(format!("copy-{i}"));
        copy_tree(&origin, &work);
        let root = work.as_path();
        let f = &checkpoint_files(root)[i];
        let store = Store::open(layout(root), options(true)).expect("open from checkpoint");
        assert_eq!(store.open_report().checkpoint, Some(report.generation));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .expect("open column");
        file.set_len(0).expect("cut short");
        drop(file);
        let mut refused = 0;
        for (key, value) in &model {
            match store.get(key) {
                Ok(got) => assert_eq!(
                    got.map(|b| b.to_bytes().to_vec()).as_ref(),
                    Some(value),
                    "column file {i} cut short: {}",
                    String::from_utf8_lossy(key)
                ),
                Err(geoshard::Error::Corrupt { .. }) => refused += 1,
                Err(e) => panic!("column file {i}: {e}"),
            }
            match store.contains(key) {
                Ok(found) => assert!(found, "column file {i}: contains"),
                Err(geoshard::Error::Corrupt { .. }) => {}
                Err(e) => panic!("column file {i}: {e}"),
            }
        }
        let mut listing = store.keys_with_prefix(b"");
        let listed: Vec<Vec<u8>> = listing.by_ref().collect();
        if refused == 0 {
            assert!(listing.error().is_none(), "column file {i}");
            assert_eq!(listed.len(), model.len(), "column file {i}");
            assert_eq!(store.stats().index_lost, 0);
        } else {
            lost_somewhere += 1;
            // Once lost, every lookup fails, the listing says why, and
            // nothing is written.
            assert_eq!(refused, model.len(), "column file {i}");
            assert!(listing.error().is_some(), "column file {i}");
            assert_eq!(store.stats().index_lost, 1);
            assert!(store.put(b"room-0/after", vec![1u8; 10]).is_err());
            assert!(store.delete(b"room-0/msg-1").is_err());
            assert!(store.checkpoint().is_err());
            // A compaction that took the lost keys for dead would retire
            // their generations (without the watch: 537 of 778 keys gone
            // for good, a full scan too).
            let written = store.stats().bytes_written;
            let every = CompactOptions {
                live_ratio_max: 1.0,
                ..CompactOptions::default()
            };
            assert!(store.compact(&every).is_err());
            assert_eq!(store.stats().bytes_written, written, "compaction wrote");
        }
        drop(store);
        // Opened again, with the file still cut short: the checkpoint is
        // read anew, the column rebuilt from the others; a full scan sees
        // the same.
        let store = Store::open(layout(root), options(true)).expect("open again");
        assert_eq!(store.open_report().checkpoint, Some(report.generation));
        same(&contents(&store), &model, "opened again");
        drop(store);
        let store = Store::open(layout(root), options(false)).expect("full scan");
        same(&contents(&store), &model, "full scan");
        drop(store);
    }
    // The records lie in the data columns (k = 4 of the 6): cutting one of
    // them loses a page the index reads.
    assert!(lost_somewhere >= 1, "no column cut lost a page of records");
}

/// A checkpoint column file changed under the running store without a
/// fault (bytes rewritten in place: what a cut inside a page or a hole
/// punched also look like) is never made permanent (C9): a compaction,
/// which would retire what the changed records no longer name, and a
/// checkpoint, which would write them, check the base's columns against
/// their checksums first and are refused; opened again, from the
/// checkpoint and by a full scan, the store holds every key. Each column
/// in turn, each on a copy of the store.
#[test]
fn a_checkpoint_file_changed_under_the_store_is_never_made_permanent() {
    let dir = common::fast_tempdir();
    let root = dir.path().join("store");
    let (model, report) = checkpoint_between(&root, 700, 100);
    let count = checkpoint_files(&root).len();
    assert_eq!(count, 6, "one column per node");
    let every = CompactOptions {
        live_ratio_max: 1.0,
        ..CompactOptions::default()
    };
    let mut refused = 0;
    for i in 0..count {
        let work = dir.path().join(format!("copy-{i}"));
        copy_tree(&root, &work);
        let store = Store::open(layout(&work), options(true)).expect("open from checkpoint");
        assert_eq!(store.open_report().checkpoint, Some(report.generation));
        let file = &checkpoint_files(&work)[i];
        let len = std::fs::metadata(file).expect("stat").len();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .expect("open column");
            // Zeros over all but the headers, the file's length unchanged:
            // no fault.
            f.write_all_at(&vec![0u8; (len - 512) as usize], 512)
                .expect("overwrite");
        }
        let compacted = store.compact(&every);
        let checkpointed = store.checkpoint();
        if compacted.is_err() {
            refused += 1;
            assert!(
                checkpointed.is_err(),
                "column file {i}: a checkpoint written"
            );
            assert_eq!(store.stats().index_lost, 1);
            assert!(matches!(
                store.get(b"room-0/msg-0"),
                Err(geoshard::Error::Corrupt { .. })
            ));
        }
        drop(store);
        let store = Store::open(layout(&work), options(true)).expect("open again");
        same(&contents(&store), &model, "opened again");
        drop(store);
        let store = Store::open(layout(&work), options(false)).expect("full scan");
        same(&contents(&store), &model, "full scan");
        drop(store);
    }
    // The records lie in the data columns: changing one is refused.
    assert!(refused >= 1, "no change of a column was seen");
}
