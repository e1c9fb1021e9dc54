//! The conformance suite every [`Node`] implementation and wrapper must pass.
//!
//! Compiled for the crate's own tests and, with the `testing` cargo feature,
//! for other crates and integration tests:
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use geoshard::node::{conformance, LocalNode, LocalOptions};
//! let dir = tempfile::tempdir().unwrap();
//! conformance::run(|| LocalNode::open("n1", dir.path(), &LocalOptions::default()));
//! # }
//! ```
//!
//! It panics (with the failed check) on the first violation, like a test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{Node, NodeExt, RecordLocation, RecordRef, append_all};
use crate::Error;
use crate::Result;
use crate::format::ColumnHeader;

/// Builds a valid header for a record of `payload` in a RS(2, 1) stripe: the
/// payload is column `column_index` and every column has its length.
pub fn sample_header(
    stripe_id: u64,
    generation: u64,
    column_index: u16,
    payload: &[u8],
) -> ColumnHeader {
    let len = payload.len() as u32;
    let checksum = crc32fast::hash(payload);
    ColumnHeader {
        stripe_id,
        generation,
        data_count: 2,
        parity_count: 1,
        column_index,
        column_lens: vec![len; 3],
        column_checksums: vec![checksum; 3],
        placement: vec!["site-a/n1".into(), "site-b/n1".into(), "site-c/n1".into()],
        entry_table_lens: vec![0; 2],
        commit: crate::format::CommitStamp::default(),
        handoffs: Vec::new(),
    }
}

/// A manifest is absent at first, then always the last one written, also
/// after a reopen; writes are whole (the largest allowed size included).
fn check_manifest<N: Node>(node: &N) -> Vec<u8> {
    assert_eq!(node.read_manifest().expect("read manifest"), None);
    let big = sample_payload(7, crate::format::MANIFEST_LEN_MAX);
    for (i, bytes) in [b"first".to_vec(), big, b"third, shorter".to_vec()]
        .iter()
        .enumerate()
    {
        node.write_manifest(bytes).expect("write manifest");
        assert_eq!(
            node.read_manifest().expect("read manifest").as_deref(),
            Some(&bytes[..]),
            "manifest {i} reads back"
        );
    }
    assert!(
        node.write_manifest(&vec![0; crate::format::MANIFEST_LEN_MAX + 1])
            .is_err(),
        "an oversized manifest is refused"
    );
    b"third, shorter".to_vec()
}

/// Deterministic payload bytes of `len` for stripe `seed`.
pub fn sample_payload(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Runs the whole suite. `open` must return the node over the *same*
/// storage each time it is called (the suite drops the previous handle
/// first), and that storage must be empty on the first call.
///
/// # Panics
/// On the first violation of the [`Node`] contract.
pub fn run<N: Node + 'static>(mut open: impl FnMut() -> Result<N>) {
    let node = open().expect("open a fresh node");
    assert!(!node.name().is_empty(), "a node has a name");
    let last = check_manifest(&node);
    drop(node);
    let node = open().expect("reopen after the manifest checks");
    assert_eq!(
        node.read_manifest().expect("read manifest").as_deref(),
        Some(&last[..]),
        "the manifest survives a reopen"
    );
    assert_eq!(
        node.generations().expect("generations"),
        Vec::<u64>::new(),
        "fresh node is empty"
    );
    assert_eq!(
        node.scan(9).expect("scan"),
        super::Scan::default(),
        "missing generation scans empty"
    );
    assert!(
        node.read(9, 0, 1).is_err(),
        "read of a missing generation fails"
    );

    let payloads: Vec<Vec<u8>> = vec![sample_payload(1, 1000), Vec::new(), sample_payload(3, 4096)];
    let headers: Vec<ColumnHeader> = payloads
        .iter()
        .enumerate()
        .map(|(index, payload)| sample_header(index as u64 + 1, 1, (index % 3) as u16, payload))
        .collect();
    let records: Vec<RecordRef<'_>> = headers
        .iter()
        .zip(&payloads)
        .map(|(header, payload)| RecordRef { header, payload })
        .collect();
    assert_eq!(node.append(1, &[]).expect("empty append"), Vec::new());
    let locations = node.append(1, &records).expect("append");
    check_locations(&node, &locations, &headers, &payloads);
    assert_eq!(node.generations().expect("generations"), vec![1]);

    // Reads: bounds, checksums, zero-length ranges.
    let first = locations[0];
    let tail = node.read(1, first.offset + 10, 20).expect("sub-range read");
    assert_eq!(&tail[..], &payloads[0][10..30]);
    assert!(
        node.read(1, u64::MAX, 1).is_err(),
        "offset overflow is an error"
    );
    let end = locations[2].offset + u64::from(locations[2].len);
    assert!(
        node.read(1, end, 1).is_err(),
        "read past the durable end is an error"
    );
    assert!(
        node.read(1, end - 1, 1).is_ok(),
        "last durable byte is readable"
    );
    assert_eq!(
        node.read(1, end, 0).expect("empty read at the end").len(),
        0
    );
    match node.read_checked(
        1,
        first.offset,
        first.len,
        headers[0].payload_checksum() ^ 1,
    ) {
        Err(Error::ChecksumMismatch { .. }) => {}
        other => panic!("wrong checksum must be ChecksumMismatch, got {other:?}"),
    }

    // Invalid appends are refused and leave nothing behind.
    let scan_before = node.scan(1).expect("scan");
    let good = &payloads[0];
    let wrong_generation = sample_header(50, 2, 0, good);
    let wrong_len = sample_header(51, 1, 0, &good[..10]);
    let mut wrong_checksum = sample_header(52, 1, 0, good);
    wrong_checksum.column_checksums[0] ^= 1;
    let mut invalid_header = sample_header(53, 1, 0, good);
    invalid_header.placement.pop();
    for header in [
        &wrong_generation,
        &wrong_len,
        &wrong_checksum,
        &invalid_header,
    ] {
        let batch = [
            records[2],
            RecordRef {
                header,
                payload: good,
            },
        ];
        match node.append(1, &batch) {
            Err(Error::InvalidArgument { .. } | Error::LimitExceeded { .. }) => {}
            other => panic!("invalid record must be refused, got {other:?}"),
        }
    }
    assert_eq!(
        node.scan(1).expect("scan"),
        scan_before,
        "refused appends leave nothing"
    );

    // More batches, more generations, out of order.
    let more_payloads: Vec<Vec<u8>> = (0..8)
        .map(|i| sample_payload(100 + i, 300 * i as usize))
        .collect();
    let mut expected_gen2 = Vec::new();
    for generation in [2u64, 0, 2] {
        let headers: Vec<ColumnHeader> = more_payloads
            .iter()
            .enumerate()
            .map(|(i, p)| sample_header(1000 + i as u64, generation, (i % 3) as u16, p))
            .collect();
        let batch: Vec<RecordRef<'_>> = headers
            .iter()
            .zip(&more_payloads)
            .map(|(header, payload)| RecordRef { header, payload })
            .collect();
        let locations = node.append(generation, &batch).expect("append");
        check_locations(&node, &locations, &headers, &more_payloads);
        if generation == 2 {
            expected_gen2.extend(locations);
        }
    }
    assert_eq!(node.generations().expect("generations"), vec![0, 1, 2]);
    let gen2: Vec<RecordLocation> = node
        .scan(2)
        .expect("scan")
        .records
        .iter()
        .map(|r| r.location)
        .collect();
    assert_eq!(gen2, expected_gen2, "scan lists records in append order");

    // Parallel appends through append_all (two batches on one node too).
    let parallel_headers: Vec<ColumnHeader> = (0..3)
        .map(|i| sample_header(2000 + i, 3, i as u16, &payloads[0]))
        .collect();
    let parallel: Vec<[RecordRef<'_>; 1]> = parallel_headers
        .iter()
        .map(|header| {
            [RecordRef {
                header,
                payload: &payloads[0],
            }]
        })
        .collect();
    let batches: Vec<super::AppendBatch<'_>> = parallel
        .iter()
        .map(|batch| (&node as &dyn Node, 3, &batch[..]))
        .collect();
    for result in append_all(&batches) {
        let location = result.expect("append_all")[0];
        assert_eq!(
            &node.read(3, location.offset, location.len).expect("read")[..],
            &payloads[0][..]
        );
    }
    assert_eq!(node.scan(3).expect("scan").records.len(), 3);

    let capacity = node.capacity().expect("capacity");
    assert!(capacity.used_bytes > 0, "used bytes count the segments");
    let held = node.read(1, first.offset, first.len).expect("read");

    // Persistence: everything is there after a reopen.
    let scans: Vec<_> = (0..4).map(|g| node.scan(g).expect("scan")).collect();
    drop(node);
    let node = open().expect("reopen");
    assert_eq!(node.generations().expect("generations"), vec![0, 1, 2, 3]);
    for (generation, before) in scans.iter().enumerate() {
        let after = node.scan(generation as u64).expect("scan after reopen");
        assert_eq!(after.records, before.records, "records survive a reopen");
        assert!(after.corrupt.is_empty());
        for record in &after.records {
            node.read_payload(record)
                .expect("payload survives a reopen");
        }
    }
    assert_eq!(
        &held[..],
        &payloads[0][..],
        "bytes read before a reopen stay valid"
    );

    // Removal: gone, idempotent, bytes already read stay valid.
    let held = node.read(1, first.offset, first.len).expect("read");
    node.remove_generation(1).expect("remove");
    node.remove_generation(1).expect("remove again");
    node.remove_generation(77)
        .expect("remove a missing generation");
    assert_eq!(node.generations().expect("generations"), vec![0, 2, 3]);
    assert!(
        node.read(1, first.offset, first.len).is_err(),
        "removed generation is gone"
    );
    assert_eq!(node.scan(1).expect("scan").records.len(), 0);
    assert_eq!(
        &held[..],
        &payloads[0][..],
        "bytes outlive their generation"
    );
    let after_removal = node.capacity().expect("capacity");
    assert!(
        after_removal.used_bytes < capacity.used_bytes,
        "removal frees space"
    );
    drop(node);
    let node = open().expect("reopen");
    assert_eq!(
        node.generations().expect("generations"),
        vec![0, 2, 3],
        "removal is durable"
    );

    concurrent_readers_and_writer(Arc::new(node));
}

fn check_locations<N: Node + ?Sized>(
    node: &N,
    locations: &[RecordLocation],
    headers: &[ColumnHeader],
    payloads: &[Vec<u8>],
) {
    assert_eq!(locations.len(), headers.len(), "one location per record");
    for ((location, header), payload) in locations.iter().zip(headers).zip(payloads) {
        assert_eq!(location.generation, header.generation);
        assert_eq!(location.len as usize, payload.len());
        let bytes = node
            .read_checked(
                location.generation,
                location.offset,
                location.len,
                header.payload_checksum(),
            )
            .expect("read back what was appended");
        assert_eq!(&bytes[..], &payload[..]);
        // A node's mapping, if it keeps one, holds the same bytes where
        // they were appended, or ends before them.
        if let Some(mapped) = node.mapped(location.generation) {
            let start = location.offset as usize;
            if let Some(bytes) = mapped.get(start..start + payload.len()) {
                assert_eq!(bytes, &payload[..], "the mapping holds what was appended");
            }
        }
    }
    assert_eq!(node.mapped(9), None, "a missing generation maps nothing");
    let scan = node.scan(locations[0].generation).expect("scan");
    for (location, header) in locations.iter().zip(headers) {
        let found = scan
            .records
            .iter()
            .find(|record| record.location == *location)
            .expect("scan lists every appended record");
        assert_eq!(&found.header, header, "scan returns the header as appended");
        node.read_payload(found).expect("payload checksum holds");
    }
}

/// One writer appends batches while reader threads read and verify every
/// record published so far.
fn concurrent_readers_and_writer<N: Node + 'static>(node: Arc<N>) {
    const GENERATION: u64 = 10;
    const BATCHES: u64 = 40;
    let published: Arc<Mutex<Vec<(RecordLocation, u32)>>> = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (node, published, done) =
                (Arc::clone(&node), Arc::clone(&published), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut held: Vec<(Bytes, u32)> = Vec::new();
                let mut reads = 0u64;
                let mut turn = reader;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let snapshot = published.lock().expect("lock").clone();
                    for (location, checksum) in snapshot.iter().skip(turn % 3) {
                        let bytes = node
                            .read_checked(
                                location.generation,
                                location.offset,
                                location.len,
                                *checksum,
                            )
                            .expect("a published record reads back intact");
                        reads += 1;
                        if held.len() < 64 {
                            held.push((bytes, *checksum));
                        }
                    }
                    turn += 1;
                    if finished {
                        break;
                    }
                    std::thread::yield_now();
                }
                for (bytes, checksum) in &held {
                    assert_eq!(crc32fast::hash(bytes), *checksum, "held bytes stay intact");
                }
                reads
            })
        })
        .collect();
    for batch in 0..BATCHES {
        let payloads: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                sample_payload(
                    batch * 10 + i,
                    64 + (batch as usize * 997 + i as usize * 31) % 16_000,
                )
            })
            .collect();
        let headers: Vec<ColumnHeader> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| sample_header(batch * 10 + i as u64, GENERATION, (i % 3) as u16, p))
            .collect();
        let records: Vec<RecordRef<'_>> = headers
            .iter()
            .zip(&payloads)
            .map(|(header, payload)| RecordRef { header, payload })
            .collect();
        let locations = node
            .append(GENERATION, &records)
            .expect("append while reading");
        let mut published = published.lock().expect("lock");
        for (location, header) in locations.into_iter().zip(&headers) {
            published.push((location, header.payload_checksum()));
        }
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        let reads = reader.join().expect("reader thread");
        assert!(reads > 0, "every reader read something");
    }
    let scan = node.scan(GENERATION).expect("scan");
    assert_eq!(scan.records.len() as u64, BATCHES * 4);
    assert!(scan.corrupt.is_empty());
}
