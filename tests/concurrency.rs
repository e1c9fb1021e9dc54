//! Concurrency: reader threads read, verify and scan while one writer
//! appends batches across several generations; no reader ever sees a
//! partial or unchecked record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use geoshard::format::ColumnHeader;
use geoshard::node::{
    IoEngineKind, LocalNode, LocalOptions, Node, NodeExt, RecordLocation, RecordRef,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn header(stripe_id: u64, generation: u64, payload: &[u8]) -> ColumnHeader {
    ColumnHeader {
        stripe_id,
        generation,
        data_count: 1,
        parity_count: 1,
        column_index: 1,
        column_lens: vec![payload.len() as u32; 2],
        column_checksums: vec![0, crc32fast::hash(payload)],
        placement: vec!["n0".into(), "n1".into()],
        entry_table_lens: vec![0],
        commit: geoshard::format::CommitStamp::default(),
        handoffs: Vec::new(),
    }
}

#[test]
fn readers_on_several_threads_while_one_writer_appends() {
    for engine in [IoEngineKind::Uring, IoEngineKind::Pwrite] {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(
            LocalNode::open("n1", dir.path(), &LocalOptions::with_io_engine(engine)).unwrap(),
        );
        let published: Arc<RwLock<Vec<(RecordLocation, u32)>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4u64)
            .map(|seed| {
                let (node, published, done) = (node.clone(), published.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    let (mut reads, mut scans) = (0u64, 0u64);
                    while !done.load(Ordering::Acquire) || reads == 0 {
                        let pick = {
                            let published = published.read().unwrap();
                            (!published.is_empty())
                                .then(|| published[rng.random_range(0..published.len())])
                        };
                        if let Some((location, checksum)) = pick {
                            let bytes = node
                                .read_checked(
                                    location.generation,
                                    location.offset,
                                    location.len,
                                    checksum,
                                )
                                .expect("published record reads back intact");
                            assert_eq!(bytes.len(), location.len as usize);
                            reads += 1;
                            if reads % 50 == 0 {
                                let scan = node.scan(location.generation).unwrap();
                                assert!(
                                    scan.corrupt.is_empty(),
                                    "a scan never sees a partial append"
                                );
                                for record in scan.records.iter().step_by(7) {
                                    node.read_payload(record).unwrap();
                                }
                                scans += 1;
                            }
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    (reads, scans)
                })
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        for batch in 0..120u64 {
            let generation = batch / 30;
            let payloads: Vec<Vec<u8>> = (0..rng.random_range(1..6))
                .map(|_| {
                    (0..rng.random_range(0..8_000))
                        .map(|_| rng.random())
                        .collect()
                })
                .collect();
            let headers: Vec<ColumnHeader> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| header(batch * 10 + i as u64, generation, p))
                .collect();
            let records: Vec<RecordRef<'_>> = headers
                .iter()
                .zip(&payloads)
                .map(|(header, payload)| RecordRef { header, payload })
                .collect();
            let locations = node.append(generation, &records).unwrap();
            let mut published = published.write().unwrap();
            published.extend(
                locations
                    .into_iter()
                    .zip(headers.iter().map(|h| h.payload_checksum())),
            );
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            let (reads, _scans) = reader.join().unwrap();
            assert!(reads > 0);
        }
        assert_eq!(node.generations().unwrap(), vec![0, 1, 2, 3]);
    }
}
