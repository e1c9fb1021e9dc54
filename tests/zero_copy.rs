//! Zero copy: a read returns a slice that points into the segment's memory
//! mapping, and such bytes outlive a generation rotation, the removal of
//! their generation and the node itself.

use geoshard::format::ColumnHeader;
use geoshard::node::{LocalNode, LocalOptions, Node, RecordLocation, RecordRef};

fn append(node: &LocalNode, generation: u64, payload: &[u8]) -> RecordLocation {
    let header = ColumnHeader {
        stripe_id: generation,
        generation,
        data_count: 1,
        parity_count: 0,
        column_index: 0,
        column_lens: vec![payload.len() as u32],
        column_checksums: vec![crc32fast::hash(payload)],
        placement: vec!["n1".into()],
        entry_table_lens: vec![0],
        commit: geoshard::format::CommitStamp::default(),
        handoffs: Vec::new(),
    };
    node.append(
        generation,
        &[RecordRef {
            header: &header,
            payload,
        }],
    )
    .unwrap()[0]
}

/// A node in `dir` holding one record of 1 MiB of `byte` in generation 1.
fn node_with_mib_of(dir: &std::path::Path, byte: u8) -> (LocalNode, Vec<u8>, RecordLocation) {
    let node = LocalNode::open("n1", dir, &LocalOptions::default()).unwrap();
    let payload = vec![byte; 1 << 20];
    let location = append(&node, 1, &payload);
    (node, payload, location)
}

/// The mapped file backing `address`, from /proc/self/maps.
fn mapping_of(address: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (low, high) = fields.next()?.split_once('-')?;
        let (low, high) = (
            usize::from_str_radix(low, 16).ok()?,
            usize::from_str_radix(high, 16).ok()?,
        );
        let path = fields.nth(4).unwrap_or("").to_string();
        (low <= address && address < high).then_some(path)
    })
}

#[test]
fn reads_are_slices_of_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::open("n1", dir.path(), &LocalOptions::default()).unwrap();
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7) as u8).collect();
    let location = append(&node, 1, &payload);
    let whole = node.read(1, location.offset, location.len).unwrap();
    let again = node.read(1, location.offset, location.len).unwrap();
    let part = node.read(1, location.offset + 4096, 4096).unwrap();
    let next = node.read(1, location.offset + 8192, 4096).unwrap();
    assert_eq!(&whole[..], &payload[..]);
    assert_eq!(&part[..], &payload[4096..8192]);
    assert_eq!(&next[..], &payload[8192..12288]);
    assert_eq!(
        whole.as_ptr(),
        again.as_ptr(),
        "two reads share the same memory"
    );
    assert_eq!(
        next.as_ptr(),
        part.as_ptr().wrapping_add(4096),
        "small reads are slices of one mapping"
    );
    let segment = dir.path().join("0000000000000001.segment");
    let segment = segment.to_str().unwrap();
    for bytes in [&whole, &part] {
        let first = bytes.as_ptr() as usize;
        let last = first + bytes.len() - 1;
        assert_eq!(
            mapping_of(first).as_deref(),
            Some(segment),
            "first byte is in the segment's map"
        );
        assert_eq!(
            mapping_of(last).as_deref(),
            Some(segment),
            "last byte is in the segment's map"
        );
    }
}

#[test]
fn bytes_outlive_rotation_removal_and_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = LocalNode::open("n1", dir.path(), &LocalOptions::default()).unwrap();
    let old_payload = vec![0xA5u8; 100_000];
    let old = append(&node, 1, &old_payload);
    let held = node.read(1, old.offset, old.len).unwrap();
    // Rotation: the store moves on to generation 2 and compacts 1 away.
    let new_payload = vec![0x5Au8; 200_000];
    let new = append(&node, 2, &new_payload);
    node.remove_generation(1).unwrap();
    assert!(!dir.path().join("0000000000000001.segment").exists());
    assert!(node.read(1, old.offset, old.len).is_err());
    let held_new = node.read(2, new.offset, new.len).unwrap();
    drop(node);
    assert_eq!(&held[..], &old_payload[..]);
    assert_eq!(&held_new[..], &new_payload[..]);
}

/// The `VmFlags` of the mapping holding `address`, from /proc/self/smaps.
fn vm_flags_of(address: usize) -> Option<Vec<String>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((low, high)) = range.split_once('-')
            && let (Ok(low), Ok(high)) = (
                usize::from_str_radix(low, 16),
                usize::from_str_radix(high, 16),
            )
        {
            inside = low <= address && address < high;
        } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
            return Some(flags.split_whitespace().map(str::to_string).collect());
        }
    }
    None
}

/// A get's read of a small blob (`read_point`) comes from a mapping
/// advised random access (a cold page read alone, not the device's whole
/// readahead around it); other reads, and point reads of large blobs, from
/// a mapping with the default readahead (docs/PERFORMANCE.md, "Open at
/// 10^8 blobs").
#[test]
fn small_point_reads_are_from_a_mapping_advised_random_access() {
    let dir = tempfile::tempdir().unwrap();
    let (node, payload, location) = node_with_mib_of(dir.path(), 3);
    let small = node.read_point(1, location.offset, 100).unwrap();
    let scanned = node.read(1, location.offset, 100).unwrap();
    let large = node.read_point(1, location.offset, location.len).unwrap();
    assert_eq!(&small[..], &payload[..100]);
    assert_eq!(&scanned[..], &payload[..100]);
    let random = |bytes: &bytes::Bytes| {
        vm_flags_of(bytes.as_ptr() as usize)
            .expect("the read's mapping in /proc/self/smaps")
            .iter()
            .any(|f| f == "rr")
    };
    assert!(
        random(&small),
        "small read: {:?}",
        vm_flags_of(small.as_ptr() as usize)
    );
    assert!(
        !random(&scanned),
        "read: {:?}",
        vm_flags_of(scanned.as_ptr() as usize)
    );
    assert!(
        !random(&large),
        "large read: {:?}",
        vm_flags_of(large.as_ptr() as usize)
    );
}

/// `prefetch_point` hints only a small range some page of which is not in
/// memory: a range just read, one out of bounds, one of a generation the
/// node does not have and a large one are not hinted (the hint's other
/// side, a cold range, is measured in docs/PERFORMANCE.md, "Cold degraded
/// gets": it needs the page cache dropped).
#[test]
fn prefetch_point_hints_only_small_ranges_not_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (node, payload, location) = node_with_mib_of(dir.path(), 5);
    let read = node.read_point(1, location.offset + 4096, 100).unwrap();
    assert_eq!(read.iter().map(|&b| u64::from(b)).sum::<u64>(), 500);
    assert!(!node.prefetch_point(1, location.offset + 4096, 100));
    assert!(!node.prefetch_point(1, location.offset + u64::from(location.len), 100));
    assert!(!node.prefetch_point(1, u64::MAX - 10, 100));
    assert!(!node.prefetch_point(2, location.offset, 100));
    assert!(!node.prefetch_point(1, location.offset, 1 << 16));
    // Hinted or not, the read that follows returns the bytes.
    let _ = node.prefetch_point(1, location.offset + 300_000, 1000);
    assert_eq!(
        &node.read_point(1, location.offset + 300_000, 1000).unwrap()[..],
        &payload[300_000..301_000]
    );
}

// ---- the store's gets: slices of their segment's view ----

mod common;

use geoshard::Store;
use geoshard::testing::segment_views;

/// `n` keys `prefix/i` with distinct 1 KiB values, put one at a time.
fn put_kib(store: &Store, prefix: &str, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = format!("{prefix}/{i}").into_bytes();
            let value: Vec<u8> = (0..1024).map(|b| (b * 7 + i * 13) as u8).collect();
            store.put(&key, value.clone()).unwrap();
            (key, value)
        })
        .collect()
}

/// Reads every key back: each value right, and (whole small blobs on
/// local nodes) a slice of a segment file's mapping.
fn read_back(store: &Store, model: &[(Vec<u8>, Vec<u8>)]) {
    for (key, value) in model {
        let blob = store.get(key).unwrap().expect("present");
        let chunks = blob.chunks();
        assert_eq!(chunks.len(), 1);
        assert_eq!(&chunks[0][..], &value[..]);
        let file = mapping_of(chunks[0].as_ptr() as usize).unwrap_or_default();
        assert!(file.ends_with(".segment"), "mapped from {file:?}");
    }
}

/// A healthy get of a small blob slices the view of its segment, set by
/// the first get that read the segment; a put that lands past a view
/// makes it anew (and gets of the new blobs set it again, longer);
/// retiring a generation (compaction) drops its views; closing the store
/// lets every mapping go.
#[test]
fn healthy_gets_slice_their_segments_views() {
    let dir = tempfile::tempdir().unwrap();
    let options = geoshard::Options {
        segment_len_target: 16 << 10,
        ..common::options()
    };
    let store = Store::create(common::layout_3x3(dir.path()), options).unwrap();
    let first = put_kib(&store, "a", 60);
    let views = segment_views(&store);
    assert!(!views.is_empty());
    assert!(views.iter().all(|v| v.2.is_none()), "no get yet: {views:?}");
    read_back(&store, &first);
    let read = segment_views(&store);
    assert!(read.iter().any(|v| v.2.is_some()), "{read:?}");

    let second = put_kib(&store, "b", 60);
    let grown = segment_views(&store);
    assert!(
        grown.iter().any(|v| v.2.is_none()
            && read
                .iter()
                .any(|r| (&r.0, r.1) == (&v.0, v.1) && r.2.is_some())),
        "a view set before the new puts landed past it is unset: {read:?} -> {grown:?}"
    );
    read_back(&store, &first);
    read_back(&store, &second);
    let again = segment_views(&store);
    for (node, generation, mapped) in &again {
        if let Some((_, _, Some(before))) = read.iter().find(|r| (&r.0, r.1) == (node, *generation))
        {
            assert!(mapped.is_none_or(|m| m >= *before), "{read:?} -> {again:?}");
        }
    }

    // Most of the first blobs deleted: compaction rewrites the rest and
    // removes their generations, and the views of those go with them.
    for (key, _) in &first[..50] {
        assert!(store.delete(key).unwrap());
    }
    store.flush().unwrap();
    let report = store.compact(&geoshard::CompactOptions::default()).unwrap();
    assert!(!report.generations_compacted.is_empty(), "{report:?}");
    let compacted = segment_views(&store);
    for generation in &report.generations_compacted {
        assert!(
            compacted.iter().all(|v| v.1 != *generation),
            "generation {generation} removed: {compacted:?}"
        );
    }
    read_back(&store, &first[50..]);
    read_back(&store, &second);
    for (key, _) in &first[..50] {
        assert!(store.get(key).unwrap().is_none());
    }

    store.close().unwrap();
    let closed = segment_views(&store);
    assert!(closed.iter().all(|v| v.2.is_none()), "{closed:?}");
}
