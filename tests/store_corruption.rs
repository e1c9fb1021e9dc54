//! Corruption: bytes flipped inside record headers, entry tables and blob
//! payloads on one node are caught by their checksums; every get still
//! returns the right bytes (rebuilt from other columns), and `stats` and the
//! open report count what was found.

mod common;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};

use geoshard::node::{LocalNode, LocalOptions, Node};

fn flip(path: &std::path::Path, offset: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x5a;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
}

#[test]
fn flipped_bytes_on_one_node_never_reach_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::layout_3x3(dir.path());
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    {
        let store = common::open(dir.path());
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        let mut rng = common::rng(t);
                        (0..60)
                            .map(|i| {
                                let key = format!("m/{t}/{i}").into_bytes();
                                let value = common::chat_value(&mut rng, 0);
                                store.put(&key, value.clone()).unwrap();
                                (key, value)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                model.extend(h.join().unwrap());
            }
        });
    }

    // Damage the records of the node holding the most data columns (the
    // ones gets read): a header byte in some, an entry-table byte in
    // others, a blob byte in others.
    let (victim, records) = layout
        .nodes()
        .iter()
        .map(|spec| {
            let geoshard::layout::Location::Dir(path) = &spec.location else {
                unreachable!()
            };
            let node = LocalNode::open(spec.name.clone(), path, &LocalOptions::default()).unwrap();
            let mut records = Vec::new();
            for g in node.generations().unwrap() {
                records.extend(node.scan(g).unwrap().records);
            }
            (path.clone(), records)
        })
        .max_by_key(|(_, r)| {
            r.iter()
                .filter(|rec| rec.header.entry_table_len().unwrap_or(0) > 0)
                .count()
        })
        .unwrap();
    assert!(
        records.len() >= 6,
        "enough records to damage: {}",
        records.len()
    );
    let segments = common::files_under(&victim);
    let mut kinds = [0usize; 4];
    // The last record of each segment stays intact: damage there reads as
    // a torn tail, and open rebuilds what a torn tail hides before it
    // returns, so no read would meet it.
    let mut last_of_segment: HashMap<u64, u64> = HashMap::new();
    for rec in &records {
        let last = last_of_segment.entry(rec.location.generation).or_default();
        *last = (*last).max(rec.location.offset);
    }
    for (i, rec) in records.iter().enumerate() {
        if last_of_segment.get(&rec.location.generation) == Some(&rec.location.offset) {
            continue;
        }
        let segment = segments
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .contains(&format!("{:016x}", rec.location.generation))
            })
            .unwrap_or_else(|| {
                panic!(
                    "segment of generation {} in {segments:?}",
                    rec.location.generation
                )
            });
        let header_len = rec.header.encoded_len() as u64;
        let table_len = rec.header.entry_table_len().unwrap_or(0) as u64;
        // Every fourth record stays intact, so damage sits between intact
        // records (damage at the very end of a segment reads as a torn tail).
        let kind = if table_len == 0 {
            [0, 2, 3, 3][i % 4]
        } else {
            i % 4
        };
        let offset = match kind {
            0 => rec.location.offset - header_len + 9,
            1 => rec.location.offset + table_len / 2,
            2 => rec.location.offset + table_len + (u64::from(rec.location.len) - table_len) / 2,
            _ => {
                kinds[3] += 1;
                continue;
            }
        };
        flip(segment, offset);
        kinds[kind] += 1;
    }
    assert!(
        kinds.iter().all(|&n| n > 0),
        "every kind of damage placed: {kinds:?}"
    );

    let store = common::open(dir.path());
    let report = store.open_report();
    assert!(report.corrupt_regions > 0, "{report:?}");
    for (key, value) in &model {
        let got = store
            .get(key)
            .unwrap()
            .expect("every blob survives one damaged node");
        assert!(
            got.to_bytes() == value[..],
            "{:?} differs",
            String::from_utf8_lossy(key)
        );
    }
    let stats = store.stats();
    assert!(stats.degraded_reads > 0, "{stats:?} {report:?} {kinds:?}");
    assert!(
        stats.repair_queue > 0,
        "damaged columns are queued for repair: {stats:?}"
    );
}

/// A blob byte flipped on disk after gets mapped its segment (the view a
/// healthy get slices, docs/PERFORMANCE.md "The healthy get"): the next
/// get of it fails its checksum on the view's bytes, and the blob is
/// rebuilt from other columns.
#[test]
fn a_byte_flipped_under_a_mapped_view_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path());
    let mut rng = common::rng(7);
    let model: Vec<(Vec<u8>, Vec<u8>)> = (0..20)
        .map(|i| {
            let key = format!("v/{i}").into_bytes();
            let mut value = vec![0u8; 1024];
            rand::RngCore::fill_bytes(&mut rng, &mut value);
            store.put(&key, value.clone()).unwrap();
            (key, value)
        })
        .collect();
    for (key, value) in &model {
        assert_eq!(&store.get(key).unwrap().unwrap().to_bytes()[..], &value[..]);
    }
    let mapped = geoshard::testing::segment_views(&store);
    assert!(mapped.iter().any(|v| v.2.is_some()), "{mapped:?}");

    let (key, value) = &model[7];
    let (path, at) = common::files_under(dir.path())
        .into_iter()
        .find_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let at = bytes.windows(value.len()).position(|w| w == &value[..])?;
            Some((p, at as u64))
        })
        .expect("the value is in a data column");
    flip(&path, at + 100);
    let before = store.stats();
    assert_eq!(&store.get(key).unwrap().unwrap().to_bytes()[..], &value[..]);
    let after = store.stats();
    assert_eq!(after.checksum_failures, before.checksum_failures + 1);
    assert_eq!(after.degraded_reads, before.degraded_reads + 1);
    for (key, value) in &model {
        assert_eq!(&store.get(key).unwrap().unwrap().to_bytes()[..], &value[..]);
    }
}
