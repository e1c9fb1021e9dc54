//! Hostile review of the durability change: each test is one finding. The
//! comment above a test describes the bug as it was found; the test's name
//! says what it proves now, and it fails while the bug is present.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Handle;
use common::object_nodes::{self, file_layout};
use geoshard::format::Manifest;
use geoshard::layout::{Layout, Location};
use geoshard::node::{Capacity, LocalNode, LocalOptions, Node, RecordLocation, RecordRef, Scan};
use geoshard::{CompactOptions, Error, Options, Store, WritePolicy};

fn local(layout: &Layout, i: usize) -> Handle {
    let spec = &layout.nodes()[i];
    let Location::Dir(dir) = &spec.location else {
        panic!("local only")
    };
    Ok(Arc::new(
        LocalNode::open(spec.name.clone(), dir, &LocalOptions::default()).unwrap(),
    ))
}

fn local_except(layout: &Layout, down: &[usize]) -> Vec<Handle> {
    (0..layout.nodes().len())
        .map(|i| {
            if down.contains(&i) {
                Err("down for this test".to_string())
            } else {
                local(layout, i)
            }
        })
        .collect()
}

/// RS(2,1) over three sites of one local node each.
fn local_3x1(root: &std::path::Path) -> Layout {
    common::layout(root, 3, 1, 2, 1)
}

// ---------------------------------------------------------------------------
// F1 (D6, D1): a partitioned writer on object-store nodes keeps
// acknowledging degraded writes to the one site it still reaches, while a
// second writer opens on the other two sites. The first writer's
// acknowledged puts are then discarded by the second writer's manifest.
// ---------------------------------------------------------------------------

#[test]
fn f1_partitioned_writers_never_both_acknowledge() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    let options = object_nodes::options();
    let setup = common::create(layout.clone(), options.clone());
    setup.put(b"before", &b"x"[..]).unwrap();
    drop(setup);

    // Writer A holds every lease.
    let (faulty, handles) = object_nodes::faulty_nodes(&layout, &options).unwrap();
    let a = Store::open_with_nodes(layout.clone(), options.clone(), handles).unwrap();
    a.put(b"a/acked", &b"x"[..]).unwrap();

    // The network splits: A reaches only c1, B reaches only a1 and b1.
    faulty[0].fail_reads("");
    faulty[1].fail_reads("");
    let b_handles = vec![
        Ok(object_nodes::faulty_node(&layout, 0, &options).unwrap().1),
        Ok(object_nodes::faulty_node(&layout, 1, &options).unwrap().1),
        Err("partitioned from this writer".to_string()),
    ];
    let b = Store::open_with_nodes(layout.clone(), options.clone(), b_handles)
        .expect("one site missing is within the promise");

    let a_put = a.put(b"a/split", &b"acknowledged by A after B took over"[..]);
    let b_put = b.put(b"b/split", &b"acknowledged by B"[..]);
    eprintln!("A: {a_put:?}, B: {b_put:?}, A stats {:?}", a.stats());
    let both = a_put.is_ok() && b_put.is_ok();

    for f in &faulty {
        f.heal();
    }
    drop(a);
    drop(b);
    let c = Store::open(layout, options).unwrap();
    let a_split = c.get(b"a/split").unwrap().map(|b| b.to_bytes());
    eprintln!("after the partition heals: a/split = {a_split:?}");
    assert!(
        !both,
        "D6: two writers both acknowledged (A: {a_put:?}, B: {b_put:?}); A's put is now {a_split:?}"
    );
}

// ---------------------------------------------------------------------------
// F2 (D3): a put whose commit failed (never acknowledged) sits in a
// generation newer than what a later delete's tombstone records as
// `hides_generation`. Compaction drops the tombstone; a later open shows the
// failed put's value: the deleted key is back.
// ---------------------------------------------------------------------------

#[test]
fn f2_a_deleted_key_stays_deleted_through_a_failed_put_and_a_dropped_tombstone() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let base = Options {
        column_len_target: 64 << 10,
        split_len_min: 64 << 10,
        segment_len_target: 1,
        ..common::options()
    };
    // Session 1: the value the delete removes.
    let store = common::create(layout.clone(), base.clone());
    store.put(b"key", &b"v1"[..]).unwrap();
    store.close().unwrap();
    drop(store);

    // Session 2 (strict): a put of the key fails (site 2's appends fail,
    // the strict policy refuses the degraded retry); its first attempt is
    // durable on sites 0 and 1.
    let strict = Options {
        write_policy: WritePolicy::Strict,
        ..base.clone()
    };
    let (faulty, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), strict, handles).unwrap();
    for n in &faulty[6..9] {
        n.fail_next_appends(1, libc::EIO);
    }
    let failed = store.put(b"key", common::value(7, 4 * (64 << 10)));
    eprintln!("failed put: {failed:?} {:?}", store.stats());
    assert!(failed.is_err(), "the put must fail for this scenario");
    for n in &faulty {
        n.heal();
    }
    store.repair(&Default::default()).unwrap();
    // Same generation as the failed attempt: a large live value.
    store.put(b"large", common::value(8, 1 << 20)).unwrap();
    // The acknowledged delete (hides_generation = v1's generation).
    assert!(store.delete(b"key").unwrap());
    store.close().unwrap();
    drop(store);
    drop(faulty);

    // Session 3, site 2 down (within the promise): the failed attempt has no
    // evidence against it and is visible, hidden by the tombstone.
    let store = Store::open_with_nodes(
        layout.clone(),
        base.clone(),
        local_except(&layout, &[6, 7, 8]),
    )
    .unwrap();
    eprintln!("session 3: {:?}", store.open_report());
    assert!(store.get(b"key").unwrap().is_none());
    store
        .put(b"newest", &b"keeps the last generation busy"[..])
        .unwrap();
    let report = store.compact(&CompactOptions::default()).unwrap();
    eprintln!("compaction: {report:?}");
    assert!(store.get(b"key").unwrap().is_none());
    store.close().unwrap();
    drop(store);

    // Session 4, every node.
    // (This open still applies the tombstone from the leftovers of its
    // retired generation on site 2, then removes those leftovers.)
    let store = Store::open(layout.clone(), base.clone()).unwrap();
    eprintln!(
        "session 4: {:?} key = {:?}",
        store.open_report(),
        store.get(b"key").unwrap().map(|b| b.len())
    );
    store.close().unwrap();
    drop(store);
    let store = Store::open(layout, base).unwrap();
    eprintln!("session 5: {:?}", store.open_report());
    let got = store.get(b"key").unwrap().map(|b| b.len());
    assert_eq!(
        got, None,
        "D3: the acknowledged delete of `key` was reverted (the failed put came back)"
    );
}

// ---------------------------------------------------------------------------
// F3 (D1): one node's copy of the last record of its segment rots while the
// store is closed. Recovery treats it as a torn write, the node counts as
// intact, the missing column is taken as evidence, and the acknowledged
// commit is discarded although 8 of 9 columns are intact.
// ---------------------------------------------------------------------------

#[test]
fn f3_rot_in_one_nodes_last_record_keeps_an_acknowledged_put() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    store.put(b"acked", common::value(3, 100_000)).unwrap();
    store.close().unwrap();
    drop(store);

    // Bit rot in the last byte of one node's newest segment.
    let segment = common::files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "segment"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    eprintln!("flipped the last bit of {}", segment.display());

    let store = Store::open(layout, common::options()).unwrap();
    eprintln!("{:?}", store.open_report());
    assert!(
        store.get(b"acked").unwrap().is_some(),
        "D1: an acknowledged put was discarded because one node's copy rotted"
    );
}

// ---------------------------------------------------------------------------
// F4 (D4): an open that fails to write its manifest to a quorum still
// leaves it on the nodes it reached. The next open (not seeing those nodes)
// reuses the same session number; a later open sees two different
// manifests with the same (session, version) and picks by node order.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct NoManifestWrites {
    inner: Arc<dyn Node>,
    fail: AtomicBool,
}

impl Node for NoManifestWrites {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn append(&self, g: u64, r: &[RecordRef<'_>]) -> geoshard::Result<Vec<RecordLocation>> {
        self.inner.append(g, r)
    }
    fn read(&self, g: u64, o: u64, l: u32) -> geoshard::Result<Bytes> {
        self.inner.read(g, o, l)
    }
    fn scan(&self, g: u64) -> geoshard::Result<Scan> {
        self.inner.scan(g)
    }
    fn generations(&self) -> geoshard::Result<Vec<u64>> {
        self.inner.generations()
    }
    fn remove_generation(&self, g: u64) -> geoshard::Result<()> {
        self.inner.remove_generation(g)
    }
    fn capacity(&self) -> geoshard::Result<Capacity> {
        self.inner.capacity()
    }
    fn read_manifest(&self) -> geoshard::Result<Option<Bytes>> {
        self.inner.read_manifest()
    }
    fn write_manifest(&self, m: &[u8]) -> geoshard::Result<()> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(Error::Unavailable {
                node: self.name().into(),
                reason: "injected manifest write failure".into(),
            });
        }
        self.inner.write_manifest(m)
    }
}

#[test]
fn f4_a_failed_opens_manifest_never_outranks_a_later_open() {
    let dir = common::fast_tempdir();
    let root = dir.path();
    let layout = common::layout_3x3(root);
    let store = common::create(layout.clone(), common::options());
    store.put(b"base", &b"acknowledged"[..]).unwrap();
    store.close().unwrap();
    drop(store);

    // A commit a crash cut short: it reached sites 0 and 1, not site 2.
    let site2 = common::site_dirs(&layout, geoshard::layout::SiteId(2));
    let saved = root.join("saved-site2");
    for (i, d) in site2.iter().enumerate() {
        common::copy_tree(d, &saved.join(i.to_string()));
    }
    let store = Store::open(layout.clone(), common::options()).unwrap();
    store.put(b"cut", &b"never acknowledged"[..]).unwrap();
    store.close().unwrap();
    drop(store);
    for (i, d) in site2.iter().enumerate() {
        std::fs::remove_dir_all(d).unwrap();
        common::copy_tree(&saved.join(i.to_string()), d);
    }

    // Open F: decides `cut` is discarded (site 2 is evidence), but its
    // manifest write reaches only site 2: not a quorum, F fails.
    let handles: Vec<Handle> = (0..9)
        .map(|i| {
            Ok(Arc::new(NoManifestWrites {
                inner: local(&layout, i).unwrap(),
                fail: AtomicBool::new(i < 6),
            }) as Arc<dyn Node>)
        })
        .collect();
    let f = Store::open_with_nodes(layout.clone(), common::options(), handles);
    assert!(f.is_err(), "F must fail: {:?}", f.as_ref().map(|_| ()));
    eprintln!("F: {:?}", f.err());

    // Open O', site 2 down: no evidence, `cut` is shown.
    let o1 = Store::open_with_nodes(
        layout.clone(),
        common::options(),
        local_except(&layout, &[6, 7, 8]),
    )
    .unwrap();
    let shown = o1.get(b"cut").unwrap().map(|b| b.to_bytes());
    eprintln!(
        "O' (session {}) shows cut = {shown:?}",
        o1.open_report().session
    );
    o1.close().unwrap();
    drop(o1);

    // Every node.
    let o2 = Store::open(layout.clone(), common::options()).unwrap();
    let later = o2.get(b"cut").unwrap().map(|b| b.to_bytes());
    eprintln!(
        "O'' (session {}) shows cut = {later:?}",
        o2.open_report().session
    );
    assert_eq!(
        later, shown,
        "D4: an open showed `cut`, a later open hides it"
    );
}

// ---------------------------------------------------------------------------
// F5 (D7 false alarm): every session that writes adds a discarded range
// (the tail of the session); ranges are pruned only when every node is
// present. With one node missing for a while the manifest reaches
// DISCARDED_RANGES_MAX and no open can record its manifest any more.
// ---------------------------------------------------------------------------

fn discarded_ranges(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let node = LocalNode::open("s0n0", dir, &LocalOptions::default()).unwrap();
    let bytes = node.read_manifest().unwrap().unwrap();
    Manifest::decode(&bytes).unwrap().discarded
}

#[test]
fn f5_a_node_missing_for_thousands_of_sessions_never_blocks_an_open() {
    let dir = common::fast_tempdir();
    let layout = local_3x1(dir.path());
    let a_dir = dir.path().join("site0").join("n0");
    let c_dir = dir.path().join("site2").join("n0");
    drop(common::create(layout.clone(), common::options()));
    // Node c is gone (a dead disk waiting for a replacement).
    std::fs::rename(&c_dir, dir.path().join("c-away")).unwrap();
    let mut counts = Vec::new();
    for i in 0..6u64 {
        let store = Store::open(layout.clone(), common::options()).unwrap();
        store.put(format!("k{i}").as_bytes(), &b"v"[..]).unwrap();
        store.close().unwrap();
        drop(store);
        counts.push(discarded_ranges(&a_dir).len());
    }
    eprintln!("discarded ranges after each session: {counts:?}");

    // Fast-forward: the manifest as it is after ~4090 more such sessions
    // (ranges of old sessions, one per session, as the loop above makes).
    let node = LocalNode::open("s0n0", &a_dir, &LocalOptions::default()).unwrap();
    let mut m = Manifest::decode(&node.read_manifest().unwrap().unwrap()).unwrap();
    let mut ranges = m.discarded.clone();
    // Ids of session 0 (no store ever writes there), one-id ranges with
    // gaps: as many as thousands of sessions' tails.
    let mut extra = Vec::new();
    let mut id = 2u64;
    while ranges.len() + extra.len() < geoshard::format::DISCARDED_RANGES_MAX {
        extra.push((id, id));
        id += 2;
    }
    extra.append(&mut ranges);
    extra.sort();
    m.discarded = extra;
    drop(node);
    for n in 0..2 {
        let d = dir.path().join(format!("site{n}")).join("n0");
        let node = LocalNode::open(format!("s{n}n0"), &d, &LocalOptions::default()).unwrap();
        let mut mm = m.clone();
        mm.node_name = format!("s{n}n0");
        node.write_manifest(&mm.encode().unwrap()).unwrap();
    }
    let next = Store::open(layout, common::options());
    assert!(
        next.is_ok(),
        "a store within the promise can no longer be opened: {:?}",
        next.err()
    );
}

// ---------------------------------------------------------------------------
// F6 (D4 / false alarm): a superseded object-store writer deletes the objects
// whose lease check failed. If the takeover open already scanned them (the
// check was slow), it showed the stripe; the deletion then makes the
// "decided visible" stripe undecodable for every later open.
// ---------------------------------------------------------------------------

#[test]
fn f6_a_superseded_writer_deletes_nothing_a_takeover_showed() {
    let dir = common::fast_tempdir();
    let layout = file_layout(dir.path());
    let options = object_nodes::options();
    drop(common::create(layout.clone(), options.clone()));
    let (faulty, handles) = object_nodes::faulty_nodes(&layout, &options).unwrap();
    let a = Store::open_with_nodes(layout.clone(), options.clone(), handles).unwrap();
    a.put(b"before", &b"x"[..]).unwrap();
    // A's lease checks are slow (past the request timeout).
    for f in &faulty {
        f.hang_reads("lease/", Duration::from_secs(3));
    }
    let shown = std::thread::scope(|s| {
        let writer = s.spawn(|| a.put(b"slow", common::value(1, 1000)));
        // A's objects are durable; A waits on its lease check.
        std::thread::sleep(Duration::from_millis(400));
        let b = Store::open(layout.clone(), options.clone()).unwrap();
        let shown = b.get(b"slow").unwrap().map(|b| b.len());
        eprintln!("B (takeover) shows slow = {shown:?}");
        let result = writer.join().unwrap();
        eprintln!("A's put: {result:?}");
        drop(b);
        shown
    });
    for f in &faulty {
        f.heal();
    }
    drop(a);
    let c = Store::open(layout.clone(), options.clone())
        .expect("open refuses a store whose nodes are all present");
    let later = c.get(b"slow").unwrap().map(|b| b.len());
    eprintln!("C shows slow = {later:?}");
    assert_eq!(
        later, shown,
        "D4: the takeover open showed `slow`, a later open does not"
    );
}

// ---------------------------------------------------------------------------
// F7 (D2): an acknowledged degraded stripe whose every column is on nodes
// missing at a later open is silently absent (the open succeeds and the key
// reads None), instead of a loud StripesUnrecoverable.
// ---------------------------------------------------------------------------

#[test]
fn f7_no_stripe_is_acknowledged_onto_one_site_alone() {
    let dir = common::fast_tempdir();
    let layout = local_3x1(dir.path());
    let store = common::create(layout.clone(), common::options());
    store.put(b"base", &b"x"[..]).unwrap();
    store.close().unwrap();
    drop(store);

    // Session 2: nodes a and b fail their appends; P is written degraded,
    // every column on c, and acknowledged.
    let (faulty, handles) = common::faulty_nodes(&layout);
    let store = Store::open_with_nodes(layout.clone(), common::options(), handles).unwrap();
    faulty[0].fail_next_appends(100, libc::EIO);
    faulty[1].fail_next_appends(100, libc::EIO);
    // With only c taking writes, a put cannot be acknowledged: c alone is
    // inside one failure set the promise allows to lose (and a writer cut
    // off with c could not be told from one that lost the lease elsewhere).
    let p = store.put(b"p", &b"would be degraded onto c alone"[..]);
    assert!(matches!(p, Err(Error::WriteRefused { .. })), "{p:?}");
    store.close().unwrap();
    drop(store);
    drop(faulty);
    let store = Store::open_with_nodes(
        layout.clone(),
        common::options(),
        local_except(&layout, &[2]),
    )
    .unwrap();
    assert!(store.get(b"base").unwrap().is_some());
}

// ---------------------------------------------------------------------------
// F8 (D7 false alarm): for a valid layout with more than 100,000 site
// combinations, `promise_room` never answers `Exceeded`, so no set of nodes
// is ever a manifest quorum: `Store::create` (and every open) fails, and
// `check_outage` could never refuse an outage.
// ---------------------------------------------------------------------------

#[test]
fn f8_a_layout_with_many_site_combinations_can_be_created() {
    let dir = common::fast_tempdir();
    let mut builder = Layout::builder().code(20, 10).sites_lost(5);
    for s in 0..30 {
        let path = dir.path().join(format!("s{s}"));
        builder = builder.site(format!("site{s}"), move |b| {
            b.node(format!("n{s}"), path.as_path())
        });
    }
    let layout = builder.build().expect("a valid layout");
    let all: Vec<geoshard::layout::NodeId> = (0..30u16).map(geoshard::layout::NodeId).collect();
    eprintln!("promise_room(all nodes) = {:?}", layout.promise_room(&all));
    let created = Store::create(layout, common::options());
    assert!(created.is_ok(), "create fails: {:?}", created.err());
}

// ---------------------------------------------------------------------------
// F9 (D8, D1): a salvage open that reaches one site writes its session to
// that site only. A later, ordinary open within the promise that does not
// see that site reuses the session number and writes stripes with the same
// ids. When every node is back, one of the two stripes is dropped as
// "inconsistent": an acknowledged put of the ordinary session vanishes.
// ---------------------------------------------------------------------------

#[test]
fn f9_a_salvage_open_without_a_quorum_writes_nothing() {
    let dir = common::fast_tempdir();
    let layout = local_3x1(dir.path());
    let store = common::create(layout.clone(), common::options());
    store.put(b"base", &b"x"[..]).unwrap();
    store.close().unwrap();
    drop(store);

    // Sites b and c are out (beyond the promise): salvage, write X.
    let salvage = Options {
        salvage: true,
        ..common::options()
    };
    let s =
        Store::open_with_nodes(layout.clone(), salvage, local_except(&layout, &[1, 2])).unwrap();
    eprintln!("salvage session {}", s.open_report().session);
    // Its manifest reached one site: the salvage store is read-only.
    let x = s.put(b"x", &b"written by the salvage session"[..]);
    assert!(matches!(x, Err(Error::WriteRefused { .. })), "{x:?}");
    s.close().unwrap();
    drop(s);

    // Site a is out, b and c are back: within the promise. Write Y.
    let o = Store::open_with_nodes(
        layout.clone(),
        common::options(),
        local_except(&layout, &[0]),
    )
    .unwrap();
    eprintln!("ordinary session {}", o.open_report().session);
    o.put(b"y", &b"acknowledged within the promise"[..])
        .unwrap();
    o.close().unwrap();
    drop(o);

    let all = Store::open(layout, common::options()).unwrap();
    eprintln!("{:?}", all.open_report());
    let y = all.get(b"y").unwrap().map(|b| b.to_bytes());
    let x = all.get(b"x").unwrap().map(|b| b.to_bytes());
    eprintln!("x = {x:?}, y = {y:?}");
    assert!(
        y.is_some(),
        "D1/D8: the acknowledged put y is gone (x = {x:?})"
    );
}

fn manifest_failing_handles(layout: &Layout, failing: impl Fn(usize) -> bool) -> Vec<Handle> {
    (0..layout.nodes().len())
        .map(|i| {
            Ok(Arc::new(NoManifestWrites {
                inner: local(layout, i).unwrap(),
                fail: AtomicBool::new(failing(i)),
            }) as Arc<dyn Node>)
        })
        .collect()
}

#[test]
fn f10_failed_opens_never_discard_a_later_acknowledged_put() {
    let dir = common::fast_tempdir();
    let layout = common::layout_3x3(dir.path());
    let store = common::create(layout.clone(), common::options());
    store.put(b"base", &b"x"[..]).unwrap();
    store.close().unwrap();
    drop(store);

    for attempt in 0..2 {
        let f = Store::open_with_nodes(
            layout.clone(),
            common::options(),
            manifest_failing_handles(&layout, |i| i < 6),
        );
        eprintln!("failed open {attempt}: {:?}", f.err());
    }

    // Site 2 is down; sites 0 and 1 work again.
    let o = Store::open_with_nodes(
        layout.clone(),
        common::options(),
        local_except(&layout, &[6, 7, 8]),
    )
    .unwrap();
    eprintln!("ordinary open: session {}", o.open_report().session);
    o.put(b"acked", &b"acknowledged within the promise"[..])
        .unwrap();
    o.close().unwrap();
    drop(o);

    let all = Store::open(layout, common::options()).unwrap();
    eprintln!("{:?}", all.open_report());
    assert!(
        all.get(b"acked").unwrap().is_some(),
        "D1: an acknowledged put was discarded by a failed open's manifest"
    );
}

// ---------------------------------------------------------------------------
// S16 (D5, found by the simulator's seed 22,912; DURABILITY.md, "Found by
// the simulator"): written while site 0 was out, a stripe handed two
// columns each to two nodes; a crash tore both nodes' appends, leaving on
// each more than one column record's worth of torn bytes but less than
// two. Weighed one missing record at a time against the torn tail, no
// record gave evidence, and open held the never-acknowledged stripe
// visible with 5 of 9 columns: it refused to open (`StripesUnrecoverable`)
// within the promise. The seed's history moved when checkpoints began to
// be written with a site down, so `common::torn` builds the case by hand
// (and `tests/sim_mutations.rs` checks that it finds the mutation).
// ---------------------------------------------------------------------------

#[test]
fn s16_two_records_torn_off_one_node_are_evidence_against_their_commit() {
    let dir = common::fast_tempdir();
    let case = common::torn::two_records_torn_off_two_nodes(dir.path());
    // The crash cut the commit short: it was never acknowledged, and the
    // torn tails (two records missing, less than two records of tail)
    // are evidence of that. Open discards it and opens.
    let store = Store::open(case.layout, case.options).expect("open within the promise");
    assert!(store.get(b"before").unwrap().is_some());
    assert!(store.get(b"during").unwrap().is_some());
    let kept = case
        .torn
        .iter()
        .filter(|key| store.get(key.as_bytes()).unwrap().is_some())
        .count();
    assert!(kept < case.torn.len(), "the torn commit's blobs are gone");
    assert!(
        store.open_report().stripes_discarded >= 1,
        "{:?}",
        store.open_report()
    );
}
