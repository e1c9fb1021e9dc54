//! The case of the simulator's finding S16 (docs/DURABILITY.md, "Found by
//! the simulator"), built by hand: a commit written while site 0 was out,
//! two of whose columns each went to two nodes, cut short by a crash that
//! tore both nodes' appends.

use std::collections::BTreeMap;
use std::path::Path;

use geoshard::layout::{Layout, Location, SiteId};
use geoshard::node::{LocalNode, LocalOptions, Node, ScannedRecord};
use geoshard::{Options, Store};

/// A store ready to open after the crash.
pub struct TornCase {
    pub layout: Layout,
    pub options: Options,
    /// The keys of the torn commit (put before the crash, never
    /// acknowledged in the case's story); `before` and `during` were.
    pub torn: Vec<String>,
}

/// The 3x3 RS(6,3) store under `root`: `before` put healthy; site 0
/// burned; `during`, then a commit of 60 blobs (bytes in every column,
/// three columns handed to nodes of sites 1 and 2). Then, as a crash
/// would: on two nodes holding two columns of that commit, the append kept
/// one record and a half with its first record's last byte not among them,
/// a torn tail longer than one column record and shorter than two. 5 of
/// its 9 columns are left.
pub fn two_records_torn_off_two_nodes(root: &Path) -> TornCase {
    let layout = super::layout_3x3(root);
    let options = Options {
        checkpoints: false,
        ..super::options()
    };
    let store = super::create(layout.clone(), options.clone());
    store.put(b"before", super::value(1, 30_000)).unwrap();
    store.close().unwrap();
    drop(store);
    super::burn_site(&layout, SiteId(0));
    let store = Store::open(layout.clone(), options.clone()).unwrap();
    store.put(b"during", super::value(2, 30_000)).unwrap();
    // Blobs enough for every data column: a commit of 60, in flight at once.
    let torn: Vec<String> = (0..60).map(|i| format!("torn/{i}")).collect();
    let completions: Vec<_> = torn
        .iter()
        .enumerate()
        .map(|(i, key)| store.put_async(key.as_bytes(), super::value(10 + i as u64, 5_000)))
        .collect();
    for answer in super::poll::run_all(completions).0 {
        answer.expect("put");
    }
    store.close().unwrap();
    drop(store);

    // The last commit's records: the newest stripe id on every node left.
    let mut records: Vec<(usize, ScannedRecord)> = Vec::new();
    for (i, spec) in layout.nodes().iter().enumerate() {
        let Location::Dir(dir) = &spec.location else {
            continue;
        };
        let Ok(node) = LocalNode::open(spec.name.clone(), dir, &LocalOptions::default()) else {
            continue;
        };
        for g in node.generations().unwrap() {
            records.extend(node.scan(g).unwrap().records.into_iter().map(|r| (i, r)));
        }
    }
    let last = records
        .iter()
        .map(|(_, r)| r.header.stripe_id)
        .max()
        .unwrap();
    assert!(
        records
            .iter()
            .find(|(_, r)| r.header.stripe_id == last)
            .is_some_and(|(_, r)| r.header.column_lens.iter().all(|&l| l > 0)),
        "the last commit has bytes in every column"
    );
    let mut by_node: BTreeMap<usize, Vec<ScannedRecord>> = BTreeMap::new();
    for (i, record) in records
        .into_iter()
        .filter(|(_, r)| r.header.stripe_id == last)
    {
        by_node.entry(i).or_default().push(record);
    }
    let doubled: Vec<usize> = by_node
        .iter()
        .filter(|(_, held)| held.len() == 2)
        .map(|(&i, _)| i)
        .collect();
    assert!(
        doubled.len() >= 2,
        "the handoffs put two columns on at least two nodes: {:?}",
        by_node
            .iter()
            .map(|(i, h)| (*i, h.len()))
            .collect::<Vec<_>>()
    );
    let start = |r: &ScannedRecord| r.location.offset - r.header.encoded_len() as u64;
    for &i in &doubled[..2] {
        let held = &by_node[&i];
        let first = held.iter().min_by_key(|r| r.location.offset).unwrap();
        let second = held.iter().max_by_key(|r| r.location.offset).unwrap();
        let first_end = first.location.offset + u64::from(first.location.len);
        assert_eq!(start(second), first_end, "one append, back to back");
        let end = second.location.offset + u64::from(second.location.len);
        let Location::Dir(node_dir) = &layout.nodes()[i].location else {
            unreachable!("local nodes")
        };
        let path = node_dir.join(format!("{:016x}.segment", first.location.generation));
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            end,
            "the commit's records end the segment"
        );
        bytes[first_end as usize - 1] ^= 0xff;
        bytes.truncate((first_end + (end - first_end) / 2) as usize);
        let tail = bytes.len() as u64 - start(first);
        assert!(tail > first_end - start(first) && tail < end - start(first));
        std::fs::write(&path, &bytes).unwrap();
    }
    TornCase {
        layout,
        options,
        torn,
    }
}
