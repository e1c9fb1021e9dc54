//! Unit tests of the local node: both engines through the conformance
//! suite, injected write and sync failures, many-buffer batches, remapping,
//! and files changed behind the node's back (truncated segments, a deleted
//! node directory).

use super::*;
use crate::node::conformance::{run, sample_header, sample_payload};
use crate::node::{NodeExt, RecordRef};
use crate::testing::{FailingWrites, WriteFault};

/// A node with `engine` whose writes fail on demand.
fn open_failing(dir: &Path, engine: IoEngineKind) -> (LocalNode, Arc<FailingWrites>) {
    FailingWrites::open("site-a/n1", dir, &LocalOptions::with_io_engine(engine))
        .unwrap_or_else(|e| panic!("opening with {engine:?} failed: {e}"))
}

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
        let (node, writes) = open_failing(dir.path(), engine);
        assert_eq!(node.io_engine(), engine);
        assert!(
            !node.joins_shared_submission(),
            "every append meets the switch"
        );
        let (first, first_payload) = append_one(&node, 1, 1, 5000);
        writes.fail_next(WriteFault::Write {
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
        let (node, writes) = open_failing(dir.path(), engine);
        let (first, first_payload) = append_one(&node, 4, 1, 2000);
        writes.fail_next(WriteFault::Sync { written: 1500 });
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
            "the partial tail is found on open"
        );
        assert!(scan.corrupt.is_empty());
        // The tail stays on disk: an open that crashes after recovery must
        // not leave the next open seeing no tail at all (the evidence rule
        // would take a record-sized cut for a column never written).
        drop(node);
        let node = open(dir.path(), engine);
        let scan = node.scan(4).unwrap();
        assert_eq!(
            (scan.records.len(), scan.truncated_tail_bytes),
            (1, 1500),
            "a second open reports the same tail"
        );
        let written = node
            .append(4, &batch)
            .expect("writes resume after a reopen");
        // Appends go after the tail, which is zeroed, never written over.
        assert_eq!(
            written[0].offset,
            first.offset + u64::from(first.len) + 1500 + header.encoded_len() as u64
        );
        assert_eq!(
            &node.read(4, written[0].offset, written[0].len).unwrap()[..],
            &payload[..]
        );
        drop(node);
        let node = open(dir.path(), engine);
        let scan = node.scan(4).unwrap();
        assert_eq!(
            scan.records.len(),
            2,
            "both records found after the old tail"
        );
        assert_eq!(
            scan.corrupt.iter().map(|c| c.len).collect::<Vec<_>>(),
            vec![1500],
            "the old tail is damage now: still no evidence for what it held"
        );
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

#[test]
fn append_all_shares_one_submission_and_keeps_results_apart() {
    use crate::node::{FaultyNode, append_all};
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let uring: Vec<LocalNode> = dirs[..3]
        .iter()
        .map(|d| open(d.path(), IoEngineKind::Uring))
        .collect();
    assert!(uring[0].joins_shared_submission());
    let pwrite = open(dirs[3].path(), IoEngineKind::Pwrite);
    assert!(!pwrite.joins_shared_submission());
    let faulty = FaultyNode::new(open(dirs[4].path(), IoEngineKind::Uring));
    // A wrapper with no fault set joins the shared submission like its
    // inner node; once it injects one, its appends go through it.
    assert!(faulty.shared_submission().is_some());
    faulty.fail_next_appends(1, libc::EIO);
    assert!(faulty.shared_submission().is_none());

    let payloads: Vec<Vec<u8>> = (0..7u64)
        .map(|i| sample_payload(i, 3000 + i as usize * 1000))
        .collect();
    let generations = [1u64, 1, 1, 2, 1, 1, 1];
    let mut headers: Vec<_> = payloads
        .iter()
        .zip(generations)
        .enumerate()
        .map(|(i, (p, g))| sample_header(i as u64, g, 0, p))
        .collect();
    headers[2].generation = 9; // refused: does not match its batch
    let batches_records: Vec<[RecordRef<'_>; 1]> = headers
        .iter()
        .zip(&payloads)
        .map(|(header, payload)| [RecordRef { header, payload }])
        .collect();
    let targets: [&dyn Node; 7] = [
        &uring[0], &uring[1], &uring[2], &uring[0], &uring[0], &pwrite, &faulty,
    ];
    let batches: Vec<crate::node::AppendBatch<'_>> = targets
        .iter()
        .zip(generations)
        .zip(&batches_records)
        .map(|((node, generation), records)| (*node, generation, &records[..]))
        .collect();
    let results = append_all(&batches);
    assert_eq!(results.len(), 7);
    for (index, result) in results.iter().enumerate() {
        match (index, result) {
            (2, Err(Error::InvalidArgument { .. })) => {}
            (6, Err(Error::Io { source, .. })) => {
                assert_eq!(source.raw_os_error(), Some(libc::EIO))
            }
            (2 | 6, other) => panic!("batch {index}: unexpected {other:?}"),
            (_, Ok(locations)) => {
                let location = locations[0];
                let bytes = targets[index]
                    .read(location.generation, location.offset, location.len)
                    .unwrap();
                assert_eq!(&bytes[..], &payloads[index][..], "batch {index}");
            }
            (_, Err(error)) => panic!("batch {index} failed: {error}"),
        }
    }
    // Node 0 got two batches in generation 1 (one shared, one threaded).
    assert_eq!(uring[0].scan(1).unwrap().records.len(), 2);
    assert_eq!(uring[0].generations().unwrap(), vec![1, 2]);
    assert!(uring[2].generations().unwrap().is_empty());
}

#[test]
fn concurrent_append_all_calls_in_opposite_orders_do_not_deadlock() {
    use crate::node::append_all;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<LocalNode> = dirs
        .iter()
        .map(|d| open(d.path(), IoEngineKind::Uring))
        .collect();
    std::thread::scope(|scope| {
        for reverse in [false, true] {
            let nodes = &nodes;
            scope.spawn(move || {
                let payload = sample_payload(reverse as u64, 512);
                let header = sample_header(1, 0, 0, &payload);
                let records = [RecordRef {
                    header: &header,
                    payload: &payload,
                }];
                for _ in 0..30 {
                    let mut batches: Vec<crate::node::AppendBatch<'_>> = nodes
                        .iter()
                        .map(|node| (node as &dyn Node, 0, &records[..]))
                        .collect();
                    if reverse {
                        batches.reverse();
                    }
                    for result in append_all(&batches) {
                        result.unwrap();
                    }
                }
            });
        }
    });
    for node in &nodes {
        assert_eq!(node.scan(0).unwrap().records.len(), 60);
    }
}

#[test]
fn shared_submission_split_over_several_rounds() {
    // 5 nodes x 33,000 records: 66 ring entries per batch, 330 in all, more
    // than the shared ring holds, so batches are split across rounds.
    use crate::node::append_all;
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<LocalNode> = dirs
        .iter()
        .map(|d| open(d.path(), IoEngineKind::Uring))
        .collect();
    let payloads: Vec<Vec<u8>> = (0..33_000u64)
        .map(|i| vec![i as u8; 1 + (i % 2) as usize])
        .collect();
    let headers: Vec<_> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| sample_header(i as u64, 0, 0, p))
        .collect();
    let records: Vec<RecordRef<'_>> = headers
        .iter()
        .zip(&payloads)
        .map(|(header, payload)| RecordRef { header, payload })
        .collect();
    let batches: Vec<crate::node::AppendBatch<'_>> = nodes
        .iter()
        .map(|node| (node as &dyn Node, 0, &records[..]))
        .collect();
    for (node, result) in nodes.iter().zip(append_all(&batches)) {
        let locations = result.unwrap();
        for (index, location) in locations.iter().enumerate().step_by(1999) {
            assert_eq!(
                &node.read(0, location.offset, location.len).unwrap()[..],
                &payloads[index][..]
            );
        }
    }
    drop(nodes);
    for dir in &dirs {
        let node = open(dir.path(), IoEngineKind::Pwrite);
        assert_eq!(node.scan(0).unwrap().records.len(), payloads.len());
    }
}

#[test]
fn auto_falls_back_to_pwrite_when_io_uring_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // As a kernel without io_uring (or a seccomp filter) answers.
    let refuse = || Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
    let open_refused = |dir: &Path, kind: IoEngineKind| {
        LocalNode::open_with_engine("n".into(), dir, |name| {
            io::Engine::open_with(kind, refuse).map_err(|e| engine_error(kind, name, e))
        })
    };
    let auto = open_refused(dir.path(), IoEngineKind::Auto);
    let forced = {
        let other = tempfile::tempdir().unwrap();
        open_refused(other.path(), IoEngineKind::Uring).map(drop)
    };
    let auto = auto.unwrap();
    assert_eq!(auto.io_engine(), IoEngineKind::Pwrite, "Auto falls back");
    assert!(!auto.joins_shared_submission());
    match forced {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ENOSYS)),
        other => panic!("forcing io_uring must fail when it is refused, got {other:?}"),
    }
    append_one(&auto, 0, 1, 100);
    assert_eq!(auto.scan(0).unwrap().records.len(), 1);
}

fn segment_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(segment::file_name(generation))
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Review item 11: a load from a mapped page past the end of a truncated
/// segment raised SIGBUS and killed the process. Now the page reads as
/// zeros (its checksum fails) and the process goes on.
#[test]
fn a_segment_truncated_under_an_open_node_reads_as_zeros() {
    for cut_to_half in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), IoEngineKind::Pwrite);
        let records: Vec<(RecordLocation, Vec<u8>)> = (0..8)
            .map(|stripe_id| append_one(&node, 0, stripe_id, 16 << 10))
            .collect();
        // Map the whole durable prefix, and keep one record's bytes.
        for (location, payload) in &records {
            let bytes = node.read(0, location.offset, location.len).unwrap();
            assert_eq!(&bytes[..], &payload[..]);
        }
        let (last, last_payload) = &records[7];
        let held = node.read(0, last.offset, last.len).unwrap();
        let durable_len = last.offset + u64::from(last.len);
        let new_len = if cut_to_half { durable_len / 2 } else { 0 };
        truncate(&segment_path(dir.path(), 0), new_len);
        let replaced_before = map::sigbus_pages_replaced();
        for (location, payload) in &records {
            let checksum = crc32fast::hash(payload);
            let result = node.read_checked(0, location.offset, location.len, checksum);
            if location.offset + u64::from(location.len) <= new_len {
                assert_eq!(&result.unwrap()[..], &payload[..]);
            } else {
                match result {
                    Err(Error::ChecksumMismatch { .. }) => {}
                    other => panic!("a truncated record read {other:?}"),
                }
            }
        }
        // Bytes handed out before the truncation read as zeros past the cut.
        assert!(held.iter().all(|&b| b == 0));
        assert_ne!(&held[..], &last_payload[..]);
        assert!(
            map::sigbus_pages_replaced() > replaced_before,
            "no page was replaced (cut to {new_len})"
        );
        drop(held);
        drop(node);
    }
}

/// A mapping is never made past the real end of a shortened file: a read
/// that needs a new mapping there fails instead of faulting.
#[test]
fn a_read_past_the_end_of_a_shortened_file_fails_instead_of_mapping_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), IoEngineKind::Pwrite);
    let (first, first_payload) = append_one(&node, 3, 1, 10_000);
    assert_eq!(
        &node.read(3, first.offset, first.len).unwrap()[..],
        &first_payload[..]
    );
    let (second, _) = append_one(&node, 3, 2, 10_000);
    truncate(
        &segment_path(dir.path(), 3),
        first.offset + u64::from(first.len),
    );
    match node.read(3, second.offset, second.len) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
        }
        other => panic!("expected an UnexpectedEof Io error, got {other:?}"),
    }
    assert_eq!(
        &node.read(3, first.offset, first.len).unwrap()[..],
        &first_payload[..]
    );
}

/// Scans read short, never fault: a segment truncated mid-record under the node
/// scans what is left and reports the rest as damage; a reopen cuts it as a
/// torn tail. Neither panics nor faults.
#[test]
fn scan_and_reopen_of_a_segment_truncated_mid_record() {
    // Cut inside the third record's payload, inside the second record's
    // header, and to nothing.
    for cut in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), IoEngineKind::Pwrite);
        let records: Vec<(RecordLocation, Vec<u8>)> = (0..3)
            .map(|stripe_id| append_one(&node, 0, stripe_id, 5000))
            .collect();
        let end_of = |index: usize| records[index].0.offset + u64::from(records[index].0.len);
        let durable_len = end_of(2);
        let (new_len, intact_records) = match cut {
            0 => (records[2].0.offset + 100, 2),
            1 => (end_of(0) + 10, 1),
            _ => (0, 0),
        };
        truncate(&segment_path(dir.path(), 0), new_len);
        let scan = node.scan(0).unwrap();
        assert_eq!(scan.records.len(), intact_records, "cut {cut}");
        let intact_len = match intact_records {
            0 => 0,
            n => end_of(n - 1),
        };
        assert_eq!(scan.corrupt.len(), 1, "cut {cut}: {:?}", scan.corrupt);
        let damage = &scan.corrupt[0];
        assert_eq!(
            (damage.offset, damage.len),
            (intact_len, durable_len - intact_len)
        );
        assert!(damage.reason.contains("truncated"), "{}", damage.reason);
        assert_eq!(scan.truncated_tail_bytes, 0);
        drop(node);

        // On reopen the short file is a torn tail like any other.
        let node = open(dir.path(), IoEngineKind::Pwrite);
        if intact_records == 0 {
            assert!(node.generations().unwrap().is_empty(), "cut {cut}");
            continue;
        }
        let scan = node.scan(0).unwrap();
        assert_eq!(scan.records.len(), intact_records, "cut {cut}");
        assert_eq!(scan.truncated_tail_bytes, new_len - intact_len);
        assert!(scan.corrupt.is_empty());
        let (location, payload) = &records[0];
        assert_eq!(
            &node.read(0, location.offset, location.len).unwrap()[..],
            &payload[..]
        );
    }
}

fn expect_removed(result: Result<Vec<RecordLocation>>, what: &str) {
    match result {
        Err(Error::Unavailable { reason, .. }) => {
            assert!(reason.contains("was removed"), "{what}: {reason}")
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

/// Review item 15: appends into the unlinked files of a deleted node
/// directory were acknowledged. Now the append fails, its records are not
/// published, and the node is fenced.
#[test]
fn an_append_after_the_node_directory_was_removed_fails_and_fences() {
    for engine in engines() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("node");
        let node = open(&dir, engine);
        let (first, first_payload) = append_one(&node, 1, 1, 3000);
        std::fs::remove_dir_all(&dir).unwrap();
        let payload = sample_payload(2, 3000);
        let header = sample_header(2, 1, 0, &payload);
        let batch = [RecordRef {
            header: &header,
            payload: &payload,
        }];
        expect_removed(node.append(1, &batch), &format!("{engine:?}"));
        assert!(node.is_fenced());
        assert!(matches!(
            node.append(1, &batch),
            Err(Error::NodeFenced { .. })
        ));
        // The failed batch was not published.
        assert_eq!(node.scan(1).unwrap().records.len(), 1);
        assert_eq!(
            &node.read(1, first.offset, first.len).unwrap()[..],
            &first_payload[..]
        );
    }
}

/// The same through the shared io_uring submission of `append_all`: only
/// the node whose directory is gone fails.
#[test]
fn a_shared_submission_fails_only_the_node_whose_directory_was_removed() {
    use crate::node::append_all;
    let roots: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let dirs: Vec<PathBuf> = roots.iter().map(|r| r.path().join("node")).collect();
    let nodes: Vec<LocalNode> = dirs.iter().map(|d| open(d, IoEngineKind::Uring)).collect();
    assert!(nodes.iter().all(LocalNode::joins_shared_submission));
    for node in &nodes {
        append_one(node, 0, 1, 2000);
    }
    std::fs::remove_dir_all(&dirs[0]).unwrap();
    let payload = sample_payload(2, 2000);
    let header = sample_header(2, 0, 0, &payload);
    let records = [RecordRef {
        header: &header,
        payload: &payload,
    }];
    let batches: Vec<crate::node::AppendBatch<'_>> = nodes
        .iter()
        .map(|node| (node as &dyn Node, 0, &records[..]))
        .collect();
    let mut results = append_all(&batches).into_iter();
    expect_removed(results.next().unwrap(), "shared submission");
    let kept = results.next().unwrap().expect("the other node appends");
    assert!(nodes[0].is_fenced());
    assert!(!nodes[1].is_fenced());
    assert_eq!(nodes[0].scan(0).unwrap().records.len(), 1);
    assert_eq!(nodes[1].scan(0).unwrap().records.len(), 2);
    assert_eq!(
        &nodes[1].read(0, kept[0].offset, kept[0].len).unwrap()[..],
        &payload[..]
    );
}

/// The SIGBUS handler only repairs the engine's own mappings: a fault in
/// any other mapping still kills the process, as it did before the handler
/// existed. Runs in a child process that is expected to die.
#[test]
#[allow(
    unsafe_code,
    reason = "the test maps a file outside the engine on purpose"
)]
fn a_sigbus_outside_the_engine_mappings_still_kills_the_process() {
    use std::os::unix::process::ExitStatusExt;
    const CHILD: &str = "GEOSHARD_TEST_FOREIGN_SIGBUS_CHILD";
    const NAME: &str =
        "node::local::tests::a_sigbus_outside_the_engine_mappings_still_kills_the_process";
    if let Ok(dir) = std::env::var(CHILD) {
        let dir = Path::new(&dir);
        // Install the handler the way the engine does: map a segment.
        let node = open(&dir.join("node"), IoEngineKind::Pwrite);
        let (location, _) = append_one(&node, 0, 1, 100);
        node.read(0, location.offset, location.len).unwrap();
        let path = dir.join("foreign");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(64 << 10).unwrap();
        // SAFETY: the test owns the file; the fault below is the point.
        let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
        file.set_len(0).unwrap();
        let byte = std::hint::black_box(&map[..])[8 << 10];
        panic!("read {byte} from a truncated foreign mapping without a fault");
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGBUS),
        "the child was not killed by SIGBUS ({:?}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A segment found at open is scanned at its first use, or from a horizon
/// (`scan_from`): records past it only, a torn tail past it found; a
/// horizon with no record boundary is refused and the scan is whole.
#[test]
fn segments_are_scanned_at_first_use_or_from_a_horizon() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (first, second, third, path) = {
        let node = open(dir.path(), IoEngineKind::Pwrite);
        let first = append_one(&node, 4, 1, 300).0;
        let second = append_one(&node, 4, 2, 300).0;
        let third = append_one(&node, 4, 3, 300).0;
        (first, second, third, dir.path().join(segment::file_name(4)))
    };
    let horizon = second.offset + u64::from(second.len);
    // A torn write after the last record: 77 bytes of garbage.
    let torn_write = |path: &Path| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(&[0xab; 77])
            .unwrap();
    };
    torn_write(&path);
    let end = third.offset + u64::from(third.len);

    // From the horizon: the record after it and the tail, nothing before.
    let node = open(dir.path(), IoEngineKind::Pwrite);
    assert_eq!(node.generations().unwrap(), vec![4]);
    let scan = node.scan_from(4, horizon).unwrap().expect("a boundary");
    assert_eq!(scan.records.len(), 1);
    assert_eq!(scan.records[0].location, third);
    assert_eq!(scan.truncated_tail_bytes, 77);
    assert_eq!(node.segment_len(4).unwrap(), end);
    // Scanned now: a second call has nothing cheaper; scan is whole.
    assert!(node.scan_from(4, horizon).unwrap().is_none());
    let whole = node.scan(4).unwrap();
    assert_eq!(whole.records.len(), 3);
    assert!(whole.corrupt.is_empty());
    drop(node);

    // No record starts at a horizon inside a record, or past the file:
    // refused, and the segment stays to be scanned whole.
    let node = open(dir.path(), IoEngineKind::Pwrite);
    assert!(node.scan_from(4, horizon - 1).unwrap().is_none());
    assert!(node.scan_from(4, end + 1000).unwrap().is_none());
    // At the end of the last record, where the torn write starts: no
    // record there either (the caller scans whole, and finds a record
    // ending there).
    assert!(node.scan_from(4, end).unwrap().is_none());
    let scan = node.scan(4).unwrap();
    assert_eq!((scan.records.len(), scan.truncated_tail_bytes), (3, 77));
    drop(node);
    // Without the torn write, a horizon at the end of the file: nothing
    // after it.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(end).unwrap();
    drop(file);
    let node = open(dir.path(), IoEngineKind::Pwrite);
    let scan = node.scan_from(4, end).unwrap().expect("the end");
    assert!(scan.records.is_empty() && scan.corrupt.is_empty());
    assert_eq!(scan.truncated_tail_bytes, 0);
    drop(node);
    torn_write(&path);

    // A read first scans the segment whole.
    let node = open(dir.path(), IoEngineKind::Pwrite);
    assert_eq!(
        node.read(4, first.offset, first.len).unwrap().len(),
        first.len as usize
    );
    assert!(node.scan_from(4, horizon).unwrap().is_none());
    let scan = node.scan(4).unwrap();
    assert_eq!((scan.records.len(), scan.truncated_tail_bytes), (3, 77));
    // An append goes after the tail, as after a whole scan at open.
    let fourth = append_one(&node, 4, 4, 300).0;
    assert!(fourth.offset > end + 77);
    drop(node);
    let node = open(dir.path(), IoEngineKind::Pwrite);
    let scan = node.scan(4).unwrap();
    assert_eq!(scan.records.len(), 4);
    assert_eq!(scan.corrupt.len(), 1, "the zeroed tail is damage now");
}

/// Bytes kept from a mapping (a checkpoint's records read in place) learn
/// when a page of them read as zeros: the ring of recent replacements
/// tells (a few pages), and past its end each mapping's own count (many
/// pages), while another node's file cut short leaves them intact.
#[test]
fn a_watch_over_mapped_bytes_sees_their_pages_lost_and_only_theirs() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let nodes: Vec<LocalNode> = dirs
        .iter()
        .map(|d| open(d.path(), IoEngineKind::Pwrite))
        .collect();
    let mut held = Vec::new();
    for node in &nodes {
        let records: Vec<(RecordLocation, Vec<u8>)> = (0..8)
            .map(|stripe_id| append_one(node, 0, stripe_id, 1 << 20))
            .collect();
        let (first, last) = (&records[0].0, &records[7].0);
        let whole = node
            .read(
                0,
                first.offset,
                (last.offset + u64::from(last.len) - first.offset) as u32,
            )
            .unwrap();
        held.push(whole);
    }
    let watch = |bytes: &bytes::Bytes| {
        let start = bytes.as_ptr() as usize;
        map::MappedWatch::new(&map::mark(), vec![(start, start + bytes.len())])
            .expect("nothing lost yet")
    };
    let ranges = |bytes: &bytes::Bytes| {
        let start = bytes.as_ptr() as usize;
        vec![(start, start + bytes.len())]
    };
    let (kept, cut) = (watch(&held[0]), watch(&held[1]));
    let heap = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let on_heap = watch(&heap);
    assert!(kept.intact() && cut.intact() && on_heap.intact());
    // Node 1's file cut short: every page of its bytes (2,048 of them, or
    // 128 of 64 KiB: more than the ring keeps) reads as zeros.
    let mark = map::mark();
    truncate(&segment_path(dirs[1].path(), 0), 0);
    let before = map::sigbus_pages_replaced();
    assert!(held[1].iter().step_by(4096).all(|&b| b == 0));
    assert!(map::sigbus_pages_replaced() - before >= 64);
    // A watch starting from a mark before that: refused for the bytes that
    // lost pages, not for the others (their mapping's count says so).
    assert!(map::MappedWatch::new(&mark, ranges(&held[1])).is_none());
    assert!(map::MappedWatch::new(&mark, ranges(&held[0])).is_some());
    assert!(!cut.intact(), "the cut file's bytes lost pages");
    assert!(!cut.intact(), "and stay lost");
    assert!(
        kept.intact(),
        "another mapping's losses are not these bytes'"
    );
    assert!(on_heap.intact());
    // One page of node 0's bytes: the ring tells.
    let kept_len = held[0].len() as u64;
    truncate(&segment_path(dirs[0].path(), 0), kept_len / 2 + 4096);
    assert!(kept.intact(), "nothing read past the cut yet");
    assert_eq!(held[0][held[0].len() - 1], 0);
    assert!(!kept.intact(), "a page read as zeros");
    assert!(on_heap.intact());
    drop(held);
}
