//! Unit tests of the local node: both engines through the conformance
//! suite, injected write and sync failures, many-buffer batches, remapping.

use super::*;
use crate::node::conformance::{run, sample_header, sample_payload};
use crate::node::{NodeExt, RecordRef};

fn engines() -> Vec<IoEngineKind> {
    vec![IoEngineKind::Uring, IoEngineKind::Pwrite]
}

fn open(dir: &Path, engine: IoEngineKind) -> LocalNode {
    LocalNode::open("site-a/n1", dir, &LocalOptions::with_io_engine(engine)).unwrap_or_else(|e| {
        panic!("opening with {engine:?} failed: {e}; io_uring must be available to the tests")
    })
}

fn append_one(
    node: &LocalNode,
    generation: u64,
    stripe_id: u64,
    len: usize,
) -> (RecordLocation, Vec<u8>) {
    let payload = sample_payload(stripe_id, len);
    let header = sample_header(stripe_id, generation, 0, &payload);
    let locations = node
        .append(
            generation,
            &[RecordRef {
                header: &header,
                payload: &payload,
            }],
        )
        .expect("append");
    (locations[0], payload)
}

#[test]
fn conformance_with_each_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node");
        run(|| LocalNode::open("site-a/n1", &path, &LocalOptions::with_io_engine(engine)));
    }
}

#[test]
fn engines_are_what_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    for engine in engines() {
        assert_eq!(open(dir.path(), engine).io_engine(), engine);
    }
    let auto = open(dir.path(), IoEngineKind::Auto);
    assert_ne!(auto.io_engine(), IoEngineKind::Auto);
}

#[test]
fn a_second_owner_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), IoEngineKind::Pwrite);
    match LocalNode::open("other", dir.path(), &LocalOptions::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    open(dir.path(), IoEngineKind::Pwrite);
    assert!(LocalNode::open("", dir.path(), &LocalOptions::default()).is_err());
}

#[test]
fn a_failed_write_is_cleaned_up_and_the_node_goes_on() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), engine);
        let (first, first_payload) = append_one(&node, 1, 1, 5000);
        node.inject_fault(InjectedFault::WriteError {
            written: 3000,
            errno: libc::ENOSPC,
        });
        let payload = sample_payload(2, 5000);
        let header = sample_header(2, 1, 0, &payload);
        match node.append(
            1,
            &[RecordRef {
                header: &header,
                payload: &payload,
            }],
        ) {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ENOSPC)),
            other => panic!("expected an ENOSPC Io error, got {other:?}"),
        }
        assert!(
            !node.is_fenced(),
            "a cleaned-up write failure does not fence"
        );
        assert_eq!(
            &node.read(1, first.offset, first.len).unwrap()[..],
            &first_payload[..]
        );
        let file_len = std::fs::metadata(dir.path().join(segment::file_name(1)))
            .unwrap()
            .len();
        assert_eq!(
            file_len,
            first.offset + u64::from(first.len),
            "partial batch cut off"
        );
        let (third, third_payload) = append_one(&node, 1, 3, 100);
        let third_header_len = sample_header(3, 1, 0, &third_payload).encoded_len() as u64;
        assert_eq!(
            third.offset,
            file_len + third_header_len,
            "next append starts at the cut"
        );
        drop(node);
        let node = open(dir.path(), engine);
        let scan = node.scan(1).unwrap();
        let ids: Vec<u64> = scan.records.iter().map(|r| r.header.stripe_id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(scan.truncated_tail_bytes, 0);
    }
}

#[test]
fn a_failed_sync_fences_the_node_until_reopened() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), engine);
        let (first, first_payload) = append_one(&node, 4, 1, 2000);
        node.inject_fault(InjectedFault::SyncError { written: 1500 });
        let payload = sample_payload(2, 2000);
        let header = sample_header(2, 4, 0, &payload);
        let batch = [RecordRef {
            header: &header,
            payload: &payload,
        }];
        assert!(matches!(node.append(4, &batch), Err(Error::Io { .. })));
        assert!(node.is_fenced());
        assert!(matches!(
            node.append(4, &batch),
            Err(Error::NodeFenced { .. })
        ));
        assert!(matches!(
            node.append(5, &batch),
            Err(Error::NodeFenced { .. })
        ));
        assert!(matches!(
            node.remove_generation(4),
            Err(Error::NodeFenced { .. })
        ));
        // Durable records stay readable on the fenced node.
        assert_eq!(
            &node.read(4, first.offset, first.len).unwrap()[..],
            &first_payload[..]
        );
        drop(node);
        let node = open(dir.path(), engine);
        assert!(!node.is_fenced());
        let scan = node.scan(4).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(
            scan.truncated_tail_bytes, 1500,
            "the partial tail is cut on open"
        );
        assert!(scan.corrupt.is_empty());
        node.append(4, &batch)
            .expect("writes resume after a reopen");
    }
}

#[test]
fn batches_larger_than_one_submission() {
    // 33,000 records = 66,000 buffers: more than one vectored write
    // (1,024 buffers) per ring entry and more than one ring's worth.
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), engine);
        let payloads: Vec<Vec<u8>> = (0..33_000u64)
            .map(|i| vec![i as u8; 1 + (i % 3) as usize])
            .collect();
        let headers: Vec<_> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| sample_header(i as u64, 2, 0, p))
            .collect();
        let records: Vec<RecordRef<'_>> = headers
            .iter()
            .zip(&payloads)
            .map(|(header, payload)| RecordRef { header, payload })
            .collect();
        let locations = node.append(2, &records).unwrap();
        for (index, location) in locations.iter().enumerate().step_by(997) {
            assert_eq!(
                &node.read(2, location.offset, location.len).unwrap()[..],
                &payloads[index][..]
            );
        }
        drop(node);
        let node = open(dir.path(), engine);
        let scan = node.scan(2).unwrap();
        assert_eq!(scan.records.len(), payloads.len());
        assert_eq!(
            scan.records.last().map(|r| r.location),
            locations.last().copied()
        );
    }
}

#[test]
fn growth_remaps_without_invalidating_earlier_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), IoEngineKind::Pwrite);
    let mut held = Vec::new();
    for stripe_id in 0..20u64 {
        let (location, payload) = append_one(&node, 0, stripe_id, 70_000);
        let bytes = node.read(0, location.offset, location.len).unwrap();
        assert_eq!(&bytes[..], &payload[..]);
        held.push((bytes, payload));
    }
    for (bytes, payload) in &held {
        assert_eq!(&bytes[..], &payload[..]);
    }
}

#[test]
fn scan_reports_damage_after_open_as_corrupt_not_truncated() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), IoEngineKind::Pwrite);
    let (first, _) = append_one(&node, 0, 1, 1000);
    append_one(&node, 0, 2, 1000);
    let (third, _) = append_one(&node, 0, 3, 1000);
    // Rot one byte of the first and last payloads behind the node's back.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(segment::file_name(0)))
        .unwrap();
    file.write_at(&[0xEE], first.offset + 5).unwrap();
    file.write_at(&[0xEE], third.offset + 5).unwrap();
    let scan = node.scan(0).unwrap();
    let ids: Vec<u64> = scan.records.iter().map(|r| r.header.stripe_id).collect();
    assert_eq!(ids, [2]);
    assert_eq!(
        scan.corrupt.len(),
        2,
        "middle damage and a damaged tail: {:?}",
        scan.corrupt
    );
    assert_eq!(
        scan.corrupt[1].offset + scan.corrupt[1].len,
        third.offset + u64::from(third.len)
    );
    assert_eq!(scan.truncated_tail_bytes, 0);
    assert!(node.read_checked(0, first.offset, first.len, 0).is_err());
}
